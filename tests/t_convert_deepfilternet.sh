#!/bin/sh
# t_convert_deepfilternet.sh - scripts/convert-deepfilternet.py: the DeepFilterNet3
# fixture's model folder (config.ini + checkpoints/model_120.ckpt.best) converts to
# one .safetensors holding every tensor of the state dict verbatim (num_batches_tracked
# dropped), with the stemsplit.* and dfn.* metadata, the ERB widths and alpha equal to
# those the reference computed (ref.safetensors); the same model as .zip (one folder
# down, as released) and .tar.gz converts to the same bytes; --dtype f16 converts;
# hostile or wrong inputs are refused with their exit codes (os.system in a pickle
# never runs, truncated checkpoint, missing model, no config.ini, no checkpoint,
# another model type, unsupported or inconsistent hyperparameters, a checkpoint that
# does not match config.ini) and write nothing.  Standard library only.
. "$(dirname "$0")/lib.sh"
CONV="$SS_ROOT/scripts/convert-deepfilternet.py"
FIX="$SS_ROOT/tests/fixtures/deepfilternet/small"
if ! command -v python3 >/dev/null 2>&1; then
    skip convert_deepfilternet "python3 not found"; exit 0
fi

cat >"$T/check.py" <<'EOF2'
import json, struct, sys
sys.path.insert(0, sys.argv[3])
import torchckpt
out, fix, dtype = sys.argv[1], sys.argv[2], sys.argv[4]
def die(m): print(m); sys.exit(1)
def header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return b, n, json.loads(b[8:8 + n])
b, n, h = header(out)
meta = h.pop("__metadata__")
_, _, rh = header(fix + "/ref.safetensors")
rmeta = rh["__metadata__"]
want_meta = {"stemsplit.architecture": "deepfilternet3", "stemsplit.sources": "speech", "stemsplit.segment": "1",
             "stemsplit.residual": "noise", "stemsplit.samplerate": "48000", "stemsplit.channels": "1",
             "dfn.df.fft_size": "192", "dfn.df.hop_size": "96", "dfn.df.nb_erb": "16",
             "dfn.df.nb_df": "24", "dfn.df.df_order": "5", "dfn.df.df_lookahead": "2",
             "dfn.df.norm_tau": "1.0", "dfn.df.lsnr_min": "-15", "dfn.df.pad_mode": "input_specf",
             "dfn.deepfilternet.conv_ch": "8", "dfn.deepfilternet.conv_lookahead": "2",
             "dfn.deepfilternet.conv_kernel": "1,3", "dfn.deepfilternet.conv_kernel_inp": "3,3",
             "dfn.deepfilternet.df_gru_skip": "groupedlinear", "dfn.deepfilternet.mask_pf": "false",
             "dfn.deepfilternet.linear_groups": "2", "dfn.deepfilternet.enc_linear_groups": "4",
             "dfn.train.model": "deepfilternet3", "dfn.epoch": "120",
             # computed by the converter; must equal what the reference computed
             "dfn.erb_widths": rmeta["erb_widths"], "dfn.norm_alpha": rmeta["norm_alpha"]}
for k, v in want_meta.items():
    if meta.get(k) != v: die("metadata %s = %r, want %r" % (k, meta.get(k), v))
ck = torchckpt.Checkpoint(fix + "/checkpoints/model_120.ckpt.best")
count = 0
for k, t in ck.obj.items():
    if k.endswith("num_batches_tracked"):
        if k in h: die("%s should be dropped" % k)
        continue
    if k not in h: die("%s missing" % k)
    e = h[k]
    if e["shape"] != list(t.size): die("%s shape" % k)
    lo, hi = e["data_offsets"]
    data = ck.tensor(t, k)[2]
    if dtype == "keep":
        if e["dtype"] != "F32" or b[8 + n + lo:8 + n + hi] != data: die("%s values differ" % k)
    elif e["dtype"] != "F16" or hi - lo != len(data) // 2:
        die("%s not converted to F16" % k)
    count += 1
if count != len(h): die("%d tensors, %d expected" % (len(h), count))
print("ok", count)
EOF2

expect_exit convert 0 python3 "$CONV" -o "$T/dfn.safetensors" "$FIX"
check tensors_and_metadata python3 "$T/check.py" "$T/dfn.safetensors" "$FIX" "$SS_ROOT/scripts" keep
expect_exit convert_f16 0 python3 "$CONV" --dtype f16 -o "$T/dfn16.safetensors" "$FIX"
check f16 python3 "$T/check.py" "$T/dfn16.safetensors" "$FIX" "$SS_ROOT/scripts" f16

# archives: a .zip with the model one folder down (as DeepFilterNet3.zip) and a .tar.gz
python3 - "$FIX" "$T" <<'EOF2'
import os, sys, tarfile, zipfile
fix, t = sys.argv[1:3]
files = ["config.ini", "checkpoints/model_120.ckpt.best"]
with zipfile.ZipFile(os.path.join(t, "DeepFilterNet3.zip"), "w") as z:
    for f in files:
        z.write(os.path.join(fix, f), "DeepFilterNet3/" + f)
with tarfile.open(os.path.join(t, "dfn.tar.gz"), "w:gz") as z:
    for f in files:
        z.add(os.path.join(fix, f), f)
EOF2
expect_exit convert_zip 0 python3 "$CONV" -o "$T/z.safetensors" "$T/DeepFilterNet3.zip"
check zip_same_bytes cmp -s "$T/dfn.safetensors" "$T/z.safetensors"
expect_exit convert_targz 0 python3 "$CONV" -o "$T/tg.safetensors" "$T/dfn.tar.gz"
check targz_same_bytes cmp -s "$T/dfn.safetensors" "$T/tg.safetensors"

# refuse NAME CODE TEXT MODEL: exit CODE, TEXT in the message, no output
refuse() {
    rn=$1 rc=$2 rt=$3; shift 3
    expect_exit "refuse_$rn" "$rc" python3 "$CONV" -o "$T/r_$rn.safetensors" "$@"
    check "message_$rn" grep -qF "$rt" "$T/out.refuse_$rn"
    check "no_output_$rn" test ! -e "$T/r_$rn.safetensors"
}
# model VARIANT [SED-EXPR]: a copy of the fixture folder with config.ini edited
model() {
    mkdir -p "$T/$1/checkpoints"
    cp "$FIX/checkpoints/model_120.ckpt.best" "$T/$1/checkpoints/"
    if [ $# -gt 1 ]; then sed "$2" "$FIX/config.ini" >"$T/$1/config.ini"; else cp "$FIX/config.ini" "$T/$1/"; fi
}
model evil
python3 - "$T/evil/checkpoints/model_120.ckpt.best" "$T/PWNED" "$FIX/checkpoints/model_120.ckpt.best" "$T" <<'EOF2'
import os, pickle, sys, zipfile
out, marker, real, t = sys.argv[1:5]
class Evil:
    def __reduce__(self): return (os.system, ("touch " + marker,))
with zipfile.ZipFile(out, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"erb_fb": Evil()}, protocol=2))
    z.writestr("archive/byteorder", "little")
data = open(real, "rb").read()
os.makedirs(os.path.join(t, "trunc", "checkpoints"))
open(os.path.join(t, "trunc", "checkpoints", "model_120.ckpt.best"), "wb").write(data[:len(data) // 2])
EOF2
cp "$FIX/config.ini" "$T/trunc/"
refuse evil 65 "refusing to unpickle global" "$T/evil"
check no_exec test ! -e "$T/PWNED"
refuse truncated 65 "model_120.ckpt.best" "$T/trunc"
refuse missing 66 "no such file" "$T/nope"
mkdir -p "$T/nocfg/checkpoints"; cp "$FIX/checkpoints/model_120.ckpt.best" "$T/nocfg/checkpoints/"
refuse no_config 65 "no config.ini" "$T/nocfg"
mkdir -p "$T/nock"; cp "$FIX/config.ini" "$T/nock/"
refuse no_checkpoint 65 "no checkpoint" "$T/nock"
model df2 's/^model = .*/model = deepfilternet2/'
refuse other_model 65 "only deepfilternet3" "$T/df2"
model erb12 's/^nb_erb = .*/nb_erb = 12/'
refuse nb_erb 65 "multiple of 8" "$T/erb12"
model ch16 's/^conv_ch = .*/conv_ch = 16/'
refuse shape_mismatch 65 "enc.erb_conv0.1.weight is [8, 1, 3, 3]; expected [16, 1, 3, 3]" "$T/ch16"
model minf 's/^min_nb_erb_freqs = .*/min_nb_erb_freqs = 3/'
refuse filterbank 65 "does not match the ERB bands of config.ini" "$T/minf"
model badbool 's/^enc_concat = .*/enc_concat = maybe/'
refuse bad_bool 65 "enc_concat = 'maybe'" "$T/badbool"
model dropout 's/^lsnr_dropout = .*/lsnr_dropout = true/'
refuse lsnr_dropout 65 "lsnr_dropout = true is not supported" "$T/dropout"
model la 's/^conv_lookahead = .*/conv_lookahead = 1/'
refuse lookahead 65 "conv_lookahead 1 < df_lookahead 2" "$T/la"
printf 'not a model\n' >"$T/junk.bin"
refuse junk 65 "not a model folder" "$T/junk.bin"
printf 'PK\003\004garbage' >"$T/bad.zip"
refuse bad_zip 65 "bad.zip" "$T/bad.zip"
expect_exit usage 64 python3 "$CONV" "$FIX"

#!/bin/sh
# t_convert_larsnet.sh - scripts/convert-larsnet.py: the LarsNet fixture's config
# and five checkpoints convert to one .safetensors holding every tensor of the five
# U-Nets under <stem>.<name> (num_batches_tracked dropped), byte-identical, with the
# larsnet.* metadata; --dtype f16 converts; hostile or wrong inputs are refused
# with their exit codes (os.system in a pickle never runs, truncated zip, missing
# file, wrong number of checkpoints, wrong stems, F not a multiple of 64, a
# checkpoint that does not match the config) and write nothing.  stemsplit refuses
# (65) a LarsNet file whose stemsplit.chunking is not stft_blocks, and stft_blocks
# for an architecture without the geometry.  Standard library only.
. "$(dirname "$0")/lib.sh"
CONV="$SS_ROOT/scripts/convert-larsnet.py"
FIX="$SS_ROOT/tests/fixtures/larsnet/small"
if ! command -v python3 >/dev/null 2>&1; then
    skip convert_larsnet "python3 not found"; exit 0
fi
P="$FIX/kick.pth $FIX/snare.pth $FIX/toms.pth $FIX/hihat.pth $FIX/cymbals.pth"

cat >"$T/check.py" <<'EOF2'
import json, struct, sys
sys.path.insert(0, sys.argv[3])
import torchckpt
out, fix, dtype = sys.argv[1], sys.argv[2], sys.argv[4]
def die(m): print(m); sys.exit(1)
b = open(out, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__")
want_meta = {"stemsplit.architecture": "larsnet", "stemsplit.sources": "kick,snare,toms,hihat,cymbals",
             "stemsplit.samplerate": "44100", "stemsplit.channels": "2", "larsnet.n_fft": "128",
             "larsnet.hop": "32", "larsnet.F": "64", "larsnet.T": "64", "larsnet.widths": "2,4,4,8,8,8"}
for k, v in want_meta.items():
    if meta.get(k) != v: die("metadata %s = %r, want %r" % (k, meta.get(k), v))
count = 0
for stem in ("kick", "snare", "toms", "hihat", "cymbals"):
    ck = torchckpt.Checkpoint("%s/%s.pth" % (fix, stem))
    st = ck.obj["model_state_dict"]
    for k, t in st.items():
        name = stem + "." + k
        if k.endswith("num_batches_tracked"):
            if name in h: die("%s should be dropped" % name)
            continue
        if name not in h: die("%s missing" % name)
        e = h[name]
        if e["shape"] != list(t.size): die("%s shape" % name)
        lo, hi = e["data_offsets"]
        data = ck.tensor(t, k)[2]
        if dtype == "keep":
            if e["dtype"] != "F32" or b[8 + n + lo:8 + n + hi] != data: die("%s values differ" % name)
        elif e["dtype"] != "F16" or hi - lo != len(data) // 2:
            die("%s not converted to F16" % name)
        count += 1
if count != len(h): die("%d tensors, %d expected" % (len(h), count))
print("ok", count)
EOF2

expect_exit convert 0 python3 "$CONV" -o "$T/ln.safetensors" "$FIX/config.yaml" $P
check tensors_and_metadata python3 "$T/check.py" "$T/ln.safetensors" "$FIX" "$SS_ROOT/scripts" keep
expect_exit convert_f16 0 python3 "$CONV" --dtype f16 -o "$T/ln16.safetensors" "$FIX/config.yaml" $P
check f16 python3 "$T/check.py" "$T/ln16.safetensors" "$FIX" "$SS_ROOT/scripts" f16
if [ -x "$STEMSPLIT" ]; then
    expect_exit f16_runs 0 "$STEMSPLIT" -q -d cpu -m "$T/ln16.safetensors" -o "$T/sep" "$FIX/mix.wav"
fi

# refuse NAME CODE TEXT ARGS...: exit CODE, TEXT in the message, no output
refuse() {
    rn=$1 rc=$2 rt=$3; shift 3
    expect_exit "refuse_$rn" "$rc" python3 "$CONV" -o "$T/r_$rn.safetensors" "$@"
    check "message_$rn" grep -qF "$rt" "$T/out.refuse_$rn"
    check "no_output_$rn" test ! -e "$T/r_$rn.safetensors"
}
mkdir -p "$T/x"
python3 - "$T/x" "$T/PWNED" "$FIX/kick.pth" <<'EOF2'
import os, pickle, sys, zipfile
out, marker, real = sys.argv[1:4]
class Evil:
    def __reduce__(self): return (os.system, ("touch " + marker,))
with zipfile.ZipFile(os.path.join(out, "evil.pth"), "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps({"model_state_dict": Evil()}, protocol=2))
    z.writestr("archive/byteorder", "little")
data = open(real, "rb").read()
open(os.path.join(out, "truncated.pth"), "wb").write(data[:len(data) // 2])
EOF2
sed 's/^  sr: .*//' "$FIX/config.yaml" >"$T/x/nosr.yaml"
sed 's/^  F: 64/  F: 96/' "$FIX/config.yaml" >"$T/x/f96.yaml"
sed -e 's/^  F: 64/  F: 128/' -e 's/^  n_fft: 128/  n_fft: 256/' "$FIX/config.yaml" >"$T/x/f128.yaml"
sed 's/^  toms:/  tom:/' "$FIX/config.yaml" >"$T/x/stems.yaml"
K="$FIX/kick.pth"
refuse evil 65 "refusing to unpickle global" "$FIX/config.yaml" "$T/x/evil.pth" $K $K $K $K
check no_exec test ! -e "$T/PWNED"
refuse truncated 65 "truncated.pth" "$FIX/config.yaml" $K "$T/x/truncated.pth" $K $K $K
refuse missing 66 "nope.pth" "$FIX/config.yaml" $K $K "$T/x/nope.pth" $K $K
refuse four 64 "need five checkpoints" "$FIX/config.yaml" $K $K $K $K
refuse no_sr 65 "global.sr" "$T/x/nosr.yaml" $P
refuse f96 65 "multiples of 64" "$T/x/f96.yaml" $P
refuse f128 65 "input_norm.weight is [64]; expected [128]" "$T/x/f128.yaml" $P
refuse stems 65 "inference_models lists" "$T/x/stems.yaml" $P
refuse config_missing 66 "no such file" "$T/x/none.yaml" $P

# stemsplit.chunking: LarsNet runs on whole-track STFT blocks only, and only an
# architecture with the geometry takes stft_blocks (both 65 at load)
cat >"$T/setmeta.py" <<'EOF2'
import json, struct, sys
src, dst, key, val = sys.argv[1:5]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h["__metadata__"][key] = val
j = json.dumps(h, separators=(",", ":")).encode()
j += b" " * (-len(j) % 8)
open(dst, "wb").write(struct.pack("<Q", len(j)) + j + b[8 + n:])
EOF2
if [ -x "$STEMSPLIT" ] && [ -f "$T/ln.safetensors" ]; then
    python3 "$T/setmeta.py" "$T/ln.safetensors" "$T/ln_demucs.safetensors" stemsplit.chunking demucs
    expect_exit larsnet_chunking_demucs_is_65 65 "$STEMSPLIT" -q -d cpu -m "$T/ln_demucs.safetensors" -o "$T/sep2" "$FIX/mix.wav"
    check larsnet_chunking_message grep -q "whole-track STFT blocks only" "$T/out.larsnet_chunking_demucs_is_65"
    python3 "$T/setmeta.py" "$SS_ROOT/models/bandsplit/bandsplit4.safetensors" "$T/bs_stftb.safetensors" \
        stemsplit.chunking stft_blocks
    expect_exit stft_blocks_other_arch_is_65 65 "$STEMSPLIT" -q -d cpu -m "$T/bs_stftb.safetensors" -o "$T/sep3" "$FIX/mix.wav"
    check stft_blocks_other_arch_message grep -q "expected demucs or msst" "$T/out.stft_blocks_other_arch_is_65"
fi

#!/bin/sh
# t_convert_msst.sh - scripts/convert-msst.py: every RoFormer and MDX23C fixture
# converts to a valid .safetensors with every state-dict tensor under its own name
# (MDX23C: less BatchNorm's num_batches_tracked), the Mel band tables and the
# metadata; hostile or unsupported inputs (os.system in the pickle, truncated zip,
# missing key, PoPE, linear attention, MDX23C shapes the reference cannot run, ...)
# are refused with their exit codes without running anything.  Python 3 standard library only.
# With PyYAML, scripts/miniyaml.py is also compared with yaml.unsafe_load on the
# fixture configs, a tricky sample, and MSST's configs when .ref/msst is present.
. "$(dirname "$0")/lib.sh"
CONV="$SS_ROOT/scripts/convert-msst.py"
FIX="$SS_ROOT/tests/fixtures/roformer"
MFIX="$SS_ROOT/tests/fixtures/mdx23c"
if ! command -v python3 >/dev/null 2>&1; then
    skip convert_msst "python3 not found"; exit 0
fi

# check.py OUT.safetensors CKPT [KEY=VALUE ...]: valid layout; the tensors are exactly
# the checkpoint's (names, dtypes, shapes; read with torchckpt) plus mel.* for Mel;
# every KEY=VALUE in the metadata (KEY=- : absent).
cat >"$T/check.py" <<'EOF'
import json, struct, sys
sys.path.insert(0, sys.argv[4])
import torchckpt
out, ckpt, arch = sys.argv[1], sys.argv[2], sys.argv[3]
def die(m): print(m); sys.exit(1)
b = open(out, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
if n % 8 or 8 + n > len(b): die("bad header length")
h = json.loads(b[8:8 + n]); meta = h.pop("__metadata__")
size = {"F32": 4, "F16": 2, "BF16": 2}; spans = []
for k, v in h.items():
    c = 1
    for d in v["shape"]: c *= d
    lo, hi = v["data_offsets"]
    if hi - lo != c * size[v["dtype"]] or lo % size[v["dtype"]]: die("%s: bad span" % k)
    spans.append((lo, hi))
pos = 0
for lo, hi in sorted(spans):
    if lo != pos: die("hole or overlap at %d" % lo)
    pos = hi
if 8 + n + pos != len(b): die("data area size")
ck = torchckpt.Checkpoint(ckpt); st = ck.obj
if "state_dict" in st and not isinstance(st["state_dict"], torchckpt.TensorRef): st = st["state_dict"]
if arch == "mdx23c":                         # training counters are not written
    st = {k: t for k, t in st.items() if not k.endswith(".num_batches_tracked")}
want = {k: (t.dtype.st, list(t.size)) for k, t in st.items()}
got = {k: (v["dtype"], v["shape"]) for k, v in h.items() if not k.startswith("mel.")}
if got != want: die("tensors differ: %s" % sorted(set(got) ^ set(want))[:4])
for k, t in st.items():                      # values: byte-identical to the checkpoint's
    lo, hi = h[k]["data_offsets"]
    if b[8 + n + lo:8 + n + hi] != ck.tensor(t, k)[2]: die("%s: values differ" % k)
mel = sorted(k for k in h if k.startswith("mel."))
if arch == "mel_band_roformer":
    if mel != ["mel.freq_indices", "mel.num_bands_per_freq", "mel.num_freqs_per_band"]: die("mel tensors %s" % mel)
    vals = {}
    for k in mel:
        lo, hi = h[k]["data_offsets"]
        if h[k]["dtype"] != "F32": die("%s not F32" % k)
        vals[k] = struct.unpack("<%df" % ((hi - lo) // 4), b[8 + n + lo:8 + n + hi])
    nb, nf = int(meta["roformer.num_bands"]), int(meta["roformer.stft_n_fft"]) // 2 + 1
    fpb, bpf, idx = vals["mel.num_freqs_per_band"], vals["mel.num_bands_per_freq"], vals["mel.freq_indices"]
    if len(fpb) != nb or len(bpf) != nf or len(idx) != sum(fpb) or sum(bpf) != sum(fpb): die("mel table sizes")
    if min(bpf) < 1 or idx[0] != 0 or idx[-1] != nf - 1: die("mel coverage")
    # band widths are the band_split input widths: 2 * width * channels
    C = int(meta["stemsplit.channels"])
    for i, w in enumerate(fpb):
        if h["band_split.to_features.%d.0.gamma" % i]["shape"] != [2 * int(w) * C]: die("band %d width" % i)
elif mel: die("mel tensors in a %s file" % arch)
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    if v == "-":
        if k in meta: die("%s present: %r" % (k, meta[k]))
    elif meta.get(k) != v: die("%s: %r, want %r" % (k, meta.get(k), v))
if not all(isinstance(v, str) for v in meta.values()): die("non-string metadata")
EOF

conv() { n=$1; shift; expect_exit "$n" 0 python3 "$CONV" -o "$T/$n.safetensors" "$@"; }
chk() { c=$1 arch=$2; shift 2
    d=$FIX; [ "$arch" = mdx23c ] && d=$MFIX
    check "valid_$c" python3 "$T/check.py" "$T/$c.safetensors" "$d/$c/model.ckpt" "$arch" "$SS_ROOT/scripts" "$@"; }
for c in bs_stereo_1stem bs_mono_4stem mel_stereo_1stem mel_mono_4stem bs_normalize; do
    [ -f "$FIX/$c/model.ckpt" ] || { fail "fixture_$c" "missing $FIX/$c"; continue; }
    conv "$c" "$FIX/$c/config.yaml" "$FIX/$c/model.ckpt"
done
# shellcheck disable=SC2086
chk bs_stereo_1stem bs_roformer stemsplit.architecture=bs_roformer stemsplit.sources=vocals \
    stemsplit.residual=instrumental stemsplit.channels=2 msst.num_overlap=2 msst.normalize=false \
    roformer.depth=2 roformer.num_stems=1 roformer.stereo=true roformer.mask_estimator_depth=2 \
    roformer.mlp_expansion_factor=1 roformer.zero_dc=true roformer.skip_connection=false \
    roformer.stft_n_fft=256 roformer.stft_hop_length=64 roformer.time_transformer_depth=1 \
    roformer.freq_transformer_depth=1 roformer.freqs_per_bands=4,4,4,4,4,4,4,4,8,8,8,8,8,8,16,16,17 \
    roformer.num_bands=- stemsplit.samplerate=44100 stemsplit.segment=2048/11025 msst.chunk_size=8192 \
    msst.batch_size=1 roformer.ff_mult=4 roformer.dim=32 roformer.heads=2 roformer.dim_head=16 \
    roformer.stft_win_length=256 roformer.stft_normalized=false "stemsplit.converter=convert-msst.py 1.0"
chk bs_mono_4stem bs_roformer stemsplit.sources=drums,bass,other,vocals stemsplit.residual=- \
    stemsplit.channels=1 msst.num_overlap=4 roformer.num_stems=4 roformer.stereo=false \
    roformer.skip_connection=true roformer.mask_estimator_depth=1 roformer.mlp_expansion_factor=4 \
    roformer.freq_transformer_depth=2 roformer.stft_hop_length=128
chk mel_stereo_1stem mel_band_roformer stemsplit.architecture=mel_band_roformer \
    stemsplit.sources=vocals stemsplit.residual=instrumental stemsplit.channels=2 \
    roformer.num_bands=12 roformer.sample_rate=44100 roformer.mask_estimator_depth=1 \
    roformer.zero_dc=true roformer.freqs_per_bands=- roformer.depth=1 roformer.ff_mult=4
chk mel_mono_4stem mel_band_roformer stemsplit.sources=drums,bass,other,vocals \
    stemsplit.residual=- stemsplit.channels=1 roformer.num_bands=8 roformer.mask_estimator_depth=2 \
    roformer.zero_dc=false roformer.stft_hop_length=64
chk bs_normalize bs_roformer stemsplit.sources=vocals,other stemsplit.residual=- msst.normalize=true \
    roformer.num_stems=2 roformer.mask_estimator_depth=1 roformer.stereo=true

# MDX23C: every hyperparameter as mdx23c.*, the norm and act as the forward pass reads them
for c in in_2scale_gelu bn_4scale_relu gn_target_elu id_3stem; do
    [ -f "$MFIX/$c/model.ckpt" ] || { fail "fixture_$c" "missing $MFIX/$c"; continue; }
    conv "$c" "$MFIX/$c/config.yaml" "$MFIX/$c/model.ckpt"
done
chk in_2scale_gelu mdx23c stemsplit.architecture=mdx23c stemsplit.sources=vocals,other \
    stemsplit.residual=- stemsplit.channels=2 stemsplit.samplerate=44100 stemsplit.segment=752/11025 \
    msst.chunk_size=3008 msst.num_overlap=2 msst.normalize=false msst.batch_size=1 mdx23c.n_fft=256 \
    mdx23c.hop_length=64 mdx23c.dim_f=96 mdx23c.num_subbands=2 mdx23c.num_scales=2 mdx23c.scale=2,2 \
    mdx23c.num_blocks_per_scale=2 mdx23c.num_channels=8 mdx23c.growth=4 mdx23c.bottleneck_factor=4 \
    mdx23c.norm=InstanceNorm mdx23c.act=gelu mdx23c.num_target_instruments=2 roformer.ff_mult=- \
    "stemsplit.converter=convert-msst.py 1.0"
chk bn_4scale_relu mdx23c stemsplit.sources=drums,bass,other,vocals mdx23c.norm=BatchNorm \
    mdx23c.act=relu mdx23c.num_scales=4 mdx23c.num_target_instruments=4 msst.num_overlap=4
chk gn_target_elu mdx23c stemsplit.sources=vocals stemsplit.residual=instrumental \
    mdx23c.norm=GroupNorm2 mdx23c.act=elu0.5 mdx23c.scale=1,2 mdx23c.num_target_instruments=1
chk id_3stem mdx23c stemsplit.sources=kick,snare,toms mdx23c.norm=Identity mdx23c.act=gelu

# --dtype f32 widens the fp16 fixture; the Mel tables stay F32 either way.
expect_exit dtype_f32 0 python3 "$CONV" --dtype f32 -o "$T/f32.safetensors" "$FIX/mel_mono_4stem/config.yaml" "$FIX/mel_mono_4stem/model.ckpt"
check dtype_f32_all python3 -c "
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]]); h.pop('__metadata__')
sys.exit(0 if {v['dtype'] for v in h.values()} == {'F32'} else 1)" "$T/f32.safetensors"

# Refusals.  Crafted inputs: configs edited from a fixture's, pickles with stand-in
# modules named like torch's so the pickles reference the real global names.
B="$FIX/bs_stereo_1stem"; M="$FIX/mel_stereo_1stem"
cat >"$T/craft.py" <<'EOF'
import collections, io, os, pickle, sys, types, zipfile
out, marker, B = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = open(os.path.join(B, "config.yaml")).read()
def w(name, text):
    open(os.path.join(out, name), "w").write(text)
w("pope.yaml", cfg.replace("  stereo: true\n", "  stereo: true\n  use_pope: true\n"))
w("linear.yaml", cfg.replace("linear_transformer_depth: 0", "linear_transformer_depth: 1"))
w("winlen.yaml", cfg.replace("stft_win_length: 256", "stft_win_length: 200"))
w("window_fn.yaml", cfg.replace("  stereo: true\n", "  stereo: true\n  stft_window_fn: torch.hamming_window\n"))
w("no_samplerate.yaml", cfg.replace("  sample_rate: 44100\n", ""))
w("no_dim.yaml", cfg.replace("  dim: 32\n", ""))
w("no_overlap.yaml", cfg.replace("  num_overlap: 2\n", ""))
w("bands_sum.yaml", cfg.replace("    - 17\n", "    - 18\n"))
w("num_stems.yaml", cfg.replace("  num_stems: 1\n", "  num_stems: 2\n"))
w("shape.yaml", cfg.replace("  dim: 32\n", "  dim: 48\n"))
w("mel_for_bs.yaml", cfg.replace("  freqs_per_bands: !!python/tuple\n", "  num_bands: 8\n  xfreqs_per_bands: !!python/tuple\n"))
w("bad_yaml.yaml", cfg.replace("  dim: 32\n", "  dim: [32\n"))
mdx = open(os.path.join(os.path.dirname(B), "..", "mdx23c", "in_2scale_gelu", "config.yaml")).read()
w("mdx_act.yaml", mdx.replace("  act: gelu\n", "  act: tanh\n"))
w("mdx_elu.yaml", mdx.replace("  act: gelu\n", "  act: elu\n"))
w("mdx_subbands.yaml", mdx.replace("  num_subbands: 2\n", "  num_subbands: 5\n"))
w("mdx_hop.yaml", mdx.replace("  chunk_size: 3008\n", "  chunk_size: 3000\n"))
w("mdx_frames.yaml", mdx.replace("  chunk_size: 3008\n", "  chunk_size: 3072\n"))
w("mdx_mono.yaml", mdx.replace("  num_channels: 2\n", "  num_channels: 1\n"))
w("mdx_growth.yaml", mdx.replace("  growth: 4\n", ""))
w("mdx_width.yaml", mdx.replace("  num_channels: 8\n", "  num_channels: 6\n"))
w("mdx_bottleneck.yaml", mdx.replace("  bottleneck_factor: 4\n", "  bottleneck_factor: 64\n"))
w("not_roformer.yaml", "audio:\n  sample_rate: 44100\nmodel:\n  dim: 8\n")
def module(name, **attrs):
    m = types.ModuleType(name)
    for k, v in attrs.items():
        v.__module__, v.__qualname__, v.__name__ = name, k, k
        setattr(m, k, v)
    sys.modules[name] = m
def _rebuild_tensor_v2(*a): pass
class FloatStorage: pass
module("torch", FloatStorage=FloatStorage); module("torch._utils", _rebuild_tensor_v2=_rebuild_tensor_v2)
class Store:
    def __init__(self, key, n): self.key, self.n = key, n
class Tensor:
    def __init__(self, store, shape): self.store, self.shape = store, shape
    def __reduce__(self):
        stride, acc = [], 1
        for d in reversed(self.shape): stride.insert(0, acc); acc *= d
        return (_rebuild_tensor_v2, (self.store, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))
class P(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", FloatStorage, obj.key, "cpu", obj.n) if isinstance(obj, Store) else None
class Evil:
    def __reduce__(self): return (os.system, ("touch " + marker,))
def save(name, obj, raw=None, data=b"\0" * 64):
    buf = io.BytesIO()
    if raw is None: P(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(os.path.join(out, name), "w") as z:
        z.writestr("archive/data.pkl", raw if raw is not None else buf.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", data)
t = Tensor(Store("0", 16), [4, 4])
save("evil.ckpt", collections.OrderedDict([("final_norm.gamma", t), ("x", Evil())]))
save("evil_raw.ckpt", None, raw=b"\x80\x02cos\nsystem\nX" + len("touch " + marker).to_bytes(4, "little")
     + ("touch " + marker).encode() + b"\x85R.")
save("not_tensors.ckpt", {"epoch": 3, "lr": 0.1})
save("short_storage.ckpt", {"final_norm.gamma": Tensor(Store("0", 1000), [1000])})
save("missing.ckpt", {"model.band_split.to_features.0.0.gamma": Tensor(Store("0", 16), [16])})
save("prefixed.ckpt", {"model_state_dict": {"module.band_split.bogus": t, "module.final_norm.gamma": t}})
# a truncated copy of a real checkpoint
data = open(os.path.join(B, "model.ckpt"), "rb").read()
open(os.path.join(out, "truncated.ckpt"), "wb").write(data[:len(data) // 2])
EOF
mkdir -p "$T/x"
if python3 "$T/craft.py" "$T/x" "$T/PWNED" "$B"; then
    refuse() { rn=$1 code=$2 msg=$3; shift 3
        expect_exit "refuse_$rn" "$code" python3 "$CONV" -o "$T/r_$rn.safetensors" "$@"
        check "msg_$rn" grep -qF -- "$msg" "$T/out.refuse_$rn"
        check "no_output_$rn" test ! -e "$T/r_$rn.safetensors"
    }
    refuse evil 65 "evil.ckpt: refusing to unpickle global" "$B/config.yaml" "$T/x/evil.ckpt"
    check msg_evil_global grep -qF "evil.ckpt: refusing to unpickle global posix.system" "$T/out.refuse_evil"
    refuse evil_raw 65 "evil_raw.ckpt: refusing to unpickle global os.system: not on the allow-list" "$B/config.yaml" "$T/x/evil_raw.ckpt"
    check no_exec test ! -e "$T/PWNED"
    refuse truncated 65 "truncated.ckpt: " "$B/config.yaml" "$T/x/truncated.ckpt"
    refuse not_tensors 65 "not_tensors.ckpt: not a state dict" "$B/config.yaml" "$T/x/not_tensors.ckpt"
    refuse missing_tensor 65 "missing.ckpt: tensor layers.0.0.layers.0.0.norm.gamma missing" "$M/config.yaml" "$T/x/missing.ckpt"
    # wrapper and prefix dropped: the unexpected tensor is named without module.
    refuse prefixed 65 "prefixed.ckpt: unexpected tensor band_split.bogus for this bs_roformer config" "$B/config.yaml" "$T/x/prefixed.ckpt"
    refuse pope 65 "pope.yaml: model.use_pope=true" "$T/x/pope.yaml" "$B/model.ckpt"
    refuse linear 65 "linear.yaml: model.linear_transformer_depth=1" "$T/x/linear.yaml" "$B/model.ckpt"
    refuse win_length 65 "winlen.yaml: model.stft_win_length=200 differs" "$T/x/winlen.yaml" "$B/model.ckpt"
    refuse window_fn 65 "window_fn.yaml: model.stft_window_fn=" "$T/x/window_fn.yaml" "$B/model.ckpt"
    refuse no_samplerate 65 "no_samplerate.yaml: audio.sample_rate missing" "$T/x/no_samplerate.yaml" "$B/model.ckpt"
    refuse no_dim 65 "no_dim.yaml: model.dim missing" "$T/x/no_dim.yaml" "$B/model.ckpt"
    refuse no_overlap 65 "no_overlap.yaml: inference.num_overlap missing" "$T/x/no_overlap.yaml" "$B/model.ckpt"
    refuse bands_sum 65 "bands_sum.yaml: model.freqs_per_bands sums to 130" "$T/x/bands_sum.yaml" "$B/model.ckpt"
    refuse num_stems 65 "num_stems.yaml: model.num_stems=2 but the config names 1 output stem" "$T/x/num_stems.yaml" "$B/model.ckpt"
    refuse shape 65 "model.ckpt: tensor layers.0.0.layers.0.0.norm.gamma is [32]; the config" "$T/x/shape.yaml" "$B/model.ckpt"
    refuse arch_mismatch 65 "model.ckpt: has final_norm.gamma, a BS-RoFormer tensor" "$T/x/mel_for_bs.yaml" "$B/model.ckpt"
    refuse bad_yaml 65 "bad_yaml.yaml: line" "$T/x/bad_yaml.yaml" "$B/model.ckpt"
    MX="$MFIX/in_2scale_gelu/model.ckpt"
    refuse mdx_act 65 "mdx_act.yaml: model.act='tanh': expected gelu, relu or eluALPHA" "$T/x/mdx_act.yaml" "$MX"
    refuse mdx_elu 65 "mdx_elu.yaml: model.act='elu': expected elu followed by alpha" "$T/x/mdx_elu.yaml" "$MX"
    refuse mdx_subbands 65 "mdx_subbands.yaml: audio.dim_f=96 is not a multiple of model.num_subbands=5" "$T/x/mdx_subbands.yaml" "$MX"
    refuse mdx_hop 65 "mdx_hop.yaml: chunk_size=3000 is not a multiple of audio.hop_length=64" "$T/x/mdx_hop.yaml" "$MX"
    refuse mdx_frames 65 "mdx_frames.yaml: chunk_size=3072 gives 49 frames, not a multiple of model.scale[0]^num_scales=4" "$T/x/mdx_frames.yaml" "$MX"
    refuse mdx_mono 65 "mdx_mono.yaml: audio.num_channels=1: the reference's inverse STFT handles two channels only" "$T/x/mdx_mono.yaml" "$MX"
    refuse mdx_growth 65 "mdx_growth.yaml: model.growth missing" "$T/x/mdx_growth.yaml" "$MX"
    refuse mdx_bottleneck 65 "mdx_bottleneck.yaml: 48 frequency rows at scale 0: model.bottleneck_factor=64 leaves none" "$T/x/mdx_bottleneck.yaml" "$MX"
    refuse mdx_width 65 "in_2scale_gelu/model.ckpt: tensor first_conv.weight is [8, 8, 1, 1]; the config" "$T/x/mdx_width.yaml" "$MX"
    refuse mdx_for_roformer 65 "model.ckpt: no first_conv.weight: not an MDX23C checkpoint" "$MFIX/in_2scale_gelu/config.yaml" "$B/model.ckpt"
    refuse roformer_for_mdx 65 "in_2scale_gelu/model.ckpt: no band_split tensors: not a RoFormer checkpoint" "$B/config.yaml" "$MX"
    refuse not_roformer 65 "not_roformer.yaml: model.freqs_per_bands (BS-RoFormer) or model.num_bands" "$T/x/not_roformer.yaml" "$B/model.ckpt"
    refuse wrong_model 65 "mel_mono_4stem/model.ckpt: unexpected tensor mask_estimators.0.to_freqs.0.0.4.weight" "$M/config.yaml" "$FIX/mel_mono_4stem/model.ckpt"
    refuse missing_ckpt 66 "nope.ckpt: no such file" "$B/config.yaml" "$T/nope.ckpt"
    refuse missing_config 66 "nope.yaml: no such file" "$T/nope.yaml" "$B/model.ckpt"
    refuse cant_create 73 "cannot write" "$B/config.yaml" "$B/model.ckpt" -o "$T/no/such/dir/out.safetensors"
else
    fail craft "could not craft the test inputs"
fi
expect_exit usage_no_args 64 python3 "$CONV"
expect_exit usage_one_arg 64 python3 "$CONV" -o "$T/u.safetensors" "$B/config.yaml"

# miniyaml against PyYAML (a dev check: CI has no python3-yaml).
if python3 -c "import yaml" 2>/dev/null; then
    cat >"$T/ycmp.py" <<'EOF'
import glob, math, os, sys, yaml
sys.path.insert(0, sys.argv[1]); import miniyaml
def same(a, b):
    if type(a) != type(b): return False
    if isinstance(a, dict): return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)): return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a): return math.isnan(b)
    return a == b
bad = 0
for f in sys.argv[2:]:
    if not same(yaml.unsafe_load(open(f)), miniyaml.load_file(f)): print("differs:", f); bad += 1
sys.exit(1 if bad else 0)
EOF
    cat >"$T/tricky.yaml" <<'EOF'
# comment
a: 1
b: -2
c: 1.0e-05
d: 1e-5
e: .5
f: 0x1F
g: 017
h: "x # not a comment"   # comment
i: 'it''s'
j: [1, 2.5, 'three', "four", true, null, ~]
k: !!python/tuple [4096, 2048]
l:
- x
- y
m:
  - {p: 1, q: [1, 2]}
  - r: 3
    s: 4
n: !!python/tuple
  - 1
  - 2
o:
  !!python/tuple # comment
  - 0.2
p: [1,
    2, 3]
q:
r: yes
s: Off
t: +7
u: 1_000
v: -.inf
w: "\u00e9\t"
y: key with spaces
z:
  - - 1
    - 2
EOF
    check yaml_fixtures_tricky python3 "$T/ycmp.py" "$SS_ROOT/scripts" "$T/tricky.yaml" "$FIX"/*/config.yaml
    set -- "$SS_ROOT"/.ref/msst/configs/*.yaml "$SS_ROOT"/.ref/msst/configs/*/*.yaml
    if [ -f "$1" ]; then
        check yaml_msst_configs python3 "$T/ycmp.py" "$SS_ROOT/scripts" "$@"
    else
        skip yaml_msst_configs ".ref/msst/configs not present"
    fi
else
    skip yaml_vs_pyyaml "python3-yaml not installed"
fi
exit 0

#!/bin/sh
# t_convert.sh - scripts/convert-demucs.py: every HTDemucs fixture converts to a
# valid .safetensors holding exactly the reference state dict; hostile and
# foreign checkpoints (os.system in the pickle, Demucs v2, quantized, legacy,
# not a zip) are refused with 65 without running anything.
. "$(dirname "$0")/lib.sh"
CONV="$SS_ROOT/scripts/convert-demucs.py"
FIX="$SS_ROOT/tests/fixtures/htdemucs"
if ! command -v python3 >/dev/null 2>&1; then
    skip convert "python3 not found"; exit 0
fi

# verify.py OUT.safetensors STATE.txt [CONVERT.ARGS] [DTYPE]: the file is a
# valid safetensors file (layout, alignment, no holes) whose tensors are
# exactly STATE.txt's names/shapes (dtypes too unless DTYPE forces one), with
# the stemsplit metadata; for a bag, stemsplit.bag and the weights.
cat >"$T/verify.py" <<'EOF'
import json, struct, sys
path, state = sys.argv[1], sys.argv[2]
args = open(sys.argv[3]).read().split() if len(sys.argv) > 3 else []
force = sys.argv[4] if len(sys.argv) > 4 else None
def die(msg):
    print(msg); sys.exit(1)
b = open(path, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
if n % 8 or 8 + n > len(b): die("bad header length %d" % n)
h = json.loads(b[8:8 + n].decode("utf-8"))
meta = h.pop("__metadata__")
size = {"F32": 4, "F16": 2, "BF16": 2}
spans = []
for k, v in h.items():
    cnt = 1
    for d in v["shape"]: cnt *= d
    lo, hi = v["data_offsets"]
    if hi - lo != cnt * size[v["dtype"]]: die("%s: size mismatch" % k)
    if lo % size[v["dtype"]]: die("%s: misaligned" % k)
    spans.append((lo, hi))
spans.sort()
pos = 0
for lo, hi in spans:
    if lo != pos: die("hole or overlap at %d" % lo)
    pos = hi
if 8 + n + pos != len(b): die("data area %d bytes, file has %d" % (pos, len(b) - 8 - n))
want = {}
for line in open(state):
    name, dt, shp = line.split()
    want[name] = (force or dt, [int(x) for x in shp.split(",")] if shp != "" else [])
got = {k: (v["dtype"], v["shape"]) for k, v in h.items()}
if got != want:
    miss = sorted(set(want) - set(got)); extra = sorted(set(got) - set(want))
    bad = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    die("tensors differ: missing %s extra %s mismatched %s" % (miss[:3], extra[:3], bad[:3]))
for key in ("stemsplit.architecture", "stemsplit.sources", "stemsplit.samplerate",
            "stemsplit.channels", "stemsplit.segment", "stemsplit.converter"):
    if key not in meta: die("metadata %s missing" % key)
if meta["stemsplit.architecture"] != "htdemucs": die("architecture")
if not all(isinstance(v, str) for v in meta.values()): die("non-string metadata")
bag = any(k.startswith("models.") for k in want)
if bag:
    nb = int(meta["stemsplit.bag"])
    if "--weights" in args:
        w = args[args.index("--weights") + 1]
        rows = [[float(x) for x in r.split(",")] for r in w.split(";")]
        got_w = [[float(x) for x in r.split(",")] for r in meta["stemsplit.bag.weights"].split(";")]
        if rows != got_w: die("weights %s != %s" % (got_w, rows))
    for i in range(nb):
        if "models.%d.htdemucs.depth" % i not in meta: die("per-model hyperparameters missing")
elif "htdemucs.depth" not in meta or "htdemucs.sources" not in meta:
    die("hyperparameters missing")
EOF

# Convert every fixture and check it against the state dict the reference used.
nfix=0
for d in "$FIX"/*/; do
    [ -f "$d/state.txt" ] || continue
    c=$(basename "$d"); nfix=$((nfix + 1))
    # shellcheck disable=SC2046
    expect_exit "convert_$c" 0 python3 "$CONV" -o "$T/$c.safetensors" $(ls "$d"/model*.th) $(cat "$d/convert.args")
    check "valid_$c" python3 "$T/verify.py" "$T/$c.safetensors" "$d/state.txt" "$d/convert.args"
done
[ "$nfix" -gt 0 ] || fail fixtures "no fixtures in $FIX"

# Metadata values of a known fixture.
cat >"$T/meta.py" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
m = json.loads(b[8:8 + n])["__metadata__"]
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    if m.get(k) != v:
        print("%s: %r, want %r" % (k, m.get(k), v)); sys.exit(1)
EOF
if [ -f "$T/t1_base.safetensors" ]; then
    check meta_t1_base python3 "$T/meta.py" "$T/t1_base.safetensors" \
        stemsplit.sources=drums,bass,other,vocals stemsplit.samplerate=44100 \
        stemsplit.channels=2 stemsplit.segment=1/2 htdemucs.channels=8 htdemucs.t_layers=1 \
        htdemucs.depth=4 htdemucs.nfft=4096 htdemucs.cac=true htdemucs.channels_time=none \
        htdemucs.freq_emb=0.2 htdemucs.dconv_init=0.001 htdemucs.t_lr=none \
        htdemucs.t_cape_glob_loc_scale=5000.0,1.0,1.4 htdemucs.segment=1/2 \
        htdemucs.time_stride=2 htdemucs.sources=drums,bass,other,vocals
fi
if [ -f "$T/bottom_dconv3.safetensors" ]; then
    check meta_float_segment python3 "$T/meta.py" "$T/bottom_dconv3.safetensors" \
        stemsplit.segment=3/5 htdemucs.segment=0.6 htdemucs.bottom_channels=48 htdemucs.dconv_mode=3
fi
if [ -f "$T/bag2.safetensors" ]; then
    check meta_bag python3 "$T/meta.py" "$T/bag2.safetensors" stemsplit.bag=2 \
        stemsplit.bag.weights='1,0,0.25,1;0,1,0.75,0.5' models.1.htdemucs.sources=drums,bass,other,vocals \
        models.1.htdemucs.bottom_channels=32 models.0.htdemucs.bottom_channels=0 stemsplit.segment=1/2
fi

# --dtype: f32 holds exactly the F16 values; bf16 and f16 round trips; --name.
if [ -d "$FIX/t1_base" ]; then
    expect_exit dtype_f32 0 python3 "$CONV" -o "$T/f32.safetensors" --dtype f32 --name tiny "$FIX/t1_base/model.th"
    check dtype_f32_valid python3 "$T/verify.py" "$T/f32.safetensors" "$FIX/t1_base/state.txt" /dev/null F32
    expect_exit dtype_bf16 0 python3 "$CONV" -o "$T/bf16.safetensors" --dtype bf16 "$FIX/t1_base/model.th"
    check dtype_bf16_valid python3 "$T/verify.py" "$T/bf16.safetensors" "$FIX/t1_base/state.txt" /dev/null BF16
    expect_exit dtype_f16_from_f32 0 python3 "$CONV" -o "$T/f16.safetensors" --dtype f16 "$FIX/t1_base/model.th"
    cat >"$T/values.py" <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__"); base = 8 + n; out = {}
    for k, v in h.items():
        lo, hi = v["data_offsets"]; raw = b[base + lo:base + hi]; c = (hi - lo) // {"F32": 4, "F16": 2, "BF16": 2}[v["dtype"]]
        if v["dtype"] == "F32": out[k] = struct.unpack("<%df" % c, raw)
        elif v["dtype"] == "F16": out[k] = struct.unpack("<%de" % c, raw)
        else: out[k] = struct.unpack("<%df" % c, b"".join(b"\0\0" + raw[2 * i:2 * i + 2] for i in range(c)))
    return out
a, f, bf = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
for k in a:
    if a[k] != f[k]: print("f32 != f16 values in", k); sys.exit(1)
    for x, y in zip(a[k], bf[k]):
        if abs(x - y) > abs(x) * 2 ** -8 + 1e-38: print("bf16 rounding off in", k, x, y); sys.exit(1)
EOF
    check dtype_values python3 "$T/values.py" "$T/t1_base.safetensors" "$T/f32.safetensors" "$T/bf16.safetensors"
    check dtype_f16_same_is_copy cmp -s "$T/t1_base.safetensors" "$T/f16.safetensors"
    cat >"$T/rounding.py" <<'EOF2'
import importlib.util, struct, sys
spec = importlib.util.spec_from_file_location("conv", sys.argv[1]); c = importlib.util.module_from_spec(spec)
spec.loader.exec_module(c)
f32 = lambda *v: struct.pack("<%df" % len(v), *v)
# F32 -> F16: nearest even (1 + 2^-11 is a tie -> 1; 1 + 3*2^-11 -> 1 + 2^-9), subnormals kept
assert c.from_f32("F16", f32(1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24, -0.0), "t") == struct.pack("<4e", 1.0, 1 + 2 ** -9, 2 ** -24, -0.0)
# F32 -> BF16: nearest even on the top 16 bits; NaN stays NaN; inf stays inf
bits = lambda b: struct.unpack("<%dH" % (len(b) // 2), b)
assert bits(c.from_f32("BF16", f32(1 + 2 ** -8, 1 + 3 * 2 ** -8, float("inf")), "t")) == (0x3F80, 0x3F82, 0x7F80)
n = bits(c.from_f32("BF16", struct.pack("<I", 0x7FC00000), "t"))[0]; assert n & 0x7F80 == 0x7F80 and n & 0x7F
assert c.to_f32("BF16", struct.pack("<H", 0x3F82)) == f32(1 + 2 ** -6)
try:
    c.from_f32("F16", f32(1e6), "big"); sys.exit("overflow not refused")
except c.Refuse:
    pass
EOF2
    check dtype_rounding python3 "$T/rounding.py" "$CONV"
    check name_meta python3 "$T/meta.py" "$T/f32.safetensors" stemsplit.name=tiny
fi

# Crafted checkpoints (stdlib pickle, protocol 2, with stand-in modules named
# like torch's and demucs's so the pickles reference the real global names).
cat >"$T/craft.py" <<'EOF'
import collections, io, os, pickle, sys, types, zipfile
out, marker = sys.argv[1], sys.argv[2]
def module(name, **attrs):
    m = types.ModuleType(name)
    for k, v in attrs.items():
        v.__module__, v.__qualname__, v.__name__ = name, k, k
        setattr(m, k, v)
    sys.modules[name] = m
    return m
def _rebuild_tensor_v2(*a): pass
class HalfStorage: pass
class HTDemucs: pass
class Demucs: pass
class HDemucs: pass
module("torch", HalfStorage=HalfStorage); module("torch._utils", _rebuild_tensor_v2=_rebuild_tensor_v2)
module("demucs"); module("demucs.htdemucs", HTDemucs=HTDemucs); module("demucs.demucs", Demucs=Demucs)
module("demucs.hdemucs", HDemucs=HDemucs)
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
        return ("storage", HalfStorage, obj.key, "cpu", obj.n) if isinstance(obj, Store) else None
class Evil:
    def __reduce__(self): return (os.system, ("touch " + marker,))
def save(name, pkg, raw=None):
    buf = io.BytesIO()
    if raw is None: P(buf, protocol=2).dump(pkg)
    with zipfile.ZipFile(os.path.join(out, name), "w") as z:
        z.writestr("archive/data.pkl", raw if raw is not None else buf.getvalue())
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", b"\0" * 64)
w = Tensor(Store("0", 16), [2, 4, 2])
base = {"args": [], "kwargs": {"sources": ["drums", "bass", "other", "vocals"]},
        "state": {"encoder.0.conv.weight": w}, "training_args": {}}
save("evil_reduce.th", dict(base, klass=HTDemucs, training_args={"x": Evil()}))
# raw opcodes: GLOBAL 'os system', the command, TUPLE1, REDUCE, STOP
save("evil_raw.th", None, raw=b"\x80\x02cos\nsystem\nX" + len("touch " + marker).to_bytes(4, "little")
     + ("touch " + marker).encode() + b"\x85R.")
save("demucs_v2.th", dict(base, klass=Demucs))
save("hdemucs.th", dict(base, klass=HDemucs))
save("quantizer.th", dict(base, klass=HTDemucs, quantizer="diffq"))
save("quantized_state.th", dict(base, klass=HTDemucs, state={"__quantized": True, "quantized": []}))
save("bare_state.th", {"encoder.0.conv.weight": w})
save("missing.th", dict(base, klass=HTDemucs))           # state lacks nearly everything
with open(os.path.join(out, "legacy.th"), "wb") as f:
    f.write(b"\x8a\x0a" + b"\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + b".")
with open(os.path.join(out, "notzip.th"), "wb") as f:
    f.write(b"hello, not a checkpoint\n")
EOF
mkdir -p "$T/evil"
if python3 "$T/craft.py" "$T/evil" "$T/PWNED"; then
    # The payload is live: plain pickle would run it (a control, in its own marker).
    python3 -c "import zipfile,pickle,sys; pickle.loads(zipfile.ZipFile(sys.argv[1]).read('archive/data.pkl').replace(b'PWNED', b'LIVE1'))" \
        "$T/evil/evil_raw.th" >/dev/null 2>&1
    check evil_payload_is_live test -f "$T/LIVE1"
    for e in evil_reduce evil_raw; do
        expect_exit "refuse_$e" 65 python3 "$CONV" -o "$T/$e.safetensors" "$T/evil/$e.th"
        check "no_exec_$e" test ! -e "$T/PWNED"
        check "no_output_$e" test ! -e "$T/$e.safetensors"
    done
    check msg_evil_raw grep -q "evil_raw.th: refusing to unpickle global os.system: not on the allow-list" "$T/out.refuse_evil_raw"
    check msg_evil_reduce grep -q "refusing to unpickle global posix.system" "$T/out.refuse_evil_reduce"
    expect_exit refuse_demucs_v2 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/demucs_v2.th"
    check msg_demucs_v2 grep -q "demucs_v2.th: checkpoint holds a demucs.demucs.Demucs model; stemsplit supports HTDemucs only" "$T/out.refuse_demucs_v2"
    expect_exit refuse_hdemucs 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/hdemucs.th"
    check msg_hdemucs grep -q "demucs.hdemucs.HDemucs model; stemsplit supports HTDemucs only" "$T/out.refuse_hdemucs"
    expect_exit refuse_quantizer 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/quantizer.th"
    check msg_quantizer grep -q "quantiz" "$T/out.refuse_quantizer"
    expect_exit refuse_quantized_state 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/quantized_state.th"
    expect_exit refuse_bare_state 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/bare_state.th"
    expect_exit refuse_missing_tensors 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/missing.th"
    expect_exit refuse_legacy 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/legacy.th"
    check msg_legacy grep -q "legacy" "$T/out.refuse_legacy"
    expect_exit refuse_notzip 65 python3 "$CONV" -o "$T/x.safetensors" "$T/evil/notzip.th"
    check no_output_refused test ! -e "$T/x.safetensors"
else
    fail craft "could not craft the test checkpoints"
fi

# Usage and bag errors.
expect_exit missing_input 66 python3 "$CONV" -o "$T/x.safetensors" "$T/does-not-exist.th"
expect_exit no_args 64 python3 "$CONV"
if [ -d "$FIX/t1_base" ] && [ -d "$FIX/s6_t2" ]; then
    expect_exit bag_sources_differ 65 python3 "$CONV" -o "$T/x.safetensors" "$FIX/t1_base/model.th" "$FIX/s6_t2/model.th"
    expect_exit weights_single_model 64 python3 "$CONV" -o "$T/x.safetensors" --weights 1,1,1,1 "$FIX/t1_base/model.th"
    expect_exit weights_bad_rows 64 python3 "$CONV" -o "$T/x.safetensors" --weights '1,1,1,1' "$FIX/t1_base/model.th" "$FIX/short/model.th"
    expect_exit weights_zero_total 64 python3 "$CONV" -o "$T/x.safetensors" --weights '1,0,1,1;1,0,1,1' "$FIX/t1_base/model.th" "$FIX/short/model.th"
    expect_exit bag_default_weights 0 python3 "$CONV" -o "$T/bagd.safetensors" "$FIX/t1_base/model.th" "$FIX/short/model.th"
    check bag_default_weights_meta python3 "$T/meta.py" "$T/bagd.safetensors" stemsplit.bag=2 'stemsplit.bag.weights=1,1,1,1;1,1,1,1'
fi
exit 0

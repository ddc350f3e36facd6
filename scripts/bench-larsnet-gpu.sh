#!/bin/sh
# bench-larsnet-gpu.sh STEMSPLIT WORKDIR [PARTS] - LarsNet on the GPU machine: the released
# architecture with random weights (make-larsnet-fixtures.py --full: five U-Nets and the
# reference's LarsNet.separate / separate_wiener of a 30 s mix), then
#   lsetup  the model, its 30 s reference and a 600 s mix (bench-torch.py mix)
#   lpar    stemsplit -d cuda --precision fp32, -d cuda, -d cpu -j 16 against the reference
#           (relative L2 per stem, bar 1e-4), and --wiener 2 against the reference's Wiener stems
#   lspeed  600 s on CUDA: stemsplit default (twice) and fp32, end to end (JSON report wall time,
#           peak device memory); PyTorch's LarsNet.separate on CUDA, fp32 and autocast, twice each
#   lcpu    30 s at 16 threads: stemsplit against LarsNet.separate on the CPU
# Needs python3 with torch and numpy, and polimi-ispl/larsnet under .ref/larsnet.
# The CPU comparison at 2 threads and the peak RSS on a long track: scripts/bench-larsnet.sh.
set -u
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") parts=${3:-lsetup lpar lspeed lcpu}
mkdir -p "$2" && W=$(cd "$2" && pwd) || exit 73
jt() { python3 -c "import json,sys; t=json.load(open('$1'))['total']; print('%s: wall %.3f s' % ('$2', t['wall_seconds']))"; }
run_part() {
case $1 in
lsetup)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  [ -f $W/mix-600.wav ] || python3 scripts/bench-torch.py mix $W/mix-600.wav 600
  [ -f $W/ln/full/cymbals.pth ] || python3 scripts/make-larsnet-fixtures.py --full $W/ln --seconds 30 2>&1 | tail -1
  d=$W/ln/full; python3 scripts/convert-larsnet.py -o $W/larsnet.safetensors $d/config.yaml $d/kick.pth $d/snare.pth $d/toms.pth $d/hihat.pth $d/cymbals.pth 2>&1 | tail -1 ;;
lpar)
  d=$W/ln/full
  for dv in "cuda --precision fp32" "cuda" "cpu -j 16"; do
    o=$W/lo-$(echo $dv | tr -d ' -'); rm -rf $o
    "$bin" -q -d $dv -m $W/larsnet.safetensors --sample-format f32 --clip none -o $o --filename "{stem}.{ext}" $d/mix.wav
    echo "larsnet -d $dv against PyTorch:"; python3 scripts/compare-stems.py $d/ref.safetensors $o --tol 1e-4 | tail -2
  done
  o=$W/lo-wiener; rm -rf $o
  "$bin" -q -d cuda --precision fp32 --wiener 2 -m $W/larsnet.safetensors --sample-format f32 --clip none -o $o --filename "{stem}.{ext}" $d/mix.wav
  echo "larsnet --wiener 2 cuda fp32 (against the reference's wiener tensor):"; python3 scripts/compare-stems.py --key wiener $d/ref.safetensors $o --tol 1e-4 2>&1 | tail -2 ;;
lspeed)
  for p in default default fp32; do
    pa=""; [ $p != default ] && pa="--precision $p"
    rm -rf $W/so; STEMSPLIT_CUDA_STATS=1 "$bin" -q -d cuda $pa -m $W/larsnet.safetensors -o $W/so --report-json $W/l-$p.json $W/mix-600.wav 2>$W/l-$p.log || tail -3 $W/l-$p.log
    jt $W/l-$p.json "stemsplit larsnet cuda $p (600 s)"; grep -i "peak" $W/l-$p.log | head -1
  done
  for amp in 0 1; do python3 - $W/ln/full $W/mix-600.wav $amp <<'PY'
import importlib.util, os, sys, time, wave
import numpy as np, torch
d, mix, amp = sys.argv[1], sys.argv[2], int(sys.argv[3])
spec = importlib.util.spec_from_file_location("mk", "scripts/make-larsnet-fixtures.py")
mk = importlib.util.module_from_spec(spec); spec.loader.exec_module(mk)
unet, larsnet = mk.load_reference(".ref/larsnet")
w = wave.open(mix); L = w.getnframes(); sw = w.getsampwidth()
raw = w.readframes(L)
x = (np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0) if sw == 2 else np.frombuffer(raw, dtype="<f4")
x = torch.from_numpy(x.reshape(L, 2).T.copy())
models = {}
for s in mk.STEMS:
    m = unet.UNetWaveform(input_size=(2, 2048, 512), device="cuda")
    m.load_state_dict(torch.load(os.path.join(d, s + ".pth"), map_location="cuda")["model_state_dict"])
    m.eval(); models[s] = m
ln = larsnet.LarsNet.__new__(larsnet.LarsNet); torch.nn.Module.__init__(ln)
ln.models, ln.device, ln.stems, ln.wiener_filter, ln.return_stft = models, "cuda", list(mk.STEMS), False, False
torch.backends.cudnn.benchmark = False
sys.stdout = open(os.devnull, "w")
for r in range(2):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); t = time.perf_counter()
    with torch.autocast("cuda", enabled=bool(amp)):
        out = ln.separate(x)
    out = {k: v.float().cpu() for k, v in out.items()}
    torch.cuda.synchronize(); t = time.perf_counter() - t
    sys.__stdout__.write("pytorch larsnet cuda amp=%d round %d: %.1f s of audio in %.2f s (%.1fx realtime), peak %.2f GiB (tf32 conv %s)\n" % (amp, r, L / 44100, t, L / 44100 / t, torch.cuda.max_memory_allocated() / 2**30, torch.backends.cudnn.allow_tf32))
PY
  done ;;
lcpu)
  rm -rf $W/co; "$bin" -q -d cpu -j 16 -m $W/larsnet.safetensors -o $W/co --report-json $W/lc.json $W/ln/full/mix.wav; jt $W/lc.json "stemsplit larsnet cpu -j16 30 s"
  python3 - $W/ln/full $W/ln/full/mix.wav <<'PY'
import importlib.util, os, sys, time, wave
import numpy as np, torch
d, mix = sys.argv[1], sys.argv[2]
torch.set_num_threads(16)
spec = importlib.util.spec_from_file_location("mk", "scripts/make-larsnet-fixtures.py")
mk = importlib.util.module_from_spec(spec); spec.loader.exec_module(mk)
unet, larsnet = mk.load_reference(".ref/larsnet")
w = wave.open(mix); L = w.getnframes(); sw = w.getsampwidth(); raw = w.readframes(L)
x = (np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0) if sw == 2 else np.frombuffer(raw, dtype="<f4")
x = torch.from_numpy(x.reshape(L, 2).T.copy())
models = {}
for s in mk.STEMS:
    m = unet.UNetWaveform(input_size=(2, 2048, 512), device="cpu")
    m.load_state_dict(torch.load(os.path.join(d, s + ".pth"), map_location="cpu")["model_state_dict"]); m.eval(); models[s] = m
ln = larsnet.LarsNet.__new__(larsnet.LarsNet); torch.nn.Module.__init__(ln)
ln.models, ln.device, ln.stems, ln.wiener_filter, ln.return_stft = models, "cpu", list(mk.STEMS), False, False
sys.stdout = open(os.devnull, "w"); t = time.perf_counter(); ln.separate(x); t = time.perf_counter() - t
sys.__stdout__.write("pytorch larsnet cpu 16 threads: %.1f s of audio in %.2f s\n" % (L / 44100, t))
PY
  ;;
*) echo "unknown part $1" >&2; exit 64 ;;
esac
}
cd "$(dirname "$0")/.." || exit 66
for p in $parts; do echo "=== $p $(date +%T)"; run_part "$p"; done

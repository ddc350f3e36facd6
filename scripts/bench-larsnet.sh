#!/bin/sh
# bench-larsnet.sh - LarsNet on the CPU: stemsplit against the PyTorch reference
# (polimi-ispl/larsnet's LarsNet.separate, torch.no_grad, the same five U-Nets),
# side by side on the same input and thread count, and stemsplit's peak RSS on a
# long input.  The model is the released architecture (widths 16..512, n_fft 4096,
# F 2048, T 512) with random weights unless LARSNET_DIR holds the real
# checkpoints (config.yaml, kick.pth ... cymbals.pth); speed does not depend on the
# weights.  Needs python3 with torch and numpy (/usr/bin/python3 here), and the
# reference under .ref/larsnet.
#
#   scripts/bench-larsnet.sh [SECONDS=51.7] [THREADS=2] [LONG_MINUTES=0]
#
# Prints one line per side (wall seconds, x realtime) and, with LONG_MINUTES > 0,
# stemsplit's peak RSS (/usr/bin/time -v) on a track that long.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
secs=${1:-51.7} threads=${2:-2} long=${3:-0}
py=${PYTHON:-/usr/bin/python3}
exe=${STEMSPLIT:-$root/stemsplit}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/bench-larsnet}
mkdir -p "$work"
dir=${LARSNET_DIR:-}
if [ -z "$dir" ]; then
    dir=$work/full
    if [ ! -f "$dir/cymbals.pth" ]; then
        echo "making the released architecture with random weights in $dir (and a 1 s reference)" >&2
        "$py" "$here/make-larsnet-fixtures.py" --full "$work" --seconds 1 >/dev/null 2>&1
    fi
fi
model=$work/larsnet_bench.safetensors
[ -f "$model" ] || python3 "$here/convert-larsnet.py" -o "$model" "$dir/config.yaml" "$dir/kick.pth" \
    "$dir/snare.pth" "$dir/toms.pth" "$dir/hihat.pth" "$dir/cymbals.pth" 2>/dev/null
mix=$work/mix_${secs}s.wav
[ -f "$mix" ] || sox -n -r 44100 -c 2 -b 16 "$mix" synth "$secs" pinknoise vol 0.3 \
    synth "$secs" sine 60 mix 2>/dev/null || sox -n -r 44100 -c 2 -b 16 "$mix" synth "$secs" pinknoise vol 0.3

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
# PyTorch: LarsNet.separate with the five UNetWaveform models, timed around separate() (model loading excluded)
"$py" - "$root" "$dir" "$mix" "$threads" <<'EOPY'
import importlib.util, os, sys, time
root, d, mix, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spec = importlib.util.spec_from_file_location("mk", os.path.join(root, "scripts", "make-larsnet-fixtures.py"))
mk = importlib.util.module_from_spec(spec); spec.loader.exec_module(mk)
unet, larsnet = mk.load_reference(os.path.join(root, ".ref", "larsnet"))
import numpy as np, torch, wave
torch.set_num_threads(threads)
w = wave.open(mix); L = w.getnframes()
x = np.frombuffer(w.readframes(L), dtype="<i2").reshape(L, 2).T.astype(np.float32) / 32768.0
models = {}
for s in mk.STEMS:
    m = unet.UNetWaveform(input_size=(2, 2048, 512), device="cpu")
    m.load_state_dict(torch.load(os.path.join(d, s + ".pth"), map_location="cpu")["model_state_dict"])
    m.eval(); models[s] = m
ln = larsnet.LarsNet.__new__(larsnet.LarsNet); torch.nn.Module.__init__(ln)
ln.models, ln.device, ln.stems, ln.wiener_filter, ln.return_stft = models, "cpu", list(mk.STEMS), False, False
sys.stdout = open(os.devnull, "w")
t = time.perf_counter(); ln.separate(torch.from_numpy(x)); t = time.perf_counter() - t
sys.stdout = sys.__stdout__
print("pytorch %s: %.1f s of audio in %.2f s, %.2fx realtime (%d threads)" % (torch.__version__, L / 44100, t, L / 44100 / t, threads))
EOPY
rm -rf "$work/out"
"$exe" -m "$model" -d cpu -j "$threads" -o "$work/out" "$mix" 2>&1 | grep -m1 'of audio in' | sed 's/^/stemsplit: /'
if [ "$long" != 0 ]; then
    lmix=$work/long_${long}min.wav
    [ -f "$lmix" ] || sox -n -r 44100 -c 2 -b 16 "$lmix" synth "$((long * 60))" pinknoise vol 0.3
    rm -rf "$work/outl"
    /usr/bin/time -v "$exe" -m "$model" -d cpu -j "$threads" -o "$work/outl" "$lmix" 2>"$work/time.log" | true
    grep -m1 'of audio in' "$work/time.log" | sed 's/^/stemsplit long: /'
    echo "stemsplit long: peak RSS $(awk '/Maximum resident/ { printf "%.0f MiB", $6 / 1024 }' "$work/time.log") for $long minutes"
    rm -rf "$work/outl"
fi

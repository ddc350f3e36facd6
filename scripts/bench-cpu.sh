#!/bin/sh
# bench-cpu.sh STEMSPLIT WORKDIR [SECONDS] [THREADS...]
# stemsplit vs the PyTorch reference on the CPU, side by side on one machine:
# the full-size htdemucs configuration (WORKDIR/model.th, made by
# parity-full.sh or make-reference.py --full), a SECONDS-long mixture (default
# 60), at each thread count (default "2 16").  stemsplit is timed end to end
# (file in -> stems on disk, model load excluded: the wall time it reports);
# PyTorch is timed on apply_model with the demucs CLI normalisation (audio
# already decoded).  Prints both real-time factors and the ratio.
set -eu
bin=$1 work=$2 secs=${3:-60}
shift 2; [ $# -gt 0 ] && shift
threads=${*:-2 16}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$work/model.th" ] || python3 "$here/make-reference.py" --full "$work" --seconds 30 --threads "$(nproc)"
[ -f "$work/model.safetensors" ] || python3 "$here/convert-demucs.py" -o "$work/model.safetensors" "$work/model.th"
mix="$work/bench-$secs.wav"
[ -f "$mix" ] || python3 "$here/bench-torch.py" mix "$mix" "$secs"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
for t in $threads; do
    torch_json=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$t")
    rm -rf "$work/bench-out"
    "$bin" -q -d cpu -j "$t" -m "$work/model.safetensors" -o "$work/bench-out" \
        --report-json "$work/bench-$t.json" "$mix"
    python3 - "$work/bench-$t.json" "$torch_json" "$t" <<'PY'
import json, sys
ss = json.load(open(sys.argv[1]))["total"]
pt = json.loads(sys.argv[2])
print("threads %s: stemsplit %.2fx realtime (%.1f s), pytorch %.2fx realtime (%.1f s), ratio %.2f"
      % (sys.argv[3], ss["rtf"], ss["wall_seconds"], pt["rtf"], pt["wall_seconds"], ss["rtf"] / pt["rtf"]))
PY
done

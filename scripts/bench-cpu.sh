#!/bin/sh
# bench-cpu.sh STEMSPLIT WORKDIR [SECONDS] [THREADS...]
# stemsplit vs the PyTorch reference on the CPU, side by side on one machine:
# the full-size htdemucs configuration (WORKDIR/model.th, made by
# parity-full.sh or make-reference.py --full), a SECONDS-long mixture (default
# 60), at each thread count (default "2 16").  stemsplit is timed end to end
# (file in -> stems on disk, model load excluded: the wall time it reports);
# PyTorch is timed on apply_model with the demucs CLI normalisation (audio
# already decoded).  Each side runs ROUNDS times (default 2), alternating; prints
# every run and the ratio of the faster of each.  PROFILE=1 adds, per thread
# count, one more stemsplit run with STEMSPLIT_PROFILE=1 (time per op; not timed
# against PyTorch: profiling synchronises every op).
set -eu
bin=$1 work=$2 secs=${3:-60} rounds=${ROUNDS:-2}
shift 2; [ $# -gt 0 ] && shift
threads=${*:-2 16}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$work/model.th" ] || python3 "$here/make-reference.py" --full "$work" --seconds 30 --threads "$(nproc)"
[ -f "$work/model.safetensors" ] || python3 "$here/convert-demucs.py" -o "$work/model.safetensors" "$work/model.th"
mix="$work/bench-$secs.wav"
[ -f "$mix" ] || python3 "$here/bench-torch.py" mix "$mix" "$secs"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
for t in $threads; do
    # ROUNDS alternating runs of each side; the faster of each is compared (these machines move
    # 10% and more between runs, both sides alike)
    tj="" sj=""
    r=0
    while [ "$r" -lt "$rounds" ]; do
        tj="$tj $(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$t")"
        rm -rf "$work/bench-out"
        "$bin" -q -d cpu -j "$t" -m "$work/model.safetensors" -o "$work/bench-out" \
            --report-json "$work/bench-$t-$r.json" "$mix"
        sj="$sj $work/bench-$t-$r.json"
        r=$((r + 1))
    done
    python3 - "$t" "$sj" "$tj" <<'PY'
import json, sys
ss = [json.load(open(f))["total"] for f in sys.argv[2].split()]
dec = json.JSONDecoder()
pts, s = [], sys.argv[3].strip()
while s:
    o, n = dec.raw_decode(s)
    pts.append(o)
    s = s[n:].strip()
for i, (a, b) in enumerate(zip(ss, pts)):
    print("  threads %s, round %d: stemsplit %.2fx realtime (%.1f s), pytorch %.2fx (%.1f s)"
          % (sys.argv[1], i + 1, a["rtf"], a["wall_seconds"], b["rtf"], b["wall_seconds"]))
a = max(ss, key=lambda r: r["rtf"])
b = max(pts, key=lambda r: r["rtf"])
print("threads %s: stemsplit %.2fx realtime (%.1f s), pytorch %.2fx realtime (%.1f s), ratio %.2f (the faster of %d runs each)"
      % (sys.argv[1], a["rtf"], a["wall_seconds"], b["rtf"], b["wall_seconds"], a["rtf"] / b["rtf"], len(ss)))
PY
    if [ "${PROFILE:-0}" = 1 ]; then
        rm -rf "$work/bench-out"
        echo "  threads $t, ops (STEMSPLIT_PROFILE=1, one more run):"
        STEMSPLIT_PROFILE=1 "$bin" -q -d cpu -j "$t" -m "$work/model.safetensors" -o "$work/bench-out" "$mix" \
            2>&1 | sed 's/^/    /'
    fi
done

#!/bin/sh
# bench-ab.sh BEFORE AFTER WORKDIR [ROUNDS]
# Two builds of stemsplit (e.g. two `make bundle` folders' bin/stemsplit) side by side on one
# machine, in one run, to show that a change did not regress: the full-size htdemucs
# configuration (WORKDIR/model.safetensors, made as in bench-cpu.sh), a 600 s mixture on the GPU
# (default precision; skipped without nvidia-smi) and a 60 s mixture on the CPU at 2 and 16
# threads (THREADS overrides).  Runs alternate BEFORE, AFTER, BEFORE, ... ROUNDS times each
# (default 3), each a fresh process; prints every run's wall time (its JSON report: file in ->
# stems on disk, model load excluded), each side's median and AFTER/BEFORE.
set -eu
before=$1 after=$2 work=$3 rounds=${4:-3}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$work/model.th" ] || python3 "$here/make-reference.py" --full "$work" --seconds 30 --threads "$(nproc)"
[ -f "$work/model.safetensors" ] || python3 "$here/convert-demucs.py" -o "$work/model.safetensors" "$work/model.th"
for s in 60 600; do
    [ -f "$work/bench-$s.wav" ] || python3 "$here/bench-torch.py" mix "$work/bench-$s.wav" "$s"
done
# one side: LABEL INPUT ARGS... -> prints "LABEL: before a b c (median m) after ... ratio r"
side() {
    label=$1 input=$2; shift 2
    r=1 files_b="" files_a=""
    while [ "$r" -le "$rounds" ]; do
        for v in before after; do
            bin=$before; [ "$v" = after ] && bin=$after
            rm -rf "$work/ab-out"
            "$bin" -q "$@" -m "$work/model.safetensors" -o "$work/ab-out" \
                --report-json "$work/ab-$v-$r.json" "$input" >/dev/null
            if [ "$v" = before ]; then files_b="$files_b $work/ab-$v-$r.json"; else files_a="$files_a $work/ab-$v-$r.json"; fi
        done
        r=$((r + 1))
    done
    python3 - "$label" "$files_b" "$files_a" <<'PY'
import json, statistics, sys
w = lambda fs: [json.load(open(f))["total"]["wall_seconds"] for f in fs.split()]
b, a = w(sys.argv[2]), w(sys.argv[3])
mb, ma = statistics.median(b), statistics.median(a)
print("%s: before %s (median %.3f s)  after %s (median %.3f s)  after/before %.3f" % (
    sys.argv[1], " ".join("%.3f" % x for x in b), mb, " ".join("%.3f" % x for x in a), ma, ma / mb))
PY
}
if command -v nvidia-smi >/dev/null 2>&1; then
    echo "machine: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), $(nproc) cores"
    side "cuda 600 s" "$work/bench-600.wav" -d cuda
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
for t in ${THREADS:-2 16}; do
    side "cpu -j $t 60 s" "$work/bench-60.wav" -d cpu -j "$t"
done

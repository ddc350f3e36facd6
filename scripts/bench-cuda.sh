#!/bin/sh
# bench-cuda.sh STEMSPLIT WORKDIR [SECONDS] [PRECISIONS] [BATCH]
# stemsplit on the GPU vs the PyTorch reference (demucs apply_model, same GPU,
# same run): the full-size htdemucs configuration (WORKDIR/model.th, made by
# parity-full.sh or make-reference.py --full; random weights), a SECONDS-long
# stereo 44.1 kHz mixture (default 600).  stemsplit runs per precision in
# PRECISIONS (default "default fp32"; "default" = no --precision option), end to
# end (file in -> stems on disk; model load excluded: the wall time of its JSON
# report; the whole process's time, device start and model load included, is
# printed beside it, against the whole process of PyTorch's end-to-end runs
# (interpreter start and imports included)), --batch BATCH when given, twice (each a fresh process),
# the faster kept.  PyTorch (fp32, shifts 0) is timed twice on
# apply_model with the CLI normalisation (audio already decoded) and the faster
# run is kept; and twice end to end like the demucs CLI (decode, separate,
# rescale, 16-bit WAVs written: bench-torch.py --e2e), the faster kept.  Prints
# the real-time factors, stemsplit's ratio to each and peak GPU memory
# (stemsplit: device memory in use sampled by the backend, STEMSPLIT_CUDA_STATS;
# PyTorch: torch.cuda.max_memory_allocated).  PyTorch's defaults run its CUDA
# convolutions in TF32 (torch.backends.cudnn.allow_tf32); it is also timed with
# TF32 off (--fp32 strict, once model only and once end to end), the fair
# comparison for stemsplit's strict fp32; and end to end with --libs 1 (its GPU
# libraries started after the model load, outside the timed region), the
# counterpart of stemsplit's CUDA warm-up thread, which starts cuBLAS beside
# its own model load.  Last, the steady state of a process
# that separates many files (the runs above are each a process's first file):
# PyTorch after a 10 s warm-up pass (--warm 1, model only and end to end)
# against the 600 s file's own time in one stemsplit run after a 30 s file
# (default precision).
set -eu
bin=$1 work=$2 secs=${3:-600} precs=${4:-default fp32} batch=${5:-}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$work/model.th" ] || python3 "$here/make-reference.py" --full "$work" --seconds 30 --threads "$(nproc)"
[ -f "$work/model.safetensors" ] || python3 "$here/convert-demucs.py" -o "$work/model.safetensors" "$work/model.th"
mix="$work/bench-$secs.wav"
[ -f "$mix" ] || python3 "$here/bench-torch.py" mix "$mix" "$secs"
echo "machine: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), $(nproc) cores"
t1=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda)
t2=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda)
p_a=$(date +%s.%N)
t3=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --e2e "$work/torch-out")
p_b=$(date +%s.%N)
t4=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --e2e "$work/torch-out")
p_c=$(date +%s.%N)
echo "$p_a $p_b $p_c" >"$work/torch-e2e.proc"
t5=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --fp32 strict)
t6=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --fp32 strict --e2e "$work/torch-out")
# (these two may fail without stopping the rest: their line then says so)
nolibs='{"rtf": 0, "wall_seconds": 1e9}'
t7=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --libs 1 --e2e "$work/torch-out") || t7=$nolibs
t8=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --libs 1 --e2e "$work/torch-out") || t8=$nolibs
echo "pytorch: $t1"
echo "pytorch: $t2"
echo "pytorch: $t3"
echo "pytorch: $t4"
echo "pytorch: $t5"
echo "pytorch: $t6"
echo "pytorch: $t7"
echo "pytorch: $t8"
for p in $precs; do
    popt=""
    [ "$p" = default ] || popt="--precision $p"
    # twice, each a fresh process (a cold run), the faster kept: as PyTorch above
    for r in 1 2; do
        rm -rf "$work/bench-out"
        t_a=$(date +%s.%N)
        # shellcheck disable=SC2086
        STEMSPLIT_CUDA_STATS=1 "$bin" -v -d cuda $popt ${batch:+--batch $batch} -m "$work/model.safetensors" \
            -o "$work/bench-out" --report-json "$work/bench-$p-$r.json" "$mix" 2>"$work/bench-$p-$r.log" || {
            cat "$work/bench-$p-$r.log"; exit 1; }
        t_b=$(date +%s.%N)
        echo "$t_a $t_b" >"$work/bench-$p-$r.proc"
    done
    python3 - "$work/bench-$p" <<'PY'
import json, shutil, sys
b = sys.argv[1]
w = [json.load(open("%s-%d.json" % (b, r)))["total"]["wall_seconds"] for r in (1, 2)]
pw = [(lambda t: float(t[1]) - float(t[0]))(open("%s-%d.proc" % (b, r)).read().split()) for r in (1, 2)]
print("  stemsplit runs: %.2f s, %.2f s (the faster kept); whole process (device start, model load, "
      "separation, exit): %.2f s, %.2f s" % (w[0], w[1], pw[0], pw[1]))
t = [float(v) for v in open(b.rsplit("/", 1)[0] + "/torch-e2e.proc").read().split()]
tp = min(t[1] - t[0], t[2] - t[1])
print("  whole process, faster of two: stemsplit %.2f s, pytorch end to end (python3 bench-torch.py --e2e: "
      "interpreter start, imports, model load, separation, stems written) %.2f s: ratio %.2f" % (min(pw), tp, tp / min(pw)))
r = 1 if w[0] <= w[1] else 2
shutil.copy("%s-%d.json" % (b, r), b + ".json")
shutil.copy("%s-%d.log" % (b, r), b + ".log")
PY
    grep -E "precision|batch|peak|realtime" "$work/bench-$p.log" | sed 's/^/  /'
    python3 - "$work/bench-$p.json" "$t1" "$t2" "$p" "$work/bench-$p.log" "$t3" "$t4" "$t5" "$t6" "$t7" "$t8" <<'PY'
import json, re, sys
rep = json.load(open(sys.argv[1]))
ss = rep["total"]
pt = min((json.loads(sys.argv[2]), json.loads(sys.argv[3])), key=lambda r: r["wall_seconds"])
pe = min((json.loads(sys.argv[6]), json.loads(sys.argv[7])), key=lambda r: r["wall_seconds"])
pl = min((json.loads(sys.argv[10]), json.loads(sys.argv[11])), key=lambda r: r["wall_seconds"])
log = open(sys.argv[5]).read()
m = re.search(r"peak device memory in use ([0-9.]+) MiB", log)
peak = float(m.group(1)) / 1024 if m else float("nan")
ps, pse = json.loads(sys.argv[8]), json.loads(sys.argv[9])
print("%s (%s): stemsplit %.1fx realtime (%.2f s); pytorch fp32 model only %.1fx (%.2f s): ratio %.2f; "
      "pytorch fp32 end to end %.1fx (%.2f s): ratio %.2f; pytorch strict fp32 (TF32 off) model only %.1fx: "
      "ratio %.2f, end to end %.1fx: ratio %.2f; peak GPU memory stemsplit %.2f GiB, pytorch %.2f GiB"
      % (sys.argv[4], rep["device"]["precision"], ss["rtf"], ss["wall_seconds"], pt["rtf"], pt["wall_seconds"],
         ss["rtf"] / pt["rtf"], pe["rtf"], pe["wall_seconds"], ss["rtf"] / pe["rtf"], ps["rtf"], ss["rtf"] / ps["rtf"],
         pse["rtf"], ss["rtf"] / pse["rtf"], peak, pt.get("peak_gpu_bytes", 0) / 2**30))
if pl["rtf"] > 0:
    print("%s: against pytorch fp32 end to end with its GPU libraries started at load (--libs 1, as stemsplit's "
          "warm-up thread starts cuBLAS beside its load): %.1fx (%.2f s): ratio %.2f"
          % (sys.argv[4], pl["rtf"], pl["wall_seconds"], ss["rtf"] / pl["rtf"]))
else:
    print("%s: pytorch with --libs 1 did not run (see its error above)" % sys.argv[4])
PY
done
w1=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --warm 1)
w2=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" "$(nproc)" --device cuda --warm 1 --e2e "$work/torch-out")
echo "pytorch: $w1"
echo "pytorch: $w2"
first="$work/bench-30.wav"
[ -f "$first" ] || python3 "$here/bench-torch.py" mix "$first" 30
rm -rf "$work/bench-out"
"$bin" -q -d cuda ${batch:+--batch $batch} -m "$work/model.safetensors" -o "$work/bench-out" \
    --report-json "$work/bench-warm.json" "$first" "$mix"
python3 - "$work/bench-warm.json" "$mix" "$w1" "$w2" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
f = [f for f in rep["files"] if f["input"] == sys.argv[2]][0]
m, e = json.loads(sys.argv[3]), json.loads(sys.argv[4])
print("steady state (default, second file of a process / PyTorch after a warm-up pass): stemsplit %.1fx (%.2f s); "
      "pytorch model only %.1fx (%.2f s): ratio %.2f; end to end %.1fx (%.2f s): ratio %.2f"
      % (f["rtf"], f["wall_seconds"], m["rtf"], m["wall_seconds"], f["rtf"] / m["rtf"], e["rtf"], e["wall_seconds"],
         f["rtf"] / e["rtf"]))
PY

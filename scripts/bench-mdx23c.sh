#!/bin/sh
# bench-mdx23c.sh STEMSPLIT WORKDIR [PARTS]
# The MDX23C measurements of docs/performance.md.  Needs Python, torch, numpy, PyYAML and
# MSST's files in .ref/ (see scripts/make-mdx23c-fixtures.py).  PARTS (default
# "setup parity speed cpu" on a GPU machine):
#   setup   the two full-size configurations (UVR's InstVoc HQ, a DrumSep 6-stem one:
#           scripts/mdx23c-configs/) with random weights, MSST's demix of a 30 s mix as the
#           reference (on CUDA, fp32), both converted with convert-msst.py; 10 s and 600 s mixes
#   parity  stemsplit -d cuda --precision fp32, -d cuda, -d cpu -j 16 against the reference
#           (relative L2 per stem; bar 1e-4 in fp32) and the default precision against fp32
#   speed   600 s on CUDA: stemsplit default (twice) and fp32, end to end (JSON report wall
#           time), peak device memory (STEMSPLIT_CUDA_STATS); MSST (bench-msst.py, batch 4)
#           fp32 and AMP (its default)
#   cpu     10 s at 16 threads: stemsplit against MSST on the CPU
#   long    a 60-minute mix through InstVoc HQ on CUDA: time and peak RSS
#   mid     (any machine, no GPU) a mid-size InstVoc HQ (num_channels 32, growth 32) with
#           random weights, 10 s at THREADS threads (default 2): stemsplit against MSST, one
#           after the other, twice; parity against MSST's demix of the same mix
# THREADS (environment) sets the thread count of `mid`; MODELS the models of the other parts;
# PYTHON the Python with torch (python3).
set -u
bin=$1 W=$2 parts=${3:-setup parity speed cpu}
threads=${THREADS:-2}
py=${PYTHON:-python3}          # a Python with torch, numpy and PyYAML
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
models=${MODELS:-mdx23c_instvoc_hq mdx23c_drumsep_6stem}   # MODELS (environment): a subset
jt() { python3 -c "import json; t=json.load(open('$1'))['total']; print('%s: wall %.3f s' % ('$2', t['wall_seconds']))"; }
for part in $parts; do
echo "=== $part $(date +%T)"
case $part in
setup)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  for m in $models; do
    [ -d "$W/full/$m" ] ||
      "$py" "$here/make-mdx23c-fixtures.py" --full "$W/full" --seconds 30 --device cuda "$m" 2>&1 | tail -2
    [ -f "$W/$m.safetensors" ] ||
      python3 "$here/convert-msst.py" -o "$W/$m.safetensors" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt"
  done
  for s in 10 600 3600; do [ -f "$W/mix-$s.wav" ] || "$py" "$here/bench-torch.py" mix "$W/mix-$s.wav" $s; done ;;
parity)
  for m in $models; do
    for d in "cuda --precision fp32" "cuda" "cpu -j 16"; do
      o=$W/po-$m-$(echo "$d" | tr -d ' -'); rm -rf "$o"
      # shellcheck disable=SC2086
      "$bin" -q -d $d -m "$W/$m.safetensors" --sample-format f32 --clip none -o "$o" --filename "{stem}.{ext}" \
        "$W/full/$m/mix.wav" || continue
      echo "$m -d $d:"; "$py" "$here/compare-stems.py" "$W/full/$m/ref.safetensors" "$o" --tol 1e-4 | tail -1
    done
    echo "$m default precision against fp32:"
    "$py" "$here/compare-stems.py" --against-dir "$W/po-$m-cudaprecisionfp32" "$W/full/$m/ref.safetensors" \
      "$W/po-$m-cuda" --tol 1e-3 | tail -1
  done ;;
speed)
  for m in $models; do
    for rp in 1:default 2:default 1:fp32; do
      r=${rp%:*} p=${rp#*:} pa=""; [ "$p" = fp32 ] && pa="--precision fp32"
      rm -rf "$W/so"
      # shellcheck disable=SC2086
      STEMSPLIT_CUDA_STATS=1 "$bin" -q -d cuda $pa -m "$W/$m.safetensors" -o "$W/so" --report-json "$W/s-$m-$p-$r.json" \
        "$W/mix-600.wav" 2>"$W/s-$m-$p-$r.log" && jt "$W/s-$m-$p-$r.json" "stemsplit $m cuda $p round $r"
      grep -i "peak" "$W/s-$m-$p-$r.log" | head -1
    done
    "$py" "$here/bench-msst.py" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt" "$W/mix-600.wav" --device cuda --amp 0 --batch 4 2>/dev/null
    "$py" "$here/bench-msst.py" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt" "$W/mix-600.wav" --device cuda --amp 1 --batch 4 2>/dev/null
  done ;;
cpu)
  for m in $models; do
    rm -rf "$W/co"; "$bin" -q -d cpu -j 16 -m "$W/$m.safetensors" -o "$W/co" --report-json "$W/c-$m.json" "$W/mix-10.wav" &&
      jt "$W/c-$m.json" "stemsplit $m cpu -j 16, 10 s"
    "$py" "$here/bench-msst.py" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt" "$W/mix-10.wav" --device cpu --threads 16 2>/dev/null
  done ;;
long)
  rm -rf "$W/lo"
  /usr/bin/time -f "60-minute mix: %e s, peak RSS %M KB" "$bin" -q -d cuda -m "$W/mdx23c_instvoc_hq.safetensors" -o "$W/lo" \
    "$W/mix-3600.wav" ;;
mid)
  m=mdx23c_instvoc_hq
  [ -d "$W/mid/$m" ] || "$py" "$here/make-mdx23c-fixtures.py" --full "$W/mid" --seconds 10 \
    --set model.num_channels=32 --set model.growth=32 "$m" 2>&1 | tail -1
  [ -f "$W/mid.safetensors" ] ||
    python3 "$here/convert-msst.py" -o "$W/mid.safetensors" "$W/mid/$m/config.yaml" "$W/mid/$m/model.ckpt"
  uptime
  for r in 1 2; do
    rm -rf "$W/mo"; "$bin" -q -d cpu -j "$threads" -m "$W/mid.safetensors" --sample-format f32 --clip none -o "$W/mo" \
      --filename "{stem}.{ext}" --report-json "$W/m-$r.json" "$W/mid/$m/mix.wav" &&
      jt "$W/m-$r.json" "stemsplit mid-size cpu -j $threads, 10 s, round $r"
    "$py" "$here/bench-msst.py" "$W/mid/$m/config.yaml" "$W/mid/$m/model.ckpt" "$W/mid/$m/mix.wav" --device cpu \
      --threads "$threads" 2>/dev/null
  done
  "$py" "$here/compare-stems.py" "$W/mid/$m/ref.safetensors" "$W/mo" --tol 1e-4 | tail -1
  uptime ;;
*) echo "unknown part $part" >&2; exit 64 ;;
esac
done

#!/bin/sh
# bench-roformer.sh STEMSPLIT WORKDIR [PARTS]
# The RoFormer measurements of docs/performance.md on a GPU machine with Python, torch, numpy,
# PyYAML and MSST's files in .ref/ (see scripts/make-roformer-fixtures.py).  PARTS (default
# "setup parity speed cpu"):
#   setup   the two full-size configurations (viperx BS-RoFormer ep_317, Kim's Mel-Band RoFormer)
#           with random weights, MSST's demix of a 30 s mix as the reference (on CUDA, fp32),
#           both converted with convert-msst.py; 10 s and 600 s mixes
#   parity  stemsplit -d cuda --precision fp32, -d cuda, -d cpu -j 16 against the reference
#           (relative L2 per stem; bar 1e-4 in fp32) and the default precision against fp32
#   speed   600 s on CUDA: stemsplit default (twice) and fp32, end to end (JSON report wall time),
#           peak device memory (STEMSPLIT_CUDA_STATS); MSST (bench-msst.py, batch 4) fp32 without
#           flash attention and AMP with it
#   cpu     10 s at 16 threads: stemsplit against MSST on the CPU
#   long    a 60-minute mix through the Mel-Band model on CUDA: time and peak RSS
set -u
bin=$1 W=$2 parts=${3:-setup parity speed cpu}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
models="bs_roformer_viperx_317 mel_band_roformer_kj"
jt() { python3 -c "import json; t=json.load(open('$1'))['total']; print('%s: wall %.3f s' % ('$2', t['wall_seconds']))"; }
for part in $parts; do
echo "=== $part $(date +%T)"
case $part in
setup)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
  [ -d "$W/full/mel_band_roformer_kj" ] ||
    python3 "$here/make-roformer-fixtures.py" --full "$W/full" --seconds 30 --device cuda 2>&1 | tail -2
  for m in $models; do
    [ -f "$W/$m.safetensors" ] ||
      python3 "$here/convert-msst.py" -o "$W/$m.safetensors" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt"
  done
  for s in 10 600 3600; do [ -f "$W/mix-$s.wav" ] || python3 "$here/bench-torch.py" mix "$W/mix-$s.wav" $s; done ;;
parity)
  for m in $models; do
    for d in "cuda --precision fp32" "cuda" "cpu -j 16"; do
      o=$W/po-$m-$(echo "$d" | tr -d ' -'); rm -rf "$o"
      # shellcheck disable=SC2086
      "$bin" -q -d $d -m "$W/$m.safetensors" --sample-format f32 --clip none -o "$o" --filename "{stem}.{ext}" \
        "$W/full/$m/mix.wav" || continue
      echo "$m -d $d:"; python3 "$here/compare-stems.py" "$W/full/$m/ref.safetensors" "$o" --tol 1e-4 | tail -1
    done
    echo "$m default precision against fp32:"
    python3 "$here/compare-stems.py" --against-dir "$W/po-$m-cudaprecisionfp32" "$W/full/$m/ref.safetensors" \
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
    python3 "$here/bench-msst.py" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt" "$W/mix-600.wav" --device cuda --amp 0 --flash 0 --batch 4 2>/dev/null
    python3 "$here/bench-msst.py" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt" "$W/mix-600.wav" --device cuda --amp 1 --flash 1 --batch 4 2>/dev/null
  done ;;
cpu)
  for m in $models; do
    rm -rf "$W/co"; "$bin" -q -d cpu -j 16 -m "$W/$m.safetensors" -o "$W/co" --report-json "$W/c-$m.json" "$W/mix-10.wav" &&
      jt "$W/c-$m.json" "stemsplit $m cpu -j 16, 10 s"
    python3 "$here/bench-msst.py" "$W/full/$m/config.yaml" "$W/full/$m/model.ckpt" "$W/mix-10.wav" --device cpu --threads 16 2>/dev/null
  done ;;
long)
  rm -rf "$W/lo"
  /usr/bin/time -f "60-minute mix: %e s, peak RSS %M KB" "$bin" -q -d cuda -m "$W/mel_band_roformer_kj.safetensors" -o "$W/lo" \
    "$W/mix-3600.wav" ;;
*) echo "unknown part $part" >&2; exit 64 ;;
esac
done

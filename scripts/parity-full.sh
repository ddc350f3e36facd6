#!/bin/sh
# parity-full.sh STEMSPLIT WORKDIR [SECONDS] [DEVICE]
# Full-size HTDemucs (the released htdemucs configuration, random weights with
# O(1) LayerScale/norms) on a SECONDS-long mixture (default 30): the PyTorch
# reference (scripts/make-reference.py --full, fp32 CPU) against stemsplit
# (-d DEVICE, default cpu, f32 output).  Prints the relative L2 per stem;
# exits 1 if any exceeds 1e-4.  Needs torch + the demucs source (.ref/).
set -eu
bin=$1 work=$2 secs=${3:-30} dev=${4:-cpu}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
if [ ! -f "$work/ref.safetensors" ]; then
    python3 "$here/make-reference.py" --full "$work" --seconds "$secs" --threads "$(nproc)"
fi
python3 "$here/convert-demucs.py" -o "$work/model.safetensors" "$work/model.th"
rm -rf "$work/out"
"$bin" -v -d "$dev" -m "$work/model.safetensors" --sample-format f32 --clip none -o "$work/out" \
    --filename '{stem}.{ext}' "$work/mix.wav"
python3 "$here/compare-stems.py" "$work/ref.safetensors" "$work/out" --tol 1e-4

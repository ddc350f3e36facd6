#!/bin/sh
# bench-mps.sh STEMSPLIT WORKDIR [SECONDS]
# On an Apple-silicon Mac: stemsplit --device mps against the PyTorch reference
# (demucs apply_model on torch's "mps" device) on the same machine, same track:
# the full-size htdemucs configuration (WORKDIR/model.th; made here with
# make-reference.py --full if missing; random weights) and a SECONDS-long
# stereo 44.1 kHz mixture (default 60).  stemsplit is timed end to end (file
# in -> stems on disk, model load excluded: the wall time of its JSON report);
# PyTorch on apply_model with the demucs CLI normalisation, audio decoded.
# Prints both real-time factors and the ratio (target >= 5x; a seed figure to
# beat: UVR on a Mac took 64 s for 51.7 s of audio, 0.8x realtime).
# Needs python3 with torch (MPS build) and the demucs source in .ref/ (see
# ../shared/README.md).  Not yet run: this repository has had no Mac.
set -eu
bin=$1 work=$2 secs=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
[ -f "$work/model.th" ] || python3 "$here/make-reference.py" --full "$work" --seconds 8
[ -f "$work/model.safetensors" ] || python3 "$here/convert-demucs.py" -o "$work/model.safetensors" "$work/model.th"
mix="$work/bench-$secs.wav"
[ -f "$mix" ] || python3 "$here/bench-torch.py" mix "$mix" "$secs"
echo "machine: $(sysctl -n machdep.cpu.brand_string 2>/dev/null || uname -m), $(sysctl -n hw.ncpu 2>/dev/null || echo '?') cores"
torch_json=$(python3 "$here/bench-torch.py" time "$work/model.th" "$mix" 0 --device mps)
rm -rf "$work/bench-out"
"$bin" -q -d mps -m "$work/model.safetensors" -o "$work/bench-out" --report-json "$work/bench-mps.json" "$mix"
python3 - "$work/bench-mps.json" "$torch_json" <<'PY'
import json, sys
ss = json.load(open(sys.argv[1]))["total"]
pt = json.loads(sys.argv[2])
print("mps: stemsplit %.2fx realtime (%.1f s), pytorch %.2fx realtime (%.1f s), ratio %.2f"
      % (ss["rtf"], ss["wall_seconds"], pt["rtf"], pt["wall_seconds"], ss["rtf"] / pt["rtf"]))
PY

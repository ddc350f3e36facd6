#!/bin/sh
# bench-batch.sh - is per-file overhead amortised in a batch?
#
#   scripts/bench-batch.sh [N_FILES [SECONDS_PER_FILE]]      (default 200 files of 1 s)
#
# Separates N short files with the shipped bandsplit4 model two ways and
# prints files/second for each:
#   loop      a shell loop calling stemsplit once per file (process start,
#             model load, device set-up every time)
#   batch     one stemsplit over the folder (its stages pipelined)
# and the ratio batch/loop, with the batch's stage seconds.  Env: STEMSPLIT (binary, default
# ./stemsplit), MODEL (default models/bandsplit/bandsplit4.safetensors), ARGS (extra
# options, default "--segment 1"), THREADS (-j, default: all cores).
set -eu
n=${1:-200}
secs=${2:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${STEMSPLIT:-$root/stemsplit}
model=${MODEL:-$root/models/bandsplit/bandsplit4.safetensors}
args=${ARGS:---segment 1}
jobs=${THREADS:+-j $THREADS}
[ -x "$bin" ] || { echo "bench-batch: $bin: not built (run make)" >&2; exit 66; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ss-bench-batch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

python3 - "$tmp/in" "$n" "$secs" <<'EOF'
import math, os, struct, sys, wave
d, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
os.makedirs(d)
frames = int(44100 * secs)
for i in range(n):
    w = wave.open(os.path.join(d, "track%04d.wav" % i), "wb")
    w.setnchannels(2); w.setsampwidth(2); w.setframerate(44100)
    f1, f2 = 2 * math.pi * (110 + 7 * i) / 44100, 2 * math.pi * (2500 + 13 * i) / 44100
    w.writeframes(b"".join(struct.pack("<hh", int(5000 * math.sin(f1 * k) + 2000 * math.sin(f2 * k)),
                                       int(5000 * math.sin(f1 * k + 1) + 2000 * math.sin(f2 * k)))
                           for k in range(frames)))
    w.close()
EOF

now() { python3 -c 'import time; print(time.monotonic())'; }
rate() { python3 -c "import sys; print('%.2f' % ($n / ($2 - $1)))"; }

echo "bench-batch: $n files of $secs s, model $(basename "$model"), options: $args $jobs, $(nproc) cores"
# shellcheck disable=SC2086
t0=$(now)
for f in "$tmp"/in/*.wav; do
    "$bin" -q -m "$model" $args $jobs -o "$tmp/loop" "$f"
done
t1=$(now)
# shellcheck disable=SC2086
"$bin" -q -m "$model" $args $jobs -o "$tmp/batch" --report-json "$tmp/batch.json" "$tmp/in"
t2=$(now)

for d in loop batch; do
    got=$(find "$tmp/$d" -name '*.wav' | wc -l)
    [ "$got" -eq $((4 * n)) ] || { echo "bench-batch: $d wrote $got stems, want $((4 * n))" >&2; exit 70; }
done
diff -r "$tmp/loop" "$tmp/batch" >/dev/null || { echo "bench-batch: batch output differs from the loop's" >&2; exit 70; }

loop=$(rate "$t0" "$t1"); batch=$(rate "$t1" "$t2")
python3 - "$loop" "$batch" "$tmp/batch.json" <<'EOF'
import json, sys
loop, batch = map(float, sys.argv[1:3])
st = {"decode": 0.0, "infer": 0.0, "encode": 0.0}
for f in json.load(open(sys.argv[3]))["files"]:
    for k in st:
        st[k] += f["stages"][k]
print("loop   (one process per file): %7.2f files/s" % loop)
print("batch  (one process, pipelined): %6.2f files/s" % batch)
print("batch / loop   = %.2fx   (stage seconds summed over the batch: decode %.2f, infer %.2f, encode %.2f)"
      % (batch / loop, st["decode"], st["infer"], st["encode"]))
EOF

#!/bin/sh
# t_input.sh - inputs as real libraries and shells make them: MP3 streams
# whose length is only an estimate, damaged MP3 (nothing but our own lines on
# stderr), truncated WAV files (separated as far as they go, with a warning
# on stderr and in the report), standard input and FIFOs that must stay
# interruptible and bounded, and sample rates no resampler can take.
#
# Inputs are written by python3 (stdlib only) or are small fixtures in
# tests/fixtures/audio (made with lame and ffmpeg; see its README).
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
FX="$SS_ROOT/tests/fixtures/audio"
if ! command -v python3 >/dev/null 2>&1; then
    skip input "python3 not found"; exit 0
fi

# wav.py OUT FRAMES [CHANNELS [RATE [DECLARED]]]: 16-bit PCM WAV of a sine at
# 440 Hz; with DECLARED the header announces that many frames (a truncated
# file when it is more than FRAMES).
cat >"$T/wav.py" <<'EOF2'
import math, struct, sys
out, frames = sys.argv[1], int(sys.argv[2])
ch = int(sys.argv[3]) if len(sys.argv) > 3 else 2
rate = int(sys.argv[4]) if len(sys.argv) > 4 else 44100
declared = int(sys.argv[5]) if len(sys.argv) > 5 else frames
w = 2 * math.pi * 440 / (rate if rate > 0 else 44100)
vals = [int(8000 * math.sin(i * w)) for i in range(frames) for c in range(ch)]
data = struct.pack("<%dh" % len(vals), *vals)
fmt = struct.pack("<HHIIHH", 1, ch, rate, (rate * ch * 2) & 0xffffffff, ch * 2, 16)
size = declared * ch * 2
body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
open(out, "wb").write(b"RIFF" + struct.pack("<I", (4 + 8 + len(fmt) + 8 + size) & 0xffffffff) + body)
EOF2
wav() { python3 "$T/wav.py" "$@"; }
frames() { python3 -c 'import wave,sys; print(wave.open(sys.argv[1]).getnframes())' "$1" 2>/dev/null; }
run() { "$STEMSPLIT" -m "$M" --filename "{dir}/{track}/{stem}.{ext}" "$@"; }

# ---- MP3 without a Xing/Info header: the frame count is an estimate -------------------
# Every decoder (mpg123, ffmpeg) gives 89856 frames for both fixtures.
for f in vbr-noxing cbr-noxing; do
    run -q -o "$T/$f" "$FX/$f.mp3" >"$T/out.$f" 2>&1; rc=$?
    n=$(frames "$T/$f/$f/low.wav")
    if [ "$rc" -eq 0 ] && [ "$n" = 89856 ]; then pass "mp3_${f}_decoded_to_its_end"
    else fail "mp3_${f}_decoded_to_its_end" "exit $rc, $n frames (want 89856): $(head -c 300 "$T/out.$f")"; fi
    cat "$FX/$f.mp3" | run -q -o "$T/$f-stdin" - >"$T/out.$f-stdin" 2>&1; rc=$?
    n=$(frames "$T/$f-stdin/stdin/low.wav")
    if [ "$rc" -eq 0 ] && [ "$n" = 89856 ]; then pass "mp3_${f}_from_a_pipe_decoded_to_its_end"
    else fail "mp3_${f}_from_a_pipe_decoded_to_its_end" "exit $rc, $n frames: $(head -c 300 "$T/out.$f-stdin")"; fi
done

# ---- no libmpg123 chatter: a damaged stream (700 junk bytes midway) --------------------
run -q -o "$T/broken" "$FX/broken.mp3" >"$T/out.broken" 2>"$T/err.broken"; rc=$?
if [ "$rc" -eq 0 ] && [ ! -s "$T/err.broken" ]; then pass "damaged_mp3_nothing_on_stderr_under_q"
else fail "damaged_mp3_nothing_on_stderr_under_q" "exit $rc, stderr: $(head -c 300 "$T/err.broken")"; fi
run -o "$T/broken2" "$FX/broken.mp3" >"$T/out.broken2" 2>"$T/err.broken2"
if ! grep -v -e "^$FX/broken.mp3: " -e '^total: ' "$T/err.broken2" | grep -q .; then pass "damaged_mp3_only_our_lines"
else fail "damaged_mp3_only_our_lines" "stderr: $(head -c 300 "$T/err.broken2")"; fi

# ---- a truncated WAV: the header says 10 s, the file holds 5.7 s -------------------------
wav "$T/trunc.wav" 251370 2 44100 441000
wav "$T/whole.wav" 44100
run -o "$T/trunc" --report-json "$T/trunc.json" "$T/trunc.wav" "$T/whole.wav" >"$T/out.trunc" 2>&1; rc=$?
n=$(frames "$T/trunc/trunc/low.wav")
if [ "$rc" -eq 0 ] && [ "$n" = 251370 ]; then pass "truncated_wav_separated_as_far_as_it_goes"
else fail "truncated_wav_separated_as_far_as_it_goes" "exit $rc, $n frames: $(head -c 300 "$T/out.trunc")"; fi
if grep "warning" "$T/out.trunc" | grep "$T/trunc.wav" | grep "441000" | grep -q "251370"; then
    pass "truncated_wav_warned_on_stderr_with_both_lengths"
else fail "truncated_wav_warned_on_stderr_with_both_lengths" "stderr: $(head -c 400 "$T/out.trunc")"; fi
if python3 - "$T/trunc.json" "$T/trunc.wav" <<'EOF2'
import json, sys
files = {f["input"]: f for f in json.load(open(sys.argv[1]))["files"]}
t = files[sys.argv[2]]["warnings"]
ok = len(t) == 1 and "441000" in t[0] and "251370" in t[0] and "truncated" in t[0]
ok = ok and all(f["warnings"] == [] for k, f in files.items() if k != sys.argv[2])
sys.exit(0 if ok else 1)
EOF2
then pass "truncated_wav_warning_in_the_json_report"
else fail "truncated_wav_warning_in_the_json_report" "$(head -c 600 "$T/trunc.json")"; fi

# ---- standard input, FIFOs, devices: recognised first, bounded, interruptible ------------
mkdir "$T/spool"
# elapsed CMD...: run CMD (output to $T/out.el), set $rc and $secs (whole seconds)
elapsed() { t0=$(date +%s); "$@" >"$T/out.el" 2>&1; rc=$?; secs=$(($(date +%s) - t0)); }
elapsed env TMPDIR="$T/spool" timeout --preserve-status -s KILL 20 "$STEMSPLIT" -m "$M" -o "$T/z" - </dev/zero
if [ "$rc" -eq 65 ] && [ "$secs" -le 3 ] && [ -z "$(ls -A "$T/spool")" ] && grep -q "standard input: not audio" "$T/out.el"
then pass "dev_zero_on_stdin_refused_from_its_first_bytes"
else fail "dev_zero_on_stdin_refused_from_its_first_bytes" "exit $rc after $secs s, spool: $(ls "$T/spool" | head -3): $(head -c 300 "$T/out.el")"; fi
elapsed timeout --preserve-status -s KILL 20 "$STEMSPLIT" -m "$M" -o "$T/z" /dev/zero
if [ "$rc" -eq 65 ] && [ "$secs" -le 3 ]; then pass "dev_zero_named_refused_from_its_first_bytes"
else fail "dev_zero_named_refused_from_its_first_bytes" "exit $rc after $secs s: $(head -c 300 "$T/out.el")"; fi

mkfifo "$T/fifo"
elapsed timeout --preserve-status -k 10 -s INT 1 "$STEMSPLIT" -m "$M" -o "$T/f" "$T/fifo"
if [ "$rc" -eq 130 ] && [ "$secs" -le 4 ]; then pass "fifo_without_writer_ends_on_sigint"
else fail "fifo_without_writer_ends_on_sigint" "exit $rc after $secs s: $(head -c 300 "$T/out.el")"; fi
elapsed timeout --preserve-status -k 10 -s TERM 1 "$STEMSPLIT" -m "$M" -o "$T/f" "$T/fifo"
if [ "$rc" -eq 143 ] && [ "$secs" -le 4 ]; then pass "fifo_without_writer_ends_on_sigterm"
else fail "fifo_without_writer_ends_on_sigterm" "exit $rc after $secs s: $(head -c 300 "$T/out.el")"; fi

# a stalled writer: 100 bytes of a WAV, then nothing (the pipe stays open)
wav "$T/one.wav" 44100
python3 -c 'import sys, time
sys.stdout.buffer.write(open(sys.argv[1], "rb").read()[:100]); sys.stdout.flush(); time.sleep(60)' "$T/one.wav" >"$T/fifo" &
writer=$!
elapsed env TMPDIR="$T/spool" timeout --preserve-status -k 10 -s TERM 1 "$STEMSPLIT" -m "$M" -o "$T/f" - <"$T/fifo"
kill "$writer" 2>/dev/null; wait "$writer" 2>/dev/null
if [ "$rc" -eq 143 ] && [ "$secs" -le 4 ] && [ -z "$(ls -A "$T/spool")" ]; then pass "stalled_stdin_pipe_ends_on_sigterm"
else fail "stalled_stdin_pipe_ends_on_sigterm" "exit $rc after $secs s, spool: $(ls "$T/spool" | head -3): $(head -c 300 "$T/out.el")"; fi

# the spool cap: 1 s of 16-bit stereo is 176 KB, over a 64K cap
cat "$T/one.wav" | STEMSPLIT_SPOOL_MAX=64K TMPDIR="$T/spool" "$STEMSPLIT" -m "$M" -o "$T/c" - >"$T/out.cap" 2>&1; rc=$?
if [ "$rc" -eq 65 ] && grep -q "STEMSPLIT_SPOOL_MAX" "$T/out.cap" && [ -z "$(ls -A "$T/spool")" ] && [ ! -e "$T/c/stdin" ]
then pass "spool_cap_is_a_clear_error"
else fail "spool_cap_is_a_clear_error" "exit $rc: $(head -c 300 "$T/out.cap")"; fi
cat "$T/one.wav" | STEMSPLIT_SPOOL_MAX=1M "$STEMSPLIT" -q -m "$M" -o "$T/c" - >"$T/out.cap2" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && [ "$(frames "$T/c/bandsplit4/stdin/low.wav")" = 44100 ]; then pass "spool_under_the_cap_is_read"
else fail "spool_under_the_cap_is_read" "exit $rc: $(head -c 300 "$T/out.cap2")"; fi
cat "$T/one.wav" | STEMSPLIT_SPOOL_MAX=lots "$STEMSPLIT" -m "$M" -o "$T/c2" - >"$T/out.cap3" 2>&1; rc=$?
if [ "$rc" -eq 64 ] && grep -q "STEMSPLIT_SPOOL_MAX=lots" "$T/out.cap3"; then pass "spool_cap_not_a_size_is_usage"
else fail "spool_cap_not_a_size_is_usage" "exit $rc: $(head -c 300 "$T/out.cap3")"; fi

# ---- sample rates no resampler takes: bad data naming the file -------------------------
for r in 0 1 3 2147483647; do
    wav "$T/rate$r.wav" 1000 2 "$r"
    run -q -o "$T/r" "$T/rate$r.wav" >"$T/out.rate$r" 2>&1; rc=$?
    if [ "$rc" -eq 65 ] && grep -q "rate$r.wav: .*$r Hz" "$T/out.rate$r"; then pass "sample_rate_${r}_hz_is_bad_data"
    else fail "sample_rate_${r}_hz_is_bad_data" "exit $rc: $(head -c 300 "$T/out.rate$r")"; fi
done

# ---- float WAV stems: a header sox reads without a warning (where sox is installed) --------
if command -v soxi >/dev/null 2>&1; then
    run -q --sample-format f32 -o "$T/f32" "$T/one.wav" >"$T/out.f32" 2>&1; rc=$?
    soxi "$T/f32/one/low.wav" >"$T/soxi.f32" 2>&1
    if [ "$rc" -eq 0 ] && ! grep -qi "warn" "$T/soxi.f32" && grep -q "32-bit Floating Point" "$T/soxi.f32"
    then pass "f32_wav_stem_read_by_sox_without_warning"
    else fail "f32_wav_stem_read_by_sox_without_warning" "exit $rc: $(head -c 300 "$T/soxi.f32")"; fi
else
    skip "f32_wav_stem_read_by_sox_without_warning" "soxi not installed (test_audio checks the header bytes)"
fi

# ---- more than two channels: downmixed for a stereo model ----------------------------------
# mc.py OUT CHANNELS: 32-bit float WAV, 1 s at 44.1 kHz, channel c a sine at 200*(c+1) Hz
# of amplitude 0.1 (the LFE of 5.1/7.1, channel 3, at 0.5: it must not be heard)
cat >"$T/mc.py" <<'EOF2'
import math, struct, sys
out, ch = sys.argv[1], int(sys.argv[2])
n, rate = 44100, 44100
amp = [0.5 if (c == 3 and ch >= 6) else 0.1 for c in range(ch)]
vals = [amp[c] * math.sin(2 * math.pi * 200 * (c + 1) * i / rate) for i in range(n) for c in range(ch)]
data = struct.pack("<%df" % len(vals), *vals)
fmt = struct.pack("<HHIIHHH", 3, ch, rate, rate * ch * 4, ch * 4, 32, 0)
body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
open(out, "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)
EOF2
# check.py DIR CHANNELS: the sum of the stems in DIR against the downmix computed here
cat >"$T/check.py" <<'EOF2'
import math, struct, sys, glob
d, ch = sys.argv[1], int(sys.argv[2])
n, rate, k = 44100, 44100, math.sqrt(0.5)
amp = [0.5 if (c == 3 and ch >= 6) else 0.1 for c in range(ch)]
x = lambda c, i: amp[c] * math.sin(2 * math.pi * 200 * (c + 1) * i / rate)
# L' and R' as ITU-R BS.775 (5.1) and its 7.1 extension give them: WAV channel order
L = {6: [(0, 1), (2, k), (4, k)], 8: [(0, 1), (2, k), (4, k), (6, k)]}[ch]
R = {6: [(1, 1), (2, k), (5, k)], 8: [(1, 1), (2, k), (5, k), (7, k)]}[ch]
def floats(path):
    b = open(path, "rb").read()
    off = 12
    while b[off:off + 4] != b"data":
        off += 8 + struct.unpack("<I", b[off + 4:off + 8])[0]
    size = struct.unpack("<I", b[off + 4:off + 8])[0]
    return struct.unpack("<%df" % (size // 4), b[off + 8:off + 8 + size])
stems = [floats(p) for p in sorted(glob.glob(d + "/*.wav"))]
assert len(stems) == 4 and all(len(s) == 2 * n for s in stems), "4 stereo stems of %d frames" % n
worst = 0.0
for i in range(n):
    for c, terms in ((0, L), (1, R)):
        want = sum(w * x(ch_, i) for ch_, w in terms)
        got = sum(s[2 * i + c] for s in stems)
        worst = max(worst, abs(got - want))
print("max error %.2e" % worst)
sys.exit(0 if worst < 1e-3 else 1)
EOF2
for ch in 6 8; do
    python3 "$T/mc.py" "$T/mc$ch.wav" "$ch"
    run -v --clip none --sample-format f32 -o "$T/mc" "$T/mc$ch.wav" >"$T/out.mc$ch" 2>&1; rc=$?
    if [ "$rc" -eq 0 ] && python3 "$T/check.py" "$T/mc/mc$ch" "$ch" >"$T/chk.mc$ch" 2>&1; then
        pass "downmix_${ch}_channels_matches_itu_matrix"
    else fail "downmix_${ch}_channels_matches_itu_matrix" "exit $rc: $(cat "$T/chk.mc$ch") $(head -c 300 "$T/out.mc$ch")"; fi
    if grep -q "mc$ch.wav: $ch channels downmixed to the 2 of model" "$T/out.mc$ch"; then pass "downmix_${ch}_channels_said_under_v"
    else fail "downmix_${ch}_channels_said_under_v" "$(head -c 300 "$T/out.mc$ch")"; fi
done
python3 "$T/mc.py" "$T/mc9.wav" 9
run -q -o "$T/mc" "$T/mc9.wav" >"$T/out.mc9" 2>&1; rc=$?
if [ "$rc" -eq 65 ] && grep -q "has 9 channels" "$T/out.mc9"; then pass "nine_channels_still_refused"
else fail "nine_channels_still_refused" "exit $rc: $(head -c 300 "$T/out.mc9")"; fi

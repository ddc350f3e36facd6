# t_ffmpeg_input.sh - formats libsndfile does not read (MP4/M4A, WMA, WebM,
# ...) decoded through an ffmpeg on PATH: separated with ffmpeg, refused
# (65, naming the format and ffmpeg) without it, listed as skipped in a folder
# without it; ffmpeg's own failure, the spool limit and SIGTERM (the child
# ends too).  The real-ffmpeg cases SKIP where ffmpeg is not installed; the
# others use a stand-in script named ffmpeg.
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
SS="$STEMSPLIT -m $M --segment 1"
mkdir -p "$T/nobin" "$T/fake" "$T/in"
# the first bytes of an MP4/M4A file (an ftyp box), enough to be recognised
m4a_head() { printf '\000\000\000\040ftypM4A \000\000\002\000M4A isommp42\000\000\000\010free'; }

# ---- with the real ffmpeg ---------------------------------------------------------------------
if command -v ffmpeg >/dev/null 2>&1; then
    ffmpeg -nostdin -v error -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=2" -ac 2 -c:a aac \
        "$T/in/song.m4a" && cp "$T/in/song.m4a" "$T/song.m4a"
    expect_exit m4a_is_separated_through_ffmpeg 0 $SS -q -o "$T/o1" "$T/song.m4a"
    # 2 s of a 440 Hz sine at 1/8, upmixed by ffmpeg at -3 dB: the stems are 2 s long (AAC frames
    # of 1024: ffmpeg gives 89088, at most 2048 more than 88200), and the 440 Hz band holds the sine
    # (RMS 0.0625: measured 0.062) while the others hold little (measured below 0.001)
    check m4a_stems_length_and_content python3 - "$T/o1/bandsplit4/song" <<'PY'
import math, struct, sys, wave
rms = {}
for s in ("low", "lowmid", "highmid", "high"):
    w = wave.open("%s/%s.wav" % (sys.argv[1], s))
    n, rate = w.getnframes(), w.getframerate()
    assert rate == 44100 and 88200 <= n <= 88200 + 2048, (s, rate, n)
    x = struct.unpack("<%dh" % (2 * n), w.readframes(n))
    rms[s] = math.sqrt(sum(v * v for v in x) / len(x)) / 32768
assert 0.055 < rms["lowmid"] < 0.07, rms
assert all(rms[s] < 0.02 for s in ("low", "highmid", "high")), rms
PY
    cp "$T/song.m4a" "$T/in/other.m4a" 2>/dev/null
    expect_exit folder_with_m4a_separated 0 $SS -q -o "$T/o2" --report-json "$T/r2.json" "$T/in"
    check folder_m4a_both_ok python3 -c "
import json,sys; r=json.load(open(sys.argv[1])); st=sorted(f['status'] for f in r['files'])
assert st == ['ok', 'ok'], r['files']" "$T/r2.json"
    # the spool limit holds for ffmpeg's output too
    expect_exit ffmpeg_output_over_spool_limit_is_65 65 env STEMSPLIT_SPOOL_MAX=64K $SS -q -o "$T/o3" "$T/song.m4a"
    check ffmpeg_spool_limit_message grep -q "STEMSPLIT_SPOOL_MAX" "$T/out.ffmpeg_output_over_spool_limit_is_65"
else
    skip m4a_is_separated_through_ffmpeg "ffmpeg is not installed"
fi

# ---- without ffmpeg on PATH ---------------------------------------------------------------------
m4a_head >"$T/nof.m4a"
expect_exit m4a_without_ffmpeg_is_65 65 env PATH="$T/nobin" $SS -q -o "$T/o4" "$T/nof.m4a"
check m4a_without_ffmpeg_names_format_and_ffmpeg \
    grep -q "nof.m4a: MP4/M4A audio, which libsndfile cannot read: installing ffmpeg reads it" \
    "$T/out.m4a_without_ffmpeg_is_65"
mkdir -p "$T/nofdir" && cp "$T/nof.m4a" "$T/nofdir/a.m4a"
expect_exit folder_of_m4a_without_ffmpeg_is_66 66 env PATH="$T/nobin" $SS -q -o "$T/o5" "$T/nofdir"
check folder_m4a_without_ffmpeg_skipped_with_reason \
    grep -q "a.m4a: skipped (no reader here opens .m4a files: installing ffmpeg reads them" \
    "$T/out.folder_of_m4a_without_ffmpeg_is_66"

# ---- a stand-in ffmpeg ---------------------------------------------------------------------------
# one that fails: its first error line is in the message, 65
cat >"$T/fake/ffmpeg" <<'SH'
#!/bin/sh
echo "$*" >"$FAKE_ARGS"
echo "song.m4a: Invalid data found when processing input" >&2
exit 1
SH
chmod +x "$T/fake/ffmpeg"
expect_exit ffmpeg_failure_is_65 65 env PATH="$T/fake:$PATH" FAKE_ARGS="$T/args" $SS -q -o "$T/o6" "$T/nof.m4a"
check ffmpeg_failure_message_is_ffmpegs \
    grep -q "nof.m4a: ffmpeg cannot decode it (exit status 1): song.m4a: Invalid data found" "$T/out.ffmpeg_failure_is_65"
# arguments, not a shell line: the input as file:PATH (never a protocol), float WAV to standard output
check ffmpeg_arguments grep -q -- "-nostdin .*-i file:$T/nof.m4a .*-c:a pcm_f32le -f wav -\$" "$T/args"

# one that stalls after the WAV header: SIGTERM ends the run promptly, with 143, and ends the child
cat >"$T/fake/ffmpeg" <<'SH'
#!/bin/sh
echo $$ >"$FAKE_PID"
printf 'RIFF\377\377\377\377WAVEfmt '
exec sleep 30
SH
env PATH="$T/fake:$PATH" FAKE_PID="$T/pid" $SS -q -o "$T/o7" "$T/nof.m4a" >"$T/out.stall" 2>&1 &
pid=$!
i=0; while [ ! -s "$T/pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.3
start=$(date +%s.%N)
kill -TERM $pid
wait $pid; rc=$?
took=$(python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$start" "$(date +%s.%N)")
check sigterm_during_ffmpeg_decode_is_143 test "$rc" -eq 143
check sigterm_during_ffmpeg_decode_is_prompt python3 -c "import sys; assert float(sys.argv[1]) < 2.0, sys.argv[1]" "$took"
child=$(cat "$T/pid" 2>/dev/null)
check sigterm_ends_the_ffmpeg_child sh -c "[ -n '$child' ] && ! kill -0 '$child' 2>/dev/null"
check sigterm_message grep -q "interrupted by SIGTERM" "$T/out.stall"

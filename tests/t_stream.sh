# t_stream.sh - --stream: raw PCM on standard input through DeepFilterNet3's
# live stream to standard output (src/stream.c): the speech stem within 1e-6
# of the file path's (--sample-format f32 --clip none) and the same bits
# however the input arrives (pieces of 1, 7, 480, 4096 bytes with pauses, or
# all at once), mono and stereo, at 48 kHz and through resampling (44.1 kHz
# and 44.101 kHz); as many frames out as in; the refusals and exit codes.
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/tests/fixtures/deepfilternet-dev/model.safetensors"
OTHER="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
if ! python3 -c 'import struct' 2>/dev/null; then skip stream "python3 is needed to make the inputs"; exit 0; fi
[ -f "$M" ] || { skip stream "no fixture $M"; exit 0; }
cat > "$T/h.py" <<'PY'
import math, os, random, struct, sys, time
def data_chunk(path):
    b = open(path, "rb").read()
    assert b[:4] == b"RIFF" and b[8:12] == b"WAVE", path
    i = 12
    while i + 8 <= len(b):
        cid, n = b[i:i + 4], struct.unpack("<I", b[i + 4:i + 8])[0]
        if cid == b"data":
            return b[i + 8:i + 8 + n]
        i += 8 + n + (n & 1)
    raise SystemExit(path + ": no data chunk")
cmd = sys.argv[1]
if cmd == "gen":          # gen PREFIX RATE CHANNELS FRAMES: PREFIX.wav (f32), PREFIX.f32, PREFIX.s16, PREFIX_s16.wav
    pre, rate, ch, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    r = random.Random(7)
    x = [0.3 * math.sin(2 * math.pi * (220 + 110 * c) * i / rate) + r.uniform(-0.1, 0.1)
         for i in range(n) for c in range(ch)]
    f32 = struct.pack("<%df" % len(x), *x)
    s16 = struct.pack("<%dh" % len(x), *[max(-32768, min(32767, int(round(v * 32768)))) for v in x])
    def wav(path, fmt, bits, data):
        ba = ch * bits // 8
        hdr = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, fmt, ch, rate,
                          rate * ba, ba, bits, b"data", len(data))
        open(path, "wb").write(hdr + data)
    wav(pre + ".wav", 3, 32, f32)
    wav(pre + "_s16.wav", 1, 16, s16)
    open(pre + ".f32", "wb").write(f32)
    open(pre + ".s16", "wb").write(s16)
elif cmd == "feed":       # feed FILE: to stdout in pieces of 1, 7, 480, 4096 bytes, pausing now and then
    b = open(sys.argv[2], "rb").read()
    sizes, i, k = (1, 7, 480, 4096), 0, 0
    while i < len(b):
        n = sizes[k % 4]
        os.write(1, b[i:i + n])
        i, k = i + n, k + 1
        if k % 16 == 0:
            time.sleep(0.002)
elif cmd == "cmp":        # cmp WAV RAW FMT TOL: the WAV's samples vs the raw stream's, largest difference <= TOL
    a, b, fmt, tol = data_chunk(sys.argv[2]), open(sys.argv[3], "rb").read(), sys.argv[4], float(sys.argv[5])
    if len(a) != len(b):
        raise SystemExit("%d bytes in the file path's stem, %d from the stream" % (len(a), len(b)))
    c = "f" if fmt == "f32" else "h"
    n = len(a) // struct.calcsize(c)
    xa, xb = struct.unpack("<%d%s" % (n, c), a), struct.unpack("<%d%s" % (n, c), b)
    d = max([abs(p - q) for p, q in zip(xa, xb)] + [0])
    print("largest difference %g over %d samples" % (d, n))
    sys.exit(0 if d <= tol else 1)
PY
S() { "$STEMSPLIT" --stream -m "$M" -d cpu -j 2 "$@"; }
# file path's speech stem of $1.wav: $T/o/$1_speech.wav
F() { "$STEMSPLIT" -q -m "$M" -d cpu -j 2 --sample-format "${2:-f32}" --clip none -o "$T/o" --filename '{track}_{stem}.{ext}' "$T/$1.wav"; }

for case in "mono48 48000 1" "stereo48 48000 2" "mono44 44100 1" "stereo44101 44101 2"; do
    set -- $case
    name=$1 rate=$2 ch=$3
    python3 "$T/h.py" gen "$T/$name" "$rate" "$ch" 30011 || { fail "${name}_gen" "cannot make the input"; continue; }
    F "$name" || fail "${name}_file_path" "stemsplit on $name.wav failed"
    python3 "$T/h.py" feed "$T/$name.f32" | S --stream-format f32 --stream-rate "$rate" --stream-channels "$ch" \
        >"$T/$name.out" 2>"$T/$name.err"
    check "${name}_stream_exits_0" [ $? -eq 0 ]
    check "${name}_stream_within_1e-6_of_file_path" python3 "$T/h.py" cmp "$T/o/${name}_speech.wav" "$T/$name.out" f32 1e-6
    S --stream-format f32 --stream-rate "$rate" --stream-channels "$ch" <"$T/$name.f32" >"$T/$name.all" 2>/dev/null
    check "${name}_pieces_bit_identical_to_all_at_once" cmp -s "$T/$name.out" "$T/$name.all"
done
# s16 in and out: the file path's 16-bit stem (--sample-format s16) to within one step
F mono48_s16 s16 || fail s16_file_path "stemsplit on mono48_s16.wav failed"
python3 "$T/h.py" feed "$T/mono48.s16" | S >"$T/s16.out" 2>/dev/null
check s16_stream_exits_0 [ $? -eq 0 ]
check s16_within_one_step_of_file_path python3 "$T/h.py" cmp "$T/o/mono48_s16_speech.wav" "$T/s16.out" s16 1

# -v: the algorithmic latency from the model's geometry
S -v --stream-format f32 <"$T/mono48.f32" >/dev/null 2>"$T/v.err"
check verbose_prints_latency grep -q "algorithmic latency 383 samples at 48000 Hz" "$T/v.err"

# nothing in, nothing out; a frame cut short
: | S >"$T/empty.out" 2>"$T/empty.err"
check empty_input_exits_0 [ $? -eq 0 ]
check empty_input_gives_nothing [ ! -s "$T/empty.out" ]
expect_exit partial_frame_is_65 65 sh -c "printf abc | '$STEMSPLIT' --stream -m '$M' -d cpu"
check partial_frame_message grep -q "ends inside a frame: 1 byte after 1 whole frames" "$T/out.partial_frame_is_65"
expect_exit partial_stereo_frame_is_65 65 sh -c "printf abcdef | '$STEMSPLIT' --stream -m '$M' -d cpu --stream-channels 2"
# a read error (a folder as standard input) is 74
expect_exit read_error_is_74 74 sh -c "'$STEMSPLIT' --stream -m '$M' -d cpu <'$T'"
# the reader gone (head): 74 with a message, not a silent SIGPIPE
{ S --stream-format f32 <"$T/stereo48.f32" 2>"$T/pipe.err"; echo $? >"$T/pipe.rc"; } | head -c 100 >/dev/null
check broken_pipe_is_74 [ "$(cat "$T/pipe.rc")" = 74 ]
check broken_pipe_message grep -q "standard output: write error: Broken pipe" "$T/pipe.err"

# refusals: 64
expect_exit non_stream_model_is_64 64 sh -c "'$STEMSPLIT' --stream -m '$OTHER' -d cpu </dev/null"
check non_stream_model_message_names_it grep -q "model bandsplit4" "$T/out.non_stream_model_is_64"
expect_exit bad_stream_format_is_64 64 S --stream-format s24 </dev/null
expect_exit bad_stream_rate_is_64 64 S --stream-rate 44k </dev/null
expect_exit bad_stream_channels_is_64 64 S --stream-channels 0 </dev/null
expect_exit stream_option_without_stream_is_64 64 "$STEMSPLIT" -m "$M" --stream-rate 44100 "$T/mono48.wav"
expect_exit stream_with_input_file_is_64 64 S "$T/mono48.wav"
expect_exit stream_with_out_dir_is_64 64 S -o "$T/x" </dev/null
expect_exit stream_with_stems_is_64 64 S --stems speech </dev/null
expect_exit stream_with_then_is_64 64 S --then speech=x </dev/null
expect_exit stream_with_batch_is_64 64 S --batch 2 </dev/null
expect_exit stream_without_model_is_64 64 sh -c "STEMSPLIT_MODEL= '$STEMSPLIT' --stream </dev/null"

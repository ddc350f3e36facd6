# t_msst_chunking.sh - SS_CHUNK_MSST through the real CLI against MSST's own
# demix() (tests/fixtures/msst, made by scripts/make-msst-fixtures.py with a
# chunk-dependent identity model): long and short tracks, reflect- and
# zero-padded last chunks, num_overlap 1, 2 and 4 (from the model and from
# --overlap), --segment, mono and stereo; --batch never changes a bit; MSST's
# normalisation (std with ddof 0) and the residual stem; --shifts refused; a
# 20-minute track in bounded memory.
. "$(dirname "$0")/lib.sh"
F="$SS_ROOT/tests/fixtures/msst"
command -v python3 >/dev/null || { skip msst_chunking "python3 not installed"; exit 0; }

# rel_l2 OUT.wav EXPECTED.wav: relative L2 error of two 32-bit float WAVs <= 1e-5
cat >"$T/cmp.py" <<'PY'
import math, struct, sys
def read(path):
    b = open(path, "rb").read()
    assert b[:4] == b"RIFF" and b[8:12] == b"WAVE", path
    i, ch, fmt, data = 12, 0, None, b""
    while i + 8 <= len(b):
        cid, n = b[i:i + 4], struct.unpack("<I", b[i + 4:i + 8])[0]
        body = b[i + 8:i + 8 + n]
        if cid == b"fmt ":
            tag, ch, _, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            fmt = (tag, bits)
        elif cid == b"data":
            data = body
        i += 8 + n + (n & 1)
    assert fmt and fmt[1] == 32 and fmt[0] in (3, 0xFFFE), (path, fmt)
    return ch, struct.unpack("<%df" % (len(data) // 4), data)
(ca, a), (cb, b) = read(sys.argv[1]), read(sys.argv[2])
if (ca, len(a)) != (cb, len(b)):
    sys.exit("%s: %d channels x %d samples, expected %d x %d" % (sys.argv[1], ca, len(a), cb, len(b)))
num = sum((x - y) ** 2 for x, y in zip(a, b))
den = sum(y * y for y in b)
rel = math.sqrt(num / den)
if not rel <= 1e-5:
    sys.exit("%s: relative L2 error %.3g > 1e-5" % (sys.argv[1], rel))
PY

# sep NAME MODEL MIX OPTIONS...: separate into $T/NAME as 32-bit float, unclipped
sep() {
    n=$1 model=$2 mix=$3; shift 3
    "$STEMSPLIT" -q -m "$F/$model.safetensors" -o "$T/$n" --filename '{stem}.wav' --sample-format f32 --clip none \
        "$@" "$F/$mix.wav" >"$T/log.$n" 2>&1
}
# matches NAME MODEL MIX EXPECTED OPTIONS...: every EXPECTED.STEM.wav within 1e-5
matches() {
    n=$1 model=$2 mix=$3 exp=$4; shift 4
    if ! sep "$n" "$model" "$mix" "$@"; then
        fail "$n" "exit $?: $(tail -n 2 "$T/log.$n" | tr '\n' ' ')"
        return
    fi
    for f in "$F/$exp".*.wav; do
        st=${f#"$F/$exp."}
        if ! msg=$(python3 "$T/cmp.py" "$T/$n/$st" "$f" 2>&1); then
            fail "$n" "$msg"
            return
        fi
    done
    pass "$n"
}

# many chunks, both ends reflect-padded; last chunks of 151 and 101 (reflect) and 51 and 1 (zeros)
matches msst_long_stereo_num_overlap_4 long_stereo_o4 long_stereo long_stereo_o4
# last chunks of 145 (reflect) and 45 (zeros)
matches msst_long_mono_num_overlap_2 long_mono_o2 long_mono long_mono_o2
# --segment 0.3: chunk 300 samples (round(0.3 * 1000))
matches msst_segment_sets_the_chunk long_mono_o2 long_mono long_mono_c300 --segment 0.3
# --overlap 0.75: num_overlap round(1 / 0.25) = 4 instead of the model's 2
matches msst_overlap_sets_num_overlap long_mono_o2 long_mono long_mono_o4 --overlap 0.75
# 150 samples <= 2 border: no padding; chunks of 150 (reflect-padded) and 50 (zeros)
matches msst_shorter_than_two_borders short_stereo_o2 short_stereo short_stereo_o2
# num_overlap 1: no border, windows meet at 0 (frames no window reaches are 0, as nan_to_num makes them)
matches msst_num_overlap_1 flat_stereo_o1 flat_stereo flat_stereo_o1
# msst.normalize: (x - mean) / std with numpy's std (ddof 0); instrumental = mixture - vocals
matches msst_normalize_and_residual norm_residual norm_stereo norm_residual

# --batch never changes a bit (MSST's own batch_size > 1 would: its fades are per batch)
sep batch1 long_stereo_o4 long_stereo --batch 1 && sep batch3 long_stereo_o4 long_stereo --batch 3
check msst_batch_3_same_bits_as_batch_1 cmp -s "$T/batch1/vocals.wav" "$T/batch3/vocals.wav"
check msst_batch_3_same_bits_as_batch_1_other cmp -s "$T/batch1/other.wav" "$T/batch3/other.wav"

# the residual with --two-stems / --stems: no_vocals of a vocals + instrumental model is the instrumental
if sep two norm_residual norm_stereo --two-stems vocals &&
    msg=$(python3 "$T/cmp.py" "$T/two/no_vocals.wav" "$F/norm_residual.instrumental.wav" 2>&1); then
    pass residual_with_two_stems
else
    fail residual_with_two_stems "${msg:-$(tail -n 2 "$T/log.two")}"
fi
msg=
if sep only norm_residual norm_stereo --stems instrumental && [ ! -e "$T/only/vocals.wav" ] &&
    msg=$(python3 "$T/cmp.py" "$T/only/instrumental.wav" "$F/norm_residual.instrumental.wav" 2>&1); then
    pass residual_alone_with_stems
else
    fail residual_alone_with_stems "${msg:-$(tail -n 2 "$T/log.only")}"
fi
# listed like the network's stems
mkdir -p "$T/models"
cp "$F/norm_residual.safetensors" "$T/models/"
env STEMSPLIT_MODEL_PATH="$T/models" "$STEMSPLIT" --list-models >"$T/list" 2>&1
check residual_in_list_models grep -q "norm_residual  identity  2 stems (vocals, instrumental)" "$T/list"

# --shifts: MSST has no random shifts: a usage error saying so
expect_exit msst_shifts_refused 64 "$STEMSPLIT" -m "$F/long_mono_o2.safetensors" -o "$T/sh" --shifts 2 "$F/long_mono.wav"
check msst_shifts_refused_says_why grep -q "MSST's chunking, which has no random shifts" "$T/out.msst_shifts_refused"

# streaming: a 20-minute 16 kHz track (73 MiB as floats) in bounded memory
python3 - "$T/long.wav" "$T/big.safetensors" <<'PY'
import json, math, struct, sys
rate, n = 16000, 16000 * 1200
sec = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 441 * i / rate))) for i in range(rate))
with open(sys.argv[1], "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", 36 + 2 * n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16))
    f.write(b"data" + struct.pack("<I", 2 * n))
    for _ in range(n // rate):
        f.write(sec)
meta = {"stemsplit.architecture": "identity", "stemsplit.sources": "vocals", "stemsplit.samplerate": str(rate),
        "stemsplit.channels": "1", "stemsplit.segment": "2", "stemsplit.chunking": "msst", "msst.num_overlap": "4",
        "identity.chunk_dc": "true", "identity.norm": "none", "stemsplit.residual": "instrumental"}
h = json.dumps({"__metadata__": meta, "gain": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<f", 1.0))
PY
python3 - "$T/rss" "$STEMSPLIT" -q -m "$T/big.safetensors" -o "$T/big" --clip clamp "$T/long.wav" <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write("%d %d\n" % (rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
PY
read -r rc rss <"$T/rss"
echo "# 20-minute track: exit $rc, max RSS $rss KiB"
if [ "$rc" -eq 0 ] && [ "$rss" -lt 65536 ]; then
    pass msst_20_minutes_in_bounded_memory
else
    fail msst_20_minutes_in_bounded_memory "exit $rc, max RSS $rss KiB (the track alone is 75000 KiB as floats)"
fi

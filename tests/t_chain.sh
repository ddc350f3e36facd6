# t_chain.sh - chained separation (--then STEM=MODEL) through the real CLI:
# a chained stem's stems equal the second model run on the first model's stem
# written as a float WAV (bit for bit at equal rates; through resampling to a
# 16 kHz mono model and back), names and paths, a residual stem chained,
# --stems, --skip-existing, the report (both models' times, text and JSON,
# merge-reports.py), a batch of two files with each model loaded once, and
# the usage errors, found before any audio is read.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || { skip chain "python3 not installed"; exit 0; }
BS="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"

# inputs: 3 s of seeded noise and tones, 44.1 kHz stereo, 16-bit; a second, shorter one
python3 - "$T/song.wav" "$T/other.wav" <<'PY'
import math, random, struct, sys
def wav(path, secs, seed):
    rate, rnd = 44100, random.Random(seed)
    n = int(rate * secs)
    fr = []
    for i in range(n):
        t = i / rate
        l = 0.3 * math.sin(2 * math.pi * 110 * t) + 0.2 * math.sin(2 * math.pi * 3000 * t) + 0.1 * rnd.uniform(-1, 1)
        r = 0.3 * math.sin(2 * math.pi * 220 * t) + 0.2 * math.sin(2 * math.pi * 9000 * t) + 0.1 * rnd.uniform(-1, 1)
        fr.append(struct.pack("<hh", int(l * 32767), int(r * 32767)))
    d = b"".join(fr)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(d)) + b"WAVEfmt " +
                struct.pack("<IHHIIHH", 16, 1, 2, rate, 4 * rate, 4, 16) + b"data" + struct.pack("<I", len(d)) + d)
wav(sys.argv[1], 3.0, 1)
wav(sys.argv[2], 1.5, 2)
PY

# test models (identity architecture, models/identity): NAME RATE CHANNELS SOURCES [KEY=VALUE...]
mkmodel() {
    python3 - "$@" <<'PY'
import json, struct, sys
path, rate, ch, sources = sys.argv[1:5]
meta = {"stemsplit.architecture": "identity", "stemsplit.sources": sources, "stemsplit.samplerate": rate,
        "stemsplit.channels": ch, "stemsplit.segment": "1"}
for kv in sys.argv[5:]:
    k, v = kv.split("=", 1)
    meta[k] = v
n = len(sources.split(","))
gains = [0.5 + 0.25 * i for i in range(n)]
h = json.dumps({"__metadata__": meta, "gain": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<%df" % n, *gains))
PY
}
# 16 kHz mono, output depending on where the chunks fall, demucs's normalisation
mkmodel "$T/id16k.safetensors" 16000 1 a,b identity.chunk_dc=true identity.offset=0.01
# a vocals model with a residual stem (instrumental = mixture - vocals)
mkmodel "$T/voc.safetensors" 44100 2 vocals stemsplit.residual=instrumental identity.norm=none
# 1 kHz and 768 kHz: too far apart to resample; 3 channels: no stereo stem maps to them
mkmodel "$T/slow.safetensors" 1000 2 a
mkmodel "$T/fast.safetensors" 768000 2 a
mkmodel "$T/three.safetensors" 44100 3 a
# MODEL as a NAME on the model path
mkdir -p "$T/models"
cp "$BS" "$T/models/"
export STEMSPLIT_MODEL_PATH="$T/models"

# rel_l2 A.wav B.wav: two 32-bit float WAVs of the same shape within 1e-6 relative L2
cat >"$T/cmp.py" <<'PY'
import math, struct, sys
def read(path):
    b = open(path, "rb").read()
    i, ch, data, rate = 12, 0, b"", 0
    while i + 8 <= len(b):
        cid, n = b[i:i + 4], struct.unpack("<I", b[i + 4:i + 8])[0]
        if cid == b"fmt ":
            tag, ch, rate, _, _, bits = struct.unpack("<HHIIHH", b[i + 8:i + 24])
            assert bits == 32 and tag in (3, 0xFFFE), (path, tag, bits)
        elif cid == b"data":
            data = b[i + 8:i + 8 + n]
        i += 8 + n + (n & 1)
    return (ch, rate), struct.unpack("<%df" % (len(data) // 4), data)
(fa, a), (fb, b) = read(sys.argv[1]), read(sys.argv[2])
if (fa, len(a)) != (fb, len(b)):
    sys.exit("%s: %s x %d samples, expected %s x %d" % (sys.argv[1], fa, len(a), fb, len(b)))
rel = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / max(sum(y * y for y in b), 1e-30))
if not rel <= 1e-6:
    sys.exit("%s: relative L2 error %.3g > 1e-6" % (sys.argv[1], rel))
PY

F32="--sample-format f32 --clip none"

# ---- the chained stem's stems are the second model's on that stem written as a file ----------
"$STEMSPLIT" -q -m "$BS" --then low=bandsplit4 --then lowmid="$T/id16k.safetensors" $F32 -o "$T/c" \
    --filename '{stem}.wav' "$T/song.wav" >"$T/log.c" 2>&1
check chain_runs test $? -eq 0
"$STEMSPLIT" -q -m "$BS" $F32 -o "$T/ref_low" --filename '{stem}.wav' "$T/c/low.wav" >"$T/log.r1" 2>&1
same=1
for s in low lowmid highmid high; do
    cmp -s "$T/c/low/$s.wav" "$T/ref_low/$s.wav" || same=0
done
check chain_same_bits_as_second_model_on_the_stem_file test $same -eq 1
# another rate and channel count: 44.1 kHz stereo stem -> 16 kHz mono model -> stems at 44.1 kHz
"$STEMSPLIT" -q -m "$T/id16k.safetensors" $F32 -o "$T/ref_lm" --filename '{stem}.wav' "$T/c/lowmid.wav" \
    >"$T/log.r2" 2>&1
ok=1 msg=
for s in a b; do
    m=$(python3 "$T/cmp.py" "$T/c/lowmid/$s.wav" "$T/ref_lm/$s.wav" 2>&1) || { ok=0; msg="$msg $m"; }
done
if [ $ok -eq 1 ]; then pass chain_resamples_to_the_second_models_rate; else fail chain_resamples_to_the_second_models_rate "$msg"; fi
python3 - "$T/c/lowmid/a.wav" "$T/c/low.wav" >"$T/fmt" 2>&1 <<'PY'
import sys, wave, struct
for p in sys.argv[1:]:
    b = open(p, "rb").read(64)
    i = b.index(b"fmt ")
    tag, ch, rate = struct.unpack("<HHI", b[i + 8:i + 16])
    print(ch, rate)
PY
check chain_stems_at_input_rate_in_model_channels test "$(tr '\n' ' ' <"$T/fmt")" = "1 44100 2 44100 "
check chain_no_temporary_files_left test -z "$(find "$T/c" -name '.*' | head -n 1)"

# ---- the real architectures: an HTDemucs fixture first, bandsplit and a BS-RoFormer (MSST chunking,
# a residual stem of its own) chained on two of its stems ----------------------------------------------
FIXH="$SS_ROOT/tests/fixtures/htdemucs/t1_base/model.th"
FIXR="$SS_ROOT/tests/fixtures/roformer/bs_stereo_1stem"
if python3 "$SS_ROOT/scripts/convert-demucs.py" -o "$T/htd.safetensors" "$FIXH" >"$T/conv.log" 2>&1 &&
    python3 "$SS_ROOT/scripts/convert-msst.py" -o "$T/rof.safetensors" "$FIXR/config.yaml" "$FIXR/model.ckpt" \
        >>"$T/conv.log" 2>&1; then
    "$STEMSPLIT" -q -m "$T/htd.safetensors" --then drums="$BS" --then vocals="$T/rof.safetensors" $F32 -o "$T/h" \
        --filename '{stem}.wav' "$T/song.wav" >"$T/log.h" 2>&1
    "$STEMSPLIT" -q -m "$BS" $F32 -o "$T/ref_hd" --filename '{stem}.wav' "$T/h/drums.wav" >"$T/log.hd" 2>&1
    "$STEMSPLIT" -q -m "$T/rof.safetensors" $F32 -o "$T/ref_hv" --filename '{stem}.wav' "$T/h/vocals.wav" \
        >"$T/log.hv" 2>&1
    same=1
    for s in drums/low drums/lowmid drums/highmid drums/high; do
        cmp -s "$T/h/$s.wav" "$T/ref_hd/${s#drums/}.wav" || same=0
    done
    check chain_htdemucs_then_bandsplit test $same -eq 1
    same=1
    for s in vocals/vocals vocals/instrumental; do
        cmp -s "$T/h/$s.wav" "$T/ref_hv/${s#vocals/}.wav" || same=0
    done
    check chain_htdemucs_then_roformer test $same -eq 1
else
    skip chain_htdemucs_then_bandsplit "the fixtures did not convert: $(tail -n 1 "$T/conv.log")"
    skip chain_htdemucs_then_roformer "the fixtures did not convert"
fi

# ---- --segment is the first model's: the chained model keeps its own chunking (id16k's output
# depends on where its chunks fall) ------------------------------------------------------------------
"$STEMSPLIT" -q -m "$BS" --segment 0.7 --then lowmid="$T/id16k.safetensors" $F32 -o "$T/g" --filename '{stem}.wav' \
    "$T/song.wav" >"$T/log.g" 2>&1
"$STEMSPLIT" -q -m "$T/id16k.safetensors" $F32 -o "$T/ref_g" --filename '{stem}.wav' "$T/g/lowmid.wav" >"$T/log.rg" 2>&1
"$STEMSPLIT" -q -m "$T/id16k.safetensors" --segment 0.7 $F32 -o "$T/ref_g7" --filename '{stem}.wav' "$T/g/lowmid.wav" \
    >"$T/log.rg7" 2>&1
check chain_segment_is_the_first_models sh -c "python3 '$T/cmp.py' '$T/g/lowmid/a.wav' '$T/ref_g/a.wav' && \
! python3 '$T/cmp.py' '$T/g/lowmid/a.wav' '$T/ref_g7/a.wav' 2>/dev/null"

# ---- names: the default template, {model} the first model's, STEM/NAME as {stem} ----------------
"$STEMSPLIT" -q -m "$BS" --then high="$T/id16k.safetensors" -o "$T/d" "$T/song.wav" >"$T/log.d" 2>&1
(cd "$T/d" && find . -type f | sort | tr '\n' ' ') >"$T/d.list"
check chain_default_paths test "$(cat "$T/d.list")" = "./bandsplit4/song/high.wav ./bandsplit4/song/high/a.wav \
./bandsplit4/song/high/b.wav ./bandsplit4/song/highmid.wav ./bandsplit4/song/low.wav ./bandsplit4/song/lowmid.wav "
"$STEMSPLIT" -q -m "$BS" --then high="$T/id16k.safetensors" -o "$T/e" --format flac \
    --filename '{model}-{track}/{stem}-x.{ext}' "$T/song.wav" >"$T/log.e" 2>&1
check chain_template_and_format test -f "$T/e/bandsplit4-song/high/a-x.flac" -a -f "$T/e/bandsplit4-song/high-x.flac"

# ---- --stems: the first model's stems; a chained stem left out is not written, its stems are ----
"$STEMSPLIT" -q -m "$BS" --then low=bandsplit4 --stems high -o "$T/s" --filename '{stem}.wav' "$T/song.wav" \
    >"$T/log.s" 2>&1
check chain_stems_selection test -f "$T/s/high.wav" -a ! -e "$T/s/low.wav" -a -f "$T/s/low/high.wav" \
    -a ! -e "$T/s/lowmid.wav"

# --two-stems likewise: STEM and no_STEM of the first model, every stem of the chained one
"$STEMSPLIT" -q -m "$BS" --then high=bandsplit4 --two-stems low -o "$T/t2" --filename '{stem}.wav' "$T/song.wav" \
    >"$T/log.t2" 2>&1
(cd "$T/t2" && find . -type f | sort | tr '\n' ' ') >"$T/t2.list"
check chain_two_stems test "$(cat "$T/t2.list")" = "./high/high.wav ./high/highmid.wav ./high/low.wav ./high/lowmid.wav \
./low.wav ./no_low.wav "

# ---- a residual stem chained (instrumental = mixture - vocals) ---------------------------------
"$STEMSPLIT" -q -m "$T/voc.safetensors" --then instrumental=bandsplit4 $F32 -o "$T/v" --filename '{stem}.wav' \
    "$T/song.wav" >"$T/log.v" 2>&1
"$STEMSPLIT" -q -m "$BS" $F32 -o "$T/ref_v" --filename '{stem}.wav' "$T/v/instrumental.wav" >"$T/log.rv" 2>&1
same=1
for s in low lowmid highmid high; do
    cmp -s "$T/v/instrumental/$s.wav" "$T/ref_v/$s.wav" || same=0
done
check chain_residual_stem test $same -eq 1
# chained without being written (--stems vocals): the same stems
"$STEMSPLIT" -q -m "$T/voc.safetensors" --then instrumental=bandsplit4 --stems vocals $F32 -o "$T/v2" \
    --filename '{stem}.wav' "$T/song.wav" >"$T/log.v2" 2>&1
check chain_residual_not_written_still_chained sh -c "test ! -e '$T/v2/instrumental.wav' && \
cmp -s '$T/v2/instrumental/low.wav' '$T/ref_v/low.wav'"

# ---- a batch of two files: each model loaded once, both stages' times in the reports -----------
"$STEMSPLIT" -v -m "$BS" --then low="$T/id16k.safetensors" -o "$T/b" --report-json "$T/b.json" \
    "$T/song.wav" "$T/other.wav" >"$T/log.b" 2>&1
check chain_batch_runs test $? -eq 0
check chain_batch_models_loaded_once test "$(grep -c 'then low: model id16k' "$T/log.b")" -eq 1 -a \
    "$(grep -c 'model bandsplit4 (' "$T/log.b")" -eq 1
check chain_batch_text_report grep -q "other.wav: .*; models: bandsplit4 [0-9.]* s, [0-9.]*x realtime, low=id16k" \
    "$T/log.b"
python3 - "$T/b.json" >"$T/b.check" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["model"]["name"] == "bandsplit4", d["model"]
assert d["model"]["chain"] == [{"stem": "low", "name": "id16k", "architecture": "identity", "sources": ["a", "b"]}], d["model"]
assert len(d["files"]) == 2
for f in d["files"]:
    assert f["status"] == "ok", f
    ch = f["chain"]
    assert [c["model"] for c in ch] == ["bandsplit4", "id16k"] and [c["stem"] for c in ch] == [None, "low"], ch
    for key in ("decode", "infer", "encode"):
        tot = sum(c["stages"][key] for c in ch)
        assert abs(tot - f["stages"][key]) < 1e-6, (key, tot, f["stages"])
    assert abs(sum(c["wall_seconds"] for c in ch) - f["wall_seconds"]) < 1e-6
    assert all(c["rtf"] > 0 and c["audio_seconds"] == f["audio_seconds"] for c in ch), ch
    assert len(f["outputs"]) == 6 and sum("/low/" in o for o in f["outputs"]) == 2, f["outputs"]
print("ok")
PY
check chain_json_report grep -qx ok "$T/b.check"
python3 "$SS_ROOT/scripts/merge-reports.py" -q -o "$T/merged.json" "$T/b.json" >"$T/merge.log" 2>&1
check chain_report_merges test $? -eq 0

# ---- --skip-existing counts the chained stems ------------------------------------------------------
"$STEMSPLIT" -m "$BS" --then low="$T/id16k.safetensors" -o "$T/b" --skip-existing "$T/song.wav" >"$T/log.k1" 2>&1
check chain_skip_existing_all_there grep -q "skipped (all 6 stems exist" "$T/log.k1"
rm -f "$T/b/bandsplit4/song/low/b.wav"
"$STEMSPLIT" -m "$BS" --then low="$T/id16k.safetensors" -o "$T/b" --skip-existing "$T/song.wav" >"$T/log.k2" 2>&1
check chain_skip_existing_redoes_a_missing_chained_stem test -f "$T/b/bandsplit4/song/low/b.wav"

# every stem of 1 + 4 models (20, more than one model can have) counted
ALL4="--then low=$BS --then lowmid=$BS --then highmid=$BS --then high=$BS"
"$STEMSPLIT" -q -m "$BS" $ALL4 -o "$T/m" "$T/other.wav" >"$T/log.m0" 2>&1
"$STEMSPLIT" -m "$BS" $ALL4 -o "$T/m" --skip-existing "$T/other.wav" >"$T/log.m1" 2>&1
check chain_skip_existing_counts_every_model grep -q "skipped (all 20 stems exist" "$T/log.m1"
rm -f "$T/m/bandsplit4/other/high/high.wav"
"$STEMSPLIT" -q -m "$BS" $ALL4 -o "$T/m" --skip-existing "$T/other.wav" >"$T/log.m2" 2>&1
check chain_skip_existing_redoes_the_last_model test -f "$T/m/bandsplit4/other/high/high.wav"

# --no-clobber: an existing chained stem (the only stem there) is an error for its track (73), kept
mkdir -p "$T/nc/bandsplit4/other/low"
echo keep >"$T/nc/bandsplit4/other/low/high.wav"
expect_exit chain_no_clobber 73 "$STEMSPLIT" -q -m "$BS" --then low="$BS" -o "$T/nc" --no-clobber "$T/other.wav"
check chain_no_clobber_names_the_stem grep -q "other/low/high.wav already exists (--no-clobber)" "$T/out.chain_no_clobber"
check chain_no_clobber_kept_it test "$(cat "$T/nc/bandsplit4/other/low/high.wav")" = keep -a \
    ! -e "$T/nc/bandsplit4/other/low.wav"

# two models' stems on one file: refused for that track (64), nothing written
mkmodel "$T/one.safetensors" 44100 2 a
expect_exit chain_two_models_one_file 64 "$STEMSPLIT" -q -m "$BS" --stems high --then low="$T/one.safetensors" \
    -o "$T/y" --filename '{track}.{ext}' "$T/song.wav"
check chain_two_models_one_file_says_so grep -q "writes stems 'high' and 'low/a' of .*song.wav to the same file" \
    "$T/out.chain_two_models_one_file"
check chain_two_models_one_file_wrote_nothing test ! -e "$T/y/song.wav"

# ---- usage errors, found from the headers before any input is read (the input does not exist) ----
expect_exit chain_unknown_stem 64 "$STEMSPLIT" -m "$BS" --then drums=bandsplit4 -o "$T/x" "$T/missing.wav"
check chain_unknown_stem_says_which grep -q "model bandsplit4 has no stem 'drums' (it has: low, lowmid, highmid, high)" \
    "$T/out.chain_unknown_stem"
expect_exit chain_missing_model 66 "$STEMSPLIT" -m "$BS" --then low=no_such_model -o "$T/x" "$T/missing.wav"
check chain_missing_model_says_which grep -q -- "--then low=no_such_model: model 'no_such_model' not found" \
    "$T/out.chain_missing_model"
expect_exit chain_duplicate_stem 64 "$STEMSPLIT" -m "$BS" --then low=bandsplit4 --then low="$T/id16k.safetensors" \
    -o "$T/x" "$T/missing.wav"
check chain_duplicate_says_so grep -q "stem low is chained twice" "$T/out.chain_duplicate_stem"
expect_exit chain_syntax 64 "$STEMSPLIT" -m "$BS" --then low -o "$T/x" "$T/song.wav"
expect_exit chain_syntax_empty_model 64 "$STEMSPLIT" -m "$BS" --then low= -o "$T/x" "$T/song.wav"
printf 'not a model' >"$T/bad.safetensors"
expect_exit chain_bad_model_file 65 "$STEMSPLIT" -m "$BS" --then low="$T/bad.safetensors" -o "$T/x" "$T/song.wav"
expect_exit chain_rate_out_of_reach 64 "$STEMSPLIT" -m "$T/slow.safetensors" --then a="$T/fast.safetensors" -o "$T/x" \
    "$T/song.wav"
check chain_rate_out_of_reach_says_why grep -q "model fast runs at 768000 Hz, too far from model slow's 1000 Hz" \
    "$T/out.chain_rate_out_of_reach"
expect_exit chain_channels_unmappable 64 "$STEMSPLIT" -m "$BS" --then low="$T/three.safetensors" -o "$T/x" "$T/song.wav"
check chain_channels_unmappable_says_why grep -q "model three takes 3 channels, and model bandsplit4's stems have 2" \
    "$T/out.chain_channels_unmappable"
check chain_errors_wrote_nothing test ! -e "$T/x"

# ---- bounded memory: a 20-minute 16 kHz track (73 MiB as floats) through two chained models ------
python3 - "$T/long.wav" <<'PY'
import math, struct, sys
rate, n = 16000, 16000 * 1200
sec = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 441 * i / rate))) for i in range(rate))
with open(sys.argv[1], "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", 36 + 2 * n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16))
    f.write(b"data" + struct.pack("<I", 2 * n))
    for _ in range(n // rate):
        f.write(sec)
PY
mkmodel "$T/longa.safetensors" 16000 1 x,y stemsplit.segment=4
mkmodel "$T/longb.safetensors" 16000 1 p,q stemsplit.segment=4
python3 - "$T/rss" "$STEMSPLIT" -q -m "$T/longa.safetensors" --then x="$T/longb.safetensors" --stems y -o "$T/long" \
    --clip clamp "$T/long.wav" <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write("%d %d\n" % (rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
PY
read -r rc rss <"$T/rss"
echo "# 20-minute track, two models chained: exit $rc, max RSS $rss KiB"
if [ "$rc" -eq 0 ] && [ "$rss" -lt 65536 ] && [ -f "$T/long/longa/long/x/q.wav" ]; then
    pass chain_20_minutes_in_bounded_memory
else
    fail chain_20_minutes_in_bounded_memory "exit $rc, max RSS $rss KiB (the track alone is 75000 KiB as floats)"
fi

# ---- SIGINT while a chained model runs: exit 130, no stem of the track, no temporary file left -------
if [ -f "$T/htd.safetensors" ]; then
    "$STEMSPLIT" -m "$T/longa.safetensors" --then x="$T/htd.safetensors" -o "$T/int" "$T/long.wav" \
        >"$T/log.int" 2>&1 &
    pid=$!
    sleep 6
    kill -INT $pid 2>/dev/null
    wait $pid
    rc=$?
    left=$(find "$T/int" -type f 2>/dev/null | head -n 3 | tr '\n' ' ')
    if [ "$rc" -eq 130 ] && [ -z "$left" ]; then
        pass chain_interrupted_leaves_nothing
    else
        fail chain_interrupted_leaves_nothing "exit $rc, left: $left $(tail -n 2 "$T/log.int" | tr '\n' ' ')"
    fi
fi

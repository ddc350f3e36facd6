# t_eval.sh - `stemsplit eval`: scores read from stem files match museval's
# (tests/fixtures/eval/scores.json), one folder and MUSDB-style trees, the
# aggregates, the JSON report, and the errors for stems that do not match.
. "$(dirname "$0")/lib.sh"
GEN="$SS_ROOT/scripts/make-eval-fixtures.py"
SCORES="$SS_ROOT/tests/fixtures/eval/scores.json"
if ! command -v python3 >/dev/null 2>&1; then
    skip eval_cli "python3 is needed to write the test stems"
    exit 0
fi
python3 "$GEN" wav two_stereo "$T/two" && python3 "$GEN" wav four_silent "$T/four" &&
    python3 "$GEN" wav mono_short "$T/mono" || { fail eval_make_stems "make-eval-fixtures.py wav failed"; exit 1; }

# compare.py REPORT CASE TRACK_INDEX: the track's medians and nSDR match museval within 0.01 dB
cat > "$T/compare.py" <<'EOF'
import json, math, sys
rep = json.load(open(sys.argv[1])); ref = json.load(open(sys.argv[2]))
case = [c for c in ref["cases"] if c["name"] == sys.argv[3]][0]
tr = rep["tracks"][int(sys.argv[4])]
assert sorted(tr["stems"]) == sorted(case["stems"]), (sorted(tr["stems"]), case["stems"])
for j, stem in enumerate(case["stems"]):
    for m in ("SDR", "ISR", "SIR", "SAR", "nSDR"):
        want = case["nSDR"][j] if m == "nSDR" else case["median"][m][j]
        got = tr["stems"][stem][m]
        assert (want is None) == (got is None) and (got is None or abs(got - want) <= 0.01), (stem, m, got, want)
    for m in ("SDR", "ISR", "SIR", "SAR"):
        for got, want in zip(tr["stems"][stem]["frames"][m], case["frames"][m][j]):
            assert (want is None) == (got is None) and (got is None or abs(got - want) <= 0.01), (stem, m, got, want)
EOF

# one folder: two_stereo's first estimate is 20000 samples short (zero-padded)
expect_exit eval_folder_ok 0 "$STEMSPLIT" eval --report-json "$T/r1.json" "$T/two/ref" "$T/two/est"
check eval_folder_matches_museval python3 "$T/compare.py" "$T/r1.json" "$SCORES" two_stereo 0
check eval_folder_table_has_stems grep -q "^ref *drums" "$T/out.eval_folder_ok"

# MUSDB-style trees: three tracks, a mixture that is not scored, estimates cut and padded
mkdir -p "$T/mus/ref" "$T/mus/est"
for c in two four mono; do
    mv "$T/$c/ref" "$T/mus/ref/$c" && mv "$T/$c/est" "$T/mus/est/$c"
done
cp "$T/mus/ref/four/drums.wav" "$T/mus/ref/four/mixture.wav"
expect_exit eval_tree_ok 0 "$STEMSPLIT" eval -q --report-json "$T/r2.json" "$T/mus/ref" "$T/mus/est"
check eval_tree_four_matches_museval python3 "$T/compare.py" "$T/r2.json" "$SCORES" four_silent 0
check eval_tree_mono_matches_museval python3 "$T/compare.py" "$T/r2.json" "$SCORES" mono_short 1
check eval_tree_two_matches_museval python3 "$T/compare.py" "$T/r2.json" "$SCORES" two_stereo 2
cat > "$T/agg.py" <<'EOF'
import json, statistics, sys
rep = json.load(open(sys.argv[1]))
assert [t["name"] for t in rep["tracks"]] == ["four", "mono", "two"]
v = [t["stems"]["drums"]["SDR"] for t in rep["tracks"]]
assert abs(rep["aggregate"]["sisec"]["drums"]["SDR"] - statistics.median(v)) < 1e-9
assert abs(rep["aggregate"]["demucs"]["drums"]["SDR"] - statistics.mean(v)) < 1e-9
assert abs(statistics.median(v) - statistics.mean(v)) > 1e-3
n = [t["stems"]["drums"]["nSDR"] for t in rep["tracks"]]
assert abs(rep["aggregate"]["demucs"]["drums"]["nSDR"] - statistics.mean(n)) < 1e-9
EOF
check eval_tree_aggregates python3 "$T/agg.py" "$T/r2.json"
# --plot: SVG, one line per stem, broken where frames are undefined (four: frames 1 and 3 of 4)
expect_exit eval_plot_ok 0 "$STEMSPLIT" eval -q --plot "$T/p.svg" "$T/mus/ref/four" "$T/mus/est/four"
check eval_plot_svg python3 -c 'import sys, xml.etree.ElementTree as E
r = E.parse(sys.argv[1]).getroot()
lines = [e for e in r.iter() if e.tag.endswith("polyline")]
assert len(lines) == 8, len(lines)
assert all(len(e.get("points").split()) == 1 for e in lines)
assert len([e for e in r.iter() if e.tag.endswith("circle")]) == 8' "$T/p.svg"
"$STEMSPLIT" eval --report-json - "$T/mus/ref/two" "$T/mus/est/two" >"$T/r3.json" 2>"$T/r3.err"
check eval_report_to_stdout python3 "$T/compare.py" "$T/r3.json" "$SCORES" two_stereo 0
check eval_report_to_stdout_table_on_stderr grep -q "drums" "$T/r3.err"

# stems that do not match: 65, naming the stem
mkdir -p "$T/bad"
cp -r "$T/mus/ref/two" "$T/bad/ref" && cp -r "$T/mus/est/two" "$T/bad/est"
rm "$T/bad/est/bass.wav"
expect_exit eval_missing_stem_is_65 65 "$STEMSPLIT" eval "$T/bad/ref" "$T/bad/est"
check eval_missing_stem_named grep -q "bass" "$T/out.eval_missing_stem_is_65"
cp "$T/mus/est/two/bass.wav" "$T/bad/est/bass.wav"
cp "$T/bad/est/drums.wav" "$T/bad/est/guitar.wav"
expect_exit eval_extra_stem_is_65 65 "$STEMSPLIT" eval "$T/bad/ref" "$T/bad/est"
check eval_extra_stem_named grep -q "guitar" "$T/out.eval_extra_stem_is_65"
rm "$T/bad/est/guitar.wav"
python3 -c 'import wave,sys
def w(p, ch, rate):
    f = wave.open(p, "wb"); f.setnchannels(ch); f.setsampwidth(2); f.setframerate(rate)
    f.writeframes(bytes(range(256)) * 800); f.close()
w(sys.argv[1] + "/rate.wav", 2, 48000); w(sys.argv[1] + "/mono.wav", 1, 44100)' "$T"
cp "$T/rate.wav" "$T/bad/est/bass.wav"
expect_exit eval_rate_mismatch_is_65 65 "$STEMSPLIT" eval "$T/bad/ref" "$T/bad/est"
check eval_rate_mismatch_named grep -q "bass.wav: sample rate 48000" "$T/out.eval_rate_mismatch_is_65"
cp "$T/mono.wav" "$T/bad/est/bass.wav"
expect_exit eval_channels_mismatch_is_65 65 "$STEMSPLIT" eval "$T/bad/ref" "$T/bad/est"
check eval_channels_mismatch_named grep -q "bass.wav: 1 channel" "$T/out.eval_channels_mismatch_is_65"
cp "$T/mus/est/two/bass.wav" "$T/bad/est/bass.flac"
expect_exit eval_stem_twice_is_65 65 "$STEMSPLIT" eval "$T/bad/ref" "$T/bad/est"
rm -r "$T/mus/est/mono"
expect_exit eval_tree_missing_track_is_65 65 "$STEMSPLIT" eval "$T/mus/ref" "$T/mus/est"
check eval_tree_missing_track_named grep -q "mono" "$T/out.eval_tree_missing_track_is_65"

# usage
expect_exit eval_no_folders_is_64 64 "$STEMSPLIT" eval
expect_exit eval_unknown_option_is_64 64 "$STEMSPLIT" eval --nope "$T/bad/ref" "$T/bad/est"
expect_exit eval_missing_folder_is_66 66 "$STEMSPLIT" eval "$T/nope" "$T/bad/est"
expect_exit eval_help_is_0 0 "$STEMSPLIT" eval --help
"$STEMSPLIT" --help >"$T/help.out" 2>&1
check help_mentions_eval grep -q "stemsplit eval" "$T/help.out"

# -m MODEL: separate each track's mixture into EST_DIR/TRACK/, then score; the references here are
# the model's own output, so every estimate matches its reference (nSDR far above 50 dB)
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
mkdir -p "$T/sep/ref/Song A"
python3 -c 'import wave, struct, math, random, sys
random.seed(5); f = wave.open(sys.argv[1], "wb"); f.setnchannels(2); f.setsampwidth(2); f.setframerate(44100)
f.writeframes(b"".join(struct.pack("<hh", int(6000 * math.sin(i / 9) + random.randint(-3000, 3000)),
                                   int(6000 * math.cos(i / 31) + random.randint(-3000, 3000))) for i in range(88200)))
f.close()' "$T/sep/ref/Song A/mixture.wav"
"$STEMSPLIT" -q -j 1 -m "$M" -o "$T/sep/ref/Song A" --filename '{stem}.{ext}' --sample-format f32 "$T/sep/ref/Song A/mixture.wav"
expect_exit eval_model_ok 0 "$STEMSPLIT" eval -q -j 1 -m "$M" --report-json "$T/r4.json" "$T/sep/ref" "$T/sep/est"
check eval_model_wrote_estimates test -f "$T/sep/est/Song A/low.wav"
check eval_model_scores_and_rtf python3 -c 'import json, sys
t = json.load(open(sys.argv[1]))["tracks"][0]
assert t["name"] == "Song A" and sorted(t["stems"]) == ["high", "highmid", "low", "lowmid"], t["stems"].keys()
assert all(s["nSDR"] > 50 for s in t["stems"].values()), [s["nSDR"] for s in t["stems"].values()]
assert t["separation"]["rtf"] > 0 and abs(t["separation"]["audio_seconds"] - 2) < 1e-6, t["separation"]' "$T/r4.json"
rm "$T/sep/ref/Song A/mixture.wav"
expect_exit eval_model_no_mixture_is_66 66 "$STEMSPLIT" eval -q -m "$M" "$T/sep/ref" "$T/sep/est2"
check eval_model_no_mixture_named grep -q "mixture" "$T/out.eval_model_no_mixture_is_66"

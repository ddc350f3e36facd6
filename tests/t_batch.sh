# t_batch.sh - batches: a folder tree with corrupt files, resume after a kill,
# shards, name collisions, --files-from -, --no-clobber, pipelined = serial.
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
SS="$STEMSPLIT -m $M --segment 1"
command -v python3 >/dev/null || { skip batch "python3 is needed to make the test audio"; exit 0; }

# A tree of 50 files (0.4 s, 44.1 kHz, each different) in nested folders, 3 of them corrupt:
# text named .wav, a WAV header cut short, and a 3-channel WAV (the model takes 1 or 2).
python3 - "$T/lib" <<'EOF' || { fail tree "cannot make the test audio"; exit 0; }
import math, os, struct, sys, wave
root = sys.argv[1]
dirs = ["", "rock", "rock/album one", "jazz", "jazz/live/1999", "jazz/live/2001", "misc"]
for i in range(50):
    d = os.path.join(root, dirs[i % len(dirs)])
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "song %02d.wav" % i)
    if i in (7, 23, 41):
        continue
    w = wave.open(p, "wb"); w.setnchannels(2 if i % 5 else 1); w.setsampwidth(2); w.setframerate(44100)
    n = 17640 + 37 * i
    w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(k * (i + 3) / 50.0) + 3000 * math.sin(k / 3.0 + c)))
                           for k in range(n) for c in range(2 if i % 5 else 1)))
    w.close()
open(os.path.join(root, dirs[0], "song 07.wav"), "w").write("this is not audio\n")
good = open(os.path.join(root, dirs[1], "song 01.wav"), "rb").read()
open(os.path.join(root, dirs[2], "song 23.wav"), "wb").write(good[:30])
w = wave.open(os.path.join(root, dirs[6], "song 41.wav"), "wb"); w.setnchannels(9); w.setsampwidth(2)
w.setframerate(44100); w.writeframes(b"\0" * 18 * 4410); w.close()
open(os.path.join(root, "cover.jpg"), "w").write("not audio, not an input\n")
EOF

# every track of $1 (a list of "input<TAB>outdir" lines) complete: 4 stems, each a WAV of the input's length
check_complete() {
    python3 - "$@" <<'EOF'
import sys, wave
bad = 0
for line in open(sys.argv[1]):
    src, out = line.rstrip("\n").split("\t")
    n = wave.open(src).getnframes()
    for s in ("low", "lowmid", "highmid", "high"):
        try:
            w = wave.open("%s/%s.wav" % (out, s))
            if w.getnframes() != n or w.getnchannels() != 2:
                raise ValueError("%d frames, %d channels, want %d" % (w.getnframes(), w.getnchannels(), n))
        except Exception as e:
            print("%s/%s.wav: %s" % (out, s, e), file=sys.stderr); bad += 1
sys.exit(1 if bad else 0)
EOF
}
no_temporaries() { [ -z "$(find "$1" -name '.*' -type f)" ]; }

# ---- 1. the tree: 47 written, 3 failures named, exit 65 ------------------------------------------
$SS -r -o "$T/out" --report-json "$T/tree.json" "$T/lib" >"$T/tree.out" 2>&1; rc=$?
if [ "$rc" -eq 65 ]; then pass tree_exit_65; else fail tree_exit_65 "exit $rc: $(tail -n 3 "$T/tree.out")"; fi
n=$(find "$T/out" -name high.wav | wc -l)
if [ "$n" -eq 47 ]; then pass tree_47_tracks; else fail tree_47_tracks "$n tracks written, want 47"; fi
(cd "$T/lib" && find . -name '*.wav' ! -name 'song 07.wav' ! -name 'song 23.wav' ! -name 'song 41.wav') | sort |
    while IFS= read -r f; do f=${f#./}; printf '%s\t%s\n' "$T/lib/$f" "$T/out/bandsplit4/${f%.wav}"; done > "$T/tree.list"
check tree_outputs_mirror_tree_and_are_complete check_complete "$T/tree.list"
check tree_no_temporaries no_temporaries "$T/out"
missing=""
for f in "song 07.wav" "album one/song 23.wav" "misc/song 41.wav"; do
    grep -q "$f" "$T/tree.out" || missing="$missing [$f]"
done
if [ -z "$missing" ]; then pass tree_failures_named; else fail tree_failures_named "not in the output:$missing"; fi
python3 - "$T/tree.json" <<'EOF' >"$T/tree.check" 2>&1
import json, sys
r = json.load(open(sys.argv[1]))
st = {}
for f in r["files"]:
    st[f["status"]] = st.get(f["status"], 0) + 1
    assert (f["status"] == "failed") == ("error" in f), f
    if f["status"] == "failed":
        assert f["input"].endswith(("song 07.wav", "song 23.wav", "song 41.wav")), f
        assert f["input"] in f["error"], f
    else:
        assert len(f["outputs"]) == 4, f
assert st == {"ok": 47, "failed": 3}, st
assert r["total"]["files"] == 47 and r["total"]["failed"] == 3, r["total"]
EOF
if [ $? -eq 0 ]; then pass tree_json_report; else fail tree_json_report "$(tail -n 2 "$T/tree.check")"; fi

# ---- 2. shards 1/3, 2/3, 3/3 cover every input once; the order inputs are given in does not matter ---
# (into the tree's output, with --skip-existing: the reports list every input, the work is done already)
(cd "$T/lib" && find . -name '*.wav') | sed "s|^\./|$T/lib/|" | sort > "$T/all.list"
sort -r "$T/all.list" > "$T/all.rev"
for i in 1 2 3; do
    lst="$T/all.list"; [ "$i" -eq 2 ] && lst="$T/all.rev"
    $SS -q -o "$T/out" --skip-existing --files-from "$lst" --shard "$i/3" --report-json "$T/sh$i.json" >/dev/null 2>&1
done
python3 - "$T/all.list" "$T"/sh1.json "$T"/sh2.json "$T"/sh3.json <<'EOF' >"$T/shard.check" 2>&1
import json, sys
want = sorted(l.rstrip("\n") for l in open(sys.argv[1]))
got, sizes = [], []
for p in sys.argv[2:]:
    r = json.load(open(p))
    files = [f["input"] for f in r["files"]]
    got += files; sizes.append(len(files))
    assert r["shard"]["count"] == 3 and r["shard"]["inputs"] == 50, r["shard"]
assert sorted(got) == want, "shards cover %d inputs (%d distinct) of %d" % (len(got), len(set(got)), len(want))
assert max(sizes) - min(sizes) <= 1, sizes
EOF
if [ $? -eq 0 ]; then pass shards_cover_every_file_once; else fail shards_cover_every_file_once "$(tail -n 2 "$T/shard.check")"; fi
if python3 "$SS_ROOT/scripts/merge-reports.py" -o "$T/merged.json" "$T"/sh1.json "$T"/sh2.json "$T"/sh3.json \
       >"$T/merge.out" 2>&1; mrc=$?; [ "$mrc" -eq 1 ] &&
   python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["total"]; sys.exit(0 if (t["files"]+t["skipped"],t["failed"])==(47,3) else 1)' "$T/merged.json"
then pass merged_shard_reports; else fail merged_shard_reports "exit $mrc: $(tail -n 2 "$T/merge.out")"; fi

# ---- 3. name collisions are refused before any work ---------------------------------------------
mkdir -p "$T/c1" "$T/c2" && cp "$T/lib/rock/song 01.wav" "$T/c1/x.wav" && cp "$T/lib/rock/song 08.wav" "$T/c2/x.wav"
expect_exit collision_is_64 64 $SS -o "$T/oc" "$T/c1" "$T/c2"
check collision_names_both grep -q "c1/x.wav and .*c2/x.wav" "$T/out.collision_is_64"
check collision_writes_nothing test ! -e "$T/oc"
mkdir -p "$T/n/a" "$T/n/b/c" && cp "$T/c1/x.wav" "$T/n/a/" && cp "$T/c1/x.wav" "$T/n/b/c/"
expect_exit collision_flat_template_is_64 64 $SS -o "$T/oc" -r --filename '{track}/{stem}.{ext}' "$T/n"
check collision_flat_names_both grep -q "n/a/x.wav and .*n/b/c/x.wav" "$T/out.collision_flat_template_is_64"
expect_exit collision_by_shard_too_is_64 64 $SS -o "$T/oc" --shard 2/2 "$T/c1" "$T/c2"

# ---- 4. --files-from - ---------------------------------------------------------------------------
printf '%s\n' "$T/c1/x.wav" "" "$T/lib/rock/song 08.wav" | $SS -q -o "$T/ff" --files-from - >"$T/ff.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && [ -f "$T/ff/bandsplit4/x/high.wav" ] && [ -f "$T/ff/bandsplit4/song 08/high.wav" ]; then pass files_from_stdin
else fail files_from_stdin "exit $rc: $(tail -n 2 "$T/ff.out")"; fi
expect_exit files_from_and_stdin_input_is_64 64 $SS -o "$T/ff" --files-from - - </dev/null

# ---- 5. --no-clobber: an existing stem fails its track, the others go on --------------------------
mkdir -p "$T/nc/bandsplit4/x" && echo keep > "$T/nc/bandsplit4/x/low.wav"
expect_exit no_clobber_is_73 73 $SS -q -o "$T/nc" --no-clobber "$T/c1/x.wav" "$T/lib/rock/song 08.wav"
check no_clobber_keeps_file grep -q keep "$T/nc/bandsplit4/x/low.wav"
check no_clobber_other_track_written test -f "$T/nc/bandsplit4/song 08/high.wav"

# ---- 6. resume after a kill in the middle ------------------------------------------------------
# reference: the same batch, uninterrupted (tests/test_pipeline.c checks that pipelined and
# serial stages write the same bytes)
mkdir -p "$T/rs"
for i in 0 1 2 3 4 5 6 7 8 9 10 11; do cp "$T/lib/rock/song 08.wav" "$T/rs/t$i.wav"; done
$SS -q --clip clamp -o "$T/ref" "$T/rs" 2>/dev/null
# wait until N tracks are complete in $1 (at most 60 s), then send signal $2 to $3
kill_after() {
    i=0
    while [ "$(find "$1" -name high.wav 2>/dev/null | wc -l)" -lt 3 ] && [ $i -lt 600 ] && kill -0 "$3" 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
    done
    kill "-$2" "$3" 2>/dev/null
}
same_as_ref() { diff -r "$T/ref" "$1" >/dev/null; }
for sig in TERM INT KILL; do
    out="$T/r$sig"
    $SS --clip clamp -o "$out" --report-json "$T/r$sig.json" "$T/rs" >"$T/r$sig.out" 2>&1 &
    pid=$!
    kill_after "$out" $sig $pid
    wait $pid; rc=$?
    want=143; [ $sig = INT ] && want=130; [ $sig = KILL ] && want=137
    if [ $rc -eq $want ]; then pass "killed_${sig}_exit_$want"; else fail "killed_${sig}_exit_$want" "exit $rc (finished before the kill?)"; fi
    done_before=$(find "$out" -name high.wav | wc -l)
    if [ $sig != KILL ]; then
        check "killed_${sig}_no_temporaries" no_temporaries "$out"
        check "killed_${sig}_summary_printed" grep -q "^total: " "$T/r$sig.out"
        check "killed_${sig}_report_written" python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if len(r["files"])==12 else 1)' "$T/r$sig.json"
        # finished tracks are whole: every track folder has all four stems or is empty
        partial=$(for d in "$out"/bandsplit4/*/; do [ -d "$d" ] && n=$(ls "$d" | wc -l) && [ "$n" -ne 0 ] && [ "$n" -ne 4 ] && echo "$d"; done)
        if [ -z "$partial" ]; then pass "killed_${sig}_tracks_whole"; else fail "killed_${sig}_tracks_whole" "partial: $partial"; fi
        # and the track that was abandoned leaves no empty folder behind
        empty=$(find "$out" -mindepth 1 -type d -empty)
        if [ -z "$empty" ]; then pass "killed_${sig}_no_empty_folders"; else fail "killed_${sig}_no_empty_folders" "$empty"; fi
    else
        # a track killed between renames: only some stems (the rest must be redone, not skipped)
        d=$(ls -d "$out"/bandsplit4/*/ | head -n 1); rm -f "$d/high.wav"; done_before=$((done_before - 1))
        : > "$d/.lowmid.wav.tmp-AbC123"
    fi
    $SS --clip clamp -o "$out" --skip-existing --report-json "$T/r$sig.2.json" "$T/rs" >"$T/r$sig.2.out" 2>&1; rc=$?
    if [ $rc -eq 0 ]; then pass "resume_${sig}_exit_0"; else fail "resume_${sig}_exit_0" "exit $rc: $(tail -n 2 "$T/r$sig.2.out")"; fi
    check "resume_${sig}_outputs_complete_and_correct" same_as_ref "$out"
    check "resume_${sig}_no_temporaries" no_temporaries "$out"
    skipped=$(python3 -c 'import json,sys; print(sum(f["status"]=="skipped" for f in json.load(open(sys.argv[1]))["files"]))' "$T/r$sig.2.json")
    if [ "$skipped" -eq "$done_before" ] && [ "$done_before" -ge 2 ]; then pass "resume_${sig}_skips_finished"
    else fail "resume_${sig}_skips_finished" "$skipped skipped, $done_before were finished"; fi
done

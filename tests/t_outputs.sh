# t_outputs.sh - where outputs go and what a run refuses, skips or says:
# no stem over an input, the output folder never searched, two runs on one
# output folder, a full disk, the report checked first, {inext}, formats no
# reader opens, the default template and model, messages a user can act on.
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
SS="$STEMSPLIT -m $M --segment 1"
command -v python3 >/dev/null || { skip outputs "python3 is needed to make the test audio"; exit 0; }
# wav PATH FRAMES [CHANNELS]: a stereo (or mono) 16-bit 44.1 kHz test signal
wav() {
    python3 - "$1" "$2" "${3:-2}" <<'EOF'
import math, struct, sys, wave
p, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
w = wave.open(p, "wb"); w.setnchannels(c); w.setsampwidth(2); w.setframerate(44100)
w.writeframes(b"".join(struct.pack("<h", int(7000 * math.sin(k / (7.0 + ch)) + 2000 * math.sin(k / 90.0)))
                       for k in range(n) for ch in range(c)))
w.close()
EOF
}
sum() { md5sum "$1" | cut -d' ' -f1; }
nwav() { find "$1" -name '*.wav' | wc -l; }

# ---- a stem is never written over an input -----------------------------------------------------
mkdir -p "$T/ov" && wav "$T/ov/a.wav" 8820 && wav "$T/ov/alow.wav" 8820 1
before=$(sum "$T/ov/alow.wav")
expect_exit stem_over_input_is_64 64 $SS -q -o "$T/ov" --filename '{track}{stem}.{ext}' --stems low "$T/ov/a.wav" "$T/ov/alow.wav"
check stem_over_input_keeps_input test "$before" = "$(sum "$T/ov/alow.wav")"
check stem_over_input_names_both grep -q "alow.wav: a stem of .*a.wav would be written over this input" "$T/out.stem_over_input_is_64"
# the same file under another spelling, and a hard link
ln "$T/ov/alow.wav" "$T/ov/hard.wav"
expect_exit stem_over_hard_link_is_64 64 $SS -q -o "$T/ov/./" --filename 'alow.{ext}' --stems low "$T/ov/hard.wav"
check stem_over_hard_link_keeps_input test "$before" = "$(sum "$T/ov/alow.wav")"
# --report-json over an input
expect_exit report_over_input_is_64 64 $SS -q -o "$T/ov_o" --report-json "$T/ov/../ov/a.wav" "$T/ov/a.wav"
check report_over_input_keeps_input sh -c "python3 -c 'import wave,sys; wave.open(sys.argv[1])' '$T/ov/a.wav'"

# ---- the output folder is never searched, whatever the spelling ---------------------------------
mkdir -p "$T/self/sub" && wav "$T/self/one.wav" 8820 && wav "$T/self/sub/two.wav" 8820
counts=""
for i in 1 2 3; do
    $SS -q -r -o "$T/self" "$T/self" >"$T/self.$i.out" 2>&1 || echo "run $i: exit $?" >>"$T/self.err"
    counts="$counts $(nwav "$T/self")"
done
if [ "$counts" = " 10 10 10" ] && [ ! -s "$T/self.err" ]; then pass r_o_dir_dir_stable
else fail r_o_dir_dir_stable "wav files after each run:$counts, want 10 10 10; $(cat "$T/self.err" 2>/dev/null)"; fi
# -o . inside the input tree (the output folder is a sub-folder of the folder searched)
mkdir -p "$T/tree/in" "$T/tree/out" && wav "$T/tree/in/x.wav" 8820
(cd "$T/tree/out" && $SS -q -r -o . .. && $SS -q -r -o ./ ..) >"$T/tree.out" 2>&1; rc=$?
n=$(nwav "$T/tree")
if [ $rc -eq 0 ] && [ "$n" -eq 5 ]; then pass o_dot_inside_tree_stable; else fail o_dot_inside_tree_stable "exit $rc, $n wav files, want 5"; fi

# ---- two runs on one output folder at once: both succeed, last writer wins -----------------------
wav "$T/long.wav" 441000
LONG="-q -j 1 --overlap 0.75 --clip none -m $M"
$STEMSPLIT $LONG -o "$T/two" "$T/long.wav" >"$T/two.a" 2>&1 &
pa=$!
i=0
while [ -z "$(find "$T/two" -name '.*.tmp-*' 2>/dev/null | head -n 1)" ] && kill -0 $pa 2>/dev/null && [ $i -lt 3000 ]; do
    sleep 0.05; i=$((i + 1))
done
$STEMSPLIT $LONG -o "$T/two" "$T/long.wav" >"$T/two.b" 2>&1 &
pb=$!
wait $pa; ra=$?
wait $pb; rb=$?
if [ $ra -eq 0 ] && [ $rb -eq 0 ]; then pass concurrent_runs_both_exit_0
else fail concurrent_runs_both_exit_0 "exits $ra and $rb: $(cat "$T/two.a" "$T/two.b" | tail -n 2 | tr '\n' ' ')"; fi
check concurrent_runs_four_stems test "$(nwav "$T/two")" -eq 4
check concurrent_runs_no_temporaries sh -c "[ -z \"\$(find '$T/two' -name '.*')\" ]"

# ---- a full disk stops the batch; the report lists every file ------------------------------------
mkdir -p "$T/small" "$T/df"
for k in 1 2 3 4; do cp "$T/long.wav" "$T/df/f$k.wav"; done
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=1m tmpfs "$T/small" 2>/dev/null; then
    trap 'umount "$T/small" 2>/dev/null; rm -rf "$T"' EXIT INT TERM
    expect_exit disk_full_batch_is_74 74 $SS -q --clip none -o "$T/small/o" --report-json "$T/df.json" "$T/df"
    # the file that met the full disk fails, and at most the one already prepared beside it
    n=$(grep -c "write failed: No space left on device" "$T/out.disk_full_batch_is_74")
    if [ "$n" -ge 1 ] && [ "$n" -le 2 ]; then pass disk_full_stops_early
    else fail disk_full_stops_early "$n disk-full failures, want 1 or 2 (then stop)"; fi
    python3 - "$T/df.json" <<'EOF' >"$T/df.check" 2>&1
import json, sys
r = json.load(open(sys.argv[1]))
st = [f["status"] for f in r["files"]]
assert len(st) == 4, st
assert st[0] == "failed", st
assert st.count("skipped") >= 2 and all("disk is full" in f["error"] for f in r["files"] if f["status"] == "skipped"), r["files"]
EOF
    if [ $? -eq 0 ]; then pass disk_full_report_lists_all; else fail disk_full_report_lists_all "$(tail -n 1 "$T/df.check")"; fi
    check disk_full_leaves_no_folders sh -c "[ -z \"\$(find '$T/small/o' -mindepth 1)\" ]"
    umount "$T/small" 2>/dev/null
else
    skip disk_full_batch "cannot mount a tmpfs here (not root, or no permission)"
fi

# ---- --report-json that cannot be written: refused before any work ------------------------------
wav "$T/s.wav" 8820
expect_exit report_unwritable_is_73 73 $SS -q -o "$T/rj" --report-json "$T/no/such/dir/r.json" "$T/s.wav"
check report_unwritable_separates_nothing test "$(nwav "$T/rj" 2>/dev/null)" -eq 0
mkdir -p "$T/rjdir"
expect_exit report_is_folder_is_73 73 $SS -q -o "$T/rj2" --report-json "$T/rjdir" "$T/s.wav"
check report_is_folder_separates_nothing test "$(nwav "$T/rj2" 2>/dev/null)" -eq 0
check report_is_folder_leaves_no_temporary sh -c "[ -z \"\$(ls -A '$T/rjdir')\" ] && [ -z \"\$(ls '$T' | grep 'rjdir.tmp')\" ]"

# ---- song.wav and song.flac: {inext} ----------------------------------------------------------
mkdir -p "$T/ext" && wav "$T/ext/song.wav" 8820
cp "$T/ext/song.wav" "$T/ext/song.aiff.wav" 2>/dev/null
python3 - "$T/ext/song.wav" "$T/ext/song.au" <<'EOF'
import sunau, sys, wave
r = wave.open(sys.argv[1]); w = sunau.open(sys.argv[2], "wb")
w.setnchannels(r.getnchannels()); w.setsampwidth(2); w.setframerate(r.getframerate())
d = r.readframes(r.getnframes())
w.writeframes(b"".join(d[i + 1:i + 2] + d[i:i + 1] for i in range(0, len(d), 2))); w.close()
EOF
expect_exit same_track_two_formats_is_64 64 $SS -q -o "$T/exto" "$T/ext/song.wav" "$T/ext/song.au"
check same_track_advice_names_inext grep -q "{inext}" "$T/out.same_track_two_formats_is_64"
expect_exit inext_template_separates_both 0 $SS -q -o "$T/exto" --filename '{track}-{inext}/{stem}.{ext}' \
    "$T/ext/song.wav" "$T/ext/song.au"
check inext_outputs test -f "$T/exto/song-wav/low.wav" -a -f "$T/exto/song-au/low.wav"

# ---- files in formats no reader opens are listed as skipped, with the reason ----------------------
mkdir -p "$T/mixed" && wav "$T/mixed/good.wav" 8820
echo "not really aac" > "$T/mixed/tune.m4a"; echo "notes" > "$T/mixed/notes.txt"
expect_exit unreadable_format_run_is_0 0 $SS -o "$T/mo" --report-json "$T/mixed.json" "$T/mixed"
check unreadable_format_listed grep -q "tune.m4a: skipped (.*\.m4a" "$T/out.unreadable_format_run_is_0"
check not_audio_not_listed sh -c "! grep -q notes.txt '$T/out.unreadable_format_run_is_0'"
python3 - "$T/mixed.json" <<'EOF' >"$T/mixed.check" 2>&1
import json, sys
r = json.load(open(sys.argv[1]))
st = {f["input"].rsplit("/", 1)[1]: (f["status"], f.get("error", "")) for f in r["files"]}
assert st["good.wav"][0] == "ok" and st["tune.m4a"][0] == "skipped" and "m4a" in st["tune.m4a"][1], st
assert "notes.txt" not in st and r["total"]["skipped"] == 1, r["total"]
EOF
if [ $? -eq 0 ]; then pass unreadable_format_in_report; else fail unreadable_format_in_report "$(tail -n 1 "$T/mixed.check")"; fi
mkdir -p "$T/onlym4a" && echo x > "$T/onlym4a/a.m4a"
expect_exit only_unreadable_is_66 66 $SS -q -o "$T/mo2" "$T/onlym4a"
check only_unreadable_names_file grep -q "a.m4a: skipped" "$T/out.only_unreadable_is_66"

# ---- defaults as demucs: separated/MODEL/TRACK/STEM.wav, -m htdemucs when installed ---------------
(cd "$T" && $SS -q s.wav) >"$T/def.out" 2>&1
check default_path_has_model test -f "$T/separated/bandsplit4/s/low.wav"
mkdir -p "$T/mp" "$T/xdg" && cp "$M" "$T/mp/htdemucs.safetensors"
expect_exit default_model_htdemucs_when_installed 0 env -u STEMSPLIT_MODEL STEMSPLIT_MODEL_PATH="$T/mp" \
    XDG_DATA_HOME="$T/xdg" "$STEMSPLIT" -q -o "$T/dm" "$T/s.wav"
expect_exit default_model_missing_is_64 64 env -u STEMSPLIT_MODEL -u STEMSPLIT_MODEL_PATH XDG_DATA_HOME="$T/xdg" \
    "$STEMSPLIT" -q -o "$T/dm2" "$T/s.wav"
check default_model_missing_says_how grep -q "download-model.sh htdemucs" "$T/out.default_model_missing_is_64"

# ---- messages a user can act on ----------------------------------------------------------------
expect_exit htdemucs_not_installed_is_66 66 env -u STEMSPLIT_MODEL_PATH XDG_DATA_HOME="$T/xdg" \
    "$STEMSPLIT" -q -m htdemucs -o "$T/m1" "$T/s.wav"
for w in "download-model.sh htdemucs" "convert-demucs.py" "STEMSPLIT_DOWNLOAD_BASE"; do
    check "htdemucs_not_installed_names_$(echo "$w" | tr -c 'a-zA-Z\n' _)" grep -q "$w" "$T/out.htdemucs_not_installed_is_66"
done
expect_exit model_is_folder_is_66 66 $STEMSPLIT -q -m "$T/mp/" -o "$T/m2" "$T/s.wav"
check model_is_folder_says_so grep -q "is a folder" "$T/out.model_is_folder_is_66"
expect_exit model_is_device_is_66 66 $STEMSPLIT -q -m /dev/null -o "$T/m3" "$T/s.wav"
check model_is_device_says_so grep -q "/dev/null: is a device" "$T/out.model_is_device_is_66"
# a chunking that cannot fit: what it needs and what to lower (a memory limit makes it fail everywhere)
wav "$T/ten.wav" 441000
# (under ASan, whose shadow memory a ulimit -v breaks, its allocator returns NULL instead)
lim="ulimit -v 4000000;"; [ "${SAN:-0}" = 1 ] && lim="ASAN_OPTIONS=\${ASAN_OPTIONS:+\$ASAN_OPTIONS:}allocator_may_return_null=1"
expect_exit engine_memory_is_69 69 sh -c "$lim exec $STEMSPLIT -q -m '$M' --segment 3600 --batch 8 -o '$T/m4' '$T/ten.wav'"
check engine_memory_says_bytes grep -q "need about [0-9.]* GiB" "$T/out.engine_memory_is_69"
check engine_memory_says_option grep -q "lower --batch or --segment" "$T/out.engine_memory_is_69"
check engine_memory_no_empty_folder sh -c "[ -z \"\$(find '$T/m4' -mindepth 1 2>/dev/null)\" ]"
# a path longer than PATH_MAX: the message keeps the reason at its end
long=$T; i=0
while [ $i -lt 50 ]; do long="$long/$(printf '%0100d' $i)"; i=$((i + 1)); done
expect_exit long_path_is_66 66 $STEMSPLIT -q -m "$M" -o "$T/m5" "$long/x.wav"
check long_path_keeps_reason grep -Eq "(File name too long|No such file or directory)$" "$T/out.long_path_is_66"
check long_path_keeps_file_name grep -q "0049/x.wav" "$T/out.long_path_is_66"
# --help, the man page and the parser agree on --overlap's range
"$STEMSPLIT" --help >"$T/help" 2>&1
check help_overlap_range grep -q -- "--overlap F .*0 <= F <= 0.99" "$T/help"
check man_overlap_range sh -c "grep -A1 'overlap \" F\"' '$SS_ROOT/man/stemsplit.1' | grep -q '0 \\\\(<= F \\\\(<= 0.99'"
expect_exit overlap_099_accepted 0 $SS -q --overlap 0.99 -o "$T/m6" "$T/s.wav"
expect_exit overlap_0991_refused 64 $SS -q --overlap 0.991 -o "$T/m6" "$T/s.wav"
exit 0

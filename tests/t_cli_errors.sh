# t_cli_errors.sh - bad input gets the documented exit code, a message naming
# the file, and leaves no partial output behind.
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
python3 -c 'import wave,struct,math
w=wave.open("'"$T"'/ok.wav","wb"); w.setnchannels(2); w.setsampwidth(2); w.setframerate(44100)
w.writeframes(b"".join(struct.pack("<hh",int(8000*math.sin(i/7)),int(8000*math.cos(i/9))) for i in range(44100))); w.close()' 2>/dev/null ||
    "$STEMSPLIT" --version >/dev/null   # python3 is needed only to make ok.wav
# no file left in DIR: not a stem, not a hidden temporary
empty_dir() { [ ! -d "$1" ] || [ -z "$(find "$1" -type f)" ]; }

expect_exit missing_input_is_66 66 "$STEMSPLIT" -q -m "$M" -o "$T/o1" "$T/nope.wav"
check missing_input_message_names_file grep -q "$T/nope.wav" "$T/out.missing_input_is_66"
check missing_input_leaves_nothing empty_dir "$T/o1"

echo "this is not audio" > "$T/text.wav"
expect_exit text_as_wav_is_65 65 "$STEMSPLIT" -q -m "$M" -o "$T/o2" "$T/text.wav"
check text_as_wav_message_names_file grep -q "text.wav" "$T/out.text_as_wav_is_65"
check text_as_wav_leaves_nothing empty_dir "$T/o2"

head -c 3000 "$M" > "$T/corrupt.safetensors"
expect_exit corrupt_model_is_65 65 "$STEMSPLIT" -q -m "$T/corrupt.safetensors" -o "$T/o3" "$T/ok.wav"
check corrupt_model_message_names_file grep -q "corrupt.safetensors" "$T/out.corrupt_model_is_65"
check corrupt_model_leaves_nothing empty_dir "$T/o3"

expect_exit unknown_option_is_64 64 "$STEMSPLIT" --no-such-option "$T/ok.wav"
expect_exit no_input_files_is_64 64 "$STEMSPLIT" -m "$M"
expect_exit bad_overlap_is_64 64 "$STEMSPLIT" -m "$M" --overlap 1.5 "$T/ok.wav"
expect_exit bad_wiener_is_64 64 "$STEMSPLIT" -m "$M" --wiener 0 "$T/ok.wav"
check bad_wiener_message grep -q "wiener '0'" "$T/out.bad_wiener_is_64"
# --wiener is LarsNet's: a model without the option refuses it before separating anything
expect_exit wiener_other_model_is_64 64 "$STEMSPLIT" -q -m "$M" -o "$T/ow" --wiener 1 "$T/ok.wav"
check wiener_other_model_message grep -q "has no option 'wiener'" "$T/out.wiener_other_model_is_64"
check wiener_other_model_writes_nothing test ! -e "$T/ow"
expect_exit bad_template_is_64 64 "$STEMSPLIT" -m "$M" --filename '{track}/{nope}.{ext}' "$T/ok.wav"
expect_exit template_escaping_out_dir_is_64 64 "$STEMSPLIT" -m "$M" --filename '../{stem}.{ext}' "$T/ok.wav"
expect_exit template_without_stem_is_64 64 "$STEMSPLIT" -m "$M" -o "$T/o4" --filename '{track}.{ext}' "$T/ok.wav"
check template_collision_leaves_nothing empty_dir "$T/o4"
expect_exit unknown_stem_is_64 64 "$STEMSPLIT" -m "$M" --stems vocals "$T/ok.wav"
expect_exit flac_f32_is_64 64 "$STEMSPLIT" -m "$M" --format flac --sample-format f32 "$T/ok.wav"
expect_exit unknown_model_name_is_66 66 "$STEMSPLIT" -m no-such-model "$T/ok.wav"
expect_exit bad_precision_is_64 64 "$STEMSPLIT" -m "$M" --precision fp8 "$T/ok.wav"
check bad_precision_lists_modes grep -q "expected auto, fp32, tf32, bf16, fp16 or mixed" "$T/out.bad_precision_is_64"
# the default (auto) is fp32 on the CPU, without the note a reduced request gets
"$STEMSPLIT" -v -d cpu -m "$M" -o "$T/o5" "$T/ok.wav" >"$T/prec_auto.out" 2>&1
check cpu_default_precision_is_fp32 grep -q "precision fp32" "$T/prec_auto.out"
check cpu_default_precision_no_note sh -c "! grep -q 'computes in fp32' '$T/prec_auto.out'"
"$STEMSPLIT" -v -d cpu --precision mixed -m "$M" -o "$T/o6" "$T/ok.wav" >"$T/prec_mixed.out" 2>&1
check cpu_mixed_request_says_fp32 grep -q "precision mixed: the cpu backend computes in fp32" "$T/prec_mixed.out"

cuda_state=$("$STEMSPLIT" --list-devices | grep '^cuda: ')
case $cuda_state in
"cuda: not compiled in"*)
    expect_exit cuda_in_cpu_build_is_69 69 "$STEMSPLIT" -m "$M" -d cuda "$T/ok.wav"
    check cuda_message_says_built_without grep -q "built without CUDA support" "$T/out.cuda_in_cpu_build_is_69"
    ;;
"cuda: 0 devices"*)      # a CUDA build on a machine without a GPU or driver
    expect_exit cuda_without_gpu_is_69 69 "$STEMSPLIT" -m "$M" -d cuda "$T/ok.wav"
    check cuda_message_says_no_device grep -q "no CUDA device available (" "$T/out.cuda_without_gpu_is_69"
    ;;
esac
expect_exit mps_off_apple_is_69 69 "$STEMSPLIT" -m "$M" -d mps "$T/ok.wav"
expect_exit env_device_is_used 69 env STEMSPLIT_DEVICE=cuda:1 "$STEMSPLIT" -m "$M" "$T/ok.wav"
expect_exit flag_beats_env_device 0 env STEMSPLIT_DEVICE=cuda "$STEMSPLIT" -q -d cpu -m "$M" -o "$T/o5" "$T/ok.wav"
expect_exit bad_device_string_is_64 64 "$STEMSPLIT" -m "$M" -d gpu "$T/ok.wav"

: > "$T/plainfile"
expect_exit unwritable_output_dir_is_73 73 "$STEMSPLIT" -q -m "$M" -o "$T/plainfile/sub" "$T/ok.wav"

# A good file and a bad one: the good one is written, the exit status reports the failure.
expect_exit mixed_batch_reports_failure 65 "$STEMSPLIT" -q -m "$M" -o "$T/o6" "$T/text.wav" "$T/ok.wav"
check mixed_batch_writes_good_file test -f "$T/o6/bandsplit4/ok/low.wav"
check mixed_batch_no_temporaries sh -c "[ -z \"\$(find '$T/o6' -name '.*')\" ]"

# A model found by NAME through STEMSPLIT_MODEL_PATH and STEMSPLIT_MODEL
mkdir -p "$T/models" && cp "$M" "$T/models/mine.safetensors"
expect_exit model_by_name_from_env_path 0 env STEMSPLIT_MODEL_PATH="$T/nowhere:$T/models" STEMSPLIT_MODEL=mine \
    "$STEMSPLIT" -q -o "$T/o7" "$T/ok.wav"

# A file-size limit while writing: I/O error (74), nothing left behind.
expect_exit file_size_limit_is_74 74 sh -c "ulimit -f 64; exec '$STEMSPLIT' -q -m '$M' --clip none -o '$T/o8' '$T/ok.wav'"
check file_size_limit_leaves_nothing empty_dir "$T/o8"
check file_size_limit_leaves_no_folder sh -c "[ -z \"\$(find '$T/o8' -mindepth 1 -type d)\" ]"

# --help, the man page and the README name the same options.
"$STEMSPLIT" --help > "$T/help" 2>&1
opts=$(grep -o -- '--[a-z][a-z-]*' "$T/help" | sort -u)
missing=""
for o in $opts; do
    grep -q -- "$(printf '%s' "$o" | sed 's/-/\\\\-/g')" "$SS_ROOT/man/stemsplit.1" || grep -q -- "$o" "$SS_ROOT/man/stemsplit.1" || missing="$missing $o"
done
if [ -z "$missing" ] && [ -n "$opts" ]; then pass help_options_are_in_man_page; else fail help_options_are_in_man_page "not in man/stemsplit.1:$missing"; fi
missing=""
for o in $(grep -o -- '--[a-z][a-z-]*' "$SS_ROOT/man/stemsplit.1" "$SS_ROOT/README.md" | sed 's/.*://' | sort -u); do
    case $o in --dtype|--weights|--full) continue ;; esac
    grep -q -- "$o" "$T/help" || missing="$missing $o"
done
if [ -z "$missing" ]; then pass documented_options_exist; else fail documented_options_exist "documented but not in --help:$missing"; fi

# STEMSPLIT_PROFILE=1 on the CPU backend lists the ops it ran with their calls
# (all its ops are CPU kernels run by the wrappers; they used to go untimed)
STEMSPLIT_PROFILE=1 "$STEMSPLIT" -q -d cpu -m "$M" -o "$T/o9" "$T/ok.wav" >"$T/prof.out" 2>&1
check cpu_profile_lists_ops grep -Eq '^  [a-z_0-9]+ +[1-9][0-9]* calls +[0-9.]+ s' "$T/prof.out"
check cpu_profile_has_engine_and_stages sh -c "grep -q 'engine profile' '$T/prof.out' && grep -q 'separate profile' '$T/prof.out'"

# -m NAME from a source tree (README's quick start): a binary finds NAME in models/<arch>/ beside it
mkdir -p "$T/tree/models/bandsplit" "$T/tree-home"
cp "$STEMSPLIT" "$T/tree/stemsplit" && cp "$M" "$T/tree/models/bandsplit/"
expect_exit model_name_in_source_tree_is_0 0 env -u STEMSPLIT_MODEL_PATH HOME="$T/tree-home" XDG_DATA_HOME= \
    "$T/tree/stemsplit" -q -m bandsplit4 -o "$T/o10" "$T/ok.wav"
check model_name_in_source_tree_writes_stems test -f "$T/o10/bandsplit4/ok/low.wav"

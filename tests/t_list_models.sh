# t_list_models.sh - --list-models: the models on the model path from their
# headers (no weights read), one per line or --json; a file that cannot be
# read is listed with its error and the exit status stays 0.
. "$(dirname "$0")/lib.sh"
M="$SS_ROOT/models/bandsplit/bandsplit4.safetensors"
mkdir -p "$T/models" "$T/later" "$T/home"
cp "$M" "$T/models/bandsplit4.safetensors"
cp "$M" "$T/later/bandsplit4.safetensors"          # shadowed: -m bandsplit4 finds the first
printf 'not a model at all' >"$T/models/broken.safetensors"
: >"$T/models/notes.txt"                             # not a .safetensors file: not listed
export HOME="$T/home"
unset XDG_DATA_HOME
LM="env STEMSPLIT_MODEL_PATH=$T/models:$T/later $STEMSPLIT --list-models"

expect_exit list_models_exits_0_with_a_broken_file 0 $LM
out="$T/out.list_models_exits_0_with_a_broken_file"
check list_models_line_has_arch_stems_rate_size \
    grep -Eq "^bandsplit4  bandsplit  4 stems \(low, lowmid, highmid, high\)  44100 Hz  stereo  32\.4 KiB  $T/models/bandsplit4.safetensors\$" "$out"
check list_models_broken_file_listed_with_its_error grep -Eq "^broken  error: $T/models/broken.safetensors: " "$out"
check list_models_shadowed_copy_marked grep -q "$T/later/bandsplit4.safetensors  (shadowed" "$out"
check list_models_only_safetensors sh -c "! grep -q notes '$out'"
check list_models_one_line_per_model test "$(wc -l <"$out")" -eq 3

expect_exit list_models_json_exits_0 0 $LM --json
check list_models_json_fields python3 - "$T/out.list_models_json_exits_0" "$T" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = sys.argv[2]
m = {(x["name"], x["path"]): x for x in d["models"]}
a = m[("bandsplit4", t + "/models/bandsplit4.safetensors")]
assert a["architecture"] == "bandsplit" and a["stems"] == ["low", "lowmid", "highmid", "high"], a
assert a["samplerate"] == 44100 and a["channels"] == 2 and a["size_bytes"] == 33128, a
assert a["error"] is None and a["shadowed"] is False and a["parameters"] > 0, a
assert m[("bandsplit4", t + "/later/bandsplit4.safetensors")]["shadowed"] is True
b = m[("broken", t + "/models/broken.safetensors")]
assert "broken.safetensors" in b["error"], b
assert d["search_path"][:2] == [t + "/models", t + "/later"], d["search_path"]
PY

# nothing on the path: said on stderr, still 0; --json alone is a usage error
expect_exit list_models_none_found_exits_0 0 env STEMSPLIT_MODEL_PATH="$T/empty" "$STEMSPLIT" --list-models
check list_models_none_found_names_folders grep -q "no models found; searched: $T/empty" "$T/out.list_models_none_found_exits_0"
expect_exit json_without_list_models_is_64 64 "$STEMSPLIT" --json x.wav

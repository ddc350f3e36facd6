#!/bin/sh
# t_download.sh - scripts/download-model.sh against a local "server" directory
# (STEMSPLIT_DOWNLOAD_BASE=file://...), with the fixture checkpoints standing
# in for the released ones.  No network.
. "$(dirname "$0")/lib.sh"
DL="$SS_ROOT/scripts/download-model.sh"
FIX="$SS_ROOT/tests/fixtures/htdemucs"
for tool in python3 awk; do
    command -v $tool >/dev/null 2>&1 || { skip download "$tool not found"; exit 0; }
done
if command -v sha256sum >/dev/null 2>&1; then sha() { sha256sum "$1" | awk '{ print $1 }'; }
elif command -v shasum >/dev/null 2>&1; then sha() { shasum -a 256 "$1" | awk '{ print $1 }'; }
else skip download "no sha256sum or shasum"; exit 0; fi
[ -f "$FIX/t1_base/model.th" ] && [ -f "$FIX/bag2/model1.th" ] || { skip download "fixtures missing"; exit 0; }

srv="$T/srv"; mkdir -p "$srv"
export XDG_DATA_HOME="$T/xdg" STEMSPLIT_DOWNLOAD_BASE="file://$srv"
models="$XDG_DATA_HOME/stemsplit/models"
unset STEMSPLIT_MODELS_TABLE

# The official table: unknown names, checksum mismatch, failed download.
expect_exit unknown_name 64 sh "$DL" no_such_model
check unknown_name_lists_known grep -q "htdemucs_ft" "$T/out.unknown_name"
expect_exit no_args 64 sh "$DL"
expect_exit help_is_0 0 sh "$DL" --help
check help_says_usage_and_offline sh -c "grep -q '^Usage: download-model.sh NAME' '$T/out.help_is_0' && grep -q STEMSPLIT_DOWNLOAD_BASE '$T/out.help_is_0'"
cp "$FIX/t1_base/model.th" "$srv/955717e8-8726e21a.th"       # right name, wrong bytes
expect_exit checksum_mismatch 65 sh "$DL" htdemucs
check checksum_message grep -q "checksum mismatch for 955717e8-8726e21a.th" "$T/out.checksum_mismatch"
check mismatch_installs_nothing test ! -e "$models/htdemucs.safetensors"
check mismatch_leaves_no_part sh -c "! ls -A '$models' 2>/dev/null | grep -q ."
check mismatch_leaves_no_empty_folder test ! -e "$XDG_DATA_HOME"
expect_exit download_failed 69 sh "$DL" htdemucs_6s          # file absent on the server
check failed_installs_nothing test ! -e "$models/htdemucs_6s.safetensors"
check failed_leaves_no_empty_folder test ! -e "$XDG_DATA_HOME"

# A table whose checksums match the fixtures: success, bag, already installed.
s1=$(sha "$FIX/t1_base/model.th" | cut -c1-8)
b0=$(sha "$FIX/bag2/model0.th" | cut -c1-8)
b1=$(sha "$FIX/bag2/model1.th" | cut -c1-8)
cp "$FIX/t1_base/model.th" "$srv/0000aaaa-$s1.th"
cp "$FIX/bag2/model0.th" "$srv/0000bbb0-$b0.th"
cp "$FIX/bag2/model1.th" "$srv/0000bbb1-$b1.th"
cat >"$T/models.txt" <<EOT
# test table
tiny     0000aaaa-$s1.th
tinybag  0000bbb0-$b0.th 0000bbb1-$b1.th weights=1,0,0.25,1;0,1,0.75,0.5
EOT
export STEMSPLIT_MODELS_TABLE="$T/models.txt"
expect_exit install_single 0 sh "$DL" tiny
check installed_single test -s "$models/tiny.safetensors"
check prints_next_command grep -q "next: stemsplit -m tiny" "$T/out.install_single"
cat >"$T/meta.py" <<'EOT'
import json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
m = json.loads(b[8:8 + n])["__metadata__"]
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    if m.get(k) != v:
        print("%s: %r, want %r" % (k, m.get(k), v)); sys.exit(1)
EOT
check single_metadata python3 "$T/meta.py" "$models/tiny.safetensors" stemsplit.architecture=htdemucs stemsplit.name=tiny
expect_exit install_bag 0 sh "$DL" tinybag
check bag_metadata python3 "$T/meta.py" "$models/tinybag.safetensors" stemsplit.bag=2 \
    'stemsplit.bag.weights=1,0,0.25,1;0,1,0.75,0.5'
before=$(sha "$models/tiny.safetensors")
rm -f "$srv/0000aaaa-$s1.th"                                 # must not be fetched again
expect_exit already_installed 0 sh "$DL" tiny
check already_installed_message grep -q "already installed" "$T/out.already_installed"
check already_installed_untouched test "$before" = "$(sha "$models/tiny.safetensors")"
check no_part_files sh -c "! ls -A '$models' | grep -q part"
# MSST entries: a checkpoint and its config by URL, taken from the base by file name offline;
# the sha256 pin checked where the table gives one.
RF="$SS_ROOT/tests/fixtures/roformer/bs_stereo_1stem"
if [ -f "$RF/model.ckpt" ]; then
    cp "$RF/model.ckpt" "$srv/tiny_rf.ckpt"; cp "$RF/config.yaml" "$srv/tiny_rf.yaml"
    pin=$(sha "$RF/model.ckpt")
    cat >"$T/models.txt" <<EOT
tinyrf      msst https://example.invalid/a/tiny_rf.ckpt?download=true https://example.invalid/b/tiny_rf.yaml sha256=$pin
tinyrf_bad  msst https://example.invalid/a/tiny_rf.ckpt https://example.invalid/b/tiny_rf.yaml sha256=0000$pin
tinyrf_nocf msst https://example.invalid/a/tiny_rf.ckpt https://example.invalid/b/absent.yaml
tinyrf_half msst https://example.invalid/a/tiny_rf.ckpt
EOT
    expect_exit msst_install 0 sh "$DL" tinyrf
    check msst_metadata python3 "$T/meta.py" "$models/tinyrf.safetensors" stemsplit.architecture=bs_roformer \
        stemsplit.sources=vocals stemsplit.residual=instrumental
    expect_exit msst_pin_mismatch 65 sh "$DL" tinyrf_bad
    check msst_pin_message grep -q "checksum mismatch for tiny_rf.ckpt" "$T/out.msst_pin_mismatch"
    check msst_mismatch_installs_nothing test ! -e "$models/tinyrf_bad.safetensors"
    expect_exit msst_config_missing 69 sh "$DL" tinyrf_nocf
    expect_exit msst_bad_table_line 64 sh "$DL" tinyrf_half
    check msst_no_part_files sh -c "! ls -A '$models' | grep -q part"
else
    skip download_msst "tests/fixtures/roformer missing"
fi
# An MDX23C checkpoint goes the same way (convert-msst.py knows the architecture).
MX="$SS_ROOT/tests/fixtures/mdx23c/gn_target_elu"
if [ -f "$MX/model.ckpt" ]; then
    cp "$MX/model.ckpt" "$srv/tiny_mdx.ckpt"; cp "$MX/config.yaml" "$srv/tiny_mdx.yaml"
    echo "tinymdx msst https://example.invalid/a/tiny_mdx.ckpt https://example.invalid/b/tiny_mdx.yaml" >"$T/models.txt"
    expect_exit mdx23c_install 0 sh "$DL" tinymdx
    check mdx23c_metadata python3 "$T/meta.py" "$models/tinymdx.safetensors" stemsplit.architecture=mdx23c \
        stemsplit.sources=vocals stemsplit.residual=instrumental mdx23c.norm=GroupNorm2
else
    skip download_mdx23c "tests/fixtures/mdx23c missing"
fi
# The shipped table knows the common MDX23C checkpoints, each as an MSST entry.
for n in mdx23c_instvoc_hq mdx23c_drumsep_5stem mdx23c_drumsep_6stem; do
    check "table_$n" sh -c "grep -Eq '^$n +msst +https://[^ ]+\.ckpt +https://[^ ]+\.yaml' '$SS_ROOT/scripts/models.txt'"
done
check help_lists_mdx23c sh -c "env -u STEMSPLIT_MODELS_TABLE sh '$DL' --help | grep -q mdx23c_drumsep_6stem"

# LarsNet through the official table's entry: the zip of five checkpoints (the
# fixture's, under the released layout) and config.yaml from the base; a base
# whose "zip" is a web page (Google Drive's warning) fails with 69 and the manual steps.
LFIX="$SS_ROOT/tests/fixtures/larsnet/small"
if [ -f "$LFIX/kick.pth" ]; then
    unset STEMSPLIT_MODELS_TABLE
    lsrv="$T/lsrv"; mkdir -p "$lsrv"
    python3 - "$LFIX" "$lsrv/pretrained_larsnet_models.zip" <<'EOPY'
import sys, zipfile
fix, out = sys.argv[1:3]
with zipfile.ZipFile(out, "w") as z:
    for s in ("kick", "snare", "toms", "hihat", "cymbals"):
        z.write("%s/%s.pth" % (fix, s), "pretrained_larsnet_models/%s/pretrained_%s_unet.pth" % (s, s))
EOPY
    cp "$LFIX/config.yaml" "$lsrv/config.yaml"
    STEMSPLIT_DOWNLOAD_BASE="file://$lsrv" expect_exit larsnet_install 0 sh "$DL" larsnet
    check larsnet_installed test -s "$models/larsnet.safetensors"
    check larsnet_licence grep -q "CC BY-NC 4.0" "$T/out.larsnet_install"
    check larsnet_metadata python3 "$T/meta.py" "$models/larsnet.safetensors" stemsplit.architecture=larsnet \
        stemsplit.sources=kick,snare,toms,hihat,cymbals stemsplit.name=larsnet
    rm -f "$models/larsnet.safetensors"
    echo '<html>Google Drive can not scan this file for viruses</html>' >"$lsrv/pretrained_larsnet_models.zip"
    STEMSPLIT_DOWNLOAD_BASE="file://$lsrv" expect_exit larsnet_not_zip 69 sh "$DL" larsnet
    check larsnet_says_how grep -q "save it as pretrained_larsnet_models.zip" "$T/out.larsnet_not_zip"
    check larsnet_not_zip_installs_nothing test ! -e "$models/larsnet.safetensors"
else
    skip download_larsnet "tests/fixtures/larsnet missing"
fi
# DeepFilterNet3 through the official table's entry: the release zip (the fixture's
# model folder under DeepFilterNet3/) from the base; a pinned sha256 that does not
# match is 65, a zip that is not a model is 65 (conversion refused); nothing installed.
DFIX="$SS_ROOT/tests/fixtures/deepfilternet/small"
if [ -f "$DFIX/config.ini" ]; then
    unset STEMSPLIT_MODELS_TABLE
    dsrv="$T/dsrv"; mkdir -p "$dsrv"
    python3 - "$DFIX" "$dsrv/DeepFilterNet3.zip" <<'EOPY'
import sys, zipfile
fix, out = sys.argv[1:3]
with zipfile.ZipFile(out, "w") as z:
    for f in ("config.ini", "checkpoints/model_120.ckpt.best"):
        z.write("%s/%s" % (fix, f), "DeepFilterNet3/" + f)
EOPY
    check table_deepfilternet3 grep -Eq '^deepfilternet3 +deepfilternet +https://github.com/Rikorose/DeepFilterNet/[^ ]+/DeepFilterNet3.zip' "$SS_ROOT/scripts/models.txt"
    STEMSPLIT_DOWNLOAD_BASE="file://$dsrv" expect_exit deepfilternet_install 0 sh "$DL" deepfilternet3
    check deepfilternet_installed test -s "$models/deepfilternet3.safetensors"
    check deepfilternet_licence grep -q "MIT or Apache-2.0" "$T/out.deepfilternet_install"
    check deepfilternet_metadata python3 "$T/meta.py" "$models/deepfilternet3.safetensors" \
        stemsplit.architecture=deepfilternet3 stemsplit.sources=speech stemsplit.residual=noise stemsplit.name=deepfilternet3
    pin=$(python3 -c "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())" "$dsrv/DeepFilterNet3.zip")
    echo "tinydfn_bad deepfilternet https://example.invalid/DeepFilterNet3.zip sha256=0000$pin" >"$T/models_dfn.txt"
    STEMSPLIT_MODELS_TABLE="$T/models_dfn.txt" STEMSPLIT_DOWNLOAD_BASE="file://$dsrv" \
        expect_exit deepfilternet_pin_mismatch 65 sh "$DL" tinydfn_bad
    check deepfilternet_pin_installs_nothing test ! -e "$models/tinydfn_bad.safetensors"
    rm -f "$models/deepfilternet3.safetensors"
    echo 'not a zip' >"$dsrv/DeepFilterNet3.zip"
    STEMSPLIT_DOWNLOAD_BASE="file://$dsrv" expect_exit deepfilternet_not_model 65 sh "$DL" deepfilternet3
    check deepfilternet_not_model_installs_nothing test ! -e "$models/deepfilternet3.safetensors"
else
    skip download_deepfilternet "tests/fixtures/deepfilternet missing"
fi
exit 0

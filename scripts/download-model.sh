#!/bin/sh
# download-model.sh NAME - download a released model (demucs v4, an MSST
# RoFormer or MDX23C checkpoint with its config, LarsNet's five U-Nets, or
# DeepFilterNet3's model zip), verify its checksum where one is known, convert
# it (convert-demucs.py / convert-msst.py / convert-larsnet.py /
# convert-deepfilternet.py) and install it as
#   ${XDG_DATA_HOME:-~/.local/share}/stemsplit/models/NAME.safetensors
# Known names and files: scripts/models.txt (override: STEMSPLIT_MODELS_TABLE).
# Base URL: STEMSPLIT_DOWNLOAD_BASE (default the official demucs location;
# file:///dir/ works too).  Needs curl or wget, sha256sum (or shasum), python3.
# Exit: 0 installed or already present, 64 usage/unknown name, 65 checksum
# mismatch or unconvertible file, 69 download failed, 73 cannot install.
set -u
prog=download-model.sh
here=$(cd "$(dirname "$0")" && pwd)
table=${STEMSPLIT_MODELS_TABLE:-$here/models.txt}
base_set=${STEMSPLIT_DOWNLOAD_BASE:+1}
base=${STEMSPLIT_DOWNLOAD_BASE:-https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/}
case $base in */) ;; *) base=$base/ ;; esac

die() { code=$1; shift; echo "$prog: $*" >&2; exit "$code"; }
known() { grep -v '^[[:space:]]*#' "$table" | awk 'NF { print $1 }' | tr '\n' ' '; }
usage() {
    cat <<EOT
Usage: $prog NAME
Download the released model NAME (a demucs v4 model, an MSST BS-/Mel-Band
RoFormer or MDX23C checkpoint and its config, LarsNet's checkpoint zip and
config, or DeepFilterNet3's model zip), check its checksum where one is known,
convert it (convert-demucs.py, convert-msst.py, convert-larsnet.py,
convert-deepfilternet.py) and install it as
  \${XDG_DATA_HOME:-~/.local/share}/stemsplit/models/NAME.safetensors
where stemsplit finds it (stemsplit -m NAME; htdemucs is the default model).
Models: $(known 2>/dev/null)
Offline: copy the checkpoint files named in $table (e.g. 955717e8-8726e21a.th
for htdemucs; for an MSST model the last path components of its two URLs; for
larsnet pretrained_larsnet_models.zip, from the Google Drive link of LarsNet's
README, and config.yaml; for deepfilternet3 DeepFilterNet3.zip) into a folder and set
STEMSPLIT_DOWNLOAD_BASE=file:///that/folder/.
Environment: STEMSPLIT_DOWNLOAD_BASE (default $base), STEMSPLIT_MODELS_TABLE.
Exit: 0 installed or already present, 64 usage/unknown name, 65 checksum
mismatch or unconvertible file, 69 download failed, 73 cannot install.
Nothing is left behind on failure (no partial file, no empty folder).
EOT
}

case ${1:-} in -h|--help) usage; exit 0 ;; esac
[ $# -eq 1 ] || die 64 "usage: $prog NAME (one of: $(known 2>/dev/null)); $prog --help for more"
name=$1
[ -r "$table" ] || die 64 "cannot read the model table $table"
case $name in ''|*[!A-Za-z0-9_.-]*) die 64 "bad model name '$name'" ;; esac
line=$(grep -v '^[[:space:]]*#' "$table" | awk -v n="$name" '$1 == n { $1 = ""; print; exit }')
[ -n "$line" ] || die 64 "unknown model '$name'; known models: $(known)"

files='' weights='' kind=demucs ckpt_url='' conf_url='' pin=''
# shellcheck disable=SC2086
set -- $line
if [ "${1:-}" = larsnet ]; then
    # LarsNet: a zip of five checkpoints behind a Google Drive link, and config.yaml
    kind=larsnet
    [ $# -eq 3 ] || die 64 "$table: $name needs the checkpoints' zip URL and a config URL"
    ckpt_url=$2 conf_url=$3
    if [ -n "$base_set" ]; then
        ckpt_url=${base}pretrained_larsnet_models.zip conf_url=${base}config.yaml
    fi
elif [ "${1:-}" = deepfilternet ]; then
    # DeepFilterNet: the release zip (config.ini + checkpoints/), as df/enhance.py downloads it
    kind=deepfilternet
    [ $# -ge 2 ] || die 64 "$table: $name needs the model zip's URL"
    ckpt_url=$2
    shift 2
    for f in "$@"; do
        case $f in
            sha256=*) pin=${f#sha256=} ;;
            *) die 64 "$table: bad entry '$f' for $name" ;;
        esac
    done
    if [ -n "$base_set" ]; then
        ck=${ckpt_url##*/}
        ckpt_url=$base${ck%%\?*}
    fi
elif [ "${1:-}" = msst ]; then
    kind=msst
    [ $# -ge 3 ] || die 64 "$table: $name needs a checkpoint URL and a config URL"
    ckpt_url=$2 conf_url=$3
    shift 3
    for f in "$@"; do
        case $f in
            sha256=*) pin=${f#sha256=} ;;
            *) die 64 "$table: bad entry '$f' for $name" ;;
        esac
    done
    if [ -n "$base_set" ]; then            # offline: the same file names under the base
        ck=${ckpt_url##*/} cf=${conf_url##*/}
        ckpt_url=$base${ck%%\?*} conf_url=$base${cf%%\?*}
    fi
else
    for f in $line; do
        case $f in
            weights=*) weights=${f#weights=} ;;
            *-*.th) files="$files $f" ;;
            *) die 64 "$table: bad entry '$f' for $name" ;;
        esac
    done
    [ -n "$files" ] || die 64 "$table: no files for $name"
fi

dir=${XDG_DATA_HOME:-${HOME:?HOME not set}/.local/share}/stemsplit/models
dest=$dir/$name.safetensors
if [ -e "$dest" ]; then
    echo "$prog: $name is already installed: $dest"
    echo "next: stemsplit -m $name SONG.wav"
    exit 0
fi

if command -v sha256sum >/dev/null 2>&1; then sha() { sha256sum "$1" | awk '{ print $1 }'; }
elif command -v shasum >/dev/null 2>&1; then sha() { shasum -a 256 "$1" | awk '{ print $1 }'; }
else die 69 "need sha256sum or shasum"; fi

fetch() { # URL OUT
    case $1 in
        file://*) cp "${1#file://}" "$2" 2>/dev/null ;;
        *) if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 2 -o "$2" "$1"
           elif command -v wget >/dev/null 2>&1; then wget -q -O "$2" "$1"
           else die 69 "need curl or wget"; fi ;;
    esac
}

# the folders this run creates, removed again (when empty) if it fails
top=''                      # the highest folder of $dir that does not exist yet
d=$dir
while [ -n "$d" ] && [ "$d" != / ] && [ "$d" != . ] && [ ! -d "$d" ]; do
    top=$d
    d=$(dirname "$d")
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/stemsplit-dl.XXXXXX") || die 73 "cannot create a temporary directory"
part="$dir/.$name.safetensors.part.$$"
cleanup() {
    rc=$?
    rm -rf "$tmp"; rm -f "$part"
    if [ "$rc" -ne 0 ]; then
        d=$dir                                           # deepest first, up to $top
        while [ -n "$top" ] && rmdir "$d" 2>/dev/null && [ "$d" != "$top" ]; do d=$(dirname "$d"); done
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$dir" || die 73 "cannot create $dir"

if [ $kind = larsnet ]; then
    echo "$prog: downloading $ckpt_url (562 MB) and $conf_url" >&2
    manual="get the zip in a browser from $2 (LarsNet's README: 'Pretrained LarsNet Models', CC BY-NC 4.0), \
save it as pretrained_larsnet_models.zip in a folder with LarsNet's config.yaml ($3) and run \
STEMSPLIT_DOWNLOAD_BASE=file:///that/folder/ $prog $name"
    fetch "$ckpt_url" "$tmp/models.zip" || die 69 "download of $ckpt_url failed; $manual"
    fetch "$conf_url" "$tmp/config.yaml" || die 69 "download of $conf_url failed; $manual"
    # the five pretrained_<stem>_unet.pth, wherever the zip keeps them
    python3 - "$tmp/models.zip" "$tmp/pth" <<'EOPY' || die 69 "$ckpt_url did not give LarsNet's checkpoints (a Drive warning page?); $manual"
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
if not zipfile.is_zipfile(src):
    sys.exit("not a zip file")
os.makedirs(out)
with zipfile.ZipFile(src) as z:
    for stem in ("kick", "snare", "toms", "hihat", "cymbals"):
        want = "pretrained_%s_unet.pth" % stem
        names = [n for n in z.namelist() if n.rsplit("/", 1)[-1] == want]
        if len(names) != 1:
            sys.exit("%s: %d copies of %s" % (src, len(names), want))
        with z.open(names[0]) as f, open(os.path.join(out, stem + ".pth"), "wb") as g:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                g.write(b)
EOPY
    p=$tmp/pth
    python3 "$here/convert-larsnet.py" -o "$part" --name "$name" "$tmp/config.yaml" \
        "$p/kick.pth" "$p/snare.pth" "$p/toms.pth" "$p/hihat.pth" "$p/cymbals.pth"
    rc=$?
    [ $rc -eq 0 ] || die "$rc" "conversion of $name failed"
    mv -f "$part" "$dest" || die 73 "cannot install $dest"
    echo "$prog: installed $name: $dest (weights CC BY-NC 4.0: non-commercial use only)"
    echo "next: stemsplit -m $name DRUMS.wav"
    exit 0
fi

if [ $kind = deepfilternet ]; then
    ck=${ckpt_url##*/}; ck=${ck%%\?*}
    echo "$prog: downloading $ckpt_url" >&2
    fetch "$ckpt_url" "$tmp/$ck" || die 69 "download of $ckpt_url failed"
    if [ -n "$pin" ]; then
        got=$(sha "$tmp/$ck")
        [ "$got" = "$pin" ] || die 65 "checksum mismatch for $ck: sha256 $got, expected $pin"
    fi
    python3 "$here/convert-deepfilternet.py" -o "$part" --name "$name" "$tmp/$ck"
    rc=$?
    [ $rc -eq 0 ] || die "$rc" "conversion of $name failed"
    mv -f "$part" "$dest" || die 73 "cannot install $dest"
    echo "$prog: installed $name: $dest (code and weights MIT or Apache-2.0)"
    echo "next: stemsplit -m $name NOISY_SPEECH.wav"
    exit 0
fi

if [ $kind = msst ]; then
    ck=${ckpt_url##*/}; ck=${ck%%\?*}; cf=${conf_url##*/}; cf=${cf%%\?*}
    for u in "$ckpt_url" "$conf_url"; do
        echo "$prog: downloading $u" >&2
    done
    fetch "$ckpt_url" "$tmp/$ck" || die 69 "download of $ckpt_url failed"
    fetch "$conf_url" "$tmp/$cf" || die 69 "download of $conf_url failed"
    if [ -n "$pin" ]; then
        got=$(sha "$tmp/$ck")
        [ "$got" = "$pin" ] || die 65 "checksum mismatch for $ck: sha256 $got, expected $pin"
    fi
    python3 "$here/convert-msst.py" -o "$part" "$tmp/$cf" "$tmp/$ck"
    rc=$?
    [ $rc -eq 0 ] || die "$rc" "conversion of $name failed"
    mv -f "$part" "$dest" || die 73 "cannot install $dest"
    echo "$prog: installed $name: $dest"
    echo "next: stemsplit -m $name SONG.wav"
    exit 0
fi

inputs=''
for f in $files; do
    echo "$prog: downloading $base$f" >&2
    fetch "$base$f" "$tmp/$f" || die 69 "download of $base$f failed"
    want=${f#*-}; want=${want%.th}
    got=$(sha "$tmp/$f")
    case $got in
        "$want"*) ;;
        *) die 65 "checksum mismatch for $f: sha256 $got does not start with $want" ;;
    esac
    inputs="$inputs $tmp/$f"
done

set -- -o "$part" --name "$name"
[ -n "$weights" ] && set -- "$@" --weights "$weights"
# shellcheck disable=SC2086
python3 "$here/convert-demucs.py" "$@" $inputs
rc=$?
[ $rc -eq 0 ] || die "$rc" "conversion of $name failed"
mv -f "$part" "$dest" || die 73 "cannot install $dest"
echo "$prog: installed $name: $dest"
echo "next: stemsplit -m $name SONG.wav"

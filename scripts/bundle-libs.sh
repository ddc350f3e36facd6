#!/bin/sh
# bundle-libs.sh DIR CUDA_LIBS BINARY [CUDA_MODULE] - copy into DIR/lib every shared library
# BINARY and CUDA_MODULE need that is not part of the C runtime (glibc, libgcc_s, libstdc++),
# so that DIR can be copied to a machine without libsndfile, libsamplerate, FFTW, OpenBLAS.
# The module goes to DIR/lib too; with CUDA_LIBS=0 cuBLAS/cuFFT are left out (too large to
# carry; the module's rpath then finds them in the CUDA toolkit or via LD_LIBRARY_PATH).
set -eu
dir=$1 cuda_libs=$2 bin=$3 mod=${4:-}
mkdir -p "$dir/lib"
system='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libgcc_s|libstdc\+\+|libcuda)\.so'
copy_deps() {
    ldd "$1" | awk '/=> \// { print $1, $3 }' | while read -r name path; do
        if printf '%s\n' "$name" | grep -Eq "$system"; then continue; fi
        case $name in libcublas*|libcufft*|libcudart*) [ "$cuda_libs" = 1 ] || continue ;; esac
        [ -e "$dir/lib/$name" ] || cp -L "$path" "$dir/lib/$name"
    done
}
copy_deps "$bin"
if [ -n "$mod" ]; then
    cp "$mod" "$dir/lib/"
    copy_deps "$mod"
fi
echo "bundle: $dir ($(du -sh "$dir" | cut -f1)): $(ls "$dir/lib" | tr '\n' ' ')"

/* ss_metal_params.h - the one argument block every Metal kernel takes at
 * [[buffer(nbufs)]].  Shared verbatim by the host (C11, Objective-C), the
 * Metal Shading Language source (embedded in the binary) and the C++17
 * emulator (kernels/metal/emu), so its layout is the same everywhere:
 * 64-bit fields first, then 32-bit ints, then floats. */
#ifndef SS_METAL_PARAMS_H
#define SS_METAL_PARAMS_H

#ifdef __METAL_VERSION__
typedef long ss_i64;
#else
#include <stdint.h>
typedef int64_t ss_i64;
#endif

typedef struct ss_mtl_params {
    ss_i64 n;            /* elements (elementwise ops)                        */
    ss_i64 len;          /* row length / positions                             */
    ss_i64 ds[4];        /* destination strides (copy4d), ds[0] = dst pitch    */
    ss_i64 ss[4];        /* source strides (copy4d), ss[0] = src pitch         */
    ss_i64 shape[4];     /* copy4d shape                                       */
    ss_i64 sa, sb, sc;   /* gemm batch strides                                 */
    ss_i64 p0;           /* first position of a column block                   */
    ss_i64 ld;           /* column-buffer row pitch                            */
    ss_i64 item_off;     /* column offset between batch items in a col buffer  */
    int batch, ch, rows, cols;
    int groups, chunks, mode, prec;
    int m, nn, k, lda, ldb, ldc, ta, tb;
    int has_s, has_b;
    int cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
    int ncols, pad0;
    float alpha, beta, eps, v;
} ss_mtl_params;

#endif

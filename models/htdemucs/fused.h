/* fused.h - HTDemucs's fused kernels: the contracts a backend implements to run
 * parts of a DConv residual branch in one pass.  They are not ops of the
 * generic backend interface (src/backend.h): the model asks a backend for them
 * by name with ss_backend_kernel() and, where it gets NULL, composes the same
 * arithmetic from primitive ops (models/htdemucs/htdemucs.c).
 *
 * Each name below returns a pointer to a const struct of function pointers
 * whose first argument is the backend's context (ss_backend_kernel_ctx) and
 * whose last is the error to fill (ss_kernel_begin).  The version after the
 * '/' is part of the name: a change of any struct or contract here bumps
 * HT_FUSED_VERSION, so that a CUDA module built from another revision answers
 * NULL rather than being called with another layout.
 *
 * Implementations: models/htdemucs/fused_cpu.c (the CPU reference),
 * models/htdemucs/fused_cuda.cu (built into the CUDA module and its emulator).
 * A backend finds them through models/kernels.h.
 *
 * All tensors fp32, row-major, shapes [dim0, dim1, ...] with the last
 * dimension contiguous; every pointer is device memory of the backend.
 */
#ifndef HT_FUSED_H
#define HT_FUSED_H

#include <stddef.h>
#include <stdint.h>

#include "../../src/error.h"

#define HT_FUSED_VERSION "1"

/* ---- "htdemucs.dconv_rows/1": one DConv residual layer on a frequency layer's rows ----
 * x [batch, ch, rows, len], each row (b, r) its own item [ch, len], in place:
 *   h  = gelu(gn1(conv1(x) + b1)),  conv1 w1 [hidden, ch, kernel] along len,
 *        dilation `dilation`, padding dilation * (kernel - 1) / 2
 *   x += glu(gn2(w2 h + b2)),       w2 [2ch, hidden]
 * each group norm one group over the item with its affine (g, be per channel).
 * ok() says whether run() takes shape d (and whether it pays off there); the
 * composition is conv2d, group_norm_gelu, then the tail below per item. */
typedef struct ht_dconv_desc {
    int batch, rows, ch, hidden, kernel, dilation;
    int64_t len;
    float eps;
} ht_dconv_desc;

typedef struct ht_dconv_w {
    const float *w1, *b1, *g1, *be1;   /* conv1 [hidden, ch, kernel], norm1 [hidden] */
    const float *w2, *b2, *g2, *be2;   /* conv2 [2ch, hidden], norm2 [2ch]           */
} ht_dconv_w;

typedef struct ht_dconv_rows_k {
    int (*ok)(void *ctx, const ht_dconv_desc *d);
    ss_status (*run)(void *ctx, const ht_dconv_desc *d, float *x, const ht_dconv_w *w, ss_error *err);
} ht_dconv_rows_k;

#define HT_K_DCONV_ROWS "htdemucs.dconv_rows/" HT_FUSED_VERSION

/* ---- "htdemucs.conv1x1_gn_glu_add/1": a DConv layer's second half ----------------------
 * x += glu(group_norm(w h + bias)) for h [batch, hidden, len], the 1x1
 * convolution w [2ch, hidden], bias [2ch] (may be NULL), GroupNorm(1) per item
 * over its 2ch channels with gamma/beta [2ch]; as conv2d (no bias) into g, a
 * channel_affine of the bias, group_norm, glu and add would give (the
 * composition in models/htdemucs/htdemucs.c).
 *   rows == 1: x [batch, ch, len]; g [batch, 2ch, len] is scratch run() may use.
 *   rows > 1:  item b is row b % rows of x [batch / rows, ch, rows, len] (a
 *              frequency layer's [B, ch, F, T], not rearranged); only where
 *              rows_ok(ctx, hidden) (rows_ok NULL: never); g unused.
 * x must not overlap h or g.  len <= INT_MAX. */
typedef struct ht_conv1x1_gn_glu_add_k {
    int (*rows_ok)(void *ctx, int hidden);
    ss_status (*run)(void *ctx, float *x, int rows, const float *h, const float *w, const float *bias, int batch,
                     int ch, int hidden, int64_t len, const float *gamma, const float *beta, float eps, float *g,
                     ss_error *err);
} ht_conv1x1_gn_glu_add_k;

#define HT_K_CONV1X1_GN_GLU_ADD "htdemucs.conv1x1_gn_glu_add/" HT_FUSED_VERSION

/* ---- "htdemucs.conv1x1_glu/1": an encoder layer's rewrite ------------------------------
 * out [batch, ch, len] = glu(w x + bias) for x [batch, cin, len], the 1x1
 * convolution w [2ch, cin] and bias [2ch] (may be NULL); as conv2d (no bias)
 * into a scratch r [batch, 2ch, len] then bias_glu would give, up to the
 * product's rounding (the fused product has other sgemm shapes).  out must not
 * overlap x.  len <= INT_MAX. */
typedef struct ht_conv1x1_glu_k {
    ss_status (*run)(void *ctx, float *out, const float *x, const float *w, const float *bias, int batch, int cin,
                     int ch, int64_t len, ss_error *err);
} ht_conv1x1_glu_k;

#define HT_K_CONV1X1_GLU "htdemucs.conv1x1_glu/" HT_FUSED_VERSION

#endif

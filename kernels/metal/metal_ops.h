/* metal_ops.h - the backend ops of the Metal backend, written once against a
 * small runtime interface (dispatch a kernel, get a scratch buffer, wait for
 * the GPU) so that the same op code - grid sizes, argument blocks, blocking
 * of the convolutions - drives real Metal (backend_metal.m, macOS) and the
 * grid emulator (emu/backend_metal_emu.c, every platform, `make check`). */
#ifndef SS_METAL_OPS_H
#define SS_METAL_OPS_H

#include "../../src/backend.h"
#include "../../src/threadpool.h"
#include "ss_metal_kernels.h"
#include "ss_metal_params.h"

typedef struct ss_mtl_rt ss_mtl_rt;
struct ss_mtl_rt {
    /* encode kernel `k` over groups[] threadgroups of tg[] threads; bufs are
     * pointers returned by the backend's alloc (or into them) */
    ss_status (*dispatch)(ss_mtl_rt *rt, int k, void *const *bufs, const ss_mtl_params *p,
                          const unsigned groups[3], const unsigned tg[3], ss_error *err);
    /* a scratch buffer of at least n floats in slot 0 or 1 (kept, grown) */
    float *(*scratch)(ss_mtl_rt *rt, int slot, size_t n, ss_error *err);
    /* wait until every dispatched kernel has finished (CPU may read memory) */
    ss_status (*finish)(ss_mtl_rt *rt, ss_error *err);
    ss_pool *pool;        /* CPU threads for the FFTs                     */
    int prec;             /* matmul inputs: 0 fp32, 1 fp16, 2 bf16        */
    size_t col_floats;    /* column-buffer budget of the convolutions     */
};

/* Op entries for ss_backend_iface: ctx must point at a struct whose first
 * member is an ss_mtl_rt. */
ss_status ss_mtl_fill(void *ctx, float *y, float v, size_t n, ss_error *err);
ss_status ss_mtl_copy2d(void *ctx, float *dst, size_t dpitch, const float *src, size_t spitch, size_t rows,
                        size_t cols, ss_error *err);
ss_status ss_mtl_add(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err);
ss_status ss_mtl_scale(void *ctx, float *y, const float *x, float alpha, size_t n, ss_error *err);
ss_status ss_mtl_channel_affine(void *ctx, float *y, const float *x, int batch, int ch, int64_t len,
                                const float *scale, const float *bias, ss_error *err);
ss_status ss_mtl_row_affine(void *ctx, float *y, const float *x, int rows, int64_t len, const float *scale,
                            const float *shift, ss_error *err);
ss_status ss_mtl_row_moments(void *ctx, float *mean, float *std, const float *x, int rows, int64_t len,
                             ss_error *err);
ss_status ss_mtl_gelu(void *ctx, float *y, const float *x, size_t n, ss_error *err);
ss_status ss_mtl_mul(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err);
ss_status ss_mtl_activate(void *ctx, float *y, const float *x, size_t n, ss_act act, float alpha, ss_error *err);
ss_status ss_mtl_rms_norm(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                          ss_rms_form form, ss_error *err);
ss_status ss_mtl_rope(void *ctx, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                      const float *cs, ss_error *err);
/* the GRU: the input projection on the gemm kernel, then one dispatch per step */
ss_status ss_mtl_gru(void *ctx, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, float *h, float *y, float *scratch, ss_error *err);
ss_status ss_mtl_glu(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err);
ss_status ss_mtl_softmax(void *ctx, float *y, const float *x, int rows, int len, float scale, ss_error *err);
ss_status ss_mtl_transpose(void *ctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err);
ss_status ss_mtl_group_norm(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                            const float *gamma, const float *beta, float eps, ss_error *err);
ss_status ss_mtl_layer_norm(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma,
                            const float *beta, float eps, ss_error *err);
ss_status ss_mtl_gemm(void *ctx, const ss_gemm_desc *d, const float *a, const float *b, float *c, ss_error *err);
ss_status ss_mtl_conv2d(void *ctx, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                        float *y, ss_error *err);
ss_status ss_mtl_conv_transpose2d(void *ctx, const ss_convt2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y, ss_error *err);
ss_status ss_mtl_copy4d(void *ctx, float *dst, const int64_t dstride[4], const float *src,
                        const int64_t sstride[4], const int64_t shape[4], ss_error *err);
/* STFT / iSTFT: Apple memory is unified, so these wait for the GPU and run
 * the CPU kernels (FFTW / vDSP) on the same shared buffers, without copies. */
ss_status ss_mtl_stft(void *ctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err);
ss_status ss_mtl_istft(void *ctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err);

/* Designated initialisers for every op slot of an ss_backend_iface. */
#define SS_MTL_OP_SLOTS                                                                          \
    .fill = ss_mtl_fill, .copy2d = ss_mtl_copy2d, .add = ss_mtl_add, .scale = ss_mtl_scale,      \
    .channel_affine = ss_mtl_channel_affine, .row_affine = ss_mtl_row_affine,                    \
    .row_moments = ss_mtl_row_moments, .gelu = ss_mtl_gelu, .glu = ss_mtl_glu,                   \
    .softmax = ss_mtl_softmax, .transpose = ss_mtl_transpose, .group_norm = ss_mtl_group_norm,   \
    .layer_norm = ss_mtl_layer_norm, .gemm = ss_mtl_gemm, .conv2d = ss_mtl_conv2d,               \
    .conv_transpose2d = ss_mtl_conv_transpose2d, .stft = ss_mtl_stft, .istft = ss_mtl_istft,     \
    .copy4d = ss_mtl_copy4d, .mul = ss_mtl_mul, .activate = ss_mtl_activate,                  \
    .rms_norm = ss_mtl_rms_norm, .rope = ss_mtl_rope, .gru = ss_mtl_gru

/* Ops that run on the CPU (listed under -v). */
#define SS_MTL_CPU_OPS "stft, istft (FFTW on the shared buffers)"

#endif

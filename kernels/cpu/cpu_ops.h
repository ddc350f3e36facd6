/* cpu_ops.h - the CPU reference kernels behind every backend op.
 *
 * These are the CPU backend's ops (src/backend_cpu.c fills its vtable with
 * them), and so the fallback the dispatcher in src/backend.c runs for any op
 * another backend leaves NULL.  Contracts (shapes, layouts, in-place rules)
 * are those of the wrappers in src/backend.h; descriptors are in src/ops.h.
 * Each takes the pool to parallelise over (may be NULL).
 * They cannot fail except for host allocation (SS_E_NOMEM).
 */
#ifndef SS_CPU_OPS_H
#define SS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../../src/error.h"
#include "../../src/ops.h"
#include "../../src/threadpool.h"

/* Mark a loop function for SIMD code: gcc vectorises at -O2 only when no
 * scalar epilogue is needed, so ask for it; clang vectorises at -O2 anyway. */
#if defined(__GNUC__) && !defined(__clang__)
#define SS_VECTORISE __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define SS_VECTORISE
#endif

/* ... and build it for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline, picked at
 * load time where the compiler can (not under AddressSanitizer).  SS_SIMD_CLONES contracts
 * a * b + c into one fused multiply-add in those two clones (gcc: fp-contract=fast; clang
 * contracts within an expression by default): the polynomials of exp and erfc and the norms'
 * sums cost about 30% less.  Loops whose order matters write their lanes out, and both clones
 * contract the same expressions, so they give the same bits; the baseline clone (no FMA, CPUs
 * before 2013) rounds every product and may differ in the last bit.  SS_SIMD_CLONES_EXACT
 * contracts nothing (gcc; ISO C mode's default), for code that must round a product the way
 * the reference does (softmax's scale * x before the max is subtracted). */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__) && \
    (!defined(__clang__) || __clang_major__ >= 14)
#define SS_X86_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#if defined(__clang__)
#define SS_SIMD_CLONES SS_X86_CLONES
#define SS_SIMD_CLONES_EXACT SS_X86_CLONES
#else
#define SS_SIMD_CLONES                                                                               \
    __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic", "fp-contract=fast"))) SS_X86_CLONES
#define SS_SIMD_CLONES_EXACT SS_VECTORISE SS_X86_CLONES
#endif
#else
#define SS_SIMD_CLONES SS_VECTORISE
#define SS_SIMD_CLONES_EXACT SS_VECTORISE
#endif

/* C = alpha op(A) op(B) + beta C, row-major, one thread (op = transpose where ta / tb): the
 * kernels' only call into BLAS (kernels/cpu/nn.c), which keeps BLAS single-threaded so a
 * product's bits never depend on how many threads the library would have used */
void ss_cpu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);

/* elementwise and layout: kernels/cpu/elementwise.c */
ss_status ss_cpu_fill(ss_pool *p, float *y, float v, size_t n);
ss_status ss_cpu_copy2d(ss_pool *p, float *dst, size_t dpitch, const float *src, size_t spitch,
                        size_t rows, size_t cols);
ss_status ss_cpu_add(ss_pool *p, float *y, const float *a, const float *b, size_t n);
ss_status ss_cpu_scale(ss_pool *p, float *y, const float *x, float alpha, size_t n);
ss_status ss_cpu_mul(ss_pool *p, float *y, const float *a, const float *b, size_t n);
/* y = act(x) (ss_act); SS_E_USAGE for an unknown act */
ss_status ss_cpu_activate(ss_pool *p, float *y, const float *x, size_t n, ss_act act, float alpha);
ss_status ss_cpu_channel_affine(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                                const float *scale, const float *bias);
ss_status ss_cpu_row_affine(ss_pool *p, float *y, const float *x, int rows, int64_t len,
                            const float *scale, const float *shift);
ss_status ss_cpu_row_moments(ss_pool *p, float *mean, float *std, const float *x, int rows, int64_t len);
ss_status ss_cpu_gelu(ss_pool *p, float *y, const float *x, size_t n);
ss_status ss_cpu_glu(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len);
/* gelu(x + bias), glu(x + bias) (bias per channel; x [batch, 2ch, len] for the GLU) in one pass */
ss_status ss_cpu_bias_gelu(ss_pool *p, float *y, const float *x, const float *bias, int batch, int ch, int64_t len);
ss_status ss_cpu_bias_glu(ss_pool *p, float *y, const float *x, const float *bias, int batch, int ch, int64_t len);
ss_status ss_cpu_softmax(ss_pool *p, float *y, const float *x, int rows, int len, float scale);
ss_status ss_cpu_transpose(ss_pool *p, float *y, const float *x, int batch, int rows, int cols);
/* one row of ss_cpu_softmax: y [len] = softmax(scale * x) (in place ok) */
void ss_cpu_softmax_span(float *y, const float *x, int64_t len, float scale);

/* strided 4-D copy: kernels/cpu/strided.c */
ss_status ss_cpu_copy4d(ss_pool *p, float *dst, const int64_t dstride[4], const float *src,
                        const int64_t sstride[4], const int64_t shape[4]);

/* y = gelu(x), y = a * sigmoid(g) over one span (what ss_cpu_gelu / ss_cpu_glu do per element) */
void ss_cpu_gelu_span(float *y, const float *x, int64_t n);
void ss_cpu_glu_span(float *y, const float *a, const float *g, int64_t n);
/* the sum of x[0..n) in double, in a fixed order of interleaved partial sums */
double ss_cpu_sum_span_d(const float *x, int64_t n);
/* sums of d = x - k and of d^2 over x[0..n), in double, in a fixed order of interleaved partial
 * sums.  With k a value of the span (or its mean) the sum of squares is free of cancellation, so
 * one pass gives a span's statistics. */
void ss_cpu_shifted_sums(const float *x, int64_t n, double k, double *s1, double *s2);
/* y += glu(norm a, norm g), norm x = ((x - c[0]) - c[1]) * c[2] + c[3] in float (c[0] + c[1]: a mean
 * split in two floats): the apply of HTDemucs's fused DConv tail (models/htdemucs/fused_cpu.c) */
void ss_cpu_norm_glu_add_span(float *y, const float *a, const float *g, int64_t n, const float ca[4],
                              const float cg[4]);
/* y = (a + ba) * sigmoid(g + bb) over one span (ss_cpu_bias_glu's per-row pass) */
void ss_cpu_bias_glu_span(float *y, const float *a, const float *g, float ba, float bb, int64_t n);

/* normalisation, matmul, convolution: kernels/cpu/nn.c */
ss_status ss_cpu_group_norm(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                            int groups, const float *gamma, const float *beta, float eps);
/* the DConv tails in one apply pass, bit-identical to composing the ops: y =
 * gelu(group_norm(x)) (in place ok); x [batch, ch, len] += glu(group_norm(g))
 * for g [batch, 2ch, len] normalised over its 2ch channels (g is not changed) */
ss_status ss_cpu_group_norm_gelu(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                                 int groups, const float *gamma, const float *beta, float eps);
ss_status ss_cpu_group_norm_glu_add(ss_pool *p, float *x, const float *g, int batch, int ch, int64_t len,
                                    int groups, const float *gamma, const float *beta, float eps);
ss_status ss_cpu_layer_norm(ss_pool *p, float *y, const float *x, int rows, int dim,
                            const float *gamma, const float *beta, float eps);
/* RMSNorm of each row (ss_rms_form); the sum of squares in double */
ss_status ss_cpu_rms_norm(ss_pool *p, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                          ss_rms_form form);
/* rotary position embedding (ss_rope in backend.h): kernels/cpu/attention.c */
ss_status ss_cpu_rope(ss_pool *p, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                      const float *cs);
ss_status ss_cpu_gemm(ss_pool *p, const ss_gemm_desc *d, const float *a, const float *b, float *c);
/* Multi-head attention (ss_attn_desc), every item of d->batch (0 counts as 1) in
 * one pass: kernels/cpu/attention.c.  Either fused
 * (AVX-512F and head dim 64: query blocks against key blocks with an online
 * softmax, nothing of size [nq, nk]) or through sgemm in blocks of query rows
 * whose scores stay in cache (the same products and softmax as composing
 * ss_cpu_gemm and ss_cpu_softmax).  scratch holds ss_cpu_attention_scratch(p, d)
 * floats; results do not depend on the number of threads. */
enum { SS_CPU_ATTN_BLAS = 0, SS_CPU_ATTN_FUSED = 1 };
size_t ss_cpu_attention_scratch(ss_pool *p, const ss_attn_desc *d);
ss_status ss_cpu_attention(ss_pool *p, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                           float *o, float *scratch);
/* The path ss_cpu_attention takes for d; tests: ss_cpu_attention_force(path) makes later calls take
 * path where they can (-1 where this machine has no such path), -1 restores the choice. */
int ss_cpu_attention_path(const ss_attn_desc *d);
int ss_cpu_attention_force(int path);
ss_status ss_cpu_conv2d(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                        const float *bias, float *y);
/* 3x3, stride 1, padding 1, dilation 1 only (else SS_E_USAGE), by Winograd
 * F(tile x tile, 3x3), tile 2 or 4; ss_cpu_conv2d uses tile 4 for that
 * geometry.  Relative error about 3x (tile 2) or 10x (tile 4) that of the
 * direct product. */
ss_status ss_cpu_conv2d_winograd(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                 const float *bias, float *y, int tile);
/* kh 1, stride 1, vertical padding 0 and dilation 1 only (else SS_E_USAGE):
 * one sgemm per tap on the input shifted in place, no im2col; ss_cpu_conv2d
 * uses it for that geometry (the DConv 1-D and pointwise convolutions). */
ss_status ss_cpu_conv2d_direct1d(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                 const float *bias, float *y);
ss_status ss_cpu_conv_transpose2d(ss_pool *p, const ss_convt2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y);

/* GRU layer (ss_gru_desc; ss_gru in backend.h): kernels/cpu/gru.c.  scratch holds
 * ss_gru_scratch(d) floats; the same bits whatever the thread count and however
 * a sequence is cut into calls (the state carried in h).  SS_E_USAGE for a bad shape. */
ss_status ss_cpu_gru(ss_pool *p, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, float *h, float *y, float *scratch);

/* spectral: kernels/cpu/stft.c (FFTW3f) */
ss_status ss_cpu_stft(ss_pool *p, const ss_stft_desc *d, const float *x, float *spec);
ss_status ss_cpu_istft(ss_pool *p, const ss_stft_desc *d, const float *spec, float *x);
/* Release cached FFTW plans and windows (at exit). */
void ss_cpu_stft_cleanup(void);

#endif

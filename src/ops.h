/* ops.h - the op descriptors: shapes and parameters of the model-agnostic
 * ops, shared by the dispatcher (src/backend.h, whose wrappers document each
 * op) and every kernel library (kernels/cpu, kernels/cuda, kernels/metal).
 * It depends on nothing else of stemsplit, so a kernel library includes it
 * without including the backend interface back.
 *
 * All tensors are fp32, row-major, contiguous unless a descriptor gives
 * strides; shapes are [dim0, dim1, ...] with the last dimension contiguous.
 */
#ifndef SS_OPS_H
#define SS_OPS_H

#include <stddef.h>
#include <stdint.h>

/* C = alpha * op(A) @ op(B) + beta * C, row-major, `batch` independent products.
 * op(A) is [m, k], op(B) is [k, n], C is [m, n]; lda/ldb/ldc are row pitches in
 * elements of the matrices as stored; stride_* are element offsets between
 * consecutive batch items (ignored when batch == 1).  reduced = 1 marks a
 * product whose result tolerates tf32 inputs (10-bit mantissa): --precision
 * mixed computes only these on tensor cores; fp32 ignores it, and tf32, bf16
 * and fp16 use their reduced mode for every product. */
typedef struct ss_gemm_desc {
    int trans_a, trans_b;
    int m, n, k;
    float alpha, beta;
    int lda, ldb, ldc;
    int batch;
    int64_t stride_a, stride_b, stride_c;
    int reduced;
} ss_gemm_desc;

/* 2-D convolution (1-D is h == 1, kh == 1).
 *   x [batch, cin, h, w]   w [cout, cin, kh, kw]   bias [cout] or NULL
 *   y [batch, cout, oh, ow], oh = (h + 2*ph - dh*(kh-1) - 1) / sh + 1 (same for w) */
typedef struct ss_conv2d_desc {
    int batch, cin, h, w;
    int cout, kh, kw;
    int sh, sw;      /* stride   */
    int ph, pw;      /* zero padding on both sides */
    int dh, dw;      /* dilation */
} ss_conv2d_desc;

/* A window of a transposed convolution's output: rows h0 .. h0 + oh - 1 and
 * columns w0 .. w0 + ow - 1 of each [cout] plane, GELU'd when gelu != 0. */
typedef struct ss_convt_crop {
    int h0, w0, oh, ow;
    int gelu;
} ss_convt_crop;

/* 2-D transposed convolution, PyTorch semantics with padding 0.
 *   x [batch, cin, h, w]   w [cin, cout, kh, kw]   bias [cout] or NULL
 *   y [batch, cout, (h-1)*sh + kh, (w-1)*sw + kw] */
typedef struct ss_convt2d_desc {
    int batch, cin, h, w;
    int cout, kh, kw;
    int sh, sw;
} ss_convt2d_desc;

/* Multi-head scaled dot-product attention, heads side by side in the columns
 * (nn.MultiheadAttention's layout), for `batch` independent items:
 *   q [nq, ldq], k [nk, ldk], v [nk, ldv], o [nq, ldo] per item; head h is
 *   columns [h*hd, (h+1)*hd) of each: o_h = softmax(scale * q_h k_h^T) v_h.
 * Item i's matrices start stride_q/k/v/o elements after item i-1's; batch
 * 0 or 1 is one item (the strides are then ignored).  reduced as for
 * ss_gemm_desc (the two products may take tf32 inputs).  A rotary position
 * embedding is applied to q and k beforehand (ss_rope). */
typedef struct ss_attn_desc {
    int heads, nq, nk, hd;
    int ldq, ldk, ldv, ldo;
    float scale;
    int reduced;
    int batch;
    int64_t stride_q, stride_k, stride_v, stride_o;
} ss_attn_desc;

/* Pointwise activations of ss_activate: y = f(x), alpha its parameter where it has one.
 *   RELU       max(x, 0)
 *   SIGMOID    1 / (1 + e^-x)
 *   TANH       tanh x
 *   SILU       x * sigmoid(x)
 *   ELU        x > 0 ? x : alpha (e^x - 1)              (torch.nn.ELU(alpha))
 *   LEAKY_RELU x > 0 ? x : alpha x                      (torch.nn.LeakyReLU(alpha))
 *   POW        |x|^alpha (powf; torch.pow on x >= 0: a magnitude's square root
 *              at 0.5, a reciprocal at -1)                          (API 13)
 * (GELU, the exact erf form, is ss_gelu.) */
typedef enum ss_act {
    SS_ACT_RELU = 0,
    SS_ACT_SIGMOID,
    SS_ACT_TANH,
    SS_ACT_SILU,
    SS_ACT_ELU,
    SS_ACT_LEAKY_RELU,
    SS_ACT_POW,
    SS_ACT_COUNT
} ss_act;

/* The two RMS norms of ss_rms_norm over a row x [dim] with gain gamma [dim]:
 *   SS_RMS_MEAN  y = x / sqrt(mean(x^2) + eps) * gamma            (T5, LLaMA)
 *   SS_RMS_L2    y = x / max(||x||_2, eps) * sqrt(dim) * gamma    (F.normalize
 *                form of the RoFormers; eps 1e-12 there) */
typedef enum ss_rms_form { SS_RMS_MEAN = 0, SS_RMS_L2 = 1 } ss_rms_form;

/* One GRU layer, one direction, over a sequence (PyTorch's nn.GRU with
 * batch_first, num_layers 1; API 14).  Gates in the order r, z, n:
 *   r = sigmoid(W_ir x_t + b_ir + W_hr h + b_hr)
 *   z = sigmoid(W_iz x_t + b_iz + W_hz h + b_hz)
 *   n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn))
 *   h = (1 - z) * n + z * h,   y_t = h
 * Shapes: x [batch, seq, in], w_ih [3 hidden, in], w_hh [3 hidden, hidden]
 * (the rows of r, then z, then n, as weight_ih_l0 / weight_hh_l0), b_ih and
 * b_hh [3 hidden] or NULL (zero), h [batch, hidden] (the initial state in,
 * the final state out), y [batch, seq, hidden].  seq 0 leaves h as it is. */
typedef struct ss_gru_desc {
    int batch, seq, in, hidden;
} ss_gru_desc;

/* floats of scratch ss_gru needs: the input projection of every step plus
 * one step's hidden projection per item, batch * (seq + 1) * 3 hidden */
static inline size_t ss_gru_scratch(const ss_gru_desc *d)
{
    return (size_t)d->batch * ((size_t)d->seq + 1) * 3 * (size_t)d->hidden;
}

/* Short-time Fourier transform, torch.stft(center=True, pad_mode='reflect',
 * window=hann_window(n_fft) (periodic), normalized=True, onesided).
 *   signal [batch, length]  <->  spec [batch, 2, n_fft/2 + 1, frames]
 * with frames = length / hop + 1 and the real plane before the imaginary one.
 * Reflect padding needs length > n_fft / 2. */
typedef struct ss_stft_desc {
    int batch;
    int64_t length;
    int n_fft, hop;
} ss_stft_desc;

static inline int64_t ss_stft_frames(const ss_stft_desc *d) { return d->length / d->hop + 1; }

/* Output sizes of the convolutions. */
static inline int ss_conv_out(int in, int k, int s, int p, int dil) { return (in + 2 * p - dil * (k - 1) - 1) / s + 1; }
static inline int ss_convt_out(int in, int k, int s) { return (in - 1) * s + k; }

#endif

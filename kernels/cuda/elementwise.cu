/* elementwise.cu - the CUDA backend's elementwise ops and copies: fill, copy2d, copy4d (strided
 * 4-d copy), add, mul, scale, per-channel and per-row affine, GELU, the ss_act activations, GLU,
 * bias + GELU, bias + GLU, and the batched 2-d transpose.  Grid-stride kernels (LAUNCH), one block
 * row per tensor row where rows are long (LAUNCH_ROWS), four elements at a time where rows and
 * pointers allow (LAUNCH_FLAT).
 */

#include "cuda_internal.h"

/* ---- elementwise ------------------------------------------------------------------ */

__global__ void k_fill(float *y, float v, size_t n) { GRID_LOOP(i, n) y[i] = v; }

__global__ void k_copy2d(float *dst, size_t dp, const float *src, size_t sp, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    GRID_LOOP(i, n) {
        size_t r = i / cols, q = i % cols;
        dst[r * dp + q] = src[r * sp + q];
    }
}

__global__ void k_add(float *y, const float *a, const float *b, size_t n) { GRID_LOOP(i, n) y[i] = a[i] + b[i]; }
__global__ void k_scale(float *y, const float *x, float a, size_t n) { GRID_LOOP(i, n) y[i] = a * x[i]; }

__global__ void k_channel_affine(float *y, const float *x, size_t n, int ch, int64_t len, const float *s,
                                 const float *t)
{
    GRID_LOOP(i, n) {
        int c = (int)((i / (size_t)len) % (size_t)ch);
        y[i] = x[i] * (s ? s[c] : 1.0f) + (t ? t[c] : 0.0f);
    }
}

__global__ void k_channel_affine_rows(float *y, const float *x, int ch, int64_t len, const float *s, const float *t)
{
    int c = (int)(blockIdx.x % (unsigned)ch);
    float sv = s ? s[c] : 1.0f, tv = t ? t[c] : 0.0f;
    size_t base = (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) y[base + j] = x[base + j] * sv + tv;
}

__global__ void k_row_affine_rows(float *y, const float *x, int64_t len, const float *s, const float *t)
{
    float sv = s[blockIdx.x], tv = t[blockIdx.x];
    size_t base = (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) y[base + j] = x[base + j] * sv + tv;
}

__global__ void k_row_affine(float *y, const float *x, size_t n, int64_t len, const float *s, const float *t)
{
    GRID_LOOP(i, n) {
        size_t r = i / (size_t)len;
        y[i] = x[i] * s[r] + t[r];
    }
}

__global__ void k_gelu(float *y, const float *x, size_t n) { GRID_LOOP(i, n) y[i] = gelu_f(x[i]); }

__global__ void k_mul(float *y, const float *a, const float *b, size_t n) { GRID_LOOP(i, n) y[i] = a[i] * b[i]; }

/* The ss_act activations, as the CPU kernels compute them (kernels/cpu/elementwise.c): sigmoid and
 * SiLU through expf (the CPU's polynomial exp differs by < 2e-7 relative), tanhf, ELU through
 * expm1f (the CPU's double expm1 rounded to float), |x|^alpha through powf.  One instance per activation. */
template <int ACT>
__device__ __forceinline__ float act_f(float x, float alpha)
{
    switch (ACT) {
    case SS_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case SS_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case SS_ACT_TANH: return tanhf(x);
    case SS_ACT_SILU: return x / (1.0f + expf(-x));
    case SS_ACT_ELU: return x > 0.0f ? x : __fmul_rn(alpha, expm1f(x));
    case SS_ACT_POW: return powf(fabsf(x), alpha);
    default: return x > 0.0f ? x : __fmul_rn(alpha, x);          /* SS_ACT_LEAKY_RELU */
    }
}

template <int ACT>
__global__ void k_activate(float *y, const float *x, float alpha, size_t n)
{
    GRID_LOOP(i, n) y[i] = act_f<ACT>(x[i], alpha);
}

__global__ void k_glu(float *y, const float *x, size_t n, int ch, int64_t len)
{
    GRID_LOOP(i, n) {
        size_t per = (size_t)ch * (size_t)len, b = i / per, rem = i % per;
        const float *a = x + b * 2 * per + rem;
        y[i] = a[0] / (1.0f + expf(-a[per]));
    }
}

/* y row (b, c) = x row (b, c) * sigmoid(x row (b, ch + c)) */
__global__ void k_glu_rows(float *y, const float *x, int ch, int64_t len)
{
    unsigned b = blockIdx.x / (unsigned)ch, c = blockIdx.x % (unsigned)ch;
    const float *a = x + ((size_t)b * 2 * ch + c) * (size_t)len, *g = a + (size_t)ch * (size_t)len;
    float *yr = y + (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) yr[j] = a[j] / (1.0f + expf(-g[j]));
}

ss_status cu_fill(void *vctx, float *y, float v, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_fill, n, y, v, n);
    CK_LAUNCH(c, err, "fill");
    return SS_OK;
}

ss_status cu_copy2d(void *vctx, float *dst, size_t dpitch, const float *src, size_t spitch, size_t rows,
                    size_t cols, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!rows || !cols) return SS_OK;
    LAUNCH(k_copy2d, rows * cols, dst, dpitch, src, spitch, rows, cols);
    CK_LAUNCH(c, err, "copy2d");
    return SS_OK;
}

ss_status cu_add(void *vctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_add, n, y, a, b, n);
    CK_LAUNCH(c, err, "add");
    return SS_OK;
}

ss_status cu_scale(void *vctx, float *y, const float *x, float alpha, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_scale, n, y, x, alpha, n);
    CK_LAUNCH(c, err, "scale");
    return SS_OK;
}

ss_status cu_channel_affine(void *vctx, float *y, const float *x, int batch, int ch, int64_t len,
                            const float *scale, const float *bias, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * (size_t)ch * (size_t)len, rows = (size_t)batch * (size_t)ch;
    if (!n) return SS_OK;
    if (use_rows(rows, len))
        LAUNCH_ROWS(k_channel_affine_rows, rows, len, y, x, ch, len, scale, bias);
    else
        LAUNCH(k_channel_affine, n, y, x, n, ch, len, scale, bias);
    CK_LAUNCH(c, err, "channel_affine");
    return SS_OK;
}

ss_status cu_row_affine(void *vctx, float *y, const float *x, int rows, int64_t len, const float *scale,
                        const float *shift, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)rows * (size_t)len;
    if (!n) return SS_OK;
    if (use_rows((size_t)rows, len))
        LAUNCH_ROWS(k_row_affine_rows, (size_t)rows, len, y, x, len, scale, shift);
    else
        LAUNCH(k_row_affine, n, y, x, n, len, scale, shift);
    CK_LAUNCH(c, err, "row_affine");
    return SS_OK;
}

ss_status cu_gelu(void *vctx, float *y, const float *x, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_gelu, n, y, x, n);
    CK_LAUNCH(c, err, "gelu");
    return SS_OK;
}

ss_status cu_mul(void *vctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_mul, n, y, a, b, n);
    CK_LAUNCH(c, err, "mul");
    return SS_OK;
}

ss_status cu_activate(void *vctx, float *y, const float *x, size_t n, ss_act act, float alpha, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    switch (act) {
    case SS_ACT_RELU: LAUNCH(k_activate<SS_ACT_RELU>, n, y, x, alpha, n); break;
    case SS_ACT_SIGMOID: LAUNCH(k_activate<SS_ACT_SIGMOID>, n, y, x, alpha, n); break;
    case SS_ACT_TANH: LAUNCH(k_activate<SS_ACT_TANH>, n, y, x, alpha, n); break;
    case SS_ACT_SILU: LAUNCH(k_activate<SS_ACT_SILU>, n, y, x, alpha, n); break;
    case SS_ACT_ELU: LAUNCH(k_activate<SS_ACT_ELU>, n, y, x, alpha, n); break;
    case SS_ACT_LEAKY_RELU: LAUNCH(k_activate<SS_ACT_LEAKY_RELU>, n, y, x, alpha, n); break;
    case SS_ACT_POW: LAUNCH(k_activate<SS_ACT_POW>, n, y, x, alpha, n); break;
    default: return fail(err, SS_E_INTERNAL, "cuda: activate: unknown activation %d", (int)act);
    }
    CK_LAUNCH(c, err, "activate");
    return SS_OK;
}

ss_status cu_glu(void *vctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * (size_t)ch * (size_t)len, rows = (size_t)batch * (size_t)ch;
    if (!n) return SS_OK;
    if (use_rows(rows, len))
        LAUNCH_ROWS(k_glu_rows, rows, len, y, x, ch, len);
    else
        LAUNCH(k_glu, n, y, x, n, ch, len);
    CK_LAUNCH(c, err, "glu");
    return SS_OK;
}

typedef struct dims4 {
    int64_t d[4], s[4], n[4];
} dims4;

template <typename I>   /* index type: unsigned when n < 2^31 (cheaper division) */
__global__ void k_copy4d(float *dst, const float *src, dims4 g, I n)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I k = i / (I)g.n[3];
        int64_t i3 = (int64_t)(i - k * (I)g.n[3]);
        I k2 = k / (I)g.n[2];
        int64_t i2 = (int64_t)(k - k2 * (I)g.n[2]);
        int64_t i1 = (int64_t)(k2 % (I)g.n[1]), i0 = (int64_t)(k2 / (I)g.n[1]);
        dst[i0 * g.d[0] + i1 * g.d[1] + i2 * g.d[2] + i3 * g.d[3]] =
            src[i0 * g.s[0] + i1 * g.s[1] + i2 * g.s[2] + i3 * g.s[3]];
    }
}

/* copy4d whose rows are contiguous on both sides (d[3] == s[3] == 1): one warp
 * per task of up to CP_CHUNK floats of one row, the row's start worked out once
 * per task instead of per element; V = 4: float4 moves (rows, their strides
 * and both bases 16-byte aligned). */
#define CP_CHUNK 1024
template <int V>
__global__ void k_copy4d_rows(float *dst, const float *src, dims4 g, unsigned tasks, unsigned chunks)
{
    unsigned lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (unsigned t = blockIdx.x * wpb + (threadIdx.x >> 5); t < tasks; t += gridDim.x * wpb) {
        unsigned r = t / chunks, q = t - r * chunks;
        unsigned k = r / (unsigned)g.n[2], i2 = r - k * (unsigned)g.n[2];
        unsigned i0 = k / (unsigned)g.n[1], i1 = k - i0 * (unsigned)g.n[1];
        const float *s = src + (int64_t)i0 * g.s[0] + (int64_t)i1 * g.s[1] + (int64_t)i2 * g.s[2];
        float *d = dst + (int64_t)i0 * g.d[0] + (int64_t)i1 * g.d[1] + (int64_t)i2 * g.d[2];
        int64_t j0 = (int64_t)q * CP_CHUNK, j1 = j0 + CP_CHUNK < g.n[3] ? j0 + CP_CHUNK : g.n[3];
        if (V == 4)
            for (int64_t j = j0 + 4 * lane; j < j1; j += 128)
                *(float4 *)(d + j) = *(const float4 *)(s + j);
        else
            for (int64_t j = j0 + lane; j < j1; j += 32)
                d[j] = s[j];
    }
}

ss_status cu_copy4d(void *vctx, float *dst, const int64_t dstride[4], const float *src,
                    const int64_t sstride[4], const int64_t shape[4], ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    dims4 g;
    size_t n = 1;
    for (int i = 0; i < 4; i++) {
        if (shape[i] <= 0)
            return SS_OK;
        g.d[i] = dstride[i];
        g.s[i] = sstride[i];
        g.n[i] = shape[i];
        n *= (size_t)shape[i];
    }
    size_t rows = n / (size_t)shape[3], chunks = ((size_t)shape[3] + CP_CHUNK - 1) / CP_CHUNK;
    if (dstride[3] == 1 && sstride[3] == 1 && shape[3] >= 16 && rows * chunks < 0x80000000u) {
        int v4 = shape[3] % 4 == 0 && aligned16(dst) && aligned16(src);
        for (int i = 0; i < 3; i++)
            v4 = v4 && dstride[i] % 4 == 0 && sstride[i] % 4 == 0;
        unsigned tasks = (unsigned)(rows * chunks), blocks = (tasks + TPB / 32 - 1) / (TPB / 32);
        if (v4)
            k_copy4d_rows<4><<<blocks, TPB, 0, c->stream>>>(dst, src, g, tasks, (unsigned)chunks);
        else
            k_copy4d_rows<1><<<blocks, TPB, 0, c->stream>>>(dst, src, g, tasks, (unsigned)chunks);
        CK_LAUNCH(c, err, "copy4d");
        return SS_OK;
    }
    if (n < 0x80000000u)
        LAUNCH(k_copy4d<unsigned>, n, dst, src, g, (unsigned)n);
    else
        LAUNCH(k_copy4d<size_t>, n, dst, src, g, n);
    CK_LAUNCH(c, err, "copy4d");
    return SS_OK;
}

/* y = gelu(x + bias[c]) for rows (b, c) of len; same arithmetic as a bias pass then k_gelu. */
template <typename I>
__global__ void k_bias_gelu(float *y, const float *x, const float *bias, I n, I len, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x)
        y[i] = gelu_f(x[i] + bias[(i / len) % ch]);
}

template <typename I>
__global__ void k_bias_gelu4(float4 *y, const float4 *x, const float *bias, I n4, I len4, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        float bc = bias[(i / len4) % ch];
        float4 v = x[i];
        y[i] = make_float4(gelu_f(v.x + bc), gelu_f(v.y + bc), gelu_f(v.z + bc), gelu_f(v.w + bc));
    }
}

/* y [batch, ch, len] = glu(x + bias) for x [batch, 2ch, len]: row b*ch + c of y
 * takes rows b*2ch + c and + ch of x (= row + b*ch); as a bias pass then k_glu_rows. */
template <typename I>
__global__ void k_bias_glu(float *y, const float *x, const float *bias, I n, I len, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I row = i / len, b = row / ch, c = row - b * ch, ia = (row + b * ch) * len + (i - row * len);
        y[i] = (x[ia] + bias[c]) / (1.0f + expf(-(x[ia + ch * len] + bias[c + ch])));
    }
}

template <typename I>
__global__ void k_bias_glu4(float4 *y, const float4 *x, const float *bias, I n4, I len4, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        I row = i / len4, b = row / ch, c = row - b * ch, ia = (row + b * ch) * len4 + (i - row * len4);
        float ba = bias[c], bb = bias[c + ch];
        float4 a = x[ia], g = x[ia + ch * len4];
        y[i] = make_float4((a.x + ba) / (1.0f + expf(-(g.x + bb))), (a.y + ba) / (1.0f + expf(-(g.y + bb))),
                           (a.z + ba) / (1.0f + expf(-(g.z + bb))), (a.w + ba) / (1.0f + expf(-(g.w + bb))));
    }
}

ss_status cu_bias_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                       ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * ch * (size_t)len;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    LAUNCH_FLAT(k_bias_gelu, k_bias_gelu4, y, x, n, n, len, ch, bias);
    CK_LAUNCH(c, err, "bias_gelu");
    return SS_OK;
}

ss_status cu_bias_glu(void *vctx, float *y, float *x, const float *bias, int batch, int ch, int64_t len,
                      ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * ch * (size_t)len;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    LAUNCH_FLAT(k_bias_glu, k_bias_glu4, y, x, n, 2 * n, len, ch, bias);
    CK_LAUNCH(c, err, "bias_glu");
    return SS_OK;
}

__global__ void k_transpose(float *y, const float *x, int rows, int cols)
{
    __shared__ float t[32][33];
    size_t off = (size_t)blockIdx.z * rows * cols;
    int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int r = r0 + k, cc = c0 + threadIdx.x;
        if (r < rows && cc < cols)
            t[k][threadIdx.x] = x[off + (size_t)r * cols + cc];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int cc = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && cc < cols)
            y[off + (size_t)cc * rows + r] = t[threadIdx.x][k];
    }
}

ss_status cu_transpose(void *vctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (batch <= 0 || rows <= 0 || cols <= 0) return SS_OK;
    for (int b0 = 0; b0 < batch; b0 += 65535) {
        int nb = batch - b0 < 65535 ? batch - b0 : 65535;
        size_t off = (size_t)b0 * rows * cols;
        dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((rows + 31) / 32), (unsigned)nb);
        k_transpose<<<grid, dim3(32, 8), 0, c->stream>>>(y + off, x + off, rows, cols);
    }
    CK_LAUNCH(c, err, "transpose");
    return SS_OK;
}

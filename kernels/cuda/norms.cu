/* norms.cu - the CUDA backend's reductions and normalisations: per-group statistics (sums and
 * sums of squares in double, chunk partials added in a fixed order: the same bits on every run),
 * row moments, standardisation coefficients, group norm (with a bias before it, GELU after it, or
 * as GLU + add onto a residual), layer norm, RMS norm and softmax.  k_gn_coef (per-row
 * coefficients from chunk partials) is shared with models/htdemucs/fused_cuda.cu.
 */

#include "cuda_internal.h"

/* ---- reductions ---------------------------------------------------------------------- */

#define STAT_CHUNK 8192   /* elements per block of the statistics pass */

/* part[g][chunk] = {sum, sum of squares} of chunk blockIdx.y of group g = blockIdx.x of x
 * [ngroups, gn] (contiguous); of x + bias[c] when bias is given, added in
 * float first as a separate bias pass would store it: group g is `per` rows of
 * len, channels (g % groups) * per onwards.  k_stats_sum adds the chunks in
 * order (no atomics: the same bits on every run). */
__global__ void k_stats(double *part, const float *x, int64_t gn, const float *bias, int per, int groups,
                        int64_t len)
{
    __shared__ double sh[32];
    int64_t g = blockIdx.x, lo = (int64_t)blockIdx.y * STAT_CHUNK;
    int64_t hi = lo + STAT_CHUNK < gn ? lo + STAT_CHUNK : gn;
    const float *xg = x + g * gn;
    double s = 0.0, q = 0.0;
    if (!bias) {
#pragma unroll 4
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            double v = xg[i];
            s += v;
            q += v * v;
        }
    } else {
        const float *bg = bias + (size_t)(g % groups) * per;
        int64_t i = lo + threadIdx.x, r = i / len, j = i - r * len;     /* row and column of i */
        for (; i < hi; i += blockDim.x) {
            double v = xg[i] + bg[r];
            s += v;
            q += v * v;
            if ((j += blockDim.x) >= len) {
                int64_t k = j / len;
                r += k;
                j -= k * len;
            }
        }
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        double2 *pg = (double2 *)part + (size_t)g * gridDim.y + blockIdx.y;
        *pg = make_double2(s, q);
    }
}

/* The same four elements at a time: len (and so gn) a multiple of 4, x 16-byte aligned. */
__global__ void k_stats4(double *part, const float4 *x, int64_t gn4, const float *bias, int per, int groups,
                         int64_t len4)
{
    __shared__ double sh[32];
    int64_t g = blockIdx.x, lo = (int64_t)blockIdx.y * (STAT_CHUNK / 4);
    int64_t hi = lo + STAT_CHUNK / 4 < gn4 ? lo + STAT_CHUNK / 4 : gn4;
    const float4 *xg = x + g * gn4;
    const float *bg = bias ? bias + (size_t)(g % groups) * per : NULL;
    double s = 0.0, q = 0.0;
    int64_t i = lo + threadIdx.x, r = i / len4, j = i - r * len4;      /* row and column of i */
    for (; i < hi; i += blockDim.x) {
        float4 v = xg[i];
        if (bg) {
            float bc = bg[r];
            v = make_float4(v.x + bc, v.y + bc, v.z + bc, v.w + bc);
            if ((j += blockDim.x) >= len4) {
                int64_t k = j / len4;
                r += k;
                j -= k * len4;
            }
        }
        double a = v.x, b = v.y, e = v.z, f = v.w;
        s += (a + b) + (e + f);
        q += (a * a + b * b) + (e * e + f * f);
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        double2 *pg = (double2 *)part + (size_t)g * gridDim.y + blockIdx.y;
        *pg = make_double2(s, q);
    }
}

/* The sums of group blockIdx.x's nch chunk partials in every thread, in chunk
 * order (each thread a fixed strided subset, then the block's fixed reduction
 * tree: the same bits on every run). */
__device__ __forceinline__ double2 part_sums(const double *part, int nch, double *sh)
{
    const double2 *pg = (const double2 *)part + (size_t)blockIdx.x * nch;
    double s = 0.0, q = 0.0;
    for (int i = threadIdx.x; i < nch; i += blockDim.x) {
        double2 v = pg[i];
        s += v.x;
        q += v.y;
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    return make_double2(s, q);
}

/* acc[2g], acc[2g+1] = the sums of group g's nch chunk partials (part_sums). */
__global__ void k_stats_sum(double *acc, const double *part, int nch)
{
    __shared__ double sh[32];
    double2 t = part_sums(part, nch, sh);
    double s = t.x, q = t.y;
    if (threadIdx.x == 0) {
        acc[2 * blockIdx.x] = s;
        acc[2 * blockIdx.x + 1] = q;
    }
}

/* Chunks of the statistics pass per group, and the doubles its partials take. */
static int64_t stat_chunks(int64_t gn) { return (gn + STAT_CHUNK - 1) / STAT_CHUNK; }
static size_t stat_part_doubles(int64_t ngroups, int64_t gn) { return (size_t)ngroups * stat_chunks(gn) * 2; }

/* The chunk partials part [ngroups, stat_chunks(gn), 2] of x [ngroups, gn] (per
 * channels of len each), of x + bias when given. */
static ss_status stats_parts(cuda_ctx *c, double *part, const float *x, int64_t ngroups, int64_t gn,
                             const float *bias, int per, int groups, int64_t len, ss_error *err)
{
    int64_t nch = stat_chunks(gn);
    if (ngroups > 0x7fffffff || nch > 65535)
        return fail(err, SS_E_INTERNAL, "cuda statistics: %lld groups of %lld", (long long)ngroups, (long long)gn);
    dim3 grid((unsigned)ngroups, (unsigned)nch);  /* groups along x: --batch 1024 makes 524288 of them */
    if (len % 4 == 0 && aligned16(x))
        k_stats4<<<grid, TPB, 0, c->stream>>>(part, (const float4 *)x, gn / 4, bias, per, groups, len / 4);
    else
        k_stats<<<grid, TPB, 0, c->stream>>>(part, x, gn, bias, per, groups, len);
    CK_LAUNCH(c, err, "statistics");
    return SS_OK;
}

/* Group sums acc [ngroups, 2] of x [ngroups, gn] (per channels of len each), of
 * x + bias when given; part: stat_part_doubles() of workspace. */
static ss_status stats(cuda_ctx *c, double *acc, double *part, const float *x, int64_t ngroups, int64_t gn,
                       const float *bias, int per, int groups, int64_t len, ss_error *err)
{
    if (stats_parts(c, part, x, ngroups, gn, bias, per, groups, len, err) != SS_OK)    /* checks the grid */
        return err->code;
    k_stats_sum<<<(unsigned)ngroups, 128, 0, c->stream>>>(acc, part, (int)stat_chunks(gn));
    CK_LAUNCH(c, err, "statistics");
    return SS_OK;
}

__global__ void k_moments(float *mean, float *sd, const double *acc, int rows, int64_t len)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    double m = acc[2 * r] / (double)len;
    double ss = acc[2 * r + 1] - (double)len * m * m;
    if (ss < 0)
        ss = 0;
    mean[r] = (float)m;
    sd[r] = len > 1 ? (float)sqrt(ss / (double)(len - 1)) : nanf("");
}

__global__ void k_standardize_coef(float *scale, float *shift, const float *mean, const float *sd, int n, float eps)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float sc = 1.0f / (eps + sd[i]);
    scale[i] = sc;
    shift[i] = -mean[i] * sc;
}

ss_status cu_standardize_coef(void *vctx, float *scale, float *shift, const float *mean, const float *sd,
                              int n, float eps, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (n <= 0) return SS_OK;
    k_standardize_coef<<<(n + 127) / 128, 128, 0, c->stream>>>(scale, shift, mean, sd, n, eps);
    CK_LAUNCH(c, err, "standardize_coef");
    return SS_OK;
}

ss_status cu_row_moments(void *vctx, float *mean, float *sd, const float *x, int rows, int64_t len,
                         ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0) return SS_OK;
    size_t na = (size_t)rows * 2, np = len > 0 ? stat_part_doubles(rows, len) : 0;
    double *acc = (double *)scratch(c, (na + np) * sizeof(double), err);
    if (!acc) return err->code;
    if (len > 0 && stats(c, acc, acc + na, x, rows, len, NULL, 1, 1, len, err) != SS_OK)
        return err->code;
    if (len <= 0)
        cudaMemsetAsync(acc, 0, (size_t)rows * 2 * sizeof(double), c->stream);
    k_moments<<<(rows + 127) / 128, 128, 0, c->stream>>>(mean, sd, acc, rows, len);
    CK_LAUNCH(c, err, "row_moments");
    return SS_OK;
}

/* ---- group norm: statistics, then per-row coefficients, then one flat pass ------------ */

/* co[r] for row r = (b, c) of [batch, ch, len] in `groups` groups: {bias[c],
 * group mean, rstd * gamma[c], beta[c]}, so that the norm of x in row r is
 * ((x + co.x) - co.y) * co.z + co.w (the arithmetic of a bias pass followed by
 * the norm).  Block g adds group g's nch chunk partials (part_sums), then
 * writes the coefficients of the group's rows. */
__global__ void k_gn_coef(float4 *co, const double *part, int nch, const float *bias, int ch, int groups, int64_t gn,
                          const float *gamma, const float *beta, float eps)
{
    __shared__ double sh[32];
    __shared__ float mr[2];
    double2 t = part_sums(part, nch, sh);
    moments_shared(t.x, t.y, (double)gn, eps, mr);
    int per = ch / groups, g0 = (int)(blockIdx.x % (unsigned)groups) * per;
    size_t r0 = (size_t)(blockIdx.x / (unsigned)groups) * ch + g0;
    for (int i = threadIdx.x; i < per; i += blockDim.x) {
        int cc = g0 + i;
        co[r0 + i] = make_float4(bias ? bias[cc] : 0.0f, mr[0], mr[1] * (gamma ? gamma[cc] : 1.0f),
                                 beta ? beta[cc] : 0.0f);
    }
}

__device__ __forceinline__ float gn_act(float x, float4 k, int act)
{
    float v = gn_val(x, k);
    return act ? gelu_f(v) : v;
}

/* y = norm(x) (GELU'd when act), one thread per element; I: index type. */
template <typename I>
__global__ void k_gn_apply(float *y, const float *x, const float4 *co, I n, I len, int act)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x)
        y[i] = gn_act(x[i], co[i / len], act);
}

/* The same four elements at a time (len a multiple of 4, 16-byte aligned rows). */
template <typename I>
__global__ void k_gn_apply4(float4 *y, const float4 *x, const float4 *co, I n4, I len4, int act)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        float4 k = co[i / len4], v = x[i];
        y[i] = make_float4(gn_act(v.x, k, act), gn_act(v.y, k, act), gn_act(v.z, k, act), gn_act(v.w, k, act));
    }
}

/* x [batch, ch, len] += glu(norm(g)) for g [batch, 2ch, len]: the GLU's halves
 * are rows b*2ch + c and b*2ch + ch + c of g (= row + b*ch and + ch for the row
 * b*ch + c of x); same arithmetic as the norm, k_glu_rows and k_add in turn. */
template <typename I>
__global__ void k_gn_glu_add(float *x, const float *g, const float4 *co, I n, I len, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I row = i / len, ra = row + (row / ch) * ch, ia = ra * len + (i - row * len);
        x[i] = x[i] + gn_glu(g[ia], g[ia + ch * len], co[ra], co[ra + ch]);
    }
}

template <typename I>
__global__ void k_gn_glu_add4(float4 *x, const float4 *g, const float4 *co, I n4, I len4, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        I row = i / len4, ra = row + (row / ch) * ch, ia = ra * len4 + (i - row * len4);
        float4 ka = co[ra], kb = co[ra + ch], a = g[ia], b = g[ia + ch * len4], v = x[i];
        v.x += gn_glu(a.x, b.x, ka, kb);
        v.y += gn_glu(a.y, b.y, ka, kb);
        v.z += gn_glu(a.z, b.z, ka, kb);
        v.w += gn_glu(a.w, b.w, ka, kb);
        x[i] = v;
    }
}

/* Statistics and coefficients of the norm of x [batch, ch, len] (+ bias) in
 * `groups` groups; returns the coefficients ([batch * ch] float4) in scratch. */
static const float4 *gn_prepare(cuda_ctx *c, const float *x, const float *bias, int batch, int ch, int64_t len,
                                int groups, const float *gamma, const float *beta, float eps, ss_error *err)
{
    int64_t ng = (int64_t)batch * groups, per = ch / groups, gn = per * len;
    size_t rows = (size_t)batch * ch;
    if (rows > 0x7fffffffu) {
        fail(err, SS_E_INTERNAL, "cuda group_norm: %zu rows", rows);
        return NULL;
    }
    size_t co_bytes = rows * sizeof(float4);
    char *buf = (char *)scratch(c, co_bytes + stat_part_doubles(ng, gn) * sizeof(double), err);
    if (!buf) return NULL;
    float4 *co = (float4 *)buf;
    double *part = (double *)(buf + co_bytes);       /* co_bytes is a multiple of 16 */
    if (stats_parts(c, part, x, ng, gn, bias, (int)per, groups, len, err) != SS_OK)
        return NULL;
    k_gn_coef<<<(unsigned)ng, 128, 0, c->stream>>>(co, part, (int)stat_chunks(gn), bias, ch, groups, gn, gamma, beta,
                                                   eps);
    return co;
}

/* y = group_norm(x + bias) (bias per channel, may be NULL), then GELU when act. */
static ss_status group_norm_act(cuda_ctx *c, float *y, const float *x, const float *bias, int batch, int ch,
                                int64_t len, int groups, const float *gamma, const float *beta, float eps, int act,
                                ss_error *err)
{
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (groups <= 0 || ch % groups)
        return fail(err, SS_E_INTERNAL, "cuda group_norm: %d channels in %d groups", ch, groups);
    const float4 *co = gn_prepare(c, x, bias, batch, ch, len, groups, gamma, beta, eps, err);
    if (!co) return err->code;
    size_t n = (size_t)batch * ch * (size_t)len;
    if (len % 4 == 0 && aligned16(x) && aligned16(y)) {
        size_t n4 = n / 4, l4 = (size_t)len / 4;
        if (n4 <= 0xffffffffu)
            LAUNCH(k_gn_apply4<unsigned>, n4, (float4 *)y, (const float4 *)x, co, (unsigned)n4, (unsigned)l4, act);
        else
            LAUNCH(k_gn_apply4<size_t>, n4, (float4 *)y, (const float4 *)x, co, n4, l4, act);
    } else if (n <= 0xffffffffu) {
        LAUNCH(k_gn_apply<unsigned>, n, y, x, co, (unsigned)n, (unsigned)len, act);
    } else {
        LAUNCH(k_gn_apply<size_t>, n, y, x, co, n, (size_t)len, act);
    }
    CK_LAUNCH(c, err, "group_norm");
    return SS_OK;
}

ss_status cu_group_norm_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch,
                             int64_t len, int groups, const float *gamma, const float *beta, float eps,
                             ss_error *err)
{
    return group_norm_act((cuda_ctx *)vctx, y, x, bias, batch, ch, len, groups, gamma, beta, eps, 1, err);
}

ss_status cu_group_norm_glu_add(void *vctx, float *x, float *g, const float *bias, int batch, int ch,
                                int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (groups <= 0 || (2 * ch) % groups)
        return fail(err, SS_E_INTERNAL, "cuda group_norm_glu_add: %d channels in %d groups", 2 * ch, groups);
    const float4 *co = gn_prepare(c, g, bias, batch, 2 * ch, len, groups, gamma, beta, eps, err);
    if (!co) return err->code;
    size_t n = (size_t)batch * ch * (size_t)len;
    LAUNCH_FLAT(k_gn_glu_add, k_gn_glu_add4, x, g, n, 2 * n, len, ch, co);
    CK_LAUNCH(c, err, "group_norm_glu_add");
    return SS_OK;
}

ss_status cu_group_norm(void *vctx, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                        const float *gamma, const float *beta, float eps, ss_error *err)
{
    return group_norm_act((cuda_ctx *)vctx, y, x, NULL, batch, ch, len, groups, gamma, beta, eps, 0, err);
}

/* One warp per row. */
__global__ void k_layer_norm(float *y, const float *x, int rows, int dim, const float *gamma, const float *beta,
                             float eps)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    const float *xr = x + (size_t)r * dim;
    float *yr = y + (size_t)r * dim;
    float s = 0.0f;
    for (int i = lane; i < dim; i += 32)
        s += xr[i];
    float m = warp_sum(s) / (float)dim, v = 0.0f;
    for (int i = lane; i < dim; i += 32) {
        float d = xr[i] - m;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / (float)dim + eps);
    for (int i = lane; i < dim; i += 32) {
        float z = (xr[i] - m) * rs;
        if (gamma) z *= gamma[i];
        if (beta) z += beta[i];
        yr[i] = z;
    }
}

ss_status cu_layer_norm(void *vctx, float *y, const float *x, int rows, int dim, const float *gamma,
                        const float *beta, float eps, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0 || dim <= 0) return SS_OK;
    k_layer_norm<<<(rows + 7) / 8, 256, 0, c->stream>>>(y, x, rows, dim, gamma, beta, eps);
    CK_LAUNCH(c, err, "layer_norm");
    return SS_OK;
}

/* RMS norm (ss_rms_form): one warp per row of x [rows, dim], eight rows per block.  Each lane adds
 * the squares of its elements in fp32 (four at a time with VEC: dim % 4 == 0 and x, y, gamma 16-byte
 * aligned), in a fixed order, and the warp adds the lanes' sums; then y = x * f * gamma with the
 * products rounded as the CPU kernel rounds them (no fused multiply-add). */
template <bool VEC>
__global__ void k_rms_norm(float *y, const float *x, int rows, int dim, const float *gamma, float eps, int l2)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    const float *xr = x + (size_t)r * dim;
    float *yr = y + (size_t)r * dim;
    float s = 0.0f;
    if (VEC) {
        for (int i = 4 * lane; i < dim; i += 128) {
            float4 v = *(const float4 *)(xr + i);
            s = fmaf(v.x, v.x, s);
            s = fmaf(v.y, v.y, s);
            s = fmaf(v.z, v.z, s);
            s = fmaf(v.w, v.w, s);
        }
    } else {
        for (int i = lane; i < dim; i += 32)
            s = fmaf(xr[i], xr[i], s);
    }
    s = warp_sum(s);
    float f = l2 ? sqrtf((float)dim) / fmaxf(sqrtf(s), eps) : 1.0f / sqrtf(s / (float)dim + eps);
    if (VEC) {
        for (int i = 4 * lane; i < dim; i += 128) {
            float4 v = *(const float4 *)(xr + i);
            v = make_float4(__fmul_rn(v.x, f), __fmul_rn(v.y, f), __fmul_rn(v.z, f), __fmul_rn(v.w, f));
            if (gamma) {
                float4 g = *(const float4 *)(gamma + i);
                v = make_float4(__fmul_rn(v.x, g.x), __fmul_rn(v.y, g.y), __fmul_rn(v.z, g.z), __fmul_rn(v.w, g.w));
            }
            *(float4 *)(yr + i) = v;
        }
    } else {
        for (int i = lane; i < dim; i += 32) {
            float z = __fmul_rn(xr[i], f);
            yr[i] = gamma ? __fmul_rn(z, gamma[i]) : z;
        }
    }
}

ss_status cu_rms_norm(void *vctx, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                      ss_rms_form form, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0 || dim <= 0) return SS_OK;
    int vec = dim % 4 == 0 && aligned16(x) && aligned16(y) && (!gamma || aligned16(gamma));
    unsigned blocks = (unsigned)((rows + 7) / 8);
    if (vec)
        k_rms_norm<true><<<blocks, 256, 0, c->stream>>>(y, x, rows, dim, gamma, eps, form == SS_RMS_L2);
    else
        k_rms_norm<false><<<blocks, 256, 0, c->stream>>>(y, x, rows, dim, gamma, eps, form == SS_RMS_L2);
    CK_LAUNCH(c, err, "rms_norm");
    return SS_OK;
}

/* One block per row. */
__global__ void k_softmax(float *y, const float *x, int len, float scale)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * len;
    float *yr = y + (size_t)blockIdx.x * len;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < len; i += blockDim.x)
        mx = fmaxf(mx, scale * xr[i]);
    mx = warp_max(mx);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh[w] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < nw; i++) mx = fmaxf(mx, sh[i]);
    float s = 0.0f;
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
        float e = expf(scale * xr[i] - mx);
        yr[i] = e;
        s += e;
    }
    s = block_sum(s, sh);
    float inv = 1.0f / s;
    for (int i = threadIdx.x; i < len; i += blockDim.x)
        yr[i] *= inv;
}

/* The same for rows of up to 256 * SM_NPT: each row read once into registers
 * and written once (same arithmetic and order as k_softmax). */
#define SM_NPT 12
__global__ void __launch_bounds__(256) k_softmax_reg(float *y, const float *x, int len, float scale)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * len;
    float *yr = y + (size_t)blockIdx.x * len;
    float v[SM_NPT], mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < SM_NPT; k++) {
        int i = threadIdx.x + k * 256;
        v[k] = i < len ? scale * xr[i] : -INFINITY;
        mx = fmaxf(mx, v[k]);
    }
    mx = warp_max(mx);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) sh[w] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < 8; i++) mx = fmaxf(mx, sh[i]);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < SM_NPT; k++) {
        float e = threadIdx.x + k * 256 < len ? expf(v[k] - mx) : 0.0f;
        v[k] = e;
        s += e;
    }
    s = block_sum(s, sh);
    float inv = 1.0f / s;
#pragma unroll
    for (int k = 0; k < SM_NPT; k++)
        if (threadIdx.x + k * 256 < len)
            yr[threadIdx.x + k * 256] = v[k] * inv;
}

ss_status cu_softmax(void *vctx, float *y, const float *x, int rows, int len, float scale, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0 || len <= 0) return SS_OK;
    for (int r0 = 0; r0 < rows; r0 += 65535) {
        int nr = rows - r0 < 65535 ? rows - r0 : 65535;
        if (len <= 256 * SM_NPT)
            k_softmax_reg<<<nr, 256, 0, c->stream>>>(y + (size_t)r0 * len, x + (size_t)r0 * len, len, scale);
        else
            k_softmax<<<nr, 256, 0, c->stream>>>(y + (size_t)r0 * len, x + (size_t)r0 * len, len, scale);
    }
    CK_LAUNCH(c, err, "softmax");
    return SS_OK;
}

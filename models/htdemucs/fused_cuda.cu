/* fused_cuda.cu - HTDemucs's fused kernels in the CUDA backend (models/htdemucs/fused.h):
 * "htdemucs.conv1x1_gn_glu_add" (a DConv layer's second half, x += GLU(group norm(1x1 conv)),
 * without storing the 1x1 convolution's output) and "htdemucs.dconv_rows" (a whole DConv layer on
 * a frequency layer's rows in one kernel).  Statistics and coefficients as kernels/cuda/norms.cu
 * forms them (k_gn_coef).  Built into the CUDA module by kernels/cuda/cuda.mk (and, as C++ for the
 * CPU, into its emulator); the module's `kernel` slot finds them through models/kernels.h.
 */

#include "cuda_internal.h"
#include "fused.h"

/* ---- a DConv layer's second half without storing its 1x1 convolution ------------
 * x [batch, ch, len] += glu(norm(w h + bias)), w [2ch, hidden], h [batch, hidden,
 * len], GroupNorm(1) per item over the 2ch x len values.  hidden is ch / 8 in
 * HTDemucs, so w h costs 2ch * hidden multiply-adds per position: computing it
 * twice costs less than writing it [batch, 2ch, len] and reading it twice
 * where hidden is small (the outer layers, whose tensors are the largest); the
 * deeper layers' products (hidden 24-48) run faster through cuBLAS, so
 * hidden > PW_MAX_HIDDEN takes the composed path.
 * Pass 1 (k_pw_stats) keeps only each block's {sum, sum of squares}; k_gn_coef
 * turns them into per-row coefficients; pass 2 (k_pw_glu_add) computes w h again
 * with the same fmaf chain (so the same bits) and adds the GLU to x.
 * A block: PW_TT positions of one item (lane l holds positions l + 32 j) and two
 * halves of PW_HALF weight rows (pass 1: 2 PW_HALF consecutive rows; pass 2: GLU
 * rows p.. and ch + p..), h and the rows' weights in shared memory. */
#define PW_TT 128
#define PW_HALF 64
#define PW_WP (2 * PW_HALF + 4)   /* row pitch of the weights in shared memory (floats) */
#define PW_THREADS 256
#define PW_MAX_HIDDEN 16   /* beyond: cuBLAS's product and one more pass are faster (ncu on an H100,
                              * the deepest frequency layer: docs/performance-log.md) */

static size_t pw_smem(int hidden) { return (size_t)hidden * (PW_TT + PW_WP) * sizeof(float); }

/* Stage h [hidden, PW_TT] (zeros past len) and the weights of rows ra.. (na of
 * them) and rb.. (nb) as [hidden, PW_WP] columns 0.. and PW_HALF.. (zeros past). */
__device__ __forceinline__ void pw_stage(float *hs, float *ws, const float *hb, const float *w, int hidden,
                                         int64_t len, int64_t t0, int ra, int na, int rb, int nb)
{
    for (int i = threadIdx.x; i < hidden * PW_TT; i += blockDim.x) {
        int k = i / PW_TT, tt = i - k * PW_TT;
        hs[i] = t0 + tt < len ? hb[(size_t)k * len + t0 + tt] : 0.0f;
    }
    for (int i = threadIdx.x; i < hidden * 2 * PW_HALF; i += blockDim.x) {
        int k = i / (2 * PW_HALF), j = i - k * (2 * PW_HALF), half = j >= PW_HALF, jj = j - half * PW_HALF;
        int row = half ? rb + jj : ra + jj, n = half ? nb : na;
        ws[k * PW_WP + j] = jj < n ? __ldg(w + (size_t)row * hidden + k) : 0.0f;
    }
}

/* The 4 x 4 products of weight rows 4q..4q+3 of each half with the lane's 4
 * positions: a[i][j], b[i][j] = sum over k in order of fmaf. */
__device__ __forceinline__ void pw_dot(float a[4][4], float b[4][4], const float *hs, const float *ws, int hidden,
                                       int q, int lane)
{
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            a[i][j] = b[i][j] = 0.0f;
    for (int k = 0; k < hidden; k++) {
        float4 wa = *(const float4 *)(ws + k * PW_WP + 4 * q);
        float4 wb = *(const float4 *)(ws + k * PW_WP + PW_HALF + 4 * q);
        const float *hk = hs + k * PW_TT + lane;
        float hv[4] = {hk[0], hk[32], hk[64], hk[96]};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            a[0][j] = fmaf(wa.x, hv[j], a[0][j]);
            a[1][j] = fmaf(wa.y, hv[j], a[1][j]);
            a[2][j] = fmaf(wa.z, hv[j], a[2][j]);
            a[3][j] = fmaf(wa.w, hv[j], a[3][j]);
            b[0][j] = fmaf(wb.x, hv[j], b[0][j]);
            b[1][j] = fmaf(wb.y, hv[j], b[1][j]);
            b[2][j] = fmaf(wb.z, hv[j], b[2][j]);
            b[3][j] = fmaf(wb.w, hv[j], b[3][j]);
        }
    }
}

/* part [batch, tiles * gridDim.y, 2]: block (item b, tile, row block z) adds
 * w h + bias over rows 2 PW_HALF z.. of its tile (as k_stats would add the
 * stored w h + bias: the sum in float, then in double). grid.x = batch * tiles. */
__global__ void __launch_bounds__(PW_THREADS) k_pw_stats(double *part, const float *h, const float *w,
                                                         const float *bias, int hidden, int cout, int64_t len,
                                                         int tiles)
{
    extern __shared__ float pw_sh[];
    __shared__ double sh[32];
    float *hs = pw_sh, *ws = pw_sh + hidden * PW_TT;
    int b = blockIdx.x / tiles, tile = blockIdx.x - b * tiles, o0 = blockIdx.y * 2 * PW_HALF;
    int na = min(PW_HALF, cout - o0), nb = min(PW_HALF, cout - o0 - PW_HALF);
    int64_t t0 = (int64_t)tile * PW_TT;
    pw_stage(hs, ws, h + (size_t)b * hidden * len, w, hidden, len, t0, o0, na, o0 + PW_HALF, nb);
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double s = 0.0, sq = 0.0;
    for (int q = warp; 4 * q < na; q += PW_THREADS / 32) {
        float a[4][4], g[4][4];
        pw_dot(a, g, hs, ws, hidden, q, lane);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = 4 * q + i;                  /* row r of each half */
            float ba = r < na && bias ? bias[o0 + r] : 0.0f, bb = r < nb && bias ? bias[o0 + PW_HALF + r] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                if (t0 + lane + 32 * j >= len)
                    continue;
                if (r < na) {
                    double v = a[i][j] + ba;
                    s += v;
                    sq += v * v;
                }
                if (r < nb) {
                    double v = g[i][j] + bb;
                    s += v;
                    sq += v * v;
                }
            }
        }
    }
    s = block_sum(s, sh);
    sq = block_sum(sq, sh);
    if (threadIdx.x == 0)
        ((double2 *)part)[(size_t)blockIdx.x * gridDim.y + blockIdx.y] = make_double2(s, sq);
}

/* x += glu(norm(w h)) over GLU rows PW_HALF z.. (and ch + PW_HALF z..) of a tile;
 * co [batch * 2ch] from k_gn_coef. grid.x = batch * tiles. */
__global__ void __launch_bounds__(PW_THREADS) k_pw_glu_add(float *__restrict__ x, const float *__restrict__ h,
                                                           const float *__restrict__ w, const float4 *__restrict__ co,
                                                           int hidden, int ch, int64_t len, int tiles)
{
    extern __shared__ float pw_sh[];
    float *hs = pw_sh, *ws = pw_sh + hidden * PW_TT;
    int b = blockIdx.x / tiles, tile = blockIdx.x - b * tiles, p0 = blockIdx.y * PW_HALF;
    int np = min(PW_HALF, ch - p0);
    int64_t t0 = (int64_t)tile * PW_TT;
    pw_stage(hs, ws, h + (size_t)b * hidden * len, w, hidden, len, t0, p0, np, ch + p0, np);
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float4 *cb = co + (size_t)b * 2 * ch;
    for (int q = warp; 4 * q < np; q += PW_THREADS / 32) {
        float a[4][4], g[4][4];
        pw_dot(a, g, hs, ws, hidden, q, lane);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int p = p0 + 4 * q + i;
            if (4 * q + i >= np)
                break;
            float4 ka = cb[p], kb = cb[ch + p];
            float *xr = x + ((size_t)b * ch + p) * len + t0 + lane;
            float xv[4];
#pragma unroll
            for (int j = 0; j < 4; j++)         /* the four loads in flight before any store */
                xv[j] = t0 + lane + 32 * j < len ? xr[32 * j] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (t0 + lane + 32 * j < len)
                    xr[32 * j] = xv[j] + gn_glu(a[i][j], g[i][j], ka, kb);
        }
    }
}

/* x [batch, ch, len] += glu(group_norm(w h + bias)), one group per item (see
 * k_pw_stats); where hidden or the grid is out of the kernels' range, the 1x1
 * convolution into g [batch, 2ch, len] and group_norm_glu_add. */
static ss_status cu_conv1x1_gn_glu_add(void *vctx, float *x, const float *h, const float *w, const float *bias,
                                int batch, int ch, int hidden, int64_t len, const float *gamma,
                                const float *beta, float eps, float *g, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    int64_t tiles = (len + PW_TT - 1) / PW_TT;
    unsigned zs = (unsigned)((2 * (int64_t)ch + 2 * PW_HALF - 1) / (2 * PW_HALF));
    unsigned zg = (unsigned)(((int64_t)ch + PW_HALF - 1) / PW_HALF);
    if (hidden <= 0 || hidden > PW_MAX_HIDDEN || batch * tiles > 0x7fffffff || zs > 65535 || len > 0x7fffffff) {
        if (hidden <= 0 || len > 0x7fffffff)
            return fail(err, SS_E_INTERNAL, "cuda conv1x1_gn_glu_add: %d inputs, length %lld", hidden,
                        (long long)len);
        ss_conv2d_desc d = {.batch = batch, .cin = hidden, .h = 1, .w = (int)len, .cout = 2 * ch, .kh = 1, .kw = 1,
                            .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1};
        if (cu_conv2d(c, &d, h, w, NULL, g, err) != SS_OK)
            return err->code;
        return cu_group_norm_glu_add(c, x, g, bias, batch, ch, len, 1, gamma, beta, eps, err);
    }
    size_t co_bytes = (size_t)batch * 2 * ch * sizeof(float4), nch = (size_t)tiles * zs;
    char *buf = (char *)scratch(c, co_bytes + (size_t)batch * nch * 2 * sizeof(double), err);
    if (!buf)
        return err->code;
    float4 *co = (float4 *)buf;
    double *part = (double *)(buf + co_bytes);
    size_t sm = pw_smem(hidden);                     /* <= 16.6 KB */
    unsigned nb = (unsigned)(batch * tiles);
    k_pw_stats<<<dim3(nb, zs), PW_THREADS, sm, c->stream>>>(part, h, w, bias, hidden, 2 * ch, len, (int)tiles);
    k_gn_coef<<<(unsigned)batch, 128, 0, c->stream>>>(co, part, (int)nch, bias, 2 * ch, 1, 2 * (int64_t)ch * len,
                                                      gamma, beta, eps);
    k_pw_glu_add<<<dim3(nb, zg), PW_THREADS, sm, c->stream>>>(x, h, w, co, hidden, ch, len, (int)tiles);
    CK_LAUNCH(c, err, "conv1x1_gn_glu_add");
    return SS_OK;
}

/* ---- a DConv layer on a frequency layer's rows in one pass ("htdemucs.dconv_rows") ------------
 * One block per row item (b, r) of x [batch, ch, rows, len]: the item [ch, len]
 * is read into shared memory once; conv1 (kernel k along len) goes to h [hidden,
 * len] in shared memory and is normed and GELU'd there; then w2 h is computed
 * twice, first for the second norm's statistics, then for the GLU, which is added
 * to the item as it is written back.  The unfused path reads and writes the item
 * five times and rearranges it twice.  Statistics as k_stats / k_gn_coef form
 * them (value + bias in float, sums in double); the 1x1 products as fmaf chains
 * in k order (as k_pw_*).  Shared memory: w1 as [ch][k][hp] (hp: hidden rounded
 * up to 4, zero-padded), w2 as [2ch][hp], the item, h. */
#define DR_THREADS 512
#define DR_MAX_HIDDEN 16
#define DR_MAX_K 7

__host__ __device__ static inline int dr_hp(int hidden) { return (hidden + 3) / 4 * 4; }

static size_t dr_smem(const ht_dconv_desc *d)
{
    size_t hp = (size_t)dr_hp(d->hidden);
    return ((size_t)d->ch * d->kernel * hp + 2 * (size_t)d->ch * hp + (size_t)d->ch * (size_t)d->len +
            (size_t)d->hidden * (size_t)d->len) * sizeof(float);
}

/* hv = column t of h [hid, len], zero-padded to DR_MAX_HIDDEN */
__device__ __forceinline__ void dr_column(float *hv, const float *hs, int hid, int len, int t)
{
#pragma unroll
    for (int q = 0; q < DR_MAX_HIDDEN; q++)
        hv[q] = q < hid ? hs[(size_t)q * len + t] : 0.0f;
}

/* acc + w . h over hp (a multiple of 4, <= DR_MAX_HIDDEN) in k order */
__device__ __forceinline__ float dr_dot(const float *w, const float *hv, int hp, float acc)
{
#pragma unroll
    for (int q4 = 0; q4 < DR_MAX_HIDDEN / 4; q4++)
        if (4 * q4 < hp) {
            float4 wv = *(const float4 *)(w + 4 * q4);
            acc = fmaf(wv.x, hv[4 * q4], acc);
            acc = fmaf(wv.y, hv[4 * q4 + 1], acc);
            acc = fmaf(wv.z, hv[4 * q4 + 2], acc);
            acc = fmaf(wv.w, hv[4 * q4 + 3], acc);
        }
    return acc;
}

__global__ void __launch_bounds__(DR_THREADS) k_dconv_rows(float *__restrict__ x, int rows, int ch, int hid, int len,
                                                           int k, int dil, const float *__restrict__ w1,
                                                           const float *__restrict__ b1, const float *__restrict__ g1,
                                                           const float *__restrict__ be1, const float *__restrict__ w2,
                                                           const float *__restrict__ b2, const float *__restrict__ g2,
                                                           const float *__restrict__ be2, float eps)
{
    extern __shared__ float4 dr_sm4[];
    __shared__ double red[32];
    __shared__ float st[2];
    const int hp = dr_hp(hid), tid = threadIdx.x, nt = blockDim.x;
    float *w1t = (float *)dr_sm4, *w2s = w1t + (size_t)ch * k * hp, *xs = w2s + (size_t)2 * ch * hp;
    float *hs = xs + (size_t)ch * len;
    const int item = blockIdx.x, bb = item / rows, r = item - bb * rows;
    const size_t cs = (size_t)rows * len;                    /* channel stride of x */
    float *xb = x + (size_t)bb * ch * cs + (size_t)r * len;
    for (int i = tid; i < ch * len; i += nt) {
        int c = i / len, t = i - c * len;
        xs[i] = xb[c * cs + t];
    }
    for (int i = tid; i < ch * k * hp; i += nt) {
        int o = i % hp, cj = i / hp;
        w1t[i] = o < hid ? w1[(size_t)o * ch * k + cj] : 0.0f;
    }
    for (int i = tid; i < 2 * ch * hp; i += nt) {
        int q = i % hp, o = i / hp;
        w2s[i] = q < hid ? w2[(size_t)o * hid + q] : 0.0f;
    }
    __syncthreads();

    /* conv1: a task is 4 outputs at positions t and t + half (h stored without the bias) */
    const int half = (len + 1) / 2, tasks = (hp / 4) * half, kh = (k - 1) / 2;
    double s = 0.0, q2 = 0.0;
    for (int task = tid; task < tasks; task += nt) {
        int og = task / half, t1 = task - og * half, t2 = t1 + half;
        float a1[4] = {0.0f, 0.0f, 0.0f, 0.0f}, a2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int c = 0; c < ch; c++) {
            const float *xr = xs + (size_t)c * len;
            for (int j = 0; j < k; j++) {
                int u1 = t1 + (j - kh) * dil, u2 = u1 + half;
                float v1 = u1 >= 0 && u1 < len ? xr[u1] : 0.0f, v2 = u2 >= 0 && u2 < len ? xr[u2] : 0.0f;
                float4 wv = *(const float4 *)(w1t + ((size_t)c * k + j) * hp + 4 * og);
                a1[0] = fmaf(wv.x, v1, a1[0]);
                a1[1] = fmaf(wv.y, v1, a1[1]);
                a1[2] = fmaf(wv.z, v1, a1[2]);
                a1[3] = fmaf(wv.w, v1, a1[3]);
                a2[0] = fmaf(wv.x, v2, a2[0]);
                a2[1] = fmaf(wv.y, v2, a2[1]);
                a2[2] = fmaf(wv.z, v2, a2[2]);
                a2[3] = fmaf(wv.w, v2, a2[3]);
            }
        }
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int o = 4 * og + e;
            if (o >= hid)
                break;
            float bo = b1 ? b1[o] : 0.0f, v = a1[e] + bo;
            hs[(size_t)o * len + t1] = a1[e];
            s += v;
            q2 += (double)v * v;
            if (t2 < len) {
                v = a2[e] + bo;
                hs[(size_t)o * len + t2] = a2[e];
                s += v;
                q2 += (double)v * v;
            }
        }
    }
    s = block_sum(s, red);
    q2 = block_sum(q2, red);
    moments_shared(s, q2, (double)hid * len, eps, st);
    const float m1 = st[0], rs1 = st[1];
    for (int i = tid; i < hid * len; i += nt) {
        int o = i / len;
        float4 kc = make_float4(b1 ? b1[o] : 0.0f, m1, rs1 * (g1 ? g1[o] : 1.0f), be1 ? be1[o] : 0.0f);
        hs[i] = gelu_f(gn_val(hs[i], kc));
    }
    __syncthreads();

    /* w2 h + b2: the second norm's statistics; a task is one position and a slice of the rows */
    const int S = (nt + len - 1) / len, per2 = (2 * ch + S - 1) / S, per1 = (ch + S - 1) / S;
    s = 0.0;
    q2 = 0.0;
    for (int task = tid; task < len * S; task += nt) {
        int sl = task / len, t = task - sl * len;
        float hv[DR_MAX_HIDDEN];
        dr_column(hv, hs, hid, len, t);
        int o1 = min(2 * ch, (sl + 1) * per2);
        for (int o = sl * per2; o < o1; o++) {
            float v = dr_dot(w2s + (size_t)o * hp, hv, hp, 0.0f) + (b2 ? b2[o] : 0.0f);
            s += v;
            q2 += (double)v * v;
        }
    }
    s = block_sum(s, red);
    q2 = block_sum(q2, red);
    moments_shared(s, q2, 2.0 * ch * len, eps, st);
    const float m2 = st[0], rs2 = st[1];
    /* x += glu(norm(w2 h)): GLU rows p and ch + p, written back to x */
    for (int task = tid; task < len * S; task += nt) {
        int sl = task / len, t = task - sl * len;
        float hv[DR_MAX_HIDDEN];
        dr_column(hv, hs, hid, len, t);
        int p1 = min(ch, (sl + 1) * per1);
        for (int p = sl * per1; p < p1; p++) {
            float a = dr_dot(w2s + (size_t)p * hp, hv, hp, 0.0f);
            float g = dr_dot(w2s + (size_t)(ch + p) * hp, hv, hp, 0.0f);
            float4 ka = make_float4(b2 ? b2[p] : 0.0f, m2, rs2 * (g2 ? g2[p] : 1.0f), be2 ? be2[p] : 0.0f);
            float4 kb = make_float4(b2 ? b2[ch + p] : 0.0f, m2, rs2 * (g2 ? g2[ch + p] : 1.0f),
                                    be2 ? be2[ch + p] : 0.0f);
            xb[p * cs + t] = xs[(size_t)p * len + t] + gn_glu(a, g, ka, kb);
        }
    }
}

static int cu_dconv_rows_ok(void *vctx, const ht_dconv_desc *d)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->hidden > DR_MAX_HIDDEN || d->kernel > DR_MAX_K || d->kernel % 2 == 0 || d->len > 65536 ||
        (int64_t)d->batch * d->rows > 0x7fffffff || (int64_t)d->ch * d->len > 0x7fffffff)
        return 0;
    /* enough items to fill the device: the outer layers (e.g. 512 and 128 rows), not the deep ones */
    if ((int64_t)d->batch * d->rows < c->n_sm / 2)
        return 0;
    int optin = 0;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return dr_smem(d) + 1024 <= (size_t)optin;
}

static ss_status cu_dconv_rows(void *vctx, const ht_dconv_desc *d, float *x, const ht_dconv_w *w, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!cu_dconv_rows_ok(vctx, d))
        return fail(err, SS_E_INTERNAL, "cuda dconv_rows: shape out of range (%d channels, hidden %d, length %lld)",
                    d->ch, d->hidden, (long long)d->len);
    size_t sm = dr_smem(d);
    /* per device and cheap: set before every launch (also while a graph is being recorded) */
    cudaError_t e = cudaFuncSetAttribute(k_dconv_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    if (e != cudaSuccess)
        return cuda_fail(err, e, "dconv_rows");
    k_dconv_rows<<<(unsigned)(d->batch * d->rows), DR_THREADS, sm, c->stream>>>(
        x, d->rows, d->ch, d->hidden, (int)d->len, d->kernel, d->dilation, w->w1, w->b1, w->g1, w->be1, w->w2, w->b2,
        w->g2, w->be2, d->eps);
    CK_LAUNCH(c, err, "dconv_rows");
    return SS_OK;
}

/* ---- the module's entry points (models/kernels.h) -------------------------------------- */

/* rows > 1 (items that are rows of x) is not taken here: rows_ok is NULL and the model
 * rearranges the rows first. */
static ss_status cu_c1g(void *vctx, float *x, int rows, const float *h, const float *w, const float *bias, int batch,
                        int ch, int hidden, int64_t len, const float *gamma, const float *beta, float eps, float *g,
                        ss_error *err)
{
    if (rows != 1)
        return fail(err, SS_E_INTERNAL, "cuda conv1x1_gn_glu_add: %d rows of items (1 expected)", rows);
    return cu_conv1x1_gn_glu_add(vctx, x, h, w, bias, batch, ch, hidden, len, gamma, beta, eps, g, err);
}

static const ht_conv1x1_gn_glu_add_k cu_c1g_k = {NULL, cu_c1g};
static const ht_dconv_rows_k cu_dconv_rows_k = {cu_dconv_rows_ok, cu_dconv_rows};

const void *ss_kernels_cuda_htdemucs(const char *name)
{
    if (strcmp(name, HT_K_CONV1X1_GN_GLU_ADD) == 0)
        return &cu_c1g_k;
    if (strcmp(name, HT_K_DCONV_ROWS) == 0)
        return &cu_dconv_rows_k;
    return NULL;
}

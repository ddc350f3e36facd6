/* metal_ops.c - the Metal backend's ops over the ss_mtl_rt interface
 * (metal_ops.h): argument blocks, grid sizes and the blocking of the
 * convolutions into im2col/col2im + gemm.  Contracts: src/backend.h. */
#include "metal_ops.h"

#include <string.h>

#include "../cpu/cpu_ops.h"

#define RT(ctx) ((ss_mtl_rt *)(ctx))
#define EW_MAX_GROUPS 4096

static ss_status launch(ss_mtl_rt *rt, int k, void *const *bufs, const ss_mtl_params *p, unsigned gx,
                        unsigned gy, unsigned gz, unsigned tx, unsigned ty, ss_error *err)
{
    if (gx == 0 || gy == 0 || gz == 0)
        return SS_OK;
    const unsigned groups[3] = {gx, gy, gz}, tg[3] = {tx, ty, 1};
    return rt->dispatch(rt, k, bufs, p, groups, tg, err);
}

/* a 1-D grid-stride kernel over p->n elements */
static ss_status ew(ss_mtl_rt *rt, int k, void *const *bufs, const ss_mtl_params *p, ss_error *err)
{
    if (p->n <= 0)
        return SS_OK;
    int64_t g = (p->n + SS_MTL_EW_THREADS - 1) / SS_MTL_EW_THREADS;
    if (g > EW_MAX_GROUPS)
        g = EW_MAX_GROUPS;
    return launch(rt, k, bufs, p, (unsigned)g, 1, 1, SS_MTL_EW_THREADS, 1, err);
}

#define BUFS(...) (void *const[]){__VA_ARGS__}
#define NB(p, fallback) ((void *)((p) ? (const void *)(p) : (const void *)(fallback)))

ss_status ss_mtl_fill(void *ctx, float *y, float v, size_t n, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)n;
    p.v = v;
    return ew(RT(ctx), SS_K_FILL, BUFS(y), &p, err);
}

ss_status ss_mtl_copy2d(void *ctx, float *dst, size_t dpitch, const float *src, size_t spitch, size_t rows,
                        size_t cols, ss_error *err)
{
    if (rows == 0 || cols == 0 || dst == src)
        return SS_OK;
    ss_mtl_params p = {0};
    p.n = (int64_t)(rows * cols);
    p.len = (int64_t)cols;
    p.ds[0] = (int64_t)dpitch;
    p.ss[0] = (int64_t)spitch;
    return ew(RT(ctx), SS_K_COPY2D, BUFS(dst, (void *)src), &p, err);
}

ss_status ss_mtl_copy4d(void *ctx, float *dst, const int64_t dstride[4], const float *src,
                        const int64_t sstride[4], const int64_t shape[4], ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = 1;
    for (int i = 0; i < 4; i++) {
        if (shape[i] <= 0)
            return SS_OK;
        p.n *= shape[i];
        p.ds[i] = dstride[i];
        p.ss[i] = sstride[i];
        p.shape[i] = shape[i];
    }
    return ew(RT(ctx), SS_K_COPY4D, BUFS(dst, (void *)src), &p, err);
}

ss_status ss_mtl_add(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)n;
    return ew(RT(ctx), SS_K_ADD, BUFS(y, (void *)a, (void *)b), &p, err);
}

ss_status ss_mtl_scale(void *ctx, float *y, const float *x, float alpha, size_t n, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)n;
    p.alpha = alpha;
    return ew(RT(ctx), SS_K_SCALE, BUFS(y, (void *)x), &p, err);
}

ss_status ss_mtl_channel_affine(void *ctx, float *y, const float *x, int batch, int ch, int64_t len,
                                const float *scale, const float *bias, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)batch * ch * len;
    p.len = len;
    p.ch = ch;
    p.has_s = scale != NULL;
    p.has_b = bias != NULL;
    return ew(RT(ctx), SS_K_CHANNEL_AFFINE, BUFS(y, (void *)x, NB(scale, x), NB(bias, x)), &p, err);
}

ss_status ss_mtl_row_affine(void *ctx, float *y, const float *x, int rows, int64_t len, const float *scale,
                            const float *shift, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)rows * len;
    p.len = len;
    return ew(RT(ctx), SS_K_ROW_AFFINE, BUFS(y, (void *)x, (void *)scale, (void *)shift), &p, err);
}

ss_status ss_mtl_gelu(void *ctx, float *y, const float *x, size_t n, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)n;
    return ew(RT(ctx), SS_K_GELU, BUFS(y, (void *)x), &p, err);
}

ss_status ss_mtl_mul(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)n;
    return ew(RT(ctx), SS_K_MUL, BUFS(y, (void *)a, (void *)b), &p, err);
}

ss_status ss_mtl_activate(void *ctx, float *y, const float *x, size_t n, ss_act act, float alpha, ss_error *err)
{
    if ((int)act < 0 || act >= SS_ACT_COUNT)
        return ss_fail(err, SS_E_INTERNAL, "mps: activate: unknown activation %d", (int)act);
    ss_mtl_params p = {0};
    p.n = (int64_t)n;
    p.mode = (int)act;
    p.alpha = alpha;
    return ew(RT(ctx), SS_K_ACTIVATE, BUFS(y, (void *)x), &p, err);
}

ss_status ss_mtl_rope(void *ctx, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                      const float *cs, ss_error *err)
{
    if (hd <= 0 || hd % 2 != 0 || heads < 0 || (int64_t)heads * hd > ld)
        return ss_fail(err, SS_E_INTERNAL, "mps: rope: %d heads of size %d in rows of %d (the size must be even)",
                       heads, hd, ld);
    if (batch <= 0 || seq <= 0 || heads == 0)
        return SS_OK;
    ss_mtl_params p = {0};
    p.ch = heads * (hd / 2);
    p.cols = hd / 2;
    p.len = seq;
    p.ld = ld;
    p.n = (int64_t)batch * seq * p.ch;
    return ew(RT(ctx), SS_K_ROPE, BUFS(y, (void *)x, (void *)cs), &p, err);
}

ss_status ss_mtl_glu(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)batch * ch * len;
    p.ch = ch;
    p.len = len;
    return ew(RT(ctx), SS_K_GLU, BUFS(y, (void *)x), &p, err);
}

/* one threadgroup of SS_MTL_RED_THREADS per row (fewer for short rows) */
static unsigned red_threads(int64_t len)
{
    unsigned t = 32;
    while (t < SS_MTL_RED_THREADS && (int64_t)t < len)
        t *= 2;
    return t;
}

ss_status ss_mtl_row_moments(void *ctx, float *mean, float *std, const float *x, int rows, int64_t len,
                             ss_error *err)
{
    ss_mtl_params p = {0};
    p.len = len;
    return launch(RT(ctx), SS_K_ROW_MOMENTS, BUFS(mean, std, (void *)x), &p, (unsigned)(rows > 0 ? rows : 0), 1, 1,
                  red_threads(len), 1, err);
}

ss_status ss_mtl_softmax(void *ctx, float *y, const float *x, int rows, int len, float scale, ss_error *err)
{
    ss_mtl_params p = {0};
    p.len = len;
    p.alpha = scale;
    if (len <= 0)
        return SS_OK;
    return launch(RT(ctx), SS_K_SOFTMAX, BUFS(y, (void *)x), &p, (unsigned)(rows > 0 ? rows : 0), 1, 1,
                  red_threads(len), 1, err);
}

ss_status ss_mtl_rms_norm(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                          ss_rms_form form, ss_error *err)
{
    if (rows <= 0 || dim <= 0)
        return SS_OK;
    ss_mtl_params p = {0};
    p.len = dim;
    p.eps = eps;
    p.mode = form == SS_RMS_L2;
    p.has_s = gamma != NULL;
    return launch(RT(ctx), SS_K_RMS_NORM, BUFS(y, (void *)x, NB(gamma, x)), &p, (unsigned)rows, 1, 1,
                  red_threads(dim), 1, err);
}

ss_status ss_mtl_layer_norm(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma,
                            const float *beta, float eps, ss_error *err)
{
    if (rows <= 0 || dim <= 0)
        return SS_OK;
    ss_mtl_params p = {0};
    p.len = dim;
    p.eps = eps;
    p.has_s = gamma != NULL;
    p.has_b = beta != NULL;
    return launch(RT(ctx), SS_K_LAYER_NORM, BUFS(y, (void *)x, NB(gamma, x), NB(beta, x)), &p, (unsigned)rows, 1,
                  1, red_threads(dim), 1, err);
}

ss_status ss_mtl_transpose(void *ctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err)
{
    if (batch <= 0 || rows <= 0 || cols <= 0)
        return SS_OK;
    ss_mtl_params p = {0};
    p.rows = rows;
    p.cols = cols;
    return launch(RT(ctx), SS_K_TRANSPOSE, BUFS(y, (void *)x), &p, (unsigned)((cols + 15) / 16),
                  (unsigned)((rows + 15) / 16), (unsigned)batch, SS_MTL_TR_TILE, SS_MTL_TR_TILE, err);
}

/* Group norm: partial sums per chunk of a group, mean, partial squared
 * deviations, rstd, then the affine map (five dispatches). */
#define GN_CHUNK 65536
ss_status ss_mtl_group_norm(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                            const float *gamma, const float *beta, float eps, ss_error *err)
{
    ss_mtl_rt *rt = RT(ctx);
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (groups <= 0 || ch % groups != 0)
        return ss_fail(err, SS_E_INTERNAL, "group_norm: %d channels in %d groups", ch, groups);
    int64_t gn = (int64_t)(ch / groups) * len, ng = (int64_t)batch * groups;
    int chunks = (int)((gn + GN_CHUNK - 1) / GN_CHUNK);
    float *stats = rt->scratch(rt, 1, (size_t)(2 * ng + ng * chunks), err);
    if (!stats)
        return SS_E_NOMEM;
    float *partial = stats + 2 * ng;
    ss_mtl_params p = {0};
    p.len = gn;
    p.chunks = chunks;
    p.eps = eps;
    unsigned t = red_threads(gn < GN_CHUNK ? gn : GN_CHUNK);
    for (int mode = 0; mode < 2; mode++) {
        p.mode = mode;
        ss_status st = launch(rt, SS_K_GN_PARTIAL, BUFS(partial, (void *)x, stats), &p, (unsigned)chunks,
                              (unsigned)ng, 1, t, 1, err);
        if (st == SS_OK)
            st = launch(rt, SS_K_GN_FINALIZE, BUFS(stats, partial), &p, (unsigned)ng, 1, 1, red_threads(chunks), 1,
                        err);
        if (st != SS_OK)
            return st;
    }
    ss_mtl_params a = {0};
    a.n = (int64_t)batch * ch * len;
    a.ld = len;
    a.ch = ch;
    a.groups = groups;
    a.has_s = gamma != NULL;
    a.has_b = beta != NULL;
    return ew(rt, SS_K_GN_APPLY, BUFS(y, (void *)x, stats, NB(gamma, x), NB(beta, x)), &a, err);
}

/* one (possibly batched) product on the tiled kernel */
static ss_status gemm_raw(ss_mtl_rt *rt, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc, int batch, int64_t sa, int64_t sb,
                          int64_t sc, ss_error *err)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return SS_OK;
    ss_mtl_params p = {0};
    p.ta = ta;
    p.tb = tb;
    p.m = m;
    p.nn = n;
    p.k = k > 0 ? k : 0;
    p.alpha = alpha;
    p.beta = beta;
    p.lda = lda;
    p.ldb = ldb;
    p.ldc = ldc;
    p.sa = batch > 1 ? sa : 0;
    p.sb = batch > 1 ? sb : 0;
    p.sc = batch > 1 ? sc : 0;
    p.prec = rt->prec;
    return launch(rt, SS_K_GEMM, BUFS((void *)a, (void *)b, c), &p, (unsigned)((n + 31) / 32),
                  (unsigned)((m + 31) / 32), (unsigned)batch, SS_MTL_GEMM_THREADS, SS_MTL_GEMM_THREADS, err);
}

ss_status ss_mtl_gemm(void *ctx, const ss_gemm_desc *d, const float *a, const float *b, float *c, ss_error *err)
{
    return gemm_raw(RT(ctx), d->trans_a, d->trans_b, d->m, d->n, d->k, d->alpha, a, d->lda, b, d->ldb, d->beta, c,
                    d->ldc, d->batch, d->stride_a, d->stride_b, d->stride_c, err);
}

static ss_status bias_fill(ss_mtl_rt *rt, float *y, const float *bias, int batch, int ch, int64_t len,
                           ss_error *err)
{
    ss_mtl_params p = {0};
    p.n = (int64_t)batch * ch * len;
    p.len = len;
    p.ch = ch;
    p.has_b = bias != NULL;
    return ew(rt, SS_K_BIAS_FILL, BUFS(y, NB(bias, y)), &p, err);
}

ss_status ss_mtl_conv2d(void *ctx, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                        float *y, ss_error *err)
{
    ss_mtl_rt *rt = RT(ctx);
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    if (d->batch <= 0 || d->cout <= 0 || oh <= 0 || ow <= 0)
        return SS_OK;
    int64_t npos = (int64_t)oh * ow, kdim = (int64_t)d->cin * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * d->h * d->w, out_size = (int64_t)d->cout * npos;
    float beta = 0.0f;
    ss_status st = SS_OK;
    if (bias) {
        if ((st = bias_fill(rt, y, bias, d->batch, d->cout, npos, err)) != SS_OK)
            return st;
        beta = 1.0f;
    }
    if (d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0)
        /* pointwise: y[b] [cout, npos] = w [cout, cin] @ x[b] [cin, npos], all items at once */
        return gemm_raw(rt, 0, 0, d->cout, (int)npos, d->cin, 1.0f, w, d->cin, x, (int)npos, beta, y, (int)npos,
                        d->batch, 0, in_size, out_size, err);
    int64_t budget = (int64_t)rt->col_floats / kdim;
    if (budget < 256)
        budget = 256;
    ss_mtl_params p = {0};
    p.cin = d->cin, p.h = d->h, p.w = d->w, p.kh = d->kh, p.kw = d->kw, p.sh = d->sh, p.sw = d->sw;
    p.ph = d->ph, p.pw = d->pw, p.dh = d->dh, p.dw = d->dw, p.oh = oh, p.ow = ow;
    if (budget >= npos) {
        /* whole items per block: col [kdim, items * npos], one batched gemm */
        int64_t ipb = budget / npos;
        if (ipb > d->batch)
            ipb = d->batch;
        float *col = rt->scratch(rt, 0, (size_t)(kdim * ipb * npos), err);
        if (!col)
            return SS_E_NOMEM;
        for (int64_t b0 = 0; b0 < d->batch && st == SS_OK; b0 += ipb) {
            int64_t nb = d->batch - b0 < ipb ? d->batch - b0 : ipb;
            p.p0 = b0 * npos;
            p.ncols = (int)(nb * npos);
            p.n = kdim * nb * npos;
            st = ew(rt, SS_K_IM2COL, BUFS(col, (void *)x), &p, err);
            if (st == SS_OK)
                st = gemm_raw(rt, 0, 0, d->cout, (int)npos, (int)kdim, 1.0f, w, (int)kdim, col, (int)(nb * npos), beta,
                              y + b0 * out_size, (int)npos, (int)nb, 0, npos, out_size, err);
        }
        return st;
    }
    float *col = rt->scratch(rt, 0, (size_t)(kdim * budget), err);
    if (!col)
        return SS_E_NOMEM;
    for (int64_t b = 0; b < d->batch && st == SS_OK; b++)
        for (int64_t q0 = 0; q0 < npos && st == SS_OK; q0 += budget) {
            int64_t nc = npos - q0 < budget ? npos - q0 : budget;
            p.p0 = b * npos + q0;
            p.ncols = (int)nc;
            p.n = kdim * nc;
            st = ew(rt, SS_K_IM2COL, BUFS(col, (void *)x), &p, err);
            if (st == SS_OK)
                st = gemm_raw(rt, 0, 0, d->cout, (int)nc, (int)kdim, 1.0f, w, (int)kdim, col, (int)nc, beta,
                              y + b * out_size + q0, (int)npos, 1, 0, 0, 0, err);
        }
    return st;
}

ss_status ss_mtl_conv_transpose2d(void *ctx, const ss_convt2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y, ss_error *err)
{
    ss_mtl_rt *rt = RT(ctx);
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    if (d->batch <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0)
        return SS_OK;
    int64_t npos = (int64_t)d->h * d->w, opos = (int64_t)oh * ow, kdim = (int64_t)d->cout * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * npos, out_size = (int64_t)d->cout * opos;
    ss_status st = bias_fill(rt, y, bias, d->batch, d->cout, opos, err);
    if (st != SS_OK)
        return st;
    int64_t budget = (int64_t)rt->col_floats / kdim;
    if (budget < 256)
        budget = 256;
    ss_mtl_params p = {0};
    p.cout = d->cout, p.h = d->h, p.w = d->w, p.kh = d->kh, p.kw = d->kw, p.sh = d->sh, p.sw = d->sw;
    p.oh = oh, p.ow = ow;
    if (budget >= npos) {
        int64_t ipb = budget / npos;
        if (ipb > d->batch)
            ipb = d->batch;
        float *col = rt->scratch(rt, 0, (size_t)(kdim * ipb * npos), err);
        if (!col)
            return SS_E_NOMEM;
        for (int64_t b0 = 0; b0 < d->batch && st == SS_OK; b0 += ipb) {
            int64_t nb = d->batch - b0 < ipb ? d->batch - b0 : ipb;
            /* col [kdim, nb * npos]: item b at columns b * npos (w is [cin, kdim]) */
            st = gemm_raw(rt, 1, 0, (int)kdim, (int)npos, d->cin, 1.0f, w, (int)kdim, x + b0 * in_size, (int)npos,
                          0.0f, col, (int)(nb * npos), (int)nb, 0, in_size, npos, err);
            p.p0 = 0;
            p.ncols = (int)npos;
            p.ld = nb * npos;
            p.item_off = npos;
            p.n = nb * out_size;
            if (st == SS_OK)
                st = ew(rt, SS_K_COL2IM, BUFS(y + b0 * out_size, col), &p, err);
        }
        return st;
    }
    float *col = rt->scratch(rt, 0, (size_t)(kdim * budget), err);
    if (!col)
        return SS_E_NOMEM;
    for (int64_t b = 0; b < d->batch && st == SS_OK; b++)
        for (int64_t q0 = 0; q0 < npos && st == SS_OK; q0 += budget) {
            int64_t nc = npos - q0 < budget ? npos - q0 : budget;
            st = gemm_raw(rt, 1, 0, (int)kdim, (int)nc, d->cin, 1.0f, w, (int)kdim, x + b * in_size + q0, (int)npos,
                          0.0f, col, (int)nc, 1, 0, 0, 0, err);
            p.p0 = q0;
            p.ncols = (int)nc;
            p.ld = nc;
            p.item_off = 0;
            p.n = out_size;
            if (st == SS_OK)
                st = ew(rt, SS_K_COL2IM, BUFS(y + b * out_size, col), &p, err);
        }
    return st;
}

ss_status ss_mtl_stft(void *ctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err)
{
    ss_mtl_rt *rt = RT(ctx);
    ss_status st = rt->finish(rt, err);
    if (st == SS_OK && (st = ss_cpu_stft(rt->pool, d, x, spec)) != SS_OK)
        ss_fail(err, st, "stft: CPU kernel failed");
    return st;
}

ss_status ss_mtl_istft(void *ctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err)
{
    ss_mtl_rt *rt = RT(ctx);
    ss_status st = rt->finish(rt, err);
    if (st == SS_OK && (st = ss_cpu_istft(rt->pool, d, spec, x)) != SS_OK)
        ss_fail(err, st, "istft: CPU kernel failed");
    return st;
}

/* The GRU (ss_gru): gx = x W_ih^T for every step into the scratch, one ss_gru_step dispatch per
 * step (step t reads y's row t - 1, h at step 0: no dispatch writes what another reads), then
 * the final state copied from y's last row. */
#define GRU_UNITS 8     /* simdgroups (hidden units) per threadgroup */
ss_status ss_mtl_gru(void *ctx, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, float *h, float *y, float *scratch, ss_error *err)
{
    ss_mtl_rt *rt = RT(ctx);
    if (d->batch < 1 || d->seq < 0 || d->in < 1 || d->hidden < 1)
        return ss_fail(err, SS_E_INTERNAL, "mps: gru: batch %d, %d steps of %d inputs, hidden size %d", d->batch,
                       d->seq, d->in, d->hidden);
    if (d->seq == 0)
        return SS_OK;
    int H = d->hidden, g3 = 3 * H;
    int64_t rows = (int64_t)d->batch * d->seq;
    if (rows > 0x7fffffff)
        return ss_fail(err, SS_E_INTERNAL, "mps: gru: %lld steps in all", (long long)rows);
    ss_status st = gemm_raw(rt, 0, 1, (int)rows, g3, d->in, 1.0f, x, d->in, w_ih, d->in, 0.0f, scratch, g3, 1, 0, 0,
                            0, err);
    ss_mtl_params p = {0};
    p.len = H;
    p.has_s = b_ih != NULL;
    p.has_b = b_hh != NULL;
    p.sa = (int64_t)d->seq * H;
    p.sc = (int64_t)d->seq * g3;
    for (int t = 0; t < d->seq && st == SS_OK; t++) {
        const float *hp = t ? y + (int64_t)(t - 1) * H : h;
        p.sb = t ? p.sa : H;
        st = launch(rt, SS_K_GRU_STEP,
                    BUFS(y + (int64_t)t * H, (void *)hp, scratch + (int64_t)t * g3, (void *)w_hh, NB(b_ih, w_hh),
                         NB(b_hh, w_hh)),
                    &p, (unsigned)((H + GRU_UNITS - 1) / GRU_UNITS), (unsigned)d->batch, 1, 32 * GRU_UNITS, 1, err);
    }
    if (st != SS_OK)
        return st;
    return ss_mtl_copy2d(ctx, h, (size_t)H, y + (int64_t)(d->seq - 1) * H, (size_t)p.sa, (size_t)d->batch, (size_t)H,
                         err);
}

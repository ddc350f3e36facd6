/* conv.cu - the CUDA backend's 2-d convolutions.  conv2d takes, in order: the direct kernel for
 * 1-D convolutions along w with few output channels (conv_direct_ok), Winograd for 3x3 stride-1
 * convolutions (winograd.cu), one strided-batched GEMM for pointwise ones, else im2col + GEMM in
 * chunks of CHUNK_FLOATS; the bias is a pass after the product where the kernel does not add it.
 * conv_transpose2d is a GEMM into columns, then a col2im gather (of a window of the output for
 * conv_transpose2d_crop).
 */

#include "cuda_internal.h"

/* ---- convolutions ------------------------------------------------------------------- */

typedef struct conv_geom {
    int cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
} conv_geom;

/* col [nb, kdim, ncols] for output positions [p0, p0 + ncols) of items x [nb, cin, h, w] */
__global__ void k_im2col(float *col, const float *x, conv_geom g, int nb, int64_t p0, int64_t ncols)
{
    int64_t kdim = (int64_t)g.cin * g.kh * g.kw;
    size_t n = (size_t)nb * kdim * ncols;
    GRID_LOOP(i, n) {
        int64_t q = (int64_t)(i % (size_t)ncols), r = (int64_t)((i / (size_t)ncols) % (size_t)kdim);
        int64_t b = (int64_t)(i / ((size_t)ncols * kdim));
        int kj = (int)(r % g.kw), ki = (int)((r / g.kw) % g.kh), ci = (int)(r / ((int64_t)g.kw * g.kh));
        int64_t p = p0 + q;
        int oy = (int)(p / g.ow), ox = (int)(p % g.ow);
        int iy = oy * g.sh - g.ph + ki * g.dh, ix = ox * g.sw - g.pw + kj * g.dw;
        float v = 0.0f;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
            v = x[((b * g.cin + ci) * (int64_t)g.h + iy) * g.w + ix];
        col[i] = v;
    }
}

/* The same by rows: row (b, r) of col is one (item, channel, tap); its output
 * positions [p0, p0 + ncols) < 2^31 take a 32-bit division each. */
__global__ void k_im2col_rows(float *col, const float *x, conv_geom g, int kdim, int p0, int ncols)
{
    unsigned b = blockIdx.x / (unsigned)kdim, r = blockIdx.x % (unsigned)kdim;
    int kj = (int)(r % (unsigned)g.kw), ki = (int)((r / (unsigned)g.kw) % (unsigned)g.kh),
        ci = (int)(r / (unsigned)(g.kw * g.kh));
    const float *xb = x + ((size_t)b * g.cin + ci) * (size_t)g.h * (size_t)g.w;
    float *cr = col + (size_t)blockIdx.x * (size_t)ncols;
    int yoff = ki * g.dh - g.ph, xoff = kj * g.dw - g.pw;
    for (int q = blockIdx.y * blockDim.x + threadIdx.x; q < ncols; q += gridDim.y * blockDim.x) {
        int p = p0 + q, oy = p / g.ow, ox = p - oy * g.ow;
        int iy = oy * g.sh + yoff, ix = ox * g.sw + xoff;
        cr[q] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? xb[(size_t)iy * g.w + ix] : 0.0f;
    }
}

/* col [nb, kdim, ncols] from x, by rows when the sizes allow it. */
static void im2col(cuda_ctx *c, float *col, const float *x, const conv_geom &g, int nb, int64_t kdim, int64_t p0,
                   int64_t ncols)
{
    size_t rows = (size_t)nb * (size_t)kdim;
    if (rows <= 0x7fffffffu && p0 + ncols <= 0x7fffffff && kdim <= 0x7fffffff)
        LAUNCH_ROWS(k_im2col_rows, rows, ncols, col, x, g, (int)kdim, (int)p0, (int)ncols);
    else
        LAUNCH(k_im2col, rows * (size_t)ncols, col, x, g, nb, p0, ncols);
}

/* Direct 1-D convolution along w for few output channels (HTDemucs's DConv
 * compresses channels 8x in its first conv): y [nb, cout, h, ow] from
 * x [nb, cin, h, w] and w [cout, cin, 1, kw], stride 1, padding pw, dilation dw,
 * each row of h on its own (kh = 1, no padding along h).  Reads x once per
 * DC_CO output channels instead of im2col's kw copies and a GEMM with few
 * rows.  Block: DC_TPB * P outputs of one row for DC_CO output channels and
 * one slice of the input channels, taken DC_CI input channels at a time: their
 * input span and weights are copied to shared memory asynchronously (cp.async),
 * the next chunk while the current one is summed (two buffers); each thread
 * keeps P outputs x DC_CO sums (fp32 multiply-adds).  With several slices
 * (small grids: deep layers) each writes its partial sums to
 * part [slices, nb, cout, h, ow] and k_sum_slices adds them in slice order with
 * the bias (deterministic). */
#define DC_TPB 128
#define DC_P_MAX 4
#define DC_CO 8
#define DC_CI 8
#define DC_COUT_MAX 64
#define DC_KW_MAX 16
#define DC_SPAN_MAX 64    /* (kw - 1) * dw: two buffers of shared memory <= 45 KiB */

/* Start copying chunk [ci0, ci0 + nci) of the input span and its weights into xs, ws. */
__device__ __forceinline__ void dc_stage(float *xs, float *ws, const float *xb, size_t cs, const float *w, int ci0,
                                         int nci, int cin, int cout, int co0, int kw, int span, int in0, int wd)
{
    for (int ci = 0; ci < nci; ci++) {
        const float *xr = xb + (size_t)(ci0 + ci) * cs;
        float *dst = xs + ci * span;
        for (int e = threadIdx.x; e < span; e += DC_TPB) {
            int ix = in0 + e;
            if (ix >= 0 && ix < wd)
                __pipeline_memcpy_async(dst + e, xr + ix, sizeof(float));
            else
                dst[e] = 0.0f;
        }
    }
    for (int e = threadIdx.x; e < DC_CI * kw * DC_CO; e += DC_TPB) {
        int o = e % DC_CO, r = e / DC_CO, ci = r / kw;
        if (co0 + o < cout && ci < nci)
            __pipeline_memcpy_async(ws + e, w + ((size_t)(co0 + o) * cin + ci0 + ci) * kw + (r - ci * kw),
                                    sizeof(float));
        else
            ws[e] = 0.0f;
    }
    __pipeline_commit();
}

template <int P>
__global__ void __launch_bounds__(DC_TPB) k_conv1d_direct(float *y, const float *x, const float *w,
                                                          const float *bias, int cin, int h, int wd, int cout, int kw,
                                                          int pw, int dw, int ow, int co_blocks, int per_slice)
{
    extern __shared__ float4 sm4[];
    int span = DC_TPB * P + (kw - 1) * dw, xsz = DC_CI * span, wsz = DC_CI * kw * DC_CO;
    float *sm = (float *)sm4;                         /* per buffer: xs [DC_CI][span], ws [DC_CI][kw][DC_CO] */
    int t0 = blockIdx.x * DC_TPB * P, row = blockIdx.y;
    int co0 = (int)(blockIdx.z % (unsigned)co_blocks) * DC_CO, slice = (int)(blockIdx.z / (unsigned)co_blocks);
    int b = row / h, yy = row - b * h, c_lo = slice * per_slice;
    int c_hi = c_lo + per_slice < cin ? c_lo + per_slice : cin;
    size_t cs = (size_t)h * wd;                       /* channel stride of x */
    const float *xb = x + (size_t)b * cin * cs + (size_t)yy * wd;
    float acc[P][DC_CO];
#pragma unroll
    for (int p = 0; p < P; p++)
#pragma unroll
        for (int o = 0; o < DC_CO; o++)
            acc[p][o] = 0.0f;
    int nch = (c_hi - c_lo + DC_CI - 1) / DC_CI;
    if (nch > 0)
        dc_stage(sm, sm + xsz, xb, cs, w, c_lo, c_hi - c_lo < DC_CI ? c_hi - c_lo : DC_CI, cin, cout, co0, kw, span,
                 t0 - pw, wd);
    for (int q = 0; q < nch; q++) {
        int ci0 = c_lo + q * DC_CI, nci = c_hi - ci0 < DC_CI ? c_hi - ci0 : DC_CI;
        if (q + 1 < nch) {                            /* next chunk into the other buffer */
            int n1 = c_hi - ci0 - DC_CI < DC_CI ? c_hi - ci0 - DC_CI : DC_CI;
            float *nb_ = sm + ((q + 1) & 1) * (xsz + wsz);
            dc_stage(nb_, nb_ + xsz, xb, cs, w, ci0 + DC_CI, n1, cin, cout, co0, kw, span, t0 - pw, wd);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const float *xs = sm + (q & 1) * (xsz + wsz), *ws = xs + xsz;
        for (int ci = 0; ci < nci; ci++)
            for (int k = 0; k < kw; k++) {
                const float4 *wk = (const float4 *)(ws + (ci * kw + k) * DC_CO);
                float4 w0 = wk[0], w1 = wk[1];
                float wv[DC_CO] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
                const float *xr = xs + ci * span + threadIdx.x + k * dw;
#pragma unroll
                for (int p = 0; p < P; p++) {
                    float xv = xr[p * DC_TPB];
#pragma unroll
                    for (int o = 0; o < DC_CO; o++)
                        acc[p][o] += wv[o] * xv;
                }
            }
        __syncthreads();                              /* before this buffer is staged again */
    }
    size_t out_size = (size_t)cout * h * ow, all = (size_t)(gridDim.y / h) * out_size;
    float *yo = y + (size_t)slice * all;              /* this slice's part (slice 0: y) */
#pragma unroll
    for (int p = 0; p < P; p++) {
        int t = t0 + threadIdx.x + p * DC_TPB;
        if (t >= ow)
            continue;
#pragma unroll
        for (int o = 0; o < DC_CO; o++)
            if (co0 + o < cout)
                yo[(((size_t)b * cout + co0 + o) * h + yy) * ow + t] = acc[p][o] + (bias ? bias[co0 + o] : 0.0f);
    }
}

/* y [n] = bias[channel] + the sum of part [slices, n] in slice order. */
__global__ void k_sum_slices(float *y, const float *part, int slices, unsigned n, unsigned len, int cout,
                             const float *bias)
{
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = part[i];
        for (int s = 1; s < slices; s++)
            v += part[(size_t)s * n + i];
        y[i] = v + (bias ? bias[(i / len) % (unsigned)cout] : 0.0f);
    }
}

/* Whether conv2d d runs as k_conv1d_direct. */
static int conv_direct_ok(const ss_conv2d_desc *d, int ow)
{
    return d->kh == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->kw > 1 && d->kw <= DC_KW_MAX &&
           d->cout <= DC_COUT_MAX && (int64_t)(d->kw - 1) * d->dw <= DC_SPAN_MAX &&
           (int64_t)d->batch * d->h <= 65535 && (int64_t)d->batch * d->cout * d->h * ow <= 0x3fffffff;
}

static ss_status conv_direct(cuda_ctx *c, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                             float *y, int ow, ss_error *err)
{
    /* P outputs per thread: one tile per row for rows up to DC_P_MAX * DC_TPB */
    int P = (ow + DC_TPB - 1) / DC_TPB;
    if (P > DC_P_MAX) P = DC_P_MAX;
    int tile = DC_TPB * P, span = tile + (d->kw - 1) * d->dw, co_blocks = (d->cout + DC_CO - 1) / DC_CO;
    size_t smem = 2 * ((size_t)DC_CI * span + (size_t)DC_CI * d->kw * DC_CO) * sizeof(float);
    unsigned tiles = (unsigned)((ow + tile - 1) / tile), rows = (unsigned)(d->batch * d->h);
    /* few blocks (deep layers: long input rows, few outputs): split the input
     * channels into slices of whole DC_CI chunks until about 4 blocks per SM */
    int64_t base = (int64_t)tiles * rows * co_blocks, chunks = (d->cin + DC_CI - 1) / DC_CI;
    int64_t want = (4 * (int64_t)c->n_sm + base - 1) / base;
    if (want > chunks) want = chunks;
    if (want < 1) want = 1;
    int per_slice = (int)((chunks + want - 1) / want) * DC_CI, slices = (d->cin + per_slice - 1) / per_slice;
    size_t n = (size_t)d->batch * d->cout * d->h * ow;
    float *part = y;
    if (slices > 1) {
        part = (float *)scratch(c, (size_t)slices * n * sizeof(float), err);
        if (!part) return err->code;
    }
    dim3 grid(tiles, rows, (unsigned)(co_blocks * slices));
    const float *b0 = slices > 1 ? NULL : bias;
#define DC_LAUNCH(PP)                                                                                             \
    k_conv1d_direct<PP><<<grid, DC_TPB, smem, c->stream>>>(part, x, w, b0, d->cin, d->h, d->w, d->cout, d->kw, d->pw, \
                                                           d->dw, ow, co_blocks, per_slice)
    switch (P) {
    case 1: DC_LAUNCH(1); break;
    case 2: DC_LAUNCH(2); break;
    case 3: DC_LAUNCH(3); break;
    default: DC_LAUNCH(4); break;
    }
#undef DC_LAUNCH
    if (slices > 1)
        LAUNCH(k_sum_slices, n, y, part, slices, (unsigned)n, (unsigned)(d->h * ow), d->cout, bias);
    CK_LAUNCH(c, err, "conv2d (direct)");
    return SS_OK;
}

ss_status cu_conv2d(void *vctx, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                    float *y, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    if (d->batch <= 0 || d->cout <= 0 || oh <= 0 || ow <= 0)
        return SS_OK;
    int64_t npos = (int64_t)oh * ow, kdim = (int64_t)d->cin * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * d->h * d->w, out_size = (int64_t)d->cout * npos;
    int pointwise = d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
    if (conv_direct_ok(d, ow))
        return conv_direct(c, d, x, w, bias, y, ow, err);
    if (wino_ok(d))
        return conv_wino(c, d, x, w, bias, y, err);
    if (pointwise) {
        if (gemm_rm(c, 0, 0, d->cout, (int)npos, d->cin, 1.0f, w, d->cin, 0, x, (int)npos, in_size, 0.0f, y,
                    (int)npos, out_size, d->batch, 0, err) != SS_OK)
            return err->code;
    } else {
        conv_geom g = {d->cin, d->h, d->w, d->kh, d->kw, d->sh, d->sw, d->ph, d->pw, d->dh, d->dw, oh, ow};
        int64_t per_item = kdim * npos;
        if ((size_t)per_item <= CHUNK_FLOATS) {
            int nb = (int)(CHUNK_FLOATS / (size_t)per_item);
            if (nb > d->batch) nb = d->batch;
            float *col = (float *)scratch(c, (size_t)nb * per_item * sizeof(float), err);
            if (!col) return err->code;
            for (int b0 = 0; b0 < d->batch; b0 += nb) {
                int cnt = d->batch - b0 < nb ? d->batch - b0 : nb;
                im2col(c, col, x + b0 * in_size, g, cnt, kdim, 0, npos);
                if (gemm_rm(c, 0, 0, d->cout, (int)npos, (int)kdim, 1.0f, w, (int)kdim, 0, col, (int)npos, per_item,
                            0.0f, y + b0 * out_size, (int)npos, out_size, cnt, 0, err) != SS_OK)
                    return err->code;
            }
        } else {
            int64_t block = (int64_t)(CHUNK_FLOATS / (size_t)kdim);
            if (block < 1) block = 1;
            float *col = (float *)scratch(c, (size_t)kdim * block * sizeof(float), err);
            if (!col) return err->code;
            for (int b = 0; b < d->batch; b++)
                for (int64_t p0 = 0; p0 < npos; p0 += block) {
                    int64_t nc = npos - p0 < block ? npos - p0 : block;
                    im2col(c, col, x + b * in_size, g, 1, kdim, p0, nc);
                    if (gemm_rm(c, 0, 0, d->cout, (int)nc, (int)kdim, 1.0f, w, (int)kdim, 0, col, (int)nc, 0, 0.0f,
                                y + b * out_size + p0, (int)npos, 0, 1, 0, err) != SS_OK)
                        return err->code;
                }
        }
    }
    CK_LAUNCH(c, err, "conv2d");
    if (bias)
        return cu_channel_affine(c, y, y, d->batch, d->cout, npos, NULL, bias, err);
    return SS_OK;
}

/* y [nb, cout, win.oh, win.ow] = the window win of bias + gather of col [nb,
 * cout*kh*kw, h*w] (the full output [oh, ow] has oh = (h-1) sh + kh rows),
 * GELU'd when win.gelu (as k_gelu would after it) */
template <typename I>   /* index type: unsigned when n < 2^31 (cheaper division) */
__global__ void k_col2im(float *y, const float *col, const float *bias, int nb, int cout, int h, int w, int kh,
                         int kw, int sh, int sw, ss_convt_crop win)
{
    I n = (I)nb * (I)cout * (I)win.oh * (I)win.ow;
    int64_t npos = (int64_t)h * w;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I t = i / (I)win.ow;
        int ox = win.w0 + (int)(i - t * (I)win.ow), oy = win.h0 + (int)(t % (I)win.oh);
        I bc = t / (I)win.oh;
        int co = (int)(bc % (I)cout);
        int64_t b = (int64_t)(bc / (I)cout);
        float v = bias ? bias[co] : 0.0f;
        const float *cb = col + (b * cout + co) * (int64_t)kh * kw * npos;
        for (int ki = oy % sh; ki < kh; ki += sh) {
            int iy = (oy - ki) / sh;
            if (iy < 0) break;
            if (iy >= h) continue;
            for (int kj = ox % sw; kj < kw; kj += sw) {
                int ix = (ox - kj) / sw;
                if (ix < 0) break;
                if (ix >= w) continue;
                v += cb[((int64_t)ki * kw + kj) * npos + (int64_t)iy * w + ix];
            }
        }
        y[i] = win.gelu ? gelu_f(v) : v;
    }
}

/* k_col2im by rows of the window (one row (b, co, oy) per blockIdx.x, its
 * taps along y worked out once per thread; per element one division by sw):
 * the same sums in the same order (bias, then ki and kj ascending). */
__global__ void k_col2im_rows(float *y, const float *col, const float *bias, int cout, int h, int w, int kh, int kw,
                              int sh, int sw, ss_convt_crop win)
{
    unsigned row = blockIdx.x, bc = row / (unsigned)win.oh;
    int oy = win.h0 + (int)(row - bc * (unsigned)win.oh), co = (int)(bc % (unsigned)cout);
    int64_t npos = (int64_t)h * w;
    const float *cb = col + (int64_t)bc * kh * kw * npos;      /* bc = b * cout + co */
    float bv = bias ? bias[co] : 0.0f, *yr = y + (size_t)row * (size_t)win.ow;
    int ry = oy % sh, qy = oy / sh;
    ROW_LOOP(j, win.ow) {
        int ox = win.w0 + (int)j, rx = ox % sw, qx = ox / sw;
        float v = bv;
        for (int ki = ry, iy = qy; ki < kh && iy >= 0; ki += sh, iy--) {
            if (iy >= h)
                continue;
            const float *cr = cb + (int64_t)ki * kw * npos + (int64_t)iy * w;
            for (int kj = rx, ix = qx; kj < kw && ix >= 0; kj += sw, ix--)
                if (ix < w)
                    v += cr[(int64_t)kj * npos + ix];
        }
        yr[j] = win.gelu ? gelu_f(v) : v;
    }
}

/* y = the window c of the transposed convolution d (the whole output when c
 * is NULL): per chunk of items col = w^T x, then k_col2im gathers the window. */
static ss_status convt(cuda_ctx *c, const ss_convt2d_desc *d, const ss_convt_crop *cw, const float *x,
                       const float *w, const float *bias, float *y, ss_error *err)
{
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    if (d->batch <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0)
        return SS_OK;
    ss_convt_crop win = cw ? *cw : ss_convt_crop{0, 0, oh, ow, 0};
    int64_t npos = (int64_t)d->h * d->w, kdim = (int64_t)d->cout * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * npos, out_size = (int64_t)d->cout * win.oh * win.ow, per_item = kdim * npos;
    int nb = (size_t)per_item <= CHUNK_FLOATS ? (int)(CHUNK_FLOATS / (size_t)per_item) : 1;
    if (nb > d->batch) nb = d->batch;
    float *col = (float *)scratch(c, (size_t)nb * per_item * sizeof(float), err);
    if (!col) return err->code;
    for (int b0 = 0; b0 < d->batch; b0 += nb) {
        int cnt = d->batch - b0 < nb ? d->batch - b0 : nb;
        /* col[b] [kdim, npos] = w^T (w [cin, kdim]) @ x[b] [cin, npos] */
        if (gemm_rm(c, 1, 0, (int)kdim, (int)npos, d->cin, 1.0f, w, (int)kdim, 0, x + b0 * in_size, (int)npos,
                    in_size, 0.0f, col, (int)npos, per_item, cnt, 0, err) != SS_OK)
            return err->code;
        size_t n = (size_t)cnt * out_size, rows = (size_t)cnt * d->cout * win.oh;
        if (use_rows(rows, win.ow))
            LAUNCH_ROWS(k_col2im_rows, rows, win.ow, y + b0 * out_size, col, bias, d->cout, d->h, d->w, d->kh, d->kw,
                        d->sh, d->sw, win);
        else if (n < 0x80000000u)
            LAUNCH(k_col2im<unsigned>, n, y + b0 * out_size, col, bias, cnt, d->cout, d->h, d->w, d->kh, d->kw, d->sh,
                   d->sw, win);
        else
            LAUNCH(k_col2im<size_t>, n, y + b0 * out_size, col, bias, cnt, d->cout, d->h, d->w, d->kh, d->kw, d->sh,
                   d->sw, win);
    }
    CK_LAUNCH(c, err, "conv_transpose2d");
    return SS_OK;
}

ss_status cu_conv_transpose2d(void *vctx, const ss_convt2d_desc *d, const float *x, const float *w,
                              const float *bias, float *y, ss_error *err)
{
    return convt((cuda_ctx *)vctx, d, NULL, x, w, bias, y, err);
}

/* The window (the wrapper checked it lies in the output) without the full output. */
ss_status cu_conv_transpose2d_crop(void *vctx, const ss_convt2d_desc *d, const ss_convt_crop *cw,
                                   const float *x, const float *w, const float *bias, float *y, ss_error *err)
{
    return convt((cuda_ctx *)vctx, d, cw, x, w, bias, y, err);
}

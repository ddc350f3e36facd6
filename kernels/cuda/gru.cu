/* gru.cu - the GRU layer (ss_gru in backend.h, ss_gru_desc in ops.h) on the device.
 *
 * The input projection of every step is one product (cuBLAS, gemm_rm): gx [batch * seq, 3H] =
 * x W_ih^T, into the scratch.  Then one launch per step: a warp per hidden unit and batch item
 * takes the three dot products of W_hh's rows r, z, n with the previous state (lanes along the
 * row, coalesced, a warp sum), and its lane 0 the gates, as the CPU computes them (the biases
 * added to each projection, sigmoid through expf, tanhf) into y.  The state of step t is y's
 * row t - 1 (h at step 0), so no launch writes what another reads; the final state is copied
 * from y's last row at the end.  Everything is queued on the stream, so the op records into a
 * graph.  Differences to the CPU: the order of the dot products' sums and the exponentials
 * (relative 1e-6 per step). */

#include "cuda_internal.h"

#define GRU_WARPS 8     /* hidden units per block */

/* y_t (b, j) for the units j of this block and item b = blockIdx.y; hp: the previous state of
 * item b at hp + b * hp_stride, gx: the item's projection at gx + b * gx_stride */
__global__ void k_gru_step(float *y, int64_t y_stride, const float *hp, int64_t hp_stride, const float *gx,
                           int64_t gx_stride, const float *w_hh, const float *b_ih, const float *b_hh, int H)
{
    int j = blockIdx.x * GRU_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (j >= H)
        return;                                   /* the whole warp: j is the warp's */
    const float *h = hp + (int64_t)blockIdx.y * hp_stride;
    const float *wr = w_hh + (int64_t)j * H, *wz = wr + (int64_t)H * H, *wn = wz + (int64_t)H * H;
    float sr = 0.0f, sz = 0.0f, sn = 0.0f;
    for (int i = lane; i < H; i += 32) {
        float hv = h[i];
        sr = fmaf(wr[i], hv, sr);
        sz = fmaf(wz[i], hv, sz);
        sn = fmaf(wn[i], hv, sn);
    }
    sr = warp_sum(sr);
    sz = warp_sum(sz);
    sn = warp_sum(sn);
    if (lane == 0) {
        const float *g = gx + (int64_t)blockIdx.y * gx_stride;
        float xr = g[j], xz = g[H + j], xn = g[2 * H + j];
        if (b_ih)
            xr += b_ih[j], xz += b_ih[H + j], xn += b_ih[2 * H + j];
        if (b_hh)
            sr += b_hh[j], sz += b_hh[H + j], sn += b_hh[2 * H + j];
        float r = 1.0f / (1.0f + expf(-(xr + sr)));
        float z = 1.0f / (1.0f + expf(-(xz + sz)));
        float n = tanhf(xn + r * sn);
        y[(int64_t)blockIdx.y * y_stride + j] = (1.0f - z) * n + z * h[j];
    }
}

ss_status cu_gru(void *vctx, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                 const float *b_ih, const float *b_hh, float *h, float *y, float *scratch, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->batch < 1 || d->seq < 0 || d->in < 1 || d->hidden < 1)
        return fail(err, SS_E_INTERNAL, "cuda: gru: batch %d, %d steps of %d inputs, hidden size %d", d->batch,
                    d->seq, d->in, d->hidden);
    if (d->seq == 0)
        return SS_OK;
    if (d->batch > 65535)
        return fail(err, SS_E_INTERNAL, "cuda: gru: batch %d (at most 65535)", d->batch);
    int H = d->hidden, g3 = 3 * H;
    int64_t rows = (int64_t)d->batch * d->seq;
    if (rows > 0x7fffffff)
        return fail(err, SS_E_INTERNAL, "cuda: gru: %lld steps in all", (long long)rows);
    ss_status st = gemm_rm(c, 0, 1, (int)rows, g3, d->in, 1.0f, x, d->in, 0, w_ih, d->in, 0, 0.0f, scratch, g3, 0,
                           1, 0, err);
    if (st != SS_OK)
        return st;
    dim3 grid((unsigned)((H + GRU_WARPS - 1) / GRU_WARPS), (unsigned)d->batch);
    int64_t ys = (int64_t)d->seq * H, gs = (int64_t)d->seq * g3;
    for (int t = 0; t < d->seq; t++) {
        const float *hp = t ? y + (int64_t)(t - 1) * H : h;
        k_gru_step<<<grid, 32 * GRU_WARPS, 0, c->stream>>>(y + (int64_t)t * H, ys, hp, t ? ys : H,
                                                            scratch + (int64_t)t * g3, gs, w_hh, b_ih, b_hh, H);
        CK_LAUNCH(c, err, "gru");
    }
    return cu_copy2d(vctx, h, (size_t)H, y + (int64_t)(d->seq - 1) * H, (size_t)ys, (size_t)d->batch, (size_t)H,
                     err);
}

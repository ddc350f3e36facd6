// reduce.metal - kernels that cooperate within a threadgroup: transpose
// (tile in threadgroup memory), row moments, softmax, layer norm and group
// norm (simdgroup sums, then partials through threadgroup memory).
// Reductions run SS_MTL_RED_THREADS threads per row, one threadgroup per row.

// x [batch, rows, cols] -> y [batch, cols, rows]; 16 x 16 threads per tile,
// grid (ceil(cols/16), ceil(rows/16), batch).
kernel void ss_transpose(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                         constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    threadgroup float tile[16][17];
    long mat = long(p.rows) * long(p.cols);
    device const float *xb = x + long(tgp.z) * mat;
    device float *yb = y + long(tgp.z) * mat;
    uint c = tgp.x * 16u + lid.x, r = tgp.y * 16u + lid.y;
    if (r < uint(p.rows) && c < uint(p.cols))
        tile[lid.y][lid.x] = xb[long(r) * p.cols + c];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    uint oc = tgp.y * 16u + lid.x, orow = tgp.x * 16u + lid.y;   // y[orow][oc] = x[oc][orow]
    if (orow < uint(p.cols) && oc < uint(p.rows))
        yb[long(orow) * p.rows + oc] = tile[lid.x][lid.y];
}

// x [rows, len] -> mean[r], std[r] (unbiased; NaN when len == 1)
kernel void ss_row_moments(device float *mean [[buffer(0)]], device float *sd [[buffer(1)]],
                           device const float *x [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]],
                           SS_TARGS)
{
    threadgroup float part[32];
    uint nsg = (tgs.x + 31u) / 32u;
    device const float *xr = x + long(tgp.x) * p.len;
    // sums of x - x[0] (exact for the values near x[0]): a large common offset
    // costs no precision in the mean or the deviations
    float x0 = xr[0], s = 0.0f;
    for (long i = lid.x; i < p.len; i += tgs.x)
        s += xr[i] - x0;
    float tot;
    SS_TG_REDUCE(tot, s, part, nsg, simd_sum, 0.0f, ss_add2);
    float mo = tot / float(p.len), m = x0 + mo;
    float q = 0.0f;
    for (long i = lid.x; i < p.len; i += tgs.x) {
        float d = (xr[i] - x0) - mo;
        q += d * d;
    }
    float qt;
    SS_TG_REDUCE(qt, q, part, nsg, simd_sum, 0.0f, ss_add2);
    if (lid.x == 0) {
        mean[tgp.x] = m;
        sd[tgp.x] = p.len > 1 ? sqrt(qt / float(p.len - 1)) : NAN;
    }
}

// x, y [rows, len]: y = softmax(p.alpha * x) along len; in place allowed
kernel void ss_softmax(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                       constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    threadgroup float part[32];
    uint nsg = (tgs.x + 31u) / 32u;
    device const float *xr = x + long(tgp.x) * p.len;
    device float *yr = y + long(tgp.x) * p.len;
    float mx = -INFINITY;
    for (long i = lid.x; i < p.len; i += tgs.x)
        mx = ss_max2(mx, p.alpha * xr[i]);
    float gmx;
    SS_TG_REDUCE(gmx, mx, part, nsg, simd_max, -INFINITY, ss_max2);
    float s = 0.0f;
    for (long i = lid.x; i < p.len; i += tgs.x) {
        float e = exp(p.alpha * xr[i] - gmx);
        yr[i] = e;
        s += e;
    }
    float tot;
    SS_TG_REDUCE(tot, s, part, nsg, simd_sum, 0.0f, ss_add2);
    float inv = 1.0f / tot;
    for (long i = lid.x; i < p.len; i += tgs.x)
        yr[i] *= inv;
}

// x, y [rows, len]: LayerNorm over len with gamma/beta (p.has_s / p.has_b)
kernel void ss_layer_norm(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                          device const float *gamma [[buffer(2)]], device const float *beta [[buffer(3)]],
                          constant ss_mtl_params &p [[buffer(4)]], SS_TARGS)
{
    threadgroup float part[32];
    uint nsg = (tgs.x + 31u) / 32u;
    device const float *xr = x + long(tgp.x) * p.len;
    device float *yr = y + long(tgp.x) * p.len;
    // sums of x - x[0] (exact for the values near x[0]): a large common offset
    // costs no precision in the mean or the deviations
    float x0 = xr[0], s = 0.0f;
    for (long i = lid.x; i < p.len; i += tgs.x)
        s += xr[i] - x0;
    float tot;
    SS_TG_REDUCE(tot, s, part, nsg, simd_sum, 0.0f, ss_add2);
    float mo = tot / float(p.len), m = x0 + mo;
    float q = 0.0f;
    for (long i = lid.x; i < p.len; i += tgs.x) {
        float d = (xr[i] - x0) - mo;
        q += d * d;
    }
    float qt;
    SS_TG_REDUCE(qt, q, part, nsg, simd_sum, 0.0f, ss_add2);
    float rs = 1.0f / sqrt(qt / float(p.len) + p.eps);
    for (long i = lid.x; i < p.len; i += tgs.x) {
        float z = ((xr[i] - x0) - mo) * rs;
        if (p.has_s)
            z *= gamma[i];
        if (p.has_b)
            z += beta[i];
        yr[i] = z;
    }
}

// x, y [rows, len]: RMSNorm over len (p.mode: 0 SS_RMS_MEAN, 1 SS_RMS_L2) with
// gain gamma (p.has_s); one threadgroup per row
kernel void ss_rms_norm(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                        device const float *gamma [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]], SS_TARGS)
{
    threadgroup float part[32];
    uint nsg = (tgs.x + 31u) / 32u;
    device const float *xr = x + long(tgp.x) * p.len;
    device float *yr = y + long(tgp.x) * p.len;
    float q = 0.0f;
    for (long i = lid.x; i < p.len; i += tgs.x)
        q += xr[i] * xr[i];
    float qt;
    SS_TG_REDUCE(qt, q, part, nsg, simd_sum, 0.0f, ss_add2);
    float f = p.mode == 1 ? sqrt(float(p.len)) / max(sqrt(qt), p.eps) : 1.0f / sqrt(qt / float(p.len) + p.eps);
    for (long i = lid.x; i < p.len; i += tgs.x) {
        float z = xr[i] * f;
        if (p.has_s)
            z *= gamma[i];
        yr[i] = z;
    }
}

// Group norm, pass 1/3: partial[g * chunks + c] = sum over chunk c of group g
// (p.len = elements per group) of x (p.mode 0) or (x - mean)^2 (p.mode 1,
// mean = stats[2 g]).  Grid (chunks, batch * groups).
kernel void ss_gn_partial(device float *partial [[buffer(0)]], device const float *x [[buffer(1)]],
                          device const float *stats [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]],
                          SS_TARGS)
{
    threadgroup float part[32];
    uint nsg = (tgs.x + 31u) / 32u;
    long g = long(tgp.y), per = (p.len + p.chunks - 1) / p.chunks;
    long lo = long(tgp.x) * per, hi = lo + per < p.len ? lo + per : p.len;
    device const float *xg = x + g * p.len;
    float m = p.mode ? stats[2 * g] : 0.0f;
    float s = 0.0f;
    for (long i = lo + lid.x; i < hi; i += tgs.x) {
        float d = xg[i] - m;
        s += p.mode ? d * d : xg[i];
    }
    float tot;
    SS_TG_REDUCE(tot, s, part, nsg, simd_sum, 0.0f, ss_add2);
    if (lid.x == 0)
        partial[g * p.chunks + long(tgp.x)] = tot;
}

// Group norm, pass 2/4: stats[2 g] = mean (mode 0), stats[2 g + 1] = rstd (mode 1)
kernel void ss_gn_finalize(device float *stats [[buffer(0)]], device const float *partial [[buffer(1)]],
                           constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    threadgroup float part[32];
    uint nsg = (tgs.x + 31u) / 32u;
    long g = long(tgp.x);
    float s = 0.0f;
    for (long c = lid.x; c < p.chunks; c += tgs.x)
        s += partial[g * p.chunks + c];
    float tot;
    SS_TG_REDUCE(tot, s, part, nsg, simd_sum, 0.0f, ss_add2);
    if (lid.x == 0) {
        if (p.mode == 0)
            stats[2 * g] = tot / float(p.len);
        else
            stats[2 * g + 1] = 1.0f / sqrt(tot / float(p.len) + p.eps);
    }
}

// Group norm, pass 5: y = (x - mean) * rstd * gamma[c] + beta[c]; x, y [batch, ch, p.ld]
kernel void ss_gn_apply(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                        device const float *stats [[buffer(2)]], device const float *gamma [[buffer(3)]],
                        device const float *beta [[buffer(4)]], constant ss_mtl_params &p [[buffer(5)]],
                        SS_TARGS)
{
    long cpg = long(p.ch / p.groups);
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long r = i / p.ld;
        long c = r % long(p.ch), g = (r / long(p.ch)) * long(p.groups) + c / cpg;
        float a = stats[2 * g + 1] * (p.has_s ? gamma[c] : 1.0f);
        y[i] = (x[i] - stats[2 * g]) * a + (p.has_b ? beta[c] : 0.0f);
    }
}

// One step of the GRU (ss_gru): y (item tgp.y, unit j) from the previous state
// hp, the input projection gx [3 H] of the step (without b_ih) and the rows r,
// z, n of W_hh [3 H, H]; biases bi, bh [3 H] where p.has_s, p.has_b.  p.len = H;
// item strides p.sa (y), p.sb (hp), p.sc (gx).  A simdgroup per hidden unit,
// tgs.x / 32 units per threadgroup; the gates as the CPU computes them.
kernel void ss_gru_step(device float *y [[buffer(0)]], device const float *hp [[buffer(1)]],
                        device const float *gx [[buffer(2)]], device const float *w [[buffer(3)]],
                        device const float *bi [[buffer(4)]], device const float *bh [[buffer(5)]],
                        constant ss_mtl_params &p [[buffer(6)]], SS_TARGS)
{
    long H = p.len;
    long j = long(tgp.x) * long(tgs.x / 32u) + long(sg);
    int live = j < H;
    device const float *h = hp + long(tgp.y) * p.sb;
    float sr = 0.0f, sz = 0.0f, sn = 0.0f;
    if (live) {
        device const float *wr = w + j * H;
        device const float *wz = wr + H * H;
        device const float *wn = wz + H * H;
        for (long i = long(sl); i < H; i += 32) {
            float hv = h[i];
            sr += wr[i] * hv;
            sz += wz[i] * hv;
            sn += wn[i] * hv;
        }
    }
    sr = simd_sum(sr);
    sz = simd_sum(sz);
    sn = simd_sum(sn);
    if (live && sl == 0) {
        device const float *g = gx + long(tgp.y) * p.sc;
        float xr = g[j], xz = g[H + j], xn = g[2 * H + j];
        if (p.has_s) {
            xr += bi[j];
            xz += bi[H + j];
            xn += bi[2 * H + j];
        }
        if (p.has_b) {
            sr += bh[j];
            sz += bh[H + j];
            sn += bh[2 * H + j];
        }
        float r = 1.0f / (1.0f + exp(-(xr + sr)));
        float z = 1.0f / (1.0f + exp(-(xz + sz)));
        float n = tanh(xn + r * sn);
        y[long(tgp.y) * p.sa + j] = (1.0f - z) * n + z * h[j];
    }
}

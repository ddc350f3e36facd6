// conv.metal - im2col / col2im around ss_gemm for the convolutions.
//
// conv2d: col [cin*kh*kw, ncols] holds input patches for flattened output
// positions q = p0 .. p0 + ncols - 1 over (batch item, oy, ox); then
// y = w [cout, cin*kh*kw] @ col (batched over items).
// conv_transpose2d: col [cout*kh*kw, ...] = w^T @ x, then ss_col2im adds,
// for every output pixel, the columns of input positions [p0, p0 + ncols)
// that land on it (a gather: no atomics, a fixed summation order).

// thread per element of col; p.n = rows * ncols
kernel void ss_im2col(device float *col [[buffer(0)]], device const float *x [[buffer(1)]],
                      constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    long npos = long(p.oh) * long(p.ow), ncols = long(p.ncols);
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long r = i / ncols, q = p.p0 + (i - r * ncols);
        int kj = int(r % p.kw), ki = int((r / p.kw) % p.kh), ci = int(r / (long(p.kw) * p.kh));
        long b = q / npos, pos = q - b * npos;
        int oy = int(pos / p.ow), ox = int(pos % p.ow);
        int iy = oy * p.sh - p.ph + ki * p.dh, ix = ox * p.sw - p.pw + kj * p.dw;
        float v = 0.0f;
        if (iy >= 0 && iy < p.h && ix >= 0 && ix < p.w)
            v = x[((b * p.cin + ci) * long(p.h) + iy) * p.w + ix];
        col[i] = v;
    }
}

// y [items, cout, oh, ow] += contributions of col; item b's input position pos
// (in [p0, p0 + ncols)) is column b * p.item_off + pos - p0 of col (pitch p.ld).
// p.n = items * cout * oh * ow.
kernel void ss_col2im(device float *y [[buffer(0)]], device const float *col [[buffer(1)]],
                      constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    long opos = long(p.oh) * long(p.ow), per_item = long(p.cout) * opos;
    long hi = p.p0 + long(p.ncols);
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long b = i / per_item, r = i - b * per_item;
        int co = int(r / opos);
        long o = r - long(co) * opos;
        int oy = int(o / p.ow), ox = int(o % p.ow);
        float s = 0.0f;
        for (int ki = 0; ki < p.kh; ki++) {
            int ty = oy - ki;
            if (ty < 0)
                break;
            if (ty % p.sh != 0 || ty / p.sh >= p.h)
                continue;
            int iy = ty / p.sh;
            for (int kj = 0; kj < p.kw; kj++) {
                int tx = ox - kj;
                if (tx < 0)
                    break;
                if (tx % p.sw != 0 || tx / p.sw >= p.w)
                    continue;
                long pos = long(iy) * p.w + tx / p.sw;
                if (pos < p.p0 || pos >= hi)
                    continue;
                long row = (long(co) * p.kh + ki) * p.kw + kj;
                s += col[row * p.ld + b * p.item_off + (pos - p.p0)];
            }
        }
        y[i] += s;
    }
}

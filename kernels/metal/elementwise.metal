// elementwise.metal - fill, copies, add, mul, scale, affine, GELU, the ss_act
// activations, GLU, bias fill, rotary embedding.
// 1-D grids with a grid-stride loop: the host caps the number of threadgroups,
// every thread handles elements gid.x, gid.x + threads, ...  Semantics are
// those of the CPU kernels (kernels/cpu/elementwise.c, strided.c).

kernel void ss_fill(device float *y [[buffer(0)]], constant ss_mtl_params &p [[buffer(1)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = p.v;
}

// rows x cols, pitches p.ds[0] / p.ss[0]
kernel void ss_copy2d(device float *dst [[buffer(0)]], device const float *src [[buffer(1)]],
                      constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    long cols = p.len;
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long r = i / cols, c = i - r * cols;
        dst[r * p.ds[0] + c] = src[r * p.ss[0] + c];
    }
}

kernel void ss_copy4d(device float *dst [[buffer(0)]], device const float *src [[buffer(1)]],
                      constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long i3 = i % p.shape[3], r = i / p.shape[3];
        long i2 = r % p.shape[2];
        r /= p.shape[2];
        long i1 = r % p.shape[1], i0 = r / p.shape[1];
        dst[i0 * p.ds[0] + i1 * p.ds[1] + i2 * p.ds[2] + i3 * p.ds[3]] =
            src[i0 * p.ss[0] + i1 * p.ss[1] + i2 * p.ss[2] + i3 * p.ss[3]];
    }
}

kernel void ss_add(device float *y [[buffer(0)]], device const float *a [[buffer(1)]],
                   device const float *b [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = a[i] + b[i];
}

kernel void ss_mul(device float *y [[buffer(0)]], device const float *a [[buffer(1)]],
                   device const float *b [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = a[i] * b[i];
}

kernel void ss_scale(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                     constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = p.alpha * x[i];
}

// x, y [batch, ch, len]: y = x * s[c] + b[c] (p.has_s / p.has_b say which exist)
kernel void ss_channel_affine(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                              device const float *s [[buffer(2)]], device const float *b [[buffer(3)]],
                              constant ss_mtl_params &p [[buffer(4)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        int c = int((i / p.len) % long(p.ch));
        float sc = p.has_s ? s[c] : 1.0f, bc = p.has_b ? b[c] : 0.0f;
        y[i] = x[i] * sc + bc;
    }
}

// x, y [rows, len]: y = x * s[r] + t[r]
kernel void ss_row_affine(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                          device const float *s [[buffer(2)]], device const float *t [[buffer(3)]],
                          constant ss_mtl_params &p [[buffer(4)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long r = i / p.len;
        y[i] = x[i] * s[r] + t[r];
    }
}

kernel void ss_gelu(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                    constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = ss_gelu_f(x[i]);
}

// x [batch, 2 ch, len] -> y [batch, ch, len] = a * sigmoid(g)
kernel void ss_glu(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                   constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    long half_n = long(p.ch) * p.len;
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long b = i / half_n, r = i - b * half_n;
        float a = x[b * 2 * half_n + r], g = x[b * 2 * half_n + half_n + r];
        y[i] = a / (1.0f + exp(-g));
    }
}

// y [batch, ch, len] = bias[c], or 0 without bias (p.has_b)
kernel void ss_bias_fill(device float *y [[buffer(0)]], device const float *bias [[buffer(1)]],
                         constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = p.has_b ? bias[(i / p.len) % long(p.ch)] : 0.0f;
}

// y = act(x) for the ss_act activation p.mode with parameter p.alpha (ss_act_f)
kernel void ss_activate(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                        constant ss_mtl_params &p [[buffer(2)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp))
        y[i] = ss_act_f(x[i], p.mode, p.alpha);
}

// Rotary embedding (ss_rope): x, y [rows, p.ld], row r at position r % p.len;
// pair j < p.ch (= heads * hd / 2) is columns 2j, 2j + 1, rotated by the angle
// of cs [seq, p.cols (= hd / 2), 2] at (position, j % p.cols).  p.n = rows * p.ch.
// Columns from 2 p.ch on are left alone; in place is fine.
kernel void ss_rope(device float *y [[buffer(0)]], device const float *x [[buffer(1)]],
                    device const float *cs [[buffer(2)]], constant ss_mtl_params &p [[buffer(3)]], SS_TARGS)
{
    for (long i = ss_flat(gid); i < p.n; i += ss_nthreads(tgs, ngrp)) {
        long r = i / long(p.ch), j = i - r * long(p.ch);
        long o = r * p.ld + 2 * j, t = ((r % p.len) * long(p.cols) + j % long(p.cols)) * 2;
        float x0 = x[o], x1 = x[o + 1], c = cs[t], sn = cs[t + 1];
        y[o] = x0 * c - x1 * sn;
        y[o + 1] = x1 * c + x0 * sn;
    }
}

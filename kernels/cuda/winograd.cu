/* winograd.cu - 3x3 convolutions with stride 1, padding 1 and dilation 1 as Winograd products
 * for the CUDA backend's conv2d (conv.cu): F(4x4, 3x3) where both sides of the plane have at
 * least 4 samples, F(2x2, 3x3) otherwise.  Filter, input and output transforms are kernels here;
 * the products between them are batched GEMMs (gemm.cu).
 */

#include "cuda_internal.h"

/* Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1, padding 1 and
 * dilation 1 (HTDemucs's frequency-decoder rewrite convs): each 2x2 output
 * tile comes from a 4x4 input patch, d -> V = B^T d B, g -> U = G g G^T,
 * M = U V summed over input channels (16 batched products of cout x cin by
 * cin x tiles: 2.25x fewer multiply-adds than the direct product, and the
 * input expanded 4x instead of im2col's 9x), y = A^T M A.  fp32 throughout
 * (the products are convolutions: CUBLAS_COMPUTE_32F in every precision but
 * tf32/bf16/fp16); the transforms' additions cost about 1e-7 relative. */

/* u [16, cout, cin] = G g G^T for g = w [cout, cin, 3, 3] */
__global__ void k_wino_filter(float *u, const float *w, int64_t n)
{
    GRID_LOOP(i, (size_t)n) {
        const float *g = w + i * 9;
        float t[4][3];
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[j];
            t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
        }
        for (int r = 0; r < 4; r++) {
            u[(size_t)(r * 4 + 0) * n + i] = t[r][0];
            u[(size_t)(r * 4 + 1) * n + i] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
            u[(size_t)(r * 4 + 2) * n + i] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
            u[(size_t)(r * 4 + 3) * n + i] = t[r][2];
        }
    }
}

/* Element i of a [channels, pc] plane of tiles [p0, p0 + pc): its channel,
 * tile row and column; returns the batch item. */
__device__ __forceinline__ int64_t wino_tile(size_t i, int64_t p0, int64_t pc, int th, int tw, int *ch, int *ty,
                                             int *tx)
{
    int64_t p = p0 + (int64_t)(i % (size_t)pc);
    *ch = (int)(i / (size_t)pc);
    int64_t b = p / ((int64_t)th * tw);
    int t = (int)(p - b * th * tw);
    *ty = t / tw;
    *tx = t - *ty * tw;
    return b;
}

/* d = the A x A input patch of tile (ty, tx) of plane xc [h, w] for output tiles of M x M
 * (rows M ty - 1 .. M ty + A - 2, likewise the columns; zero outside the plane) */
template <int A, int M>
__device__ __forceinline__ void wino_patch(float (*d)[A], const float *xc, int h, int w, int ty, int tx)
{
    for (int r = 0; r < A; r++) {
        int iy = M * ty - 1 + r;
        for (int k = 0; k < A; k++) {
            int ix = M * tx - 1 + k;
            d[r][k] = iy >= 0 && iy < h && ix >= 0 && ix < w ? xc[(size_t)iy * w + ix] : 0.0f;
        }
    }
}

/* v [16, cin, pc] = B^T d B for tiles [p0, p0 + pc) of x [nb, cin, h, w]
 * (tile p: item p / (th tw), rows 2 ty - 1 .. 2 ty + 2, columns 2 tx - 1 .. 2 tx + 2;
 * zero outside) */
__global__ void k_wino_input(float *v, const float *x, int cin, int h, int w, int th, int tw, int64_t p0, int64_t pc)
{
    size_t n = (size_t)cin * (size_t)pc;
    GRID_LOOP(i, n) {
        int ci, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &ci, &ty, &tx);
        const float *xc = x + ((size_t)b * cin + ci) * (size_t)h * w;
        float d[4][4];
        wino_patch<4, 2>(d, xc, h, w, ty, tx);
        float e[4][4];                            /* B^T d */
        for (int k = 0; k < 4; k++) {
            e[0][k] = d[0][k] - d[2][k];
            e[1][k] = d[1][k] + d[2][k];
            e[2][k] = d[2][k] - d[1][k];
            e[3][k] = d[1][k] - d[3][k];
        }
        size_t plane = n;
        for (int r = 0; r < 4; r++) {             /* (B^T d) B */
            v[(size_t)(r * 4 + 0) * plane + i] = e[r][0] - e[r][2];
            v[(size_t)(r * 4 + 1) * plane + i] = e[r][1] + e[r][2];
            v[(size_t)(r * 4 + 2) * plane + i] = e[r][2] - e[r][1];
            v[(size_t)(r * 4 + 3) * plane + i] = e[r][1] - e[r][3];
        }
    }
}

/* y [nb, cout, h, w] tiles [p0, p0 + pc) = A^T M A (+ bias) from m [16, cout, pc] */
__global__ void k_wino_output(float *y, const float *m, const float *bias, int cout, int h, int w, int th, int tw,
                              int64_t p0, int64_t pc)
{
    size_t n = (size_t)cout * (size_t)pc;
    GRID_LOOP(i, n) {
        int co, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &co, &ty, &tx);
        float a[4][4];
        for (int s = 0; s < 16; s++)
            a[s / 4][s % 4] = m[(size_t)s * n + i];
        float e[2][4];                            /* A^T M */
        for (int k = 0; k < 4; k++) {
            e[0][k] = a[0][k] + a[1][k] + a[2][k];
            e[1][k] = a[1][k] - a[2][k] - a[3][k];
        }
        float b0 = bias ? bias[co] : 0.0f;
        float *yc = y + ((size_t)b * cout + co) * (size_t)h * w;
        for (int r = 0; r < 2; r++) {
            int oy = 2 * ty + r;
            if (oy >= h)
                break;
            float o0 = e[r][0] + e[r][1] + e[r][2], o1 = e[r][1] - e[r][2] - e[r][3];
            int ox = 2 * tx;
            yc[(size_t)oy * w + ox] = b0 + o0;
            if (ox + 1 < w)
                yc[(size_t)oy * w + ox + 1] = b0 + o1;
        }
    }
}

/* Winograd F(4x4, 3x3), the same convolutions with 4x4 output tiles from 6x6
 * input patches: 36 batched products of cout x cin by cin x tiles (4x fewer
 * multiply-adds than the direct product, 1.78x fewer than F(2x2)) and the
 * input expanded 2.25x instead of 4x.  The transforms are the CPU backend's
 * (kernels/cpu/nn.c: B^T, G, A^T there), in the same order of operations:
 * the filter's in double, rounded once; the input's and output's add,
 * subtract and scale by powers of two only. */

/* u [36, cout, cin] = G g G^T for g = w [cout, cin, 3, 3] */
__global__ void k_wino4_filter(float *u, const float *w, int64_t n)
{
    const double gm[6][3] = {{1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                             {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    GRID_LOOP(i, (size_t)n) {
        const float *g = w + i * 9;
        double t[6][3];                           /* G g */
        for (int r = 0; r < 6; r++)
            for (int q = 0; q < 3; q++)
                t[r][q] = gm[r][0] * (double)g[q] + gm[r][1] * (double)g[3 + q] + gm[r][2] * (double)g[6 + q];
        for (int r = 0; r < 6; r++)               /* (G g) G^T */
            for (int q = 0; q < 6; q++)
                u[(size_t)(r * 6 + q) * n + i] = (float)(gm[q][0] * t[r][0] + gm[q][1] * t[r][1] + gm[q][2] * t[r][2]);
    }
}

/* the six rows of B^T applied to x0..x5 (kernels/cpu/nn.c wino_input4) */
#define WG_BT4(x0, x1, x2, x3, x4, x5, y)                \
    do {                                                 \
        (y)[0] = 4.0f * ((x0) - (x2)) + ((x4) - (x2));   \
        (y)[1] = ((x3) + (x4)) - 4.0f * ((x1) + (x2));   \
        (y)[2] = 4.0f * ((x1) - (x2)) + ((x4) - (x3));   \
        (y)[3] = 2.0f * ((x3) - (x1)) + ((x4) - (x2));   \
        (y)[4] = 2.0f * ((x1) - (x3)) + ((x4) - (x2));   \
        (y)[5] = 4.0f * ((x1) - (x3)) + ((x5) - (x3));   \
    } while (0)

/* the four rows of A^T applied to x0..x5 (kernels/cpu/nn.c WG_AT4) */
#define WG_AT4D(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3)                    \
    do {                                                                  \
        float p_ = (x1) + (x2), q_ = (x1) - (x2), r_ = (x3) + (x4), s_ = (x3) - (x4); \
        y0 = (x0) + p_ + r_;                                              \
        y1 = q_ + 2.0f * s_;                                              \
        y2 = p_ + 4.0f * r_;                                              \
        y3 = (q_ + 8.0f * s_) + (x5);                                     \
    } while (0)

/* v [36, cin, pc] = B^T d B for tiles [p0, p0 + pc) of x [nb, cin, h, w]
 * (tile p: rows 4 ty - 1 .. 4 ty + 4, columns 4 tx - 1 .. 4 tx + 4; zero outside) */
__global__ void k_wino4_input(float *v, const float *x, int cin, int h, int w, int th, int tw, int64_t p0,
                              int64_t pc)
{
    size_t n = (size_t)cin * (size_t)pc;
    GRID_LOOP(i, n) {
        int ci, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &ci, &ty, &tx);
        const float *xc = x + ((size_t)b * cin + ci) * (size_t)h * w;
        float d[6][6];
        wino_patch<6, 4>(d, xc, h, w, ty, tx);
        float e[6][6];                            /* B^T d: e[q][k] = row combination q of column k */
        for (int k = 0; k < 6; k++) {
            float y6[6];
            WG_BT4(d[0][k], d[1][k], d[2][k], d[3][k], d[4][k], d[5][k], y6);
            for (int q = 0; q < 6; q++)
                e[q][k] = y6[q];
        }
        for (int q = 0; q < 6; q++) {             /* (B^T d) B */
            float y6[6];
            WG_BT4(e[q][0], e[q][1], e[q][2], e[q][3], e[q][4], e[q][5], y6);
            for (int k = 0; k < 6; k++)
                v[(size_t)(q * 6 + k) * n + i] = y6[k];
        }
    }
}

/* y [nb, cout, h, w] tiles [p0, p0 + pc) = A^T M A (+ bias) from m [36, cout, pc] */
__global__ void k_wino4_output(float *y, const float *m, const float *bias, int cout, int h, int w, int th, int tw,
                               int64_t p0, int64_t pc)
{
    size_t n = (size_t)cout * (size_t)pc;
    GRID_LOOP(i, n) {
        int co, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &co, &ty, &tx);
        float t[4][6];                            /* A^T M, column by column */
        for (int c6 = 0; c6 < 6; c6++) {
            float a0 = m[(size_t)(0 * 6 + c6) * n + i], a1 = m[(size_t)(1 * 6 + c6) * n + i];
            float a2 = m[(size_t)(2 * 6 + c6) * n + i], a3 = m[(size_t)(3 * 6 + c6) * n + i];
            float a4 = m[(size_t)(4 * 6 + c6) * n + i], a5 = m[(size_t)(5 * 6 + c6) * n + i];
            WG_AT4D(a0, a1, a2, a3, a4, a5, t[0][c6], t[1][c6], t[2][c6], t[3][c6]);
        }
        float b0 = bias ? bias[co] : 0.0f;
        float *yc = y + ((size_t)b * cout + co) * (size_t)h * w;
        for (int r = 0; r < 4; r++) {             /* (A^T M) A */
            int oy = 4 * ty + r;
            if (oy >= h)
                break;
            float o[4];
            WG_AT4D(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], o[0], o[1], o[2], o[3]);
            int ox = 4 * tx;
            for (int q = 0; q < 4 && ox + q < w; q++)
                yc[(size_t)oy * w + ox + q] = b0 + o[q];
        }
    }
}

int wino_ok(const ss_conv2d_desc *d)
{
    return d->kh == 3 && d->kw == 3 && d->sh == 1 && d->sw == 1 && d->ph == 1 && d->pw == 1 && d->dh == 1 &&
           d->dw == 1 && d->h >= 2 && d->w >= 2;
}

/* F(4x4, 3x3) where both sides of the plane have at least 4 samples (fewer
 * multiply-adds than F(2x2): 6% off a forward pass on an H100,
 * docs/performance-log.md); F(2x2, 3x3) otherwise. */
ss_status conv_wino(cuda_ctx *c, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                    float *y, ss_error *err)
{
    const int tm = d->h >= 4 && d->w >= 4 ? 4 : 2, kk = (tm + 2) * (tm + 2);
    int th = (d->h + tm - 1) / tm, tw = (d->w + tm - 1) / tm;
    int64_t tiles = (int64_t)d->batch * th * tw, nu = (int64_t)d->cout * d->cin;
    /* tiles per pass: u, v and m within the chunk budget */
    size_t room = CHUNK_FLOATS > (size_t)(kk * nu) ? CHUNK_FLOATS - (size_t)(kk * nu) : 0;
    int64_t pc = (int64_t)(room / ((size_t)kk * (size_t)(d->cin + d->cout)));
    if (pc < 1) pc = 1;
    if (pc > tiles) pc = tiles;
    float *u = (float *)scratch(c, sizeof(float) * (size_t)(kk * nu + kk * (int64_t)(d->cin + d->cout) * pc), err);
    if (!u) return err->code;
    float *v = u + kk * nu, *m = v + kk * (int64_t)d->cin * pc;
    if (tm == 4)
        LAUNCH(k_wino4_filter, (size_t)nu, u, w, nu);
    else
        LAUNCH(k_wino_filter, (size_t)nu, u, w, nu);
    for (int64_t p0 = 0; p0 < tiles; p0 += pc) {
        int64_t n = tiles - p0 < pc ? tiles - p0 : pc;
        if (tm == 4)
            LAUNCH(k_wino4_input, (size_t)d->cin * n, v, x, d->cin, d->h, d->w, th, tw, p0, n);
        else
            LAUNCH(k_wino_input, (size_t)d->cin * n, v, x, d->cin, d->h, d->w, th, tw, p0, n);
        if (gemm_rm(c, 0, 0, d->cout, (int)n, d->cin, 1.0f, u, d->cin, nu, v, (int)n, (int64_t)d->cin * n, 0.0f, m,
                    (int)n, (int64_t)d->cout * n, kk, 0, err) != SS_OK)
            return err->code;
        if (tm == 4)
            LAUNCH(k_wino4_output, (size_t)d->cout * n, y, m, bias, d->cout, d->h, d->w, th, tw, p0, n);
        else
            LAUNCH(k_wino_output, (size_t)d->cout * n, y, m, bias, d->cout, d->h, d->w, th, tw, p0, n);
    }
    CK_LAUNCH(c, err, "conv2d (winograd)");
    return SS_OK;
}

/* test_nn.c - the CPU nn kernels (kernels/cpu/nn.c) against direct loops in
 * double precision on random inputs with odd sizes. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "../kernels/cpu/cpu_ops.h"
#include "../models/htdemucs/fused_cpu.h"
#include "test.h"

#define TOL 1e-5

static ss_pool *pool;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static float *rand_buf(size_t n, float offset)
{
    float *p = malloc(n * sizeof *p);
    if (p)
        for (size_t i = 0; i < n; i++)
            p[i] = offset + frand();
    return p;
}

/* ||y - ref|| / ||ref|| */
static double rel_l2(const float *y, const double *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* ---- conv2d ---------------------------------------------------------------- */

static void conv2d_ref(const ss_conv2d_desc *d, const float *x, const float *w, const float *bias, double *y)
{
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    for (int b = 0; b < d->batch; b++)
        for (int co = 0; co < d->cout; co++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double s = bias ? bias[co] : 0.0;
                    for (int ci = 0; ci < d->cin; ci++)
                        for (int ki = 0; ki < d->kh; ki++)
                            for (int kj = 0; kj < d->kw; kj++) {
                                int iy = oy * d->sh - d->ph + ki * d->dh, ix = ox * d->sw - d->pw + kj * d->dw;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                                    continue;
                                s += (double)x[(((int64_t)b * d->cin + ci) * d->h + iy) * d->w + ix] *
                                     w[(((int64_t)co * d->cin + ci) * d->kh + ki) * d->kw + kj];
                            }
                    y[(((int64_t)b * d->cout + co) * oh + oy) * ow + ox] = s;
                }
}

/* relative L2 error of ss_cpu_conv2d (tile 0), of Winograd F(tile x tile, 3x3)
 * (tile 2, 4) or of the direct 1-D path (tile CONV_DIRECT) */
#define CONV_DIRECT (-1)
/* err[2 * v + b]: relative L2 of variant tiles[v] without (b 0) and with (b 1) a bias, all on
 * the same random input against one double-precision reference (computed once: it is most
 * of the time of this test under the sanitizers) */
static void conv2d_variants(ss_conv2d_desc d, const int *tiles, int nt, double *err)
{
    int oh = ss_conv_out(d.h, d.kh, d.sh, d.ph, d.dh), ow = ss_conv_out(d.w, d.kw, d.sw, d.pw, d.dw);
    size_t nx = (size_t)d.batch * d.cin * d.h * d.w, nw = (size_t)d.cout * d.cin * d.kh * d.kw;
    size_t ny = (size_t)d.batch * d.cout * oh * ow, plane = (size_t)oh * ow;
    float *x = rand_buf(nx, 0.0f), *w = rand_buf(nw, 0.0f), *bias = rand_buf((size_t)d.cout, 0.0f);
    float *y = malloc(ny * sizeof *y);
    double *ref = malloc(ny * sizeof *ref), *refb = malloc(ny * sizeof *refb);
    for (int i = 0; i < 2 * nt; i++)
        err[i] = 1.0;
    if (x && w && bias && y && ref && refb) {
        conv2d_ref(&d, x, w, NULL, ref);
        for (size_t i = 0; i < ny; i++)
            refb[i] = ref[i] + bias[(i / plane) % (size_t)d.cout];
        for (int v = 0; v < nt; v++)
            for (int wb = 0; wb < 2; wb++) {
                for (size_t i = 0; i < ny; i++)   /* garbage in y: the kernel must overwrite it */
                    y[i] = frand() * 1e3f;
                const float *b = wb ? bias : NULL;
                int tile = tiles[v];
                ss_status st = tile == CONV_DIRECT ? ss_cpu_conv2d_direct1d(pool, &d, x, w, b, y)
                               : tile             ? ss_cpu_conv2d_winograd(pool, &d, x, w, b, y, tile)
                                                  : ss_cpu_conv2d(pool, &d, x, w, b, y);
                if (st == SS_OK)
                    err[2 * v + wb] = rel_l2(y, wb ? refb : ref, ny);
            }
    }
    free(x);
    free(w);
    free(bias);
    free(y);
    free(ref);
    free(refb);
}

static void test_conv2d_general(void)
{
    /* batch, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw */
    static const ss_conv2d_desc cases[] = {
        {2, 3, 7, 11, 5, 3, 2, 2, 1, 1, 0, 1, 2},
        {3, 2, 9, 5, 4, 2, 3, 1, 2, 0, 2, 3, 1},
        {1, 5, 13, 17, 3, 3, 3, 1, 1, 1, 1, 1, 1},     /* 3x3 "same" (decoder rewrite) */
        {2, 4, 33, 7, 6, 8, 1, 4, 1, 2, 0, 1, 1},      /* freq conv [8,1] stride [4,1] */
        {3, 6, 1, 29, 2, 1, 3, 1, 1, 0, 4, 1, 4},      /* dilated 1-D (DConv) */
        {2, 3, 1, 41, 5, 1, 8, 1, 4, 0, 2, 1, 1},      /* strided 1-D (time encoder) */
        {2, 7, 5, 6, 3, 1, 1, 1, 1, 0, 0, 1, 1},       /* pointwise */
        {1, 3, 4, 5, 2, 1, 1, 2, 1, 1, 0, 1, 1},       /* 1x1 with stride and pad */
        {2, 48, 3, 7000, 3, 3, 3, 1, 1, 1, 1, 1, 1},   /* more positions than one column block */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    {
        static const int tiles[] = {0};
        double e[2];
        conv2d_variants(cases[i], tiles, 1, e);
        for (int wb = 0; wb < 2; wb++)
            CHECK(e[wb] <= TOL, "case %zu bias %d: relative L2 %.3g", i, wb, e[wb]);
    }
}

/* 3x3, stride 1, padding 1 goes through Winograd F(4x4, 3x3) (F(2x2, 3x3) on
 * request): odd and even
 * planes, single rows and columns, several channel counts, batch > 1, and
 * planes bigger than one block of tiles (blocks that end mid-row and span
 * batch items), output channels in several groups. */
static void test_conv2d_winograd(void)
{
    /* batch, cin, h, w, cout */
    static const int cases[][5] = {
        {1, 1, 1, 1, 1},   {1, 3, 1, 9, 2},    {2, 2, 8, 1, 3},    {1, 4, 2, 2, 5},
        {3, 5, 7, 11, 4},  {2, 8, 16, 24, 16}, {1, 17, 9, 130, 9}, {2, 48, 13, 37, 96},
        {1, 96, 6, 21, 192}, {3, 64, 33, 129, 64},
        {2, 384, 5, 7, 700},   /* transformed filters in 3 groups of output channels */
    };
    static const int tiles[] = {0, 2, 4};   /* 0: ss_cpu_conv2d's choice */
    double worst[3] = {0.0, 0.0, 0.0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ss_conv2d_desc d = {cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4],
                            3, 3, 1, 1, 1, 1, 1, 1};
        double e[6];
        conv2d_variants(d, tiles, 3, e);
        for (int v = 0; v < 3; v++)
            for (int wb = 0; wb < 2; wb++) {
                CHECK(e[2 * v + wb] <= TOL, "tile %d case %zu bias %d: relative L2 %.3g", tiles[v], i, wb,
                      e[2 * v + wb]);
                worst[v] = e[2 * v + wb] > worst[v] ? e[2 * v + wb] : worst[v];
            }
    }
    for (int v = 0; v < 3; v++)
        fprintf(stderr, "conv2d 3x3 tile %d: worst relative L2 %.3g\n", tiles[v], worst[v]);
    /* other geometries are refused */
    ss_conv2d_desc bad = {1, 2, 5, 5, 2, 3, 3, 2, 1, 1, 1, 1, 1};
    float buf[64] = {0};
    CHECK(ss_cpu_conv2d_winograd(pool, &bad, buf, buf, NULL, buf, 4) == SS_E_USAGE, "stride 2 accepted");
    bad.sh = 1;
    CHECK(ss_cpu_conv2d_winograd(pool, &bad, buf, buf, NULL, buf, 3) == SS_E_USAGE, "tile 3 accepted");
}

/* A convolution entry point under test: variant = Winograd tile or "with bias". */
typedef ss_status (*conv_variant_fn)(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                     const float *bias, float *y, int variant);

static ss_status winograd_variant(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y, int tile)
{
    return ss_cpu_conv2d_winograd(p, d, x, w, bias, y, tile);
}

static ss_status direct1d_variant(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y, int with_bias)
{
    return ss_cpu_conv2d_direct1d(p, d, x, w, with_bias ? bias : NULL, y);
}

/* fn gives the same bits with no pool, 2 threads and the test pool, for each variant. */
static void conv_same_for_threads(conv_variant_fn fn, const ss_conv2d_desc *d, const int *variants, int nv)
{
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    size_t nx = (size_t)d->batch * d->cin * d->h * d->w, nw = (size_t)d->cout * d->cin * d->kh * d->kw;
    size_t ny = (size_t)d->batch * d->cout * oh * ow;
    float *x = rand_buf(nx, 0.0f), *w = rand_buf(nw, 0.0f), *bias = rand_buf((size_t)d->cout, 0.0f);
    float *y1 = rand_buf(ny, 0.0f), *y2 = rand_buf(ny, 0.0f), *y3 = rand_buf(ny, 0.0f);
    ss_pool *p2 = ss_pool_new(2);
    int ok = x && w && bias && y1 && y2 && y3 && p2, same = ok;
    ss_status s1 = SS_OK, s2 = SS_OK, s3 = SS_OK;
    for (int v = 0; v < nv && same; v++) {
        s1 = fn(NULL, d, x, w, bias, y1, variants[v]);
        s2 = fn(p2, d, x, w, bias, y2, variants[v]);
        s3 = fn(pool, d, x, w, bias, y3, variants[v]);
        same = memcmp(y1, y2, ny * sizeof *y1) == 0 && memcmp(y1, y3, ny * sizeof *y1) == 0;
    }
    ss_pool_free(p2);
    free(x);
    free(w);
    free(bias);
    free(y1);
    free(y2);
    free(y3);
    CHECK(ok, "out of memory");
    CHECK(s1 == SS_OK && s2 == SS_OK && s3 == SS_OK, "status %d %d %d", (int)s1, (int)s2, (int)s3);
    CHECK(same, "outputs differ between 1, 2 and 3 threads");
}

/* The same bits whatever the thread count (and with no pool). */
static void test_conv2d_winograd_threads(void)
{
    ss_conv2d_desc d = {2, 40, 45, 263, 24, 3, 3, 1, 1, 1, 1, 1, 1};
    const int tiles[] = {2, 4};
    conv_same_for_threads(winograd_variant, &d, tiles, 2);
}

/* 1-D, stride 1 (kh 1, ph 0): one sgemm per tap on x in place.  Through
 * ss_cpu_conv2d (which sends kw > 1 or pw > 0 there) and called directly (the
 * pointwise ones too): odd sizes, dilation 1 to 4, padding equal to, smaller
 * and larger than the dilation (output columns no tap reaches), input shorter
 * than the kernel span, planes of several rows, batch 1 and batch > threads
 * (the pool has 3), rows longer than one column block (cache-sized blocks,
 * evened out: tails and tap boundaries inside blocks). */
static void test_conv2d_direct1d(void)
{
    /* batch, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw */
    static const ss_conv2d_desc cases[] = {
        {1, 48, 1, 336, 6, 1, 3, 1, 1, 0, 1, 1, 1},    /* DConv conv1, dilation 1 */
        {5, 7, 1, 37, 3, 1, 3, 1, 1, 0, 2, 1, 2},      /* dilation 2, batch > threads */
        {2, 5, 1, 29, 9, 1, 3, 1, 1, 0, 4, 1, 4},      /* dilation 4 */
        {7, 1, 1, 1, 1, 1, 3, 1, 1, 0, 1, 1, 1},       /* one column, one channel */
        {1, 3, 1, 11, 4, 1, 3, 1, 1, 0, 1, 1, 3},      /* padding < dilation */
        {3, 4, 1, 13, 5, 1, 3, 1, 1, 0, 5, 1, 2},      /* padding > dilation */
        {2, 3, 1, 4, 2, 1, 3, 1, 1, 0, 6, 1, 2},       /* shorter than the span; edge columns get no tap */
        {1, 2, 1, 2, 3, 1, 5, 1, 1, 0, 4, 1, 2},       /* span 9 on 2 columns */
        {2, 6, 1, 17, 4, 1, 2, 1, 1, 0, 1, 1, 3},      /* even kernel */
        {2, 3, 4, 9, 5, 1, 3, 1, 1, 0, 1, 1, 1},       /* several rows */
        {2, 3, 2, 7, 4, 1, 1, 1, 1, 0, 2, 1, 1},       /* 1x1 with padding */
        {1, 48, 1, 5000, 6, 1, 3, 1, 1, 0, 2, 1, 2},   /* several column blocks */
        {1, 384, 1, 700, 48, 1, 3, 1, 1, 0, 4, 1, 4},  /* narrow blocks (large cin), odd tail */
        {9, 33, 1, 251, 17, 1, 3, 1, 1, 0, 1, 1, 1},
    };
    /* pointwise: ss_cpu_conv2d keeps these on its own sgemm, the direct path takes them too */
    static const ss_conv2d_desc pointwise[] = {
        {3, 7, 5, 6, 3, 1, 1, 1, 1, 0, 0, 1, 1},
        {1, 6, 1, 5000, 96, 1, 1, 1, 1, 0, 0, 1, 1},
        {4, 12, 1, 336, 24, 1, 1, 1, 1, 0, 0, 1, 1},
    };
    double worst = 0.0;
    static const int vias[] = {0, CONV_DIRECT}, direct[] = {CONV_DIRECT};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double e[4];
        conv2d_variants(cases[i], vias, 2, e);
        for (int via = 0; via < 2; via++)
            for (int wb = 0; wb < 2; wb++) {
                CHECK(e[2 * via + wb] <= TOL, "%s case %zu bias %d: relative L2 %.3g", via ? "direct" : "conv2d", i,
                      wb, e[2 * via + wb]);
                worst = e[2 * via + wb] > worst ? e[2 * via + wb] : worst;
            }
    }
    for (size_t i = 0; i < sizeof pointwise / sizeof pointwise[0]; i++) {
        double e[2];
        conv2d_variants(pointwise[i], direct, 1, e);
        for (int wb = 0; wb < 2; wb++) {
            CHECK(e[wb] <= TOL, "pointwise case %zu bias %d: relative L2 %.3g", i, wb, e[wb]);
            worst = e[wb] > worst ? e[wb] : worst;
        }
    }
    fprintf(stderr, "conv2d direct 1-D: worst relative L2 %.3g\n", worst);
    /* other geometries are refused */
    ss_conv2d_desc bad = {1, 2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1};
    float buf[64] = {0};
    CHECK(ss_cpu_conv2d_direct1d(pool, &bad, buf, buf, NULL, buf) == SS_E_USAGE, "kh 3 accepted");
    bad = (ss_conv2d_desc){1, 2, 1, 5, 2, 1, 3, 1, 2, 0, 1, 1, 1};
    CHECK(ss_cpu_conv2d_direct1d(pool, &bad, buf, buf, NULL, buf) == SS_E_USAGE, "stride 2 accepted");
    bad = (ss_conv2d_desc){1, 2, 1, 5, 2, 1, 3, 1, 1, 1, 1, 1, 1};
    CHECK(ss_cpu_conv2d_direct1d(pool, &bad, buf, buf, NULL, buf) == SS_E_USAGE, "ph 1 accepted");
}

/* The direct path gives the same bits whatever the thread count. */
static void test_conv2d_direct1d_threads(void)
{
    ss_conv2d_desc d = {2, 48, 1, 3001, 12, 1, 3, 1, 1, 0, 2, 1, 2};
    const int with_bias[] = {0, 1};
    conv_same_for_threads(direct1d_variant, &d, with_bias, 2);
}

/* ---- transposed conv2d ---------------------------------------------------------- */

static void convt2d_ref(const ss_convt2d_desc *d, const float *x, const float *w, const float *bias, double *y)
{
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    for (int b = 0; b < d->batch; b++)
        for (int co = 0; co < d->cout; co++)
            for (int i = 0; i < oh * ow; i++)
                y[((int64_t)b * d->cout + co) * oh * ow + i] = bias ? bias[co] : 0.0;
    for (int b = 0; b < d->batch; b++)
        for (int ci = 0; ci < d->cin; ci++)
            for (int iy = 0; iy < d->h; iy++)
                for (int ix = 0; ix < d->w; ix++) {
                    double xv = x[(((int64_t)b * d->cin + ci) * d->h + iy) * d->w + ix];
                    for (int co = 0; co < d->cout; co++)
                        for (int ki = 0; ki < d->kh; ki++)
                            for (int kj = 0; kj < d->kw; kj++)
                                y[(((int64_t)b * d->cout + co) * oh + iy * d->sh + ki) * ow + ix * d->sw + kj] +=
                                    xv * w[(((int64_t)ci * d->cout + co) * d->kh + ki) * d->kw + kj];
                }
}

static double convt2d_case(ss_convt2d_desc d, int with_bias)
{
    int oh = ss_convt_out(d.h, d.kh, d.sh), ow = ss_convt_out(d.w, d.kw, d.sw);
    size_t nx = (size_t)d.batch * d.cin * d.h * d.w, nw = (size_t)d.cin * d.cout * d.kh * d.kw;
    size_t ny = (size_t)d.batch * d.cout * oh * ow;
    float *x = rand_buf(nx, 0.0f), *w = rand_buf(nw, 0.0f), *bias = rand_buf((size_t)d.cout, 0.0f);
    float *y = rand_buf(ny, 0.0f);
    double *ref = malloc(ny * sizeof *ref);
    double err = 1.0;
    if (x && w && bias && y && ref) {
        convt2d_ref(&d, x, w, with_bias ? bias : NULL, ref);
        if (ss_cpu_conv_transpose2d(pool, &d, x, w, with_bias ? bias : NULL, y) == SS_OK)
            err = rel_l2(y, ref, ny);
    }
    free(x);
    free(w);
    free(bias);
    free(y);
    free(ref);
    return err;
}

static void test_conv_transpose2d(void)
{
    /* batch, cin, h, w, cout, kh, kw, sh, sw */
    static const ss_convt2d_desc cases[] = {
        {2, 3, 5, 7, 4, 3, 2, 2, 1},
        {3, 4, 9, 6, 5, 8, 1, 4, 1},     /* freq decoder [8,1] stride [4,1] */
        {2, 5, 1, 23, 3, 1, 8, 1, 4},    /* time decoder */
        {1, 2, 4, 5, 3, 2, 2, 3, 3},     /* stride > kernel: gaps */
        {2, 3, 3, 3, 2, 1, 1, 1, 1},     /* pointwise */
        {2, 40, 2, 60000, 5, 2, 3, 2, 2},/* more positions than one column block */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int wb = 0; wb < 2; wb++) {
            double e = convt2d_case(cases[i], wb);
            CHECK(e <= TOL, "case %zu bias %d: relative L2 %.3g", i, wb, e);
        }
}

/* ---- gemm ------------------------------------------------------------------------ */

static void test_gemm(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int batch = 1; batch <= 3; batch += 2) {
                int m = 13, n = 7, k = 19;
                int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
                int rows_a = ta ? k : m, rows_b = tb ? n : k;
                int64_t sa = (int64_t)rows_a * lda + 4, sb = (int64_t)rows_b * ldb + 1, sc = (int64_t)m * ldc + 3;
                size_t na = (size_t)(sa * batch), nb = (size_t)(sb * batch), nc = (size_t)(sc * batch);
                float *a = rand_buf(na, 0.0f), *b = rand_buf(nb, 0.0f), *c = rand_buf(nc, 0.0f);
                double *ref = malloc(nc * sizeof *ref);
                float *c_ref_in = malloc(nc * sizeof *c_ref_in);
                CHECK(a && b && c && ref && c_ref_in, "out of memory");
                memcpy(c_ref_in, c, nc * sizeof *c);
                ss_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .alpha = 0.75f,
                                  .beta = -0.5f, .lda = lda, .ldb = ldb, .ldc = ldc, .batch = batch,
                                  .stride_a = sa, .stride_b = sb, .stride_c = sc};
                for (size_t i = 0; i < nc; i++)
                    ref[i] = c[i];
                for (int bi = 0; bi < batch; bi++)
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++) {
                            double s = 0.0;
                            for (int q = 0; q < k; q++) {
                                double av = ta ? a[bi * sa + (int64_t)q * lda + i] : a[bi * sa + (int64_t)i * lda + q];
                                double bv = tb ? b[bi * sb + (int64_t)j * ldb + q] : b[bi * sb + (int64_t)q * ldb + j];
                                s += av * bv;
                            }
                            int64_t ci = bi * sc + (int64_t)i * ldc + j;
                            ref[ci] = 0.75 * s - 0.5 * (double)c_ref_in[ci];
                        }
                ss_status st = ss_cpu_gemm(pool, &d, a, b, c);
                double e = rel_l2(c, ref, nc);
                free(a);
                free(b);
                free(c);
                free(ref);
                free(c_ref_in);
                CHECK(st == SS_OK, "status %d", (int)st);
                CHECK(e <= TOL, "ta %d tb %d batch %d: relative L2 %.3g", ta, tb, batch, e);
            }
}

/* Products large enough to be cut over the pool: rows only, columns only, and 2-D grids (a square
 * product at 3 and 16 threads), transposed and padded operands, against a double reference, and the
 * same bits at 1, 2, 3 and 16 threads (every element is one sum whatever the cut). */
static void test_gemm_split(void)
{
    static const int shapes[][5] = {   /* m, n, k, ta, tb */
        {512, 512, 16, 0, 1}, {2000, 64, 40, 0, 0}, {48, 9000, 12, 1, 0}, {300, 700, 33, 1, 1},
    };
    static const int thread_counts[] = {1, 2, 3, 16};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0] && !test_failed_now; si++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2], ta = shapes[si][3], tb = shapes[si][4];
        int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 3, ldc = n + 2;
        size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
        float *a = rand_buf(na, 0.0f), *b = rand_buf(nb, 0.0f), *c0 = rand_buf(nc, 0.0f);
        float *c = malloc(nc * sizeof *c), *c1 = malloc(nc * sizeof *c1);
        double *ref = malloc(nc * sizeof *ref);
        CHECK(a && b && c0 && c && c1 && ref, "out of memory");
        for (int i = 0; i < m; i++)
            for (int j = 0; j < ldc; j++) {
                size_t ci = (size_t)i * ldc + j;
                double s = 0.0;
                for (int q = 0; q < k && j < n; q++)
                    s += (double)(ta ? a[(size_t)q * lda + i] : a[(size_t)i * lda + q]) *
                         (tb ? b[(size_t)j * ldb + q] : b[(size_t)q * ldb + j]);
                ref[ci] = j < n ? 1.5 * s + 0.25 * c0[ci] : c0[ci];      /* columns past n untouched */
            }
        ss_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .alpha = 1.5f, .beta = 0.25f,
                          .lda = lda, .ldb = ldb, .ldc = ldc, .batch = 1};
        for (size_t ti = 0; ti < sizeof thread_counts / sizeof thread_counts[0]; ti++) {
            ss_pool *p = ss_pool_new(thread_counts[ti]);
            CHECK(p, "pool");
            memcpy(c, c0, nc * sizeof *c);
            ss_status st = ss_cpu_gemm(p, &d, a, b, c);
            ss_pool_free(p);
            CHECK(st == SS_OK, "status %d", (int)st);
            double e = rel_l2(c, ref, nc);
            CHECK(e <= TOL, "%dx%dx%d (ta %d tb %d), %d threads: relative L2 %.3g", m, n, k, ta, tb,
                  thread_counts[ti], e);
            if (ti == 0)
                memcpy(c1, c, nc * sizeof *c);
            else
                CHECK(memcmp(c1, c, nc * sizeof *c) == 0, "%dx%dx%d: %d threads give other bits than 1", m, n, k,
                      thread_counts[ti]);
        }
        free(a);
        free(b);
        free(c0);
        free(c);
        free(c1);
        free(ref);
    }
}

/* ---- attention --------------------------------------------------------------------- */

/* o [nq, ldo] (heads side by side) = softmax(scale q_h k_h^T) v_h, in double */
static void attention_ref(const ss_attn_desc *d, const float *q, const float *k, const float *v, double *o)
{
    double *p = malloc((size_t)d->nk * sizeof *p);
    if (!p)
        return;
    for (int h = 0; h < d->heads; h++)
        for (int i = 0; i < d->nq; i++) {
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < d->nk; j++) {
                double s = 0.0;
                for (int c = 0; c < d->hd; c++)
                    s += (double)q[(int64_t)i * d->ldq + h * d->hd + c] * k[(int64_t)j * d->ldk + h * d->hd + c];
                p[j] = d->scale * s;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int j = 0; j < d->nk; j++)
                sum += p[j] = exp(p[j] - mx);
            for (int c = 0; c < d->hd; c++) {
                double acc = 0.0;
                for (int j = 0; j < d->nk; j++)
                    acc += p[j] * v[(int64_t)j * d->ldv + h * d->hd + c];
                o[(int64_t)i * d->ldo + h * d->hd + c] = acc / sum;
            }
        }
    free(p);
}

/* d run as a batch of 3 items (the case's q, kv and then two others, apart
 * by strides larger than an item) on the shared pool: item 0 gives o1 (the
 * case's result alone), the others what each gives alone; nothing between
 * the items' outputs is written. */
static void attention_batch_case(const ss_attn_desc *d1, const float *q, const float *kv, const float *o1, size_t ci)
{
    enum { ITEMS = 3 };
    ss_attn_desc d = *d1;
    int D = d.heads * d.hd;
    size_t nqf = (size_t)d.nq * d.ldq, nkv = (size_t)d.nk * 2 * D, no = (size_t)d.nq * d.ldo;
    d.batch = ITEMS;
    d.stride_q = (int64_t)nqf + 5, d.stride_k = d.stride_v = (int64_t)nkv + 3, d.stride_o = (int64_t)no + 7;
    float *bq = rand_buf(ITEMS * (size_t)d.stride_q, 0.0f), *bkv = rand_buf(ITEMS * (size_t)d.stride_k, 0.0f);
    float *bo = malloc(ITEMS * (size_t)d.stride_o * sizeof *bo), *one = malloc(no * sizeof *one);
    size_t ns = ss_cpu_attention_scratch(pool, &d);
    float *scratch = malloc((ns ? ns : 1) * sizeof *scratch);
    CHECK(bq && bkv && bo && one && scratch, "out of memory");
    memcpy(bq, q, nqf * sizeof *q);
    memcpy(bkv, kv, nkv * sizeof *kv);
    for (size_t i = 0; i < ITEMS * (size_t)d.stride_o; i++)
        bo[i] = -7.0f;
    CHECK(ss_cpu_attention(pool, &d, bq, bkv, bkv + D, bo, scratch) == SS_OK, "batched attention failed");
    int ok = 1, kept = 1;
    for (int it = 0; it < ITEMS; it++) {
        const float *want = o1;
        if (it > 0) {
            ss_attn_desc d0 = *d1;
            size_t ns1 = ss_cpu_attention_scratch(pool, &d0);
            float *s1 = malloc((ns1 ? ns1 : 1) * sizeof *s1);
            CHECK(s1, "out of memory");
            for (size_t i = 0; i < no; i++)
                one[i] = -7.0f;
            ss_cpu_attention(pool, &d0, bq + it * d.stride_q, bkv + it * d.stride_k, bkv + it * d.stride_k + D, one,
                             s1);
            free(s1);
            want = one;
        }
        for (int r = 0; r < d.nq; r++)
            ok &= memcmp(bo + it * d.stride_o + (size_t)r * d.ldo, want + (size_t)r * d.ldo,
                         (size_t)D * sizeof *bo) == 0;
        for (int64_t i = (int64_t)(d.nq - 1) * d.ldo + D; i < d.stride_o; i++)
            kept &= bo[it * d.stride_o + i] == -7.0f;
    }
    free(bq), free(bkv), free(bo), free(one), free(scratch);
    CHECK(ok, "case %zu: an item of a batch of %d gives other bits than alone", ci, ITEMS);
    CHECK(kept, "case %zu: the batch wrote past an item's rows", ci);
}

/* Attention on 1-3 threads along path (SS_CPU_ATTN_*): odd sizes, several row
 * and key blocks with partial last ones, k | v interleaved as the model stores
 * them, a large score range (the running max of the fused path grows from
 * block to block); the columns of o outside the heads are left alone, the
 * result has the same bits at every thread count, and a batch of items gives
 * each item's bits alone. */
static void attention_cases(int path)
{
    static const int cases[][5] = {  /* heads, nq, nk, hd, q gain */
        {1, 1, 1, 1, 1}, {3, 7, 5, 4, 1}, {2, 300, 70, 12, 1}, {8, 530, 257, 16, 1}, {4, 129, 600, 8, 30},
        {1, 1, 1, 64, 1}, {3, 200, 5, 64, 1}, {8, 300, 261, 64, 1}, {2, 97, 1283, 64, 30},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int heads = cases[ci][0], nq = cases[ci][1], nk = cases[ci][2], hd = cases[ci][3], D = heads * hd;
        ss_attn_desc d = {.heads = heads, .nq = nq, .nk = nk, .hd = hd, .ldq = D + 3, .ldk = 2 * D, .ldv = 2 * D,
                          .ldo = D + 2, .scale = 1.0f / sqrtf((float)hd), .reduced = 1};
        if (path == SS_CPU_ATTN_FUSED && hd == 64)
            CHECK(ss_cpu_attention_path(&d) == SS_CPU_ATTN_FUSED, "case %zu: head dim 64 not fused", ci);
        size_t nqf = (size_t)nq * d.ldq, nkv = (size_t)nk * 2 * D, no = (size_t)nq * d.ldo;
        float *q = rand_buf(nqf, 0.0f), *kv = rand_buf(nkv, 0.0f), *o = malloc(no * sizeof *o);
        float *o1 = malloc(no * sizeof *o1);
        double *ref = calloc(no, sizeof *ref);
        CHECK(q && kv && o && o1 && ref, "out of memory");
        for (size_t i = 0; i < nqf; i++)
            q[i] *= (float)cases[ci][4];
        attention_ref(&d, q, kv, kv + D, ref);
        for (int threads = 1; threads <= 3; threads++) {
            ss_pool *p = threads == 3 ? pool : ss_pool_new(threads);
            size_t ns = p ? ss_cpu_attention_scratch(p, &d) : 0;
            float *scratch = malloc((ns ? ns : 1) * sizeof *scratch);
            CHECK(p && scratch, "out of memory");
            for (size_t i = 0; i < no; i++)
                o[i] = -7.0f;
            ss_status st = ss_cpu_attention(p, &d, q, kv, kv + D, o, scratch);
            if (p != pool)
                ss_pool_free(p);
            free(scratch);
            CHECK(st == SS_OK, "status %d", (int)st);
            int kept = 1;
            for (int i = 0; i < nq; i++)
                for (int c = D; c < d.ldo; c++) {
                    kept &= o[(size_t)i * d.ldo + c] == -7.0f;
                    o[(size_t)i * d.ldo + c] = 0.0f;      /* ref is 0 there */
                }
            CHECK(kept, "case %zu, %d threads: wrote outside the heads' columns", ci, threads);
            double e = rel_l2(o, ref, no);
            CHECK(e <= TOL, "case %zu (%d heads, %d x %d, hd %d), %d threads: relative L2 %.3g", ci, heads, nq, nk,
                  hd, threads, e);
            if (threads == 1)
                memcpy(o1, o, no * sizeof *o);
            else
                CHECK(memcmp(o1, o, no * sizeof *o) == 0, "case %zu: %d threads give other bits than 1", ci,
                      threads);
        }
        attention_batch_case(&d, q, kv, o1, ci);
        free(q);
        free(kv);
        free(o);
        free(o1);
        free(ref);
    }
}

static void test_attention_blas(void)
{
    CHECK(ss_cpu_attention_force(SS_CPU_ATTN_BLAS) == 0, "cannot force the sgemm path");
    attention_cases(SS_CPU_ATTN_BLAS);
    ss_cpu_attention_force(-1);
}

/* The fused path (AVX-512F, head dim 64; other head dims take the sgemm path in it too) */
static void test_attention_fused(void)
{
    if (ss_cpu_attention_force(SS_CPU_ATTN_FUSED) != 0)
        SKIP("this machine has no fused attention path (needs x86-64 with AVX-512F)");
    attention_cases(SS_CPU_ATTN_FUSED);
    ss_cpu_attention_force(-1);
}

/* ---- group norm / layer norm -------------------------------------------------------- */

static double group_norm_case(int batch, int ch, int64_t len, int groups, int affine, int in_place,
                              float offset)
{
    size_t n = (size_t)batch * ch * len;
    float *x = rand_buf(n, offset), *gamma = rand_buf((size_t)ch, 1.0f), *beta = rand_buf((size_t)ch, 0.0f);
    float *y = in_place ? x : malloc(n * sizeof *y);
    double *ref = malloc(n * sizeof *ref);
    double err = 1.0;
    if (x && gamma && beta && y && ref) {
        int64_t gn = (int64_t)(ch / groups) * len;
        for (int64_t g = 0; g < (int64_t)batch * groups; g++) {
            const float *xg = x + g * gn;
            double m = 0.0, v = 0.0;
            for (int64_t i = 0; i < gn; i++)
                m += xg[i];
            m /= (double)gn;
            for (int64_t i = 0; i < gn; i++)
                v += ((double)xg[i] - m) * ((double)xg[i] - m);
            v /= (double)gn;
            for (int64_t i = 0; i < gn; i++) {
                int c = (int)((g % groups) * (ch / groups) + i / len);
                double z = ((double)xg[i] - m) / sqrt(v + 1e-5);
                ref[g * gn + i] = affine ? z * gamma[c] + beta[c] : z;
            }
        }
        if (ss_cpu_group_norm(pool, y, x, batch, ch, len, groups, affine ? gamma : NULL,
                              affine ? beta : NULL, 1e-5f) == SS_OK)
            err = rel_l2(y, ref, n);
    }
    if (!in_place)
        free(y);
    free(x);
    free(gamma);
    free(beta);
    free(ref);
    return err;
}

static void test_group_norm(void)
{
    struct { int batch, ch; int64_t len; int groups, affine, in_place; float offset; } cases[] = {
        {2, 12, 37, 4, 1, 0, 0.0f},
        {3, 6, 11, 1, 0, 1, 0.5f},
        {1, 8, 1, 8, 1, 0, 0.0f},
        {2, 5, 30001, 1, 1, 1, 100.0f},   /* one group bigger than a chunk, far from zero */
        {1, 16, 9000, 4, 1, 0, -3.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double e = group_norm_case(cases[i].batch, cases[i].ch, cases[i].len, cases[i].groups,
                                   cases[i].affine, cases[i].in_place, cases[i].offset);
        CHECK(e <= TOL, "case %zu: relative L2 %.3g", i, e);
    }
}

/* The fused DConv tails give the bits of the ops they replace: group norm then
 * GELU; group norm over 2ch channels, GLU, added to x.  Rows shorter and longer
 * than the fused span (1024), several groups, with and without affine. */
static void test_group_norm_fused(void)
{
    struct { int batch, ch; int64_t len; int groups, affine; } cases[] = {
        {2, 6, 37, 1, 1}, {1, 4, 3000, 4, 0}, {3, 8, 1024, 2, 1}, {1, 3, 33000, 3, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int batch = cases[i].batch, ch = cases[i].ch, groups = cases[i].groups;
        int64_t len = cases[i].len;
        size_t n = (size_t)batch * ch * len;
        float *g = rand_buf(2 * n, 0.3f), *x = rand_buf(n, 0.0f), *gamma = rand_buf((size_t)2 * ch, 1.0f);
        float *beta = rand_buf((size_t)2 * ch, 0.0f), *a = malloc(2 * n * sizeof *a), *b = malloc(2 * n * sizeof *b);
        float *t = malloc(n * sizeof *t);
        CHECK(g && x && gamma && beta && a && b && t, "oom");
        const float *ga = cases[i].affine ? gamma : NULL, *be = cases[i].affine ? beta : NULL;
        /* norm + GELU over [batch, 2ch, len], in place */
        memcpy(a, g, 2 * n * sizeof *a);
        memcpy(b, g, 2 * n * sizeof *b);
        CHECK(ss_cpu_group_norm_gelu(pool, a, a, batch, 2 * ch, len, groups, ga, be, 1e-5f) == SS_OK, "gelu");
        ss_cpu_group_norm(pool, b, b, batch, 2 * ch, len, groups, ga, be, 1e-5f);
        ss_cpu_gelu(pool, b, b, 2 * n);
        CHECK(memcmp(a, b, 2 * n * sizeof *a) == 0, "case %zu: group_norm_gelu differs from the two ops", i);
        /* x += glu(norm(g)) */
        memcpy(a, x, n * sizeof *a);
        memcpy(b, g, 2 * n * sizeof *b);
        CHECK(ss_cpu_group_norm_glu_add(pool, a, g, batch, ch, len, groups, ga, be, 1e-5f) == SS_OK, "glu_add");
        ss_cpu_group_norm(pool, b, b, batch, 2 * ch, len, groups, ga, be, 1e-5f);
        ss_cpu_glu(pool, t, b, batch, ch, len);
        ss_cpu_add(pool, x, x, t, n);
        CHECK(memcmp(a, x, n * sizeof *a) == 0, "case %zu: group_norm_glu_add differs from the three ops", i);
        free(g); free(x); free(gamma); free(beta); free(a); free(b); free(t);
    }
}

/* A DConv layer's second half in one pass (ht_cpu_conv1x1_gn_glu_add, models/htdemucs/fused_cpu.c): x += glu(group_norm(w h +
 * bias)) with GroupNorm(1) over the 2ch channels of each item, against a double reference, and the
 * same bits with any number of threads.  HTDemucs's shapes (hidden = ch / 8), an item of many column
 * blocks, a last block cut short, hidden 48 and 64, values far from zero (the bias folded into the
 * mean; h at 1000 +- 0.5 over many blocks: the statistics come from h's centred products). */
static void test_conv1x1_gn_glu_add(void)
{
    struct { int batch, ch, hidden; int64_t len; int bias, affine; float offset; } cases[] = {
        {64, 48, 6, 336, 1, 1, 0.3f}, {1, 48, 6, 20000, 1, 1, 0.3f}, {3, 5, 3, 1001, 0, 0, 0.0f},
        {2, 7, 48, 3000, 1, 1, -0.5f}, {2, 384, 48, 50, 1, 1, 0.3f}, {2, 24, 3, 700, 1, 0, 100.0f},
        {1, 16, 5, 9000, 1, 1, 1000.0f}, {3, 4, 64, 130, 0, 1, -30.0f},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0] && !test_failed_now; ci++) {
        int B = cases[ci].batch, C = cases[ci].ch, H = cases[ci].hidden;
        int64_t L = cases[ci].len;
        size_t nx = (size_t)B * C * L, nh = (size_t)B * H * L;
        float *x = rand_buf(nx, 0.0f), *h = rand_buf(nh, cases[ci].offset), *w = rand_buf((size_t)2 * C * H, 0.0f);
        float *bias = rand_buf((size_t)2 * C, cases[ci].offset), *ga = rand_buf((size_t)2 * C, 1.0f);
        float *be = rand_buf((size_t)2 * C, 0.0f), *y1 = malloc(nx * sizeof *y1), *y2 = malloc(nx * sizeof *y2);
        float *dy = malloc(nx * sizeof *dy);
        double *ref = malloc(nx * sizeof *ref), *g = malloc((size_t)2 * C * L * sizeof *g);
        CHECK(x && h && w && bias && ga && be && y1 && y2 && dy && ref && g, "oom");
        const float *bp = cases[ci].bias ? bias : NULL, *gp = cases[ci].affine ? ga : NULL;
        const float *bq = cases[ci].affine ? be : NULL;
        for (int b = 0; b < B; b++) {
            double s = 0.0, s2 = 0.0;
            for (int r = 0; r < 2 * C; r++)
                for (int64_t i = 0; i < L; i++) {
                    double v = bp ? bp[r] : 0.0;
                    for (int k = 0; k < H; k++)
                        v += (double)w[r * H + k] * h[((size_t)b * H + k) * L + i];
                    g[r * L + i] = v;
                    s += v;
                }
            double m = s / (2.0 * C * L);
            for (size_t i = 0; i < (size_t)2 * C * L; i++)
                s2 += (g[i] - m) * (g[i] - m);
            double rs = 1.0 / sqrt(s2 / (2.0 * C * L) + 1e-5);
            for (int c = 0; c < C; c++)
                for (int64_t i = 0; i < L; i++) {
                    double a = (g[c * L + i] - m) * rs * (gp ? gp[c] : 1.0) + (bq ? bq[c] : 0.0);
                    double t = (g[(c + C) * L + i] - m) * rs * (gp ? gp[c + C] : 1.0) + (bq ? bq[c + C] : 0.0);
                    ref[((size_t)b * C + c) * L + i] = a / (1.0 + exp(-t));
                }
        }
        memcpy(y1, x, nx * sizeof *y1);
        memcpy(y2, x, nx * sizeof *y2);
        CHECK(ht_cpu_conv1x1_gn_glu_add(pool, y1, 1, h, w, bp, B, C, H, L, gp, bq, 1e-5f) == SS_OK, "pool");
        CHECK(ht_cpu_conv1x1_gn_glu_add(NULL, y2, 1, h, w, bp, B, C, H, L, gp, bq, 1e-5f) == SS_OK, "no pool");
        for (size_t i = 0; i < nx; i++)
            dy[i] = y1[i] - x[i];
        double e = rel_l2(dy, ref, nx);
        CHECK(e <= TOL, "case %zu (%dx%dx%dx%lld): relative L2 of the added term %.3g", ci, B, C, H, (long long)L, e);
        CHECK(memcmp(y1, y2, nx * sizeof *y1) == 0, "case %zu: the result depends on the thread count", ci);
        /* the items as rows of x [B / R, C, R, L] (R = the largest of 2, 3 dividing B): the same bits */
        int R = B % 3 == 0 ? 3 : B % 2 == 0 ? 2 : 1;
        for (int b = 0; b < B; b++)             /* y2 = x with items (b / R, b % R) moved to rows */
            for (int c = 0; c < C; c++)
                memcpy(y2 + (((size_t)(b / R) * C + c) * R + b % R) * L, x + ((size_t)b * C + c) * L,
                       (size_t)L * sizeof *y2);
        CHECK(ht_cpu_conv1x1_gn_glu_add(pool, y2, R, h, w, bp, B, C, H, L, gp, bq, 1e-5f) == SS_OK, "rows");
        size_t moved = 0;
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                moved += memcmp(y2 + (((size_t)(b / R) * C + c) * R + b % R) * L, y1 + ((size_t)b * C + c) * L,
                                (size_t)L * sizeof *y2) != 0;
        CHECK(moved == 0, "case %zu: %zu of %d rows differ with the items as %d rows of x", ci, moved, B * C, R);
        free(x); free(h); free(w); free(bias); free(ga); free(be); free(y1); free(y2); free(dy); free(ref); free(g);
    }
}

/* An encoder's 1x1 rewrite in one pass (ht_cpu_conv1x1_glu, models/htdemucs/fused_cpu.c): out = glu(w x + bias) against a double
 * reference, with and without a bias, items of one and of many column blocks, a last block cut short;
 * and the same bits with any number of threads. */
static void test_conv1x1_glu(void)
{
    struct { int batch, cin, ch; int64_t len; int bias; } cases[] = {
        {2, 48, 48, 1000, 1}, {1, 96, 96, 20000, 1}, {3, 5, 7, 333, 0}, {2, 384, 384, 50, 1},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0] && !test_failed_now; ci++) {
        int B = cases[ci].batch, CI = cases[ci].cin, C = cases[ci].ch;
        int64_t L = cases[ci].len;
        size_t nx = (size_t)B * CI * L, ny = (size_t)B * C * L;
        float *x = rand_buf(nx, 0.2f), *w = rand_buf((size_t)2 * C * CI, 0.0f), *bias = rand_buf((size_t)2 * C, 0.0f);
        float *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2);
        double *ref = malloc(ny * sizeof *ref);
        CHECK(x && w && bias && y1 && y2 && ref, "oom");
        const float *bp = cases[ci].bias ? bias : NULL;
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++)
                for (int64_t i = 0; i < L; i++) {
                    double a = bp ? bp[c] : 0.0, g = bp ? bp[c + C] : 0.0;
                    for (int k = 0; k < CI; k++) {
                        double v = x[((size_t)b * CI + k) * L + i];
                        a += (double)w[(size_t)c * CI + k] * v;
                        g += (double)w[(size_t)(c + C) * CI + k] * v;
                    }
                    ref[((size_t)b * C + c) * L + i] = a / (1.0 + exp(-g));
                }
        CHECK(ht_cpu_conv1x1_glu(pool, y1, x, w, bp, B, CI, C, L) == SS_OK, "pool");
        CHECK(ht_cpu_conv1x1_glu(NULL, y2, x, w, bp, B, CI, C, L) == SS_OK, "no pool");
        double e = rel_l2(y1, ref, ny);
        CHECK(e <= TOL, "case %zu (%dx%dx%dx%lld): relative L2 %.3g", ci, B, CI, C, (long long)L, e);
        CHECK(memcmp(y1, y2, ny * sizeof *y1) == 0, "case %zu: the result depends on the thread count", ci);
        free(x); free(w); free(bias); free(y1); free(y2); free(ref);
    }
}

static void test_layer_norm(void)
{
    int shapes[][2] = {{1, 7}, {37, 384}, {5000, 3}, {3, 1000}};
    for (size_t s = 0; s < 4; s++)
        for (int affine = 0; affine < 2; affine++) {
            int rows = shapes[s][0], dim = shapes[s][1];
            size_t n = (size_t)rows * dim;
            float *x = rand_buf(n, 2.0f), *gamma = rand_buf((size_t)dim, 1.0f), *beta = rand_buf((size_t)dim, 0.0f);
            double *ref = malloc(n * sizeof *ref);
            CHECK(x && gamma && beta && ref, "out of memory");
            for (int r = 0; r < rows; r++) {
                const float *xr = x + (size_t)r * dim;
                double m = 0.0, v = 0.0;
                for (int i = 0; i < dim; i++)
                    m += xr[i];
                m /= dim;
                for (int i = 0; i < dim; i++)
                    v += ((double)xr[i] - m) * ((double)xr[i] - m);
                v /= dim;
                for (int i = 0; i < dim; i++) {
                    double z = ((double)xr[i] - m) / sqrt(v + 1e-5);
                    ref[(size_t)r * dim + i] = affine ? z * gamma[i] + beta[i] : z;
                }
            }
            ss_status st = ss_cpu_layer_norm(pool, x, x, rows, dim, affine ? gamma : NULL,
                                             affine ? beta : NULL, 1e-5f);
            double e = rel_l2(x, ref, n);
            free(x);
            free(gamma);
            free(beta);
            free(ref);
            CHECK(st == SS_OK, "status %d", (int)st);
            CHECK(e <= TOL, "rows %d dim %d affine %d: relative L2 %.3g", rows, dim, affine, e);
        }
}

/* Negative strides: reflect padding (numpy's "reflect") of rows [3, 10] by (4, 3)
 * as three copies, two of them reversed, as models/htdemucs/htdemucs.c does it. */
static void test_copy4d_reversed(void)
{
    enum { R = 3, L = 10, PL = 4, PR = 3, LO = L + PL + PR };
    float src[R * L], dst[R * LO];
    for (int i = 0; i < R * L; i++)
        src[i] = (float)i;
    for (int i = 0; i < R * LO; i++)
        dst[i] = -1.0f;
    const int64_t mid[4] = {1, R, 1, L}, dm[4] = {0, LO, 0, 1}, sm[4] = {0, L, 0, 1};
    const int64_t ds[4] = {0, LO, 0, 1}, ss[4] = {0, L, 0, -1};
    const int64_t shl[4] = {1, R, 1, PL}, shr[4] = {1, R, 1, PR};
    CHECK(ss_cpu_copy4d(pool, dst + PL, dm, src, sm, mid) == SS_OK, "middle");
    CHECK(ss_cpu_copy4d(pool, dst, ds, src + PL, ss, shl) == SS_OK, "left");
    CHECK(ss_cpu_copy4d(pool, dst + PL + L, ds, src + L - 2, ss, shr) == SS_OK, "right");
    for (int r = 0; r < R; r++)
        for (int i = 0; i < LO; i++) {
            int j = i - PL;
            j = j < 0 ? -j : j >= L ? 2 * (L - 1) - j : j;
            CHECK(dst[r * LO + i] == src[r * L + j], "row %d index %d: %g, want %g", r, i, dst[r * LO + i],
                  src[r * L + j]);
        }
}

/* Planes larger than one task's piece (cut by rows, a short last piece) in a permuting copy: the
 * model's spectrogram crop [1, 4, 2049 -> 2048 bins, 340 -> 336 frames] at a smaller size, and a
 * transposed plane with a column stride (the slow path). */
static void test_copy4d_large_planes(void)
{
    enum { P = 3, H = 700, W = 131 };              /* planes of 91700 values: two pieces, one short */
    float *src = malloc(sizeof(float) * P * (H + 1) * (W + 4)), *dst = malloc(sizeof(float) * P * H * W);
    float *dt = malloc(sizeof(float) * P * H * W);
    CHECK(src && dst && dt, "oom");
    for (int i = 0; i < P * (H + 1) * (W + 4); i++)
        src[i] = (float)i;
    const int64_t shape[4] = {1, P, H, W}, ss[4] = {0, (int64_t)(H + 1) * (W + 4), W + 4, 1};
    const int64_t ds[4] = {0, (int64_t)H * W, W, 1};
    CHECK(ss_cpu_copy4d(pool, dst, ds, src + 2, ss, shape) == SS_OK, "crop");
    const int64_t tds[4] = {0, (int64_t)H * W, 1, H};            /* dst[p][w][h] = src[p][h][w] */
    CHECK(ss_cpu_copy4d(pool, dt, tds, src + 2, ss, shape) == SS_OK, "transpose");
    size_t bad = 0, badt = 0;
    for (int p = 0; p < P; p++)
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) {
                float want = src[(size_t)p * (H + 1) * (W + 4) + (size_t)h * (W + 4) + w + 2];
                bad += dst[((size_t)p * H + h) * W + w] != want;
                badt += dt[(size_t)p * H * W + (size_t)w * H + h] != want;
            }
    CHECK(bad == 0 && badt == 0, "%zu (crop) and %zu (transpose) of %d values wrong", bad, badt, P * H * W);
    free(src);
    free(dst);
    free(dt);
}

int main(void)
{
    pool = ss_pool_new(3);
    if (!pool) {
        printf("FAIL test_nn: cannot start a thread pool\n");
        return 1;
    }
    RUN(test_gemm);
    RUN(test_gemm_split);
    RUN(test_conv2d_general);
    RUN(test_conv2d_winograd);
    RUN(test_conv2d_winograd_threads);
    RUN(test_conv2d_direct1d);
    RUN(test_conv2d_direct1d_threads);
    RUN(test_conv_transpose2d);
    RUN(test_attention_blas);
    RUN(test_attention_fused);
    RUN(test_group_norm);
    RUN(test_group_norm_fused);
    RUN(test_conv1x1_gn_glu_add);
    RUN(test_conv1x1_glu);
    RUN(test_layer_norm);
    RUN(test_copy4d_reversed);
    RUN(test_copy4d_large_planes);
    ss_pool_free(pool);
    return test_summary();
}

/* test_cpu_elementwise.c - the vectorised exp-based CPU kernels (GELU, GLU,
 * softmax) against double-precision libm formulas, odd lengths included; the
 * per-row statistics and affine that the model's input normalisation uses; the
 * thread pool those kernels run on. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/cpu_ops.h"
#include "threadpool.h"
#include "test.h"

#include <stdatomic.h>

static void test_gelu_matches_erfc_formula(void)
{
    int n = 100003;
    float *x = malloc(sizeof *x * (size_t)n), *y = malloc(sizeof *y * (size_t)n);
    CHECK(x && y, "oom");
    double worst = 0;
    for (int i = 0; i < n; i++)
        x[i] = -10.0f + 20.0f * (float)i / (float)n;
    ss_cpu_gelu(NULL, y, x, (size_t)n);
    for (int i = 0; i < n; i++) {
        double r = 0.5 * x[i] * erfc(-x[i] / sqrt(2.0));
        double e = fabs(y[i] - r) / fmax(fabs(r), 1e-6);   /* relative, absolute in the far tail */
        worst = fmax(worst, e);
    }
    free(x);
    free(y);
    CHECK(worst < 5e-6, "max relative error %g", worst);
}

static void test_glu_matches_sigmoid(void)
{
    int ch = 3, len = 1001;
    float *x = malloc(sizeof *x * 2 * ch * len), *y = malloc(sizeof *y * ch * len);
    CHECK(x && y, "oom");
    for (int i = 0; i < 2 * ch * len; i++)
        x[i] = (float)((i * 7919LL) % 2001 - 1000) / 40.0f;        /* -25 .. 25 */
    ss_cpu_glu(NULL, y, x, 1, ch, len);
    double worst = 0;
    for (int c = 0; c < ch; c++)
        for (int i = 0; i < len; i++) {
            double a = x[c * len + i], g = x[(ch + c) * len + i];
            double r = a / (1.0 + exp(-g));
            worst = fmax(worst, fabs(y[c * len + i] - r) / fmax(fabs(r), 1e-12));
        }
    free(x);
    free(y);
    CHECK(worst < 1e-6, "max relative error %g", worst);
}

static void test_softmax_matches_double(void)
{
    int rows = 37, len = 1027;
    float *x = malloc(sizeof *x * rows * len), *y = malloc(sizeof *y * rows * len);
    CHECK(x && y, "oom");
    for (int i = 0; i < rows * len; i++)
        x[i] = (float)((i * 104729LL) % 4001 - 2000) / 100.0f;     /* -20 .. 20 */
    ss_cpu_softmax(NULL, y, x, rows, len, 0.75f);
    double worst = 0, sum_err = 0;
    for (int r = 0; r < rows; r++) {
        double mx = -1e300, s = 0, sy = 0;
        for (int i = 0; i < len; i++)
            mx = fmax(mx, 0.75 * x[r * len + i]);
        for (int i = 0; i < len; i++)
            s += exp(0.75 * x[r * len + i] - mx);
        for (int i = 0; i < len; i++) {
            double ref = exp(0.75 * x[r * len + i] - mx) / s;
            if (ref > 1e-30)
                worst = fmax(worst, fabs(y[r * len + i] - ref) / ref);
            sy += y[r * len + i];
        }
        sum_err = fmax(sum_err, fabs(sy - 1.0));
    }
    free(x);
    free(y);
    CHECK(worst < 1e-5, "max relative error %g", worst);
    CHECK(sum_err < 1e-5, "rows sum to 1 within %g", sum_err);
}

/* The one-pass bias + GELU / bias + GLU give the bits of a bias pass followed
 * by the activation, for long rows and for short rows grouped into tasks. */
static void test_bias_activations_match_two_passes(void)
{
    const int shapes[][3] = {{2, 3, 1001}, {2, 300, 3}};    /* batch, ch, len */
    for (int si = 0; si < 2; si++) {
        int batch = shapes[si][0], ch = shapes[si][1], len = shapes[si][2];
        size_t n = (size_t)batch * ch * len;
        float *x = malloc(sizeof *x * 2 * n), *t = malloc(sizeof *t * 2 * n), *bias = malloc(sizeof *bias * 2 * ch);
        float *y = malloc(sizeof *y * 2 * n), *r = malloc(sizeof *r * 2 * n);
        CHECK(x && t && bias && y && r, "oom");
        for (size_t i = 0; i < 2 * n; i++)
            x[i] = (float)((i * 7919LL) % 2001 - 1000) / 97.0f;
        for (int c = 0; c < 2 * ch; c++)
            bias[c] = (float)(c % 7) * 0.37f - 1.1f;
        ss_cpu_bias_gelu(NULL, y, x, bias, 2 * batch, ch, len);      /* x as [2 batch, ch, len] */
        ss_cpu_channel_affine(NULL, t, x, 2 * batch, ch, len, NULL, bias);
        ss_cpu_gelu(NULL, r, t, 2 * n);
        size_t bad = 0;
        for (size_t i = 0; i < 2 * n; i++)
            bad += y[i] != r[i];
        CHECK(bad == 0, "bias_gelu %dx%dx%d: %zu of %zu values differ from the two passes", batch, ch, len, bad,
              2 * n);
        ss_cpu_bias_glu(NULL, y, x, bias, batch, ch, len);           /* x as [batch, 2ch, len] */
        ss_cpu_channel_affine(NULL, t, x, batch, 2 * ch, len, NULL, bias);
        ss_cpu_glu(NULL, r, t, batch, ch, len);
        bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += y[i] != r[i];
        CHECK(bad == 0, "bias_glu %dx%dx%d: %zu of %zu values differ from the two passes", batch, ch, len, bad, n);
        free(x); free(t); free(bias); free(y); free(r);
    }
}

static void test_softmax_extremes_are_finite(void)
{
    float x[5] = {-1e30f, 0.0f, 1e4f, -1e4f, 87.5f}, y[5];
    ss_cpu_softmax(NULL, y, x, 1, 5, 1.0f);
    float s = 0;
    for (int i = 0; i < 5; i++) {
        CHECK(isfinite(y[i]) && y[i] >= 0, "y[%d] = %g", i, y[i]);
        s += y[i];
    }
    CHECK(fabsf(y[2] - 1.0f) < 1e-6f && fabsf(s - 1.0f) < 1e-6f, "largest input takes all: %g (sum %g)", y[2], s);
}

/* row_moments (mean, unbiased std) against double sums, rows of one piece and of several with a
 * short last one, values far from zero, at 1-3 threads with the same bits; a row of one value has
 * no std (NaN).  row_affine across pieces. */
static void test_row_moments_and_affine(void)
{
    static const int64_t lens[] = {1, 7, 65536, 65537, 200003};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0] && !test_failed_now; li++) {
        int rows = 3;
        int64_t len = lens[li];
        size_t n = (size_t)rows * (size_t)len;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), st[2][2][3];
        CHECK(x && y, "oom");
        for (size_t i = 0; i < n; i++)     /* row 2 sits at 3000 +- 0.5: a one-pass variance would cancel */
            x[i] = (float)((i * 7919u) % 1001) / 1000.0f - 0.5f + (i / (size_t)len == 2 ? 3000.0f : 0.0f);
        for (int threads = 1; threads <= 3; threads++) {
            ss_pool *p = ss_pool_new(threads);
            CHECK(p, "pool");
            float m[3], sd[3];
            CHECK(ss_cpu_row_moments(p, m, sd, x, rows, len) == SS_OK, "row_moments");
            ss_pool_free(p);
            if (threads == 1) {
                memcpy(st[0][0], m, sizeof m);
                memcpy(st[0][1], sd, sizeof sd);
            } else {
                CHECK(memcmp(st[0][0], m, sizeof m) == 0 && memcmp(st[0][1], sd, sizeof sd) == 0,
                      "len %lld: %d threads give other bits than 1", (long long)len, threads);
            }
        }
        for (int r = 0; r < rows; r++) {
            double s = 0.0, s2 = 0.0;
            for (int64_t i = 0; i < len; i++)
                s += x[r * len + i];
            double mean = s / (double)len;
            for (int64_t i = 0; i < len; i++)
                s2 += (x[r * len + i] - mean) * (x[r * len + i] - mean);
            CHECK(fabs(st[0][0][r] - mean) <= 1e-6 * fmax(fabs(mean), 1.0), "len %lld row %d: mean %.9g, not %.9g",
                  (long long)len, r, st[0][0][r], mean);
            if (len == 1) {
                CHECK(isnan(st[0][1][r]), "len 1: std %g, not NaN", st[0][1][r]);
            } else {
                double sd = sqrt(s2 / (double)(len - 1));
                CHECK(fabs(st[0][1][r] - sd) <= 1e-6 * sd, "len %lld row %d: std %.9g, not %.9g", (long long)len, r,
                      st[0][1][r], sd);
            }
        }
        float sc[3] = {2.0f, -0.5f, 0.25f}, sh[3] = {1.0f, 0.0f, -750.0f};
        ss_pool *p = ss_pool_new(3);
        CHECK(p, "pool");
        CHECK(ss_cpu_row_affine(p, y, x, rows, len, sc, sh) == SS_OK, "row_affine");
        ss_pool_free(p);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += y[i] != x[i] * sc[i / (size_t)len] + sh[i / (size_t)len];
        CHECK(bad == 0, "len %lld: row_affine wrong at %zu of %zu values", (long long)len, bad, n);
        free(x);
        free(y);
    }
}

/* The pool: every index of a job runs exactly once, and the job is over when
 * ss_pool_for returns, over many jobs back to back (sizes from 1 to many runs
 * of claims per thread, so workers that wake late meet ended jobs). */
static void pool_probe_fn(void *hits, int64_t i)
{
    atomic_fetch_add(&((_Atomic int *)hits)[i], 1);
}

static void test_pool_runs_each_index_once(void)
{
    enum { MAXN = 5000 };
    static _Atomic int hits[MAXN];
    for (int threads = 2; threads <= 16; threads *= 2) {
        ss_pool *p = ss_pool_new(threads);
        CHECK(p != NULL, "ss_pool_new(%d)", threads);
        if (!p)
            return;
        int bad = 0;
        for (int job = 0; job < 3000 && !bad; job++) {
            int64_t n = 1 + (int64_t)((job * 2654435761u) % (job % 7 == 0 ? MAXN : 97));
            for (int64_t i = 0; i < n; i++)
                atomic_store(&hits[i], 0);
            ss_pool_for(p, n, pool_probe_fn, (void *)hits);
            for (int64_t i = 0; i < n && !bad; i++)
                if (atomic_load(&hits[i]) != 1) {
                    bad = 1;
                    CHECK(0, "threads %d job %d (n %lld): index %lld ran %d times", threads, job, (long long)n,
                          (long long)i, atomic_load(&hits[i]));
                }
        }
        ss_pool_free(p);
    }
}

int main(void)
{
    RUN(test_pool_runs_each_index_once);
    RUN(test_gelu_matches_erfc_formula);
    RUN(test_glu_matches_sigmoid);
    RUN(test_softmax_matches_double);
    RUN(test_softmax_extremes_are_finite);
    RUN(test_bias_activations_match_two_passes);
    RUN(test_row_moments_and_affine);
    return test_summary();
}

/* test_cpu_elementwise.c - the vectorised exp-based CPU kernels (GELU, GLU,
 * softmax) against double-precision libm formulas, odd lengths included. */
#include <math.h>
#include <stdlib.h>

#include "../kernels/cpu/cpu_ops.h"
#include "test.h"

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

int main(void)
{
    RUN(test_gelu_matches_erfc_formula);
    RUN(test_glu_matches_sigmoid);
    RUN(test_softmax_matches_double);
    RUN(test_softmax_extremes_are_finite);
    RUN(test_bias_activations_match_two_passes);
    return test_summary();
}

/* elementwise.c - CPU reference kernels for the elementwise, layout and
 * reduction ops of backend.h (fill, copy2d, add, mul, scale, affine, moments,
 * GELU, the ss_act activations, GLU, softmax, transpose).  Large loops are split into blocks run on
 * the pool; results do not depend on the number of threads. */
#include "cpu_ops.h"
#include "fastmath.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 16384   /* elements per parallel task */

/* ---- vectorisable GELU ------------------------------------------------------
 * erfc by the Chebyshev fit of Numerical Recipes (fractional error < 1.2e-7),
 * which also avoids the cancellation of 1 + erf(x) for negative x; fast_expf
 * and fast_tanhf are in fastmath.h (shared with the GRU). */

/* gelu(x) = x * Phi(x) = x * erfc(-x / sqrt 2) / 2 */
static inline float fast_gelu(float x)
{
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float q = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
              t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
              t * (-0.82215223f + t * 0.17087277f))))))));
    float erfc_z = t * fast_expf(-z * z + q);            /* erfc(|x| / sqrt 2) */
    return x >= 0.0f ? x * (1.0f - 0.5f * erfc_z) : x * (0.5f * erfc_z);
}

SS_SIMD_CLONES static void gelu_span(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = fast_gelu(x[i]);
}

/* y[i] = a[i] * sigmoid(g[i]) */
SS_SIMD_CLONES static void glu_span(float *y, const float *a, const float *g, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] / (1.0f + fast_expf(-g[i]));
}

/* y[i] += glu(na, ng) with na = ((a[i] - ca[0]) - ca[1]) * ca[2] + ca[3], ng likewise from g[i] and cg:
 * a normalisation whose mean is split as hi + lo floats, so that a - mean keeps its precision in float
 * where the mean is large next to the spread. */
SS_SIMD_CLONES static void norm_glu_add_span(float *y, const float *a, const float *g, int64_t n, float a0, float a1,
                                             float a2, float a3, float g0, float g1, float g2, float g3)
{
    for (int64_t i = 0; i < n; i++) {
        float na = ((a[i] - a0) - a1) * a2 + a3, ng = ((g[i] - g0) - g1) * g2 + g3;
        y[i] = y[i] + na / (1.0f + fast_expf(-ng));
    }
}

void ss_cpu_norm_glu_add_span(float *y, const float *a, const float *g, int64_t n, const float ca[4],
                              const float cg[4])
{
    norm_glu_add_span(y, a, g, n, ca[0], ca[1], ca[2], ca[3], cg[0], cg[1], cg[2], cg[3]);
}

/* The spans for kernels in other files (the fused group norms in nn.c): the same
 * code as ss_cpu_gelu / ss_cpu_glu run per element, so the same bits. */
void ss_cpu_gelu_span(float *y, const float *x, int64_t n) { gelu_span(y, x, (size_t)n); }
void ss_cpu_glu_span(float *y, const float *a, const float *g, int64_t n) { glu_span(y, a, g, n); }

/* The same with a bias added first (rounded to float, as a bias pass would store it) */
SS_SIMD_CLONES static void bias_gelu_span(float *y, const float *x, float b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = fast_gelu(x[i] + b);
}

SS_SIMD_CLONES static void bias_glu_span(float *y, const float *a, const float *g, float ba, float bb, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (a[i] + ba) / (1.0f + fast_expf(-(g[i] + bb)));
}

void ss_cpu_bias_glu_span(float *y, const float *a, const float *g, float ba, float bb, int64_t n)
{
    bias_glu_span(y, a, g, ba, bb, n);
}

/* Reductions in 16 interleaved lanes (a fixed order, so results do not depend
 * on the machine's vector width), which the compiler turns into SIMD code. */
#define LANES 16

SS_SIMD_CLONES_EXACT static float max_span(const float *x, int64_t n, float s)
{
    float m[LANES];
    for (int k = 0; k < LANES; k++)
        m[k] = -INFINITY;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            m[k] = s * x[i + k] > m[k] ? s * x[i + k] : m[k];
    float mx = -INFINITY;
    for (int k = 0; k < LANES; k++)
        mx = m[k] > mx ? m[k] : mx;
    for (; i < n; i++)
        mx = s * x[i] > mx ? s * x[i] : mx;
    return mx;
}

/* y = exp(s * x - mx) for one row; returns the sum */
SS_SIMD_CLONES_EXACT static float softmax_exp_span(float *y, const float *x, int64_t n, float s, float mx)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = fast_expf(s * x[i] - mx);
    float acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += y[i + k];
    float sum = 0.0f;
    for (int k = 0; k < LANES; k++)
        sum += acc[k];
    for (; i < n; i++)
        sum += y[i];
    return sum;
}

SS_SIMD_CLONES_EXACT static void scale_span(float *y, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++)
        y[i] *= s;
}

/* ---- a parallel loop over [0, n) in BLOCK-sized ranges ----------------------- */

typedef struct range_job {
    void (*body)(const struct range_job *job, size_t lo, size_t hi);
    size_t n;          /* total elements              */
    float *y;          /* output                      */
    const float *a;    /* first input                 */
    const float *b;    /* second input (may be NULL)  */
    float v;           /* scalar operand              */
} range_job;

static void range_task(void *arg, int64_t i)
{
    const range_job *job = arg;
    size_t lo = (size_t)i * BLOCK, hi = lo + BLOCK < job->n ? lo + BLOCK : job->n;
    job->body(job, lo, hi);
}

static void par_range(ss_pool *p, range_job *job)
{
    ss_pool_for(p, (int64_t)((job->n + BLOCK - 1) / BLOCK), range_task, job);
}

SS_VECTORISE static void fill_body(const range_job *j, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        j->y[i] = j->v;
}

ss_status ss_cpu_fill(ss_pool *p, float *y, float v, size_t n)
{
    range_job job = {fill_body, n, y, NULL, NULL, v};
    par_range(p, &job);
    return SS_OK;
}

/* copy2d: pieces of COPY_PIECE floats of each row, one task per piece */
#define COPY_PIECE ((size_t)1 << 16)

typedef struct copy2d_job {
    float *dst;
    const float *src;
    size_t dpitch, spitch, cols, pieces;   /* pieces per row */
} copy2d_job;

static void copy2d_piece(void *arg, int64_t t)
{
    const copy2d_job *j = arg;
    size_t r = (size_t)t / j->pieces, lo = (size_t)t % j->pieces * COPY_PIECE;
    size_t n = j->cols - lo < COPY_PIECE ? j->cols - lo : COPY_PIECE;
    memcpy(j->dst + r * j->dpitch + lo, j->src + r * j->spitch + lo, n * sizeof *j->dst);
}

ss_status ss_cpu_copy2d(ss_pool *p, float *dst, size_t dpitch, const float *src, size_t spitch,
                        size_t rows, size_t cols)
{
    if (rows == 0 || cols == 0)
        return SS_OK;
    uintptr_t d0 = (uintptr_t)dst, d1 = (uintptr_t)(dst + (rows - 1) * dpitch + cols);
    uintptr_t s0 = (uintptr_t)src, s1 = (uintptr_t)(src + (rows - 1) * spitch + cols);
    int overlap = d0 < s1 && s0 < d1;
    if (overlap || rows * cols < 2 * COPY_PIECE || ss_pool_threads(p) <= 1) {
        for (size_t r = 0; r < rows; r++)
            memmove(dst + r * dpitch, src + r * spitch, cols * sizeof *dst);
        return SS_OK;
    }
    copy2d_job job = {dst, src, dpitch, spitch, cols, (cols + COPY_PIECE - 1) / COPY_PIECE};
    ss_pool_for(p, (int64_t)(rows * job.pieces), copy2d_piece, &job);
    return SS_OK;
}

SS_VECTORISE static void add_body(const range_job *j, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        j->y[i] = j->a[i] + j->b[i];
}

ss_status ss_cpu_add(ss_pool *p, float *y, const float *a, const float *b, size_t n)
{
    range_job job = {add_body, n, y, a, b, 0};
    par_range(p, &job);
    return SS_OK;
}

SS_VECTORISE static void scale_body(const range_job *j, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        j->y[i] = j->v * j->a[i];
}

ss_status ss_cpu_scale(ss_pool *p, float *y, const float *x, float alpha, size_t n)
{
    range_job job = {scale_body, n, y, x, NULL, alpha};
    par_range(p, &job);
    return SS_OK;
}

SS_VECTORISE static void mul_body(const range_job *j, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++)
        j->y[i] = j->a[i] * j->b[i];
}

ss_status ss_cpu_mul(ss_pool *p, float *y, const float *a, const float *b, size_t n)
{
    range_job job = {mul_body, n, y, a, b, 0};
    par_range(p, &job);
    return SS_OK;
}

/* ---- activations (ss_act): one loop per kind, each vectorised ---------------------
 * sigmoid and SiLU by fast_expf (relative error < 2e-7; sigmoid is exactly 0
 * or 1 only where float rounds it so); tanh by fast_tanhf (relative error
 * < 1.5e-7; libm's tanhf is a scalar call, 9% of a BS-RoFormer's time) */

SS_SIMD_CLONES static void act_span(float *y, const float *x, size_t n, ss_act act, float alpha)
{
    switch (act) {
    case SS_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case SS_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + fast_expf(-x[i]));
        break;
    case SS_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = fast_tanhf(x[i]);
        break;
    case SS_ACT_SILU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] / (1.0f + fast_expf(-x[i]));
        break;
    case SS_ACT_ELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : alpha * (float)expm1((double)x[i]);
        break;
    case SS_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case SS_ACT_POW:
        for (size_t i = 0; i < n; i++)
            y[i] = powf(fabsf(x[i]), alpha);
        break;
    default:
        break;
    }
}

typedef struct act_job {
    float *y;
    const float *x;
    size_t n;
    ss_act act;
    float alpha;
} act_job;

static void act_task(void *arg, int64_t i)
{
    const act_job *j = arg;
    size_t lo = (size_t)i * BLOCK, hi = lo + BLOCK < j->n ? lo + BLOCK : j->n;
    act_span(j->y + lo, j->x + lo, hi - lo, j->act, j->alpha);
}

ss_status ss_cpu_activate(ss_pool *p, float *y, const float *x, size_t n, ss_act act, float alpha)
{
    if ((int)act < 0 || act >= SS_ACT_COUNT)
        return SS_E_USAGE;
    act_job j = {y, x, n, act, alpha};
    ss_pool_for(p, (int64_t)((n + BLOCK - 1) / BLOCK), act_task, &j);
    return SS_OK;
}

static void gelu_body(const range_job *j, size_t lo, size_t hi)
{
    gelu_span(j->y + lo, j->a + lo, hi - lo);
}

ss_status ss_cpu_gelu(ss_pool *p, float *y, const float *x, size_t n)
{
    range_job job = {gelu_body, n, y, x, NULL, 0};
    par_range(p, &job);
    return SS_OK;
}

/* ---- row-wise ops: one task per row ----------------------------------------- */

typedef struct rows_job {
    float *y;               /* output rows                       */
    const float *x;         /* input rows                        */
    int64_t len;            /* row length                        */
    int ch;                 /* channels per batch item (affine)  */
    const float *s, *t;     /* per-row or per-channel operands   */
    float scale;            /* softmax temperature               */
    int64_t rows;           /* number of rows                    */
    int64_t rows_per_task;  /* rows handled by one task          */
} rows_job;

/* Run fn over job's rows in tasks of whole rows, short rows grouped so that a
 * task has about BLOCK elements; task t takes rows task_rows() gives. */
static void rows_run(ss_pool *p, rows_job *job, void (*fn)(void *, int64_t))
{
    job->rows_per_task = job->len >= BLOCK ? 1 : (BLOCK + job->len - 1) / (job->len > 0 ? job->len : 1);
    ss_pool_for(p, (job->rows + job->rows_per_task - 1) / job->rows_per_task, fn, job);
}

static void task_rows(const rows_job *j, int64_t t, int64_t *r0, int64_t *r1)
{
    *r0 = t * j->rows_per_task;
    *r1 = *r0 + j->rows_per_task < j->rows ? *r0 + j->rows_per_task : j->rows;
}

/* rows [t * rows_per_task, ...) of x, y [batch*ch, len]; short rows are grouped
 * so that one task always has about BLOCK elements */
SS_VECTORISE static void channel_affine_rows(void *arg, int64_t t)
{
    const rows_job *j = arg;
    int64_t r0, r1;
    task_rows(j, t, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int c = (int)(r % j->ch);
        float s = j->s ? j->s[c] : 1.0f, b = j->t ? j->t[c] : 0.0f;
        const float *x = j->x + r * j->len;
        float *y = j->y + r * j->len;
        for (int64_t i = 0; i < j->len; i++)
            y[i] = x[i] * s + b;
    }
}

/* len == 1: a per-element affine along the last axis of [batch, ch]; tasks
 * take rows_per_task items of ch floats */
SS_VECTORISE static void affine_vec(float *y, const float *x, const float *s, const float *t, int n)
{
    if (s && t)
        for (int i = 0; i < n; i++)
            y[i] = x[i] * s[i] + t[i];
    else if (s)
        for (int i = 0; i < n; i++)
            y[i] = x[i] * s[i] + 0.0f;
    else if (t)
        for (int i = 0; i < n; i++)
            y[i] = x[i] * 1.0f + t[i];
    else
        for (int i = 0; i < n; i++)
            y[i] = x[i] * 1.0f + 0.0f;
}

static void channel_affine_items(void *arg, int64_t t)
{
    const rows_job *j = arg;
    int64_t b0, b1;
    task_rows(j, t, &b0, &b1);
    for (int64_t b = b0; b < b1; b++)
        affine_vec(j->y + b * j->ch, j->x + b * j->ch, j->s, j->t, j->ch);
}

ss_status ss_cpu_channel_affine(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                                const float *scale, const float *bias)
{
    if (len == 1 && ch > 0) {
        rows_job job = {.y = y, .x = x, .ch = ch, .s = scale, .t = bias, .rows = batch};
        job.rows_per_task = (BLOCK + ch - 1) / ch;
        ss_pool_for(p, (job.rows + job.rows_per_task - 1) / job.rows_per_task, channel_affine_items, &job);
        return SS_OK;
    }
    rows_job job = {.y = y, .x = x, .len = len, .ch = ch, .s = scale, .t = bias, .rows = (int64_t)batch * ch};
    rows_run(p, &job, channel_affine_rows);
    return SS_OK;
}

/* Whole rows are one sample each (the model's input statistics: rows = batch items of millions of
 * values), so row_affine and row_moments cut each row in pieces of ROW_PIECE for the pool; the
 * moments' partial sums are merged in piece order, so they do not depend on the thread count. */
#define ROW_PIECE ((int64_t)1 << 16)

typedef struct piece_job {
    float *y;
    const float *x;
    int64_t len, pieces;    /* row length, pieces per row          */
    const float *s, *t;     /* row_affine: scale, shift per row    */
    double *part;           /* row_moments: [rows][pieces] sums    */
    const double *mean;     /* row_moments: [rows], for pass two   */
} piece_job;

/* row r's piece q of task t: x[r][lo, lo + n) */
static int64_t piece_of(const piece_job *j, int64_t t, int64_t *r, int64_t *lo)
{
    *r = t / j->pieces;
    *lo = t % j->pieces * ROW_PIECE;
    return j->len - *lo < ROW_PIECE ? j->len - *lo : ROW_PIECE;
}

SS_VECTORISE static void row_affine_piece(void *arg, int64_t t)
{
    const piece_job *j = arg;
    int64_t r, lo, n = piece_of(j, t, &r, &lo);
    float s = j->s[r], b = j->t[r];
    const float *x = j->x + r * j->len + lo;
    float *y = j->y + r * j->len + lo;
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * s + b;
}

ss_status ss_cpu_row_affine(ss_pool *p, float *y, const float *x, int rows, int64_t len,
                            const float *scale, const float *shift)
{
    if (rows <= 0 || len <= 0)
        return SS_OK;
    piece_job job = {.y = y, .x = x, .len = len, .pieces = (len + ROW_PIECE - 1) / ROW_PIECE, .s = scale,
                     .t = shift};
    ss_pool_for(p, rows * job.pieces, row_affine_piece, &job);
    return SS_OK;
}

/* sum of x[0..n), in double, in LANES interleaved partial sums */
SS_SIMD_CLONES static double sum_span_d(const float *x, int64_t n)
{
    double a[LANES] = {0}, t = 0.0;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++)
            a[l] += (double)x[i + l];
    for (; i < n; i++)
        t += (double)x[i];
    for (int l = 0; l < LANES; l++)
        t += a[l];
    return t;
}

/* The group norms' and layer norm's one-pass statistics (nn.c) and row_moments' deviations:
 * SHIFT_LANES (8) interleaved partial sums in double, a fixed order whatever the vector width. */
#define SHIFT_LANES 8

SS_SIMD_CLONES static void shifted_sums(const float *x, int64_t n, double k, double *s1, double *s2)
{
    double a1[SHIFT_LANES] = {0}, a2[SHIFT_LANES] = {0};
    int64_t i = 0;
    for (; i + SHIFT_LANES <= n; i += SHIFT_LANES)
        for (int l = 0; l < SHIFT_LANES; l++) {
            double d = (double)x[i + l] - k;
            a1[l] += d;
            a2[l] += d * d;
        }
    double t1 = 0.0, t2 = 0.0;
    for (; i < n; i++) {
        double d = (double)x[i] - k;
        t1 += d;
        t2 += d * d;
    }
    for (int l = 0; l < SHIFT_LANES; l++) {
        t1 += a1[l];
        t2 += a2[l];
    }
    *s1 = t1;
    *s2 = t2;
}

void ss_cpu_shifted_sums(const float *x, int64_t n, double k, double *s1, double *s2) { shifted_sums(x, n, k, s1, s2); }

double ss_cpu_sum_span_d(const float *x, int64_t n) { return sum_span_d(x, n); }

static void moments_sum(void *arg, int64_t t)
{
    const piece_job *j = arg;
    int64_t r, lo, n = piece_of(j, t, &r, &lo);
    j->part[t] = sum_span_d(j->x + r * j->len + lo, n);
}

static void moments_dev(void *arg, int64_t t)
{
    const piece_job *j = arg;
    int64_t r, lo, n = piece_of(j, t, &r, &lo);
    double s1;
    shifted_sums(j->x + r * j->len + lo, n, j->mean[r], &s1, &j->part[t]);   /* sum of (x - mean)^2 */
}

/* the sum of row r's pieces, in order */
static double row_total(const piece_job *j, int64_t r)
{
    double s = 0.0;
    for (int64_t q = 0; q < j->pieces; q++)
        s += j->part[r * j->pieces + q];
    return s;
}

ss_status ss_cpu_row_moments(ss_pool *p, float *mean, float *std, const float *x, int rows, int64_t len)
{
    if (rows <= 0)
        return SS_OK;
    if (len <= 0) {
        for (int r = 0; r < rows; r++)
            mean[r] = std[r] = NAN;             /* the mean of nothing */
        return SS_OK;
    }
    piece_job job = {.x = x, .len = len, .pieces = (len + ROW_PIECE - 1) / ROW_PIECE};
    job.part = malloc((size_t)(rows * job.pieces) * sizeof *job.part);
    double *m = malloc((size_t)rows * sizeof *m);
    if (!job.part || !m) {
        free(job.part);
        free(m);
        return SS_E_NOMEM;
    }
    ss_pool_for(p, rows * job.pieces, moments_sum, &job);        /* pass 1: the means  */
    for (int r = 0; r < rows; r++)
        m[r] = row_total(&job, r) / (double)len;
    job.mean = m;
    ss_pool_for(p, rows * job.pieces, moments_dev, &job);        /* pass 2: deviations */
    for (int r = 0; r < rows; r++) {
        mean[r] = (float)m[r];
        std[r] = len > 1 ? (float)sqrt(row_total(&job, r) / (double)(len - 1)) : NAN;
    }
    free(job.part);
    free(m);
    return SS_OK;
}

static void glu_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    int64_t b = r / j->ch, c = r % j->ch;
    const float *a = j->x + (b * 2 * j->ch + c) * j->len;
    const float *g = a + (int64_t)j->ch * j->len;
    glu_span(j->y + r * j->len, a, g, j->len);
}

ss_status ss_cpu_glu(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len)
{
    rows_job job = {.y = y, .x = x, .len = len, .ch = ch};
    ss_pool_for(len >= 256 ? p : NULL, (int64_t)batch * ch, glu_row, &job);
    return SS_OK;
}

/* bias + GELU and bias + GLU: rows [t * rows_per_task, ...) of y [batch*ch, len]
 * (short rows grouped as for the channel affine); t holds the bias */
static void bias_gelu_rows(void *arg, int64_t t)
{
    const rows_job *j = arg;
    int64_t r0, r1;
    task_rows(j, t, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        bias_gelu_span(j->y + r * j->len, j->x + r * j->len, j->t[r % j->ch], j->len);
}

static void bias_glu_rows(void *arg, int64_t t)
{
    const rows_job *j = arg;
    int64_t r0, r1;
    task_rows(j, t, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / j->ch, c = r % j->ch;
        const float *a = j->x + (b * 2 * j->ch + c) * j->len, *g = a + (int64_t)j->ch * j->len;
        bias_glu_span(j->y + r * j->len, a, g, j->t[c], j->t[c + j->ch], j->len);
    }
}

ss_status ss_cpu_bias_gelu(ss_pool *p, float *y, const float *x, const float *bias, int batch, int ch, int64_t len)
{
    rows_job job = {.y = y, .x = x, .len = len, .ch = ch, .t = bias, .rows = (int64_t)batch * ch};
    rows_run(p, &job, bias_gelu_rows);
    return SS_OK;
}

ss_status ss_cpu_bias_glu(ss_pool *p, float *y, const float *x, const float *bias, int batch, int ch, int64_t len)
{
    rows_job job = {.y = y, .x = x, .len = len, .ch = ch, .t = bias, .rows = (int64_t)batch * ch};
    rows_run(p, &job, bias_glu_rows);
    return SS_OK;
}

void ss_cpu_softmax_span(float *y, const float *x, int64_t len, float scale)
{
    float mx = max_span(x, len, scale);
    float sum = softmax_exp_span(y, x, len, scale, mx);
    scale_span(y, len, 1.0f / sum);
}

static void softmax_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    ss_cpu_softmax_span(j->y + r * j->len, j->x + r * j->len, j->len, j->scale);
}

ss_status ss_cpu_softmax(ss_pool *p, float *y, const float *x, int rows, int len, float scale)
{
    rows_job job = {.y = y, .x = x, .len = len, .scale = scale};
    ss_pool_for(p, rows, softmax_row, &job);
    return SS_OK;
}

/* ---- transpose in 32x32 tiles ---------------------------------------------- */

typedef struct transpose_job {
    float *y;                  /* [batch, cols, rows] */
    const float *x;            /* [batch, rows, cols] */
    int rows, cols;
    int64_t tiles_r, tiles_c;  /* tiles per matrix    */
} transpose_job;

#define TILE 32

static void transpose_tile(void *arg, int64_t t)
{
    const transpose_job *j = arg;
    int64_t per = j->tiles_r * j->tiles_c, b = t / per, rem = t % per;
    int r0 = (int)(rem / j->tiles_c) * TILE, c0 = (int)(rem % j->tiles_c) * TILE;
    int r1 = r0 + TILE < j->rows ? r0 + TILE : j->rows, c1 = c0 + TILE < j->cols ? c0 + TILE : j->cols;
    const float *x = j->x + b * (int64_t)j->rows * j->cols;
    float *y = j->y + b * (int64_t)j->rows * j->cols;
    for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++)
            y[(int64_t)c * j->rows + r] = x[(int64_t)r * j->cols + c];
}

ss_status ss_cpu_transpose(ss_pool *p, float *y, const float *x, int batch, int rows, int cols)
{
    transpose_job job = {y, x, rows, cols, (rows + TILE - 1) / TILE, (cols + TILE - 1) / TILE};
    ss_pool_for(p, (int64_t)batch * job.tiles_r * job.tiles_c, transpose_tile, &job);
    return SS_OK;
}

/* elementwise.c - CPU reference kernels for the elementwise, layout and
 * reduction ops of backend.h (fill, copy2d, add, scale, affine, moments,
 * GELU, GLU, softmax, transpose).  Large loops are split into blocks run on
 * the pool; results do not depend on the number of threads. */
#include "cpu_ops.h"

#include <math.h>
#include <string.h>

#define BLOCK 16384   /* elements per parallel task */

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

static void fill_body(const range_job *j, size_t lo, size_t hi)
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

ss_status ss_cpu_copy2d(ss_pool *p, float *dst, size_t dpitch, const float *src, size_t spitch,
                        size_t rows, size_t cols)
{
    (void)p;
    for (size_t r = 0; r < rows; r++)
        memmove(dst + r * dpitch, src + r * spitch, cols * sizeof *dst);
    return SS_OK;
}

static void add_body(const range_job *j, size_t lo, size_t hi)
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

static void scale_body(const range_job *j, size_t lo, size_t hi)
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

static void gelu_body(const range_job *j, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        float x = j->a[i];
        j->y[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
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
    float *mean, *std;      /* moments outputs                   */
    float scale;            /* softmax temperature               */
} rows_job;

static void channel_affine_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    int c = (int)(r % j->ch);
    float s = j->s ? j->s[c] : 1.0f, t = j->t ? j->t[c] : 0.0f;
    const float *x = j->x + r * j->len;
    float *y = j->y + r * j->len;
    for (int64_t i = 0; i < j->len; i++)
        y[i] = x[i] * s + t;
}

ss_status ss_cpu_channel_affine(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                                const float *scale, const float *bias)
{
    rows_job job = {.y = y, .x = x, .len = len, .ch = ch, .s = scale, .t = bias};
    ss_pool_for(len >= 256 ? p : NULL, (int64_t)batch * ch, channel_affine_row, &job);
    return SS_OK;
}

static void row_affine_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    float s = j->s[r], t = j->t[r];
    const float *x = j->x + r * j->len;
    float *y = j->y + r * j->len;
    for (int64_t i = 0; i < j->len; i++)
        y[i] = x[i] * s + t;
}

ss_status ss_cpu_row_affine(ss_pool *p, float *y, const float *x, int rows, int64_t len,
                            const float *scale, const float *shift)
{
    rows_job job = {.y = y, .x = x, .len = len, .s = scale, .t = shift};
    ss_pool_for(p, rows, row_affine_row, &job);
    return SS_OK;
}

static void moments_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    const float *x = j->x + r * j->len;
    double sum = 0.0;
    for (int64_t i = 0; i < j->len; i++)
        sum += x[i];
    double mean = sum / (double)j->len, ss = 0.0;
    for (int64_t i = 0; i < j->len; i++) {
        double d = x[i] - mean;
        ss += d * d;
    }
    j->mean[r] = (float)mean;
    j->std[r] = j->len > 1 ? (float)sqrt(ss / (double)(j->len - 1)) : NAN;
}

ss_status ss_cpu_row_moments(ss_pool *p, float *mean, float *std, const float *x, int rows, int64_t len)
{
    rows_job job = {.x = x, .len = len, .mean = mean, .std = std};
    ss_pool_for(p, rows, moments_row, &job);
    return SS_OK;
}

static void glu_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    int64_t b = r / j->ch, c = r % j->ch;
    const float *a = j->x + (b * 2 * j->ch + c) * j->len;
    const float *g = a + (int64_t)j->ch * j->len;
    float *y = j->y + r * j->len;
    for (int64_t i = 0; i < j->len; i++)
        y[i] = a[i] / (1.0f + expf(-g[i]));
}

ss_status ss_cpu_glu(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len)
{
    rows_job job = {.y = y, .x = x, .len = len, .ch = ch};
    ss_pool_for(len >= 256 ? p : NULL, (int64_t)batch * ch, glu_row, &job);
    return SS_OK;
}

static void softmax_row(void *arg, int64_t r)
{
    const rows_job *j = arg;
    const float *x = j->x + r * j->len;
    float *y = j->y + r * j->len;
    float mx = -INFINITY;
    for (int64_t i = 0; i < j->len; i++)
        mx = fmaxf(mx, j->scale * x[i]);
    float sum = 0.0f;
    for (int64_t i = 0; i < j->len; i++) {
        y[i] = expf(j->scale * x[i] - mx);
        sum += y[i];
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < j->len; i++)
        y[i] *= inv;
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

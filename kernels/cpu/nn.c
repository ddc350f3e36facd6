/* nn.c - CPU kernels for normalisation, matrix products and convolutions.
 *
 * Contracts are those of the wrappers in src/backend.h.  Norm statistics are
 * accumulated in double (group norm: one pass of shifted sums per chunk, the
 * chunks merged in order; layer norm: mean, then squared deviations).  Matrix
 * products go to single-threaded cblas_sgemm calls spread over the pool (the
 * CPU backend keeps OpenBLAS at one thread, so its own threads never spin
 * against ours): many independent products run one per task, one large
 * product is cut into column (or row) blocks.  Convolutions lower to sgemm
 * through im2col (conv2d) or col2im (transposed conv2d), a block of output
 * positions at a time so the column buffer stays small; a batch of many
 * items (the frequency-branch DConv sees one item per frequency row) runs one
 * item per task.  3x3 convolutions with stride 1 and padding 1 (the decoder
 * rewrite convs) go through Winograd F(4x4, 3x3) instead: 36 products of
 * transformed filters and tiles, 4x fewer multiply-adds.  1-D convolutions
 * with stride 1 and more than one tap (the DConv dilated convs) need no
 * im2col at all: one product per tap on the input read in place.
 */
#include "cpu_ops.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef SS_ACCELERATE
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

/* Elements handled by one task of a memory-bound parallel loop. */
#define NN_CHUNK ((int64_t)1 << 15)
/* Floats in one im2col / col2im column buffer (16 MiB). */
#define NN_COL_FLOATS ((size_t)1 << 22)
/* Products smaller than this many multiply-adds run in one call. */
#define NN_GEMM_SPLIT ((int64_t)1 << 21)

/* ---- the one entry into BLAS ------------------------------------------------------ */

#if defined(OPENBLAS_VERSION)
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one_thread(void) { openblas_set_num_threads(1); }
#endif

/* Every product of the CPU kernels goes through here, single-threaded: the kernels spread calls
 * over their own pool.  A multi-threaded OpenBLAS would also cut each call over its own threads,
 * with its own block edges, and an element's sum then depends on which edge kernel computed it
 * (AVX-512 OpenBLAS 0.3.21: a 300x700x33 product gave other bits at 2 threads than at 1), so the
 * kernels, not their callers, pin it to one thread on first use. */
void ss_cpu_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc)
{
#if defined(OPENBLAS_VERSION)
    pthread_once(&blas_once, blas_one_thread);
#endif
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}

/* ---- sgemm spread over the pool ------------------------------------------------- */

typedef struct gemm_job {
    int ta, tb, m, n, k;       /* as cblas_sgemm, row-major          */
    float alpha, beta;
    const float *a, *b;
    float *c;
    int lda, ldb, ldc;
    int bm, bn;                /* rows and columns per task          */
    int gn;                    /* column blocks                      */
} gemm_job;

static void gemm_block(void *arg, int64_t t)
{
    const gemm_job *j = arg;
    int r0 = (int)(t / j->gn) * j->bm, c0 = (int)(t % j->gn) * j->bn;
    int rows = j->m - r0 < j->bm ? j->m - r0 : j->bm, cols = j->n - c0 < j->bn ? j->n - c0 : j->bn;
    const float *a = j->ta ? j->a + r0 : j->a + (int64_t)r0 * j->lda;
    const float *b = j->tb ? j->b + (int64_t)c0 * j->ldb : j->b + c0;
    ss_cpu_sgemm(j->ta, j->tb, rows, cols,
                j->k, j->alpha, a, j->lda, b, j->ldb, j->beta, j->c + (int64_t)r0 * j->ldc + c0, j->ldc);
}

/* per-task blocks of side s cut in g: multiples of 16, at least 32 */
static int gemm_side(int s, int g)
{
    int b = (s + g - 1) / g;
    b = (b + 15) / 16 * 16;
    return b < 32 ? 32 : b;
}

/* Blocks of at least this many multiply-adds: OpenBLAS takes its small-matrix kernels (another
 * order of summation) below about 1e6 on AVX-512 machines, so a product big enough to be cut
 * (NN_GEMM_SPLIT) gives the same bits in blocks as in one call. */
#define NN_GEMM_BLOCK_MIN ((int64_t)1 << 20)

/* The grid of a product cut in t blocks (gm x gn = t, blocks rounded by gemm_side): *bm, *bn; 0
 * where no grid of t blocks keeps every block (the last ones are the smallest) at
 * NN_GEMM_BLOCK_MIN.  Each call packs its rows of A and its columns of B, so a grid packs A gn
 * times and B gm times; the longer side is cut unless a grid packs at least 15% less. */
static int gemm_grid(int m, int n, int k, int t, int *bm, int *bn)
{
    int base = -1, best = -1, side_gm = n >= m ? 1 : t;
    double base_cost = 0.0, best_cost = 0.0;
    for (int gm = 1; gm <= t; gm++) {
        if (t % gm)
            continue;
        int rm = gemm_side(m, gm), rn = gemm_side(n, t / gm);
        rm = rm < m ? rm : m;
        rn = rn < n ? rn : n;
        int am = (m + rm - 1) / rm, an = (n + rn - 1) / rn;
        if ((int64_t)(m - (am - 1) * rm) * (n - (an - 1) * rn) * k < NN_GEMM_BLOCK_MIN)
            continue;
        double cost = (double)an * m + (double)am * n;
        if (gm == side_gm) {
            base = gm;
            base_cost = cost;
        }
        if (best < 0 || cost < best_cost) {
            best = gm;
            best_cost = cost;
        }
    }
    if (best < 0)
        return 0;
    int gm = base >= 0 && best_cost > 0.85 * base_cost ? base : best;
    *bm = gemm_side(m, gm);
    *bn = gemm_side(n, t / gm);
    *bm = *bm < m ? *bm : m;
    *bn = *bn < n ? *bn : n;
    return 1;
}

/* C = alpha op(A) op(B) + beta C (row-major), cut into blocks over the pool: about two per thread,
 * fewer where blocks would drop below NN_GEMM_BLOCK_MIN.  At 16 threads, cutting only the rows had
 * every task pack all of a linear's weights (one core running a 16-thread grid's tasks: 2-25% less
 * time for the transformer's products); at 2 threads the transformer's products keep their row
 * blocks.  Every element is the same sum whatever the grid (OpenBLAS blocks the k loop by k alone),
 * so the result does not depend on the thread count. */
static void par_sgemm(ss_pool *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc)
{
    int threads = ss_pool_threads(p);
    gemm_job j = {ta, tb, m, n, k, alpha, beta, a, b, c, lda, ldb, ldc, m, n, 1};
    if (threads > 1 && (int64_t)m * n * k >= NN_GEMM_SPLIT)
        for (int t = 2 * threads; t >= 2; t--)
            if (gemm_grid(m, n, k, t, &j.bm, &j.bn))
                break;
    j.gn = (n + j.bn - 1) / j.bn;
    int64_t units = (int64_t)((m + j.bm - 1) / j.bm) * j.gn;
    ss_pool_for(units > 1 ? p : NULL, units, gemm_block, &j);
}

/* ---- group norm ---------------------------------------------------------------- */

/* y = (x - m) * a + b in double: folding the mean into b would cancel badly
 * when the variance is tiny */
SS_SIMD_CLONES static void affine_span(float *y, const float *x, int64_t n, double m, double a, double b)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (float)(((double)x[i] - m) * a + b);
}

/* A group is `n` contiguous floats; it is cut into chunks of NN_CHUNK so that
 * even one huge group (GroupNorm(1, C)) spreads over the pool. */
typedef struct gn_job {
    float *y;                 /* output; glu_add: the x added to          */
    const float *x;           /* normalised tensor [batch, ch, len]       */
    int ch, groups;
    int64_t len;
    int64_t group_n;          /* (ch / groups) * len                      */
    int64_t chunks_per_group; /* ceil(group_n / NN_CHUNK)                 */
    const float *gamma, *beta;
    double *partial;          /* [batch * groups * chunks_per_group, 2]:
                                 chunk mean and sum of squared deviations */
    double *mean, *rstd;      /* [batch * groups]                          */
} gn_job;

/* one pass per chunk: its mean and sum of squared deviations (M2) */
static void gn_stats(void *arg, int64_t t)
{
    gn_job *j = arg;
    int64_t g = t / j->chunks_per_group, c = t % j->chunks_per_group;
    int64_t lo = c * NN_CHUNK, hi = lo + NN_CHUNK < j->group_n ? lo + NN_CHUNK : j->group_n;
    const float *x = j->x + g * j->group_n + lo;
    double n = (double)(hi - lo), k = x[0], s1, s2;
    ss_cpu_shifted_sums(x, hi - lo, k, &s1, &s2);
    j->partial[2 * t] = k + s1 / n;
    j->partial[2 * t + 1] = s2 - s1 * s1 / n > 0.0 ? s2 - s1 * s1 / n : 0.0;
}

/* mean and scale of channel row r = (batch, c): y = (x - m) * a + b */
static void gn_coef(const gn_job *j, int64_t r, double *m, double *a, double *b)
{
    int c = (int)(r % j->ch);
    int64_t g = (r / j->ch) * j->groups + c / (j->ch / j->groups);
    *m = j->mean[g];
    *a = j->rstd[g] * (j->gamma ? j->gamma[c] : 1.0f);
    *b = j->beta ? j->beta[c] : 0.0;
}

/* one task per (batch, channel) row of `len` floats */
static void gn_apply(void *arg, int64_t r)
{
    gn_job *j = arg;
    double m, a, b;
    gn_coef(j, r, &m, &a, &b);
    affine_span(j->y + r * j->len, j->x + r * j->len, j->len, m, a, b);
}

/* The fused applies work through a row in spans that stay in L1. */
#define NN_SPAN 1024

static void gn_apply_gelu(void *arg, int64_t r)
{
    gn_job *j = arg;
    double m, a, b;
    gn_coef(j, r, &m, &a, &b);
    float t[NN_SPAN];
    const float *x = j->x + r * j->len;
    float *y = j->y + r * j->len;
    for (int64_t o = 0; o < j->len; o += NN_SPAN) {
        int64_t n = j->len - o < NN_SPAN ? j->len - o : NN_SPAN;
        affine_span(t, x + o, n, m, a, b);
        ss_cpu_gelu_span(y + o, t, n);
    }
}

/* output row r = (batch, c) of y [batch, ch/2, len]: the GLU's halves are rows
 * (batch, c) and (batch, ch/2 + c) of the normalised tensor */
SS_VECTORISE static void gn_apply_glu_add(void *arg, int64_t r)
{
    gn_job *j = arg;
    int half = j->ch / 2;
    int64_t bt = r / half, c = r % half, ra = bt * j->ch + c, rb = ra + half;
    double ma, aa, ba, mb, ab, bb;
    gn_coef(j, ra, &ma, &aa, &ba);
    gn_coef(j, rb, &mb, &ab, &bb);
    float ta[NN_SPAN], tg[NN_SPAN], to[NN_SPAN];
    float *y = j->y + r * j->len;
    for (int64_t o = 0; o < j->len; o += NN_SPAN) {
        int64_t n = j->len - o < NN_SPAN ? j->len - o : NN_SPAN;
        affine_span(ta, j->x + ra * j->len + o, n, ma, aa, ba);
        affine_span(tg, j->x + rb * j->len + o, n, mb, ab, bb);
        ss_cpu_glu_span(to, ta, tg, n);
        for (int64_t i = 0; i < n; i++)
            y[o + i] = y[o + i] + to[i];
    }
}

/* Statistics of x [batch, ch, len] in `groups` groups, then `apply` over `rows`
 * tasks writing y. */
static ss_status gn_run(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                        const float *gamma, const float *beta, float eps, int64_t rows,
                        void (*apply)(void *, int64_t))
{
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (groups <= 0 || ch % groups != 0)
        return SS_E_INTERNAL;
    gn_job job = {.y = y, .x = x, .ch = ch, .groups = groups, .len = len, .gamma = gamma, .beta = beta};
    gn_job *j = &job;
    j->group_n = (int64_t)(j->ch / j->groups) * j->len;
    j->chunks_per_group = (j->group_n + NN_CHUNK - 1) / NN_CHUNK;
    int64_t ng = (int64_t)batch * j->groups, nt = ng * j->chunks_per_group;
    j->partial = malloc((size_t)nt * 2 * sizeof *j->partial);
    j->mean = malloc((size_t)ng * sizeof *j->mean);
    j->rstd = malloc((size_t)ng * sizeof *j->rstd);
    ss_status st = SS_E_NOMEM;
    if (j->partial && j->mean && j->rstd) {
        ss_pool_for(p, nt, gn_stats, j);
        for (int64_t g = 0; g < ng; g++) {
            /* merge the chunks in order (Chan et al.): counts na, nb -> na + nb */
            const double *q = j->partial + 2 * g * j->chunks_per_group;
            double mean = q[0], m2 = q[1], na = (double)(NN_CHUNK < j->group_n ? NN_CHUNK : j->group_n);
            for (int64_t c = 1; c < j->chunks_per_group; c++) {
                int64_t lo = c * NN_CHUNK;
                double nb = (double)(lo + NN_CHUNK < j->group_n ? NN_CHUNK : j->group_n - lo), nab = na + nb;
                double delta = q[2 * c] - mean;
                mean += delta * (nb / nab);
                m2 += q[2 * c + 1] + delta * delta * (na * nb / nab);
                na = nab;
            }
            j->mean[g] = mean;
            j->rstd[g] = 1.0 / sqrt(m2 / (double)j->group_n + (double)eps);
        }
        ss_pool_for(p, rows, apply, j);
        st = SS_OK;
    }
    free(j->partial);
    free(j->mean);
    free(j->rstd);
    return st;
}

ss_status ss_cpu_group_norm(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                            int groups, const float *gamma, const float *beta, float eps)
{
    return gn_run(p, y, x, batch, ch, len, groups, gamma, beta, eps, (int64_t)batch * ch, gn_apply);
}

ss_status ss_cpu_group_norm_gelu(ss_pool *p, float *y, const float *x, int batch, int ch, int64_t len,
                                 int groups, const float *gamma, const float *beta, float eps)
{
    return gn_run(p, y, x, batch, ch, len, groups, gamma, beta, eps, (int64_t)batch * ch, gn_apply_gelu);
}

/* the norm runs over g's 2ch channels; one task per row of x */
ss_status ss_cpu_group_norm_glu_add(ss_pool *p, float *x, const float *g, int batch, int ch, int64_t len,
                                    int groups, const float *gamma, const float *beta, float eps)
{
    return gn_run(p, x, g, batch, 2 * ch, len, groups, gamma, beta, eps, (int64_t)batch * ch, gn_apply_glu_add);
}

/* ---- layer norm ---------------------------------------------------------------- */

typedef struct ln_job {
    float *y;
    const float *x;
    int rows, dim, rows_per_task;
    const float *gamma, *beta;
    float eps;
} ln_job;

SS_SIMD_CLONES static void ln_rows(void *arg, int64_t t)
{
    ln_job *j = arg;
    int r0 = (int)t * j->rows_per_task;
    int r1 = r0 + j->rows_per_task < j->rows ? r0 + j->rows_per_task : j->rows;
    for (int r = r0; r < r1; r++) {
        const float *x = j->x + (int64_t)r * j->dim;
        float *y = j->y + (int64_t)r * j->dim;
        double s1, s2, k = x[0];
        ss_cpu_shifted_sums(x, j->dim, k, &s1, &s2);          /* in lanes: vectorised */
        double m = k + s1 / j->dim, v = s2 - s1 * s1 / j->dim > 0.0 ? s2 - s1 * s1 / j->dim : 0.0;
        double rs = 1.0 / sqrt(v / j->dim + (double)j->eps);
        const float *g = j->gamma, *b = j->beta;
        int n = j->dim;
        if (g && b)            /* one loop per case, so that each vectorises */
            for (int i = 0; i < n; i++)
                y[i] = (float)((x[i] - m) * rs * g[i] + b[i]);
        else if (g)
            for (int i = 0; i < n; i++)
                y[i] = (float)((x[i] - m) * rs * g[i]);
        else if (b)
            for (int i = 0; i < n; i++)
                y[i] = (float)((x[i] - m) * rs + b[i]);
        else
            for (int i = 0; i < n; i++)
                y[i] = (float)((x[i] - m) * rs);
    }
}

ss_status ss_cpu_layer_norm(ss_pool *p, float *y, const float *x, int rows, int dim,
                            const float *gamma, const float *beta, float eps)
{
    if (rows <= 0 || dim <= 0)
        return SS_OK;
    ln_job j = {.y = y, .x = x, .rows = rows, .dim = dim, .gamma = gamma, .beta = beta, .eps = eps};
    j.rows_per_task = (int)(NN_CHUNK / dim) > 0 ? (int)(NN_CHUNK / dim) : 1;
    ss_pool_for(p, (rows + j.rows_per_task - 1) / j.rows_per_task, ln_rows, &j);
    return SS_OK;
}

/* ---- RMS norm ------------------------------------------------------------------ */

typedef struct rms_job {
    float *y;
    const float *x;
    int rows, dim, rows_per_task;
    const float *gamma;
    float eps;
    ss_rms_form form;
} rms_job;

SS_SIMD_CLONES static void rms_rows(void *arg, int64_t t)
{
    const rms_job *j = arg;
    int r0 = (int)t * j->rows_per_task, r1 = r0 + j->rows_per_task < j->rows ? r0 + j->rows_per_task : j->rows;
    for (int r = r0; r < r1; r++) {
        const float *x = j->x + (int64_t)r * j->dim;
        float *y = j->y + (int64_t)r * j->dim;
        double s1, s2;
        ss_cpu_shifted_sums(x, j->dim, 0.0, &s1, &s2);        /* s2 = sum of squares */
        double f;
        if (j->form == SS_RMS_L2) {
            double norm = sqrt(s2);
            f = sqrt((double)j->dim) / (norm > (double)j->eps ? norm : (double)j->eps);
        } else {
            f = 1.0 / sqrt(s2 / j->dim + (double)j->eps);
        }
        float ff = (float)f;
        const float *g = j->gamma;
        int n = j->dim;
        if (g)
            for (int i = 0; i < n; i++)
                y[i] = x[i] * ff * g[i];
        else
            for (int i = 0; i < n; i++)
                y[i] = x[i] * ff;
    }
}

ss_status ss_cpu_rms_norm(ss_pool *p, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                          ss_rms_form form)
{
    if (rows <= 0 || dim <= 0)
        return SS_OK;
    rms_job j = {.y = y, .x = x, .rows = rows, .dim = dim, .gamma = gamma, .eps = eps, .form = form};
    j.rows_per_task = (int)(NN_CHUNK / dim) > 0 ? (int)(NN_CHUNK / dim) : 1;
    ss_pool_for(p, (rows + j.rows_per_task - 1) / j.rows_per_task, rms_rows, &j);
    return SS_OK;
}

/* ---- gemm ------------------------------------------------------------------------ */

typedef struct gemm_batch_job {
    const ss_gemm_desc *d;
    const float *a, *b;
    float *c;
} gemm_batch_job;

/* One whole product of the batch, single-threaded. */
static void gemm_item(void *arg, int64_t i)
{
    const gemm_batch_job *j = arg;
    const ss_gemm_desc *d = j->d;
    const float *ai = j->a + i * d->stride_a, *bi = j->b + i * d->stride_b;
    float *ci = j->c + i * d->stride_c;
    ss_cpu_sgemm(d->trans_a, d->trans_b,
                d->m, d->n, d->k, d->alpha, ai, d->lda, bi, d->ldb, d->beta, ci, d->ldc);
}

/* A rank-1 product (k == 1, e.g. a bias broadcast over rows as ones b^T):
 * C = alpha a b^T + beta C in one pass; BLAS would first scale C by beta in
 * a pass of its own.  Tasks take rows of one batch item. */
typedef struct rank1_job {
    const ss_gemm_desc *d;
    const float *a, *b;
    float *c;
    int rows_per_task, tasks_per_item;
} rank1_job;

SS_VECTORISE static void rank1_row(float *c, const float *b, int64_t bstride, int n, float alpha_a, float beta)
{
    if (beta == 0.0f) {
        if (bstride == 1)
            for (int q = 0; q < n; q++)
                c[q] = alpha_a * b[q];
        else
            for (int q = 0; q < n; q++)
                c[q] = alpha_a * b[q * bstride];
    } else {
        for (int q = 0; q < n; q++)
            c[q] = alpha_a * b[q * bstride] + beta * c[q];
    }
}

static void rank1_rows(void *arg, int64_t t)
{
    const rank1_job *j = arg;
    const ss_gemm_desc *d = j->d;
    int64_t item = t / j->tasks_per_item;
    int r0 = (int)(t % j->tasks_per_item) * j->rows_per_task;
    int r1 = r0 + j->rows_per_task < d->m ? r0 + j->rows_per_task : d->m;
    const float *a = j->a + (d->batch > 1 ? item * d->stride_a : 0);
    const float *b = j->b + (d->batch > 1 ? item * d->stride_b : 0);
    float *c = j->c + (d->batch > 1 ? item * d->stride_c : 0);
    /* op(A) [m, 1]: a[r] (stored [1, m]) or a[r * lda]; op(B) [1, n]: b[q] or b[q * ldb] */
    int64_t as = d->trans_a ? 1 : d->lda, bs = d->trans_b ? d->ldb : 1;
    for (int r = r0; r < r1; r++)
        rank1_row(c + (int64_t)r * d->ldc, b, bs, d->n, d->alpha * a[r * as], d->beta);
}

ss_status ss_cpu_gemm(ss_pool *p, const ss_gemm_desc *d, const float *a, const float *b, float *c)
{
    if (d->m <= 0 || d->n <= 0 || d->batch <= 0)
        return SS_OK;
    if (d->k <= 0) {
        /* empty product: C = beta C (BLAS may not touch C at all) */
        for (int i = 0; i < d->batch; i++) {
            float *ci = c + (d->batch > 1 ? i * d->stride_c : 0);
            for (int r = 0; r < d->m; r++)
                for (int q = 0; q < d->n; q++)
                    ci[(int64_t)r * d->ldc + q] = d->beta == 0.0f ? 0.0f : d->beta * ci[(int64_t)r * d->ldc + q];
        }
        return SS_OK;
    }
    if (d->k == 1) {
        rank1_job j = {d, a, b, c, 0, 0};
        j.rows_per_task = (int)(NN_CHUNK / d->n) > 0 ? (int)(NN_CHUNK / d->n) : 1;
        j.tasks_per_item = (d->m + j.rows_per_task - 1) / j.rows_per_task;
        ss_pool_for(p, (int64_t)d->batch * j.tasks_per_item, rank1_rows, &j);
        return SS_OK;
    }
    if (d->batch > 1 && d->batch >= ss_pool_threads(p)) {
        gemm_batch_job j = {d, a, b, c};
        ss_pool_for(p, d->batch, gemm_item, &j);
        return SS_OK;
    }
    for (int i = 0; i < d->batch; i++)
        par_sgemm(p, d->trans_a, d->trans_b, d->m, d->n, d->k, d->alpha, a + (d->batch > 1 ? i * d->stride_a : 0),
                  d->lda, b + (d->batch > 1 ? i * d->stride_b : 0), d->ldb, d->beta,
                  c + (d->batch > 1 ? i * d->stride_c : 0), d->ldc);
    return SS_OK;
}

/* ---- conv2d: im2col + sgemm ------------------------------------------------------ */

/* y [batch, ch, len] = bias[c] (0 without bias); one task per row */
typedef struct bias_job {
    float *y;
    const float *bias;
    int ch;
    int64_t len;
} bias_job;

SS_VECTORISE static void bias_fill_row(void *arg, int64_t r)
{
    const bias_job *j = arg;
    float v = j->bias ? j->bias[r % j->ch] : 0.0f, *y = j->y + r * j->len;
    for (int64_t i = 0; i < j->len; i++)
        y[i] = v;
}

/* Column block [cin*kh*kw, ncols] for output positions [p0, p0 + ncols) of one
 * batch item; one task per row (ci, ki, kj). */
typedef struct im2col_job {
    const ss_conv2d_desc *d;
    const float *x;    /* [cin, h, w] of this batch item */
    float *col;        /* [cin*kh*kw, ncols]              */
    int oh, ow;
    int64_t p0, ncols;
} im2col_job;

static void im2col_row(void *arg, int64_t r)
{
    const im2col_job *j = arg;
    const ss_conv2d_desc *d = j->d;
    int kj = (int)(r % d->kw), ki = (int)((r / d->kw) % d->kh), ci = (int)(r / ((int64_t)d->kw * d->kh));
    const float *xc = j->x + (int64_t)ci * d->h * d->w;
    float *out = j->col + r * j->ncols;
    int64_t q = 0;
    int oy = (int)(j->p0 / j->ow), ox = (int)(j->p0 % j->ow);
    while (q < j->ncols) {
        int run = j->ow - ox;
        if (run > j->ncols - q)
            run = (int)(j->ncols - q);
        int iy = oy * d->sh - d->ph + ki * d->dh;
        if (iy < 0 || iy >= d->h) {
            memset(out + q, 0, (size_t)run * sizeof *out);
        } else {
            const float *xr = xc + (int64_t)iy * d->w;
            int ix = ox * d->sw - d->pw + kj * d->dw;
            if (d->sw == 1 && ix >= 0 && ix + run <= d->w) {
                memcpy(out + q, xr + ix, (size_t)run * sizeof *out);
            } else {
                for (int t = 0; t < run; t++, ix += d->sw)
                    out[q + t] = (ix >= 0 && ix < d->w) ? xr[ix] : 0.0f;
            }
        }
        q += run;
        ox = 0;
        oy++;
    }
}

typedef struct conv_job {
    const ss_conv2d_desc *d;
    const float *x, *w;
    float *y;
    int oh, ow;
    int64_t npos, kdim, in_size, out_size, block;
    float beta;          /* 1 when y already holds the bias          */
    ss_pool *pool;       /* set: parallelise inside one item         */
    int fail;            /* a column buffer could not be allocated   */
} conv_job;

/* y[b] = w @ im2col(x[b]) (+ y[b] when beta is 1), block by block. */
static void conv_item(void *arg, int64_t b)
{
    conv_job *j = arg;
    const ss_conv2d_desc *d = j->d;
    const float *xb = j->x + b * j->in_size;
    float *yb = j->y + b * j->out_size;
    if (d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0) {
        /* pointwise: y[b] [cout, h*w] = w [cout, cin] @ x[b] [cin, h*w] */
        par_sgemm(j->pool, 0, 0, d->cout, (int)j->npos, d->cin, 1.0f, j->w, d->cin, xb, (int)j->npos, j->beta,
                  yb, (int)j->npos);
        return;
    }
    float *col = malloc((size_t)(j->kdim * j->block) * sizeof *col);
    if (!col) {
        j->fail = 1;
        return;
    }
    for (int64_t p0 = 0; p0 < j->npos; p0 += j->block) {
        int64_t nc = j->npos - p0 < j->block ? j->npos - p0 : j->block;
        im2col_job ij = {.d = d, .x = xb, .col = col, .oh = j->oh, .ow = j->ow, .p0 = p0, .ncols = nc};
        ss_pool_for(j->pool, j->kdim, im2col_row, &ij);
        /* y[b][:, p0:p0+nc] = w [cout, kdim] @ col [kdim, nc] */
        par_sgemm(j->pool, 0, 0, d->cout, (int)nc, (int)j->kdim, 1.0f, j->w, (int)j->kdim, col, (int)nc, j->beta,
                  yb + p0, (int)j->npos);
    }
    free(col);
}

/* ---- conv2d 3x3, stride 1, padding 1: Winograd F(2x2, 3x3) / F(4x4, 3x3) ------------ */

/* Lavin & Gray's minimal filtering: each m x m output tile (m = 2 or 4) is
 * A^T [(G g G^T) .* (B^T d B)] A for the a x a input tile d (a = m + 2, stride m,
 * padding included) and the 3x3 filter g.  F(2x2, 3x3):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4x4, 3x3):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
 * Summed over input channels the elementwise product becomes a*a independent
 * products U[k] [cout, cin] @ V[k] [cin, tiles] -> M[k] [cout, tiles]: 2.25x
 * (m = 2) or 4x (m = 4) fewer multiply-adds than the direct (im2col) product.
 * Tiles are numbered over (batch, tile row, tile column) and handled a block
 * at a time, output channels a group at a time, so that U, V and M stay within
 * WG_BUDGET floats whatever the plane size; block and group sizes depend only
 * on the shape, and every task (one input channel, one product, one output
 * channel) does a fixed piece of work, so the result does not depend on the
 * thread count. */

/* Floats of transformed filters, inputs and products (16 MiB, as im2col). */
#define WG_BUDGET ((int64_t)NN_COL_FLOATS)
/* Tile columns transformed from one stack buffer. */
#define WG_CHUNK 64

/* The input and output transforms only add, subtract and scale by powers of two, exact with or
 * without fused multiply-adds, so every clone of them (SS_SIMD_CLONES) gives the same bits. */

typedef struct wino_job {
    const ss_conv2d_desc *d;
    const float *x, *w, *bias;
    float *y;
    float *u;             /* [a*a, cg, cin] of the group  */
    float *v;             /* [a*a, cin, nt] of the block  */
    float *m;             /* [a*a, cg, nt] of the block   */
    int tm, ta;           /* output tile m, input tile a = m + 2 */
    int th, tw;           /* tile rows and columns of one plane  */
    int co0, cg;          /* output channels [co0, co0 + cg)     */
    int64_t t0, nt;       /* tiles [t0, t0 + nt) of this block   */
} wino_job;

/* G for m = 2 and m = 4 (a x 3, row-major) */
static const double wg_g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double wg_g4[6][3] = {{1.0 / 4, 0, 0},
                                   {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                   {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                   {0, 0, 1}};

/* u[k * ku + i] = (G g G^T)[k] for n filters whose 9 taps are g[e][i]; in
 * double, rounded once. */
SS_SIMD_CLONES static void wino_filter_span(const double (*g)[WG_CHUNK], int n, int a, float *u, int64_t ku)
{
    const double(*gm)[3] = a == 4 ? wg_g2 : wg_g4;
    double t[6][3][WG_CHUNK];                         /* G g */
    for (int r = 0; r < a; r++)
        for (int q = 0; q < 3; q++) {
            double c0 = gm[r][0], c1 = gm[r][1], c2 = gm[r][2];
            for (int i = 0; i < n; i++)
                t[r][q][i] = c0 * g[q][i] + c1 * g[3 + q][i] + c2 * g[6 + q][i];
        }
    for (int r = 0; r < a; r++)                       /* (G g) G^T */
        for (int q = 0; q < a; q++) {
            double c0 = gm[q][0], c1 = gm[q][1], c2 = gm[q][2];
            float *restrict uk = u + (r * a + q) * ku;
            for (int i = 0; i < n; i++)
                uk[i] = (float)(c0 * t[r][0][i] + c1 * t[r][1][i] + c2 * t[r][2][i]);
        }
}

/* U[k][c][ci] = (G g G^T)[k] for output channel co0 + c of the group. */
static void wino_filter(void *arg, int64_t c)
{
    const wino_job *j = arg;
    int cin = j->d->cin;
    const float *w = j->w + (j->co0 + c) * (int64_t)cin * 9;
    double g[9][WG_CHUNK];
    for (int ci0 = 0; ci0 < cin; ci0 += WG_CHUNK) {
        int n = cin - ci0 < WG_CHUNK ? cin - ci0 : WG_CHUNK;
        for (int i = 0; i < n; i++)
            for (int e = 0; e < 9; e++)
                g[e][i] = w[(int64_t)(ci0 + i) * 9 + e];
        wino_filter_span((const double(*)[WG_CHUNK])g, n, j->ta, j->u + c * (int64_t)cin + ci0,
                         (int64_t)j->cg * cin);
    }
}

/* The 16 components of B^T d B (m = 2) for n tiles from 4 padded input rows
 * (tile i covers columns 2i .. 2i+3), component k stored at v[k * ks + i]. */
SS_SIMD_CLONES static void wino_input2(float (*r)[4 * WG_CHUNK + 2], int n, float *v, int64_t ks)
{
    float w[4][2 * WG_CHUNK + 2];
    for (int c = 0; c < 2 * n + 2; c++) {             /* B^T d */
        w[0][c] = r[0][c] - r[2][c];
        w[1][c] = r[1][c] + r[2][c];
        w[2][c] = r[2][c] - r[1][c];
        w[3][c] = r[1][c] - r[3][c];
    }
    for (int q = 0; q < 4; q++) {                     /* (B^T d) B */
        float *restrict v0 = v + (4 * q) * ks, *restrict v1 = v0 + ks, *restrict v2 = v1 + ks;
        float *restrict v3 = v2 + ks;
        const float *wq = w[q];
        for (int i = 0; i < n; i++) {
            float x0 = wq[2 * i], x1 = wq[2 * i + 1], x2 = wq[2 * i + 2], x3 = wq[2 * i + 3];
            v0[i] = x0 - x2;
            v1[i] = x1 + x2;
            v2[i] = x2 - x1;
            v3[i] = x1 - x3;
        }
    }
}

/* The 36 components of B^T d B (m = 4) for n tiles from 6 padded input rows
 * (tile i covers columns 4i .. 4i+5), component k stored at v[k * ks + i]. */
SS_SIMD_CLONES static void wino_input4(float (*r)[4 * WG_CHUNK + 2], int n, float *v, int64_t ks)
{
    float w[6][4 * WG_CHUNK + 2];
    for (int c = 0; c < 4 * n + 2; c++) {             /* B^T d */
        float r0 = r[0][c], r1 = r[1][c], r2 = r[2][c], r3 = r[3][c], r4 = r[4][c], r5 = r[5][c];
        w[0][c] = 4.0f * (r0 - r2) + (r4 - r2);
        w[1][c] = (r3 + r4) - 4.0f * (r1 + r2);
        w[2][c] = 4.0f * (r1 - r2) + (r4 - r3);
        w[3][c] = 2.0f * (r3 - r1) + (r4 - r2);
        w[4][c] = 2.0f * (r1 - r3) + (r4 - r2);
        w[5][c] = 4.0f * (r1 - r3) + (r5 - r3);
    }
    for (int q = 0; q < 6; q++) {                     /* (B^T d) B */
        float *restrict v0 = v + (6 * q) * ks, *restrict v1 = v0 + ks, *restrict v2 = v1 + ks;
        float *restrict v3 = v2 + ks, *restrict v4 = v3 + ks, *restrict v5 = v4 + ks;
        const float *wq = w[q];
        for (int i = 0; i < n; i++) {
            float x0 = wq[4 * i], x1 = wq[4 * i + 1], x2 = wq[4 * i + 2];
            float x3 = wq[4 * i + 3], x4 = wq[4 * i + 4], x5 = wq[4 * i + 5];
            v0[i] = 4.0f * (x0 - x2) + (x4 - x2);
            v1[i] = (x3 + x4) - 4.0f * (x1 + x2);
            v2[i] = 4.0f * (x1 - x2) + (x4 - x3);
            v3[i] = 2.0f * (x3 - x1) + (x4 - x2);
            v4[i] = 2.0f * (x1 - x3) + (x4 - x2);
            v5[i] = 4.0f * (x1 - x3) + (x5 - x3);
        }
    }
}

/* The run of tiles from tile t: batch item *b, tile row *ty, first tile
 * column *tx0; returns its length (within the row, before t1, <= WG_CHUNK). */
static int tile_run(const wino_job *j, int64_t t, int64_t t1, int64_t *b, int *ty, int *tx0)
{
    int64_t plane_tiles = (int64_t)j->th * j->tw;
    *b = t / plane_tiles;
    *ty = (int)(t % plane_tiles / j->tw);
    *tx0 = (int)(t % plane_tiles % j->tw);
    int n = j->tw - *tx0;
    if (n > WG_CHUNK)
        n = WG_CHUNK;
    if (n > t1 - t)
        n = (int)(t1 - t);
    return n;
}

/* V[k][ci][t - t0] = (B^T d B)[k] for every tile t of the block; one task per
 * input channel.  The row transform runs along whole padded rows (contiguous),
 * the column transform picks a columns at stride m. */
static void wino_input(void *arg, int64_t ci)
{
    const wino_job *j = arg;
    const ss_conv2d_desc *d = j->d;
    int tm = j->tm, a = j->ta;
    int64_t t = j->t0, t1 = j->t0 + j->nt;
    int64_t ks = (int64_t)d->cin * j->nt;             /* stride between the a*a components */
    float r[6][4 * WG_CHUNK + 2];
    while (t < t1) {
        int64_t b;
        int ty, tx0, n = tile_run(j, t, t1, &b, &ty, &tx0);
        const float *xc = j->x + (b * d->cin + ci) * (int64_t)d->h * d->w;
        int ix0 = tm * tx0 - 1, len = tm * n + 2;
        /* columns [ix0, ix0 + len) of the a input rows, zero outside the plane */
        int lo = ix0 < 0 ? -ix0 : 0, hi = ix0 + len > d->w ? d->w - ix0 : len;
        for (int q = 0; q < a; q++) {
            int iy = tm * ty - 1 + q;
            if (iy < 0 || iy >= d->h) {
                memset(r[q], 0, (size_t)len * sizeof r[q][0]);
                continue;
            }
            for (int c = 0; c < lo; c++)
                r[q][c] = 0.0f;
            memcpy(r[q] + lo, xc + (int64_t)iy * d->w + ix0 + lo, (size_t)(hi - lo) * sizeof r[q][0]);
            for (int c = hi; c < len; c++)
                r[q][c] = 0.0f;
        }
        float *v = j->v + (int64_t)ci * j->nt + (t - j->t0);
        if (tm == 2)
            wino_input2(r, n, v, ks);
        else
            wino_input4(r, n, v, ks);
        t += n;
    }
}

/* M[k] [cg, nt] = U[k] [cg, cin] @ V[k] [cin, nt]; one task per k. */
static void wino_gemm(void *arg, int64_t k)
{
    const wino_job *j = arg;
    int cin = j->d->cin, cg = j->cg, nt = (int)j->nt;
    ss_cpu_sgemm(0, 0, cg, nt, cin, 1.0f, j->u + k * cg * (int64_t)cin, cin,
                j->v + k * cin * (int64_t)nt, nt, 0.0f, j->m + k * cg * (int64_t)nt, nt);
}

/* o[r][q][i] = (A^T M A)[r][q] + bias (m = 2) for n tiles whose 16
 * components lie ks apart from m. */
SS_SIMD_CLONES static void wino_output2(const float *m, int64_t ks, int n, float bias, float (*o)[4][WG_CHUNK])
{
    const float *m0 = m, *m1 = m0 + ks, *m2 = m1 + ks, *m3 = m2 + ks, *m4 = m3 + ks, *m5 = m4 + ks;
    const float *m6 = m5 + ks, *m7 = m6 + ks, *m8 = m7 + ks, *m9 = m8 + ks, *m10 = m9 + ks, *m11 = m10 + ks;
    const float *m12 = m11 + ks, *m13 = m12 + ks, *m14 = m13 + ks, *m15 = m14 + ks;
    float *restrict o00 = o[0][0], *restrict o01 = o[0][1], *restrict o10 = o[1][0], *restrict o11 = o[1][1];
    for (int i = 0; i < n; i++) {
        /* A^T M: rows 0+1+2 and 1-2-3 of every column */
        float a0 = m0[i] + m4[i] + m8[i], a1 = m1[i] + m5[i] + m9[i];
        float a2 = m2[i] + m6[i] + m10[i], a3 = m3[i] + m7[i] + m11[i];
        float b0 = m4[i] - m8[i] - m12[i], b1 = m5[i] - m9[i] - m13[i];
        float b2 = m6[i] - m10[i] - m14[i], b3 = m7[i] - m11[i] - m15[i];
        /* (A^T M) A */
        o00[i] = bias + (a0 + a1 + a2);
        o01[i] = bias + (a1 - a2 - a3);
        o10[i] = bias + (b0 + b1 + b2);
        o11[i] = bias + (b1 - b2 - b3);
    }
}

/* The 4 rows of A^T (m = 4) applied to x0..x5, the columns of one tile */
#define WG_AT4(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3)                   \
    do {                                                                  \
        float p_ = x1 + x2, q_ = x1 - x2, r_ = x3 + x4, s_ = x3 - x4;     \
        y0 = x0 + p_ + r_;                                                \
        y1 = q_ + 2.0f * s_;                                              \
        y2 = p_ + 4.0f * r_;                                              \
        y3 = (q_ + 8.0f * s_) + x5;                                       \
    } while (0)

/* o[r][q][i] = (A^T M A)[r][q] + bias (m = 4) for n tiles whose 36
 * components lie ks apart from m. */
SS_SIMD_CLONES static void wino_output4(const float *m, int64_t ks, int n, float bias, float (*o)[4][WG_CHUNK])
{
    float t[4][6][WG_CHUNK];                          /* A^T M */
    for (int c = 0; c < 6; c++) {
        const float *m0 = m + c * ks, *m1 = m0 + 6 * ks, *m2 = m1 + 6 * ks, *m3 = m2 + 6 * ks;
        const float *m4 = m3 + 6 * ks, *m5 = m4 + 6 * ks;
        float *restrict t0 = t[0][c], *restrict t1 = t[1][c], *restrict t2 = t[2][c], *restrict t3 = t[3][c];
        for (int i = 0; i < n; i++)
            WG_AT4(m0[i], m1[i], m2[i], m3[i], m4[i], m5[i], t0[i], t1[i], t2[i], t3[i]);
    }
    for (int r = 0; r < 4; r++) {                     /* (A^T M) A */
        float *restrict o0 = o[r][0], *restrict o1 = o[r][1], *restrict o2 = o[r][2], *restrict o3 = o[r][3];
        const float(*tr)[WG_CHUNK] = t[r];
        for (int i = 0; i < n; i++) {
            float y0, y1, y2, y3;
            WG_AT4(tr[0][i], tr[1][i], tr[2][i], tr[3][i], tr[4][i], tr[5][i], y0, y1, y2, y3);
            o0[i] = bias + y0;
            o1[i] = bias + y1;
            o2[i] = bias + y2;
            o3[i] = bias + y3;
        }
    }
}

/* y[tm * i + q] = o[q][i] for q < cols (the last tile may be cut short) */
SS_SIMD_CLONES static void wino_interleave(float *restrict y, const float (*o)[WG_CHUNK], int tm, int n, int cols)
{
    if (tm == 2)
        for (int i = 0; i < n; i++) {
            y[2 * i] = o[0][i];
            y[2 * i + 1] = o[1][i];
        }
    else
        for (int i = 0; i < n; i++) {
            y[4 * i] = o[0][i];
            y[4 * i + 1] = o[1][i];
            y[4 * i + 2] = o[2][i];
            y[4 * i + 3] = o[3][i];
        }
    for (int q = 0; q < cols; q++)
        y[tm * n + q] = o[q][n];
}

/* y = A^T M A + bias for every tile of the block; one task per output
 * channel co0 + c of the group. */
static void wino_output(void *arg, int64_t c)
{
    const wino_job *j = arg;
    const ss_conv2d_desc *d = j->d;
    int tm = j->tm;
    int64_t t = j->t0, t1 = j->t0 + j->nt;
    int64_t ks = (int64_t)j->cg * j->nt, co = j->co0 + c;
    float bias = j->bias ? j->bias[co] : 0.0f;
    float o[4][4][WG_CHUNK];
    while (t < t1) {
        int64_t b;
        int ty, tx0, n = tile_run(j, t, t1, &b, &ty, &tx0);
        const float *m = j->m + c * j->nt + (t - j->t0);
        if (tm == 2)
            wino_output2(m, ks, n, bias, o);
        else
            wino_output4(m, ks, n, bias, o);
        /* the last tile of the row may stick out of the plane */
        int full = n, cols = 0;
        if (tm * (tx0 + n) > d->w) {
            full = n - 1;
            cols = d->w - tm * (tx0 + full);
        }
        float *yc = j->y + (b * d->cout + co) * (int64_t)d->h * d->w;
        for (int r = 0; r < tm && tm * ty + r < d->h; r++)
            wino_interleave(yc + (int64_t)(tm * ty + r) * d->w + tm * tx0, (const float(*)[WG_CHUNK])o[r], tm,
                            full, cols);
        t += n;
    }
}

ss_status ss_cpu_conv2d_winograd(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                 const float *bias, float *y, int tile)
{
    if (!(d->kh == 3 && d->kw == 3 && d->sh == 1 && d->sw == 1 && d->ph == 1 && d->pw == 1 && d->dh == 1 &&
          d->dw == 1) || (tile != 2 && tile != 4))
        return SS_E_USAGE;
    if (d->batch <= 0 || d->cin <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0)
        return SS_OK;
    wino_job j = {.d = d, .x = x, .w = w, .bias = bias, .y = y, .tm = tile, .ta = tile + 2};
    j.th = (d->h + j.tm - 1) / j.tm;
    j.tw = (d->w + j.tm - 1) / j.tm;
    int64_t tiles = (int64_t)d->batch * j.th * j.tw, cin = d->cin, kk = (int64_t)j.ta * j.ta;
    /* output channels in groups whose transformed filters take at most half the
     * budget (the input transform is redone per group), tiles in blocks that
     * fill the rest */
    int groups = 1;
    while (groups < d->cout && kk * cin * ((d->cout + groups - 1) / groups) > WG_BUDGET / 2)
        groups++;
    int cg = (d->cout + groups - 1) / groups;
    int64_t block = (WG_BUDGET - kk * cin * cg) / (kk * (cin + cg));
    if (block < 64)
        block = 64;
    if (block > tiles)
        block = tiles;
    j.u = malloc((size_t)(kk * cin * cg) * sizeof *j.u);
    float *buf = malloc((size_t)(kk * block * (cin + cg)) * sizeof *buf);
    if (!j.u || !buf) {
        free(j.u);
        free(buf);
        return SS_E_NOMEM;
    }
    for (j.co0 = 0; j.co0 < d->cout; j.co0 += j.cg) {
        j.cg = d->cout - j.co0 < cg ? d->cout - j.co0 : cg;
        ss_pool_for(p, j.cg, wino_filter, &j);
        for (j.t0 = 0; j.t0 < tiles; j.t0 += j.nt) {
            j.nt = tiles - j.t0 < block ? tiles - j.t0 : block;
            j.v = buf;
            j.m = buf + kk * j.nt * cin;
            ss_pool_for(p, cin, wino_input, &j);
            ss_pool_for(p, kk, wino_gemm, &j);
            ss_pool_for(p, j.cg, wino_output, &j);
        }
    }
    free(j.u);
    free(buf);
    return SS_OK;
}

/* ---- conv2d 1-D, stride 1: one sgemm per tap, no im2col ----------------------------- */

/* kh 1, stride 1, no vertical padding: row r of an item's output is
 *   y[:, r, ox] = bias + sum_k W_k x[:, r, ox + k dw - pw]
 * with W_k [cout, cin] the weights of tap k (repacked contiguous) and x zero
 * outside [0, w).  Tap k is one product on the output columns whose input
 * column exists, read in place (ldb = the plane), added with beta 1 into the
 * bias (or written with beta 0 by a tap that covers the whole block when
 * there is no bias).  A pointwise conv (kw 1, pw 0) sees the plane as one row.
 * Tasks are (item, row, column block) with blocks sized from the shape only
 * (x and y of a block within DIRECT_BUDGET floats, so the kw reads of x hit
 * the cache), so the result does not depend on the thread count. */

/* Floats of input and output columns one task works on (256 KiB). */
#define DIRECT_BUDGET ((int64_t)1 << 16)

typedef struct direct_job {
    const ss_conv2d_desc *d;
    const float *x, *wk, *bias;   /* wk [kw][cout][cin]                       */
    float *y;
    int rows, win, wout;          /* rows per item, input / output row length */
    int block, nblocks;           /* output columns per task, tasks per row   */
} direct_job;

SS_VECTORISE static void fill_span(float *y, int n, float v)
{
    for (int i = 0; i < n; i++)
        y[i] = v;
}

static void direct_task(void *arg, int64_t t)
{
    const direct_job *j = arg;
    const ss_conv2d_desc *d = j->d;
    int64_t per_item = (int64_t)j->rows * j->nblocks, b = t / per_item;
    int r = (int)(t % per_item / j->nblocks), c0 = (int)(t % j->nblocks) * j->block;
    int c1 = c0 + j->block < j->wout ? c0 + j->block : j->wout;
    int ldx = j->rows * j->win, ldy = j->rows * j->wout;
    const float *xr = j->x + b * d->cin * (int64_t)ldx + (int64_t)r * j->win;
    float *yr = j->y + b * d->cout * (int64_t)ldy + (int64_t)r * j->wout;
    int first = -1;                   /* the tap written with beta 0, if any */
    if (j->bias) {
        for (int co = 0; co < d->cout; co++)
            fill_span(yr + (int64_t)co * ldy + c0, c1 - c0, j->bias[co]);
    } else {
        for (int k = 0; k < d->kw && first < 0; k++) {
            int sh = k * d->dw - d->pw;
            if (c0 + sh >= 0 && c1 + sh <= j->win)
                first = k;
        }
        if (first < 0)
            for (int co = 0; co < d->cout; co++)
                fill_span(yr + (int64_t)co * ldy + c0, c1 - c0, 0.0f);
    }
    for (int i = -1; i < d->kw; i++) {
        int k = i < 0 ? first : i;
        if (k < 0 || (i >= 0 && k == first))
            continue;
        int sh = k * d->dw - d->pw;
        int lo = c0 > -sh ? c0 : -sh, hi = c1 < j->win - sh ? c1 : j->win - sh;
        if (lo >= hi)
            continue;
        /* y[:, lo:hi] (+)= W_k [cout, cin] @ x[:, lo+sh:hi+sh] */
        ss_cpu_sgemm(0, 0, d->cout, hi - lo, d->cin, 1.0f,
                    j->wk + (int64_t)k * d->cout * d->cin, d->cin, xr + lo + sh, ldx, i < 0 ? 0.0f : 1.0f,
                    yr + lo, ldy);
    }
}

ss_status ss_cpu_conv2d_direct1d(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                                 const float *bias, float *y)
{
    if (!(d->kh == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->dh == 1) || d->kw < 1 || d->dw < 1 ||
        d->pw < 0)
        return SS_E_USAGE;
    int ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    if (d->batch <= 0 || d->cout <= 0 || d->h <= 0 || ow <= 0)
        return SS_OK;
    if (d->cin <= 0) {
        /* empty sum: the bias alone */
        bias_job bj = {.y = y, .bias = bias, .ch = d->cout, .len = (int64_t)d->h * ow};
        ss_pool_for(p, (int64_t)d->batch * d->cout, bias_fill_row, &bj);
        return SS_OK;
    }
    direct_job j = {.d = d, .x = x, .bias = bias, .y = y, .rows = d->h, .win = d->w, .wout = ow};
    if (d->kw == 1 && d->pw == 0) {
        j.rows = 1;                   /* pointwise: the plane is one row */
        j.win = j.wout = d->h * d->w;
    }
    /* blocks: as many as the budget needs, evened out, multiples of 16 */
    int64_t cap = DIRECT_BUDGET / (d->cin + d->cout);
    cap = cap < 128 ? 128 : cap / 16 * 16;
    j.nblocks = (int)((j.wout + cap - 1) / cap);
    j.block = (j.wout + j.nblocks - 1) / j.nblocks;
    j.block = (j.block + 15) / 16 * 16;
    if (j.block >= j.wout)
        j.block = j.wout;
    j.nblocks = (j.wout + j.block - 1) / j.block;
    float *wk = NULL;
    if (d->kw > 1) {
        /* W_k [cout, cin] from w [cout, cin, 1, kw] */
        size_t n = (size_t)d->kw * d->cout * d->cin;
        wk = malloc(n * sizeof *wk);
        if (!wk)
            return SS_E_NOMEM;
        for (int64_t co = 0; co < d->cout; co++)
            for (int64_t ci = 0; ci < d->cin; ci++)
                for (int64_t k = 0; k < d->kw; k++)
                    wk[(k * d->cout + co) * d->cin + ci] = w[(co * d->cin + ci) * d->kw + k];
        j.wk = wk;
    } else {
        j.wk = w;
    }
    ss_pool_for(p, (int64_t)d->batch * j.rows * j.nblocks, direct_task, &j);
    free(wk);
    return SS_OK;
}

ss_status ss_cpu_conv2d(ss_pool *p, const ss_conv2d_desc *d, const float *x, const float *w,
                        const float *bias, float *y)
{
    if (d->kh == 3 && d->kw == 3 && d->sh == 1 && d->sw == 1 && d->ph == 1 && d->pw == 1 && d->dh == 1 &&
        d->dw == 1)
        return ss_cpu_conv2d_winograd(p, d, x, w, bias, y, 4);
    /* 1-D stride 1 with more than one tap (or padding): one sgemm per tap.  A
     * pointwise conv is one sgemm on x either way; it stays below, where one
     * product per item (or column blocks of one item over the pool) measured
     * no slower than the direct path's cache-sized blocks. */
    if (d->kh == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->dh == 1 && (d->kw > 1 || d->pw > 0))
        return ss_cpu_conv2d_direct1d(p, d, x, w, bias, y);
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh);
    int ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    if (d->batch <= 0 || d->cout <= 0 || oh <= 0 || ow <= 0)
        return SS_OK;
    int64_t npos = (int64_t)oh * ow, kdim = (int64_t)d->cin * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * d->h * d->w, out_size = (int64_t)d->cout * npos;

    /* bias first, then accumulate the product with beta = 1 */
    float beta = 0.0f;
    if (bias) {
        bias_job bj = {.y = y, .bias = bias, .ch = d->cout, .len = npos};
        ss_pool_for(npos >= 4096 ? p : NULL, (int64_t)d->batch * d->cout, bias_fill_row, &bj);
        beta = 1.0f;
    }

    conv_job cj = {.d = d, .x = x, .w = w, .y = y, .oh = oh, .ow = ow, .npos = npos, .kdim = kdim,
                   .in_size = in_size, .out_size = out_size, .beta = beta};
    cj.block = (int64_t)(NN_COL_FLOATS / (size_t)kdim);
    if (cj.block < 256)
        cj.block = 256;
    if (cj.block > npos)
        cj.block = npos;
    if (d->batch > 1 && d->batch >= ss_pool_threads(p)) {
        /* many items: one item per task, each with its own (smaller) column buffer */
        if (cj.block * kdim > (int64_t)(NN_COL_FLOATS / 8))
            cj.block = (int64_t)(NN_COL_FLOATS / 8) / kdim > 256 ? (int64_t)(NN_COL_FLOATS / 8) / kdim : 256;
        if (cj.block > npos)
            cj.block = npos;
        ss_pool_for(p, d->batch, conv_item, &cj);
        return cj.fail ? SS_E_NOMEM : SS_OK;
    }
    cj.pool = p;
    for (int64_t b = 0; b < d->batch && !cj.fail; b++)
        conv_item(&cj, b);
    return cj.fail ? SS_E_NOMEM : SS_OK;
}

/* ---- transposed conv2d: sgemm + col2im ------------------------------------------- */

/* Scatter-add a column block [cout*kh*kw, ncols] (input positions
 * [p0, p0 + ncols)) into y [cout, oh, ow]; one task per output channel so no
 * two tasks touch the same memory. */
typedef struct col2im_job {
    const ss_convt2d_desc *d;
    const float *col;
    float *y;          /* [cout, oh, ow] of this batch item */
    int oh, ow;
    int64_t p0, ncols;
} col2im_job;

SS_SIMD_CLONES static void add_run(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] + x[i];
}

/* Each tap's columns in runs along an input row: a contiguous add where the stride along w is 1 (the
 * same sums in the same order as one element at a time). */
static void col2im_channel(void *arg, int64_t co)
{
    const col2im_job *j = arg;
    const ss_convt2d_desc *d = j->d;
    float *yc = j->y + co * (int64_t)j->oh * j->ow;
    for (int ki = 0; ki < d->kh; ki++)
        for (int kj = 0; kj < d->kw; kj++) {
            const float *c = j->col + ((co * d->kh + ki) * (int64_t)d->kw + kj) * j->ncols;
            int iy = (int)(j->p0 / d->w), ix = (int)(j->p0 % d->w);
            for (int64_t q = 0; q < j->ncols; iy++, ix = 0) {
                int64_t run = d->w - ix < j->ncols - q ? d->w - ix : j->ncols - q;
                float *yr = yc + (int64_t)(iy * d->sh + ki) * j->ow + (int64_t)ix * d->sw + kj;
                if (d->sw == 1)
                    add_run(yr, c + q, run);
                else
                    for (int64_t t = 0; t < run; t++)
                        yr[t * d->sw] += c[q + t];
                q += run;
            }
        }
}

typedef struct convt_job {
    const ss_convt2d_desc *d;
    const float *x, *w;
    float *y;
    int oh, ow;
    int64_t npos, kdim, in_size, out_size, block;
    ss_pool *pool;       /* set: parallelise inside one item       */
    int fail;            /* a column buffer could not be allocated */
} convt_job;

/* y[b] += col2im(w^T @ x[b]), block by block of input positions. */
static void convt_item(void *arg, int64_t b)
{
    convt_job *j = arg;
    const ss_convt2d_desc *d = j->d;
    float *col = malloc((size_t)(j->kdim * j->block) * sizeof *col);
    if (!col) {
        j->fail = 1;
        return;
    }
    for (int64_t p0 = 0; p0 < j->npos; p0 += j->block) {
        int64_t nc = j->npos - p0 < j->block ? j->npos - p0 : j->block;
        /* col [kdim, nc] = w^T (w is [cin, kdim]) @ x[b][:, p0:p0+nc] */
        par_sgemm(j->pool, 1, 0, (int)j->kdim, (int)nc, d->cin, 1.0f, j->w, (int)j->kdim,
                  j->x + b * j->in_size + p0, (int)j->npos, 0.0f, col, (int)nc);
        col2im_job cj = {.d = d, .col = col, .y = j->y + b * j->out_size, .oh = j->oh, .ow = j->ow,
                         .p0 = p0, .ncols = nc};
        ss_pool_for(j->pool, d->cout, col2im_channel, &cj);
    }
    free(col);
}

ss_status ss_cpu_conv_transpose2d(ss_pool *p, const ss_convt2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y)
{
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    if (d->batch <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0)
        return SS_OK;
    int64_t npos = (int64_t)d->h * d->w, opos = (int64_t)oh * ow;
    int64_t kdim = (int64_t)d->cout * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * npos, out_size = (int64_t)d->cout * opos;

    bias_job bj = {.y = y, .bias = bias, .ch = d->cout, .len = opos};
    ss_pool_for(opos >= 4096 ? p : NULL, (int64_t)d->batch * d->cout, bias_fill_row, &bj);

    convt_job cj = {.d = d, .x = x, .w = w, .y = y, .oh = oh, .ow = ow, .npos = npos, .kdim = kdim,
                    .in_size = in_size, .out_size = out_size};
    int per_item = d->batch > 1 && d->batch >= ss_pool_threads(p);
    int64_t cap = (int64_t)(per_item ? NN_COL_FLOATS / 8 : NN_COL_FLOATS);
    cj.block = cap / kdim > 256 ? cap / kdim : 256;
    if (cj.block > npos)
        cj.block = npos;
    if (per_item) {
        ss_pool_for(p, d->batch, convt_item, &cj);
    } else {
        cj.pool = p;
        for (int64_t b = 0; b < d->batch && !cj.fail; b++)
            convt_item(&cj, b);
    }
    return cj.fail ? SS_E_NOMEM : SS_OK;
}

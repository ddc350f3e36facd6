/* fused_cpu.c - HTDemucs's fused kernels on the CPU (models/htdemucs/fused.h): the reference
 * for every other backend's.  A DConv layer's second half (x += glu(group_norm(w h + bias)))
 * and an encoder's 1x1 rewrite (glu(w x + bias)) without storing the 1x1 convolution's output;
 * the arithmetic they share with the generic ops (sgemm, the norm's apply spans, GLU) comes from
 * kernels/cpu (cpu_ops.h).  There is no CPU "htdemucs.dconv_rows": the model composes it from
 * the conv2d, group_norm_gelu and the tail here. */
#include "fused_cpu.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cpu/cpu_ops.h"
#include "../../src/backend_cpu.h"
#include "fused.h"

/* A task's block of w h: at most this many columns (kernels/cpu/nn.c's span), so it stays in L2. */
#define NN_SPAN 1024

/* ---- a DConv layer's second half: x += glu(group_norm(w h + bias)) --------------- */

/* A 1x1 convolution's output [batch, 2ch, len] in (item, column block) units: blocks of bw columns
 * (about 64 Ki floats, at most maxw), two tasks per thread, each with its own block buffer. */
typedef struct c1_blocks {
    int bw, nblk, tasks;        /* columns per block, blocks per item, tasks */
    int64_t units;
    float *buf;                 /* [tasks][2ch * bw]                         */
} c1_blocks;

static ss_status c1_blocks_make(ss_pool *p, c1_blocks *k, int batch, int ch, int64_t len, int64_t maxw)
{
    int64_t bw = ((int64_t)1 << 16) / (2 * ch);
    bw = bw < 64 ? 64 : bw > maxw ? maxw : bw;
    if (bw > len)
        bw = len;
    k->bw = (int)bw;
    k->nblk = (int)((len + bw - 1) / bw);
    k->units = (int64_t)batch * k->nblk;
    int64_t tasks = 2 * (int64_t)ss_pool_threads(p);
    k->tasks = (int)(tasks < k->units ? tasks : k->units);
    k->buf = malloc((size_t)k->tasks * (size_t)(2 * ch) * (size_t)bw * sizeof *k->buf);
    return k->buf ? SS_OK : SS_E_NOMEM;
}

/* task t: units [*u0, *u1) and its buffer */
static float *c1_task(const c1_blocks *k, int64_t t, int ch, int64_t *u0, int64_t *u1)
{
    *u0 = t * k->units / k->tasks;
    *u1 = (t + 1) * k->units / k->tasks;
    return k->buf + t * (int64_t)(2 * ch) * k->bw;
}

/* Work units are (item, column block); the statistics come from h (below), then a block of
 * g = w h [2ch, bw] is made in a task's own buffer for the apply and never stored whole: for the
 * outer layers (small hidden) that is far less memory traffic than writing g [batch, 2ch, len] and
 * reading it back twice. */
typedef struct c1g_job {
    float *x;                   /* [batch / rows, ch, rows, len]                  */
    const float *h, *w, *bias, *gamma, *beta;
    int rows, ch, hidden, tri;  /* tri = hidden (hidden + 1) / 2                  */
    int64_t len;
    float eps;
    c1_blocks k;
    double *part;               /* [units][hidden]: h's row sums; then [units][tri + hidden]:
                                   the centred rows' products (upper triangle) and sums */
    double *hm;                 /* [batch][hidden]: h's row means                 */
    double *hc;                 /* [tasks][hidden][bw]: a block of h centred      */
    double *wtw, *wcol;         /* w^T w (upper triangle), column sums of w       */
    double *mean, *rstd;        /* [batch]                                        */
} c1g_job;

/* g [2ch, n] (pitch bw) = w h[:, c0:c0+n] for unit u (the bias is folded into the statistics and
 * the apply); returns n */
static int c1g_block(const c1g_job *j, int64_t u, float *g, int64_t *c0)
{
    int64_t b = u / j->k.nblk;
    *c0 = (u % j->k.nblk) * j->k.bw;
    int n = (int)(j->len - *c0 < j->k.bw ? j->len - *c0 : j->k.bw);
    ss_cpu_sgemm(0, 0, 2 * j->ch, n, j->hidden, 1.0f, j->w, j->hidden,
                j->h + b * j->hidden * j->len + *c0, (int)j->len, 0.0f, g, j->k.bw);
    return n;
}

static double c1g_bias(const c1g_job *j, int r) { return j->bias ? (double)j->bias[r] : 0.0; }

/* The statistics of g = w h + bias over an item come from h alone, so g is made once (for the
 * apply).  With s_k h's row means and h' = h - s (rows centred), g = w h' + b', b' = bias + w s:
 *   sum g             = len sum_o b'_o + sum_k (sum_o w_ok) d_k           (d_k = sum_t h'_kt, ~0)
 *   sum (g - mean)^2  = sum_kk' (w^T w)_kk' G_kk' + 2 sum_o (b'_o - mean) sum_k w_ok d_k
 *                       + len sum_o (b'_o - mean)^2                       (G = h' h'^T)
 * exact for any s; with s the means every term but the small middle one is a sum of squares, so
 * there is no cancellation, and G costs hidden / (4 ch) of the product per column.  In double, in
 * column blocks merged in a fixed order: the result does not depend on the thread count. */

#define NN_LANES 8      /* the statistics' partial sums below: a fixed order whatever the vector width */

/* y[0..n) = x - m in double; returns the sum of y */
SS_SIMD_CLONES static double centre_span(double *y, const float *x, int n, double m)
{
    double a[NN_LANES] = {0}, t = 0.0;
    int i = 0;
    for (; i + NN_LANES <= n; i += NN_LANES)
        for (int l = 0; l < NN_LANES; l++) {
            y[i + l] = (double)x[i + l] - m;
            a[l] += y[i + l];
        }
    for (; i < n; i++) {
        y[i] = (double)x[i] - m;
        t += y[i];
    }
    for (int l = 0; l < NN_LANES; l++)
        t += a[l];
    return t;
}

/* sum of a[i] b[i] over [0..n), in NN_LANES interleaved partial sums */
SS_SIMD_CLONES static double dot_lanes(const double *a, const double *b, int n)
{
    double acc[NN_LANES] = {0}, t = 0.0;
    int i = 0;
    for (; i + NN_LANES <= n; i += NN_LANES)
        for (int l = 0; l < NN_LANES; l++)
            acc[l] += a[i + l] * b[i + l];
    for (; i < n; i++)
        t += a[i] * b[i];
    for (int l = 0; l < NN_LANES; l++)
        t += acc[l];
    return t;
}

/* h[b][k][c0 .. c0+n) for unit u */
static const float *c1g_hrow(const c1g_job *j, int64_t u, int k, int64_t *c0, int *n)
{
    int64_t b = u / j->k.nblk;
    *c0 = (u % j->k.nblk) * j->k.bw;
    *n = (int)(j->len - *c0 < j->k.bw ? j->len - *c0 : j->k.bw);
    return j->h + (b * j->hidden + k) * j->len + *c0;
}

/* pass 1: part[u][k] = the sum of row k of h over unit u's columns */
static void c1g_sums(void *arg, int64_t t)
{
    c1g_job *j = arg;
    int64_t u0, u1, c0;
    int n = 0;
    c1_task(&j->k, t, j->ch, &u0, &u1);
    for (int64_t u = u0; u < u1; u++)
        for (int k = 0; k < j->hidden; k++) {
            const float *hr = c1g_hrow(j, u, k, &c0, &n);
            j->part[u * j->hidden + k] = ss_cpu_sum_span_d(hr, n);
        }
}

/* pass 2: part[u] = the upper triangle of h' h'^T over unit u's columns, then the sums of h' */
static void c1g_gram(void *arg, int64_t t)
{
    c1g_job *j = arg;
    int64_t u0, u1, c0;
    int n = 0;
    c1_task(&j->k, t, j->ch, &u0, &u1);
    double *hc = j->hc + t * (int64_t)j->hidden * j->k.bw;
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / j->k.nblk;
        double *q = j->part + u * (int64_t)(j->tri + j->hidden);
        for (int k = 0; k < j->hidden; k++) {
            const float *hr = c1g_hrow(j, u, k, &c0, &n);
            q[j->tri + k] = centre_span(hc + (int64_t)k * j->k.bw, hr, n, j->hm[b * j->hidden + k]);
        }
        for (int k = 0, e = 0; k < j->hidden; k++)
            for (int k2 = k; k2 < j->hidden; k2++, e++)
                q[e] = dot_lanes(hc + (int64_t)k * j->k.bw, hc + (int64_t)k2 * j->k.bw, n);
    }
}

/* row k of w^T w's upper triangle (off the diagonal doubled: each pair k != k2 stands twice in the
 * full product) and w's column sum k */
static void c1g_wtw_row(void *arg, int64_t k)
{
    c1g_job *j = arg;
    int hd = j->hidden, n = 2 * j->ch;
    double *row = j->wtw + k * hd - k * (k - 1) / 2;           /* the triangle's row k: k2 = k .. hd-1 */
    double cs = 0.0;
    for (int k2 = (int)k; k2 < hd; k2++)
        row[k2 - k] = 0.0;
    for (int o = 0; o < n; o++) {
        const float *wo = j->w + (int64_t)o * hd;
        for (int k2 = (int)k; k2 < hd; k2++)
            row[k2 - k] += (double)wo[k] * wo[k2];
        cs += wo[k];
    }
    for (int k2 = (int)k + 1; k2 < hd; k2++)
        row[k2 - k] *= 2.0;
    j->wcol[k] = cs;
}

/* item b: its blocks' products merged in order, then the mean and 1 / std of g */
static void c1g_finish(void *arg, int64_t b)
{
    c1g_job *j = arg;
    int hd = j->hidden, tri = j->tri;
    double *acc = j->part + b * j->k.nblk * (int64_t)(tri + hd);      /* the item's first block */
    for (int c = 1; c < j->k.nblk; c++)
        for (int e = 0; e < tri + hd; e++)
            acc[e] += acc[c * (int64_t)(tri + hd) + e];
    const double *gram = acc, *d = acc + tri, *hm = j->hm + b * hd;
    double len = (double)j->len, n = 2.0 * j->ch * len, tot = 0.0;
    for (int k = 0; k < hd; k++)
        tot += j->wcol[k] * d[k];
    double bsum = 0.0;
    for (int o = 0; o < 2 * j->ch; o++) {
        double bo = c1g_bias(j, o);
        for (int k = 0; k < hd; k++)
            bo += (double)j->w[o * hd + k] * hm[k];
        bsum += bo;
    }
    double mean = (tot + len * bsum) / n, m2 = 0.0;
    for (int e = 0; e < tri; e++)
        m2 += j->wtw[e] * gram[e];
    for (int o = 0; o < 2 * j->ch; o++) {
        double bo = c1g_bias(j, o), wd = 0.0;
        for (int k = 0; k < hd; k++) {
            bo += (double)j->w[o * hd + k] * hm[k];
            wd += (double)j->w[o * hd + k] * d[k];
        }
        m2 += 2.0 * (bo - mean) * wd + len * (bo - mean) * (bo - mean);
    }
    j->mean[b] = mean;
    j->rstd[b] = 1.0 / sqrt((m2 > 0.0 ? m2 : 0.0) / n + (double)j->eps);
}

/* the affine of a normalised row as ss_cpu_norm_glu_add_span takes it: mean m (split in two floats),
 * scale a, shift b */
static void c1g_coef(float c[4], double m, double a, double b)
{
    c[0] = (float)m;
    c[1] = (float)(m - (double)c[0]);
    c[2] = (float)a;
    c[3] = (float)b;
}

static void c1g_apply(void *arg, int64_t t)
{
    c1g_job *j = arg;
    int64_t u0, u1;
    float *g = c1_task(&j->k, t, j->ch, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t c0, b = u / j->k.nblk;
        int n = c1g_block(j, u, g, &c0);
        double m = j->mean[b], rs = j->rstd[b];
        for (int c = 0; c < j->ch; c++) {
            int d = c + j->ch;
            float ca[4], cg[4];
            c1g_coef(ca, m - c1g_bias(j, c), rs * (j->gamma ? j->gamma[c] : 1.0f), j->beta ? j->beta[c] : 0.0);
            c1g_coef(cg, m - c1g_bias(j, d), rs * (j->gamma ? j->gamma[d] : 1.0f), j->beta ? j->beta[d] : 0.0);
            int64_t xr = (b / j->rows * j->ch + c) * j->rows + b % j->rows;  /* x's row of (item b, c) */
            ss_cpu_norm_glu_add_span(j->x + xr * j->len + c0, g + (int64_t)c * j->k.bw,
                                     g + (int64_t)d * j->k.bw, n, ca, cg);
        }
    }
}

ss_status ht_cpu_conv1x1_gn_glu_add(ss_pool *p, float *x, int rows, const float *h, const float *w,
                                    const float *bias, int batch, int ch, int hidden, int64_t len,
                                    const float *gamma, const float *beta, float eps)
{
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (hidden <= 0 || len > INT32_MAX || rows <= 0 || batch % rows)
        return SS_E_INTERNAL;
    c1g_job j = {.x = x, .h = h, .w = w, .bias = bias, .gamma = gamma, .beta = beta, .rows = rows, .ch = ch,
                 .hidden = hidden,
                 .tri = hidden * (hidden + 1) / 2, .len = len, .eps = eps};
    ss_status st = c1_blocks_make(p, &j.k, batch, ch, len, NN_SPAN);   /* a task's block stays in L2 */
    j.part = malloc((size_t)j.k.units * (size_t)(j.tri + hidden) * sizeof *j.part);
    j.hm = malloc((size_t)batch * (size_t)hidden * sizeof *j.hm);
    j.hc = malloc((size_t)j.k.tasks * (size_t)hidden * (size_t)j.k.bw * sizeof *j.hc);
    j.wtw = malloc((size_t)(j.tri + hidden) * sizeof *j.wtw);
    j.mean = malloc((size_t)batch * sizeof *j.mean);
    j.rstd = malloc((size_t)batch * sizeof *j.rstd);
    if (st == SS_OK && (!j.part || !j.hm || !j.hc || !j.wtw || !j.mean || !j.rstd))
        st = SS_E_NOMEM;
    if (st == SS_OK) {
        j.wcol = j.wtw + j.tri;
        ss_pool_for((int64_t)2 * ch * hidden * hidden >= ((int64_t)1 << 16) ? p : NULL, hidden, c1g_wtw_row, &j);
        ss_pool_for(p, j.k.tasks, c1g_sums, &j);
        for (int64_t b = 0; b < batch; b++)
            for (int k = 0; k < hidden; k++) {
                double s = 0.0;
                for (int c = 0; c < j.k.nblk; c++)
                    s += j.part[(b * j.k.nblk + c) * hidden + k];
                j.hm[b * hidden + k] = s / (double)len;
            }
        ss_pool_for(p, j.k.tasks, c1g_gram, &j);
        ss_pool_for(batch >= 8 ? p : NULL, batch, c1g_finish, &j);
        ss_pool_for(p, j.k.tasks, c1g_apply, &j);
    }
    free(j.k.buf);
    free(j.part);
    free(j.hm);
    free(j.hc);
    free(j.wtw);
    free(j.mean);
    free(j.rstd);
    return st;
}

/* ---- an encoder's rewrite: out = glu(w x + bias), w 1x1 ------------------------------------ */

typedef struct c1glu_job {
    float *out;
    const float *x, *w, *bias;
    int cin, ch;
    int64_t len;
    c1_blocks k;
} c1glu_job;

static void c1glu_task(void *arg, int64_t t)
{
    c1glu_job *j = arg;
    int64_t u0, u1;
    float *g = c1_task(&j->k, t, j->ch, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / j->k.nblk, c0 = (u % j->k.nblk) * j->k.bw;
        int n = (int)(j->len - c0 < j->k.bw ? j->len - c0 : j->k.bw);
        ss_cpu_sgemm(0, 0, 2 * j->ch, n, j->cin, 1.0f, j->w, j->cin,
                    j->x + b * j->cin * j->len + c0, (int)j->len, 0.0f, g, j->k.bw);
        for (int c = 0; c < j->ch; c++) {
            float *y = j->out + (b * j->ch + c) * j->len + c0;
            const float *a = g + (int64_t)c * j->k.bw, *gt = g + (int64_t)(c + j->ch) * j->k.bw;
            if (j->bias)
                ss_cpu_bias_glu_span(y, a, gt, j->bias[c], j->bias[c + j->ch], n);
            else
                ss_cpu_glu_span(y, a, gt, n);
        }
    }
}

ss_status ht_cpu_conv1x1_glu(ss_pool *p, float *out, const float *x, const float *w, const float *bias, int batch,
                             int cin, int ch, int64_t len)
{
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (cin <= 0 || len > INT32_MAX)
        return SS_E_INTERNAL;
    c1glu_job j = {.out = out, .x = x, .w = w, .bias = bias, .cin = cin, .ch = ch, .len = len};
    if (c1_blocks_make(p, &j.k, batch, ch, len, 4096) != SS_OK)
        return SS_E_NOMEM;
    ss_pool_for(p, j.k.tasks, c1glu_task, &j);
    free(j.k.buf);
    return SS_OK;
}

/* ---- the CPU backend's entry points ------------------------------------------------------ */

/* A kernel's status as the op's: the kernels fail only for host memory or a shape they do not take. */
static ss_status kst(ss_error *err, const char *op, ss_status st)
{
    return st == SS_OK ? SS_OK : ss_fail(err, st, "cpu: %s failed: %s", op, ss_status_name(st));
}

/* The fused tail up to this hidden size (HTDemucs's largest, ch / 8 at 384 channels); larger ones
 * compose: its statistics (h h^T) grow as hidden^2. */
#define CPU_C1G_MAX_HIDDEN 48

static int cpu_c1g_rows_ok(void *ctx, int hidden)
{
    (void)ctx;
    return hidden > 0 && hidden <= CPU_C1G_MAX_HIDDEN;
}

static ss_status cpu_c1g(void *ctx, float *x, int rows, const float *h, const float *w, const float *bias, int batch,
                         int ch, int hidden, int64_t len, const float *gamma, const float *beta, float eps, float *g,
                         ss_error *err)
{
    ss_pool *p = ss_cpu_backend_pool(ctx);
    if (len > INT_MAX)
        return ss_fail(err, SS_E_INTERNAL, "cpu: conv1x1_gn_glu_add: length %lld", (long long)len);
    if (rows != 1) {
        if (!cpu_c1g_rows_ok(ctx, hidden))
            return ss_fail(err, SS_E_INTERNAL, "cpu: conv1x1_gn_glu_add: %d rows of hidden size %d", rows, hidden);
        return kst(err, "conv1x1_gn_glu_add_rows", ht_cpu_conv1x1_gn_glu_add(p, x, rows, h, w, bias, batch, ch, hidden,
                                                                             len, gamma, beta, eps));
    }
    if (hidden <= CPU_C1G_MAX_HIDDEN)
        return kst(err, "conv1x1_gn_glu_add", ht_cpu_conv1x1_gn_glu_add(p, x, 1, h, w, bias, batch, ch, hidden, len,
                                                                        gamma, beta, eps));
    /* the product into g, then the norm, GLU and add in one apply pass */
    ss_conv2d_desc d = {.batch = batch, .cin = hidden, .h = 1, .w = (int)len, .cout = 2 * ch, .kh = 1, .kw = 1,
                        .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1};
    ss_status st = ss_cpu_conv2d(p, &d, h, w, NULL, g);
    if (st == SS_OK && bias)
        st = ss_cpu_channel_affine(p, g, g, batch, 2 * ch, len, NULL, bias);
    if (st == SS_OK)
        st = ss_cpu_group_norm_glu_add(p, x, g, batch, ch, len, 1, gamma, beta, eps);
    return kst(err, "conv1x1_gn_glu_add", st);
}

static ss_status cpu_c1glu(void *ctx, float *out, const float *x, const float *w, const float *bias, int batch,
                           int cin, int ch, int64_t len, ss_error *err)
{
    return kst(err, "conv1x1_glu", ht_cpu_conv1x1_glu(ss_cpu_backend_pool(ctx), out, x, w, bias, batch, cin, ch, len));
}

static const ht_conv1x1_gn_glu_add_k cpu_c1g_k = {cpu_c1g_rows_ok, cpu_c1g};
static const ht_conv1x1_glu_k cpu_c1glu_k = {cpu_c1glu};

const void *ss_kernels_cpu_htdemucs(const char *name)
{
    if (strcmp(name, HT_K_CONV1X1_GN_GLU_ADD) == 0)
        return &cpu_c1g_k;
    if (strcmp(name, HT_K_CONV1X1_GLU) == 0)
        return &cpu_c1glu_k;
    return NULL;
}

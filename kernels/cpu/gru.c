/* gru.c - CPU reference kernel of the GRU layer (ss_gru in backend.h, the
 * descriptor in ops.h).
 *
 * Two passes.  First the input projection of every step, gx = W_ih x_t + b_ih
 * for all batch * seq rows at once (rows spread over the pool: this half of
 * the work has no recurrence).  Then the recurrence, one task per batch item
 * (an item's steps are serial): per step gh = W_hh h + b_hh, then the gates in
 * one vectorised pass.  Nothing is allocated and the pool is not used for
 * small work, so one step of a streamed sequence costs its two products.
 *
 * Every dot product is the same sum whatever the shapes around it: 16
 * interleaved lanes over the length (each row computed by the same code, a
 * block of four rows sharing the loads of x), the lanes added by halving, the
 * remainder after, then the bias.  So a row's bits depend neither on the
 * number of threads, nor on how many steps a call has: a sequence run in
 * pieces with the state carried gives the same bits as one call.  (BLAS is
 * not used here: OpenBLAS sums small products in another order than large
 * ones.)  The gates use fast_expf and fast_tanhf, as ss_activate's sigmoid and
 * tanh do. */
#include "cpu_ops.h"
#include "fastmath.h"

#include <stdint.h>
#include <string.h>

#define LANES 16
#define ROWS 4

/* the 16 lanes added by halving, then the remainder x[n16, n) */
static inline float lanes_sum(float *acc, const float *w, const float *x, int n16, int n)
{
    for (int s = LANES / 2; s >= 1; s /= 2)
        for (int k = 0; k < s; k++)
            acc[k] += acc[k + s];
    float sum = acc[0];
    for (int i = n16; i < n; i++)
        sum += w[i] * x[i];
    return sum;
}

/* out[r] = w[r, :n] . x + (bias ? bias[r] : 0) for r in [0, rows), w with row pitch ldw */
SS_SIMD_CLONES static void dot_rows(float *out, const float *w, int64_t ldw, const float *x, int n, int rows,
                                    const float *bias)
{
    int n16 = n / LANES * LANES;
    for (int r0 = 0; r0 < rows; r0 += ROWS) {
        /* the last block repeats its last row */
        const float *w0 = w + (int64_t)r0 * ldw;
        const float *w1 = w + (int64_t)(r0 + 1 < rows ? r0 + 1 : rows - 1) * ldw;
        const float *w2 = w + (int64_t)(r0 + 2 < rows ? r0 + 2 : rows - 1) * ldw;
        const float *w3 = w + (int64_t)(r0 + 3 < rows ? r0 + 3 : rows - 1) * ldw;
        float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
        for (int i = 0; i < n16; i += LANES) {
            for (int k = 0; k < LANES; k++)
                a0[k] += w0[i + k] * x[i + k];
            for (int k = 0; k < LANES; k++)
                a1[k] += w1[i + k] * x[i + k];
            for (int k = 0; k < LANES; k++)
                a2[k] += w2[i + k] * x[i + k];
            for (int k = 0; k < LANES; k++)
                a3[k] += w3[i + k] * x[i + k];
        }
        float sum[ROWS] = {lanes_sum(a0, w0, x, n16, n), lanes_sum(a1, w1, x, n16, n), lanes_sum(a2, w2, x, n16, n),
                           lanes_sum(a3, w3, x, n16, n)};
        for (int q = 0; q < ROWS && r0 + q < rows; q++)
            out[r0 + q] = bias ? sum[q] + bias[r0 + q] : sum[q];
    }
}

/* one step's gates for one item: y = (1 - z) n + z hp from the projections gx, gh [3H] */
SS_SIMD_CLONES static void gru_gates(float *y, const float *gx, const float *gh, const float *hp, int hn)
{
    for (int j = 0; j < hn; j++) {
        float r = 1.0f / (1.0f + fast_expf(-(gx[j] + gh[j])));
        float z = 1.0f / (1.0f + fast_expf(-(gx[hn + j] + gh[hn + j])));
        float n = fast_tanhf(gx[2 * hn + j] + r * gh[2 * hn + j]);
        y[j] = (1.0f - z) * n + z * hp[j];
    }
}

typedef struct gru_job {
    const ss_gru_desc *d;
    const float *x, *w_ih, *w_hh, *b_ih, *b_hh;
    float *h, *y, *gx, *gh;
    int64_t rows_per_task;
} gru_job;

static void gru_project(void *arg, int64_t t)
{
    const gru_job *j = arg;
    const ss_gru_desc *d = j->d;
    int64_t rows = (int64_t)d->batch * d->seq, r0 = t * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < rows ? r0 + j->rows_per_task : rows;
    int g3 = 3 * d->hidden;
    for (int64_t r = r0; r < r1; r++)
        dot_rows(j->gx + r * g3, j->w_ih, d->in, j->x + r * d->in, d->in, g3, j->b_ih);
}

static void gru_item(void *arg, int64_t b)
{
    const gru_job *j = arg;
    const ss_gru_desc *d = j->d;
    int hn = d->hidden, g3 = 3 * hn;
    float *h = j->h + b * hn, *gh = j->gh + b * g3, *y = j->y + b * (int64_t)d->seq * hn;
    const float *gx = j->gx + b * (int64_t)d->seq * g3;
    const float *hp = h;
    for (int t = 0; t < d->seq; t++) {
        dot_rows(gh, j->w_hh, hn, hp, hn, g3, j->b_hh);
        gru_gates(y + (int64_t)t * hn, gx + (int64_t)t * g3, gh, hp, hn);
        hp = y + (int64_t)t * hn;
    }
    memcpy(h, hp, (size_t)hn * sizeof *h);
}

/* multiply-adds below which a pass runs on the calling thread (a pool dispatch costs
 * some microseconds; one step of H 256 is about 0.2 M) */
#define GRU_POOL_MIN ((int64_t)1 << 20)

ss_status ss_cpu_gru(ss_pool *p, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, float *h, float *y, float *scratch)
{
    if (d->batch < 1 || d->seq < 0 || d->in < 1 || d->hidden < 1)
        return SS_E_USAGE;
    if (d->seq == 0)
        return SS_OK;
    int threads = p ? ss_pool_threads(p) : 1;
    int64_t rows = (int64_t)d->batch * d->seq, g3 = 3 * (int64_t)d->hidden;
    gru_job j = {d, x, w_ih, w_hh, b_ih, b_hh, h, y, scratch, scratch + rows * g3, rows};
    /* the projection: about four tasks per thread of at least GRU_POOL_MIN / 4 each */
    int64_t macs = rows * g3 * d->in, tasks = 1;
    if (threads > 1 && macs >= GRU_POOL_MIN) {
        tasks = 4 * (int64_t)threads;
        int64_t cap = macs / (GRU_POOL_MIN / 4);
        tasks = tasks < cap ? tasks : cap;
        tasks = tasks < rows ? tasks : rows;
    }
    j.rows_per_task = (rows + tasks - 1) / tasks;
    tasks = (rows + j.rows_per_task - 1) / j.rows_per_task;
    ss_pool_for(tasks > 1 ? p : NULL, tasks, gru_project, &j);
    /* the recurrence: one task per item */
    int pool_items = d->batch > 1 && threads > 1 && (int64_t)d->seq * g3 * d->hidden >= GRU_POOL_MIN / 4;
    ss_pool_for(pool_items ? p : NULL, d->batch, gru_item, &j);
    return SS_OK;
}

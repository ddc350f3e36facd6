/* engine.c - streaming, batched apply_model (see engine.h).
 *
 * Positions are in frames of the model-rate mixture, whose samples outside
 * [0, length) are zero.  A pass k (one per shift, or a single unshifted pass)
 * covers the view [v0_k, v0_k + V_k) of that signal; its chunks start at
 * view offsets 0, stride, 2*stride, ...  Chunks of all passes are run in order
 * of their start in the mixture, so input is read once, front to back, and
 * output becomes final front to back.  Each pass keeps its own weighted sum
 * and weight sum over a sliding window; frames before every pass's next chunk
 * are final and are pushed.
 */
#include "engine.h"
#include "clock.h"
#include "settings.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Python's random module (MT19937, random.seed(int), randint) ------------------ */

typedef struct mt19937 {
    uint32_t s[624];
    int i;
} mt19937;

static void mt_init(mt19937 *m, uint32_t seed)
{
    m->s[0] = seed;
    for (int i = 1; i < 624; i++)
        m->s[i] = 1812433253u * (m->s[i - 1] ^ (m->s[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

static void mt_init_by_array(mt19937 *m, const uint32_t *key, int len)
{
    mt_init(m, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > len ? 624 : len; k; k--) {
        m->s[i] = (m->s[i] ^ ((m->s[i - 1] ^ (m->s[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++;
        j++;
        if (i >= 624) {
            m->s[0] = m->s[623];
            i = 1;
        }
        if (j >= len)
            j = 0;
    }
    for (int k = 623; k; k--) {
        m->s[i] = (m->s[i] ^ ((m->s[i - 1] ^ (m->s[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= 624) {
            m->s[0] = m->s[623];
            i = 1;
        }
    }
    m->s[0] = 0x80000000u;
}

static uint32_t mt_next(mt19937 *m)
{
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->s[k] & 0x80000000u) | (m->s[(k + 1) % 624] & 0x7fffffffu);
            m->s[k] = m->s[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        m->i = 0;
    }
    uint32_t y = m->s[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

void ss_py_randint(uint64_t seed, int64_t hi, int n, int64_t *out)
{
    mt19937 m;
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    mt_init_by_array(&m, key, key[1] ? 2 : 1);
    uint64_t width = (uint64_t)hi + 1;
    int bits = 0;
    while (bits < 32 && (width >> bits))
        bits++;
    for (int i = 0; i < n; i++) {
        uint32_t r;
        do
            r = mt_next(&m) >> (32 - bits);
        while (r >= width);
        out[i] = (int64_t)r;
    }
}

/* ---- the run ------------------------------------------------------------------------ */

typedef struct pass {
    int64_t v0, V;          /* view start (mixture coordinates) and length        */
    int64_t next;           /* view offset of the next chunk; >= V when done      */
    float *acc;             /* [S*C, win] weighted sums, window starts at `out0`  */
    float *wsum;            /* [win] summed weights                                */
    int64_t hi;             /* window frames [hi, win) of acc/wsum are all zero   */
} pass;

typedef struct job {
    int k;                  /* pass                                               */
    int64_t c;              /* view offset of the chunk                           */
    int64_t clen;           /* chunk length                                       */
    int64_t valid;          /* model input length                                 */
    int64_t read0;          /* first mixture frame the model input starts at      */
    int64_t lo, hi;         /* mixture frames [lo, hi) its input is made of       */
    const float *w;         /* its window [clen]                                  */
} job;

/* Writer item: a finished block [S*C, n] with row pitch `pitch`. */
typedef struct block {
    const float *buf;
    int64_t pitch, n;
} block;

/* A batch of jobs with one valid length: the geometry the device loop needs. */
typedef struct batch {
    job *jobs;
    int nb;
    int64_t keep;           /* input frames before it are needed by no later job   */
    int64_t upto;           /* output before it is final once the batch is added  */
} batch;

/* Post item: a batch and its downloaded output y [nb, S, C, valid]. */
typedef struct post_item {
    batch b;                /* its jobs: a copy the device loop does not reuse     */
    const float *y;
} post_item;

typedef struct run {
    ss_model *m;
    ss_backend *be;
    const ss_engine_params *p;
    int C, S;               /* channels, sources                                  */
    int64_t L;              /* mixture length                                     */
    int64_t seg, stride;    /* chunk length and step                              */
    float *weight;          /* [seg] triangular window (MSST: the fading one)     */
    /* SS_CHUNK_MSST: the one pass's view is the track reflect-padded by
     * `border` at both ends (v0 = -border, V = L + 2 border; border 0 where
     * MSST pads nothing); chunks shorter than seg are padded to it */
    int msst;
    int64_t border;
    float *wfirst, *wlast;  /* [seg] the first chunk's window (no fade-in) and the
                               last one's (no fade-out)                          */
    /* SS_CHUNK_STFT_BLOCKS: the view is the track zero-padded to Lp and
     * reflect-padded by border = n_fft/2; jobs are blocks of frames, their
     * outputs overlap-adds (acc += y) and their windows (weight: a full
     * block's, wlast: the last block's) the envelopes added to wsum */
    int stftb;
    int64_t Lp, hop, n_fft, block, frames;
    int n_pass;
    pass *passes;
    /* input window: mixture frames [in0, in0 + in_n) in planar [C, in_cap] */
    float *in;
    int64_t in0, in_n, in_cap;
    int64_t pulled;         /* frames pulled so far (== mixture position)         */
    /* output window: frames [out0, out0 + win) of every pass's acc/wsum */
    int64_t out0, win;
    float *outbuf;          /* [S*C, win] finished frames handed to push          */
    float *outbuf2;         /* the other half of the double buffer (writer)       */
    struct worker *wr;      /* pushes finished blocks on its own thread           */
    block wblock;           /* the block the writer has                           */
    struct worker *post;    /* overlap-adds batches on its own thread             */
    post_item pitem;        /* the batch it has                                   */
    job *pjobs;             /* [batch] that batch's jobs                          */
    /* batch buffers */
    int64_t valid_max;      /* largest model input length                         */
    float *host_x;          /* [batch, C, valid_max] next upload                  */
    float *host_x2;         /* the other half (an upload may still read it)       */
    float *host_y;          /* [batch, S, C, valid_max] next download             */
    float *host_y2;         /* the other half of the double buffer (post)         */
    float *dev_x, *dev_y;   /* device copies (these six: the model's ss_model_io)  */
    ss_engine_pull pull;
    void *pull_arg;
    ss_engine_push push;
    void *push_arg;
    /* STEMSPLIT_PROFILE=1 or =engine: where the engine's time goes, printed at the end */
    int prof;
    double t_input;         /* decoding, gathering and uploading inputs           */
    double t_device;        /* forward passes and downloads                       */
    double t_post, t_wait;  /* post stage; the device loop waiting on it          */
    double t_wr_wait;       /* the post stage waiting for the writer (encoding)   */
    double *tl;             /* profile: when each batch's download had landed     */
    int64_t n_tl;
} run;

/* Segment length and stride for a model and params; 0 stride on bad params. */
static void geometry(ss_model *m, const ss_engine_params *p, int64_t *seg, int64_t *stride)
{
    const ss_model_info *info = ss_model_get_info(m);
    *seg = p->segment > 0 ? (int64_t)(info->samplerate * p->segment) : info->segment_length;
    *stride = (int64_t)((1.0 - p->overlap) * (double)*seg);
}

/* MSST's reflection at the track's ends (numpy/torch "reflect": the edge
 * sample is not repeated); m lies in [-border, L + border). */
static int64_t reflect(int64_t m, int64_t L)
{
    return m < 0 ? -m : m >= L ? 2 * (L - 1) - m : m;
}

/* Mixture frame of position q of MSST job j's model input, or -1 for a zero:
 * the chunk's frames, then (a chunk shorter than seg) its reflection when it
 * is longer than seg / 2, else zeros. */
static int64_t msst_source(const run *r, const job *j, int64_t q)
{
    if (q >= j->clen) {
        if (j->clen <= r->seg / 2)
            return -1;
        q = 2 * (j->clen - 1) - q;
    }
    return reflect(j->read0 + q, r->L);
}

/* SS_CHUNK_STFT_BLOCKS: mixture frame of view position m, or -1 for a zero:
 * the track zero-padded to Lp, reflected at both ends (torch.stft's centre) */
static int64_t stftb_source(const run *r, int64_t m)
{
    int64_t q = reflect(m, r->Lp);
    return q < r->L ? q : -1;
}

/* The mixture frames [lo, hi) an MSST job reads: its frames [a0, a1) of the
 * padded view (its own padding reflects within them), reflected at the ends. */
static void msst_span(const run *r, job *j)
{
    int64_t a0 = j->read0, a1 = j->read0 + j->clen, L = r->stftb ? r->Lp : r->L, lo = INT64_MAX, hi = INT64_MIN;
    if (a0 < 0) {                                   /* [a0, min(a1, 0)) -> -m */
        int64_t e = a1 < 0 ? a1 : 0;
        lo = 1 - e;
        hi = -a0 + 1;
    }
    if (a0 < L && a1 > 0) {                         /* inside */
        int64_t b0 = a0 > 0 ? a0 : 0, b1 = a1 < L ? a1 : L;
        lo = b0 < lo ? b0 : lo;
        hi = b1 > hi ? b1 : hi;
    }
    if (a1 > L) {                                   /* [max(a0, L), a1) -> 2 (L - 1) - m */
        int64_t b0 = a0 > L ? a0 : L;
        int64_t l2 = 2 * (L - 1) - (a1 - 1), h2 = 2 * (L - 1) - b0 + 1;
        lo = l2 < lo ? l2 : lo;
        hi = h2 > hi ? h2 : hi;
    }
    if (r->stftb) {                                 /* the zero padding [L, Lp) is not read */
        hi = hi < r->L ? hi : r->L;
        lo = lo < hi ? lo : hi;
    }
    j->lo = lo;
    j->hi = hi;
}

/* The next job in mixture order, or 0 when every pass is done. */
static int next_job(run *r, job *j)
{
    int best = -1;
    for (int k = 0; k < r->n_pass; k++) {
        const pass *ps = &r->passes[k];
        if (ps->next < ps->V && (best < 0 || ps->v0 + ps->next < r->passes[best].v0 + r->passes[best].next))
            best = k;
    }
    if (best < 0)
        return 0;
    pass *ps = &r->passes[best];
    j->k = best;
    j->c = ps->next;
    j->clen = ps->V - ps->next < r->seg ? ps->V - ps->next : r->seg;
    if (r->stftb) {
        /* a block of G frames from frame f0: the (G-1) hop + n_fft samples they cover */
        int64_t f0 = j->c / r->hop, G = r->frames - f0 < r->block ? r->frames - f0 : r->block;
        j->clen = j->valid = (G - 1) * r->hop + r->n_fft;
        j->read0 = ps->v0 + j->c;
        j->w = G == r->block ? r->weight : r->wlast;
        msst_span(r, j);
        ps->next = f0 + r->block >= r->frames ? ps->V : ps->next + r->stride;
        return 1;
    }
    if (r->msst) {
        /* MSST (batch size 1): no fade-in on the first chunk, else no fade-out on the last */
        j->valid = r->seg;
        j->read0 = ps->v0 + j->c;
        j->w = j->c == 0 ? r->wfirst : j->c + r->stride >= ps->V ? r->wlast : r->weight;
        msst_span(r, j);
    } else {
        j->valid = ss_model_valid_length(r->m, j->clen);
        j->read0 = ps->v0 + j->c - (j->valid - j->clen) / 2;
        j->w = r->weight;
        j->lo = j->read0;
        j->hi = j->read0 + j->valid;
    }
    ps->next += r->stride;
    return 1;
}

/* Lowest mixture frame any future job can read, and the first frame not yet final. */
static int64_t future_read_min(const run *r)
{
    int64_t lo = INT64_MAX;
    for (int k = 0; k < r->n_pass; k++) {
        const pass *ps = &r->passes[k];
        if (ps->next < ps->V) {
            /* MSST: a later chunk reads from its start, or (past the end) from
             * the last border + 1 frames its reflection needs */
            int64_t v = r->msst || r->stftb ? ps->v0 + ps->next : ps->v0 + ps->next - r->valid_max;
            int64_t Lr = r->stftb ? r->Lp : r->L;
            if ((r->msst || r->stftb) && Lr - 1 - r->border < v)
                v = Lr - 1 - r->border;
            if (v < lo)
                lo = v;
        }
    }
    return lo;
}

static int64_t final_upto(const run *r)
{
    int64_t lo = r->L;
    for (int k = 0; k < r->n_pass; k++) {
        const pass *ps = &r->passes[k];
        if (ps->next < ps->V && ps->v0 + ps->next < lo)
            lo = ps->v0 + ps->next;
    }
    return lo;
}

/* Make mixture frames up to `upto` (exclusive) available, dropping frames before `keep`. */
static ss_status fill_input(run *r, int64_t keep, int64_t upto, ss_error *err)
{
    if (upto > r->L)
        upto = r->L;
    if (keep > r->in0) {                        /* drop frames nobody needs any more */
        int64_t drop = keep - r->in0 < r->in_n ? keep - r->in0 : r->in_n;
        for (int c = 0; c < r->C; c++)
            memmove(r->in + c * r->in_cap, r->in + c * r->in_cap + drop, sizeof(float) * (size_t)(r->in_n - drop));
        r->in0 += drop;
        r->in_n -= drop;
        if (r->in_n == 0)
            r->in0 = r->pulled;
    }
    while (r->pulled < upto) {
        int64_t room = r->in_cap - r->in_n, want = upto - r->pulled;
        if (room <= 0)
            return ss_fail(err, SS_E_INTERNAL, "engine: input window overflow");
        int64_t got = 0;
        ss_status s = r->pull(r->pull_arg, r->in + r->in_n, r->in_cap, want < room ? want : room, &got, err);
        if (s != SS_OK)
            return s;
        if (got <= 0)
            return ss_fail(err, SS_E_IO, "input ended after %lld of %lld frames", (long long)r->pulled,
                           (long long)r->L);
        r->in_n += got;
        r->pulled += got;
    }
    return SS_OK;
}

/* Copy mixture frames [read0, read0 + n) (zeros outside [0, L)) into dst [C, pitch]. */
static void gather(const run *r, int64_t read0, int64_t n, float *dst, int64_t pitch)
{
    for (int c = 0; c < r->C; c++) {
        const float *src = r->in + c * r->in_cap;
        float *d = dst + c * pitch;
        for (int64_t i = 0; i < n; i++) {
            int64_t pos = read0 + i;
            d[i] = (pos >= 0 && pos < r->L && pos >= r->in0 && pos < r->in0 + r->in_n) ? src[pos - r->in0] : 0.0f;
        }
    }
}

/* MSST job j's model input into dst [C, seg] */
static void gather_msst(const run *r, const job *j, float *dst)
{
    for (int c = 0; c < r->C; c++) {
        const float *src = r->in + c * r->in_cap;
        float *d = dst + c * r->seg;
        for (int64_t q = 0; q < r->seg; q++) {
            int64_t pos = msst_source(r, j, q);
            d[q] = pos >= r->in0 && pos < r->in0 + r->in_n ? src[pos - r->in0] : 0.0f;
        }
    }
}

/* SS_CHUNK_STFT_BLOCKS job j's model input into dst [C, valid] */
static void gather_stftb(const run *r, const job *j, float *dst)
{
    for (int c = 0; c < r->C; c++) {
        const float *src = r->in + c * r->in_cap;
        float *d = dst + c * j->valid;
        for (int64_t q = 0; q < j->valid; q++) {
            int64_t pos = stftb_source(r, j->read0 + q);
            d[q] = pos >= r->in0 && pos < r->in0 + r->in_n ? src[pos - r->in0] : 0.0f;
        }
    }
}

/* The post stage's loops, written in blocks of 8 independent lanes so that
 * the compiler vectorises them at -O2; each element's arithmetic is the
 * scalar one (no reassociation), so the results do not change. */

/* acc[i] += w[i] * x[i] (x NULL: acc[i] += w[i]) */
static void add_weighted(float *restrict acc, const float *restrict w, const float *restrict x, int64_t n)
{
    int64_t i = 0;
    if (x) {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                acc[i + k] += w[i + k] * x[i + k];
        for (; i < n; i++)
            acc[i] += w[i] * x[i];
    } else {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++)
                acc[i + k] += w[i + k];
        for (; i < n; i++)
            acc[i] += w[i];
    }
}

/* o[i] = 0 + acc[i] / wsum[i] (the one-pass case of flush_output's sum) */
static void divide(float *restrict o, const float *restrict acc, const float *restrict wsum, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            o[i + k] = 0.0f + acc[i + k] / wsum[i + k];
    for (; i < n; i++)
        o[i] = 0.0f + acc[i] / wsum[i];
}

/* o[i] = acc[i] / wsum[i], 0 where wsum[i] is 0 (MSST: numpy's nan_to_num
 * of 0 / 0 where no chunk's window reached a frame) */
static void divide_or_zero(float *restrict o, const float *restrict acc, const float *restrict wsum, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        o[i] = wsum[i] != 0.0f ? acc[i] / wsum[i] : 0.0f;
}

/* Overlap-add a chunk's trimmed output y [S, C, valid] into its pass: its
 * frames that lie in the mixture (a shifted or MSST-padded view reaches
 * beyond it). */
static ss_status accumulate(run *r, const job *j, const float *y, ss_error *err)
{
    pass *ps = &r->passes[j->k];
    int64_t start = ps->v0 + j->c - r->out0;          /* window index of the chunk's first frame */
    int64_t trim = (j->valid - j->clen) / 2;
    if (r->msst || r->stftb)
        trim = 0;                                     /* MSST pads at the end only */
    int64_t i1 = r->L - (ps->v0 + j->c);              /* frames from the mixture's end on are dropped */
    i1 = i1 < j->clen ? i1 : j->clen;
    if (start < -r->win || start + i1 > r->win)
        return ss_fail(err, SS_E_INTERNAL, "engine: output window overflow");
    int64_t i0 = start < 0 ? -start : 0;              /* frames before out0 lie before the mixture */
    if (i0 < i1)
        add_weighted(ps->wsum + start + i0, j->w + i0, NULL, i1 - i0);
    if (start + i1 > ps->hi)
        ps->hi = start + i1;
    for (int row = 0; row < r->S * r->C && i0 < i1 && r->stftb; row++) {
        float *restrict acc = ps->acc + row * r->win + start + i0;     /* an overlap-add already */
        const float *restrict src = y + row * j->valid + i0;
        for (int64_t i = 0; i < i1 - i0; i++)
            acc[i] += src[i];
    }
    for (int row = 0; row < r->S * r->C && i0 < i1 && !r->stftb; row++)
        add_weighted(ps->acc + row * r->win + start + i0, j->w + i0, y + row * j->valid + trim + i0, i1 - i0);
    return SS_OK;
}

/* ---- workers: single-slot hand-off threads.  The device loop (main thread)
 * hands each batch's downloaded output to the `post` worker, which overlap-adds
 * it and slides the windows while the device runs the next batch; `post` hands
 * finished blocks to the `writer` worker, which runs push() (encoding) one block
 * behind.  An item is owned by the worker from submit until the next wait; the
 * first failure is kept and returned by every later wait. */

typedef ss_status (*worker_fn)(void *ctx, void *item, ss_error *err);

typedef struct worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy, quit;            /* an item is handed over / the thread should end */
    void *item;
    worker_fn fn;
    void *ctx;
    ss_status st;
    ss_error err;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->busy && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->busy)
            break;
        pthread_mutex_unlock(&w->mu);
        ss_status s = w->st == SS_OK ? w->fn(w->ctx, w->item, &w->err) : w->st;
        pthread_mutex_lock(&w->mu);
        w->st = s;
        w->busy = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Wait until the worker is idle; its status (copying its error into err). */
static ss_status worker_wait(worker *w, ss_error *err)
{
    pthread_mutex_lock(&w->mu);
    while (w->busy)
        pthread_cond_wait(&w->cv, &w->mu);
    ss_status s = w->st;
    pthread_mutex_unlock(&w->mu);
    if (s != SS_OK)
        ss_fail(err, s, "%s", w->err.msg);
    return s;
}

/* Hand over an item (the worker must be idle: worker_wait first). */
static void worker_submit(worker *w, void *item)
{
    pthread_mutex_lock(&w->mu);
    w->item = item;
    w->busy = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static worker *worker_start(worker_fn fn, void *ctx)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->fn = fn;
    w->ctx = ctx;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
        return NULL;
    }
    return w;
}

static void worker_stop(worker *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    while (w->busy)
        pthread_cond_wait(&w->cv, &w->mu);
    w->quit = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static ss_status writer_fn(void *ctx, void *item, ss_error *err)
{
    run *r = ctx;
    const block *b = item;
    return r->push(r->push_arg, b->buf, b->pitch, b->n, err);
}

/* Push frames [out0, upto) and slide every pass's window. */
static ss_status flush_output(run *r, int64_t upto, ss_error *err)
{
    int64_t n = upto - r->out0;
    if (n <= 0)
        return SS_OK;
    int rows = r->S * r->C;
    for (int row = 0; row < rows && r->n_pass == 1 && (r->msst || r->stftb); row++)
        divide_or_zero(r->outbuf + row * r->win, r->passes[0].acc + row * r->win, r->passes[0].wsum, n);
    for (int row = 0; row < rows && r->n_pass == 1 && !r->msst && !r->stftb; row++)
        divide(r->outbuf + row * r->win, r->passes[0].acc + row * r->win, r->passes[0].wsum, n);
    for (int row = 0; row < rows && r->n_pass > 1; row++) {
        float *o = r->outbuf + row * r->win;
        for (int64_t i = 0; i < n; i++) {
            float sum = 0.0f;
            for (int k = 0; k < r->n_pass; k++) {
                const pass *ps = &r->passes[k];
                sum += ps->acc[row * r->win + i] / ps->wsum[i];
            }
            o[i] = r->n_pass > 1 ? sum / (float)r->n_pass : sum;
        }
    }
    ss_status s;
    if (r->wr) {
        /* hand the block to the writer thread and keep computing into the other buffer */
        double t0 = ss_seconds();
        s = worker_wait(r->wr, err);
        r->t_wr_wait += ss_seconds() - t0;
        if (s != SS_OK)
            return s;
        r->wblock = (block){r->outbuf, r->win, n};
        worker_submit(r->wr, &r->wblock);
        float *t = r->outbuf;
        r->outbuf = r->outbuf2;
        r->outbuf2 = t;
    } else if ((s = r->push(r->push_arg, r->outbuf, r->win, n, err)) != SS_OK) {
        return s;
    }
    /* slide the windows by n; only [0, hi) holds data, the rest is zero already */
    for (int k = 0; k < r->n_pass; k++) {
        pass *ps = &r->passes[k];
        int64_t live = ps->hi > n ? ps->hi - n : 0;       /* frames that move down */
        int64_t dirty = ps->hi < r->win ? ps->hi : r->win; /* frames that held data */
        for (int row = 0; row < rows; row++) {
            float *acc = ps->acc + row * r->win;
            memmove(acc, acc + n, sizeof(float) * (size_t)live);
            memset(acc + live, 0, sizeof(float) * (size_t)(dirty - live));
        }
        memmove(ps->wsum, ps->wsum + n, sizeof(float) * (size_t)live);
        memset(ps->wsum + live, 0, sizeof(float) * (size_t)(dirty - live));
        ps->hi = live;
    }
    r->out0 = upto;
    return SS_OK;
}

/* Take the next batch from the job stream (*pending is the first job not yet
 * taken); nb = 0 at the end. */
static void take_batch(run *r, batch *bt, job *pending, int *have_pending)
{
    bt->nb = 0;
    while (*have_pending && bt->nb < r->p->batch && (bt->nb == 0 || pending->valid == bt->jobs[0].valid)) {
        bt->jobs[bt->nb++] = *pending;
        *have_pending = next_job(r, pending);
    }
    if (!bt->nb)
        return;
    bt->keep = future_read_min(r);
    if (*have_pending && pending->lo < bt->keep)
        bt->keep = pending->lo;
    for (int b = 0; b < bt->nb; b++)
        if (bt->jobs[b].lo < bt->keep)
            bt->keep = bt->jobs[b].lo;
    /* the pending job's pass has not advanced past it yet: count it as not done */
    bt->upto = final_upto(r);
    if (*have_pending) {
        int64_t pend = r->passes[pending->k].v0 + pending->c;
        if (pend < bt->upto)
            bt->upto = pend;
    }
}

/* Decode the mixture up to the end of a batch's inputs. */
static ss_status batch_input(run *r, const batch *bt, ss_error *err)
{
    int64_t read_end = 0;
    for (int b = 0; b < bt->nb; b++)
        if (bt->jobs[b].hi > read_end)
            read_end = bt->jobs[b].hi;
    return fill_input(r, bt->keep, read_end, err);
}

/* Gather a batch's inputs and upload them to dev_x.  The upload may still be
 * reading host_x when this returns: the next batch gathers into the other
 * buffer (this one is free again once the download queued after it landed). */
static ss_status batch_upload(run *r, const batch *bt, ss_error *err)
{
    int64_t valid = bt->jobs[0].valid;
    size_t xn = (size_t)r->C * (size_t)valid;
    for (int b = 0; b < bt->nb; b++) {
        if (r->stftb)
            gather_stftb(r, &bt->jobs[b], r->host_x + b * xn);
        else if (r->msst)
            gather_msst(r, &bt->jobs[b], r->host_x + b * xn);
        else
            gather(r, bt->jobs[b].read0, valid, r->host_x + b * xn, valid);
    }
    if (ss_upload(r->be, r->dev_x, r->host_x, (size_t)bt->nb * xn) != SS_OK)
        return ss_backend_status(r->be, err);
    float *t = r->host_x;
    r->host_x = r->host_x2;
    r->host_x2 = t;
    return SS_OK;
}

/* Upload a batch's inputs and start its forward pass (it may run on after
 * this returns: its download waits for it). */
static ss_status batch_launch(run *r, const batch *bt, ss_error *err)
{
    double t0 = ss_seconds();
    ss_status s = batch_upload(r, bt, err);
    double t1 = ss_seconds();
    if (s == SS_OK)
        s = ss_model_forward(r->m, r->dev_x, r->dev_y, bt->nb, bt->jobs[0].valid, err);
    r->t_input += t1 - t0;
    r->t_device += ss_seconds() - t1;
    return s;
}

/* Overlap-add a downloaded batch (a post_item) and push what became final. */
static ss_status post_batch(void *ctx, void *item, ss_error *err)
{
    run *r = ctx;
    const post_item *it = item;
    const batch *bt = &it->b;
    size_t yn = (size_t)r->S * (size_t)r->C * (size_t)bt->jobs[0].valid;
    double t0 = ss_seconds();
    ss_status s = SS_OK;
    for (int b = 0; b < bt->nb && s == SS_OK; b++)
        s = accumulate(r, &bt->jobs[b], it->y + b * yn, err);
    if (s == SS_OK)
        s = flush_output(r, bt->upto, err);
    r->t_post += ss_seconds() - t0;
    return s;
}

/* Hand host_y's batch to the post worker (or add it here without one) and
 * swap the download buffers. */
static ss_status post_submit(run *r, const batch *bt, ss_error *err)
{
    ss_status s;
    double t0 = ss_seconds();
    if (r->post && (s = worker_wait(r->post, err)) != SS_OK)
        return s;
    r->t_wait += ss_seconds() - t0;
    memcpy(r->pjobs, bt->jobs, sizeof *bt->jobs * (size_t)bt->nb);
    r->pitem = (post_item){*bt, r->host_y};
    r->pitem.b.jobs = r->pjobs;
    if (!r->post)
        return post_batch(r, &r->pitem, err);
    worker_submit(r->post, &r->pitem);
    float *t = r->host_y;
    r->host_y = r->host_y2;
    r->host_y2 = t;
    return SS_OK;
}

static void run_free(run *r)
{
    worker_stop(r->post);
    r->post = NULL;
    worker_stop(r->wr);
    r->wr = NULL;
    free(r->pjobs);
    free(r->outbuf2);
    free(r->weight);
    free(r->wfirst);
    free(r->wlast);
    if (r->passes)
        for (int k = 0; k < r->n_pass; k++) {
            free(r->passes[k].acc);
            free(r->passes[k].wsum);
        }
    free(r->passes);
    free(r->in);
    free(r->outbuf);
    free(r->tl);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* STEMSPLIT_PROFILE: when the batches' outputs landed, from the engine's start
 * t0 (launched: the first batch's forward pass had been queued; done: the last
 * block had been encoded): the start-up is the first two (the first pass runs
 * directly, the second is recorded where the backend records), the steady
 * state the median period between later ones, the drain what follows the last. */
static void print_timeline(run *r, double t0, double launched, double done)
{
    if (r->n_tl < 1)
        return;
    double *d = malloc(sizeof *d * (size_t)r->n_tl);
    int64_t n = 0;
    for (int64_t i = 2; d && i < r->n_tl; i++)
        d[n++] = r->tl[i] - r->tl[i - 1];
    double med = 0, lo = 0, hi = 0;
    if (n) {
        qsort(d, (size_t)n, sizeof *d, cmp_double);
        med = d[n / 2], lo = d[0], hi = d[n - 1];
    }
    free(d);
    fprintf(stderr, "engine timeline: first batch launched at %.3f s, its output landed at %.3f s, the second's at "
            "%.3f s; then every %.2f ms (median of %lld; %.2f-%.2f ms); the last landed at %.3f s, done at %.3f s\n",
            launched - t0, r->tl[0] - t0, r->n_tl > 1 ? r->tl[1] - t0 : 0.0, med * 1e3, (long long)n, lo * 1e3,
            hi * 1e3, r->tl[r->n_tl - 1] - t0, done - t0);
}

/* The host memory the engine's buffers take for these options (as allocated
 * below: every pass's accumulator and weights over the output window, the
 * input window, the double output buffer and the model's double-buffered
 * batch inputs and outputs), and the failure that names it and what to lower.
 * Running out here is a limit the options chose, not a bug: SS_E_DEVICE (69). */
static ss_status engine_nomem(const run *r, const ss_engine_params *p, const ss_model_info *info, ss_error *err)
{
    int64_t valid = ss_model_valid_length(r->m, r->seg);
    int64_t spread = p->shifts > 0 ? (int64_t)(0.5 * info->samplerate) : 0;
    double win = (double)p->batch * (double)r->stride + (double)r->seg + (double)spread + 2.0 * (double)valid + 16;
    double rows = (double)r->S * r->C, passes = p->shifts > 0 ? p->shifts : 1;
    double bytes = 4.0 * (passes * (rows + 1) * win + r->C * (win + valid) + 2 * rows * win +
                          2.0 * p->batch * (r->C + rows) * (double)valid);
    return ss_fail(err, SS_E_DEVICE, "out of memory setting up the chunked engine: its buffers need about %.1f GiB "
                   "(%.1f s segments, --batch %d, %g pass%s, %d sources x %d channels); lower --batch%s%s",
                   bytes / 1073741824.0, (double)r->seg / info->samplerate, p->batch, passes,
                   passes == 1 ? "" : "es", r->S, r->C, p->segment > 0 ? " or --segment" : "",
                   p->shifts > 1 ? " or --shifts" : "");
}

/* torch.linspace(a, b, n)[i] in float32, as torch computes it (from both ends) */
static float linspace_at(float a, float b, int64_t n, int64_t i)
{
    if (n == 1)
        return a;
    float step = (b - a) / (float)(n - 1);
    return i < n / 2 ? a + step * (float)i : b - step * (float)(n - 1 - i);
}

/* SS_CHUNK_MSST: the geometry of MSST's demix() (generic mode) and its three
 * windows (_getWindowingArray, and its copies without fade-in or fade-out);
 * the single pass over the reflect-padded track. */
static ss_status setup_msst(run *r, const ss_engine_params *p, const ss_model_info *info, ss_error *err)
{
    int64_t C = p->segment > 0 ? llround(p->segment * info->samplerate) : info->segment_length;
    int num_overlap = p->num_overlap > 0 ? p->num_overlap : info->overlap_default;
    if (p->shifts > 0)
        return ss_fail(err, SS_E_USAGE, "--shifts %d: model %s uses MSST's chunking, which has no random shifts",
                       p->shifts, info->name);
    if (num_overlap < 1)
        return ss_fail(err, SS_E_USAGE, "model %s: MSST's num_overlap must be >= 1 (got %d)", info->name,
                       num_overlap);
    if (C < 10)
        return ss_fail(err, SS_E_USAGE, "chunk of %lld samples: MSST's chunking needs at least 10 (its fades are a "
                       "tenth of a chunk)", (long long)C);
    if (C / num_overlap < 1)
        return ss_fail(err, SS_E_USAGE, "chunk of %lld samples with num_overlap %d leaves no step between chunks",
                       (long long)C, num_overlap);
    if (ss_model_valid_length(r->m, C) != C)
        return ss_fail(err, SS_E_USAGE, "model %s cannot take chunks of %lld samples (it asks for %lld)%s", info->name,
                       (long long)C, (long long)ss_model_valid_length(r->m, C), p->segment > 0 ? "; change --segment" : "");
    r->msst = 1;
    r->seg = C;
    r->stride = C / num_overlap;
    int64_t border = C - r->stride, fade = C / 10;
    r->n_pass = 1;
    if (!(r->passes = calloc(1, sizeof *r->passes)))
        return SS_E_NOMEM;
    if (r->L > 2 * border && border > 0) {          /* reflect-padded by border at both ends */
        r->border = border;
        r->passes[0].v0 = -border;
        r->passes[0].V = r->L + 2 * border;
    } else {
        r->passes[0].V = r->L;
    }
    r->weight = malloc(sizeof(float) * (size_t)C);
    r->wfirst = malloc(sizeof(float) * (size_t)C);
    r->wlast = malloc(sizeof(float) * (size_t)C);
    if (!r->weight || !r->wfirst || !r->wlast)
        return SS_E_NOMEM;
    for (int64_t i = 0; i < C; i++)
        r->weight[i] = r->wfirst[i] = r->wlast[i] = 1.0f;
    for (int64_t i = 0; i < fade; i++) {
        r->weight[C - fade + i] = r->wfirst[C - fade + i] = linspace_at(1.0f, 0.0f, fade, i);
        r->weight[i] = r->wlast[i] = linspace_at(0.0f, 1.0f, fade, i);
    }
    return SS_OK;
}

/* SS_CHUNK_STFT_BLOCKS: the model's geometry, the padded view, and the
 * envelopes of a full block and of the last one. */
static void block_env(const ss_stft_blocks *g, int64_t frames, float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        w[i] = 0.0f;
    for (int64_t t = 0; t < frames; t++)
        for (int64_t i = 0; i < g->n_fft && t * g->hop + i < n; i++)
            w[t * g->hop + i] += g->window_sq[i];
}

static ss_status setup_stftb(run *r, const ss_engine_params *p, const ss_model_info *info, ss_error *err)
{
    ss_stft_blocks g;
    ss_status s = ss_model_stft_blocks(r->m, &g, err);
    if (s != SS_OK)
        return s;
    if (p->shifts > 0)
        return ss_fail(err, SS_E_USAGE, "--shifts %d: model %s runs on whole-track STFT blocks, which have no "
                       "random shifts", p->shifts, info->name);
    r->stftb = 1;
    r->n_fft = g.n_fft;
    r->hop = g.hop;
    r->block = g.block;
    r->border = g.n_fft / 2;
    r->Lp = g.pad_end ? (r->L + g.hop - 1) / g.hop * g.hop : r->L;
    if (r->Lp <= r->border)
        return ss_fail(err, SS_E_DATA, "the input is %lld samples: model %s needs more than %d (its STFT's reflect "
                       "padding)", (long long)r->L, info->name, g.n_fft / 2);
    r->frames = r->Lp / g.hop + 1;
    r->seg = (g.block - 1) * (int64_t)g.hop + g.n_fft;
    r->stride = g.block * (int64_t)g.hop;
    r->n_pass = 1;
    if (!(r->passes = calloc(1, sizeof *r->passes)))
        return SS_E_NOMEM;
    r->passes[0].v0 = -r->border;
    r->passes[0].V = r->Lp + 2 * r->border;
    int64_t last = r->frames - (r->frames - 1) / g.block * g.block;
    r->weight = malloc(sizeof(float) * (size_t)r->seg);
    r->wlast = malloc(sizeof(float) * (size_t)r->seg);
    if (!r->weight || !r->wlast)
        return SS_E_NOMEM;
    block_env(&g, g.block, r->weight, r->seg);
    block_env(&g, last, r->wlast, r->seg);
    return SS_OK;
}

/* SS_CHUNK_DEMUCS: demucs's apply_model(split=True) on a stream; with msst,
 * SS_CHUNK_MSST (setup_msst) through the same loop */
static ss_status run_chunks(ss_model *m, ss_backend *be, const ss_engine_params *p, int64_t length, ss_chunking ch,
                            ss_engine_pull pull, void *pull_arg, ss_engine_push push, void *push_arg, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    run r = {.m = m, .be = be, .p = p, .C = info->channels, .S = ss_model_net_sources(info), .L = length,
             .pull = pull, .pull_arg = pull_arg, .push = push, .push_arg = push_arg};
    ss_status s = SS_OK;
    if (p->channels > 0 && p->channels != info->channels)
        return ss_fail(err, SS_E_INTERNAL, "%s: %d channels for a model of %d", info->name, p->channels,
                       info->channels);
    if (length <= 0)
        return SS_OK;
    if (p->batch < 1)
        return ss_fail(err, SS_E_USAGE, "--batch must be >= 1");
    int msst = ch == SS_CHUNK_MSST;
    if (msst || ch == SS_CHUNK_STFT_BLOCKS) {
        if ((s = msst ? setup_msst(&r, p, info, err) : setup_stftb(&r, p, info, err)) == SS_E_NOMEM)
            goto nomem;
        if (s != SS_OK)
            goto done;
        goto windows;
    }
    if (p->overlap < 0 || p->overlap >= 1)
        return ss_fail(err, SS_E_USAGE, "--overlap %g: must be in [0, 1)", p->overlap);
    if (p->batch < 1 || p->shifts < 0)
        return ss_fail(err, SS_E_USAGE, "--batch must be >= 1 and --shifts >= 0");
    geometry(m, p, &r.seg, &r.stride);
    if (r.seg < 1 || r.stride < 1)
        return ss_fail(err, SS_E_USAGE, "segment %.3g s with overlap %g leaves no step between chunks",
                       p->segment > 0 ? p->segment : (double)info->segment_length / info->samplerate, p->overlap);
    if (p->segment > 0 && ss_model_valid_length(m, r.seg) < r.seg)
        return ss_fail(err, SS_E_USAGE, "--segment %g is longer than model %s allows", p->segment, info->name);

    /* triangular weights, max 1 in the middle (transition power 1) */
    r.weight = malloc(sizeof *r.weight * (size_t)r.seg);
    int64_t half = r.seg / 2, wmax = half > r.seg - half ? half : r.seg - half;
    if (!r.weight)
        goto nomem;
    for (int64_t i = 0; i < r.seg; i++) {
        int64_t w = i < half ? i + 1 : r.seg - i;
        r.weight[i] = (float)w / (float)wmax;
    }

    /* passes */
    int64_t max_shift = (int64_t)(0.5 * info->samplerate);
    r.n_pass = p->shifts > 0 ? p->shifts : 1;
    r.passes = calloc((size_t)r.n_pass, sizeof *r.passes);
    if (!r.passes)
        goto nomem;
    if (p->shifts > 0) {
        int64_t *off = malloc(sizeof *off * (size_t)p->shifts);
        if (!off)
            goto nomem;
        ss_py_randint(p->seed, max_shift, p->shifts, off);
        for (int k = 0; k < p->shifts; k++) {
            r.passes[k].v0 = off[k] - max_shift;
            r.passes[k].V = length + max_shift - off[k];
        }
        free(off);
    } else {
        r.passes[0].v0 = 0;
        r.passes[0].V = length;
    }

windows:
    /* windows: a batch spans batch*stride frames per pass, plus a chunk, plus shift spread */
    r.valid_max = r.stftb ? r.seg : ss_model_valid_length(m, r.seg);
    int64_t spread = p->shifts > 0 && !msst ? (int64_t)(0.5 * info->samplerate) : 0;
    /* (STFT blocks: a batch's outputs start at out0, the first block's span; no
     * valid-length padding either side) */
    r.win = (int64_t)p->batch * r.stride + r.seg + spread + (r.stftb ? 0 : 2 * r.valid_max) + 16;
    r.in_cap = r.win + r.valid_max;
    size_t rows = (size_t)r.S * (size_t)r.C;
    for (int k = 0; k < r.n_pass; k++) {
        r.passes[k].acc = calloc(rows * (size_t)r.win, sizeof(float));
        r.passes[k].wsum = calloc((size_t)r.win, sizeof(float));
        if (!r.passes[k].acc || !r.passes[k].wsum)
            goto nomem;
    }
    r.in = malloc(sizeof(float) * (size_t)r.C * (size_t)r.in_cap);
    r.outbuf = malloc(sizeof(float) * rows * (size_t)r.win);
    r.outbuf2 = malloc(sizeof(float) * rows * (size_t)r.win);
    if (!r.outbuf2)
        goto nomem;
    r.pjobs = malloc(sizeof *r.pjobs * (size_t)p->batch);
    if (!r.in || !r.outbuf || !r.pjobs)
        goto nomem;
    /* without threads (NULL) each stage runs on this thread instead */
    r.wr = worker_start(writer_fn, &r);
    r.post = worker_start(post_batch, &r);
    ss_model_io *io = NULL;
    if ((s = ss_model_io_get(m, (size_t)p->batch * (size_t)r.C * (size_t)r.valid_max,
                             (size_t)p->batch * rows * (size_t)r.valid_max, &io, err)) != SS_OK)
        goto done;
    r.dev_x = io->dev_x;
    r.dev_y = io->dev_y;
    r.host_x = io->host_x[0];
    r.host_x2 = io->host_x[1];
    r.host_y = io->host_y[0];
    r.host_y2 = io->host_y[1];
    r.in0 = r.out0 = 0;
    r.prof = ss_profile_stages();
    /* shifted passes start before frame 0; accumulate() skips frames before the mixture */

    int64_t total = 0, done = 0;                /* chunks of all passes, for progress */
    for (int k = 0; k < r.n_pass; k++)
        total += r.stftb ? (r.frames + r.block - 1) / r.block : (r.passes[k].V + r.stride - 1) / r.stride;
    /* The device loop.  A backend may run the forward pass asynchronously
     * (CUDA): the next batch's input is decoded while the device works on this
     * one.  Where downloads overlap, the next batch's upload and forward pass
     * are queued behind this batch's download before waiting for it, so the
     * device goes from one batch to the next without waiting for the host;
     * elsewhere the download completes first and the batch is handed to the
     * post stage before the next forward pass starts. */
    job *jobs_a = malloc(sizeof *jobs_a * (size_t)p->batch), *jobs_b = malloc(sizeof *jobs_b * (size_t)p->batch);
    batch cur = {.jobs = jobs_a}, nxt = {.jobs = jobs_b};
    job pending;
    int have_pending = next_job(&r, &pending), overlap = ss_downloads_overlap(be);
    if (!jobs_a || !jobs_b)
        s = engine_nomem(&r, p, info, err);
    else
        take_batch(&r, &cur, &pending, &have_pending);
    if (r.prof && !(r.tl = malloc(sizeof *r.tl * (size_t)(total + 1))))
        r.prof = 0;
    double t0 = ss_seconds(), t_start = t0, t_launched = 0;
    if (s == SS_OK && cur.nb && (s = batch_input(&r, &cur, err)) == SS_OK) {
        r.t_input += ss_seconds() - t0;
        s = batch_launch(&r, &cur, err);
        t_launched = ss_seconds();
    }
    while (s == SS_OK && cur.nb) {
        if (p->cancel && *p->cancel) {
            s = ss_fail(err, SS_E_INTERRUPT, "interrupted");
            break;
        }
        size_t yn = (size_t)r.S * (size_t)r.C * (size_t)cur.jobs[0].valid;
        t0 = ss_seconds();
        take_batch(&r, &nxt, &pending, &have_pending);
        if (nxt.nb && (s = batch_input(&r, &nxt, err)) != SS_OK)
            break;
        r.t_input += ss_seconds() - t0;
        t0 = ss_seconds();
        if (ss_download_start(be, r.host_y, r.dev_y, (size_t)cur.nb * yn) != SS_OK) {
            s = ss_backend_status(be, err);
            break;
        }
        r.t_device += ss_seconds() - t0;
        if (overlap && nxt.nb && (s = batch_launch(&r, &nxt, err)) != SS_OK)
            break;
        t0 = ss_seconds();
        if (ss_download_wait(be) != SS_OK) {
            s = ss_backend_status(be, err);
            break;
        }
        r.t_device += ss_seconds() - t0;
        if (r.prof && r.n_tl <= total)
            r.tl[r.n_tl++] = ss_seconds();
        if ((s = post_submit(&r, &cur, err)) != SS_OK)
            break;
        done += cur.nb;
        if (p->progress)
            p->progress(p->progress_arg, done, total);
        if (!overlap && nxt.nb && (s = batch_launch(&r, &nxt, err)) != SS_OK)
            break;
        batch t = cur;
        cur = nxt;
        nxt = t;
    }
    free(jobs_a);
    free(jobs_b);
    if (r.post) {
        ss_status ps = worker_wait(r.post, s == SS_OK ? err : &(ss_error){0});
        if (s == SS_OK)
            s = ps;
    }
    if (s == SS_OK)
        s = flush_output(&r, length, err);
    if (r.wr) {
        ss_status ws = worker_wait(r.wr, s == SS_OK ? err : &(ss_error){0});
        if (s == SS_OK)
            s = ws;
    }
    if (r.prof) {
        print_timeline(&r, t_start, t_launched, ss_seconds());
        fprintf(stderr, "engine profile: %lld chunks; device loop: input (decode, gather, upload) %.3f s, "
                "forward + download %.3f s, waiting for overlap-add %.3f s; overlap-add %.3f s on its thread "
                "(%.3f s of it waiting for the encoder)\n",
                (long long)done, r.t_input, r.t_device, r.t_wait, r.t_post, r.t_wr_wait);
    }
    goto done;
nomem:
    s = engine_nomem(&r, p, info, err);
done:
    run_free(&r);
    return s;
}

/* The n_out samples of every row of y [S C rows, pitch cap] (device) to hy
 * (host, the same layout), then to push. */
static ss_status stream_push(ss_backend *be, const float *dev_y, float *hy, int rows, int64_t cap, int64_t n_out,
                             ss_engine_push push, void *push_arg, ss_error *err)
{
    for (int r = 0; r < rows; r++) {
        ss_status s = ss_download(be, hy + (size_t)r * cap, dev_y + (size_t)r * cap, (size_t)n_out);
        if (s != SS_OK)
            return ss_backend_status(be, err) != SS_OK ? ss_backend_status(be, err) : s;
    }
    return push(push_arg, hy, cap, n_out, err);
}

/* SS_CHUNK_STREAM of unknown length (SS_ENGINE_LIVE): each piece run as
 * soon as pull gives it, until pull gives 0; then the model's end. */
static ss_status run_live(ss_model *m, ss_backend *be, const ss_engine_params *p, ss_engine_pull pull,
                          void *pull_arg, ss_engine_push push, void *push_arg, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    int C = p->channels > 0 ? p->channels : info->channels, S = ss_model_net_sources(info);
    ss_stream_geom g;
    ss_status s;
    if (!ss_model_stream_live(m))
        return ss_fail(err, SS_E_USAGE, "model %s cannot run as a live stream (its architecture needs the track's "
                       "length up front)", info->name);
    if (p->shifts > 0)
        return ss_fail(err, SS_E_USAGE, "--shifts %d: model %s runs as one stream, which has no random shifts",
                       p->shifts, info->name);
    if ((s = ss_model_stream_geom(m, &g, err)) != SS_OK)
        return s;
    int64_t cap = g.block + g.extra, fed = 0, out = 0, n_out;
    ss_model_io *io;
    if ((s = ss_model_io_get(m, (size_t)C * g.block, (size_t)S * C * cap, &io, err)) != SS_OK)
        return s;
    float *hx = io->host_x[0], *hy = io->host_y[0];
    if ((s = ss_model_stream_begin(m, -1, C, err)) != SS_OK)
        return s;
    for (;;) {
        if (p->cancel && *p->cancel)
            return ss_fail(err, SS_E_INTERRUPT, "interrupted");
        int64_t n = 0;
        if ((s = pull(pull_arg, hx, g.block, g.block, &n, err)) != SS_OK)
            return s;
        if (n <= 0)
            break;
        if (n > g.block)
            return ss_fail(err, SS_E_INTERNAL, "%s: pull gave %lld frames for at most %lld", info->name,
                           (long long)n, (long long)g.block);
        for (int c = 1; c < C; c++)
            memmove(hx + (size_t)c * n, hx + (size_t)c * g.block, sizeof *hx * (size_t)n);
        n_out = 0;
        if ((s = ss_upload(be, io->dev_x, hx, (size_t)C * n)) != SS_OK ||
            (s = ss_model_stream_run(m, io->dev_x, io->dev_y, n, &n_out, err)) != SS_OK)
            return s != SS_OK && err->code == SS_OK ? ss_backend_status(be, err) : s;
        fed += n;
        if (n_out < 0 || n_out > cap || out + n_out > fed)
            return ss_fail(err, SS_E_INTERNAL, "%s: the stream gave %lld samples after %lld in (%lld out before)",
                           info->name, (long long)n_out, (long long)fed, (long long)out);
        if (n_out > 0 && (s = stream_push(be, io->dev_y, hy, S * C, cap, n_out, push, push_arg, err)) != SS_OK)
            return s;
        out += n_out;
    }
    n_out = 0;
    if ((s = ss_model_stream_end(m, io->dev_y, &n_out, err)) != SS_OK)
        return s;
    if (n_out < 0 || n_out > cap || out + n_out != fed)
        return ss_fail(err, SS_E_INTERNAL, "%s: the stream's end gave %lld samples after %lld in (%lld out before)",
                       info->name, (long long)n_out, (long long)fed, (long long)out);
    if (n_out > 0 && (s = stream_push(be, io->dev_y, hy, S * C, cap, n_out, push, push_arg, err)) != SS_OK)
        return s;
    return SS_OK;
}

/* SS_CHUNK_STREAM: the track in order, piece by piece, through the model's
 * own state (model.h); the stems come back in order, as many as went in. */
static ss_status run_stream(ss_model *m, ss_backend *be, const ss_engine_params *p, int64_t length,
                           ss_engine_pull pull, void *pull_arg, ss_engine_push push, void *push_arg, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    int C = p->channels > 0 ? p->channels : info->channels, S = ss_model_net_sources(info);
    ss_stream_geom g;
    ss_status s;
    if (length <= 0)
        return SS_OK;
    if (p->shifts > 0)
        return ss_fail(err, SS_E_USAGE, "--shifts %d: model %s runs as one stream, which has no random shifts",
                       p->shifts, info->name);
    if ((s = ss_model_stream_geom(m, &g, err)) != SS_OK)
        return s;
    int64_t cap = g.block + g.extra;
    ss_model_io *io;
    if ((s = ss_model_io_get(m, (size_t)C * g.block, (size_t)S * C * cap, &io, err)) != SS_OK)
        return s;
    float *hx = io->host_x[0], *hy = io->host_y[0];
    if ((s = ss_model_stream_begin(m, length, C, err)) != SS_OK)
        return s;
    int64_t fed = 0, out = 0;
    while (fed < length) {
        if (p->cancel && *p->cancel)
            return ss_fail(err, SS_E_INTERRUPT, "interrupted");
        int64_t n = length - fed < g.block ? length - fed : g.block, got = 0;
        while (got < n) {
            int64_t k = 0;
            /* planar with pitch block: a short read continues at column got */
            if ((s = pull(pull_arg, hx + got, g.block, n - got, &k, err)) != SS_OK)
                return s;
            if (k <= 0)
                return ss_fail(err, SS_E_IO, "the input ended after %lld of %lld frames", (long long)(fed + got),
                               (long long)length);
            got += k;
        }
        /* the model reads x [C, n]: pack the channel rows */
        for (int c = 1; c < C; c++)
            memmove(hx + (size_t)c * n, hx + (size_t)c * g.block, sizeof *hx * (size_t)n);
        int64_t n_out = 0;
        if ((s = ss_upload(be, io->dev_x, hx, (size_t)C * n)) != SS_OK ||
            (s = ss_model_stream_run(m, io->dev_x, io->dev_y, n, &n_out, err)) != SS_OK)
            return s != SS_OK && err->code == SS_OK ? ss_backend_status(be, err) : s;
        fed += n;
        if (n_out < 0 || n_out > cap || out + n_out > length || (fed == length && out + n_out != length))
            return ss_fail(err, SS_E_INTERNAL, "%s: the stream gave %lld samples after %lld in (%lld out before)",
                           info->name, (long long)n_out, (long long)fed, (long long)out);
        if (n_out > 0) {
            if ((s = ss_download(be, hy, io->dev_y, (size_t)S * C * cap)) != SS_OK)
                return ss_backend_status(be, err) != SS_OK ? ss_backend_status(be, err) : s;
            if ((s = push(push_arg, hy, cap, n_out, err)) != SS_OK)
                return s;
            out += n_out;
        }
        if (p->progress)
            p->progress(p->progress_arg, fed, length);
    }
    return SS_OK;
}

ss_status ss_engine_run(ss_model *m, ss_backend *be, const ss_engine_params *p, int64_t length,
                        ss_engine_pull pull, void *pull_arg, ss_engine_push push, void *push_arg,
                        ss_error *err)
{
    ss_chunking c = ss_model_chunking(m);
    if (length == SS_ENGINE_LIVE)
        return c == SS_CHUNK_STREAM ? run_live(m, be, p, pull, pull_arg, push, push_arg, err)
                                    : ss_fail(err, SS_E_USAGE, "model %s is not a stream model: it needs the whole "
                                              "track", ss_model_get_info(m)->name);
    switch (c) {
    case SS_CHUNK_DEMUCS:
    case SS_CHUNK_MSST:
    case SS_CHUNK_STFT_BLOCKS:
        return run_chunks(m, be, p, length, c, pull, pull_arg, push, push_arg, err);
    case SS_CHUNK_STREAM:
        return run_stream(m, be, p, length, pull, pull_arg, push, push_arg, err);
    }
    return ss_fail(err, SS_E_INTERNAL, "%s: chunking scheme %d is not implemented", ss_model_get_info(m)->name,
                   (int)c);
}

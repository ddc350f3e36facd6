/* attention.c - CPU multi-head attention (ss_attn_desc):
 *   o_h [nq, hd] = softmax(scale q_h k_h^T) v_h   for each head h,
 * of every item of a batched descriptor in one pass over the pool: the tasks
 * share the (item, head, row block) units, so that many short sequences (a
 * RoFormer's bands) keep every thread busy.
 *
 * Two ways, picked per call (ss_cpu_attention_path):
 *
 * - fused (x86-64 with AVX-512F, head dim 64: every released HTDemucs and
 *   RoFormer): a task takes a block of 96 query rows of one head (fewer in
 *   the last block of a sequence: only its rows are computed) and walks the keys in blocks of
 *   256 with an online softmax (running max m and sum l per row; the output
 *   rescaled by exp(m_old - m_new) when the max grows, divided by l at the
 *   end).  The scores of a block are computed transposed, s^T [keys, queries],
 *   so that the softmax runs down columns in whole vectors and neither k nor v
 *   is repacked: only the 96 x 64 query block is transposed once.  Nothing of
 *   size [nq, nk] exists, the block's scores stay in L2, and the exponential
 *   is evaluated in registers.  Each row's result depends only on its own
 *   data and the fixed order of the key blocks, so not on the thread count.
 *
 * - blas (any machine, any head dim): per (head, block of up to 256 query
 *   rows), one sgemm for the scores, the softmax of ss_cpu_softmax_span, one
 *   sgemm for the product with v; the same operations as composing
 *   ss_cpu_gemm and ss_cpu_softmax.
 */
#include "cpu_ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- blas path ------------------------------------------------------------------- */

/* Query rows per block: 256 (2.6 MiB of scores for the full-size model's 2688
 * keys, kept in cache between the two products; each sgemm call packs all of
 * K_h or V_h, so fewer rows would pay that again and again), halved down to
 * 64 while the blocks would not give every thread eight. */
#define BLAS_ROWS 256

typedef struct attn_job {
    const ss_attn_desc *d;
    const float *q, *k, *v;
    float *o;
    float *scratch;            /* [tasks, per_task]    */
    size_t per_task;           /* scratch floats a task uses */
    int fused;                 /* SS_CPU_ATTN_FUSED path      */
    int rows;                  /* query rows per block */
    int blocks;                /* row blocks per head  */
    int items;                 /* d->batch, at least 1 */
    int64_t units;             /* items * heads * blocks */
    int tasks;
} attn_job;

/* unit u of the (item, head, row block) grid: the item's q, k, v, o, and h, r0 */
typedef struct attn_unit {
    const float *q, *k, *v;
    float *o;
    int h, r0;
} attn_unit;

static attn_unit unit_of(const attn_job *j, int64_t u)
{
    const ss_attn_desc *d = j->d;
    int64_t per_item = (int64_t)d->heads * j->blocks, i = u / per_item, hb = u % per_item;
    attn_unit a = {j->q + i * d->stride_q, j->k + i * d->stride_k, j->v + i * d->stride_v, j->o + i * d->stride_o,
                   (int)(hb / j->blocks), (int)(hb % j->blocks) * j->rows};
    return a;
}

/* task t: units t, t + tasks, ... of the (item, head, row block) grid, in its own scratch */
static void blas_task(void *arg, int64_t t)
{
    const attn_job *j = arg;
    const ss_attn_desc *d = j->d;
    float *s = j->scratch + t * j->per_task;
    for (int64_t u = t; u < j->units; u += j->tasks) {
        attn_unit a = unit_of(j, u);
        int h = a.h, r0 = a.r0;
        int n = d->nq - r0 < j->rows ? d->nq - r0 : j->rows;
        const float *qh = a.q + (int64_t)r0 * d->ldq + (int64_t)h * d->hd;
        ss_cpu_sgemm(0, 1, n, d->nk, d->hd, 1.0f, qh, d->ldq,
                    a.k + (int64_t)h * d->hd, d->ldk, 0.0f, s, d->nk);                 /* s [n, nk]  */
        for (int r = 0; r < n; r++)
            ss_cpu_softmax_span(s + (int64_t)r * d->nk, s + (int64_t)r * d->nk, d->nk, d->scale);
        ss_cpu_sgemm(0, 0, n, d->hd, d->nk, 1.0f, s, d->nk,
                    a.v + (int64_t)h * d->hd, d->ldv, 0.0f, a.o + (int64_t)r0 * d->ldo + (int64_t)h * d->hd,
                    d->ldo);                                                           /* o [n, hd]  */
    }
}

/* ---- fused path (AVX-512F, head dim 64) -------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(SS_ACCELERATE)
#define HAVE_FUSED 1
#include <immintrin.h>

#define FUSED __attribute__((target("avx512f")))
#define UNROLL _Pragma("GCC unroll 8")
#define HD 64                  /* head dim of the fused path             */
#define QB 96                  /* query rows per block: 6 vectors of 16  */
#define KB 256                 /* keys per block                         */

/* A task's scratch, in floats (offsets; all multiples of 16 = 64 bytes). */
enum {
    F_QT = 0,                  /* q^T of the block      [HD, QB]  */
    F_ST = F_QT + HD * QB,     /* scores, then p, ^T    [KB, QB]  */
    F_O = F_ST + KB * QB,      /* unnormalised output   [QB, HD]  */
    F_M = F_O + QB * HD,       /* running max           [QB]      */
    F_L = F_M + QB,            /* running sum           [QB]      */
    F_C = F_L + QB,            /* this block's rescale  [QB]      */
    F_ZERO = F_C + QB,         /* a zero key            [HD]      */
    F_FLOATS = F_ZERO + HD + 16 /* + slack to align the base to 64 bytes */
};

/* e^x for x <= 88 (below -87: e^-87), as fast_expf in elementwise.c: Cody-Waite
 * reduction and the same degree-6 polynomial; 2^n applied by scalef. */
FUSED static inline __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 fn = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, fn);
}

/* st[4, 16 nv] = the scores of 4 keys against the block's first 16 nv queries
 * (qt [HD, QB]); nv a constant once inlined (scores_4keys below) */
FUSED static inline __attribute__((always_inline)) void scores_4keys_nv(float *st, const float *const kr[4],
                                                                        const float *qt, const int nv)
{
    __m512 acc[4][6], q[6];
    UNROLL
    for (int a = 0; a < 4; a++)
        UNROLL
        for (int b = 0; b < nv; b++)
            acc[a][b] = _mm512_setzero_ps();
    for (int c = 0; c < HD; c++) {
        const float *qc = qt + c * QB;
        UNROLL
        for (int b = 0; b < nv; b++)
            q[b] = _mm512_load_ps(qc + 16 * b);
        UNROLL
        for (int a = 0; a < 4; a++) {
            __m512 kv = _mm512_set1_ps(kr[a][c]);
            UNROLL
            for (int b = 0; b < nv; b++)
                acc[a][b] = _mm512_fmadd_ps(kv, q[b], acc[a][b]);
        }
    }
    UNROLL
    for (int a = 0; a < 4; a++)
        UNROLL
        for (int b = 0; b < nv; b++)
            _mm512_store_ps(st + a * QB + 16 * b, acc[a][b]);
}

/* the same for nv = 1 .. 6 query vectors: a block of fewer rows than QB (the
 * last of a sequence, a short sequence such as a RoFormer's bands) computes
 * no scores for the rows past it */
FUSED static void scores_4keys(float *st, const float *const kr[4], const float *qt, int nv)
{
    switch (nv) {
    case 1: scores_4keys_nv(st, kr, qt, 1); break;
    case 2: scores_4keys_nv(st, kr, qt, 2); break;
    case 3: scores_4keys_nv(st, kr, qt, 3); break;
    case 4: scores_4keys_nv(st, kr, qt, 4); break;
    case 5: scores_4keys_nv(st, kr, qt, 5); break;
    default: scores_4keys_nv(st, kr, qt, 6); break;
    }
}

/* Online softmax over the nj keys of a block, 16 queries (column vector cv) at a time:
 * m_new = max(m, scale max_j s), p = e^(scale s - m_new) in place, l = l e^(m - m_new) + sum p,
 * and that rescale kept in c for the output. */
FUSED static void softmax_cols(float *st, int nj, int cols, float scale, float *m, float *l, float *c)
{
    __m512 sc = _mm512_set1_ps(scale);
    for (int cv = 0; cv < cols; cv += 16) {
        __m512 bm = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < nj; j++)
            bm = _mm512_max_ps(bm, _mm512_mul_ps(sc, _mm512_load_ps(st + j * QB + cv)));
        __m512 mo = _mm512_load_ps(m + cv), mn = _mm512_max_ps(mo, bm);
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        int j = 0;
        for (; j + 2 <= nj; j += 2) {
            __m512 p0 = exp16(_mm512_sub_ps(_mm512_mul_ps(sc, _mm512_load_ps(st + j * QB + cv)), mn));
            __m512 p1 = exp16(_mm512_sub_ps(_mm512_mul_ps(sc, _mm512_load_ps(st + (j + 1) * QB + cv)), mn));
            _mm512_store_ps(st + j * QB + cv, p0);
            _mm512_store_ps(st + (j + 1) * QB + cv, p1);
            s0 = _mm512_add_ps(s0, p0);
            s1 = _mm512_add_ps(s1, p1);
        }
        if (j < nj) {
            __m512 p0 = exp16(_mm512_sub_ps(_mm512_mul_ps(sc, _mm512_load_ps(st + j * QB + cv)), mn));
            _mm512_store_ps(st + j * QB + cv, p0);
            s0 = _mm512_add_ps(s0, p0);
        }
        __m512 corr = exp16(_mm512_sub_ps(mo, mn));    /* mo = -inf on the first block: e^-87, l and o are 0 */
        _mm512_store_ps(l + cv, _mm512_fmadd_ps(_mm512_load_ps(l + cv), corr, _mm512_add_ps(s0, s1)));
        _mm512_store_ps(m + cv, mn);
        _mm512_store_ps(c + cv, corr);
    }
}

/* o[i0 .. i0+6, HD] = o * c[i] + sum_j p^T[j, i] v_j over the nj keys of the block */
FUSED static void pv_6rows(float *o, const float *c, const float *pt, const float *v, int64_t ldv, int nj)
{
    __m512 acc[6][4];
    UNROLL
    for (int a = 0; a < 6; a++) {
        __m512 ca = _mm512_set1_ps(c[a]);
        UNROLL
        for (int b = 0; b < 4; b++)
            acc[a][b] = _mm512_mul_ps(ca, _mm512_load_ps(o + a * HD + 16 * b));
    }
    for (int j = 0; j < nj; j++) {
        const float *vj = v + j * ldv, *pj = pt + j * QB;
        __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16);
        __m512 v2 = _mm512_loadu_ps(vj + 32), v3 = _mm512_loadu_ps(vj + 48);
        UNROLL
        for (int a = 0; a < 6; a++) {
            __m512 pa = _mm512_set1_ps(pj[a]);
            acc[a][0] = _mm512_fmadd_ps(pa, v0, acc[a][0]);
            acc[a][1] = _mm512_fmadd_ps(pa, v1, acc[a][1]);
            acc[a][2] = _mm512_fmadd_ps(pa, v2, acc[a][2]);
            acc[a][3] = _mm512_fmadd_ps(pa, v3, acc[a][3]);
        }
    }
    UNROLL
    for (int a = 0; a < 6; a++)
        UNROLL
        for (int b = 0; b < 4; b++)
            _mm512_store_ps(o + a * HD + 16 * b, acc[a][b]);
}

/* One (item, head, query block) unit: rows [r0, r0 + n) of head a->h of the
 * item.  Of the block's QB columns only the first `cols` (n rounded up to the
 * 6 rows of pv_6rows, then to whole vectors) are computed: each column is its
 * own row's, so the rows < n get the same bits as in a full block. */
FUSED static void fused_unit(const ss_attn_desc *d, const attn_unit *a, float *w, int n)
{
    int h = a->h, r0 = a->r0, rows = (n + 5) / 6 * 6, nv = (rows + 15) / 16, cols = 16 * nv;
    float *qt = w + F_QT, *st = w + F_ST, *o = w + F_O, *m = w + F_M, *l = w + F_L, *c = w + F_C;
    float *zero = w + F_ZERO;
    memset(zero, 0, sizeof(float) * HD);
    for (int i = 0; i < cols; i++) {            /* qt [HD, QB], zero past the last row */
        const float *qi = i < n ? a->q + (int64_t)(r0 + i) * d->ldq + (int64_t)h * HD : zero;
        for (int e = 0; e < HD; e++)
            qt[e * QB + i] = qi[e];
    }
    for (int i = 0; i < cols; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(o, 0, sizeof(float) * (size_t)rows * HD);
    const float *kh = a->k + (int64_t)h * HD, *vh = a->v + (int64_t)h * HD;
    for (int k0 = 0; k0 < d->nk; k0 += KB) {
        int nj = d->nk - k0 < KB ? d->nk - k0 : KB;
        for (int c4 = 0; c4 < nj; c4 += 4) {     /* st [nj, QB]; a missing key reads zeros */
            const float *kr[4];
            for (int b = 0; b < 4; b++)
                kr[b] = c4 + b < nj ? kh + (int64_t)(k0 + c4 + b) * d->ldk : zero;
            scores_4keys(st + c4 * QB, kr, qt, nv);
        }
        softmax_cols(st, nj, cols, d->scale, m, l, c);
        for (int i = 0; i < rows; i += 6)        /* o [rows, HD] += p v */
            pv_6rows(o + i * HD, c + i, st + i, vh + (int64_t)k0 * d->ldv, d->ldv, nj);
    }
    for (int i = 0; i < n; i++) {
        float *oi = a->o + (int64_t)(r0 + i) * d->ldo + (int64_t)h * HD;
        __m512 inv = _mm512_set1_ps(1.0f / l[i]);
        for (int b = 0; b < HD; b += 16)
            _mm512_storeu_ps(oi + b, _mm512_mul_ps(_mm512_load_ps(o + i * HD + b), inv));
    }
}

static void fused_task(void *arg, int64_t t)
{
    const attn_job *j = arg;
    float *w = j->scratch + t * j->per_task;
    w += (16 - ((uintptr_t)w / sizeof(float)) % 16) % 16;        /* 64-byte aligned */
    for (int64_t u = t; u < j->units; u += j->tasks) {
        attn_unit a = unit_of(j, u);
        fused_unit(j->d, &a, w, j->d->nq - a.r0 < QB ? j->d->nq - a.r0 : QB);
    }
}
#endif

/* ---- dispatch ------------------------------------------------------------------ */

static int path_forced = -1;   /* tests: SS_CPU_ATTN_BLAS / SS_CPU_ATTN_FUSED; -1 = pick */

static int have_fused(void)
{
#ifdef HAVE_FUSED
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int ss_cpu_attention_force(int path)
{
    if (path == SS_CPU_ATTN_FUSED && !have_fused())
        return -1;
    path_forced = path;
    return 0;
}

int ss_cpu_attention_path(const ss_attn_desc *d)
{
#ifdef HAVE_FUSED
    if (path_forced != SS_CPU_ATTN_BLAS && d->hd == HD && have_fused())
        return SS_CPU_ATTN_FUSED;
#else
    (void)d;
#endif
    return SS_CPU_ATTN_BLAS;
}

static void attn_shape(ss_pool *p, const ss_attn_desc *d, attn_job *j)
{
    int threads = ss_pool_threads(p);
    j->items = d->batch > 1 ? d->batch : 1;
    j->fused = ss_cpu_attention_path(d) == SS_CPU_ATTN_FUSED;
#ifdef HAVE_FUSED
    if (j->fused) {
        j->rows = QB;
        j->per_task = F_FLOATS;
    } else
#endif
    {
        j->rows = BLAS_ROWS;
        while (j->rows > 64 && (int64_t)j->items * d->heads * ((d->nq + j->rows - 1) / j->rows) < 8 * (int64_t)threads)
            j->rows /= 2;
        j->per_task = (size_t)j->rows * (size_t)d->nk;
    }
    j->blocks = (d->nq + j->rows - 1) / j->rows;
    j->units = (int64_t)j->items * d->heads * j->blocks;
    j->tasks = j->units < threads ? (int)j->units : threads;
}

size_t ss_cpu_attention_scratch(ss_pool *p, const ss_attn_desc *d)
{
    if (d->heads <= 0 || d->nq <= 0 || d->nk <= 0)
        return 0;
    attn_job j;
    attn_shape(p, d, &j);
    return (size_t)j.tasks * j.per_task;
}

ss_status ss_cpu_attention(ss_pool *p, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                           float *o, float *scratch)
{
    if (d->heads <= 0 || d->nq <= 0 || d->hd <= 0)
        return SS_OK;
    if (d->nk <= 0) {          /* no keys: softmax over nothing, the composed products give 0 */
        for (int i = 0; i < (d->batch > 1 ? d->batch : 1); i++)
            for (int r = 0; r < d->nq; r++)
                memset(o + i * d->stride_o + (int64_t)r * d->ldo, 0, sizeof(float) * (size_t)d->heads * d->hd);
        return SS_OK;
    }
    attn_job j = {.d = d, .q = q, .k = k, .v = v, .o = o, .scratch = scratch};
    attn_shape(p, d, &j);
    void (*task)(void *, int64_t) = blas_task;
#ifdef HAVE_FUSED
    if (j.fused)
        task = fused_task;
#endif
    ss_pool_for(j.tasks > 1 ? p : NULL, j.tasks, task, &j);
    return SS_OK;
}

/* ---- rotary position embedding ------------------------------------------------- */

typedef struct rope_job {
    float *y;
    const float *x, *cs;
    int seq, heads, hd, ld;
} rope_job;

SS_VECTORISE static void rope_row(void *arg, int64_t row)
{
    const rope_job *j = arg;
    int p = (int)(row % j->seq);
    const float *x = j->x + row * j->ld, *cs = j->cs + (int64_t)p * j->hd;
    float *y = j->y + row * j->ld;
    int half = j->hd / 2;
    for (int h = 0; h < j->heads; h++) {
        const float *xh = x + h * j->hd;
        float *yh = y + h * j->hd;
        for (int i = 0; i < half; i++) {
            float x0 = xh[2 * i], x1 = xh[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
            yh[2 * i] = x0 * c - x1 * s;
            yh[2 * i + 1] = x1 * c + x0 * s;
        }
    }
}

ss_status ss_cpu_rope(ss_pool *p, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                      const float *cs)
{
    if (hd % 2 != 0 || (int64_t)heads * hd > ld)
        return SS_E_USAGE;
    rope_job j = {y, x, cs, seq, heads, hd, ld};
    ss_pool_for(p, (int64_t)batch * seq, rope_row, &j);
    return SS_OK;
}

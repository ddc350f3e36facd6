/* roformer.c - BS-RoFormer and Mel-Band RoFormer (band-split RoPE transformers,
 * as in Music-Source-Separation-Training's models/bs_roformer/bs_roformer.py
 * and mel_band_roformer.py), inference only.  One forward pass serves both;
 * they differ in how the spectrum is cut into bands and in three details
 * (marked "Mel:" below).  The file format is in docs/model-format.md.
 *
 * Notation: B batch, C audio channels (1 or 2), L samples, F = n_fft/2 + 1
 * frequency bins, N = L/hop + 1 frames, W = F*C*2 values per frame, K bands,
 * D = dim, H heads of dh, E = H*dh, FF = ff_mult*D, S stems, R rows.
 *
 *   x [B, C, L] --stft (normalised)--> X [B*C, 2, F, N]
 *   -> feat [B, N, W]: a row per frame ordered (freq, channel, re/im)
 *   band split: band k = columns [c0_k, c0_k + w_k) of a row (BS: consecutive
 *     widths 2*C*freqs_per_bands[k]; Mel: the bins of mel.freq_indices, which
 *     must be consecutive), RMSNorm + Linear -> h [B, N, K, D]
 *   depth times (skip_connection: h += outputs of the layers before):
 *     time transformer over each (b, k)'s N frames, freq transformer over each
 *     (b, t)'s K bands; a transformer is blocks of
 *       h += to_out(sigmoid(to_gates(n)) * attention(rope(q), rope(k), v)), n = RMSNorm(h)
 *       h += W2 gelu(W1 RMSNorm(h) + b1) + b2
 *     (Mel: a RMSNorm after each transformer's last block)
 *   BS: RMSNorm(h) (final_norm)
 *   per stem: per band MLP (Linear, Tanh, ..., Linear) + GLU -> mask [B, N, W]
 *     (Mel: masks of overlapping bands summed, divided by the bands per bin)
 *   Y = X * mask (complex), bin 0 zeroed (zero_dc) --istft--> y [B, S, C, L]
 *
 * The reference's STFT is unnormalised; ss_stft / ss_istft are the normalised
 * pair.  The band split begins with a scale-invariant norm and the inverse of
 * the masked normalised spectrum equals the unnormalised inverse of the
 * unnormalised one, so the normalised pair gives the same output.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model.h"
#include "../../src/weights.h"

#define RMS_EPS 1e-12f
/* Rows of one group of sequences run through a transformer at once: bounds the
 * temporaries (q|k|v, the hidden layer of the feed-forward) whatever the length. */
#define GROUP_ROWS 16384
#define MAX_BANDS 4096
#define NAME_MAX_LEN 160

typedef struct rf_block {        /* one attention + feed-forward block          */
    float *attn_gamma;           /* [D]                                         */
    float *w_qkv;                /* [3E, D], rows (q|k|v, head, d)              */
    float *w_gate, *b_gate;      /* [H, D], [H]                                 */
    float *w_out;                /* [D, E]                                      */
    float *ff_gamma;             /* [D]                                         */
    float *w1, *b1;              /* [FF, D], [FF]                               */
    float *w2, *b2;              /* [D, FF], [D]                                */
    float *freqs;                /* host [dh/2]: the rotary frequencies         */
    int table;                   /* index of its (cos, sin) table               */
} rf_block;

typedef struct rf_transformer {
    rf_block *blocks;
    int n;
    float *out_gamma;            /* Mel: [D], the norm after the last block     */
} rf_transformer;

typedef struct rf_mlp {          /* one stem's mask estimator for one band      */
    float **w, **b;              /* n_lin layers: [out, in], [out]              */
} rf_mlp;

typedef struct rf_ws {           /* activations, for one (batch, length)        */
    int batch;
    int64_t length;
    int frames;
    int rows_cap;                /* rows of a transformer group                 */
    float *spec;                 /* X [B*C, 2, F, N]                            */
    float *feat;                 /* [B, N, W]; later X' [B*C, 2, F, N] = (-Xi, Xr) */
    float *h;                    /* [B, N, K, D]                                */
    float *skip;                 /* [B, N, K, D]: sum of the layers' outputs    */
    float *gx, *gn, *gqkv, *gatt, *ggate, *gff; /* group: [R, D|D|3E|E|H|FF]   */
    float *scores;               /* [H, seq, seq] where attention is composed   */
    float *band;                 /* [B*N, max w]                                */
    float *hid[2];               /* [B*N, hidden]                               */
    float *mout;                 /* [B*N, 2 max w]                              */
    float *mask, *layer;         /* [B, N, W]                                   */
    float *q;                    /* [C, 2, F, N]                                */
    float *y;                    /* Y [B, S, C, 2, F, N]                        */
    float *ones;                 /* [max(R, B*N)] of 1 (ss_gemm_bias)           */
    float *zeros;                /* [R*H] of 0 (ss_row_affine's shift)          */
    float *cs;                   /* [tables][seq, dh/2, 2] rotary (cos, sin)    */
} rf_ws;

typedef struct rf_model {
    const char *path;
    int mel;                     /* 0 BS-RoFormer, 1 Mel-Band RoFormer          */
    int C, S, D, depth, tdepth, fdepth, H, dh, E, FF, hidden, n_lin;
    int n_fft, hop, F, W, K, zero_dc, skip;
    int *c0, *w;                 /* [K] band columns: start, width              */
    int *layer_of, n_layers;     /* Mel: bands in layers of disjoint bands      */
    int max_w;
    rf_transformer *tf;          /* [depth][2]: time, freq                      */
    float *final_gamma;          /* BS: [D]                                     */
    float **bs_norm, **bs_w, **bs_b;
    rf_mlp *mlp;                 /* [S][K]                                      */
    float *fscale;               /* [F] 1/(bands per bin), 0 for bin 0 (zero_dc) */
    float *swap_sign;            /* [2] = (-1, 1)                               */
    int n_tables;                /* distinct rotary tables: [n][0]=time, [1]=freq */
    int *table_kind;             /* [n_tables] 0 time, 1 freq                   */
    float **table_freqs;         /* [n_tables] host, dh/2                       */
    ss_dev_list dev;             /* every device allocation, for free          */
    void **host_allocs;
    int n_host, cap_host;
    rf_ws ws;
} rf_model;

/* ---- helpers ------------------------------------------------------------------ */

static void name_of(char *buf, const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void name_of(char *buf, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, NAME_MAX_LEN, f, ap);
    va_end(ap);
}

static int track(void ***list, int *n, int *cap, void *p)
{
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        void **l = realloc(*list, (size_t)nc * sizeof *l);
        if (!l)
            return -1;
        *list = l;
        *cap = nc;
    }
    (*list)[(*n)++] = p;
    return 0;
}

/* n host bytes kept until the model is freed (zeroed); NULL when out of memory */
static void *host_new(rf_model *m, size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (p && track(&m->host_allocs, &m->n_host, &m->cap_host, p) != 0) {
        free(p);
        p = NULL;
    }
    return p;
}

/* ---- hyperparameters ------------------------------------------------------------ */

typedef struct rf_hp {
    int mel, C, S, D, depth, tdepth, fdepth, H, dh, FF, hidden, n_lin;
    int n_fft, hop, F, W, K, zero_dc, skip;
    int bs_widths[MAX_BANDS];    /* BS: freqs_per_bands                         */
} rf_hp;

/* Every roformer.* key, checked against what this forward pass implements. */
static ss_status read_hp(ss_st *st, const ss_model_info *info, rf_hp *hp, ss_error *err)
{
    const char *path = ss_st_path(st);
    ss_status s;
    memset(hp, 0, sizeof *hp);
    hp->mel = strcmp(info->architecture, "mel_band_roformer") == 0;
    int stereo, normalized, win, ff_mult, mlp_exp, me_depth;
    if ((s = ss_st_meta_bool(st, "roformer.stereo", &stereo, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.dim", 1, 1 << 16, &hp->D, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.depth", 1, 1024, &hp->depth, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.time_transformer_depth", 0, 1024, &hp->tdepth, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.freq_transformer_depth", 0, 1024, &hp->fdepth, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.dim_head", 2, 4096, &hp->dh, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.heads", 1, 1024, &hp->H, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.num_stems", 1, SS_MAX_SOURCES, &hp->S, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.stft_n_fft", 16, 1 << 16, &hp->n_fft, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.stft_hop_length", 1, 1 << 16, &hp->hop, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.stft_win_length", 1, 1 << 16, &win, err)) != SS_OK ||
        (s = ss_st_meta_bool(st, "roformer.stft_normalized", &normalized, err)) != SS_OK ||
        (s = ss_st_meta_bool(st, "roformer.zero_dc", &hp->zero_dc, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.mask_estimator_depth", hp->mel ? 0 : 1, 64, &me_depth, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.mlp_expansion_factor", 1, 64, &mlp_exp, err)) != SS_OK ||
        (s = ss_st_meta_bool(st, "roformer.skip_connection", &hp->skip, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "roformer.ff_mult", 1, 64, &ff_mult, err)) != SS_OK)
        return s;
    hp->C = stereo ? 2 : 1;
    if (hp->C != info->channels)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.stereo' (%d channels) disagrees with "
                       "'stemsplit.channels' = %d", path, hp->C, info->channels);
    if (hp->S != info->n_sources)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.num_stems' = %d but 'stemsplit.sources' lists %d",
                       path, hp->S, info->n_sources);
    if (hp->n_fft % 2)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.stft_n_fft' = %d is odd (not implemented)", path,
                       hp->n_fft);
    if (win != hp->n_fft)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.stft_win_length' = %d differs from n_fft %d "
                       "(not implemented)", path, win, hp->n_fft);
    if (normalized)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.stft_normalized' = true is not implemented", path);
    if (hp->hop > hp->n_fft)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.stft_hop_length' = %d exceeds n_fft %d", path,
                       hp->hop, hp->n_fft);
    const char *v = ss_st_meta(st, "roformer.linear_transformer_depth");
    if (v && strcmp(v, "0") != 0)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.linear_transformer_depth' = '%s' is not implemented "
                       "(0 only)", path, v);
    v = ss_st_meta(st, "roformer.use_pope");
    if (v && strcmp(v, "false") != 0 && strcmp(v, "0") != 0)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.use_pope' = '%s' is not implemented", path, v);
    if ((int64_t)hp->D * mlp_exp > (1 << 20) || (int64_t)hp->D * ff_mult > (1 << 20) ||
        (int64_t)hp->H * hp->dh > (1 << 20))
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.dim' = %d: layers too wide", path, hp->D);
    if (hp->dh % 2)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.dim_head' = %d is odd", path, hp->dh);
    hp->FF = hp->D * ff_mult;
    hp->hidden = hp->D * mlp_exp;
    hp->n_lin = hp->mel ? me_depth + 1 : me_depth;     /* Mel's MLP has depth+1 linears, BS's depth */
    hp->F = hp->n_fft / 2 + 1;
    hp->W = hp->F * hp->C * 2;
    if (info->segment_length <= hp->n_fft / 2)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'stemsplit.segment' (%lld samples) is not longer than n_fft/2",
                       path, (long long)info->segment_length);
    if (hp->mel)
        return ss_st_meta_int_in(st, "roformer.num_bands", 1, MAX_BANDS, &hp->K, err);
    /* BS: freqs_per_bands, a comma list summing to F */
    v = ss_st_meta(st, "roformer.freqs_per_bands");
    if (!v)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.freqs_per_bands' is missing", path);
    int64_t sum = 0;
    for (const char *p = v;;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > hp->F || hp->K == MAX_BANDS || (*end != ',' && *end != '\0'))
            return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.freqs_per_bands' = '%.200s' is not a list of "
                           "positive band widths", path, v);
        hp->bs_widths[hp->K++] = (int)n;
        sum += n;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    if (sum != hp->F || hp->K < 2)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'roformer.freqs_per_bands' sums to %lld in %d bands, the STFT "
                       "has %d bins", path, (long long)sum, hp->K, hp->F);
    return SS_OK;
}

/* ---- loading ---------------------------------------------------------------------- */

typedef struct loader {
    rf_model *m;
    ss_st *st;
    ss_backend *be;
    ss_error *err;
    ss_status s;
    float *host;                 /* conversion buffer                           */
    size_t host_cap;
} loader;

/* The tensor `name` of exactly `shape` as fp32 on the host (the loader's
 * buffer, valid until the next call), or NULL with l->s set. */
static const float *get_host(loader *l, const char *name, int ndim, const int64_t *shape, int64_t *numel)
{
    if (l->s == SS_OK)
        l->s = ss_st_get_f32(l->st, name, ndim, shape, &l->host, &l->host_cap, numel, l->err);
    return l->s == SS_OK ? l->host : NULL;
}

/* The tensor `name` ([d0] or [d0, d1]) uploaded to the device, or NULL with l->s set. */
static float *get_dev(loader *l, const char *name, int64_t d0, int64_t d1)
{
    int64_t shape[2] = {d0, d1}, n;
    const float *h = get_host(l, name, d1 ? 2 : 1, shape, &n);
    if (!h)
        return NULL;
    float *p = ss_dev_list_alloc(&l->m->dev, l->be, (size_t)n);
    if (!p) {
        l->s = ss_fail(l->err, SS_E_DEVICE, "%s: cannot allocate device memory for tensor '%s'", l->m->path, name);
        return NULL;
    }
    ss_upload(l->be, p, h, (size_t)n);
    return p;
}

/* A host copy of tensor `name` [n], or NULL with l->s set. */
static float *get_copy(loader *l, const char *name, int64_t n)
{
    const float *h = get_host(l, name, 1, &n, NULL);
    float *c = h ? host_new(l->m, (size_t)n * sizeof *c) : NULL;
    if (h && !c)
        l->s = ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", l->m->path);
    if (c)
        memcpy(c, h, (size_t)n * sizeof *c);
    return c;
}

/* Mel: the bands from mel.freq_indices / mel.num_freqs_per_band and a check of
 * mel.num_bands_per_freq against them. */
static ss_status load_mel_bands(loader *l, const rf_hp *hp)
{
    rf_model *m = l->m;
    float *nfpb = get_copy(l, "mel.num_freqs_per_band", hp->K);
    if (!nfpb)
        return l->s;
    int64_t total = 0;
    for (int k = 0; k < hp->K; k++) {
        if (!(nfpb[k] >= 1.0f && nfpb[k] <= (float)hp->F && nfpb[k] == floorf(nfpb[k])))
            return ss_fail(l->err, SS_E_DATA, "%s: tensor 'mel.num_freqs_per_band' entry %d = %g is not a band width "
                           "in [1, %d]", m->path, k, (double)nfpb[k], hp->F);
        total += (int64_t)nfpb[k];
    }
    float *fi = get_copy(l, "mel.freq_indices", total);
    float *nbpf = fi ? get_copy(l, "mel.num_bands_per_freq", hp->F) : NULL;
    if (!nbpf)
        return l->s;
    int *count = host_new(m, (size_t)hp->F * sizeof *count);
    if (!count)
        return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
    int64_t j = 0;
    for (int k = 0; k < hp->K; k++) {
        int n = (int)nfpb[k];
        float f0 = fi[j];
        for (int i = 0; i < n; i++, j++) {
            if (!(fi[j] >= 0.0f && fi[j] < (float)hp->F && fi[j] == f0 + (float)i))
                return ss_fail(l->err, SS_E_DATA, "%s: tensor 'mel.freq_indices': band %d is not a run of consecutive "
                               "bins in [0, %d) (entry %lld = %g)", m->path, k, hp->F, (long long)j, (double)fi[j]);
            count[(int)fi[j]]++;
        }
        m->c0[k] = (int)f0 * 2 * hp->C;
        m->w[k] = n * 2 * hp->C;
    }
    for (int f = 0; f < hp->F; f++)
        if (nbpf[f] != (float)count[f] || count[f] == 0)
            return ss_fail(l->err, SS_E_DATA, "%s: tensor 'mel.num_bands_per_freq' entry %d = %g, the bands cover that "
                           "bin %d times (every bin must be covered)", m->path, f, (double)nbpf[f], count[f]);
    /* layers of pairwise disjoint bands (greedy): a band goes into the first
     * layer whose bands it does not overlap */
    m->n_layers = 0;
    for (int k = 0; k < hp->K; k++) {
        int L = 0;
        while (L < m->n_layers) {
            int free_col = 1;
            for (int b = 0; b < k; b++)
                if (m->layer_of[b] == L && m->c0[b] < m->c0[k] + m->w[k] && m->c0[k] < m->c0[b] + m->w[b])
                    free_col = 0;
            if (free_col)
                break;
            L++;
        }
        m->layer_of[k] = L;
        if (L == m->n_layers)
            m->n_layers++;
    }
    float *fs = host_new(m, (size_t)hp->F * sizeof *fs);
    if (!fs)
        return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
    for (int f = 0; f < hp->F; f++)
        fs[f] = 1.0f / (float)count[f];
    if (hp->zero_dc)
        fs[0] = 0.0f;
    m->fscale = ss_dev_list_alloc(&m->dev, l->be, (size_t)hp->F);
    if (!m->fscale)
        return ss_fail(l->err, SS_E_DEVICE, "%s: cannot allocate device memory", m->path);
    ss_upload(l->be, m->fscale, fs, (size_t)hp->F);
    return SS_OK;
}

static ss_status load_block(loader *l, rf_block *bk, const char *pre)
{
    rf_model *m = l->m;
    char n[NAME_MAX_LEN];
    int64_t D = m->D, E = m->E, FF = m->FF;
#define DEV(field, d0, d1, ...)                                                                                        \
    do {                                                                                                               \
        name_of(n, __VA_ARGS__);                                                                                       \
        bk->field = get_dev(l, n, d0, d1);                                                                             \
    } while (0)
    DEV(attn_gamma, D, 0, "%s.0.norm.gamma", pre);
    DEV(w_qkv, 3 * E, D, "%s.0.to_qkv.weight", pre);
    DEV(w_gate, m->H, D, "%s.0.to_gates.weight", pre);
    DEV(b_gate, m->H, 0, "%s.0.to_gates.bias", pre);
    DEV(w_out, D, E, "%s.0.to_out.0.weight", pre);
    DEV(ff_gamma, D, 0, "%s.1.net.0.gamma", pre);
    DEV(w1, FF, D, "%s.1.net.1.weight", pre);
    DEV(b1, FF, 0, "%s.1.net.1.bias", pre);
    DEV(w2, D, FF, "%s.1.net.4.weight", pre);
    DEV(b2, D, 0, "%s.1.net.4.bias", pre);
#undef DEV
    if (l->s != SS_OK)
        return l->s;
    /* rotary frequencies: the file's when it has them, else rotary_embedding_torch's
     * default 1 / 10000^(2i/dh) computed in float32 as torch does */
    name_of(n, "%s.0.rotary_embed.freqs", pre);
    if (ss_st_find(l->st, n)) {
        bk->freqs = get_copy(l, n, m->dh / 2);
        return l->s;
    }
    bk->freqs = host_new(m, (size_t)(m->dh / 2) * sizeof *bk->freqs);
    if (!bk->freqs)
        return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
    for (int i = 0; i < m->dh / 2; i++)
        bk->freqs[i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)m->dh);
    return SS_OK;
}

/* One (cos, sin) table per distinct frequency vector and sequence kind. */
static int table_for(rf_model *m, const float *freqs, int kind)
{
    for (int t = 0; t < m->n_tables; t++)
        if (m->table_kind[t] == kind && memcmp(m->table_freqs[t], freqs, (size_t)(m->dh / 2) * sizeof *freqs) == 0)
            return t;
    m->table_kind[m->n_tables] = kind;
    m->table_freqs[m->n_tables] = (float *)freqs;
    return m->n_tables++;
}

static void rf_free(void *state, ss_backend *be);

static ss_status load_all(loader *l, const rf_hp *hp)
{
    rf_model *m = l->m;
    ss_backend *be = l->be;
    char n[NAME_MAX_LEN];
    int K = m->K;
    m->c0 = host_new(m, (size_t)K * sizeof *m->c0);
    m->w = host_new(m, (size_t)K * sizeof *m->w);
    m->layer_of = host_new(m, (size_t)K * sizeof *m->layer_of);
    m->tf = host_new(m, (size_t)m->depth * 2 * sizeof *m->tf);
    m->bs_norm = host_new(m, (size_t)K * sizeof *m->bs_norm);
    m->bs_w = host_new(m, (size_t)K * sizeof *m->bs_w);
    m->bs_b = host_new(m, (size_t)K * sizeof *m->bs_b);
    m->mlp = host_new(m, (size_t)m->S * (size_t)K * sizeof *m->mlp);
    int n_blocks = m->depth * (m->tdepth + m->fdepth);
    m->table_kind = host_new(m, (size_t)(n_blocks + 1) * sizeof *m->table_kind);
    m->table_freqs = host_new(m, (size_t)(n_blocks + 1) * sizeof *m->table_freqs);
    if (!m->c0 || !m->w || !m->layer_of || !m->tf || !m->bs_norm || !m->bs_w || !m->bs_b || !m->mlp ||
        !m->table_kind || !m->table_freqs)
        return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);

    /* bands */
    ss_status s;
    if (m->mel) {
        if ((s = load_mel_bands(l, hp)) != SS_OK)
            return s;
    } else {
        float *fs = host_new(m, (size_t)m->F * sizeof *fs);
        if (!fs)
            return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
        for (int k = 0, c = 0; k < K; k++) {
            m->c0[k] = c;
            m->w[k] = hp->bs_widths[k] * 2 * m->C;
            c += m->w[k];
        }
        for (int f = 0; f < m->F; f++)
            fs[f] = f == 0 && m->zero_dc ? 0.0f : 1.0f;
        m->n_layers = 1;
        m->fscale = ss_dev_list_alloc(&m->dev, be, (size_t)m->F);
        if (!m->fscale)
            return ss_fail(l->err, SS_E_DEVICE, "%s: cannot allocate device memory", m->path);
        ss_upload(be, m->fscale, fs, (size_t)m->F);
    }
    for (int k = 0; k < K; k++)
        if (m->w[k] > m->max_w)
            m->max_w = m->w[k];

    /* band split */
    for (int k = 0; k < K; k++) {
        name_of(n, "band_split.to_features.%d.0.gamma", k);
        m->bs_norm[k] = get_dev(l, n, m->w[k], 0);
        name_of(n, "band_split.to_features.%d.1.weight", k);
        m->bs_w[k] = get_dev(l, n, m->D, m->w[k]);
        name_of(n, "band_split.to_features.%d.1.bias", k);
        m->bs_b[k] = get_dev(l, n, m->D, 0);
    }
    /* transformers */
    for (int i = 0; i < m->depth && l->s == SS_OK; i++)
        for (int t = 0; t < 2 && l->s == SS_OK; t++) {
            rf_transformer *tf = &m->tf[i * 2 + t];
            tf->n = t ? m->fdepth : m->tdepth;
            tf->blocks = host_new(m, (size_t)tf->n * sizeof *tf->blocks);
            if (!tf->blocks)
                return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
            for (int j = 0; j < tf->n && l->s == SS_OK; j++) {
                char pre[NAME_MAX_LEN];
                name_of(pre, "layers.%d.%d.layers.%d", i, t, j);
                if (load_block(l, &tf->blocks[j], pre) == SS_OK)
                    tf->blocks[j].table = table_for(m, tf->blocks[j].freqs, t);
            }
            if (m->mel) {     /* Mel: the transformers keep their output norm */
                name_of(n, "layers.%d.%d.norm.gamma", i, t);
                tf->out_gamma = get_dev(l, n, m->D, 0);
            }
        }
    if (!m->mel)
        m->final_gamma = get_dev(l, "final_norm.gamma", m->D, 0);
    /* mask estimators */
    for (int st = 0; st < m->S && l->s == SS_OK; st++)
        for (int k = 0; k < K && l->s == SS_OK; k++) {
            rf_mlp *p = &m->mlp[st * K + k];
            p->w = host_new(m, (size_t)m->n_lin * sizeof *p->w);
            p->b = host_new(m, (size_t)m->n_lin * sizeof *p->b);
            if (!p->w || !p->b)
                return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
            for (int j = 0; j < m->n_lin; j++) {
                int in = j == 0 ? m->D : m->hidden, out = j == m->n_lin - 1 ? 2 * m->w[k] : m->hidden;
                name_of(n, "mask_estimators.%d.to_freqs.%d.0.%d.weight", st, k, 2 * j);
                p->w[j] = get_dev(l, n, out, in);
                name_of(n, "mask_estimators.%d.to_freqs.%d.0.%d.bias", st, k, 2 * j);
                p->b[j] = get_dev(l, n, out, 0);
            }
        }
    if (l->s != SS_OK)
        return l->s;
    if ((s = ss_st_check_all_used(l->st, l->err)) != SS_OK)
        return s;
    static const float sign[2] = {-1.0f, 1.0f};
    m->swap_sign = ss_dev_list_alloc(&m->dev, be, 2);
    if (!m->swap_sign)
        return ss_fail(l->err, SS_E_DEVICE, "%s: cannot allocate device memory", m->path);
    ss_upload(be, m->swap_sign, sign, 2);
    return ss_backend_status(be, l->err);
}

static ss_status rf_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    rf_hp *hp = malloc(sizeof *hp);
    if (!hp)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", ss_st_path(st));
    ss_status s = read_hp(st, info, hp, err);
    rf_model *m = s == SS_OK ? calloc(1, sizeof *m) : NULL;
    if (s == SS_OK && !m)
        s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", ss_st_path(st));
    if (s != SS_OK) {
        free(hp);
        return s;
    }
    m->path = ss_st_path(st);
    m->mel = hp->mel, m->C = hp->C, m->S = hp->S, m->D = hp->D, m->depth = hp->depth;
    m->tdepth = hp->tdepth, m->fdepth = hp->fdepth, m->H = hp->H, m->dh = hp->dh, m->E = hp->H * hp->dh;
    m->FF = hp->FF, m->hidden = hp->hidden, m->n_lin = hp->n_lin, m->n_fft = hp->n_fft, m->hop = hp->hop;
    m->F = hp->F, m->W = hp->W, m->K = hp->K, m->zero_dc = hp->zero_dc, m->skip = hp->skip;
    loader l = {.m = m, .st = st, .be = be, .err = err};
    s = load_all(&l, hp);
    free(l.host);
    free(hp);
    m->path = NULL;          /* the ss_st's; not kept past load */
    if (s != SS_OK) {
        rf_free(m, be);
        return s;
    }
    *state = m;
    return SS_OK;
}

static void ws_release(rf_model *m, ss_backend *be)
{
    rf_ws *w = &m->ws;
    /* skip, hid[1] and layer are the second halves of h, hid[0] and mask */
    float *bufs[] = {w->spec, w->feat, w->h,     w->gx,   w->gn, w->gqkv, w->gatt, w->ggate, w->gff, w->scores,
                     w->band, w->hid[0], w->mout, w->mask, w->q,  w->y,    w->ones, w->zeros, w->cs};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i])
            ss_free(be, bufs[i]);
    memset(w, 0, sizeof *w);
}

static void rf_free(void *state, ss_backend *be)
{
    rf_model *m = state;
    if (!m)
        return;
    ws_release(m, be);
    ss_dev_list_free(&m->dev, be);
    for (int i = 0; i < m->n_host; i++)
        free(m->host_allocs[i]);
    free(m->host_allocs);
    free(m);
}

/* ---- workspace --------------------------------------------------------------------- */

/* Sequences per group: as many as fit GROUP_ROWS rows (at least one), at most n. */
static int group_of(int seq, int n)
{
    int g = GROUP_ROWS / seq;
    g = g < 1 ? 1 : g;
    return g < n ? g : n;
}

typedef struct rf_sizes {
    size_t spec, h, rows, scores, band, hid, mout, mask, q, y, ones, cs;
} rf_sizes;

/* The floats of each workspace buffer for (batch, frames); `composed`: the
 * backend has no fused attention for these shapes, so scores are needed. */
static rf_sizes ws_sizes(int C, int S, int D, int K, int H, int dh, int F, int W, int max_w, int hidden, int skip,
                         int mel, int n_tables, int batch, int frames, int composed)
{
    rf_sizes z;
    size_t B = (size_t)batch, N = (size_t)frames;
    int gt = group_of(frames, K), gf = group_of(K, batch * frames);
    size_t rt = (size_t)gt * N, rf = (size_t)gf * (size_t)K;
    z.rows = rt > rf ? rt : rf;
    z.spec = B * (size_t)C * 2u * (size_t)F * N;
    z.h = B * N * (size_t)K * (size_t)D * (skip ? 2u : 1u);
    size_t seq = N > (size_t)K ? N : (size_t)K;
    z.scores = composed ? (size_t)H * seq * seq : 0;
    z.band = B * N * (size_t)max_w;
    z.hid = B * N * (size_t)hidden * 2u;
    z.mout = B * N * 2u * (size_t)max_w;
    z.mask = B * N * (size_t)W * (mel ? 2u : 1u);
    z.q = (size_t)C * 2u * (size_t)F * N;
    z.y = B * (size_t)S * z.q;
    z.ones = z.rows > B * N ? z.rows : B * N;
    z.cs = (size_t)n_tables * seq * (size_t)dh;
    (void)W;
    return z;
}

static int needs_composed(const rf_model *m, ss_backend *be, int seq, int nseq)
{
    ss_attn_desc a = {.heads = m->H, .nq = seq, .nk = seq, .hd = m->dh, .ldq = 3 * m->E, .ldk = 3 * m->E,
                      .ldv = 3 * m->E, .ldo = m->E, .scale = 1.0f / sqrtf((float)m->dh), .reduced = 1,
                      .batch = nseq, .stride_q = (int64_t)seq * 3 * m->E, .stride_k = (int64_t)seq * 3 * m->E,
                      .stride_v = (int64_t)seq * 3 * m->E, .stride_o = (int64_t)seq * m->E};
    return !ss_attention_fused(be, &a);
}

/* Allocate the workspace for (batch, length) and fill its constants (ones,
 * zeros, the rotary tables); a no-op when it already has that shape. */
static ss_status ws_get(rf_model *m, ss_backend *be, int batch, int64_t length, ss_error *err)
{
    rf_ws *w = &m->ws;
    if (w->h && w->batch == batch && w->length == length)
        return SS_OK;
    ws_release(m, be);
    ss_stft_desc sd = {.batch = 1, .length = length, .n_fft = m->n_fft, .hop = m->hop};
    int64_t frames = ss_stft_frames(&sd);
    if (length <= m->n_fft / 2 || frames > (1 << 24) || (int64_t)batch * frames * m->K > ((int64_t)1 << 31) / m->D)
        return ss_fail(err, SS_E_INTERNAL, "roformer: a chunk of %lld samples does not fit this model", (long long)length);
    int N = (int)frames;
    int gt = group_of(N, m->K), gf = group_of(m->K, batch * N);
    int composed = needs_composed(m, be, N, gt) || needs_composed(m, be, m->K, gf) || needs_composed(m, be, N, 1) ||
                   needs_composed(m, be, m->K, 1);
    rf_sizes z = ws_sizes(m->C, m->S, m->D, m->K, m->H, m->dh, m->F, m->W, m->max_w, m->hidden, m->skip, m->mel,
                          m->n_tables, batch, N, composed);
    w->batch = batch;
    w->length = length;
    w->frames = N;
    w->rows_cap = (int)z.rows;
    size_t R = z.rows;
    w->spec = ss_alloc(be, z.spec);
    w->feat = ss_alloc(be, z.spec);
    w->h = ss_alloc(be, z.h);
    w->skip = m->skip ? w->h + z.h / 2 : NULL;
    w->gx = ss_alloc(be, R * (size_t)m->D);
    w->gn = ss_alloc(be, R * (size_t)m->D);
    w->gqkv = ss_alloc(be, R * 3u * (size_t)m->E);
    w->gatt = ss_alloc(be, R * (size_t)m->E);
    w->ggate = ss_alloc(be, R * (size_t)m->H);
    w->gff = ss_alloc(be, R * (size_t)m->FF);
    w->scores = composed ? ss_alloc(be, z.scores) : NULL;
    w->band = ss_alloc(be, z.band);
    w->hid[0] = ss_alloc(be, z.hid);
    w->hid[1] = w->hid[0] + z.hid / 2;
    w->mout = ss_alloc(be, z.mout);
    w->mask = ss_alloc(be, z.mask);
    w->layer = m->mel ? w->mask + z.mask / 2 : NULL;
    w->q = ss_alloc(be, z.q);
    w->y = ss_alloc(be, z.y);
    w->ones = ss_alloc(be, z.ones);
    w->zeros = ss_alloc(be, R * (size_t)m->H);
    w->cs = ss_alloc(be, z.cs ? z.cs : 1);
    ss_status s = ss_backend_status(be, err);
    if (s != SS_OK) {
        ws_release(m, be);       /* not this shape: the next call tries again */
        return s;
    }
    ss_fill(be, w->ones, 1.0f, z.ones);
    ss_fill(be, w->zeros, 0.0f, R * (size_t)m->H);
    /* rotary (cos, sin) of angle p * freqs[i] for p < seq, computed in float32
     * as rotary_embedding_torch does (positions and product in float32) */
    size_t seq = (size_t)(N > m->K ? N : m->K), half = (size_t)m->dh / 2;
    float *host = malloc(seq * half * 2 * sizeof *host);
    if (!host) {
        ws_release(m, be);
        return ss_fail(err, SS_E_NOMEM, "roformer: out of memory for the rotary tables");
    }
    for (int t = 0; t < m->n_tables; t++) {
        int len = m->table_kind[t] ? m->K : N;
        for (int p = 0; p < len; p++)
            for (size_t i = 0; i < half; i++) {
                float a = (float)p * m->table_freqs[t][i];
                host[((size_t)p * half + i) * 2] = cosf(a);
                host[((size_t)p * half + i) * 2 + 1] = sinf(a);
            }
        ss_upload(be, w->cs + (size_t)t * seq * (size_t)m->dh, host, (size_t)len * half * 2);
    }
    free(host);
    if ((s = ss_backend_status(be, err)) != SS_OK)
        ws_release(m, be);
    return s;
}

/* ---- the forward pass -------------------------------------------------------------- */

/* y [rows, out] (pitch ldy) (+)= x [rows, in] (pitch ldx) w^T (w [out, in]) + b [out] (b may be NULL) */
static void linear(const rf_model *m, ss_backend *be, float *y, int ldy, const float *x, int ldx, const float *w,
                   const float *b, int rows, int in, int out, int acc)
{
    ss_gemm_desc d = {.trans_b = 1, .m = rows, .n = out, .k = in, .alpha = 1.0f, .beta = acc ? 1.0f : 0.0f,
                      .lda = ldx, .ldb = in, .ldc = ldy, .batch = 1, .reduced = 1};
    if (b)
        ss_gemm_bias(be, &d, x, w, b, m->ws.ones, y);
    else
        ss_gemm(be, &d, x, w, y);
}

/* Multi-head attention of nseq sequences of seq rows: qkv [nseq*seq, 3E]
 * (q | k | v, heads side by side) -> out [nseq*seq, E]. */
static void attention(const rf_model *m, ss_backend *be, const float *qkv, float *out, int nseq, int seq)
{
    int E = m->E, dh = m->dh, H = m->H;
    float scale = 1.0f / sqrtf((float)dh);
    ss_attn_desc a = {.heads = H, .nq = seq, .nk = seq, .hd = dh, .ldq = 3 * E, .ldk = 3 * E, .ldv = 3 * E,
                      .ldo = E, .scale = scale, .reduced = 1, .batch = nseq, .stride_q = (int64_t)seq * 3 * E,
                      .stride_k = (int64_t)seq * 3 * E, .stride_v = (int64_t)seq * 3 * E,
                      .stride_o = (int64_t)seq * E};
    if (ss_attention_fused(be, &a)) {
        ss_attention(be, &a, qkv, qkv + E, qkv + 2 * E, out);
        return;
    }
    /* composed, one sequence at a time (scores [H, seq, seq]), all heads in one batched product */
    float *sc = m->ws.scores;
    if (!sc) {                  /* ws_get asked the backend about these shapes and was told fused */
        ss_error *e = ss_kernel_begin(be);
        if (e) {
            ss_fail(e, SS_E_INTERNAL, "roformer: no fused attention for %d sequences of %d and no score buffer",
                    nseq, seq);
            ss_kernel_end(be, "roformer.attention");
        }
        return;
    }
    for (int s = 0; s < nseq; s++) {
        const float *q = qkv + (size_t)s * seq * 3 * E;
        ss_gemm_desc d1 = {.trans_b = 1, .m = seq, .n = seq, .k = dh, .alpha = 1.0f, .beta = 0.0f, .lda = 3 * E,
                           .ldb = 3 * E, .ldc = seq, .batch = H, .stride_a = dh, .stride_b = dh,
                           .stride_c = (int64_t)seq * seq, .reduced = 1};
        ss_gemm(be, &d1, q, q + E, sc);                                  /* sc [H, seq, seq] = q_h k_h^T */
        ss_softmax(be, sc, sc, H * seq, seq, scale);
        ss_gemm_desc d2 = {.m = seq, .n = dh, .k = seq, .alpha = 1.0f, .beta = 0.0f, .lda = seq, .ldb = 3 * E,
                           .ldc = E, .batch = H, .stride_a = (int64_t)seq * seq, .stride_b = dh, .stride_c = dh,
                           .reduced = 1};
        ss_gemm(be, &d2, sc, q + 2 * E, out + (size_t)s * seq * E);       /* out_h [seq, dh] = sc_h v_h   */
    }
}

/* One transformer over nseq sequences of seq rows, in place: x [nseq*seq, D]. */
static void transformer(const rf_model *m, ss_backend *be, const rf_transformer *tf, float *x, int nseq, int seq)
{
    const rf_ws *w = &m->ws;
    int D = m->D, E = m->E, H = m->H, R = nseq * seq;
    size_t seq_max = (size_t)(w->frames > m->K ? w->frames : m->K);
    for (int j = 0; j < tf->n; j++) {
        const rf_block *b = &tf->blocks[j];
        /* attention */
        ss_rms_norm(be, w->gn, x, R, D, b->attn_gamma, RMS_EPS, SS_RMS_L2);          /* n [R, D]        */
        linear(m, be, w->gqkv, 3 * E, w->gn, D, b->w_qkv, NULL, R, D, 3 * E, 0);      /* qkv [R, 3E]     */
        /* q and k: 2H heads of dh side by side */
        ss_rope(be, w->gqkv, w->gqkv, nseq, seq, 2 * H, m->dh, 3 * E, w->cs + (size_t)b->table * seq_max * m->dh);
        attention(m, be, w->gqkv, w->gatt, nseq, seq);                                /* att [R, E]      */
        linear(m, be, w->ggate, H, w->gn, D, b->w_gate, b->b_gate, R, D, H, 0);       /* gates [R, H]    */
        ss_sigmoid(be, w->ggate, w->ggate, (size_t)R * H);
        ss_row_affine(be, w->gatt, w->gatt, R * H, m->dh, w->ggate, w->zeros);       /* att [R*H, dh] *= gate */
        linear(m, be, x, D, w->gatt, E, b->w_out, NULL, R, E, D, 1);                  /* x += att Wo^T   */
        /* feed-forward */
        ss_rms_norm(be, w->gn, x, R, D, b->ff_gamma, RMS_EPS, SS_RMS_L2);
        linear(m, be, w->gff, m->FF, w->gn, D, b->w1, b->b1, R, D, m->FF, 0);        /* [R, FF]         */
        ss_gelu(be, w->gff, w->gff, (size_t)R * m->FF);
        linear(m, be, x, D, w->gff, m->FF, b->w2, b->b2, R, m->FF, D, 1);             /* x += ...        */
    }
    if (tf->out_gamma)
        ss_rms_norm(be, x, x, R, D, tf->out_gamma, RMS_EPS, SS_RMS_L2);
}

/* Time transformer: each (b, k)'s N frames of h [B, N, K, D], gathered into
 * groups [g, N, D] and scattered back. */
static void time_transformer(const rf_model *m, ss_backend *be, const rf_transformer *tf)
{
    const rf_ws *w = &m->ws;
    int N = w->frames, K = m->K, D = m->D, G = group_of(N, K);
    for (int b = 0; b < w->batch; b++)
        for (int k0 = 0; k0 < K; k0 += G) {
            int g = K - k0 < G ? K - k0 : G;
            float *hb = w->h + ((size_t)b * N * K + (size_t)k0) * D;
            int64_t shape[4] = {1, g, N, D};
            int64_t gs[4] = {0, (int64_t)N * D, D, 1}, hs[4] = {0, D, (int64_t)K * D, 1};
            ss_copy4d(be, w->gx, gs, hb, hs, shape);                                   /* gx [g, N, D]    */
            transformer(m, be, tf, w->gx, g, N);
            ss_copy4d(be, hb, hs, w->gx, gs, shape);
        }
}

/* Frequency transformer: each (b, t)'s K bands, consecutive rows of h; groups
 * never span two items, so that an item's bits do not depend on --batch. */
static void freq_transformer(const rf_model *m, ss_backend *be, const rf_transformer *tf)
{
    const rf_ws *w = &m->ws;
    int n = w->frames, K = m->K, G = group_of(K, n);
    for (int b = 0; b < w->batch; b++)          /* per item: the same products whatever the batch */
        for (int s0 = 0; s0 < n; s0 += G) {
            int g = n - s0 < G ? n - s0 : G;
            transformer(m, be, tf, w->h + ((size_t)b * n + (size_t)s0) * K * m->D, g, K);   /* [g*K, D] */
        }
}

/* Stem st's mask into ws.mask [B, N, W]: per band the MLP and GLU; Mel sums
 * overlapping bands layer by layer (bands of a layer are disjoint). */
static void mask_estimate(const rf_model *m, ss_backend *be, int st)
{
    const rf_ws *w = &m->ws;
    int rows = w->frames, K = m->K, D = m->D, W = m->W;
    size_t full = (size_t)w->batch * rows * W;
    for (int L = 0; L < m->n_layers; L++) {
        float *layer = L == 0 ? w->mask : w->layer;
        if (m->mel)
            ss_fill(be, layer, 0.0f, full);
        for (int b = 0; b < w->batch; b++)      /* per item: the same products whatever the batch */
        for (int k = 0; k < K; k++) {
            if (m->layer_of[k] != L)
                continue;
            float *dst = layer + (size_t)b * rows * W;
            const rf_mlp *p = &m->mlp[st * K + k];
            const float *in = w->h + (size_t)b * rows * K * D + (size_t)k * D;         /* [rows, D] pitch K*D */
            int ld_in = K * D, n_in = D;
            for (int j = 0; j < m->n_lin; j++) {
                int last = j == m->n_lin - 1, n_out = last ? 2 * m->w[k] : m->hidden;
                float *out = last ? w->mout : w->hid[j % 2];
                linear(m, be, out, n_out, in, ld_in, p->w[j], p->b[j], rows, n_in, n_out, 0);
                if (!last)
                    ss_tanh(be, out, out, (size_t)rows * n_out);
                in = out, ld_in = n_out, n_in = n_out;
            }
            ss_glu(be, w->band, w->mout, rows, m->w[k], 1);                           /* [rows, w_k]     */
            ss_copy2d(be, dst + m->c0[k], (size_t)W, w->band, (size_t)m->w[k], (size_t)rows, (size_t)m->w[k]);
        }
        if (L > 0)
            ss_add(be, w->mask, w->mask, w->layer, full);
    }
}

static ss_status rf_forward(void *state, ss_backend *be, const float *x, float *y, int batch, int64_t length,
                            ss_error *err)
{
    rf_model *m = state;
    ss_status s = ws_get(m, be, batch, length, err);
    if (s != SS_OK)
        return s;
    rf_ws *w = &m->ws;
    int B = batch, C = m->C, F = m->F, N = w->frames, W = m->W, K = m->K, D = m->D;
    size_t FN = (size_t)F * N, item = (size_t)C * 2 * FN;
    ss_stft_desc sd = {.batch = B * C, .length = length, .n_fft = m->n_fft, .hop = m->hop};
    ss_stft(be, &sd, x, w->spec);                                                       /* X [B*C, 2, F, N] */
    for (int b = 0; b < B; b++) {                                                       /* feat [B, N, W]   */
        int64_t shape[4] = {N, F, C, 2}, ds[4] = {W, 2 * C, 2, 1};
        int64_t ss[4] = {1, N, 2 * (int64_t)FN, (int64_t)FN};
        ss_copy4d(be, w->feat + (size_t)b * N * W, ds, w->spec + b * item, ss, shape);
    }
    /* band split: h [B, N, K, D] */
    int rows = B * N;
    for (int b = 0; b < B; b++)                 /* per item: the same products whatever the batch */
        for (int k = 0; k < K; k++) {
            float *hb = w->h + (size_t)b * N * K * D + (size_t)k * D;
            ss_copy2d(be, w->band, (size_t)m->w[k], w->feat + (size_t)b * N * W + m->c0[k], (size_t)W, (size_t)N,
                      (size_t)m->w[k]);
            ss_rms_norm(be, w->band, w->band, N, m->w[k], m->bs_norm[k], RMS_EPS, SS_RMS_L2);
            linear(m, be, hb, K * D, w->band, m->w[k], m->bs_w[k], m->bs_b[k], N, m->w[k], D, 0);
        }
    /* axial transformers */
    size_t hn = (size_t)rows * K * D;
    for (int i = 0; i < m->depth; i++) {
        if (m->skip && i > 0)
            ss_add(be, w->h, w->h, w->skip, hn);                         /* + the outputs of layers 0..i-1 */
        time_transformer(m, be, &m->tf[2 * i]);
        freq_transformer(m, be, &m->tf[2 * i + 1]);
        if (m->skip && i + 1 < m->depth) {
            if (i == 0)
                ss_copy2d(be, w->skip, hn, w->h, hn, 1, hn);
            else
                ss_add(be, w->skip, w->skip, w->h, hn);
        }
    }
    if (m->final_gamma)
        ss_rms_norm(be, w->h, w->h, rows * K, D, m->final_gamma, RMS_EPS, SS_RMS_L2);
    /* X' = (-Xi, Xr) in the freed feat buffer, so that X * M = Mr X + Mi X' */
    float *xs = w->feat;
    ss_copy2d(be, xs, 2 * FN, w->spec + FN, 2 * FN, (size_t)B * C, FN);
    ss_copy2d(be, xs + FN, 2 * FN, w->spec, 2 * FN, (size_t)B * C, FN);
    ss_channel_affine(be, xs, xs, B * C, 2, (int64_t)FN, m->swap_sign, NULL);
    /* masks and the masked spectra Y [B, S, C, 2, F, N] */
    for (int st = 0; st < m->S; st++) {
        mask_estimate(m, be, st);
        for (int b = 0; b < B; b++) {
            float *yb = w->y + ((size_t)b * m->S + st) * item;
            const float *mb = w->mask + (size_t)b * N * W;
            int64_t shape[4] = {C, 2, F, N}, ds[4] = {2 * (int64_t)FN, (int64_t)FN, N, 1};
            int64_t ms[4] = {2, 0, 2 * C, W};                                  /* the mask's re (im at +1), twice */
            ss_copy4d(be, yb, ds, mb, ms, shape);
            ss_mul(be, yb, yb, w->spec + b * item, item);                                /* Mr X            */
            ss_copy4d(be, w->q, ds, mb + 1, ms, shape);
            ss_mul(be, w->q, w->q, xs + b * item, item);                                 /* Mi X'           */
            ss_add(be, yb, yb, w->q, item);
        }
    }
    /* Mel: / bands per bin; bin 0 zeroed with zero_dc */
    ss_channel_affine(be, w->y, w->y, B * m->S * C * 2, F, N, m->fscale, NULL);
    ss_stft_desc id = {.batch = B * m->S * C, .length = length, .n_fft = m->n_fft, .hop = m->hop};
    ss_istft(be, &id, w->y, y);                                                         /* y [B, S, C, L]  */
    return ss_backend_check(be, err);
}

/* Weights, plus per segment: the spectra and their copies, the band features
 * and the skip sum, the transformer group's temporaries, the mask estimators'
 * layers, the masks and the masked spectra, and the engine's transfer buffers.
 * For Mel the widest band is bounded by W (the file's bands are not read). */
static ss_status rf_memory_estimate(ss_st *st, const ss_model_info *info, ss_mem_estimate *out, ss_error *err)
{
    rf_hp *hp = malloc(sizeof *hp);
    if (!hp)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", ss_st_path(st));
    ss_status s = read_hp(st, info, hp, err);
    if (s == SS_OK) {
        int max_w = hp->mel ? hp->W : 0;
        for (int k = 0; !hp->mel && k < hp->K; k++)
            if (hp->bs_widths[k] * 2 * hp->C > max_w)
                max_w = hp->bs_widths[k] * 2 * hp->C;
        int64_t L = info->segment_length, N = L / hp->hop + 1;
        int E = hp->H * hp->dh, tables = hp->depth * (hp->tdepth + hp->fdepth);
        rf_sizes z = ws_sizes(hp->C, hp->S, hp->D, hp->K, hp->H, hp->dh, hp->F, hp->W, max_w, hp->hidden, hp->skip,
                              hp->mel, tables < 2 ? tables : 2, 1, (int)N, 1);
        uint64_t group = (uint64_t)z.rows * (uint64_t)(2 * hp->D + 4 * E + 2 * hp->H + hp->FF);
        uint64_t item = 2 * z.spec + z.h + z.band + z.hid + z.mout + z.mask + z.y + z.ones;
        uint64_t io = (uint64_t)hp->C * (uint64_t)L * (1u + (uint64_t)hp->S);
        out->fixed = info->parameters * 4u + 4u * (group + z.scores + z.q + z.cs);
        out->per_item = 4u * (item + io);
    }
    free(hp);
    return s;
}

/* Every step of rf_forward is a device op (no host round trip, no allocation)
 * once ws_get has made the workspace for these arguments; a pass with other
 * arguments remakes it (new pointers), so only while it has this shape. */
static int rf_graph_ok(void *state, int batch, int64_t length)
{
    const rf_ws *w = &((const rf_model *)state)->ws;
    return w->h && w->batch == batch && w->length == length;
}

const ss_arch ss_arch_bs_roformer = {
    .name = "bs_roformer",
    .load = rf_load,
    .forward = rf_forward,
    .free = rf_free,
    .graph_ok = rf_graph_ok,
    .chunking = SS_CHUNK_MSST,
    .memory_estimate = rf_memory_estimate,
};

const ss_arch ss_arch_mel_band_roformer = {
    .name = "mel_band_roformer",
    .load = rf_load,
    .forward = rf_forward,
    .free = rf_free,
    .graph_ok = rf_graph_ok,
    .chunking = SS_CHUNK_MSST,
    .memory_estimate = rf_memory_estimate,
};

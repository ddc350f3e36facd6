/* deepfilternet.c - DeepFilterNet3 (Rikorose/DeepFilterNet: df/deepfilternet3.py,
 * df/modules.py, df/multiframe.py, df/enhance.py; features from libDF/src/lib.rs):
 * speech enhancement as two stems, speech and noise (= mixture - speech, the
 * pipeline's residual).  The network takes one channel at 48 kHz; a track's C
 * channels run as C independent streams (channels_independent: the pipeline
 * gives a file's channels as they are), as every forward() batch item does.
 *
 * The track is processed as a stream of blocks of at most `block` STFT frames
 * (hop samples each); everything that crosses a block boundary is carried in a
 * per-stream state, so that the result does not depend on the block size:
 * the analysis history (n_fft - hop samples), the ERB and unit-norm running
 * means, the look-back of the three convolutions with a time kernel (kt - 1
 * frames of their input), the GRU hidden states, the last spectrum frames the
 * deep filter looks back on and ahead to, and the synthesis overlap.
 *
 * Per block of G new frames n0 .. n0+G-1 (one stream):
 *   frames [G, n_fft] = the samples t hop - (n_fft - hop) ..       (no centring)
 *   X [G, nb, 2] = frames x D                D [n_fft, 2 nb]: Vorbis window, rfft,
 *                                            wnorm = 2 hop / n_fft^2 (libDF analysis)
 *   features (host; libDF feat_erb / feat_cplx):
 *     fe [G, E]      = (10 log10(mean_band |X|^2 + 1e-10) - s) / 40,  s = a s + (1-a) x
 *     fs [2, G, Fdf] = X[:Fdf] / sqrt(u),  u = a u + (1-a) |X|
 *   the network step tau consumes feature frame tau + la (conv_lookahead; the
 *   first la frames are never seen, la zero frames follow the last one):
 *   encoder  e0 [C, G, E] .. e3 [C, G, E/4], c0 [C, G, Fdf], c1 [C, G, Fdf/2]
 *            emb [G, C E/4] = glin(e3^T) + relu(glin(c1^T)) -> squeezed GRU
 *            lsnr [G] = sigmoid(lin(emb)) (max - min) + min
 *   ERB decoder  mask [G, E] (sigmoid), DF decoder coef [G, Fdf, O, 2] (tanh)
 *   Y(tau) = X(tau) mask(bins) for bins >= Fdf,
 *            sum_n coef_n(tau) X(tau - (O - 1 - dla) + n) for bins < Fdf
 *   synthesis frames [G, n_fft] = Y x Dinv (irfft without 1/n_fft, window),
 *   overlap-add; enhance()'s padding (n_fft zeros at the end) and delay
 *   compensation (n_fft - hop samples) are applied by forward().
 *
 * Each GRU layer is one ss_gru call over the block's G frames, its state
 * carried from block to block (gru_layer()).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model.h"
#include "../../src/weights.h"

#define DF_BN_EPS 1e-5f
#define DF_MAX_GRU 4
#define DF_DEFAULT_BLOCK 256
/* The local SNR summary (dfn_track_stats): libDF's thresholds (tract.rs,
 * RuntimeParams defaults; deepfilternet3.py's lsnr_dropout uses -10 too):
 * below min_db_thresh a frame is noise only (libDF applies a zero mask), above
 * max_db_erb_thresh clean speech (libDF skips the processing). */
#define DF_LSNR_NOISE_DB -10.0
#define DF_LSNR_CLEAN_DB 30.0
#define DF_LSNR_BINS 50000   /* histogram over [lsnr_min, lsnr_max]: 0.001 dB bins for the
                                released model, the median to half a bin (bounded memory) */

/* A Conv2dNormAct / ConvTranspose2dNormAct folded at load:
 *   y = act(scale * pw(conv(x)) + shift), or y = act(scale * x + shift) for a
 *   1x1 depthwise convolution (diag: folded into scale). */
typedef struct cna {
    int cin, cout, groups, kt, kf, fstride, transposed, diag;
    float *w;            /* conv [cout, cin/groups, kt, kf] or convT [cin, cout/groups, 1, kf] */
    float *pw;           /* [cout, cout] pointwise, or NULL                                      */
    float *scale, *shift;/* [cout]                                                               */
    ss_act act;          /* RELU or SIGMOID                                                      */
} cna;

typedef struct glin {    /* GroupedLinearEinsum: w [G, I/G, H/G] */
    int groups, in, out;
    float *w;
} glin;

typedef struct gru {
    int in, hidden, layers;
    float *w_ih[DF_MAX_GRU], *w_hh[DF_MAX_GRU], *b_ih[DF_MAX_GRU], *b_hh[DF_MAX_GRU];
} gru;

typedef struct sgru {    /* SqueezedGRU_S */
    glin lin_in, lin_out;/* lin_out.w NULL: identity */
    gru g;
} sgru;

/* one stream's carried state (device memory) */
typedef struct stream {
    float *ana;          /* [n_fft - hop] last input samples                        */
    float *syn;          /* [n_fft - hop] overlap not yet output                    */
    float *xh;           /* [H + block, 2 nb] spectrum frames: H history + the block */
    float *hist_e0, *hist_c0, *hist_p; /* conv look-back: [cin, kt - 1, F]          */
    float *h[3][DF_MAX_GRU];           /* GRU hidden states [H]                     */
    float erb_s[64], *unit_s;          /* host running means [E], [Fdf]             */
    int64_t frames;      /* spectrum frames seen                                    */
    /* SS_CHUNK_STREAM */
    float *pend;         /* [hop] input samples not yet in a frame                  */
    int64_t n_pend;      /* how many (< hop)                                        */
    int64_t drop, emitted; /* output samples still to drop (n_fft - hop), given     */
    int flushed;         /* the end's la zero-feature steps run                     */
} stream;

typedef struct dfn {
    int sr, n_fft, hop, nb, E, Fdf, O, dla, la;
    int C;               /* conv_ch */
    float lsnr_min, lsnr_max, alpha;
    int widths[64];
    int block;           /* frames per block */
    cna erb_conv[4], df_conv[2], conv_p[4], convt[3], conv0_out, df_convp;
    glin df_fc_emb, df_skip, df_out;
    float *lsnr_w, *lsnr_b;
    sgru enc_gru, dec_gru, df_gru;
    float *dfwd, *dinv;  /* [n_fft, 2 nb], [2 nb, n_fft] */
    float *inv_fb;       /* [E, nb] */
    float *ones;         /* [block] */
    /* workspace for one block */
    int cap;
    float *frames, *fe, *fs, *pad, *e[4], *c[2], *t1, *t2, *t3, *emb, *cemb, *g1, *g2, *xi, *d3,
        *mask, *dfc, *pp, *coef, *spec_e, *re, *im, *ar, *ai, *cr, *ci, *ola, *lsnr, *big;
    float *host;         /* [block, 2 nb] host copy of X */
    float *host_l;       /* [block] host copy of lsnr    */
    /* the track's local SNR, every channel's frames (reset by stream_begin, forward) */
    uint32_t *lsnr_hist; /* [DF_LSNR_BINS] frames per bin                       */
    int64_t lsnr_n, lsnr_noise, lsnr_clean; /* frames; below / above the thresholds */
    float lsnr_lo, lsnr_hi;                 /* smallest and largest seen           */
    float *host_f;       /* [block, E + 2 Fdf] host features */
    /* streams */
    int n_streams, st_block;   /* streams allocated, for blocks of st_block frames */
    stream *st;
    /* SS_CHUNK_STREAM: one track fed piece by piece, channel c through stream c */
    int64_t s_len, s_T;        /* track length; frames of it with enhance()'s padding
                                  (a live stream: -1 and INT64_MAX until stream_end)  */
    int64_t s_audio;           /* samples received (per channel)                     */
    int s_chans;               /* the track's channels: streams 0 .. s_chans - 1     */
    int s_live;                /* a live stream: every frame a block of its own, so
                                  that the result does not depend on how the input
                                  arrives (the CPU kernels give a frame in a block of
                                  1 the bits it gets in the file path's blocks)      */
    int s_cap;                 /* s_in/s_out made for s_cap frames                   */
    float *s_in, *s_out;       /* [(block + 1) hop + n_fft], [(block + la) hop]      */
} dfn;

/* ---- loading -------------------------------------------------------------------- */

/* `pre`.`i`.weight */
static const ss_st_tensor *find_w(ss_wload *l, char *name, size_t size, const char *pre, int i)
{
    snprintf(name, size, "%s.%d.weight", pre, i);
    return ss_st_find(l->st, name);
}

/* A Conv2dNormAct or ConvTranspose2dNormAct at `pre` (state-dict indices:
 * [pad,] conv, [pointwise,] BatchNorm) from cin to cout channels. */
static void load_cna(ss_wload *l, const char *pre, int cin, int cout, int fstride, int transposed, ss_act act, cna *c)
{
    char name[256];
    if (l->s != SS_OK)
        return;
    memset(c, 0, sizeof *c);
    c->cin = cin, c->cout = cout, c->fstride = fstride, c->transposed = transposed, c->act = act;
    int i = 0;
    const ss_st_tensor *w = NULL;
    for (; i < 3 && !(w = find_w(l, name, sizeof name, pre, i)); i++)
        ;
    if (!w || w->ndim != 4 || w->shape[1] < 1) {
        l->s = ss_fail(l->err, SS_E_DATA, "%s: no convolution weight %s.{0,1,2}.weight [out, in/groups, kt, kf]",
                       l->path, pre);
        return;
    }
    int64_t ws[4] = {w->shape[0], w->shape[1], w->shape[2], w->shape[3]};
    if (!transposed) {
        if (ws[0] != cout || cin % ws[1] || ws[2] < 1 || ws[2] > 16 || ws[3] < 1 || ws[3] > 15 || ws[3] % 2 == 0) {
            l->s = ss_fail(l->err, SS_E_DATA, "%s: %s: shape [%lld, %lld, %lld, %lld] does not fit %d -> %d channels",
                           l->path, name, (long long)ws[0], (long long)ws[1], (long long)ws[2], (long long)ws[3], cin,
                           cout);
            return;
        }
        c->groups = cin / (int)ws[1];
    } else {
        if (ws[0] != cin || cout % ws[1] || ws[2] != 1 || ws[3] < 1 || ws[3] > 15 || ws[3] % 2 == 0) {
            l->s = ss_fail(l->err, SS_E_DATA, "%s: %s: shape [%lld, %lld, %lld, %lld] does not fit a transposed "
                           "%d -> %d convolution with a time kernel of 1", l->path, name, (long long)ws[0],
                           (long long)ws[1], (long long)ws[2], (long long)ws[3], cin, cout);
            return;
        }
        c->groups = cout / (int)ws[1];
    }
    if (c->groups < 1 || cout % c->groups || cin % c->groups) {
        l->s = ss_fail(l->err, SS_E_DATA, "%s: %s: groups %d do not divide %d -> %d", l->path, name, c->groups, cin,
                       cout);
        return;
    }
    c->kt = (int)ws[2], c->kf = (int)ws[3];
    float *hw = ss_wload_host(l, name, 4, ws);
    i++;
    const ss_st_tensor *p = find_w(l, name, sizeof name, pre, i);
    float *hp = NULL;
    if (p && p->ndim == 4) {
        int64_t ps[4] = {cout, cout, 1, 1};
        hp = ss_wload_host(l, name, 4, ps);
        i++;
    }
    float *bn[4] = {0};
    static const char *const part[4] = {"weight", "bias", "running_mean", "running_var"};
    int64_t bs[1] = {cout};
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, "%s.%d.%s", pre, i, part[k]);
        bn[k] = ss_wload_host(l, name, 1, bs);
    }
    if (l->s == SS_OK) {
        for (int k = 0; k < cout; k++) {
            float s = bn[0][k] / sqrtf(bn[3][k] + DF_BN_EPS);
            bn[1][k] -= bn[2][k] * s;
            bn[0][k] = s;
        }
        c->diag = !transposed && !hp && c->kt == 1 && c->kf == 1 && c->groups == cin && cin == cout;
        if (c->diag)
            for (int k = 0; k < cout; k++)
                bn[0][k] *= hw[k];
        else
            c->w = ss_wload_upload(l, hw, (size_t)(ws[0] * ws[1] * ws[2] * ws[3]));
        if (hp)
            c->pw = ss_wload_upload(l, hp, (size_t)cout * cout);
        c->scale = ss_wload_upload(l, bn[0], (size_t)cout);
        c->shift = ss_wload_upload(l, bn[1], (size_t)cout);
    }
    free(hw);
    free(hp);
    for (int k = 0; k < 4; k++)
        free(bn[k]);
}

static void load_glin(ss_wload *l, const char *name, int in, glin *g)
{
    if (l->s != SS_OK)
        return;
    const ss_st_tensor *t = ss_st_find(l->st, name);
    if (!t || t->ndim != 3 || t->shape[0] < 1 || t->shape[0] * t->shape[1] != in || t->shape[2] < 1) {
        l->s = ss_fail(l->err, SS_E_DATA, "%s: tensor %s missing or not [groups, %d/groups, out/groups]", l->path,
                       name, in);
        return;
    }
    int64_t s[3] = {t->shape[0], t->shape[1], t->shape[2]};
    g->groups = (int)s[0], g->in = in, g->out = (int)(s[0] * s[2]);
    g->w = ss_wload_dev(l, name, 3, s);
}

static void load_sgru(ss_wload *l, const char *pre, int in, int with_out, sgru *q)
{
    char name[256];
    if (l->s != SS_OK)
        return;
    snprintf(name, sizeof name, "%s.linear_in.0.weight", pre);
    load_glin(l, name, in, &q->lin_in);
    if (l->s != SS_OK)
        return;
    int H = q->lin_in.out;
    q->g.in = H, q->g.hidden = H;
    for (int k = 0; k < DF_MAX_GRU; k++) {
        snprintf(name, sizeof name, "%s.gru.weight_ih_l%d", pre, k);
        if (!ss_st_find(l->st, name))
            break;
        int64_t ws[2] = {3 * H, H}, bs[1] = {3 * H};
        q->g.w_ih[k] = ss_wload_dev(l, name, 2, ws);
        snprintf(name, sizeof name, "%s.gru.weight_hh_l%d", pre, k);
        q->g.w_hh[k] = ss_wload_dev(l, name, 2, ws);
        snprintf(name, sizeof name, "%s.gru.bias_ih_l%d", pre, k);
        q->g.b_ih[k] = ss_wload_dev(l, name, 1, bs);
        snprintf(name, sizeof name, "%s.gru.bias_hh_l%d", pre, k);
        q->g.b_hh[k] = ss_wload_dev(l, name, 1, bs);
        q->g.layers = k + 1;
    }
    if (l->s == SS_OK && q->g.layers == 0)
        l->s = ss_fail(l->err, SS_E_DATA, "%s: no GRU weights %s.gru.weight_ih_l0", l->path, pre);
    if (with_out) {
        snprintf(name, sizeof name, "%s.linear_out.0.weight", pre);
        load_glin(l, name, H, &q->lin_out);
    }
}

static void free_ptrs(ss_backend *be, float **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) {
            ss_free(be, p[i]);
            p[i] = NULL;
        }
}

static void cna_free(ss_backend *be, cna *c)
{
    float *p[4] = {c->w, c->pw, c->scale, c->shift};
    free_ptrs(be, p, 4);
}

static void sgru_free(ss_backend *be, sgru *q)
{
    free_ptrs(be, &q->lin_in.w, 1);
    free_ptrs(be, &q->lin_out.w, 1);
    free_ptrs(be, q->g.w_ih, DF_MAX_GRU);
    free_ptrs(be, q->g.w_hh, DF_MAX_GRU);
    free_ptrs(be, q->g.b_ih, DF_MAX_GRU);
    free_ptrs(be, q->g.b_hh, DF_MAX_GRU);
}

#define WS_LIST(m)                                                                                              \
    &m->frames, &m->fe, &m->fs, &m->pad, &m->e[0], &m->e[1], &m->e[2], &m->e[3], &m->c[0], &m->c[1], &m->t1,  \
        &m->t2, &m->t3, &m->emb, &m->cemb, &m->g1, &m->g2, &m->xi, &m->d3, &m->mask, &m->dfc, \
        &m->pp, &m->coef, &m->spec_e, &m->re, &m->im, &m->ar, &m->ai, &m->cr, &m->ci, &m->ola, &m->lsnr, &m->big

static void streams_free(dfn *m, ss_backend *be)
{
    for (int i = 0; i < m->n_streams; i++) {
        stream *s = &m->st[i];
        float *p[7] = {s->ana, s->syn, s->xh, s->hist_e0, s->hist_c0, s->hist_p, s->pend};
        free_ptrs(be, p, 7);
        for (int k = 0; k < 3; k++)
            free_ptrs(be, s->h[k], DF_MAX_GRU);
        free(s->unit_s);
    }
    free(m->st);
    m->st = NULL;
    m->n_streams = 0;
}

static void ws_free(dfn *m, ss_backend *be)
{
    float **l[] = {WS_LIST(m)};
    for (size_t i = 0; i < sizeof l / sizeof *l; i++)
        free_ptrs(be, l[i], 1);
    free(m->host);
    free(m->host_f);
    free(m->host_l);
    m->host = m->host_f = m->host_l = NULL;
    m->cap = 0;
}

static void dfn_free(void *state, ss_backend *be)
{
    dfn *m = state;
    if (!m)
        return;
    streams_free(m, be);
    ws_free(m, be);
    free(m->lsnr_hist);
    free_ptrs(be, &m->s_in, 1);
    free_ptrs(be, &m->s_out, 1);
    for (int i = 0; i < 4; i++)
        cna_free(be, &m->erb_conv[i]), cna_free(be, &m->conv_p[i]);
    for (int i = 0; i < 3; i++)
        cna_free(be, &m->convt[i]);
    for (int i = 0; i < 2; i++)
        cna_free(be, &m->df_conv[i]);
    cna_free(be, &m->conv0_out);
    cna_free(be, &m->df_convp);
    float *p[9] = {m->df_fc_emb.w, m->df_skip.w, m->df_out.w, m->lsnr_w, m->lsnr_b, m->dfwd, m->dinv, m->inv_fb,
                   m->ones};
    free_ptrs(be, p, 9);
    sgru_free(be, &m->enc_gru);
    sgru_free(be, &m->dec_gru);
    sgru_free(be, &m->df_gru);
    free(m);
}

static ss_status meta_i(const ss_st *st, const char *key, int lo, int hi, int *out, ss_error *err)
{
    int64_t v;
    ss_status s = ss_st_meta_int(st, key, &v, err);
    if (s != SS_OK)
        return s;
    if (v < lo || v > hi)
        return ss_fail(err, SS_E_DATA, "%s: %s = %lld: must be in %d .. %d", ss_st_path(st), key, (long long)v, lo, hi);
    *out = (int)v;
    return SS_OK;
}

/* the dfn.* hyperparameters (docs/deepfilternet-format.md), checked against each other */
static ss_status read_hparams(const ss_st *st, dfn *m, ss_error *err)
{
    const char *path = ss_st_path(st);
    ss_status s;
    double v;
    if ((s = meta_i(st, "dfn.df.fft_size", 16, 16384, &m->n_fft, err)) != SS_OK ||
        (s = meta_i(st, "dfn.df.hop_size", 4, 8192, &m->hop, err)) != SS_OK ||
        (s = meta_i(st, "dfn.df.nb_erb", 8, 64, &m->E, err)) != SS_OK ||
        (s = meta_i(st, "dfn.df.nb_df", 2, 8193, &m->Fdf, err)) != SS_OK ||
        (s = meta_i(st, "dfn.df.df_order", 1, 64, &m->O, err)) != SS_OK ||
        (s = meta_i(st, "dfn.df.df_lookahead", 0, 63, &m->dla, err)) != SS_OK ||
        (s = meta_i(st, "dfn.deepfilternet.conv_lookahead", 0, 63, &m->la, err)) != SS_OK)
        return s;
    if ((s = ss_st_meta_double(st, "dfn.df.lsnr_min", &v, err)) != SS_OK)
        return s;
    m->lsnr_min = (float)v;
    if ((s = ss_st_meta_double(st, "dfn.df.lsnr_max", &v, err)) != SS_OK)
        return s;
    m->lsnr_max = (float)v;
    if ((s = ss_st_meta_double(st, "dfn.norm_alpha", &v, err)) != SS_OK)
        return s;
    if (!(v > 0.0 && v < 1.0))
        return ss_fail(err, SS_E_DATA, "%s: dfn.norm_alpha %g: must be in (0, 1)", path, v);
    m->alpha = (float)v;
    m->nb = m->n_fft / 2 + 1;
    if (m->n_fft % 2 || m->n_fft % m->hop || 2 * m->hop > m->n_fft)
        return ss_fail(err, SS_E_DATA, "%s: dfn.df.fft_size %d, dfn.df.hop_size %d: need an even fft size that is a "
                       "multiple of hop, hop at most half of it", path, m->n_fft, m->hop);
    if (m->E % 8 || m->Fdf % 2 || m->Fdf >= m->nb)
        return ss_fail(err, SS_E_DATA, "%s: nb_erb %d must be a multiple of 8, nb_df %d even and below %d", path, m->E,
                       m->Fdf, m->nb);
    if (m->dla > m->O - 1 || m->la < m->dla)
        return ss_fail(err, SS_E_DATA, "%s: df_lookahead %d must be below df_order %d and at most conv_lookahead %d",
                       path, m->dla, m->O, m->la);
    /* dfn.erb_widths: comma list of E band widths summing to nb */
    const char *w = ss_st_meta(st, "dfn.erb_widths");
    if (!w)
        return ss_fail(err, SS_E_DATA, "%s: metadata dfn.erb_widths missing", path);
    int n = 0, sum = 0;
    for (const char *p = w; *p;) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 1 || x > m->nb || n >= m->E)
            return ss_fail(err, SS_E_DATA, "%s: dfn.erb_widths '%s': not %d positive widths", path, w, m->E);
        m->widths[n++] = (int)x;
        sum += (int)x;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return ss_fail(err, SS_E_DATA, "%s: dfn.erb_widths '%s': not a comma list", path, w);
    }
    if (n != m->E || sum != m->nb)
        return ss_fail(err, SS_E_DATA, "%s: dfn.erb_widths: %d widths summing to %d, need %d summing to %d",
                       path, n, sum, m->E, m->nb);
    return SS_OK;
}

/* the constant matrices: analysis D, synthesis Dinv, inverse ERB bank */
static void make_consts(ss_wload *l, dfn *m)
{
    int N = m->n_fft, nb = m->nb, E = m->E;
    size_t nd = (size_t)N * 2 * nb;
    float *d = malloc(nd * sizeof *d), *di = malloc(nd * sizeof *di), *fb = calloc((size_t)E * nb, sizeof *fb);
    double *win = malloc((size_t)N * sizeof *win);
    if (!d || !di || !fb || !win) {
        l->s = ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", l->path);
    } else {
        int h = N / 2;
        for (int i = 0; i < N; i++) {             /* libDF's Vorbis window */
            double s = sin(0.5 * M_PI * (i + 0.5) / h);
            win[i] = (float)sin(0.5 * M_PI * s * s);
        }
        double wnorm = 1.0 / ((double)N * N / (2.0 * m->hop));
        for (int i = 0; i < N; i++)
            for (int k = 0; k < nb; k++) {
                double a = 2.0 * M_PI * (double)((int64_t)i * k % N) / N;
                d[(size_t)i * 2 * nb + 2 * k] = (float)(win[i] * cos(a) * wnorm);
                d[(size_t)i * 2 * nb + 2 * k + 1] = (float)(-win[i] * sin(a) * wnorm);
                double c = (k == 0 || k == N / 2) ? 1.0 : 2.0;
                di[(size_t)(2 * k) * N + i] = (float)(c * cos(a) * win[i]);
                di[(size_t)(2 * k + 1) * N + i] = (k == 0 || k == N / 2) ? 0.0f : (float)(-c * sin(a) * win[i]);
            }
        int b0 = 0;
        for (int e = 0; e < E; e++) {
            for (int j = 0; j < m->widths[e]; j++)
                fb[(size_t)e * nb + b0 + j] = 1.0f;
            b0 += m->widths[e];
        }
        m->dfwd = ss_wload_upload(l, d, nd);
        m->dinv = ss_wload_upload(l, di, nd);
        m->inv_fb = ss_wload_upload(l, fb, (size_t)E * nb);
    }
    free(d);
    free(di);
    free(fb);
    free(win);
}

static ss_status dfn_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    const char *path = ss_st_path(st);
    /* the residual (noise) is the pipeline's: the network gives speech only */
    if (info->n_sources != 1 || strcmp(info->sources[0], "speech") != 0)
        return ss_fail(err, SS_E_DATA, "%s: DeepFilterNet's network gives one stem, speech (stemsplit.sources=speech, "
                       "stemsplit.residual=noise)", path);
    if (info->channels != 1)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.channels %d: DeepFilterNet's network takes one channel (a file's "
                       "channels run as independent streams)", path, info->channels);
    dfn *m = calloc(1, sizeof *m);
    if (!m)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    ss_status s = read_hparams(st, m, err);
    if (s != SS_OK) {
        free(m);
        return s;
    }
    m->sr = info->samplerate;
    m->block = DF_DEFAULT_BLOCK;
    ss_wload l = {.st = st, .be = be, .err = err, .s = SS_OK, .path = path};
    const ss_st_tensor *t = ss_st_find(st, "enc.erb_conv0.1.weight");
    if (!t)
        t = ss_st_find(st, "enc.erb_conv0.0.weight");
    if (!t || t->ndim != 4 || t->shape[0] < 2 || t->shape[0] > 1024) {
        free(m);
        return ss_fail(err, SS_E_DATA, "%s: tensor enc.erb_conv0.1.weight missing or not [conv_ch, 1, kt, kf]", path);
    }
    int C = m->C = (int)t->shape[0], E = m->E, Fdf = m->Fdf;
    load_cna(&l, "enc.erb_conv0", 1, C, 1, 0, SS_ACT_RELU, &m->erb_conv[0]);
    load_cna(&l, "enc.erb_conv1", C, C, 2, 0, SS_ACT_RELU, &m->erb_conv[1]);
    load_cna(&l, "enc.erb_conv2", C, C, 2, 0, SS_ACT_RELU, &m->erb_conv[2]);
    load_cna(&l, "enc.erb_conv3", C, C, 1, 0, SS_ACT_RELU, &m->erb_conv[3]);
    load_cna(&l, "enc.df_conv0", 2, C, 1, 0, SS_ACT_RELU, &m->df_conv[0]);
    load_cna(&l, "enc.df_conv1", C, C, 2, 0, SS_ACT_RELU, &m->df_conv[1]);
    load_glin(&l, "enc.df_fc_emb.0.weight", C * Fdf / 2, &m->df_fc_emb);
    int D = C * E / 4;
    load_sgru(&l, "enc.emb_gru", D, 1, &m->enc_gru);
    int64_t lw[2] = {1, D}, lb[1] = {1};
    m->lsnr_w = ss_wload_dev(&l, "enc.lsnr_fc.0.weight", 2, lw);
    m->lsnr_b = ss_wload_dev(&l, "enc.lsnr_fc.0.bias", 1, lb);
    load_sgru(&l, "erb_dec.emb_gru", D, 1, &m->dec_gru);
    static const char *const cp[4] = {"erb_dec.conv0p", "erb_dec.conv1p", "erb_dec.conv2p", "erb_dec.conv3p"};
    for (int i = 0; i < 4; i++)
        load_cna(&l, cp[i], C, C, 1, 0, SS_ACT_RELU, &m->conv_p[i]);
    load_cna(&l, "erb_dec.convt1", C, C, 2, 1, SS_ACT_RELU, &m->convt[0]);
    load_cna(&l, "erb_dec.convt2", C, C, 2, 1, SS_ACT_RELU, &m->convt[1]);
    load_cna(&l, "erb_dec.convt3", C, C, 1, 0, SS_ACT_RELU, &m->convt[2]);
    load_cna(&l, "erb_dec.conv0_out", C, 1, 1, 0, SS_ACT_SIGMOID, &m->conv0_out);
    load_cna(&l, "df_dec.df_convp", C, 2 * m->O, 1, 0, SS_ACT_RELU, &m->df_convp);
    load_sgru(&l, "df_dec.df_gru", D, 0, &m->df_gru);
    if (ss_st_find(st, "df_dec.df_skip.weight"))
        load_glin(&l, "df_dec.df_skip.weight", D, &m->df_skip);
    int Hdf = m->df_gru.g.hidden;
    load_glin(&l, "df_dec.df_out.0.weight", Hdf, &m->df_out);
    if (l.s == SS_OK) {
        const char *bad = NULL;
        if (m->enc_gru.lin_out.out != D || m->dec_gru.lin_out.out != D)
            bad = "the GRUs' linear_out must give conv_ch * nb_erb / 4";
        else if (m->df_fc_emb.out != D)
            bad = "enc.df_fc_emb must give conv_ch * nb_erb / 4";
        else if (m->df_skip.w && m->df_skip.out != Hdf)
            bad = "df_dec.df_skip must give the DF GRU's width";
        else if (m->df_out.out != Fdf * 2 * m->O)
            bad = "df_dec.df_out must give nb_df * 2 * df_order";
        else if (m->erb_conv[0].kt < 1 || m->df_conv[0].kt < 1 || m->convt[2].kt != 1 || m->erb_conv[1].kt != 1 ||
                 m->erb_conv[2].kt != 1 || m->erb_conv[3].kt != 1 || m->df_conv[1].kt != 1 || m->conv0_out.kt != 1)
            bad = "only erb_conv0, df_conv0 and df_convp may have a time kernel above 1";
        else if (m->df_convp.kf != 1)
            bad = "df_dec.df_convp must have a frequency kernel of 1";
        if (bad)
            l.s = ss_fail(err, SS_E_DATA, "%s: %s", path, bad);
    }
    if (l.s == SS_OK)
        make_consts(&l, m);
    if (l.s != SS_OK) {
        dfn_free(m, be);
        return l.s;
    }
    *state = m;
    return ss_backend_status(be, err);
}

/* ---- workspace and streams -------------------------------------------------------- */

/* spectrum frames kept before a block: the deep filter's look-back and the
 * network's lag behind the newest frame */
static int hist_rows(const dfn *m) { return m->O - 1 - m->dla + m->la; }

static ss_status ws_ensure(dfn *m, ss_backend *be, ss_error *err)
{
    if (m->cap >= m->block)
        return SS_OK;
    ws_free(m, be);
    if (m->ones)
        ss_free(be, m->ones);
    size_t G = (size_t)m->block, C = (size_t)m->C, E = (size_t)m->E, F = (size_t)m->Fdf, nb = (size_t)m->nb;
    size_t N = (size_t)m->n_fft, O = (size_t)m->O, D = C * E / 4;
    size_t H = (size_t)(m->enc_gru.g.hidden > m->dec_gru.g.hidden ? m->enc_gru.g.hidden : m->dec_gru.g.hidden);
    if ((size_t)m->df_gru.g.hidden > H)
        H = (size_t)m->df_gru.g.hidden;
    size_t W = E > F ? E : F;                      /* widest conv plane */
    size_t kt = 16;
    size_t Cm = C > 2 * O ? C : 2 * O;             /* widest channel count (df_convp gives 2 O) */
    size_t plane = Cm * (G + kt) * (W + 2);        /* a padded conv input or output */
    size_t spec = G * 2 * nb;
    size_t t1 = plane, big = plane, t3 = plane, hr = (size_t)hist_rows(m);
    size_t cand1[] = {G * nb, G * H, G * F * 2 * O, G * D, G * (size_t)m->hop, G * F};
    for (size_t i = 0; i < sizeof cand1 / sizeof *cand1; i++)
        t1 = cand1[i] > t1 ? cand1[i] : t1;
    big = G * N > big ? G * N : big;
    big = spec > big ? spec : big;
    t3 = hr * 2 * nb > t3 ? hr * 2 * nb : t3;
    size_t sizes[] = {G * N, G * E, 2 * G * F, plane, plane, plane, plane, plane, plane, plane, t1,
                      t1, t3, G * D, G * D, G * H, G * H, (G + 1) * 3 * H, plane, G * E, G * H, t1,
                      G * F * 2 * O, spec, G * F, G * F, G * F, G * F, G * F, G * F,
                      (G + N / (size_t)m->hop) * (size_t)m->hop, G, big};
    float **l[] = {WS_LIST(m)};
    int ok = 1;
    for (size_t i = 0; i < sizeof l / sizeof *l && ok; i++)
        ok = (*l[i] = ss_alloc(be, sizes[i])) != NULL;
    m->ones = ok ? ss_alloc(be, G) : NULL;
    m->host = malloc(spec * sizeof *m->host);
    m->host_f = malloc(G * (E + 2 * F) * sizeof *m->host_f);
    m->host_l = malloc(G * sizeof *m->host_l);
    if (!m->lsnr_hist)
        m->lsnr_hist = malloc(DF_LSNR_BINS * sizeof *m->lsnr_hist);
    if (!ok || !m->ones || !m->host || !m->host_f || !m->host_l || !m->lsnr_hist) {
        ws_free(m, be);
        ss_status s = ss_backend_status(be, err);
        return s != SS_OK ? s : ss_fail(err, SS_E_NOMEM, "deepfilternet: out of memory for a block of %d frames",
                                        m->block);
    }
    ss_fill(be, m->ones, 1.0f, G);
    m->cap = m->block;
    return ss_backend_status(be, err);
}

static ss_status streams_ensure(dfn *m, ss_backend *be, int n, ss_error *err)
{
    if (m->n_streams >= n && m->st && m->st_block >= m->block)
        return SS_OK;
    streams_free(m, be);
    m->st_block = m->block;
    m->st = calloc((size_t)n, sizeof *m->st);
    if (!m->st)
        return ss_fail(err, SS_E_NOMEM, "deepfilternet: out of memory");
    m->n_streams = n;
    size_t ov = (size_t)(m->n_fft - m->hop), xh = (size_t)(hist_rows(m) + m->block) * 2 * m->nb;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        stream *s = &m->st[i];
        s->ana = ss_alloc(be, ov);
        s->syn = ss_alloc(be, ov);
        s->xh = ss_alloc(be, xh);
        s->hist_e0 = ss_alloc(be, (size_t)(m->erb_conv[0].kt + 1) * m->E);
        s->hist_c0 = ss_alloc(be, (size_t)(m->df_conv[0].kt + 1) * 2 * m->Fdf);
        s->hist_p = ss_alloc(be, (size_t)(m->df_convp.kt + 1) * m->C * m->Fdf);
        s->pend = ss_alloc(be, (size_t)m->hop);
        s->unit_s = malloc((size_t)m->Fdf * sizeof *s->unit_s);
        ok = s->ana && s->syn && s->xh && s->hist_e0 && s->hist_c0 && s->hist_p && s->pend && s->unit_s;
        const sgru *q[3] = {&m->enc_gru, &m->dec_gru, &m->df_gru};
        for (int k = 0; k < 3 && ok; k++)
            for (int j = 0; j < q[k]->g.layers && ok; j++)
                ok = (s->h[k][j] = ss_alloc(be, (size_t)q[k]->g.hidden)) != NULL;
    }
    if (!ok) {
        streams_free(m, be);
        ss_status s = ss_backend_status(be, err);
        return s != SS_OK ? s : ss_fail(err, SS_E_NOMEM, "deepfilternet: out of memory for %d streams", n);
    }
    return SS_OK;
}

/* a stream at its start: zero history, libDF's initial norm states */
static void stream_reset(dfn *m, ss_backend *be, stream *s)
{
    size_t ov = (size_t)(m->n_fft - m->hop);
    ss_fill(be, s->ana, 0.0f, ov);
    ss_fill(be, s->syn, 0.0f, ov);
    ss_fill(be, s->xh, 0.0f, (size_t)(hist_rows(m) + m->block) * 2 * m->nb);
    ss_fill(be, s->hist_e0, 0.0f, (size_t)(m->erb_conv[0].kt + 1) * m->E);
    ss_fill(be, s->hist_c0, 0.0f, (size_t)(m->df_conv[0].kt + 1) * 2 * m->Fdf);
    ss_fill(be, s->hist_p, 0.0f, (size_t)(m->df_convp.kt + 1) * m->C * m->Fdf);
    const sgru *q[3] = {&m->enc_gru, &m->dec_gru, &m->df_gru};
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < q[k]->g.layers; j++)
            ss_fill(be, s->h[k][j], 0.0f, (size_t)q[k]->g.hidden);
    for (int e = 0; e < m->E; e++)        /* MEAN_NORM_INIT = [-60, -90] */
        s->erb_s[e] = -60.0f + (float)e * (-90.0f - -60.0f) / (float)(m->E - 1);
    for (int f = 0; f < m->Fdf; f++)      /* UNIT_NORM_INIT = [0.001, 0.0001] */
        s->unit_s[f] = 0.001f + (float)f * (0.0001f - 0.001f) / (float)(m->Fdf - 1);
    s->frames = 0;
    s->n_pend = s->emitted = 0;
    s->drop = m->n_fft - m->hop;
    s->flushed = 0;
}

/* ---- network pieces ----------------------------------------------------------------- */

/* y [G, groups * out/groups] = per group x[:, g] @ w[g] (GroupedLinearEinsum) */
static void glin_run(ss_backend *be, const glin *g, const float *x, float *y, int G)
{
    int ig = g->in / g->groups, og = g->out / g->groups;
    ss_gemm_desc d = {.m = G, .n = og, .k = ig, .alpha = 1.0f, .beta = 0.0f, .lda = g->in, .ldb = og,
                      .ldc = g->out, .batch = g->groups, .stride_a = ig, .stride_b = (int64_t)ig * og,
                      .stride_c = og};
    ss_gemm(be, &d, x, g->w, y);
}

/* One GRU layer (torch.nn.GRU, gates r, z, n) over G steps:
 *   x [G, in] -> y [G, H], h [H] the hidden state carried in and out.
 * Composed from ss_gemm_bias, ss_activate, ss_mul and ss_add. */
static void gru_layer(dfn *m, ss_backend *be, const gru *g, int layer, const float *x, float *y, float *h, int G)
{
    /* x [G, in] -> y [G, H]; h [H] the state carried from the previous block; scratch xi [(G + 1) * 3H] */
    ss_gru_desc d = {.batch = 1, .seq = G, .in = g->in, .hidden = g->hidden};
    ss_gru(be, &d, x, g->w_ih[layer], g->w_hh[layer], g->b_ih[layer], g->b_hh[layer], h, y, m->xi);
}

/* SqueezedGRU_S: relu(lin_in(x)) -> GRU layers -> relu(lin_out(.)) (if any); y [G, out] */
static void sgru_run(dfn *m, ss_backend *be, const sgru *q, float **h, const float *x, float *y, int G)
{
    int H = q->g.hidden;
    glin_run(be, &q->lin_in, x, m->g1, G);
    ss_relu(be, m->g1, m->g1, (size_t)G * H);
    float *a = m->g1, *b = m->g2;
    for (int k = 0; k < q->g.layers; k++) {
        gru_layer(m, be, &q->g, k, a, b, h[k], G);
        float *t = a;
        a = b;
        b = t;
    }
    if (q->lin_out.w) {
        glin_run(be, &q->lin_out, a, y, G);
        ss_relu(be, y, y, (size_t)G * q->lin_out.out);
    } else {
        ss_copy2d(be, y, (size_t)H, a, (size_t)H, (size_t)G, (size_t)H);
    }
}

/* x [cin, kt - 1 + G, F] (the look-back rows first) -> y [cout, G, Fo] */
static void cna_run(dfn *m, ss_backend *be, const cna *c, const float *x, float *y, int G, int F)
{
    int Fo = c->transposed ? (F - 1) * c->fstride + c->kf - c->kf / 2 : (F + 2 * (c->kf / 2) - c->kf) / c->fstride + 1;
    size_t n = (size_t)c->cout * G * Fo;
    if (c->diag) {
        ss_channel_affine(be, y, x, 1, c->cout, (int64_t)G * F, c->scale, c->shift);
    } else {
        int ig = c->cin / c->groups, og = c->cout / c->groups;
        float *dst = c->pw ? m->big : y;
        for (int g = 0; g < c->groups; g++) {
            if (!c->transposed) {
                ss_conv2d_desc d = {.batch = 1, .cin = ig, .h = G + c->kt - 1, .w = F, .cout = og, .kh = c->kt,
                                    .kw = c->kf, .sh = 1, .sw = c->fstride, .ph = 0, .pw = c->kf / 2, .dh = 1,
                                    .dw = 1};
                ss_conv2d(be, &d, x + (size_t)g * ig * (G + c->kt - 1) * F,
                          c->w + (size_t)g * og * ig * c->kt * c->kf, NULL, dst + (size_t)g * og * G * Fo);
            } else {
                /* PyTorch's padding kf/2 and output_padding kf/2: a window of the full output */
                ss_convt2d_desc d = {.batch = 1, .cin = ig, .h = G, .w = F, .cout = og, .kh = 1, .kw = c->kf,
                                     .sh = 1, .sw = c->fstride};
                ss_convt_crop cr = {.h0 = 0, .w0 = c->kf / 2, .oh = G, .ow = Fo, .gelu = 0};
                ss_conv_transpose2d_crop(be, &d, &cr, x + (size_t)g * ig * G * F,
                                         c->w + (size_t)g * ig * og * c->kf, NULL, m->t3,
                                         dst + (size_t)g * og * G * Fo);
            }
        }
        if (c->pw) {
            ss_conv2d_desc d = {.batch = 1, .cin = c->cout, .h = 1, .w = G * Fo, .cout = c->cout, .kh = 1, .kw = 1,
                                .sh = 1, .sw = 1, .dh = 1, .dw = 1};
            ss_conv2d(be, &d, m->big, c->pw, NULL, y);
        }
        ss_channel_affine(be, y, y, 1, c->cout, (int64_t)G * Fo, c->scale, c->shift);
    }
    ss_activate(be, y, y, n, c->act, 0.0f);
}

/* pad [cin, kt - 1 + G, F] = the look-back hist [cin, kt - 1, F] then x [cin, G, F];
 * hist <- the last kt - 1 rows */
static void with_lookback(ss_backend *be, float *pad, float *hist, const float *x, int cin, int kt, int G, int F)
{
    int R = kt - 1;
    int64_t sh[4] = {1, cin, G, F}, dst[4] = {0, (int64_t)(R + G) * F, F, 1}, src[4] = {0, (int64_t)G * F, F, 1};
    ss_copy4d(be, pad + (size_t)R * F, dst, x, src, sh);
    if (R == 0)
        return;
    int64_t hs[4] = {1, cin, R, F}, hd[4] = {0, (int64_t)R * F, F, 1};
    ss_copy4d(be, pad, dst, hist, hd, hs);
    /* the new look-back: the last R rows of pad */
    ss_copy4d(be, hist, hd, pad + (size_t)G * F, dst, hs);
}

/* [C, G, F] <-> [G, F, C] */
static void to_tfc(ss_backend *be, float *y, const float *x, int C, int G, int F)
{
    int64_t sh[4] = {1, G, F, C}, s[4] = {0, F, 1, (int64_t)G * F}, d[4] = {0, (int64_t)F * C, C, 1};
    ss_copy4d(be, y, d, x, s, sh);
}
static void from_tfc(ss_backend *be, float *y, const float *x, int C, int G, int F)
{
    int64_t sh[4] = {1, G, F, C}, s[4] = {0, (int64_t)F * C, C, 1}, d[4] = {0, F, 1, (int64_t)G * F};
    ss_copy4d(be, y, d, x, s, sh);
}

/* The network on G steps of one stream: fe [G, E], fs [2, G, Fdf], the spectrum
 * rows xh [H + G, 2 nb] (row k + O - 1 - dla is the step's own frame) ->
 * spec_e [G, 2 nb], lsnr [G]. */
static void network(dfn *m, ss_backend *be, stream *s, int G)
{
    int C = m->C, E = m->E, F = m->Fdf, E2 = E / 2, E4 = E / 4, D = C * E4, nb = m->nb, O = m->O;
    /* encoder */
    const cna *ec = m->erb_conv;
    with_lookback(be, m->pad, s->hist_e0, m->fe, 1, ec[0].kt, G, E);
    cna_run(m, be, &ec[0], m->pad, m->e[0], G, E);
    cna_run(m, be, &ec[1], m->e[0], m->e[1], G, E);
    cna_run(m, be, &ec[2], m->e[1], m->e[2], G, E2);
    cna_run(m, be, &ec[3], m->e[2], m->e[3], G, E4);
    with_lookback(be, m->pad, s->hist_c0, m->fs, 2, m->df_conv[0].kt, G, F);
    cna_run(m, be, &m->df_conv[0], m->pad, m->c[0], G, F);
    cna_run(m, be, &m->df_conv[1], m->c[0], m->c[1], G, F);
    to_tfc(be, m->t1, m->c[1], C, G, F / 2);                       /* cemb [G, Fdf/2 C] */
    glin_run(be, &m->df_fc_emb, m->t1, m->cemb, G);
    ss_relu(be, m->cemb, m->cemb, (size_t)G * D);
    to_tfc(be, m->t1, m->e[3], C, G, E4);                          /* [G, E/4 C] */
    ss_add(be, m->t1, m->t1, m->cemb, (size_t)G * D);
    sgru_run(m, be, &m->enc_gru, s->h[0], m->t1, m->emb, G);       /* emb [G, D] */
    ss_gemm_desc dl = {.trans_b = 1, .m = G, .n = 1, .k = D, .alpha = 1.0f, .lda = D, .ldb = D, .ldc = 1,
                       .batch = 1};
    ss_gemm_bias(be, &dl, m->emb, m->lsnr_w, m->lsnr_b, m->ones, m->lsnr);
    ss_sigmoid(be, m->lsnr, m->lsnr, (size_t)G);
    ss_scale(be, m->lsnr, m->lsnr, m->lsnr_max - m->lsnr_min, (size_t)G);   /* + lsnr_min where reported */
    /* ERB decoder */
    sgru_run(m, be, &m->dec_gru, s->h[1], m->emb, m->t1, G);
    from_tfc(be, m->d3, m->t1, C, G, E4);                           /* [C, G, E/4] */
    cna_run(m, be, &m->conv_p[3], m->e[3], m->t2, G, E4);
    ss_add(be, m->t2, m->t2, m->d3, (size_t)C * G * E4);
    cna_run(m, be, &m->convt[2], m->t2, m->d3, G, E4);             /* e3' */
    cna_run(m, be, &m->conv_p[2], m->e[2], m->t2, G, E4);
    ss_add(be, m->t2, m->t2, m->d3, (size_t)C * G * E4);
    cna_run(m, be, &m->convt[1], m->t2, m->d3, G, E4);             /* e2' [C, G, E/2] */
    cna_run(m, be, &m->conv_p[1], m->e[1], m->t2, G, E2);
    ss_add(be, m->t2, m->t2, m->d3, (size_t)C * G * E2);
    cna_run(m, be, &m->convt[0], m->t2, m->d3, G, E2);             /* e1' [C, G, E] */
    cna_run(m, be, &m->conv_p[0], m->e[0], m->t2, G, E);
    ss_add(be, m->t2, m->t2, m->d3, (size_t)C * G * E);
    cna_run(m, be, &m->conv0_out, m->t2, m->mask, G, E);           /* mask [G, E] */
    /* DF decoder */
    sgru_run(m, be, &m->df_gru, s->h[2], m->emb, m->dfc, G);       /* [G, Hdf] */
    int Hdf = m->df_gru.g.hidden;
    if (m->df_skip.w) {
        glin_run(be, &m->df_skip, m->emb, m->t1, G);
        ss_add(be, m->dfc, m->dfc, m->t1, (size_t)G * Hdf);
    }
    with_lookback(be, m->pad, s->hist_p, m->c[0], C, m->df_convp.kt, G, F);
    cna_run(m, be, &m->df_convp, m->pad, m->pp, G, F);              /* [2 O, G, Fdf] */
    glin_run(be, &m->df_out, m->dfc, m->coef, G);                  /* [G, Fdf, 2 O] */
    ss_tanh(be, m->coef, m->coef, (size_t)G * F * 2 * O);
    to_tfc(be, m->t1, m->pp, 2 * O, G, F);
    ss_add(be, m->coef, m->coef, m->t1, (size_t)G * F * 2 * O);    /* coef [G, Fdf, O, 2] */
    /* the ERB mask on every bin of the step's own frame */
    ss_gemm_desc dm = {.m = G, .n = nb, .k = E, .alpha = 1.0f, .lda = E, .ldb = nb, .ldc = nb, .batch = 1};
    ss_gemm(be, &dm, m->mask, m->inv_fb, m->t1);                   /* [G, nb] */
    const float *own = s->xh + (size_t)(O - 1 - m->dla) * 2 * nb;
    int64_t sh2[4] = {1, G, nb, 2}, sm[4] = {0, nb, 1, 0}, sc[4] = {0, 2 * nb, 2, 1};
    ss_copy4d(be, m->spec_e, sc, m->t1, sm, sh2);                  /* mask per (bin, re/im) */
    ss_mul(be, m->spec_e, m->spec_e, own, (size_t)G * 2 * nb);
    /* the deep filter on bins < Fdf: sum_n coef_n X(row k + n) */
    int64_t shp[4] = {1, 1, G, F}, sp[4] = {0, 0, F, 1}, sxr[4] = {0, 0, 2 * nb, 2}, scr[4] = {0, 0, (int64_t)F * 2 * O,
                                                                                                2 * O};
    ss_fill(be, m->re, 0.0f, (size_t)G * F);
    ss_fill(be, m->im, 0.0f, (size_t)G * F);
    for (int n = 0; n < O; n++) {
        const float *xr = s->xh + (size_t)n * 2 * nb;
        ss_copy4d(be, m->ar, sp, xr, sxr, shp);
        ss_copy4d(be, m->ai, sp, xr + 1, sxr, shp);
        ss_copy4d(be, m->cr, sp, m->coef + 2 * n, scr, shp);
        ss_copy4d(be, m->ci, sp, m->coef + 2 * n + 1, scr, shp);
        size_t q = (size_t)G * F;
        ss_mul(be, m->t2, m->ar, m->cr, q);
        ss_add(be, m->re, m->re, m->t2, q);
        ss_mul(be, m->t2, m->ai, m->ci, q);
        ss_scale(be, m->t2, m->t2, -1.0f, q);
        ss_add(be, m->re, m->re, m->t2, q);
        ss_mul(be, m->t2, m->ar, m->ci, q);
        ss_add(be, m->im, m->im, m->t2, q);
        ss_mul(be, m->t2, m->ai, m->cr, q);
        ss_add(be, m->im, m->im, m->t2, q);
    }
    ss_copy4d(be, m->spec_e, sxr, m->re, sp, shp);
    ss_copy4d(be, m->spec_e + 1, sxr, m->im, sp, shp);
}

/* ---- the local SNR summary ------------------------------------------------------------- */

static void lsnr_reset(dfn *m)
{
    if (m->lsnr_hist)
        memset(m->lsnr_hist, 0, DF_LSNR_BINS * sizeof *m->lsnr_hist);
    m->lsnr_n = m->lsnr_noise = m->lsnr_clean = 0;
    m->lsnr_lo = INFINITY;
    m->lsnr_hi = -INFINITY;
}

/* G network steps' lsnr (host, without lsnr_min: the network's sigmoid
 * scaled by lsnr_max - lsnr_min) into the track's summary */
static void lsnr_add(dfn *m, const float *l, int G)
{
    double w = ((double)m->lsnr_max - m->lsnr_min) / DF_LSNR_BINS;
    for (int t = 0; t < G; t++) {
        float v = l[t] + m->lsnr_min;           /* as the reference: lsnr_fc * scale + offset */
        m->lsnr_lo = v < m->lsnr_lo ? v : m->lsnr_lo;
        m->lsnr_hi = v > m->lsnr_hi ? v : m->lsnr_hi;
        m->lsnr_noise += v < DF_LSNR_NOISE_DB;
        m->lsnr_clean += v > DF_LSNR_CLEAN_DB;
        double b = w > 0 ? ((double)v - m->lsnr_min) / w : 0;
        int64_t k = b < 0 || b != b ? 0 : b >= DF_LSNR_BINS ? DF_LSNR_BINS - 1 : (int64_t)b;
        m->lsnr_hist[k]++;
        m->lsnr_n++;
    }
}

/* the value of the frame of rank r (0-based) in sorted order: its bin's centre,
 * within the smallest and largest seen */
static double lsnr_rank(const dfn *m, int64_t r)
{
    double w = ((double)m->lsnr_max - m->lsnr_min) / DF_LSNR_BINS, v = m->lsnr_hi;
    int64_t c = 0;
    for (int k = 0; k < DF_LSNR_BINS; k++) {
        c += m->lsnr_hist[k];
        if (c > r) {
            v = m->lsnr_min + (k + 0.5) * w;
            break;
        }
    }
    return v < m->lsnr_lo ? m->lsnr_lo : v > m->lsnr_hi ? m->lsnr_hi : v;
}

/* the track's local SNR (every channel's frames): min, median (numpy's: the
 * mean of the two middle frames for an even count), max in dB, and the share
 * of frames below DF_LSNR_NOISE_DB and above DF_LSNR_CLEAN_DB */
static int dfn_track_stats(const void *state, ss_track_stat *out, int cap)
{
    const dfn *m = state;
    if (!m->lsnr_hist || m->lsnr_n == 0 || cap < 5)
        return 0;
    int64_t n = m->lsnr_n;
    double med = n % 2 ? lsnr_rank(m, n / 2) : 0.5 * (lsnr_rank(m, n / 2 - 1) + lsnr_rank(m, n / 2));
    out[0] = (ss_track_stat){"lsnr_min_db", "local SNR min", "dB", m->lsnr_lo};
    out[1] = (ss_track_stat){"lsnr_median_db", "median", "dB", med};
    out[2] = (ss_track_stat){"lsnr_max_db", "max", "dB", m->lsnr_hi};
    out[3] = (ss_track_stat){"noise_only_percent", "frames below -10 dB (noise only)", "%",
                             100.0 * (double)m->lsnr_noise / (double)n};
    out[4] = (ss_track_stat){"clean_speech_percent", "above 30 dB (clean speech)", "%",
                             100.0 * (double)m->lsnr_clean / (double)n};
    return 5;
}

/* ---- one block of one stream ---------------------------------------------------------- */

/* libDF's features of G spectrum rows X [G, 2 nb] (host) -> fe [G, E], fs [2, G, Fdf] (host) */
static void features(dfn *m, stream *s, const float *X, float *fe, float *fs, int G)
{
    int nb = m->nb, F = m->Fdf;
    float a = m->alpha;
    for (int t = 0; t < G; t++) {
        const float *x = X + (size_t)t * 2 * nb;
        int b0 = 0;
        for (int e = 0; e < m->E; e++) {
            float k = 1.0f / (float)m->widths[e], acc = 0.0f;
            for (int j = 0; j < m->widths[e]; j++) {
                float re = x[2 * (b0 + j)], im = x[2 * (b0 + j) + 1];
                acc += (re * re + im * im) * k;
            }
            b0 += m->widths[e];
            float v = log10f(acc + 1e-10f) * 10.0f;
            s->erb_s[e] = v * (1.0f - a) + s->erb_s[e] * a;
            fe[(size_t)t * m->E + e] = (v - s->erb_s[e]) / 40.0f;
        }
        for (int f = 0; f < F; f++) {
            float re = x[2 * f], im = x[2 * f + 1];
            s->unit_s[f] = hypotf(re, im) * (1.0f - a) + s->unit_s[f] * a;
            float r = sqrtf(s->unit_s[f]);
            fs[(size_t)t * F + f] = re / r;
            fs[(size_t)G * F + (size_t)t * F + f] = im / r;
        }
    }
}

/* Feed G hops of samples x [G hop] (NULL: la steps of the flush, with zero
 * spectrum frames and zero features) to stream s; write the output samples of
 * every network step to out (advancing *n_out). */
static ss_status block(dfn *m, ss_backend *be, stream *s, const float *x, int G, float *out, int64_t *n_out,
                       ss_error *err)
{
    int N = m->n_fft, hop = m->hop, nb = m->nb, E = m->E, F = m->Fdf, Hr = hist_rows(m);
    size_t row = (size_t)2 * nb;
    float *xnew = s->xh + (size_t)Hr * row;          /* the block's spectrum rows */
    int skip = 0;                                    /* feature frames the network never sees */
    if (x) {
        /* frames [G, N] of [ana | x] */
        int ov = N - hop;
        ss_copy2d(be, m->ola, (size_t)ov, s->ana, (size_t)ov, 1, (size_t)ov);
        ss_copy2d(be, m->ola + ov, (size_t)G * hop, x, (size_t)G * hop, 1, (size_t)G * hop);
        int64_t sh[4] = {1, 1, G, N}, fs[4] = {0, 0, hop, 1}, fd[4] = {0, 0, N, 1};
        ss_copy4d(be, m->frames, fd, m->ola, fs, sh);
        ss_copy2d(be, s->ana, (size_t)ov, m->ola + (size_t)G * hop, (size_t)ov, 1, (size_t)ov);
        ss_gemm_desc d = {.m = G, .n = 2 * nb, .k = N, .alpha = 1.0f, .lda = N, .ldb = 2 * nb, .ldc = 2 * nb,
                          .batch = 1};
        ss_gemm(be, &d, m->frames, m->dfwd, xnew);
        ss_status st;
        if ((st = ss_download(be, m->host, xnew, (size_t)G * row)) != SS_OK)
            return ss_backend_status(be, err) != SS_OK ? ss_backend_status(be, err) : st;
        if (s->frames < m->la)
            skip = (int)(m->la - s->frames < G ? m->la - s->frames : G);
        s->frames += G;
        /* every frame updates the running norms; the first la are then dropped */
        float *hf = m->host_f, *hs = m->host_f + (size_t)G * E;
        features(m, s, m->host, hf, hs, G);
        int k = G - skip;
        ss_upload(be, m->fe, hf + (size_t)skip * E, (size_t)k * E);
        ss_upload(be, m->fs, hs + (size_t)skip * F, (size_t)k * F);
        ss_upload(be, m->fs + (size_t)k * F, hs + (size_t)G * F + (size_t)skip * F, (size_t)k * F);
    } else {
        ss_fill(be, xnew, 0.0f, (size_t)G * row);
        ss_fill(be, m->fe, 0.0f, (size_t)G * E);
        ss_fill(be, m->fs, 0.0f, (size_t)2 * G * F);
    }
    int steps = G - skip;
    if (steps > 0) {
        /* the step's spectrum window starts `skip` rows in */
        float *xh0 = s->xh;
        /* step k is spectrum frame n0 + skip + k - la, at row Hr + skip + k - la =
         * skip + k + O - 1 - dla: its window X(tau - (O - 1 - dla) + n) is row skip + k + n */
        s->xh = xh0 + (size_t)skip * row;
        network(m, be, s, steps);
        s->xh = xh0;
        ss_status st;
        if ((st = ss_download(be, m->host_l, m->lsnr, (size_t)steps)) != SS_OK)
            return ss_backend_status(be, err) != SS_OK ? ss_backend_status(be, err) : st;
        lsnr_add(m, m->host_l, steps);
        /* synthesis: frames [steps, N] = spec_e x Dinv, overlap-added after syn */
        ss_gemm_desc d = {.m = steps, .n = N, .k = 2 * nb, .alpha = 1.0f, .lda = 2 * nb, .ldb = N, .ldc = N,
                          .batch = 1};
        ss_gemm(be, &d, m->spec_e, m->dinv, m->big);
        int ov = N - hop, r = N / hop;
        size_t tot = (size_t)steps * hop + ov;
        ss_fill(be, m->ola, 0.0f, tot);
        ss_copy2d(be, m->ola, (size_t)ov, s->syn, (size_t)ov, 1, (size_t)ov);
        for (int j = 0; j < r; j++) {
            ss_copy2d(be, m->t2, (size_t)hop, m->big + (size_t)j * hop, (size_t)N, (size_t)steps, (size_t)hop);
            ss_add(be, m->ola + (size_t)j * hop, m->ola + (size_t)j * hop, m->t2, (size_t)steps * hop);
        }
        ss_copy2d(be, out + *n_out, (size_t)steps * hop, m->ola, (size_t)steps * hop, 1, (size_t)steps * hop);
        ss_copy2d(be, s->syn, (size_t)ov, m->ola + (size_t)steps * hop, (size_t)ov, 1, (size_t)ov);
        *n_out += (int64_t)steps * hop;
    }
    /* keep the last Hr spectrum rows as the next block's history */
    int64_t sh[4] = {1, 1, Hr, (int64_t)row}, st4[4] = {0, 0, (int64_t)row, 1};
    ss_copy2d(be, m->t3, row, s->xh + (size_t)G * row, row, (size_t)Hr, row);
    ss_copy4d(be, s->xh, st4, m->t3, st4, sh);
    return ss_backend_status(be, err);
}

/* x [batch, 1, length] -> y [batch, 1, 1, length]: enhance() per item */
static ss_status dfn_forward(void *state, ss_backend *be, const float *x, float *y, int batch, int64_t length,
                             ss_error *err)
{
    dfn *m = state;
    ss_status s;
    if ((s = ws_ensure(m, be, err)) != SS_OK || (s = streams_ensure(m, be, 1, err)) != SS_OK)
        return s;
    int N = m->n_fft, hop = m->hop;
    int64_t T = (length + N) / hop;                  /* frames of the padded track */
    int64_t total = (T + m->la) * hop;               /* output samples of every step */
    float *in = ss_alloc(be, (size_t)T * hop), *out = ss_alloc(be, (size_t)total);
    if (!in || !out) {
        if (in)
            ss_free(be, in);
        if (out)
            ss_free(be, out);
        s = ss_backend_status(be, err);
        return s != SS_OK ? s : ss_fail(err, SS_E_NOMEM, "deepfilternet: out of memory for %lld samples",
                                        (long long)length);
    }
    lsnr_reset(m);
    for (int b = 0; b < batch && s == SS_OK; b++) {
        stream *st = &m->st[0];
        stream_reset(m, be, st);
        ss_fill(be, in, 0.0f, (size_t)T * hop);
        ss_copy2d(be, in, (size_t)length, x + (size_t)b * length, (size_t)length, 1, (size_t)length);
        int64_t n_out = 0;
        for (int64_t t = 0; t < T && s == SS_OK; t += m->block) {
            int G = (int)(T - t < m->block ? T - t : m->block);
            s = block(m, be, st, in + t * hop, G, out, &n_out, err);
        }
        if (s == SS_OK && m->la > 0)
            s = block(m, be, st, NULL, m->la, out, &n_out, err);
        /* enhance(): the delay n_fft - hop compensated */
        if (s == SS_OK)
            ss_copy2d(be, y + (size_t)b * length, (size_t)length, out + (N - hop), (size_t)length, 1,
                      (size_t)length);
    }
    ss_free(be, in);
    ss_free(be, out);
    if (s != SS_OK)
        return s;
    return ss_backend_status(be, err);
}

/* ---- SS_CHUNK_STREAM ----------------------------------------------------------------- */

static void dfn_stream_geom(const void *state, ss_stream_geom *out)
{
    const dfn *m = state;
    out->block = (int64_t)m->block * m->hop;
    out->extra = (int64_t)(m->la + 1) * m->hop + m->n_fft;
    /* a sample's output is final once the frame la hops after the one that
     * ends with its hop is in: the window and the look-ahead, less one */
    out->latency = (int64_t)m->n_fft + (int64_t)m->la * m->hop - 1;
}

static ss_status dfn_stream_begin(void *state, ss_backend *be, int64_t length, int channels, ss_error *err)
{
    dfn *m = state;
    ss_status s;
    if ((s = ws_ensure(m, be, err)) != SS_OK || (s = streams_ensure(m, be, channels, err)) != SS_OK)
        return s;
    if (m->s_cap < m->block) {
        free_ptrs(be, &m->s_in, 1);
        free_ptrs(be, &m->s_out, 1);
        m->s_in = ss_alloc(be, (size_t)(m->block + 1) * m->hop + (size_t)m->n_fft);
        m->s_out = ss_alloc(be, (size_t)(m->block + m->la) * m->hop);
        if (!m->s_in || !m->s_out) {
            m->s_cap = 0;
            s = ss_backend_status(be, err);
            return s != SS_OK ? s : ss_fail(err, SS_E_NOMEM, "deepfilternet: out of memory");
        }
        m->s_cap = m->block;
    }
    for (int c = 0; c < channels; c++)
        stream_reset(m, be, &m->st[c]);
    lsnr_reset(m);
    m->s_chans = channels;
    m->s_len = length < 0 ? -1 : length;
    m->s_live = length < 0;
    m->s_T = length < 0 ? INT64_MAX : (length + m->n_fft) / m->hop;
    m->s_audio = 0;
    return ss_backend_status(be, err);
}

/* k output samples of buf: the first st->drop dropped (enhance()'s delay),
 * at most s_len in all (a live stream: no more than went in, by causality),
 * appended to y at *n_out */
static void stream_emit(dfn *m, ss_backend *be, stream *st, const float *buf, int64_t k, float *y, int64_t *n_out)
{
    int64_t drop = st->drop < k ? st->drop : k;
    st->drop -= drop;
    int64_t n = k - drop;
    if (m->s_len >= 0 && n > m->s_len - st->emitted)
        n = m->s_len - st->emitted;
    if (n > 0)
        ss_copy2d(be, y + *n_out, (size_t)n, buf + drop, (size_t)n, 1, (size_t)n);
    *n_out += n;
    st->emitted += n;
}

/* one channel's piece x [n] through stream st -> y [*n_out] */
static ss_status stream_piece(dfn *m, ss_backend *be, stream *st, const float *x, float *y, int64_t n, int last,
                              int64_t *n_out, ss_error *err)
{
    int hop = m->hop;
    ss_status s = SS_OK;
    *n_out = 0;
    if (st->n_pend > 0)
        ss_copy2d(be, m->s_in, (size_t)st->n_pend, st->pend, (size_t)st->n_pend, 1, (size_t)st->n_pend);
    if (n > 0)
        ss_copy2d(be, m->s_in + st->n_pend, (size_t)n, x, (size_t)n, 1, (size_t)n);
    int64_t avail = st->n_pend + n;
    if (last) {                                      /* enhance(): n_fft zeros, whole frames */
        int64_t z = m->s_T * hop - (st->frames * hop + avail);
        if (z > 0)
            ss_fill(be, m->s_in + avail, 0.0f, (size_t)z);
        avail += z > 0 ? z : 0;
    }
    int64_t off = 0;
    while (s == SS_OK && avail - off >= hop && st->frames < m->s_T) {
        int64_t g = (avail - off) / hop, left = m->s_T - st->frames;
        g = g < m->block ? g : m->block;
        g = g < left ? g : left;
        if (m->s_live)
            g = 1;
        int64_t k = 0;
        s = block(m, be, st, m->s_in + off, (int)g, m->s_out, &k, err);
        if (s == SS_OK)
            stream_emit(m, be, st, m->s_out, k, y, n_out);
        off += g * hop;
    }
    if (s == SS_OK && last && st->frames == m->s_T && !st->flushed) {
        int64_t k = 0;
        if (m->la > 0)
            s = block(m, be, st, NULL, m->la, m->s_out, &k, err);
        if (s == SS_OK)
            stream_emit(m, be, st, m->s_out, k, y, n_out);
        st->flushed = 1;
    }
    if (s != SS_OK)
        return s;
    st->n_pend = avail - off;                        /* < hop */
    if (st->n_pend > 0)
        ss_copy2d(be, st->pend, (size_t)st->n_pend, m->s_in + off, (size_t)st->n_pend, 1, (size_t)st->n_pend);
    return SS_OK;
}

/* x [C, n] -> y [1, C, block + extra]: every channel its own stream */
static ss_status dfn_stream_run(void *state, ss_backend *be, const float *x, float *y, int64_t n, int64_t *n_out,
                                ss_error *err)
{
    dfn *m = state;
    ss_stream_geom g;
    dfn_stream_geom(m, &g);
    *n_out = 0;
    if (!m->s_in || n < 0 || n > g.block || (m->s_len >= 0 && m->s_audio + n > m->s_len))
        return ss_fail(err, SS_E_INTERNAL, "deepfilternet: stream piece of %lld samples after %lld of %lld",
                       (long long)n, (long long)m->s_audio, (long long)m->s_len);
    int last = m->s_len >= 0 && m->s_audio + n == m->s_len;
    for (int c = 0; c < m->s_chans; c++) {
        int64_t k = 0;
        ss_status s = stream_piece(m, be, &m->st[c], x + (size_t)c * n, y + (size_t)c * (g.block + g.extra), n,
                                   last, &k, err);
        if (s != SS_OK)
            return s;
        if (c > 0 && k != *n_out)
            return ss_fail(err, SS_E_INTERNAL, "deepfilternet: channel %d gave %lld samples, channel 0 %lld", c,
                           (long long)k, (long long)*n_out);
        *n_out = k;
    }
    m->s_audio += n;
    return ss_backend_status(be, err);
}

/* The end of a live stream: its length is what went in; the pieces of every
 * channel are padded and flushed as the last stream_run of a track of that
 * length would have (the frames run so far are the same either way: only
 * whole hops of real samples) -> y [1, C, block + extra] */
static ss_status dfn_stream_end(void *state, ss_backend *be, float *y, int64_t *n_out, ss_error *err)
{
    dfn *m = state;
    ss_stream_geom g;
    dfn_stream_geom(m, &g);
    *n_out = 0;
    if (!m->s_in || m->s_len >= 0)
        return ss_fail(err, SS_E_INTERNAL, "deepfilternet: stream_end without a live stream (length %lld)",
                       (long long)m->s_len);
    m->s_len = m->s_audio;
    m->s_T = (m->s_len + m->n_fft) / m->hop;
    for (int c = 0; c < m->s_chans; c++) {
        int64_t k = 0;
        ss_status s = stream_piece(m, be, &m->st[c], NULL, y + (size_t)c * (g.block + g.extra), 0, 1, &k, err);
        if (s != SS_OK)
            return s;
        if (c > 0 && k != *n_out)
            return ss_fail(err, SS_E_INTERNAL, "deepfilternet: channel %d gave %lld samples, channel 0 %lld", c,
                           (long long)k, (long long)*n_out);
        *n_out = k;
    }
    return ss_backend_status(be, err);
}

static ss_status dfn_option(void *state, const char *key, double value, ss_error *err)
{
    dfn *m = state;
    if (strcmp(key, "block") == 0) {
        if (!(value >= 1 && value <= 65536) || value != (int)value)
            return ss_fail(err, SS_E_USAGE, "deepfilternet: block %g: frames per block must be 1 .. 65536", value);
        if ((int)value <= m->la)
            return ss_fail(err, SS_E_USAGE, "deepfilternet: block %g: must exceed conv_lookahead %d", value, m->la);
        m->block = (int)value;
        return SS_OK;
    }
    return ss_fail(err, SS_E_USAGE, "deepfilternet has no option '%s'", key);
}

const ss_arch ss_arch_deepfilternet3 = {
    .name = "deepfilternet3",
    .load = dfn_load,
    .forward = dfn_forward,
    .free = dfn_free,
    .option = dfn_option,
    .chunking = SS_CHUNK_STREAM,
    .stream_geom = dfn_stream_geom,
    .stream_begin = dfn_stream_begin,
    .stream_run = dfn_stream_run,
    .stream_end = dfn_stream_end,
    .channels_independent = 1,
    .track_stats = dfn_track_stats,
};

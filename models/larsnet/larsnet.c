/* larsnet.c - LarsNet (polimi-ispl/larsnet: unet.py, larsnet.py): five
 * independent U-Nets (kick, snare, toms, hihat, cymbals) on the magnitude STFT,
 * each giving a sigmoid mask that multiplies the mixture's complex spectrum.
 * README.md beside this file: the reference and the files it accepts.
 *
 * Hyperparameters (metadata): larsnet.n_fft, larsnet.hop (4096, 1024 as
 * released), larsnet.F (bins the U-Net sees, 2048 of 2049), larsnet.T (frames
 * per block, 512); the channel widths w1..w6 (16 .. 512) from the tensors.
 *
 * The pipeline runs it with SS_CHUNK_STFT_BLOCKS (src/engine.c): forward()
 * gets one block of G <= T frames per batch item, as the samples those frames
 * cover ([B, C, (G-1) hop + n_fft], the track's reflect padding already
 * applied by the engine at its ends), and returns their windowed overlap-add
 * (not divided by the window envelope; the engine sums neighbours and divides).
 * Per item and stem, as UNetWaveform.forward on that block:
 *
 *   x [C, span] --stft--> X [C, 2, nb, G + 2e]   nb = n_fft/2 + 1, e = n_fft/(2 hop):
 *                                                 frames e .. e+G-1 are the block's
 *   |X| sqrt(n_fft) (torch.stft is not normalised) [C, nb, .] -> bins < F, the block's
 *       frames, zero-padded to T (fold_unet_inputs)      -> in [C, F, T]
 *   input_norm (BatchNorm over F)       in [C, F, T]
 *   enc k = 1..6: c_k = conv5x5 s2 p2 (d_{k-1})         [w_k, F/2^k, T/2^k]
 *                 d_k = leaky_relu_0.2(bn(c_k))         (d_6 unused)
 *   dec 1: u_1 = bn(relu(convT5x5 s2 p2 op1 (c_6)))     [w_5, F/32, T/32]
 *   dec k: u_k = bn(relu(convT(cat[c_{7-k}, u_{k-1}])))  [w_{6-k}, ...], w_0 = C
 *   mask = sigmoid(conv4x4 dil2 p3 (u_6))               [C, F, T]
 *   M [C, nb, G + 2e]: mask on bins < F of the block's frames, 0 elsewhere
 *   y_s = overlap-add(istft(X * M))                     [C, span]
 * With the Wiener option (larsnet.py's separate_wiener, alpha):
 *   P_s = (M_s |X|)^alpha,  M_s <- P_s / (sum_s P_s + 1e-7), then y_s as above.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model.h"
#include "../../src/weights.h"

#define LN_DEPTH 6
#define LN_STEMS 5
#define LN_BN_EPS 1e-5f

static const char *const stem_names[LN_STEMS] = {"kick", "snare", "toms", "hihat", "cymbals"};

/* One U-Net's weights on the device (BatchNorms folded into scale/shift). */
typedef struct unet {
    float *in_scale, *in_shift;                  /* [F] input_norm                        */
    float *enc_w[LN_DEPTH], *enc_b[LN_DEPTH];    /* [w_k, w_{k-1}, 5, 5], [w_k]           */
    float *enc_s[LN_DEPTH], *enc_t[LN_DEPTH];    /* [w_k] bn scale, shift                 */
    float *dec_w[LN_DEPTH], *dec_b[LN_DEPTH];    /* [cin_k, w_{6-k}, 5, 5], [w_{6-k}]     */
    float *dec_s[LN_DEPTH], *dec_t[LN_DEPTH];    /* [w_{6-k}] bn scale, shift             */
    float *mask_w, *mask_b;                      /* [C, C, 4, 4], [C]                     */
} unet;

typedef struct larsnet {
    int C;                       /* audio channels (2)                                   */
    int n_fft, hop, F, T;        /* STFT, bins and frames the U-Net sees                  */
    int nb, e;                   /* n_fft/2 + 1 bins; n_fft/2 / hop frames of padding     */
    int w[LN_DEPTH + 1];         /* channel widths, w[0] = C                              */
    unet net[LN_STEMS];
    float wiener;                /* alpha of the Wiener option; 0 = off (UNetWaveform)    */
    float *window_sq;            /* host [n_fft]: hann^2, the overlap-add envelope's term */
    /* workspace for `cap` items (grown by forward) */
    int cap, cap_masks;          /* items; masks M (1, or 5 with the Wiener option)       */
    float *spec;                 /* [B*C, 2, nb, Fmax] X (normalised STFT)                 */
    float *mag;                  /* [B*C, nb, Fmax] |X| sqrt(n_fft)                        */
    float *in;                   /* [B, C, F, T]                                          */
    float *c[LN_DEPTH + 1];      /* [B, w_k, F/2^k, T/2^k] encoder conv outputs (skips)   */
    float *d;                    /* [B, w_1, F/2, T/2] activations (largest level)        */
    float *d2;                   /* the other one                                         */
    float *cat;                  /* [B, 2 w_1, F/2, T/2] skip concatenation (largest)     */
    float *u;                    /* [B, C, F, T] decoder output (largest: w_{6-k} F T / 4^{6-k}) */
    float *tmp;                  /* transposed convolution scratch, uncropped              */
    float *mask;                 /* [B, C, F, T]                                          */
    float *M[LN_STEMS];          /* [B*C, nb, Fmax] full masks (all five: Wiener only)     */
    float *sum;                  /* [B*C, nb, Fmax] Wiener denominator                    */
    float *ms;                   /* [B*C, 2, nb, Fmax] X * M                               */
    float *wave;                 /* [B*C, span_max]                                        */
    float *env;                  /* [span_max] istft's envelope over all frames (device)   */
    float *eps;                  /* [1] 1e-7                                              */
    int64_t env_span;            /* span env was made for                                 */
    size_t u_n, tmp_n, d_n, cat_n;
} larsnet;

/* ---- loading ------------------------------------------------------------------- */

/* BatchNorm `prefix`.{weight,bias,running_mean,running_var} [n] folded into
 * y = x * scale + shift on the device */
static void load_bn(ss_wload *l, const char *prefix, int n, float **scale, float **shift)
{
    char name[256];
    int64_t shape[1] = {n};
    float *h[4] = {0};
    static const char *const part[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", prefix, part[i]);
        h[i] = ss_wload_host(l, name, 1, shape);
    }
    if (l->s == SS_OK) {
        for (int i = 0; i < n; i++) {
            float s = h[0][i] / sqrtf(h[3][i] + LN_BN_EPS);
            h[1][i] = h[1][i] - h[2][i] * s;
            h[0][i] = s;
        }
        *scale = ss_wload_upload(l, h[0], (size_t)n);
        *shift = ss_wload_upload(l, h[1], (size_t)n);
    }
    for (int i = 0; i < 4; i++)
        free(h[i]);
}

static void load_unet(ss_wload *l, const larsnet *m, const char *stem, unet *u)
{
    char name[256], pre[200];
    int64_t shape[4];
    snprintf(pre, sizeof pre, "%s.input_norm", stem);
    load_bn(l, pre, m->F, &u->in_scale, &u->in_shift);
    for (int k = 1; k <= LN_DEPTH; k++) {
        int64_t ws[4] = {m->w[k], m->w[k - 1], 5, 5}, bs[1] = {m->w[k]};
        snprintf(name, sizeof name, "%s.enc%d.conv.weight", stem, k);
        u->enc_w[k - 1] = ss_wload_dev(l, name, 4, ws);
        snprintf(name, sizeof name, "%s.enc%d.conv.bias", stem, k);
        u->enc_b[k - 1] = ss_wload_dev(l, name, 1, bs);
        snprintf(pre, sizeof pre, "%s.enc%d.bn", stem, k);
        load_bn(l, pre, m->w[k], &u->enc_s[k - 1], &u->enc_t[k - 1]);
    }
    for (int k = 1; k <= LN_DEPTH; k++) {
        int cin = k == 1 ? m->w[LN_DEPTH] : 2 * m->w[LN_DEPTH + 1 - k], cout = m->w[LN_DEPTH - k];
        int64_t ws[4] = {cin, cout, 5, 5}, bs[1] = {cout};
        snprintf(name, sizeof name, "%s.dec%d.conv_trans.weight", stem, k);
        u->dec_w[k - 1] = ss_wload_dev(l, name, 4, ws);
        snprintf(name, sizeof name, "%s.dec%d.conv_trans.bias", stem, k);
        u->dec_b[k - 1] = ss_wload_dev(l, name, 1, bs);
        snprintf(pre, sizeof pre, "%s.dec%d.bn", stem, k);
        load_bn(l, pre, cout, &u->dec_s[k - 1], &u->dec_t[k - 1]);
    }
    shape[0] = shape[1] = m->C, shape[2] = shape[3] = 4;
    snprintf(name, sizeof name, "%s.mask_layer.0.weight", stem);
    u->mask_w = ss_wload_dev(l, name, 4, shape);
    snprintf(name, sizeof name, "%s.mask_layer.0.bias", stem);
    u->mask_b = ss_wload_dev(l, name, 1, shape);
}

static void unet_free(ss_backend *be, unet *u)
{
    float **p = (float **)u;
    for (size_t i = 0; i < sizeof *u / sizeof(float *); i++)
        if (p[i])
            ss_free(be, p[i]);
}

static void ws_free(larsnet *m, ss_backend *be)
{
    float **bufs[] = {&m->spec, &m->mag, &m->in, &m->d, &m->d2, &m->cat, &m->u, &m->tmp, &m->mask, &m->sum,
                      &m->ms, &m->wave, &m->env};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        if (*bufs[i])
            ss_free(be, *bufs[i]);
        *bufs[i] = NULL;
    }
    for (int k = 0; k <= LN_DEPTH; k++) {
        if (m->c[k])
            ss_free(be, m->c[k]);
        m->c[k] = NULL;
    }
    for (int s = 0; s < LN_STEMS; s++) {
        if (m->M[s])
            ss_free(be, m->M[s]);
        m->M[s] = NULL;
    }
    m->cap = m->cap_masks = 0;
    m->env_span = 0;
}

static void larsnet_free(void *state, ss_backend *be)
{
    larsnet *m = state;
    if (!m)
        return;
    ws_free(m, be);
    for (int s = 0; s < LN_STEMS; s++)
        unet_free(be, &m->net[s]);
    if (m->eps)
        ss_free(be, m->eps);
    free(m->window_sq);
    free(m);
}

/* larsnet.* metadata checked against each other; SS_E_DATA naming the key */
static ss_status read_hparams(const ss_st *st, int64_t hp[4], ss_error *err)
{
    static const char *const keys[4] = {"larsnet.n_fft", "larsnet.hop", "larsnet.F", "larsnet.T"};
    const char *path = ss_st_path(st);
    ss_status s;
    for (int i = 0; i < 4; i++)
        if ((s = ss_st_meta_int(st, keys[i], &hp[i], err)) != SS_OK)
            return s;
    int64_t n_fft = hp[0], hop = hp[1], F = hp[2], T = hp[3];
    if (n_fft < 16 || n_fft > 65536 || n_fft % 2 || hop < 1 || (n_fft / 2) % hop)
        return ss_fail(err, SS_E_DATA, "%s: larsnet.n_fft %lld / larsnet.hop %lld: need an even n_fft whose half is "
                       "a multiple of hop", path, (long long)n_fft, (long long)hop);
    if (F < 64 || F % 64 || F > n_fft / 2 + 1)
        return ss_fail(err, SS_E_DATA, "%s: larsnet.F %lld: must be a multiple of 64 and at most n_fft/2 + 1", path,
                       (long long)F);
    if (T < 64 || T % 64 || T > 65536)
        return ss_fail(err, SS_E_DATA, "%s: larsnet.T %lld: must be a multiple of 64 (at most 65536)", path,
                       (long long)T);
    return SS_OK;
}

static ss_status larsnet_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    const char *path = ss_st_path(st);
    int64_t hp[4];
    ss_status s;
    if ((s = read_hparams(st, hp, err)) != SS_OK)
        return s;
    if (info->n_sources != LN_STEMS || info->residual)
        return ss_fail(err, SS_E_DATA, "%s: LarsNet has five stems (kick, snare, toms, hihat, cymbals), the file "
                       "names %d%s", path, info->n_sources, info->residual ? " and a residual" : "");
    for (int i = 0; i < LN_STEMS; i++)
        if (strcmp(info->sources[i], stem_names[i]) != 0)
            return ss_fail(err, SS_E_DATA, "%s: stemsplit.sources: stem %d is '%s', LarsNet's is '%s'", path, i + 1,
                           info->sources[i], stem_names[i]);
    larsnet *m = calloc(1, sizeof *m);
    if (!m)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    m->C = info->channels;
    m->n_fft = (int)hp[0], m->hop = (int)hp[1], m->F = (int)hp[2], m->T = (int)hp[3];
    m->nb = m->n_fft / 2 + 1;
    m->e = m->n_fft / 2 / m->hop;
    m->w[0] = m->C;
    for (int k = 1; k <= LN_DEPTH; k++) {
        char name[64];
        snprintf(name, sizeof name, "kick.enc%d.conv.weight", k);
        const ss_st_tensor *t = ss_st_find(st, name);
        if (!t || t->ndim != 4 || t->shape[0] < 1 || t->shape[0] > 4096) {
            larsnet_free(m, be);
            return ss_fail(err, SS_E_DATA, "%s: tensor %s missing or not [out, in, 5, 5] (out <= 4096)", path, name);
        }
        m->w[k] = (int)t->shape[0];
    }
    m->window_sq = malloc(sizeof(float) * (size_t)m->n_fft);
    if (!m->window_sq) {
        larsnet_free(m, be);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < m->n_fft; i++) {         /* torch.hann_window(periodic=True), squared */
        double w = 0.5 - 0.5 * cos(2.0 * M_PI * i / m->n_fft);
        m->window_sq[i] = (float)(w * w);
    }
    ss_wload l = {.st = st, .be = be, .err = err, .s = SS_OK, .path = path};
    for (int i = 0; i < LN_STEMS; i++)
        load_unet(&l, m, stem_names[i], &m->net[i]);
    if (l.s == SS_OK) {
        float e = 1e-7f;
        m->eps = ss_wload_upload(&l, &e, 1);
    }
    if (l.s == SS_OK)
        l.s = ss_st_check_all_used(st, err);
    if (l.s != SS_OK) {
        larsnet_free(m, be);
        return l.s;
    }
    *state = m;
    return ss_backend_status(be, err);
}

/* ---- forward --------------------------------------------------------------------- */

static int64_t span_of(const larsnet *m, int frames) { return (int64_t)(frames - 1) * m->hop + m->n_fft; }

/* workspace for `batch` items of up to T frames */
static ss_status ws_ensure(larsnet *m, ss_backend *be, int batch, ss_error *err)
{
    int masks = m->wiener > 0.0f ? LN_STEMS : 1;
    if (batch <= m->cap && masks <= m->cap_masks)
        return SS_OK;
    ws_free(m, be);
    size_t B = (size_t)batch, C = (size_t)m->C, F = (size_t)m->F, T = (size_t)m->T, nb = (size_t)m->nb;
    size_t fmax = T + 2 * (size_t)m->e, span = (size_t)span_of(m, m->T);
    size_t spec_n = B * C * 2 * nb * fmax, mag_n = B * C * nb * fmax;
    /* the largest decoder output / scratch: level j (output F/2^j x T/2^j, w_j channels) */
    size_t u_n = 0, tmp_n = 0, cat_n = 0;
    for (int j = 0; j < LN_DEPTH; j++) {
        size_t h = F >> j, w = T >> j;
        size_t un = B * (size_t)m->w[j] * h * w, tn = B * (size_t)m->w[j] * (h + 3) * (w + 3);
        u_n = un > u_n ? un : u_n;
        tmp_n = tn > tmp_n ? tn : tmp_n;
        if (j >= 1 && 2 * un > cat_n)
            cat_n = 2 * un;
    }
    size_t d_n = 0;
    for (int k = 1; k <= LN_DEPTH; k++) {
        size_t n = B * (size_t)m->w[k] * (F >> k) * (T >> k);
        d_n = n > d_n ? n : d_n;
    }
    m->spec = ss_alloc(be, spec_n);
    m->ms = ss_alloc(be, spec_n);
    m->mag = ss_alloc(be, mag_n);
    m->sum = ss_alloc(be, mag_n);
    m->in = ss_alloc(be, B * C * F * T);
    m->mask = ss_alloc(be, B * C * F * T);
    m->d = ss_alloc(be, d_n);
    m->d2 = ss_alloc(be, d_n);
    m->cat = ss_alloc(be, cat_n);
    m->u = ss_alloc(be, u_n);
    m->tmp = ss_alloc(be, tmp_n);
    m->wave = ss_alloc(be, B * C * span);
    m->env = ss_alloc(be, span);
    int ok = m->spec && m->ms && m->mag && m->sum && m->in && m->mask && m->d && m->d2 && m->cat && m->u && m->tmp &&
             m->wave && m->env;
    for (int k = 1; k <= LN_DEPTH && ok; k++)
        ok = (m->c[k] = ss_alloc(be, B * (size_t)m->w[k] * (F >> k) * (T >> k))) != NULL;
    for (int s = 0; s < masks && ok; s++)
        ok = (m->M[s] = ss_alloc(be, mag_n)) != NULL;
    if (!ok) {
        ws_free(m, be);
        ss_status st = ss_backend_status(be, err);
        return st != SS_OK ? st : ss_fail(err, SS_E_NOMEM, "larsnet: out of device memory for %d blocks", batch);
    }
    m->u_n = u_n, m->tmp_n = tmp_n, m->d_n = d_n, m->cat_n = cat_n;
    m->cap = batch;
    m->cap_masks = masks;
    return SS_OK;
}

/* env [span] = the envelope ss_istft divides by for `frames` frames over
 * `span` samples (every frame of the centred STFT, padding frames included) */
static ss_status make_env(larsnet *m, ss_backend *be, int64_t span, int frames, ss_error *err)
{
    if (m->env_span == span)
        return SS_OK;
    float *h = calloc((size_t)span, sizeof *h);
    if (!h)
        return ss_fail(err, SS_E_NOMEM, "larsnet: out of memory");
    int64_t half = m->n_fft / 2;
    for (int t = 0; t < frames; t++)
        for (int i = 0; i < m->n_fft; i++) {
            int64_t p = (int64_t)t * m->hop + i - half;     /* span coordinate */
            if (p >= 0 && p < span)
                h[p] += m->window_sq[i];
        }
    ss_upload(be, m->env, h, (size_t)span);
    free(h);
    m->env_span = span;
    return ss_backend_status(be, err);
}

/* One U-Net on in [B, C, F, T] (normalised in place) -> mask [B, C, F, T]. */
static void unet_mask(larsnet *m, ss_backend *be, const unet *u, int B)
{
    int C = m->C, F = m->F, T = m->T;
    ss_channel_affine(be, m->in, m->in, B * C, F, T, u->in_scale, u->in_shift);    /* BatchNorm over F */
    const float *x = m->in;
    float *d = m->d, *d2 = m->d2;
    for (int k = 1; k <= LN_DEPTH; k++) {                  /* c_k [B, w_k, F/2^k, T/2^k] */
        int h = F >> (k - 1), w = T >> (k - 1);
        ss_conv2d_desc cd = {.batch = B, .cin = m->w[k - 1], .h = h, .w = w, .cout = m->w[k], .kh = 5, .kw = 5,
                             .sh = 2, .sw = 2, .ph = 2, .pw = 2, .dh = 1, .dw = 1};
        ss_conv2d(be, &cd, x, u->enc_w[k - 1], u->enc_b[k - 1], m->c[k]);
        if (k == LN_DEPTH)
            break;
        size_t n = (size_t)m->w[k] * (size_t)(h / 2) * (size_t)(w / 2);
        ss_channel_affine(be, d, m->c[k], B, m->w[k], (int64_t)(h / 2) * (w / 2), u->enc_s[k - 1], u->enc_t[k - 1]);
        ss_activate(be, d, d, (size_t)B * n, SS_ACT_LEAKY_RELU, 0.2f);
        x = d;
        float *t = d;
        d = d2;
        d2 = t;
    }
    /* decoders: dec k input [B, cin, h, w] at level 7-k, output [B, w_{6-k}, 2h, 2w] */
    x = m->c[LN_DEPTH];
    for (int k = 1; k <= LN_DEPTH; k++) {
        int lvl = LN_DEPTH + 1 - k, h = F >> lvl, w = T >> lvl, cout = m->w[LN_DEPTH - k];
        int cin = k == 1 ? m->w[LN_DEPTH] : 2 * m->w[lvl];
        ss_convt2d_desc td = {.batch = B, .cin = cin, .h = h, .w = w, .cout = cout, .kh = 5, .kw = 5, .sh = 2, .sw = 2};
        ss_convt_crop crop = {.h0 = 2, .w0 = 2, .oh = 2 * h, .ow = 2 * w, .gelu = 0};
        ss_conv_transpose2d_crop(be, &td, &crop, x, u->dec_w[k - 1], u->dec_b[k - 1], m->tmp, m->u);
        size_t n = (size_t)cout * (size_t)(2 * h) * (size_t)(2 * w);
        ss_relu(be, m->u, m->u, (size_t)B * n);
        ss_channel_affine(be, m->u, m->u, B, cout, (int64_t)(2 * h) * (2 * w), u->dec_s[k - 1], u->dec_t[k - 1]);
        if (k == LN_DEPTH)
            break;
        /* cat [B, 2 cout, 2h, 2w] = [c_{6-k}, u_k] per item */
        ss_copy2d(be, m->cat, 2 * n, m->c[LN_DEPTH - k], n, (size_t)B, n);
        ss_copy2d(be, m->cat + n, 2 * n, m->u, n, (size_t)B, n);
        x = m->cat;
    }
    ss_conv2d_desc md = {.batch = B, .cin = C, .h = F, .w = T, .cout = C, .kh = 4, .kw = 4, .sh = 1, .sw = 1,
                         .ph = 3, .pw = 3, .dh = 2, .dw = 2};
    ss_conv2d(be, &md, m->u, u->mask_w, u->mask_b, m->mask);
    ss_sigmoid(be, m->mask, m->mask, (size_t)B * C * F * T);
}

/* stem st of y [B, 5, C, length] = the overlap-add of istft(X * M), M [B*C, nb, fr] */
static void emit(larsnet *m, ss_backend *be, const ss_stft_desc *sd, const float *M, float *y, int st, int batch,
                 size_t plane)
{
    int rows = batch * m->C;
    int64_t length = sd->length;
    size_t item = (size_t)m->C * (size_t)length;
    for (int r = 0; r < rows; r++)
        for (int p = 0; p < 2; p++)
            ss_mul(be, m->ms + (2 * r + p) * plane, m->spec + (2 * r + p) * plane, M + r * plane, plane);
    ss_istft(be, sd, m->ms, m->wave);                      /* overlap-add / envelope */
    for (int r = 0; r < rows; r++)                         /* back to the overlap-add itself */
        ss_mul(be, m->wave + r * length, m->wave + r * length, m->env, (size_t)length);
    ss_copy2d(be, y + (size_t)st * item, (size_t)LN_STEMS * item, m->wave, item, (size_t)batch, item);
}

static ss_status larsnet_forward(void *state, ss_backend *be, const float *x, float *y, int batch, int64_t length,
                                 ss_error *err)
{
    larsnet *m = state;
    int C = m->C, F = m->F, T = m->T, nb = m->nb, e = m->e;
    int64_t G64 = (length - m->n_fft) / m->hop + 1;
    if (length < m->n_fft || (length - m->n_fft) % m->hop || G64 > T)
        return ss_fail(err, SS_E_INTERNAL, "larsnet: forward on %lld samples: not the span of 1..%d frames",
                       (long long)length, T);
    int G = (int)G64, rows = batch * C;
    ss_status s;
    if ((s = ws_ensure(m, be, batch, err)) != SS_OK)
        return s;
    ss_stft_desc sd = {.batch = rows, .length = length, .n_fft = m->n_fft, .hop = m->hop};
    int fr = (int)ss_stft_frames(&sd);                    /* G + 2e frames */
    if ((s = make_env(m, be, length, fr, err)) != SS_OK)
        return s;
    size_t plane = (size_t)nb * (size_t)fr;                /* one [nb, fr] plane */
    ss_stft(be, &sd, x, m->spec);                          /* X [rows, 2, nb, fr] */
    /* |X| sqrt(n_fft): mag [rows, nb, fr] */
    ss_mul(be, m->ms, m->spec, m->spec, (size_t)rows * 2 * plane);
    for (int r = 0; r < rows; r++)
        ss_add(be, m->mag + r * plane, m->ms + 2 * r * plane, m->ms + (2 * r + 1) * plane, plane);
    ss_activate(be, m->mag, m->mag, (size_t)rows * plane, SS_ACT_POW, 0.5f);
    ss_scale(be, m->mag, m->mag, sqrtf((float)m->n_fft), (size_t)rows * plane);
    /* the block's frames and the U-Net's bins: [rows, F, G] of mag at frame e */
    int64_t sh[4] = {rows, F, G, 1}, s_mag[4] = {(int64_t)plane, fr, 1, 1}, s_in[4] = {(int64_t)F * T, T, 1, 1};
    int wiener = m->wiener > 0.0f;
    for (int st = 0; st < LN_STEMS; st++) {
        float *M = m->M[wiener ? st : 0];
        if (G < T)
            ss_fill(be, m->in, 0.0f, (size_t)rows * F * T);   /* fold_unet_inputs' zero padding */
        ss_copy4d(be, m->in, s_in, m->mag + e, s_mag, sh);
        unet_mask(m, be, &m->net[st], batch);
        ss_fill(be, M, 0.0f, (size_t)rows * plane);
        ss_copy4d(be, M + e, s_mag, m->mask, s_in, sh);
        if (!wiener)
            emit(m, be, &sd, M, y, st, batch, plane);
    }
    if (wiener) {
        /* P_s = (M_s |X|)^alpha; M_s = P_s / (sum P + 1e-7) */
        size_t n = (size_t)rows * plane;
        for (int st = 0; st < LN_STEMS; st++) {
            ss_mul(be, m->M[st], m->M[st], m->mag, n);
            ss_activate(be, m->M[st], m->M[st], n, SS_ACT_POW, m->wiener);
            if (st == 0)
                ss_copy2d(be, m->sum, n, m->M[0], n, 1, n);
            else
                ss_add(be, m->sum, m->sum, m->M[st], n);
        }
        ss_channel_affine(be, m->sum, m->sum, 1, 1, (int64_t)n, NULL, m->eps);
        ss_activate(be, m->sum, m->sum, n, SS_ACT_POW, -1.0f);
        for (int st = 0; st < LN_STEMS; st++) {
            ss_mul(be, m->M[st], m->M[st], m->sum, n);
            emit(m, be, &sd, m->M[st], y, st, batch, plane);
        }
    }
    return ss_backend_status(be, err);
}

static void larsnet_stft_blocks(const void *state, ss_stft_blocks *out)
{
    const larsnet *m = state;
    out->n_fft = m->n_fft;
    out->hop = m->hop;
    out->block = m->T;
    out->pad_end = 1;                 /* UNetUtils.pad_stft_input */
    out->window_sq = m->window_sq;
}

static ss_status larsnet_option(void *state, const char *key, double value, ss_error *err)
{
    larsnet *m = state;
    if (strcmp(key, "wiener") == 0) {
        if (!(value > 0.0 && value <= 100.0))
            return ss_fail(err, SS_E_USAGE, "--wiener %g: the exponent must be in (0, 100]", value);
        m->wiener = (float)value;
        return SS_OK;
    }
    return ss_fail(err, SS_E_USAGE, "larsnet has no option '%s'", key);
}

/* Device memory: the weights, and per block the workspace above (the
 * spectra and masks dominate at F 2048: up to 9 x C x nb x (T + 2e) floats
 * with --wiener's five masks, then the first encoder level's activations).
 * Counted with all five masks: an upper bound without --wiener.  Not yet
 * measured on a GPU. */
static ss_status larsnet_memory_estimate(ss_st *st, const ss_model_info *info, ss_mem_estimate *out, ss_error *err)
{
    int64_t hp[4];
    ss_status s;
    if ((s = read_hparams(st, hp, err)) != SS_OK)
        return s;
    uint64_t C = (uint64_t)info->channels, nb = (uint64_t)(hp[0] / 2 + 1), fr = (uint64_t)(hp[3] + hp[0] / hp[1]);
    uint64_t F = (uint64_t)hp[2], T = (uint64_t)hp[3];
    const ss_st_tensor *t = ss_st_find(st, "kick.enc1.conv.weight");
    uint64_t w1 = t && t->ndim == 4 && t->shape[0] > 0 ? (uint64_t)t->shape[0] : 16;
    uint64_t span = (uint64_t)((hp[3] - 1) * hp[1] + hp[0]);
    uint64_t per = C * nb * fr * (2 * 2 + 2 + LN_STEMS)        /* spec, ms, mag, sum, five masks */
                   + 2 * C * F * T                            /* in, mask */
                   + 2 * w1 * F * T / 4 * 2 + 2 * w1 * F * T / 4   /* d, d2, cat: level 1 */
                   + w1 * F * T / 4 * 4 / 3                    /* the skips c_1..c_6 */
                   + C * (F + 3) * (T + 3) * 2                 /* u, tmp */
                   + C * span + LN_STEMS * C * span * 2 + C * span * 2;   /* wave; the engine's in/out */
    out->fixed = info->parameters * 4u + span * 4u;
    out->per_item = per * 4u;
    return SS_OK;
}

const ss_arch ss_arch_larsnet = {
    .name = "larsnet",
    .load = larsnet_load,
    .forward = larsnet_forward,
    .free = larsnet_free,
    .chunking = SS_CHUNK_STFT_BLOCKS,
    .stft_blocks = larsnet_stft_blocks,
    .option = larsnet_option,
    .memory_estimate = larsnet_memory_estimate,
};

/* mdx23c.c - MDX23C (TFC-TDF-Net v3, as in Music-Source-Separation-Training's
 * models/mdx23c_tfc_tdf_v3.py), inference only.  The file format is in
 * docs/mdx23c-format.md; scripts/convert-msst.py writes it.
 *
 * Notation: B batch, C = 2 audio channels, L samples, F = n_fft/2 + 1 bins,
 * N = L/hop + 1 frames, Fd = dim_f bins kept, k sub-bands, f = Fd/k rows per
 * sub-band, Dc = 2*C*k input channels, c0 = num_channels, g = growth, n
 * scales, (s0, s1) the scale, bn the bottleneck factor, S stems.  Level j
 * (0..n) has ch_j = c0 + j*g channels, T_j = N / s0^j frames, F_j = f / s1^j
 * rows.
 *
 *   x [B, C, L] --stft (unnormalised)--> [B, 2C, F, N] (channel = 2c + re/im)
 *   keep Fd bins: [B, 2C, Fd, N] == [B, Dc, f, N] (cac2cws is a reshape)
 *   the reference transposes after first_conv (1x1, per position); the input
 *   is transposed here instead (Dc planes, not c0): mixT [B, Dc, N, f]
 *   first_conv 1x1: fco [B, c0, N, f] = X
 *   encoder level j: X = TFC_TDF(X) (kept as skip j); X = Downscale(X):
 *     norm, act, Conv2d(ch_j -> ch_j + g, kernel = stride = (s0, s1))
 *   bottleneck TFC_TDF
 *   decoder level j = n-1..0: Upscale (norm, act, ConvTranspose2d(ch_j + g ->
 *     ch_j, kernel = stride = (s0, s1))), concat [up, skip j], TFC_TDF(2ch_j -> ch_j)
 *   X * fco, final 1x1 convs on [mixT, X] (c0 + Dc -> c0, act, c0 -> S*Dc),
 *     transposed back (S*Dc planes) -> [B, S*Dc, f, N] == [B, S, 2C, Fd, N]
 *   zero bins Fd..F-1 --istft--> y [B, S, C, L]
 *
 * A TFC_TDF block (num_blocks_per_scale of them, the first in_c -> c):
 *   s = shortcut 1x1(x); x = conv3x3(act(norm(x)));
 *   x += Linear(f/bn -> f)(act(norm(Linear(f -> f/bn)(act(norm(x))))))  (over the last dim)
 *   x = conv3x3(act(norm(x))) + s
 *
 * The reference's STFT is unnormalised and the network is not scale
 * invariant (BatchNorm, no norm): the spectrum's two consumers (first_conv and
 * the spectrum's columns of final_conv.0) are linear, so their weights are
 * scaled by sqrt(n_fft) at load, and the output's 1/sqrt(n_fft) for the
 * normalised ss_istft is folded into the last convolution's.  BatchNorm's statistics are
 * folded into a per-channel scale and bias at load.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model.h"
#include "../../src/weights.h"

#define NORM_EPS 1e-5f             /* the torch defaults of all three norms       */
#define MAX_SCALES 16
#define NAME_MAX_LEN 160

typedef enum mx_norm_kind { MX_NORM_NONE = 0, MX_NORM_BATCH, MX_NORM_INSTANCE, MX_NORM_GROUP } mx_norm_kind;
typedef enum mx_act_kind { MX_ACT_GELU = 0, MX_ACT_RELU, MX_ACT_ELU } mx_act_kind;

typedef struct mx_norm {           /* one norm layer over ch channels              */
    float *a, *b;                  /* [ch]: gamma, beta (BatchNorm: folded scale,
                                    * bias); NULL for no norm                      */
} mx_norm;

typedef struct mx_block {          /* one TFC-TDF block                            */
    int in_c, c;
    mx_norm n1, n2, n3, n4;        /* tfc1.0, tdf.0, tdf.3, tfc2.0                 */
    float *w_tfc1;                 /* [c, in_c, 3, 3]                              */
    float *w_l1;                   /* [f/bn, f]  tdf.2                             */
    float *w_l2;                   /* [f, f/bn]  tdf.5                             */
    float *w_tfc2;                 /* [c, c, 3, 3]                                 */
    float *w_sc;                   /* [c, in_c]  shortcut (1x1)                    */
} mx_block;

typedef struct mx_level {          /* level j: its encoder, down/up and decoder    */
    int ch, F;                     /* ch_j, F_j                                    */
    mx_block *enc;                 /* [l] TFC_TDF(ch_j -> ch_j)                    */
    mx_norm dn;                    /* [ch_j]                                       */
    float *w_down;                 /* [ch_j + g, ch_j, s0, s1]                     */
    mx_norm un;                    /* [ch_j + g]                                   */
    float *w_up;                   /* [ch_j + g, ch_j, s0, s1] (in, out, kh, kw)   */
    mx_block *dec;                 /* [l] TFC_TDF(2 ch_j -> ch_j)                  */
} mx_level;

typedef struct mx_hp {
    int n_fft, hop, dim_f, k, n, s0, s1, l, c0, g, bn, S, C;
    int F, f, Dc;
    mx_norm_kind norm;
    int groups;                    /* GroupNorm's                                  */
    mx_act_kind act;
    float alpha;                   /* ELU's                                        */
} mx_hp;

typedef struct mx_ws {             /* activations of one chunk (the forward pass
                                    * runs a batch item by item): see ws_plan      */
    int64_t length;
    int frames;
    size_t u[MAX_SCALES];          /* level j's up slot ends (its skip starts) at
                                    * arena + u[j]; level n's input is at arena,
                                    * its output at arena + E[n]                   */
    size_t E[MAX_SCALES];          /* ch_j T_j F_j                                 */
    int slab_rows[MAX_SCALES];     /* output rows per time slab of level j's
                                    * decoder's first convolution (host memory)    */
    float *arena;                  /* nested levels: [U_j | K_j], U_j holding level
                                    * j+1's; K_j the skip, U_j's end the upsampled
                                    * tensor, so that [up | skip] is the concat     */
    float *sc;                     /* a block's shortcut, a norm before a resampling,
                                    * the spectrum, the output's spectrum          */
    float *h;                      /* the TDF's narrow layer, mixT, the slabs       */
    float *o;                      /* device memory only: the decoder's first
                                    * convolution's output (NULL on the host)      */
} mx_ws;

typedef struct mx_model {
    const char *path;
    mx_hp hp;
    float *w_first;                /* [c0, Dc], times sqrt(n_fft)                  */
    mx_level lv[MAX_SCALES];       /* [n]                                          */
    mx_block *bott;                /* [l] TFC_TDF(ch_n -> ch_n)                    */
    float *w_final1;               /* [c0, Dc + c0], the Dc columns times sqrt(n_fft) */
    float *w_final2;               /* [S*Dc, c0], times 1/sqrt(n_fft)              */
    ss_dev_list dev;               /* every device allocation, for free            */
    mx_ws ws;
} mx_model;

/* ---- hyperparameters ------------------------------------------------------------ */

static ss_status meta_str(ss_st *st, const char *key, const char **out, ss_error *err)
{
    *out = ss_st_meta(st, key);
    if (!*out)
        return ss_fail(err, SS_E_DATA, "%s: metadata '%s' is missing", ss_st_path(st), key);
    return SS_OK;
}

static int64_t ipow(int b, int e)
{
    int64_t r = 1;
    while (e-- > 0 && r <= ((int64_t)1 << 40))
        r *= b;
    return r;
}

/* Every mdx23c.* key, checked against what this forward pass implements. */
static ss_status read_hp(ss_st *st, const ss_model_info *info, mx_hp *hp, ss_error *err)
{
    const char *path = ss_st_path(st), *scale, *norm, *act;
    ss_status s;
    memset(hp, 0, sizeof *hp);
    if ((s = ss_st_meta_int_in(st, "mdx23c.n_fft", 4, 1 << 16, &hp->n_fft, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.hop_length", 1, 1 << 16, &hp->hop, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.dim_f", 1, 1 << 15, &hp->dim_f, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.num_subbands", 1, 1 << 10, &hp->k, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.num_scales", 1, MAX_SCALES - 1, &hp->n, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.num_blocks_per_scale", 1, 64, &hp->l, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.num_channels", 1, 1 << 14, &hp->c0, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.growth", 0, 1 << 14, &hp->g, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.bottleneck_factor", 1, 1 << 14, &hp->bn, err)) != SS_OK ||
        (s = ss_st_meta_int_in(st, "mdx23c.num_target_instruments", 1, SS_MAX_SOURCES, &hp->S, err)) != SS_OK ||
        (s = meta_str(st, "mdx23c.scale", &scale, err)) != SS_OK ||
        (s = meta_str(st, "mdx23c.norm", &norm, err)) != SS_OK || (s = meta_str(st, "mdx23c.act", &act, err)) != SS_OK)
        return s;
    char tail;
    if (sscanf(scale, "%d,%d%c", &hp->s0, &hp->s1, &tail) != 2 || hp->s0 < 1 || hp->s1 < 1 || hp->s0 > 64 ||
        hp->s1 > 64)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.scale' = '%.80s' is not two positive integers 'a,b'",
                       path, scale);
    if (strcmp(norm, "BatchNorm") == 0)
        hp->norm = MX_NORM_BATCH;
    else if (strcmp(norm, "InstanceNorm") == 0)
        hp->norm = MX_NORM_INSTANCE;
    else if (strcmp(norm, "Identity") == 0)
        hp->norm = MX_NORM_NONE;
    else if (sscanf(norm, "GroupNorm%d%c", &hp->groups, &tail) == 1 && hp->groups >= 1)
        hp->norm = MX_NORM_GROUP;
    else
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.norm' = '%.80s' is not BatchNorm, InstanceNorm, "
                       "GroupNorm<groups> or Identity", path, norm);
    char *end;
    if (strcmp(act, "gelu") == 0)
        hp->act = MX_ACT_GELU;
    else if (strcmp(act, "relu") == 0)
        hp->act = MX_ACT_RELU;
    else if (strncmp(act, "elu", 3) == 0 && (hp->alpha = strtof(act + 3, &end), end != act + 3 && *end == '\0') &&
             isfinite(hp->alpha))
        hp->act = MX_ACT_ELU;
    else
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.act' = '%.80s' is not gelu, relu or elu<alpha>", path,
                       act);
    hp->C = info->channels;
    if (hp->C != 2)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'stemsplit.channels' = %d: MDX23C takes stereo only", path, hp->C);
    if (hp->S != info->n_sources)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.num_target_instruments' = %d but 'stemsplit.sources' "
                       "lists %d network stems", path, hp->S, info->n_sources);
    hp->F = hp->n_fft / 2 + 1;
    if (hp->n_fft % 2 || hp->dim_f > hp->F || hp->hop > hp->n_fft)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.n_fft' = %d, 'mdx23c.dim_f' = %d, "
                       "'mdx23c.hop_length' = %d: need an even n_fft, dim_f <= n_fft/2 + 1, hop <= n_fft", path,
                       hp->n_fft, hp->dim_f, hp->hop);
    if (hp->dim_f % hp->k)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.dim_f' = %d is not a multiple of "
                       "'mdx23c.num_subbands' = %d", path, hp->dim_f, hp->k);
    hp->f = hp->dim_f / hp->k;
    hp->Dc = 2 * hp->C * hp->k;
    if (hp->f % ipow(hp->s1, hp->n) || hp->f / ipow(hp->s1, hp->n) < hp->bn)
        return ss_fail(err, SS_E_DATA, "%s: %d frequency rows per sub-band do not divide by 'mdx23c.scale'[1]^%d "
                       "with at least 'mdx23c.bottleneck_factor' = %d left", path, hp->f, hp->n, hp->bn);
    if ((int64_t)hp->c0 + (int64_t)hp->g * hp->n > (1 << 15))
        return ss_fail(err, SS_E_DATA, "%s: metadata 'mdx23c.num_channels' + num_scales * growth is too wide", path);
    int64_t L = info->segment_length;
    if (L <= hp->n_fft / 2 || L % hp->hop || (L / hp->hop + 1) % ipow(hp->s0, hp->n))
        return ss_fail(err, SS_E_DATA, "%s: metadata 'stemsplit.segment' (%lld samples) is not a multiple of the hop "
                       "%d longer than n_fft/2 whose frame count divides by 'mdx23c.scale'[0]^%d", path, (long long)L,
                       hp->hop, hp->n);
    return SS_OK;
}

/* ---- loading ---------------------------------------------------------------------- */

typedef struct loader {
    mx_model *m;
    ss_st *st;
    ss_backend *be;
    ss_error *err;
    ss_status s;
    float *host;                   /* conversion buffers                           */
    size_t host_cap;
    double *tmp;                   /* BatchNorm folding                            */
} loader;

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

/* Tensor `name` of exactly `shape` (ndim dims) as fp32 in l->host (valid until
 * the next call), or NULL with l->s set. */
static float *get_host(loader *l, const char *name, int ndim, const int64_t *shape, size_t *numel)
{
    int64_t n;
    if (l->s == SS_OK)
        l->s = ss_st_get_f32(l->st, name, ndim, shape, &l->host, &l->host_cap, &n, l->err);
    if (l->s != SS_OK)
        return NULL;
    *numel = (size_t)n;
    return l->host;
}

static float *upload(loader *l, const float *h, size_t n, const char *name)
{
    float *p = ss_dev_list_alloc(&l->m->dev, l->be, n);
    if (!p) {
        l->s = ss_fail(l->err, SS_E_DEVICE, "%s: cannot allocate device memory for tensor '%s'", l->m->path, name);
        return NULL;
    }
    ss_upload(l->be, p, h, n);
    return p;
}

/* Tensor `name` [d0, d1, d2, d3] (trailing zeros: fewer dims) on the device, or NULL with l->s set. */
static float *get_dev(loader *l, const char *name, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    int nd = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    size_t n;
    float *h = get_host(l, name, nd, shape, &n);
    return h ? upload(l, h, n, name) : NULL;
}

/* The norm layer at `pre` ("....0.") over ch channels. */
static void get_norm(loader *l, mx_norm *nm, const char *pre, int ch)
{
    char n[NAME_MAX_LEN];
    const mx_hp *hp = &l->m->hp;
    nm->a = nm->b = NULL;
    if (hp->norm == MX_NORM_NONE || l->s != SS_OK)
        return;
    if (hp->norm != MX_NORM_BATCH) {
        name_of(n, "%sweight", pre);
        nm->a = get_dev(l, n, ch, 0, 0, 0);
        name_of(n, "%sbias", pre);
        nm->b = get_dev(l, n, ch, 0, 0, 0);
        return;
    }
    /* BatchNorm at inference: y = (x - mean) / sqrt(var + eps) * w + b = x * a + b' */
    double *t = l->tmp;
    static const char *const part[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        size_t cnt;
        int64_t shape = ch;
        name_of(n, "%s%s", pre, part[i]);
        const float *h = get_host(l, n, 1, &shape, &cnt);
        if (!h)
            return;
        for (int c = 0; c < ch; c++)
            t[i * ch + c] = h[c];
    }
    for (int c = 0; c < ch; c++)
        if (!(t[3 * ch + c] + NORM_EPS > 0.0)) {
            l->s = ss_fail(l->err, SS_E_DATA, "%s: tensor '%srunning_var' entry %d = %g is negative", l->m->path, pre,
                           c, t[3 * ch + c]);
            return;
        }
    float *h = l->host;                   /* l->host holds at least ch floats now */
    if (l->host_cap < 2 * (size_t)ch) {
        h = realloc(l->host, 2 * (size_t)ch * sizeof *h);
        if (!h) {
            l->s = ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", l->m->path);
            return;
        }
        l->host = h;
        l->host_cap = 2 * (size_t)ch;
    }
    for (int c = 0; c < ch; c++) {
        double a = t[c] / sqrt(t[3 * ch + c] + NORM_EPS);
        h[c] = (float)a;
        h[ch + c] = (float)(t[ch + c] - t[2 * ch + c] * a);
    }
    name_of(n, "%sweight", pre);
    nm->a = upload(l, h, (size_t)ch, n);
    nm->b = nm->a ? upload(l, h + ch, (size_t)ch, n) : NULL;
}

/* A TFC_TDF at `pre` ("...blocks.") of l blocks, in_c -> c over F rows. */
static mx_block *get_tfc_tdf(loader *l, const char *pre, int in_c, int c, int F)
{
    mx_model *m = l->m;
    int L = m->hp.l, fb = F / m->hp.bn;
    mx_block *b = calloc((size_t)L, sizeof *b);
    if (!b) {
        l->s = ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
        return NULL;
    }
    char n[NAME_MAX_LEN];
    for (int i = 0; i < L && l->s == SS_OK; i++, in_c = c) {
        mx_block *k = &b[i];
        k->in_c = in_c;
        k->c = c;
        name_of(n, "%sblocks.%d.tfc1.0.", pre, i);
        get_norm(l, &k->n1, n, in_c);
        name_of(n, "%sblocks.%d.tfc1.2.weight", pre, i);
        k->w_tfc1 = get_dev(l, n, c, in_c, 3, 3);
        name_of(n, "%sblocks.%d.tdf.0.", pre, i);
        get_norm(l, &k->n2, n, c);
        name_of(n, "%sblocks.%d.tdf.2.weight", pre, i);
        k->w_l1 = get_dev(l, n, fb, F, 0, 0);
        name_of(n, "%sblocks.%d.tdf.3.", pre, i);
        get_norm(l, &k->n3, n, c);
        name_of(n, "%sblocks.%d.tdf.5.weight", pre, i);
        k->w_l2 = get_dev(l, n, F, fb, 0, 0);
        name_of(n, "%sblocks.%d.tfc2.0.", pre, i);
        get_norm(l, &k->n4, n, c);
        name_of(n, "%sblocks.%d.tfc2.2.weight", pre, i);
        k->w_tfc2 = get_dev(l, n, c, c, 3, 3);
        name_of(n, "%sblocks.%d.shortcut.weight", pre, i);
        k->w_sc = get_dev(l, n, c, in_c, 1, 1);
    }
    return b;
}

static void mx_free(void *state, ss_backend *be);

static ss_status load_all(loader *l)
{
    mx_model *m = l->m;
    const mx_hp *hp = &m->hp;
    char n[NAME_MAX_LEN];
    int chmax = hp->c0 + hp->n * hp->g;
    l->tmp = malloc(4 * 2 * (size_t)chmax * sizeof *l->tmp);     /* the widest norm: a decoder's 2 ch_j */
    if (!l->tmp)
        return ss_fail(l->err, SS_E_NOMEM, "%s: out of memory", m->path);
    float rn = sqrtf((float)hp->n_fft);
    size_t cnt;
    int64_t sf[4] = {hp->c0, hp->Dc, 1, 1};
    float *h = get_host(l, "first_conv.weight", 4, sf, &cnt);
    if (h) {
        for (size_t i = 0; i < cnt; i++)
            h[i] *= rn;
        m->w_first = upload(l, h, cnt, "first_conv.weight");
    }
    int F = hp->f;
    for (int j = 0; j < hp->n && l->s == SS_OK; j++) {
        mx_level *v = &m->lv[j];
        v->ch = hp->c0 + j * hp->g;
        v->F = F;
        name_of(n, "encoder_blocks.%d.tfc_tdf.", j);
        v->enc = get_tfc_tdf(l, n, v->ch, v->ch, F);
        name_of(n, "encoder_blocks.%d.downscale.conv.0.", j);
        get_norm(l, &v->dn, n, v->ch);
        name_of(n, "encoder_blocks.%d.downscale.conv.2.weight", j);
        v->w_down = get_dev(l, n, v->ch + hp->g, v->ch, hp->s0, hp->s1);
        F /= hp->s1;
    }
    if (l->s == SS_OK)
        m->bott = get_tfc_tdf(l, "bottleneck_block.", chmax, chmax, F);
    for (int i = 0; i < hp->n && l->s == SS_OK; i++) {
        mx_level *v = &m->lv[hp->n - 1 - i];          /* decoder block i is level n-1-i */
        name_of(n, "decoder_blocks.%d.upscale.conv.0.", i);
        get_norm(l, &v->un, n, v->ch + hp->g);
        name_of(n, "decoder_blocks.%d.upscale.conv.2.weight", i);
        v->w_up = get_dev(l, n, v->ch + hp->g, v->ch, hp->s0, hp->s1);
        name_of(n, "decoder_blocks.%d.tfc_tdf.", i);
        v->dec = get_tfc_tdf(l, n, 2 * v->ch, v->ch, v->F);
    }
    int64_t s1[4] = {hp->c0, hp->c0 + hp->Dc, 1, 1};
    h = get_host(l, "final_conv.0.weight", 4, s1, &cnt);
    if (h) {                                               /* its spectrum columns */
        for (int r = 0; r < hp->c0; r++)
            for (int q = 0; q < hp->Dc; q++)
                h[(size_t)r * (hp->c0 + hp->Dc) + q] *= rn;
        m->w_final1 = upload(l, h, cnt, "final_conv.0.weight");
    }
    /* the last convolution, times 1/sqrt(n_fft): ss_istft is the normalised inverse */
    int64_t shape[4] = {(int64_t)hp->S * hp->Dc, hp->c0, 1, 1};
    h = get_host(l, "final_conv.2.weight", 4, shape, &cnt);
    if (h) {
        float sc = 1.0f / sqrtf((float)hp->n_fft);
        for (size_t i = 0; i < cnt; i++)
            h[i] *= sc;
        m->w_final2 = upload(l, h, cnt, "final_conv.2.weight");
    }
    if (l->s != SS_OK)
        return l->s;
    ss_status s = ss_st_check_all_used(l->st, l->err);
    return s != SS_OK ? s : ss_backend_status(l->be, l->err);
}

static ss_status mx_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    mx_model *m = calloc(1, sizeof *m);
    if (!m)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", ss_st_path(st));
    m->path = ss_st_path(st);
    ss_status s = read_hp(st, info, &m->hp, err);
    if (s == SS_OK) {
        loader l = {.m = m, .st = st, .be = be, .err = err};
        s = load_all(&l);
        free(l.host);
        free(l.tmp);
    }
    if (s != SS_OK) {
        mx_free(m, be);
        return s;
    }
    *state = m;
    return SS_OK;
}

/* ---- workspace --------------------------------------------------------------------- */

/* The workspace of one chunk of N frames, in floats.  Each buffer is reused
 * once what it held is dead (the skips live until their decoder level):
 *   arena  level j (0..n-1) is [U_j | K_j], U_j = max(E_j, A_{j+1}) floats
 *          holding level j+1 (A_j = U_j + E_j; the bottleneck's A_n = 2 E_n).
 *          Encoder level j: its input at U_j's start (norm-act in place, then
 *          the block's scratch), its output (the skip) in K_j.  Decoder level
 *          j: the upsampled tensor at the end of U_j, just before the skip,
 *          so the concat is read in place; the first convolution overwrites
 *          the concat's first half with its output (by time slabs on the
 *          host, through `o` on a device), K_j is then the scratch.
 *   sc     a block's shortcut; the norm-act before a down/upsampling; the
 *          spectrum and its crop; the output's spectrum and its transpose.
 *   h      the TDF's narrow layer; mixT; the slabs of the decoder's first
 *          convolution (input and output rows of 2ch_j and ch_j channels).
 *   o      device backends: the decoder's first convolution's output.
 * first_conv's output is computed again (from the spectrum) where the
 * network's output is multiplied by it, instead of being kept. */
typedef struct mx_plan {
    size_t E[MAX_SCALES], u[MAX_SCALES];
    size_t arena, sc, h, o;
    int slab_rows[MAX_SCALES];
} mx_plan;

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static mx_plan ws_plan(const mx_hp *hp, int N)
{
    mx_plan z;
    memset(&z, 0, sizeof z);
    size_t fN = (size_t)hp->f * (size_t)N, T[MAX_SCALES], F[MAX_SCALES], ch[MAX_SCALES];
    size_t emax = 0, hid = 0;
    for (int j = 0; j <= hp->n; j++) {
        T[j] = j ? T[j - 1] / (size_t)hp->s0 : (size_t)N;
        F[j] = j ? F[j - 1] / (size_t)hp->s1 : (size_t)hp->f;
        ch[j] = (size_t)(hp->c0 + j * hp->g);
        z.E[j] = ch[j] * T[j] * F[j];
        emax = zmax(emax, z.E[j]);
        hid = zmax(hid, ch[j] * T[j] * (F[j] / (size_t)hp->bn));
    }
    size_t A = 2 * z.E[hp->n];
    z.u[hp->n] = z.E[hp->n];
    for (int j = hp->n - 1; j >= 0; j--) {
        z.u[j] = zmax(z.E[j], A);
        A = z.u[j] + z.E[j];
    }
    size_t spec = (size_t)hp->C * 2u * (size_t)hp->F * (size_t)N, crop = (size_t)hp->Dc * fN;
    size_t fo = (size_t)hp->S * (size_t)hp->Dc * fN, y = (size_t)hp->S * (size_t)hp->C * 2u * (size_t)hp->F * N;
    z.arena = zmax(A, y);
    z.sc = zmax(emax, zmax(spec + crop, 2 * fo));
    /* slabs of at least min(T_j + 2, 36) input rows, a multiple of 4 (the
     * Winograd tile's height) when there are several: the halo costs 2 rows */
    size_t slab = 0;
    for (int j = 0; j < hp->n; j++)
        slab = zmax(slab, 3 * ch[j] * F[j] * (T[j] + 2 < 36 ? T[j] + 2 : 36));
    z.h = zmax(hid, zmax(crop, slab));
    for (int j = 0; j < hp->n; j++) {
        size_t rows = z.h / (3 * ch[j] * F[j]);              /* input rows of a slab */
        z.slab_rows[j] = rows >= T[j] + 2 ? (int)T[j] : (int)(rows / 4 * 4) - 2;
    }
    z.o = emax;
    return z;
}

static void ws_release(mx_model *m, ss_backend *be)
{
    mx_ws *w = &m->ws;
    float *bufs[] = {w->arena, w->sc, w->h, w->o};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i])
            ss_free(be, bufs[i]);
    memset(w, 0, sizeof *w);
}

static ss_status ws_get(mx_model *m, ss_backend *be, int64_t length, ss_error *err)
{
    mx_ws *w = &m->ws;
    const mx_hp *hp = &m->hp;
    if (w->arena && w->length == length)
        return SS_OK;
    ws_release(m, be);
    if (length <= hp->n_fft / 2 || length % hp->hop || length / hp->hop + 1 > (1 << 24) ||
        (length / hp->hop + 1) % ipow(hp->s0, hp->n))
        return ss_fail(err, SS_E_INTERNAL, "mdx23c: a chunk of %lld samples does not fit this model (a multiple of "
                       "the hop %d whose frame count divides by %lld)", (long long)length, hp->hop,
                       (long long)ipow(hp->s0, hp->n));
    int N = (int)(length / hp->hop + 1);
    mx_plan z = ws_plan(hp, N);
    if (z.arena > ((size_t)1 << 31) || z.sc > ((size_t)1 << 31))
        return ss_fail(err, SS_E_INTERNAL, "mdx23c: a chunk of %lld samples is too large", (long long)length);
    w->length = length;
    w->frames = N;
    memcpy(w->u, z.u, sizeof w->u);
    memcpy(w->E, z.E, sizeof w->E);
    memcpy(w->slab_rows, z.slab_rows, sizeof w->slab_rows);
    int host = ss_backend_iface_of(be)->host_memory;
    int ok = (w->arena = ss_alloc(be, z.arena)) && (w->sc = ss_alloc(be, z.sc)) && (w->h = ss_alloc(be, z.h)) &&
             (host || (w->o = ss_alloc(be, z.o)));
    if (!ok) {
        ws_release(m, be);
        ss_status s = ss_backend_status(be, err);
        return s != SS_OK ? s : ss_fail(err, SS_E_DEVICE, "mdx23c: cannot allocate the workspace");
    }
    return SS_OK;
}

static void mx_free(void *state, ss_backend *be)
{
    mx_model *m = state;
    if (!m)
        return;
    ws_release(m, be);
    ss_dev_list_free(&m->dev, be);
    for (int j = 0; j < MAX_SCALES; j++) {
        free(m->lv[j].enc);
        free(m->lv[j].dec);
    }
    free(m->bott);
    free(m);
}

/* ---- forward ------------------------------------------------------------------------ */

/* y = act(x), n values; in place ok */
static void act(const mx_model *m, ss_backend *be, float *y, const float *x, size_t n)
{
    switch (m->hp.act) {
    case MX_ACT_GELU: ss_gelu(be, y, x, n); break;
    case MX_ACT_RELU: ss_activate(be, y, x, n, SS_ACT_RELU, 0.0f); break;
    case MX_ACT_ELU: ss_activate(be, y, x, n, SS_ACT_ELU, m->hp.alpha); break;
    }
}

/* y [B, ch, len] = act(norm(x)); in place ok */
static void norm_act(const mx_model *m, ss_backend *be, float *y, const float *x, const mx_norm *nm, int B, int ch,
                     int64_t len)
{
    const mx_hp *hp = &m->hp;
    size_t n = (size_t)B * (size_t)ch * (size_t)len;
    switch (hp->norm) {
    case MX_NORM_INSTANCE:
    case MX_NORM_GROUP: {
        int groups = hp->norm == MX_NORM_INSTANCE ? ch : hp->groups;
        if (hp->act == MX_ACT_GELU) {
            ss_group_norm_gelu(be, y, x, NULL, B, ch, len, groups, nm->a, nm->b, NORM_EPS);
            return;
        }
        ss_group_norm(be, y, x, B, ch, len, groups, nm->a, nm->b, NORM_EPS);
        break;
    }
    case MX_NORM_BATCH: ss_channel_affine(be, y, x, B, ch, len, nm->a, nm->b); break;
    case MX_NORM_NONE: act(m, be, y, x, n); return;
    }
    act(m, be, y, y, n);
}

/* y [B, cout, len] (+)= w [cout, cin] (row pitch ldw) x [B, cin, len]: a 1x1 convolution */
static void conv1x1(ss_backend *be, float *y, const float *x, const float *w, int B, int cin, int cout, int64_t len,
                    int ldw, float beta)
{
    ss_gemm_desc d = {.m = cout, .n = (int)len, .k = cin, .alpha = 1.0f, .beta = beta, .lda = ldw, .ldb = (int)len,
                      .ldc = (int)len, .batch = B, .stride_a = 0, .stride_b = (int64_t)cin * len,
                      .stride_c = (int64_t)cout * len};
    ss_gemm(be, &d, w, x, y);
}

/* y [B, cout, T, F] = conv3x3(x [B, cin, T, F]), zero padding 1; item by item, as
 * every convolution here: the CPU's kernels tile the batch's positions together,
 * and the stems of a chunk must not depend on the chunks beside it */
static void conv3x3(ss_backend *be, float *y, const float *x, const float *w, int B, int cin, int cout, int T, int F)
{
    ss_conv2d_desc d = {.batch = 1, .cin = cin, .h = T, .w = F, .cout = cout, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
                        .ph = 1, .pw = 1, .dh = 1, .dw = 1};
    size_t TF = (size_t)T * (size_t)F;
    for (int b = 0; b < B; b++)
        ss_conv2d(be, &d, x + (size_t)b * cin * TF, w, NULL, y + (size_t)b * cout * TF);
}

/* x [cin, T, F] (one item) -> its first cout channels = conv3x3(x), cin > cout.
 * On the host by time slabs through w->h: the input rows of a slab and its
 * halo are gathered, convolved (zero padding 1, so a slab at the plane's edge
 * sees the plane's padding), and each slab's output rows are written into x
 * once the next slab has gathered its rows, which are the last that read
 * them.  On a device through w->o. */
static void conv3x3_over(mx_model *m, ss_backend *be, float *x, const float *wt, int cin, int cout, int T, int F,
                         int slab)
{
    mx_ws *w = &m->ws;
    size_t TF = (size_t)T * (size_t)F, E = (size_t)cout * TF;
    if (w->o) {
        conv3x3(be, w->o, x, wt, 1, cin, cout, T, F);
        ss_copy2d(be, x, E, w->o, E, 1, E);
        return;
    }
    float *g = w->h, *q = NULL;
    int plo = 0, pt0 = 0, pt1 = 0, prows = 0;
    for (int t0 = 0; t0 < T; t0 += slab) {
        int t1 = t0 + slab < T ? t0 + slab : T, lo = t0 > 0 ? t0 - 1 : 0, hi = t1 + 1 < T ? t1 + 1 : T;
        int rows = hi - lo;
        ss_copy2d(be, g, (size_t)rows * F, x + (size_t)lo * F, TF, (size_t)cin, (size_t)rows * F);
        if (q)                                     /* the previous slab's rows are read no more */
            ss_copy2d(be, x + (size_t)pt0 * F, TF, q + (size_t)(pt0 - plo) * F, (size_t)prows * F, (size_t)cout,
                      (size_t)(pt1 - pt0) * F);
        q = g + (size_t)cin * (slab + 2) * F;
        conv3x3(be, q, g, wt, 1, cin, cout, rows, F);
        plo = lo, pt0 = t0, pt1 = t1, prows = rows;
    }
    ss_copy2d(be, x + (size_t)pt0 * F, TF, q + (size_t)(pt0 - plo) * F, (size_t)prows * F, (size_t)cout,
              (size_t)(pt1 - pt0) * F);
}

/* out [c, T, F] = TFC_TDF(in [in_c, T, F]) for one item, t a scratch of c T F
 * floats.  Either in == t (the encoder and the bottleneck: the input is
 * overwritten) or in == out (a decoder: in is the concat, whose first c
 * channels become the output; slab as conv3x3_over). */
static void tfc_tdf(mx_model *m, ss_backend *be, const mx_block *blocks, float *in, float *out, float *t, int T,
                    int F, int slab)
{
    mx_ws *w = &m->ws;
    int fb = F / m->hp.bn;
    int64_t TF = (int64_t)T * F;
    for (int i = 0; i < m->hp.l; i++) {
        const mx_block *k = &blocks[i];
        const float *x = i == 0 ? in : out;
        int rows = k->c * T;
        conv1x1(be, w->sc, x, k->w_sc, 1, k->in_c, k->c, TF, k->in_c, 0.0f);      /* s [c, T, F]      */
        if (i == 0) {
            norm_act(m, be, in, in, &k->n1, 1, k->in_c, TF);
            if (in == out)
                conv3x3_over(m, be, in, k->w_tfc1, k->in_c, k->c, T, F, slab);
            else
                conv3x3(be, out, in, k->w_tfc1, 1, k->in_c, k->c, T, F);
        } else {
            norm_act(m, be, t, out, &k->n1, 1, k->in_c, TF);
            conv3x3(be, out, t, k->w_tfc1, 1, k->in_c, k->c, T, F);                /* x [c, T, F]      */
        }
        norm_act(m, be, t, out, &k->n2, 1, k->c, TF);
        ss_gemm_desc d1 = {.trans_b = 1, .m = rows, .n = fb, .k = F, .alpha = 1.0f, .lda = F, .ldb = F, .ldc = fb,
                           .batch = 1};
        ss_gemm_desc d2 = {.trans_b = 1, .m = rows, .n = F, .k = fb, .alpha = 1.0f, .beta = 1.0f, .lda = fb,
                           .ldb = fb, .ldc = F, .batch = 1};
        ss_gemm(be, &d1, t, k->w_l1, w->h);                                        /* h [c, T, fb]     */
        norm_act(m, be, w->h, w->h, &k->n3, 1, k->c, (int64_t)T * fb);
        ss_gemm(be, &d2, w->h, k->w_l2, out);                                      /* x += tdf(x)      */
        norm_act(m, be, t, out, &k->n4, 1, k->c, TF);
        conv3x3(be, out, t, k->w_tfc2, 1, k->c, k->c, T, F);
        ss_add(be, out, out, w->sc, (size_t)k->c * (size_t)TF);                     /* x = tfc2 + s     */
    }
}

/* mixT [Dc, N, f] in w->h from x [C, L] (one item), the spectrum in w->sc */
static void mix_spectrum(mx_model *m, ss_backend *be, const float *x, int64_t length)
{
    mx_ws *w = &m->ws;
    const mx_hp *hp = &m->hp;
    int N = w->frames;
    size_t FN = (size_t)hp->F * N, fdN = (size_t)hp->dim_f * N;
    float *crop = w->sc + (size_t)hp->C * 2 * FN;
    ss_stft_desc sd = {.batch = hp->C, .length = length, .n_fft = hp->n_fft, .hop = hp->hop};
    ss_stft(be, &sd, x, w->sc);                                              /* [C, 2, F, N]          */
    ss_copy2d(be, crop, fdN, w->sc, FN, (size_t)hp->C * 2, fdN);             /* [Dc, f, N]            */
    ss_transpose(be, w->h, crop, hp->Dc, hp->f, N);                          /* mixT [Dc, N, f]       */
}

/* y [S, C, L] = the network on x [C, L]: one item */
static void forward_item(mx_model *m, ss_backend *be, const float *x, float *y, int64_t length)
{
    const mx_hp *hp = &m->hp;
    mx_ws *w = &m->ws;
    int N = w->frames, f = hp->f, c0 = hp->c0, Dc = hp->Dc, S = hp->S, C = hp->C, F = hp->F, n = hp->n;
    size_t FN = (size_t)F * N, fdN = (size_t)hp->dim_f * N, fN = (size_t)f * N;
    float *a = w->arena;
    mix_spectrum(m, be, x, length);
    conv1x1(be, a, w->h, m->w_first, 1, Dc, c0, (int64_t)fN, Dc, 0.0f);      /* fco [c0, N, f] at U_0 */
    int T = N, Fj = f;
    for (int j = 0; j < n; j++) {                                            /* encoder               */
        const mx_level *v = &m->lv[j];
        float *skip = a + w->u[j];
        tfc_tdf(m, be, v->enc, a, skip, a, T, Fj, 0);                        /* K_j = TFC_TDF(U_j)    */
        norm_act(m, be, w->sc, skip, &v->dn, 1, v->ch, (int64_t)T * Fj);
        ss_conv2d_desc d = {.batch = 1, .cin = v->ch, .h = T, .w = Fj, .cout = v->ch + hp->g, .kh = hp->s0,
                            .kw = hp->s1, .sh = hp->s0, .sw = hp->s1, .dh = 1, .dw = 1};
        ss_conv2d(be, &d, w->sc, v->w_down, NULL, a);                        /* U_{j+1} [ch+g, T/s0, F/s1] */
        T /= hp->s0;
        Fj /= hp->s1;
    }
    float *xo = a + w->E[n];                                                 /* the bottleneck's output */
    tfc_tdf(m, be, m->bott, a, xo, a, T, Fj, 0);
    for (int j = n - 1; j >= 0; j--) {                                       /* decoder               */
        const mx_level *v = &m->lv[j];
        norm_act(m, be, w->sc, xo, &v->un, 1, v->ch + hp->g, (int64_t)T * Fj);
        ss_convt2d_desc d = {.batch = 1, .cin = v->ch + hp->g, .h = T, .w = Fj, .cout = v->ch, .kh = hp->s0,
                             .kw = hp->s1, .sh = hp->s0, .sw = hp->s1};
        float *cat = a + w->u[j] - w->E[j];                                  /* [up | skip j]         */
        ss_conv_transpose2d(be, &d, w->sc, v->w_up, NULL, cat);              /* up [ch, T, F]         */
        T *= hp->s0;
        Fj *= hp->s1;
        tfc_tdf(m, be, v->dec, cat, cat, a + w->u[j], T, Fj, w->slab_rows[j]);  /* x [ch, T, F]      */
        xo = cat;
    }
    float *k0 = a + w->u[0];                                                 /* K_0, free now         */
    mix_spectrum(m, be, x, length);                                          /* mixT again            */
    conv1x1(be, k0, w->h, m->w_first, 1, Dc, c0, (int64_t)fN, Dc, 0.0f);     /* first_conv_out        */
    ss_mul(be, xo, xo, k0, (size_t)c0 * fN);                                 /* x * first_conv_out    */
    /* final_conv on cat([mixT, x]): the two halves of its first weight */
    conv1x1(be, k0, w->h, m->w_final1, 1, Dc, c0, (int64_t)fN, c0 + Dc, 0.0f);
    conv1x1(be, k0, xo, m->w_final1 + Dc, 1, c0, c0, (int64_t)fN, c0 + Dc, 1.0f);
    act(m, be, k0, k0, (size_t)c0 * fN);
    float *fo2 = w->sc + (size_t)S * Dc * fN;
    conv1x1(be, w->sc, k0, m->w_final2, 1, c0, S * Dc, (int64_t)fN, c0, 0.0f);  /* [S*Dc, N, f]      */
    ss_transpose(be, fo2, w->sc, S * Dc, N, f);                              /* [S, 2C, Fd, N]        */
    if (hp->dim_f < F)
        ss_fill(be, a, 0.0f, (size_t)S * C * 2 * FN);
    ss_copy2d(be, a, FN, fo2, fdN, (size_t)S * C * 2, fdN);                  /* Y [S*C, 2, F, N]      */
    ss_stft_desc id = {.batch = S * C, .length = length, .n_fft = hp->n_fft, .hop = hp->hop};
    ss_istft(be, &id, a, y);                                                 /* y [S, C, L]           */
}

/* The batch item by item, through one chunk's workspace: every convolution ran
 * item by item already (the stems of a chunk must not depend on the chunks
 * beside it), and the workspace does not grow with the batch. */
static ss_status mx_forward(void *state, ss_backend *be, const float *x, float *y, int batch, int64_t length,
                            ss_error *err)
{
    mx_model *m = state;
    const mx_hp *hp = &m->hp;
    ss_status s = ws_get(m, be, length, err);
    if (s != SS_OK)
        return s;
    size_t in = (size_t)hp->C * (size_t)length, out = (size_t)hp->S * in;
    for (int b = 0; b < batch; b++)
        forward_item(m, be, x + b * in, y + b * out, length);
    return ss_backend_check(be, err);
}

/* Weights and the workspace (with the device's extra buffer), plus the
 * engine's transfer buffers per segment. */
static ss_status mx_memory_estimate(ss_st *st, const ss_model_info *info, ss_mem_estimate *out, ss_error *err)
{
    mx_hp hp;
    ss_status s = read_hp(st, info, &hp, err);
    if (s != SS_OK)
        return s;
    int64_t L = info->segment_length;
    mx_plan z = ws_plan(&hp, (int)(L / hp.hop + 1));
    uint64_t io = (uint64_t)hp.C * (uint64_t)L * (1u + (uint64_t)hp.S);
    out->fixed = info->parameters * 4u + 4u * ((uint64_t)z.arena + z.sc + z.h + z.o);
    out->per_item = 4u * io;
    return SS_OK;
}

/* Every step of mx_forward is a device op once ws_get has made the workspace
 * for this length (a pass with another length remakes it). */
static int mx_graph_ok(void *state, int batch, int64_t length)
{
    const mx_ws *w = &((const mx_model *)state)->ws;
    (void)batch;
    return w->arena && w->length == length;
}

const ss_arch ss_arch_mdx23c = {
    .name = "mdx23c",
    .load = mx_load,
    .forward = mx_forward,
    .free = mx_free,
    .graph_ok = mx_graph_ok,
    .chunking = SS_CHUNK_MSST,
    .memory_estimate = mx_memory_estimate,
};

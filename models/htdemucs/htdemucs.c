/* htdemucs.c - Hybrid Transformer Demucs (demucs v4) forward pass.
 *
 * One file, read top to bottom: hyperparameters, weights, the weight table
 * that loads them, the workspace, the layer functions, forward(), and the bag
 * of models that runs several of them.  Written against backend.h only.
 *
 * The network (B batch, C audio channels, S sources, L = training length):
 *
 *   mix [B, C, L] --pad/stft/crop--> z [B, 2C, Fq, T] (complex as channels)
 *      freq branch x = (z - mean) / (1e-5 + std)   time branch xt = (mix - meant) / (1e-5 + stdt)
 *      encoder i:  x  = HEnc_freq(x)     [B, C_i, F_i, T]     xt = HEnc_time(xt) [B, C_i, L_i]
 *                  (after encoder 0: x += freq_emb * emb_scale * W^T)
 *      transformer: x, xt = CrossTransformer(x, xt)  (1x1 convs around it if bottom_channels)
 *      decoder i (reverse): x = HDec_freq(x + skip)   xt = HDec_time(xt + skip_t)
 *   out = istft(x * std + mean) + (xt * stdt + meant)      -> [B, S, C, L]
 *
 * Only configurations in which every encoder layer is a frequency layer whose
 * frequency count stays above the kernel size are implemented (all released
 * models); the rest is refused at load with SS_E_DATA.
 */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/clock.h"
#include "../../src/settings.h"
#include "../../src/model.h"
#include "fused.h"

#define HT_MAX_DEPTH 8      /* encoder/decoder layers                 */
#define HT_MAX_DCONV 8      /* residual layers in one DConv           */
#define HT_MAX_TLAYERS 32   /* transformer layers per branch          */
#define HT_MAX_BAG 16       /* models in a bag                        */
#define HT_EPS 1e-5f        /* eps of every GroupNorm / LayerNorm     */

/* ============================================================================
 * Hyperparameters (metadata htdemucs.<constructor argument>)
 * ========================================================================== */

typedef struct ht_hparams {
    int sources;            /* S: stems produced                                     */
    int audio_channels;     /* C: audio channels in and out                          */
    int channels;           /* hidden channels of the first freq layer               */
    int channels_time;      /* hidden channels of the first time layer (0 = channels) */
    double growth;          /* channel multiplier per layer                          */
    int nfft;               /* STFT size; hop = nfft / 4                             */
    int depth;              /* encoder (= decoder) layers                            */
    int rewrite;            /* 1x1 (enc) / 3x3 (dec) conv + GLU in each layer        */
    double freq_emb;        /* weight of the frequency embedding (0 = none)          */
    double emb_scale;       /* ScaledEmbedding scale                                 */
    int kernel_size;        /* conv kernel of the encoder/decoder layers             */
    int stride;             /* conv stride of the encoder/decoder layers             */
    int context;            /* decoder rewrite conv context (kernel 1 + 2 context)   */
    int context_enc;        /* encoder rewrite conv context                          */
    int norm_starts;        /* first layer index with GroupNorm                      */
    int norm_groups;        /* groups of those GroupNorms                            */
    int dconv_mode;         /* bit 0: DConv in encoders, bit 1: in decoders          */
    int dconv_depth;        /* DConv residual layers (< 0: no dilation)              */
    double dconv_comp;      /* DConv channel compression                             */
    int bottom_channels;    /* 1x1 convs to this width around the transformer (0 = off) */
    int t_layers;           /* transformer layers per branch                         */
    double t_hidden_scale;  /* feed-forward width / model width                      */
    int t_heads;            /* attention heads                                       */
    int t_norm_in;          /* LayerNorm before the positional embedding             */
    int t_norm_out;         /* GroupNorm(1) at the end of each layer                 */
    double t_max_period;    /* sinusoidal embedding period                           */
    int t_layer_scale;      /* LayerScale on both residual branches                  */
    double t_weight_pos_embed; /* weight of the positional embedding                 */
    int t_cross_first;      /* layer 0 is cross-attention (else self-attention)      */
    int samplerate;         /* Hz                                                    */
    int64_t segment_num, segment_den; /* training segment, seconds                   */
    int use_train_segment;  /* pad every input to the training length                */
    int64_t train_length;   /* floor(segment * samplerate)                           */
} ht_hparams;

/* ============================================================================
 * Weights (device memory; shapes as in the checkpoint)
 * ========================================================================== */

typedef struct ht_conv {     /* a Conv1d/Conv2d or ConvTranspose1d/2d and its geometry  */
    float *w;                /* conv [cout, cin, kh, kw]; transposed [cin, cout, kh, kw] */
    float *b;                /* [cout]                                                   */
    int cin, cout, kh, kw;   /* 1-D convs have kh = 1                                    */
    int sh, sw, ph, pw, dh, dw;
} ht_conv;

typedef struct ht_affine {   /* GroupNorm / LayerNorm affine parameters */
    float *w;                /* gamma [ch] */
    float *b;                /* beta [ch]  */
} ht_affine;

typedef struct ht_dconv_layer {
    ht_conv conv1;           /* Conv1d(ch, hidden, 3, dilation d, padding d)  w [hidden, ch, 3] */
    ht_affine norm1;         /* GroupNorm(1, hidden)                                        */
    ht_conv conv2;           /* Conv1d(hidden, 2 ch, 1)                       w [2ch, hidden, 1] */
    ht_affine norm2;         /* GroupNorm(1, 2 ch); the first ch channels carry the LayerScale */
    float *scale;            /* LayerScale [ch] (folded into norm2 at load)                  */
} ht_dconv_layer;

typedef struct ht_dconv {    /* DConv residual branch on [n, ch, T] */
    int depth, hidden;
    ht_dconv_layer l[HT_MAX_DCONV];
} ht_dconv;

typedef struct ht_layer {    /* one HEncLayer or HDecLayer */
    int freq;                /* 1: on [B, ch, F, T] with kernels [k, 1]; 0: on [B, ch, T]   */
    int last;                /* decoder 0: no GELU at the end                               */
    int cin, cout;
    int norm;                /* GroupNorm(norm_groups) (else identity)                      */
    ht_conv conv;            /* enc: conv  [cout, cin, k(, 1)]; dec: conv_tr [cin, cout, k(, 1)] */
    ht_affine norm1;         /* enc: after conv [cout]; dec: after rewrite [2 cin]          */
    ht_affine norm2;         /* enc: after rewrite [2 cout]; dec: after conv_tr [cout]      */
    int has_rewrite;
    ht_conv rewrite;         /* enc: [2cout, cout, 1+2ce(, same)]; dec: [2cin, cin, 3(, 3)]  */
    int has_dconv;
    ht_dconv dconv;          /* on enc output channels / dec input channels                 */
} ht_layer;

typedef struct ht_tlayer {   /* MyTransformerEncoderLayer or CrossTransformerEncoderLayer */
    int cross;
    ht_affine norm1, norm2;  /* LayerNorm [D] (cross: norm1 on queries, norm2 on keys)     */
    ht_affine norm3;         /* cross only: LayerNorm [D] before the feed-forward          */
    ht_affine norm_out;      /* GroupNorm(1, D) over tokens and channels, when t_norm_out  */
    float *in_w;             /* attention in_proj_weight [3D, D] (q, k, v rows)            */
    float *in_b;             /* in_proj_bias [3D]                                          */
    float *out_w, *out_b;    /* out_proj [D, D], [D] (rows scaled by gamma1 at load)       */
    float *l1_w, *l1_b;      /* linear1 [H, D], [H]                                        */
    float *l2_w, *l2_b;      /* linear2 [D, H], [D] (rows scaled by gamma2 at load)        */
    float *gamma1, *gamma2;  /* LayerScale [D] (NULL without t_layer_scale); folded       */
} ht_tlayer;

typedef struct ht_model {    /* one HTDemucs */
    ht_hparams hp;
    int hop;                 /* nfft / 4                                        */
    int fq;                  /* nfft / 2: frequency bins the network sees       */
    int xch[HT_MAX_DEPTH + 1]; /* freq channels entering encoder i (xch[0] = 2C)  */
    int tch[HT_MAX_DEPTH + 1]; /* time channels entering encoder i (tch[0] = C)   */
    ht_layer enc[HT_MAX_DEPTH], tenc[HT_MAX_DEPTH]; /* indexed by depth            */
    ht_layer dec[HT_MAX_DEPTH], tdec[HT_MAX_DEPTH]; /* dec[i] undoes enc[i]         */
    float *freq_emb;         /* [xch[1], F_1]: freq_emb * emb_scale * W^T, or NULL */
    int tdim;                /* D: transformer width                            */
    int thidden;             /* H: feed-forward width                           */
    ht_conv up, down, up_t, down_t; /* 1x1 convs when bottom_channels > 0       */
    ht_affine norm_in, norm_in_t;   /* LayerNorm [D] (w == NULL: t_norm_in off) */
    ht_tlayer layers[HT_MAX_TLAYERS], layers_t[HT_MAX_TLAYERS];
    /* positional embeddings, kept for the last geometry */
    int pos_fr, pos_t1, pos_t2;
    float *pos2d;            /* [Fr * T1, D] (token n = f * T1 + t), weighted   */
    float *pos1d;            /* [T2, D], weighted                               */
    /* the backend's fused kernels (fused.h), NULL where it has none: asked once at load */
    const ht_dconv_rows_k *k_dconv_rows;
    const ht_conv1x1_gn_glu_add_k *k_c1g;
    const ht_conv1x1_glu_k *k_c1glu;
    /* every device allocation of this model, for freeing */
    float **allocs;
    int n_allocs, cap_allocs;
} ht_model;

/* ============================================================================
 * Workspace: every activation buffer, allocated once per (batch, length)
 * ========================================================================== */

/* Attention scores held at once on devices (floats): 256 MiB, the eight heads
 * of the full-size model's frequency branch (2688 x 2688 each) in one batched
 * product; longer segments get groups of fewer heads instead of a larger
 * buffer.  (A 64 MiB budget, two heads per product, saved 290 MiB of device
 * memory but cost 3% of the forward time on an H100.) */
#define HT_SCORES_FLOATS ((size_t)64 << 20)

/* Heads per batched attention product when `fit` heads' scores fit the buffer:
 * 1 .. heads. */
static int head_group(size_t fit, int heads)
{
    return fit < 1 ? 1 : fit > (size_t)heads ? heads : (int)fit;
}

enum {
    W_MIXP,    /* [B, C, L]               input zero-padded to the training length   */
    W_SIG,     /* [B*C, Ls]               reflect-padded signal for the STFT         */
    W_SPEC,    /* [B*C, 2, Fq+1, T+4]     STFT / iSTFT input                         */
    W_XF,      /* [B, 2C, Fq, T]          normalised spectrogram (encoder 0 input)   */
    W_XT,      /* [B, C, L]               normalised waveform (time encoder 0 input) */
    W_STATS,   /* [8, B]                  mean, std, scale, shift (freq, then time)  */
    W_A, W_P, W_Q, W_H, /* freq scratch, each the largest layer tensor               */
    W_R,       /* freq scratch: 2 x largest layer tensor, or a conv_tr output        */
    W_TA, W_TP, W_TH, W_TR, /* the time branch's own (it may run beside the freq one) */
    W_IO0, W_IO1,   /* freq decoder ping-pong                                        */
    W_TIO0, W_TIO1, /* time decoder ping-pong                                        */
    W_X, W_XTK,     /* transformer tokens [B*N1, D], [B*N2, D]                       */
    W_LNQ, W_KX, W_KXT, /* normalised queries / keys                                 */
    W_QB, W_KV, W_CTX,  /* [B*N, D], [B*N, 2D], [B*N, D]                             */
    W_HID,          /* [B*N, H] feed-forward hidden                                   */
    W_SCORES,       /* [Nq, Nk] one head's attention matrix                           */
    W_TLNQ, W_TQB, W_TKV, W_TCTX, W_THID, /* the time sublayers' own (fused attention:
                                           * they may run beside the frequency ones)   */
    W_ONES,         /* [B*N] ones (rank-1 bias gemm)                                  */
    W_BOT, W_BOTT,  /* bottom-channel views [B, D, N1], [B, D, N2]                    */
    W_WAVE,         /* [B*S*C, Ls] iSTFT output                                       */
    W_XTC,          /* [B*S*C, length] cropped time output                            */
    W_BAG,          /* [B, S, C, length] one bag member's output                      */
    W_SKIP,         /* W_SKIP + i: freq encoder i output;  + HT_MAX_DEPTH + i: time   */
    W_COUNT = W_SKIP + 2 * HT_MAX_DEPTH
};

typedef struct ht_ws {
    int batch;               /* key: buffers fit this batch ...       */
    int64_t length;          /* ... and this input length (0 = none)  */
    size_t cap[W_COUNT];     /* floats allocated                      */
    float *buf[W_COUNT];
    int heads_batched;       /* batched attention products over heads */
    int attn_fused;          /* the backend fuses every attention (no W_SCORES) */
} ht_ws;

/* Sizes that depend on (batch, length): computed by ht_plan. */
typedef struct ht_geom {
    int B;
    int64_t length;          /* input samples                                  */
    int64_t L;               /* samples the network runs on (>= length)        */
    int T;                   /* spectrogram frames = ceil(L / hop)             */
    int64_t pad_l, pad_r;    /* reflect padding before the STFT                */
    int64_t ls;              /* padded signal length = (T + 3) hop             */
    int F[HT_MAX_DEPTH + 1]; /* freq bins entering encoder i                    */
    int64_t Lt[HT_MAX_DEPTH + 1]; /* time samples entering time encoder i       */
    int64_t N1, N2;          /* transformer tokens per item                    */
} ht_geom;

typedef struct ht_bag {      /* the state the architecture returns */
    int n;                   /* models                                          */
    ht_model *m[HT_MAX_BAG];
    float *w;                /* [n, S] host: weight of source s in model i      */
    float *wdev;             /* [n + 1, S] device: weights, then 1 / column sum */
    int sources, channels;
    ht_ws ws;                /* shared by the models (run one after the other)  */
} ht_bag;

/* ============================================================================
 * Metadata
 * ========================================================================== */

typedef struct ht_meta {
    ss_st *st;
    char prefix[32];         /* "" or "models.{i}."  */
    const char *path;
    ss_error *err;
} ht_meta;

static const char *meta_raw(ht_meta *md, const char *arg, char *key, size_t ksize)
{
    snprintf(key, ksize, "%shtdemucs.%s", md->prefix, arg);
    return ss_st_meta(md->st, key);
}

static ss_status meta_missing(ht_meta *md, const char *key)
{
    return ss_fail(md->err, SS_E_DATA, "%s: metadata '%s' is missing (convert the checkpoint with "
                   "scripts/convert-demucs.py)", md->path, key);
}

/* Copy the value without surrounding blanks and quotes. */
static void meta_clean(const char *v, char *out, size_t osize)
{
    while (isspace((unsigned char)*v) || *v == '"' || *v == '\'')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (isspace((unsigned char)v[n - 1]) || v[n - 1] == '"' || v[n - 1] == '\''))
        n--;
    if (n >= osize)
        n = osize - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static int is_none(const char *v)
{
    return strcmp(v, "None") == 0 || strcmp(v, "none") == 0 || strcmp(v, "null") == 0 || strcmp(v, "") == 0;
}

static ss_status meta_double(ht_meta *md, const char *arg, double *out)
{
    char key[160], v[64];
    const char *raw = meta_raw(md, arg, key, sizeof key);
    if (!raw)
        return meta_missing(md, key);
    meta_clean(raw, v, sizeof v);
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !isfinite(d))
        return ss_fail(md->err, SS_E_DATA, "%s: metadata '%s' = '%s' is not a number", md->path, key, raw);
    *out = d;
    return SS_OK;
}

static ss_status meta_int(ht_meta *md, const char *arg, int *out)
{
    double d;
    ss_status s = meta_double(md, arg, &d);
    if (s != SS_OK)
        return s;
    if (d != floor(d) || d < -1e6 || d > 1e9) {
        char key[160];
        meta_raw(md, arg, key, sizeof key);
        return ss_fail(md->err, SS_E_DATA, "%s: metadata '%s' = %g is not an integer in range", md->path, key, d);
    }
    *out = (int)d;
    return SS_OK;
}

/* An int that may be None (-> `none`). */
static ss_status meta_int_or_none(ht_meta *md, const char *arg, int none, int *out)
{
    char key[160], v[64];
    const char *raw = meta_raw(md, arg, key, sizeof key);
    if (!raw)
        return meta_missing(md, key);
    meta_clean(raw, v, sizeof v);
    if (is_none(v)) {
        *out = none;
        return SS_OK;
    }
    return meta_int(md, arg, out);
}

static ss_status meta_bool(ht_meta *md, const char *arg, int *out)
{
    char key[160], v[64];
    const char *raw = meta_raw(md, arg, key, sizeof key);
    if (!raw)
        return meta_missing(md, key);
    meta_clean(raw, v, sizeof v);
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "0"))
        *out = 0;
    else
        return ss_fail(md->err, SS_E_DATA, "%s: metadata '%s' = '%s' is not a boolean", md->path, key, raw);
    return SS_OK;
}

static ss_status meta_string(ht_meta *md, const char *arg, char *out, size_t osize)
{
    char key[160];
    const char *raw = meta_raw(md, arg, key, sizeof key);
    if (!raw)
        return meta_missing(md, key);
    meta_clean(raw, out, osize);
    return SS_OK;
}

/* Refuse a hyperparameter value this implementation does not run. */
static ss_status refuse(ht_meta *md, const char *arg, const char *what)
{
    return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs.%s: %s is not implemented", md->path, md->prefix, arg, what);
}

/* Number of names in a list written as "a,b", "[a, b]" or "['a', 'b']"; -1 if
 * a name differs from `expect` (NULL: not compared). */
static int list_count(const char *v, const char (*expect)[SS_MAX_NAME])
{
    int n = 0;
    const char *p = v;
    while (*p) {
        while (*p && strchr("[], \t'\"", *p))
            p++;
        if (!*p)
            break;
        const char *q = p;
        while (*q && !strchr("[],'\"", *q))
            q++;
        size_t len = (size_t)(q - p);
        while (len > 0 && isspace((unsigned char)p[len - 1]))
            len--;
        if (expect && n < SS_MAX_SOURCES && (len >= SS_MAX_NAME || strncmp(expect[n], p, len) || expect[n][len]))
            return -1;
        n++;
        p = q;
    }
    return n;
}

static ss_status read_hparams(ht_meta *md, const ss_model_info *info, ht_hparams *hp)
{
    ss_status s;
    char v[1024];
    int b;
    double d;
    memset(hp, 0, sizeof *hp);

    if ((s = meta_string(md, "sources", v, sizeof v)) != SS_OK)
        return s;
    int ns = list_count(v, NULL);
    if (ns != info->n_sources || list_count(v, info->sources) != ns)
        return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs.sources '%s' does not match stemsplit.sources",
                       md->path, md->prefix, v);
    hp->sources = ns;

#define GET(kind, name, dst) \
    if ((s = meta_##kind(md, name, dst)) != SS_OK) \
        return s
    GET(int, "audio_channels", &hp->audio_channels);
    GET(int, "channels", &hp->channels);
    if ((s = meta_int_or_none(md, "channels_time", 0, &hp->channels_time)) != SS_OK)
        return s;
    GET(double, "growth", &hp->growth);
    GET(int, "nfft", &hp->nfft);
    GET(int, "depth", &hp->depth);
    GET(bool, "rewrite", &hp->rewrite);
    GET(double, "freq_emb", &hp->freq_emb);
    GET(double, "emb_scale", &hp->emb_scale);
    GET(int, "kernel_size", &hp->kernel_size);
    GET(int, "stride", &hp->stride);
    GET(int, "context", &hp->context);
    GET(int, "context_enc", &hp->context_enc);
    GET(int, "norm_starts", &hp->norm_starts);
    GET(int, "norm_groups", &hp->norm_groups);
    GET(int, "dconv_mode", &hp->dconv_mode);
    GET(int, "dconv_depth", &hp->dconv_depth);
    GET(double, "dconv_comp", &hp->dconv_comp);
    GET(int, "bottom_channels", &hp->bottom_channels);
    GET(int, "t_layers", &hp->t_layers);
    GET(double, "t_hidden_scale", &hp->t_hidden_scale);
    GET(int, "t_heads", &hp->t_heads);
    GET(bool, "t_norm_in", &hp->t_norm_in);
    GET(bool, "t_norm_out", &hp->t_norm_out);
    GET(double, "t_max_period", &hp->t_max_period);
    GET(bool, "t_layer_scale", &hp->t_layer_scale);
    GET(double, "t_weight_pos_embed", &hp->t_weight_pos_embed);
    GET(bool, "t_cross_first", &hp->t_cross_first);
    GET(int, "samplerate", &hp->samplerate);
    GET(bool, "use_train_segment", &hp->use_train_segment);

    /* what is refused */
    GET(bool, "cac", &b);
    if (!b)
        return refuse(md, "cac", "false (magnitude masking / Wiener filtering)");
    if ((s = meta_string(md, "multi_freqs", v, sizeof v)) != SS_OK)
        return s;
    if (!is_none(v) && list_count(v, NULL) != 0)
        return refuse(md, "multi_freqs", "a non-empty list (MultiWrap)");
    if ((s = meta_string(md, "t_emb", v, sizeof v)) != SS_OK)
        return s;
    if (hp->t_layers > 0 && strcmp(v, "sin") != 0)
        return refuse(md, "t_emb", "a positional embedding other than \"sin\"");
    GET(int, "t_sin_random_shift", &b);
    if (hp->t_layers > 0 && b != 0)
        return refuse(md, "t_sin_random_shift", "a random shift (non-deterministic inference)");
    GET(bool, "t_norm_in_group", &b);
    if (hp->t_layers > 0 && !hp->t_norm_in && b)
        return refuse(md, "t_norm_in_group", "true");
    GET(bool, "t_group_norm", &b);
    if (hp->t_layers > 0 && b)
        return refuse(md, "t_group_norm", "true");
    GET(bool, "t_norm_first", &b);
    if (hp->t_layers > 0 && !b)
        return refuse(md, "t_norm_first", "false (post-norm transformer layers)");
    GET(bool, "t_gelu", &b);
    if (hp->t_layers > 0 && !b)
        return refuse(md, "t_gelu", "false (ReLU)");
    GET(bool, "t_sparse_self_attn", &b);
    if (hp->t_layers > 0 && b)
        return refuse(md, "t_sparse_self_attn", "true");
    GET(bool, "t_sparse_cross_attn", &b);
    if (hp->t_layers > 0 && b)
        return refuse(md, "t_sparse_cross_attn", "true");
#undef GET

    /* the segment */
    char key[160];
    meta_raw(md, "segment", key, sizeof key);
    if ((s = ss_st_meta_fraction(md->st, key, &hp->segment_num, &hp->segment_den, md->err)) != SS_OK)
        return s;
    if (hp->segment_num <= 0 || hp->segment_num / hp->segment_den > 3600)
        return ss_fail(md->err, SS_E_DATA, "%s: %s out of range", md->path, key);

    /* ranges */
    if (hp->audio_channels != info->channels)
        return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs.audio_channels %d differs from stemsplit.channels %d",
                       md->path, md->prefix, hp->audio_channels, info->channels);
    if (hp->samplerate != info->samplerate)
        return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs.samplerate %d differs from stemsplit.samplerate %d",
                       md->path, md->prefix, hp->samplerate, info->samplerate);
    hp->train_length = (int64_t)hp->samplerate * hp->segment_num / hp->segment_den;
    d = hp->growth;
    if (hp->channels < 1 || hp->channels > 4096 || hp->channels_time < 0 || hp->channels_time > 4096 ||
        !(d >= 1 && d <= 8) || hp->depth < 1 || hp->depth > HT_MAX_DEPTH || hp->nfft < 16 ||
        hp->nfft > 65536 || hp->nfft % 8 || hp->kernel_size < 1 || hp->kernel_size > 64 || hp->stride < 1 ||
        hp->stride > 64 || hp->context < 0 || hp->context > 8 || hp->context_enc < 0 || hp->context_enc > 8 ||
        hp->norm_groups < 1 || hp->dconv_mode < 0 || hp->dconv_mode > 3 || hp->dconv_depth == 0 ||
        abs(hp->dconv_depth) > HT_MAX_DCONV || !(hp->dconv_comp > 0) || hp->bottom_channels < 0 ||
        hp->bottom_channels > 65536 || hp->t_layers < 0 || hp->t_layers > HT_MAX_TLAYERS || hp->t_heads < 1 ||
        !(hp->t_hidden_scale > 0 && hp->t_hidden_scale <= 64) || !(hp->t_max_period > 1) ||
        hp->train_length < 1 || !(hp->emb_scale > 0) || hp->freq_emb < 0)
        return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs.* hyperparameters out of range (channels %d, growth %g, "
                       "depth %d, nfft %d, kernel_size %d, stride %d, dconv_depth %d, t_layers %d, ...)",
                       md->path, md->prefix, hp->channels, hp->growth, hp->depth, hp->nfft, hp->kernel_size,
                       hp->stride, hp->dconv_depth, hp->t_layers);
    return SS_OK;
}

/* ============================================================================
 * The weight table: (name, expected shape, destination), all required
 * ========================================================================== */

typedef struct ht_want {
    char name[160];
    int ndim;
    int64_t shape[4];
    float **dst;             /* device pointer to set                */
    float **host;            /* or: keep a host copy (caller frees)  */
} ht_want;

typedef struct ht_table {
    ht_want *v;
    int n, cap;
    int oom;
    const char *prefix;
} ht_table;

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static void want(ht_table *t, float **dst, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (t->oom)
        return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        ht_want *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v) {
            t->oom = 1;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    ht_want *e = &t->v[t->n++];
    memset(e, 0, sizeof *e);
    int len = snprintf(e->name, sizeof e->name, "%s", t->prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name + len, sizeof e->name - (size_t)len, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->dst = dst;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* conv weight + bias under `base`; `dims` 1 or 2; transposed: weight [cin, cout, ...] */
static void want_conv(ht_table *t, ht_conv *c, int dims, int transposed, const char *base)
{
    int64_t a = transposed ? c->cin : c->cout, b = transposed ? c->cout : c->cin;
    if (dims == 2)
        want(t, &c->w, 4, SHAPE(a, b, c->kh, c->kw), "%s.weight", base);
    else
        want(t, &c->w, 3, SHAPE(a, b, c->kw), "%s.weight", base);
    want(t, &c->b, 1, SHAPE(c->cout), "%s.bias", base);
}

static void want_affine(ht_table *t, ht_affine *a, int ch, const char *base)
{
    want(t, &a->w, 1, SHAPE(ch), "%s.weight", base);
    want(t, &a->b, 1, SHAPE(ch), "%s.bias", base);
}

static ht_conv conv_geom(int cin, int cout, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw)
{
    ht_conv c = {.cin = cin, .cout = cout, .kh = kh, .kw = kw, .sh = sh, .sw = sw,
                 .ph = ph, .pw = pw, .dh = dh, .dw = dw};
    return c;
}

/* DConv(ch, compress, depth): layers.{d}.{0 conv, 1 norm, 3 conv, 4 norm, 6 scale} */
static void dconv_build(ht_table *t, ht_dconv *dc, const ht_hparams *hp, int ch, const char *base)
{
    char name[160];
    dc->depth = abs(hp->dconv_depth);
    dc->hidden = (int)((double)ch / hp->dconv_comp);
    for (int d = 0; d < dc->depth; d++) {
        int dil = hp->dconv_depth > 0 ? 1 << d : 1;
        ht_dconv_layer *l = &dc->l[d];
        l->conv1 = conv_geom(ch, dc->hidden, 1, 3, 1, 1, 0, dil, 1, dil);
        l->conv2 = conv_geom(dc->hidden, 2 * ch, 1, 1, 1, 1, 0, 0, 1, 1);
        snprintf(name, sizeof name, "%s.dconv.layers.%d.0", base, d);
        want_conv(t, &l->conv1, 1, 0, name);
        snprintf(name, sizeof name, "%s.dconv.layers.%d.1", base, d);
        want_affine(t, &l->norm1, dc->hidden, name);
        snprintf(name, sizeof name, "%s.dconv.layers.%d.3", base, d);
        want_conv(t, &l->conv2, 1, 0, name);
        snprintf(name, sizeof name, "%s.dconv.layers.%d.4", base, d);
        want_affine(t, &l->norm2, 2 * ch, name);
        want(t, &l->scale, 1, SHAPE(ch), "%s.dconv.layers.%d.6.scale", base, d);
    }
}

/* ============================================================================
 * Architecture: HTDemucs.__init__ as a weight table
 * ========================================================================== */

static ss_status model_build(ht_model *m, ht_table *t, ht_meta *md, float **emb_host)
{
    const ht_hparams *hp = &m->hp;
    char name[160];
    int C = hp->audio_channels, K = hp->kernel_size, st = hp->stride, pad = K / 4;
    int chin = C, chin_z = 2 * C;
    int chout = hp->channels_time ? hp->channels_time : hp->channels, chout_z = hp->channels;
    int freqs = hp->nfft / 2;
    m->hop = hp->nfft / 4;
    m->fq = hp->nfft / 2;
    m->xch[0] = chin_z;
    m->tch[0] = chin;
    for (int i = 0; i < hp->depth; i++) {
        int norm = i >= hp->norm_starts, j = hp->depth - 1 - i; /* j: decoder module index */
        if (freqs <= K)
            return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs: layer %d sees %d frequencies, not more than "
                           "kernel_size %d: merging the time and frequency branches (or time-only layers) is "
                           "not implemented", md->path, md->prefix, i, freqs, K);
        if (chout < 1 || chout_z < 1 || chout_z > 65536 || chout > 65536)
            return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs: channel counts out of range", md->path, md->prefix);

        /* encoder[i]: HEncLayer(chin_z, chout_z), freq, kernel [K, 1], stride [st, 1], pad [K/4, 0] */
        ht_layer *e = &m->enc[i];
        e->freq = 1;
        e->cin = chin_z;
        e->cout = chout_z;
        e->norm = norm;
        e->conv = conv_geom(chin_z, chout_z, K, 1, st, 1, pad, 0, 1, 1);
        snprintf(name, sizeof name, "encoder.%d.conv", i);
        want_conv(t, &e->conv, 2, 0, name);
        if (norm) {
            snprintf(name, sizeof name, "encoder.%d.norm1", i);
            want_affine(t, &e->norm1, chout_z, name);
        }
        if ((e->has_rewrite = hp->rewrite)) {
            int ce = hp->context_enc;
            e->rewrite = conv_geom(chout_z, 2 * chout_z, 1 + 2 * ce, 1 + 2 * ce, 1, 1, ce, ce, 1, 1);
            snprintf(name, sizeof name, "encoder.%d.rewrite", i);
            want_conv(t, &e->rewrite, 2, 0, name);
            if (norm) {
                snprintf(name, sizeof name, "encoder.%d.norm2", i);
                want_affine(t, &e->norm2, 2 * chout_z, name);
            }
        }
        if ((e->has_dconv = hp->dconv_mode & 1)) {
            snprintf(name, sizeof name, "encoder.%d", i);
            dconv_build(t, &e->dconv, hp, chout_z, name);
        }

        /* tencoder[i]: HEncLayer(chin, chout), time, kernel K, stride st, pad K/4 */
        ht_layer *te = &m->tenc[i];
        te->freq = 0;
        te->cin = chin;
        te->cout = chout;
        te->norm = norm;
        te->conv = conv_geom(chin, chout, 1, K, 1, st, 0, pad, 1, 1);
        snprintf(name, sizeof name, "tencoder.%d.conv", i);
        want_conv(t, &te->conv, 1, 0, name);
        if (norm) {
            snprintf(name, sizeof name, "tencoder.%d.norm1", i);
            want_affine(t, &te->norm1, chout, name);
        }
        if ((te->has_rewrite = hp->rewrite)) {
            int ce = hp->context_enc;
            te->rewrite = conv_geom(chout, 2 * chout, 1, 1 + 2 * ce, 1, 1, 0, ce, 1, 1);
            snprintf(name, sizeof name, "tencoder.%d.rewrite", i);
            want_conv(t, &te->rewrite, 1, 0, name);
            if (norm) {
                snprintf(name, sizeof name, "tencoder.%d.norm2", i);
                want_affine(t, &te->norm2, 2 * chout, name);
            }
        }
        if ((te->has_dconv = hp->dconv_mode & 1)) {
            snprintf(name, sizeof name, "tencoder.%d", i);
            dconv_build(t, &te->dconv, hp, chout, name);
        }

        if (i == 0) { /* the outermost decoders produce every source */
            chin = C * hp->sources;
            chin_z = 2 * chin;
        }

        /* decoder[j]: HDecLayer(chout_z, chin_z), freq, conv_tr kernel [K, 1] stride [st, 1] */
        ht_layer *d = &m->dec[i];
        d->freq = 1;
        d->last = i == 0;
        d->cin = chout_z;
        d->cout = chin_z;
        d->norm = norm;
        d->conv = conv_geom(chout_z, chin_z, K, 1, st, 1, 0, 0, 1, 1);
        snprintf(name, sizeof name, "decoder.%d.conv_tr", j);
        want_conv(t, &d->conv, 2, 1, name);
        if (norm) {
            snprintf(name, sizeof name, "decoder.%d.norm2", j);
            want_affine(t, &d->norm2, chin_z, name);
        }
        if ((d->has_rewrite = hp->rewrite)) {
            int cx = hp->context;
            d->rewrite = conv_geom(chout_z, 2 * chout_z, 1 + 2 * cx, 1 + 2 * cx, 1, 1, cx, cx, 1, 1);
            snprintf(name, sizeof name, "decoder.%d.rewrite", j);
            want_conv(t, &d->rewrite, 2, 0, name);
            if (norm) {
                snprintf(name, sizeof name, "decoder.%d.norm1", j);
                want_affine(t, &d->norm1, 2 * chout_z, name);
            }
        }
        if ((d->has_dconv = (hp->dconv_mode & 2) != 0)) {
            snprintf(name, sizeof name, "decoder.%d", j);
            dconv_build(t, &d->dconv, hp, chout_z, name);
        }

        /* tdecoder[j]: HDecLayer(chout, chin), time, conv_tr kernel K stride st */
        ht_layer *td = &m->tdec[i];
        td->freq = 0;
        td->last = i == 0;
        td->cin = chout;
        td->cout = chin;
        td->norm = norm;
        td->conv = conv_geom(chout, chin, 1, K, 1, st, 0, 0, 1, 1);
        snprintf(name, sizeof name, "tdecoder.%d.conv_tr", j);
        want_conv(t, &td->conv, 1, 1, name);
        if (norm) {
            snprintf(name, sizeof name, "tdecoder.%d.norm2", j);
            want_affine(t, &td->norm2, chin, name);
        }
        if ((td->has_rewrite = hp->rewrite)) {
            int cx = hp->context;
            td->rewrite = conv_geom(chout, 2 * chout, 1, 1 + 2 * cx, 1, 1, 0, cx, 1, 1);
            snprintf(name, sizeof name, "tdecoder.%d.rewrite", j);
            want_conv(t, &td->rewrite, 1, 0, name);
            if (norm) {
                snprintf(name, sizeof name, "tdecoder.%d.norm1", j);
                want_affine(t, &td->norm1, 2 * chout, name);
            }
        }
        if ((td->has_dconv = (hp->dconv_mode & 2) != 0)) {
            snprintf(name, sizeof name, "tdecoder.%d", j);
            dconv_build(t, &td->dconv, hp, chout, name);
        }

        m->xch[i + 1] = chout_z;
        m->tch[i + 1] = chout;
        chin = chout;
        chin_z = chout_z;
        chout = (int)(hp->growth * chout);
        chout_z = (int)(hp->growth * chout_z);
        freqs /= st;
        if (i == 0 && hp->freq_emb != 0.0) {
            /* ScaledEmbedding(freqs, chin_z): kept on the host, folded at load */
            want(t, NULL, 2, SHAPE(freqs, chin_z), "freq_emb.embedding.weight");
            if (!t->oom)
                t->v[t->n - 1].host = emb_host;
        }
    }

    /* the cross-domain transformer */
    int dx = m->xch[hp->depth], dt = m->tch[hp->depth];
    if (hp->t_layers == 0)
        return SS_OK;
    if (dx != dt)
        return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs: the branches end with %d and %d channels; the "
                       "transformer needs them equal", md->path, md->prefix, dx, dt);
    int D = dx;
    if (hp->bottom_channels) {
        D = hp->bottom_channels;
        m->up = conv_geom(dx, D, 1, 1, 1, 1, 0, 0, 1, 1);
        m->down = conv_geom(D, dx, 1, 1, 1, 1, 0, 0, 1, 1);
        m->up_t = m->up;
        m->down_t = m->down;
        want_conv(t, &m->up, 1, 0, "channel_upsampler");
        want_conv(t, &m->down, 1, 0, "channel_downsampler");
        want_conv(t, &m->up_t, 1, 0, "channel_upsampler_t");
        want_conv(t, &m->down_t, 1, 0, "channel_downsampler_t");
    }
    if (D % hp->t_heads || D % 4)
        return ss_fail(md->err, SS_E_DATA, "%s: %shtdemucs: transformer width %d must be a multiple of t_heads "
                       "%d and of 4", md->path, md->prefix, D, hp->t_heads);
    m->tdim = D;
    m->thidden = (int)(D * hp->t_hidden_scale);
    int H = m->thidden;
    if (hp->t_norm_in) {
        want_affine(t, &m->norm_in, D, "crosstransformer.norm_in");
        want_affine(t, &m->norm_in_t, D, "crosstransformer.norm_in_t");
    }
    int classic_parity = hp->t_cross_first ? 1 : 0;
    for (int idx = 0; idx < hp->t_layers; idx++)
        for (int br = 0; br < 2; br++) {
            ht_tlayer *l = br ? &m->layers_t[idx] : &m->layers[idx];
            char base[96];
            snprintf(base, sizeof base, "crosstransformer.%s.%d", br ? "layers_t" : "layers", idx);
            l->cross = idx % 2 != classic_parity;
            const char *attn = l->cross ? "cross_attn" : "self_attn";
            want(t, &l->in_w, 2, SHAPE(3 * D, D), "%s.%s.in_proj_weight", base, attn);
            want(t, &l->in_b, 1, SHAPE(3 * D), "%s.%s.in_proj_bias", base, attn);
            want(t, &l->out_w, 2, SHAPE(D, D), "%s.%s.out_proj.weight", base, attn);
            want(t, &l->out_b, 1, SHAPE(D), "%s.%s.out_proj.bias", base, attn);
            want(t, &l->l1_w, 2, SHAPE(H, D), "%s.linear1.weight", base);
            want(t, &l->l1_b, 1, SHAPE(H), "%s.linear1.bias", base);
            want(t, &l->l2_w, 2, SHAPE(D, H), "%s.linear2.weight", base);
            want(t, &l->l2_b, 1, SHAPE(D), "%s.linear2.bias", base);
            snprintf(name, sizeof name, "%s.norm1", base);
            want_affine(t, &l->norm1, D, name);
            snprintf(name, sizeof name, "%s.norm2", base);
            want_affine(t, &l->norm2, D, name);
            if (l->cross) {
                snprintf(name, sizeof name, "%s.norm3", base);
                want_affine(t, &l->norm3, D, name);
            }
            if (hp->t_norm_out) {
                snprintf(name, sizeof name, "%s.norm_out", base);
                want_affine(t, &l->norm_out, D, name);
            }
            if (hp->t_layer_scale) {
                want(t, &l->gamma1, 1, SHAPE(D), "%s.gamma_1.scale", base);
                want(t, &l->gamma2, 1, SHAPE(D), "%s.gamma_2.scale", base);
            }
        }
    return SS_OK;
}

static float *dev_alloc(ht_model *m, ss_backend *be, size_t n)
{
    if (m->n_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 256;
        float **a = realloc(m->allocs, (size_t)cap * sizeof *a);
        if (!a)
            return NULL;
        m->allocs = a;
        m->cap_allocs = cap;
    }
    float *p = ss_alloc(be, n ? n : 1);
    if (p)
        m->allocs[m->n_allocs++] = p;
    return p;
}

/* Fetch, convert and upload every tensor of the table. */
static ss_status table_load(ht_table *t, ht_model *m, ss_st *st, ss_backend *be, ss_error *err)
{
    for (int i = 0; i < t->n; i++) {
        const ht_want *e = &t->v[i];
        const ss_st_tensor *ten;
        ss_status s = ss_st_get(st, e->name, e->ndim, e->shape, &ten, err);
        if (s != SS_OK)
            return s;
        float *host = malloc((size_t)(ten->numel ? ten->numel : 1) * sizeof *host);
        if (!host)
            return ss_fail(err, SS_E_NOMEM, "%s: out of memory loading %s", ss_st_path(st), e->name);
        ss_st_to_f32(ten, host);
        if (e->host) {
            *e->host = host;
            continue;
        }
        float *dev = dev_alloc(m, be, (size_t)ten->numel);
        if (!dev) {
            free(host);
            ss_backend_status(be, err);
            return ss_fail(err, SS_E_DEVICE, "%s: cannot allocate device memory for %s", ss_st_path(st), e->name);
        }
        s = ss_upload(be, dev, host, (size_t)ten->numel);
        free(host);
        if (s != SS_OK)
            return ss_backend_status(be, err) != SS_OK ? err->code
                   : ss_fail(err, s, "%s: cannot upload %s", ss_st_path(st), e->name);
        *e->dst = dev;
    }
    return SS_OK;
}

static void model_free(ht_model *m, ss_backend *be)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_allocs; i++)
        ss_free(be, m->allocs[i]);
    free(m->allocs);
    if (m->pos2d)
        ss_free(be, m->pos2d);
    if (m->pos1d)
        ss_free(be, m->pos1d);
    free(m);
}

/* w [rows, cols] and b [rows] (device) scaled row by row by g [rows]. */
static ss_status scale_rows(ss_backend *be, float *w, float *b, const float *g, int rows, int cols,
                            const char *path, ss_error *err)
{
    size_t nw = (size_t)rows * cols;
    float *hw = malloc((nw + 2 * (size_t)rows) * sizeof *hw);
    if (!hw)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    float *hb = hw + nw, *hg = hb + rows;
    ss_download(be, hw, w, nw);
    ss_download(be, hb, b, (size_t)rows);
    ss_download(be, hg, g, (size_t)rows);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++)
            hw[(size_t)r * cols + c] *= hg[r];
        hb[r] *= hg[r];
    }
    ss_upload(be, w, hw, nw);
    ss_upload(be, b, hb, (size_t)rows);
    free(hw);
    return ss_backend_status(be, err);
}

/* Fold every LayerScale into the weights before it, so that a forward pass
 * spends no op (no pass over an activation tensor) on it:
 *   transformer: x + g (h W^T + b) = x + h (diag(g) W)^T + g b, and the
 *     product is accumulated straight into x;
 *   DConv: s (a sigmoid(z)) = (s a) sigmoid(z) with a the first ch channels
 *     of GroupNorm norm2, whose gamma and beta are scaled by s.
 * Exact up to float rounding. */
static ss_status fold_layer_scales(ht_model *m, ss_backend *be, const char *path, ss_error *err)
{
    ss_status s = SS_OK;
    int D = m->tdim, H = m->thidden;
    for (int i = 0; i < m->hp.t_layers && s == SS_OK; i++)
        for (int br = 0; br < 2 && s == SS_OK; br++) {
            ht_tlayer *l = br ? &m->layers_t[i] : &m->layers[i];
            if (l->gamma1 && (s = scale_rows(be, l->out_w, l->out_b, l->gamma1, D, D, path, err)) == SS_OK)
                s = scale_rows(be, l->l2_w, l->l2_b, l->gamma2, D, H, path, err);
            l->gamma1 = l->gamma2 = NULL;
        }
    ht_layer *branches[4] = {m->enc, m->tenc, m->dec, m->tdec};
    for (int k = 0; k < 4 && s == SS_OK; k++)
        for (int i = 0; i < m->hp.depth && s == SS_OK; i++) {
            ht_layer *ly = &branches[k][i];
            if (!ly->has_dconv)
                continue;
            int ch = k < 2 ? ly->cout : ly->cin;
            for (int d = 0; d < ly->dconv.depth && s == SS_OK; d++) {
                ht_dconv_layer *dl = &ly->dconv.l[d];
                s = scale_rows(be, dl->norm2.w, dl->norm2.b, dl->scale, ch, 1, path, err);
                dl->scale = NULL;
            }
        }
    return s;
}

/* Model `idx` of a bag (-1: the file holds one model). */
static ss_status model_load(ss_st *st, int idx, const ss_model_info *info, ss_backend *be, ht_model **out,
                            ss_error *err)
{
    ht_model *m = calloc(1, sizeof *m);
    if (!m)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", ss_st_path(st));
    ht_meta md = {.st = st, .path = ss_st_path(st), .err = err};
    if (idx >= 0)
        snprintf(md.prefix, sizeof md.prefix, "models.%d.", idx);
    ht_table t = {.prefix = md.prefix};
    float *emb = NULL;
    m->k_dconv_rows = ss_backend_kernel(be, HT_K_DCONV_ROWS);
    m->k_c1g = ss_backend_kernel(be, HT_K_CONV1X1_GN_GLU_ADD);
    m->k_c1glu = ss_backend_kernel(be, HT_K_CONV1X1_GLU);
    ss_status s = read_hparams(&md, info, &m->hp);
    if (s == SS_OK)
        s = model_build(m, &t, &md, &emb);
    if (s == SS_OK && t.oom)
        s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", md.path);
    if (s == SS_OK)
        s = table_load(&t, m, st, be, err);
    if (s == SS_OK)
        s = fold_layer_scales(m, be, md.path, err);
    if (s == SS_OK && emb) {
        /* x += freq_emb * (W[f, c] * emb_scale), stored transposed [c, f] */
        int c1 = m->xch[1], f1 = m->fq / m->hp.stride;
        float *e = malloc((size_t)c1 * f1 * sizeof *e);
        if (!e) {
            s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", md.path);
        } else {
            float sc = (float)m->hp.emb_scale, wt = (float)m->hp.freq_emb;
            for (int f = 0; f < f1; f++)
                for (int c = 0; c < c1; c++)
                    e[(size_t)c * f1 + f] = wt * (emb[(size_t)f * c1 + c] * sc);
            m->freq_emb = dev_alloc(m, be, (size_t)c1 * f1);
            if (!m->freq_emb)
                s = ss_fail(err, SS_E_DEVICE, "%s: cannot allocate device memory", md.path);
            else
                s = ss_upload(be, m->freq_emb, e, (size_t)c1 * f1);
            free(e);
        }
    }
    free(emb);
    free(t.v);
    if (s == SS_OK)
        s = ss_backend_status(be, err);
    if (s != SS_OK) {
        model_free(m, be);
        return s;
    }
    *out = m;
    return SS_OK;
}

/* ============================================================================
 * Geometry and workspace
 * ========================================================================== */

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Sizes for (B, length); `need` (may be NULL) gets the floats each buffer needs (max-merged). */
static ss_status model_plan(const ht_model *m, int B, int64_t length, ht_geom *g, size_t *need, ss_error *err)
{
    const ht_hparams *hp = &m->hp;
    int D_ = hp->depth, C = hp->audio_channels, S = hp->sources, K = hp->kernel_size, st = hp->stride;
    memset(g, 0, sizeof *g);
    g->B = B;
    g->length = length;
    g->L = hp->use_train_segment ? hp->train_length : length;
    if (length > g->L)
        return ss_fail(err, SS_E_USAGE, "htdemucs: a chunk of %lld samples is longer than the model's training "
                       "segment (%lld samples)", (long long)length, (long long)g->L);
    if (length < 1 || B < 1)
        return ss_fail(err, SS_E_USAGE, "htdemucs: empty input");
    g->T = (int)ceil_div(g->L, m->hop);
    g->pad_l = m->hop / 2 * 3;
    g->pad_r = g->pad_l + (int64_t)g->T * m->hop - g->L;
    g->ls = g->L + g->pad_l + g->pad_r;
    if (g->ls / m->hop + 1 != g->T + 4 || g->ls > (int64_t)1 << 30)
        return ss_fail(err, SS_E_INTERNAL, "htdemucs: bad STFT geometry for %lld samples", (long long)g->L);
    g->F[0] = m->fq;
    g->Lt[0] = g->L;
    int64_t T = g->T;
    size_t u = 0, r = 0, h = 0, ut = 0, rt = 0, ht = 0, io = 0, tio = 0;   /* freq, time scratch sizes */
#define MAXTO(v, x) do { size_t x_ = (size_t)(x); if (x_ > (v)) (v) = x_; } while (0)
    for (int i = 0; i < D_; i++) {
        g->F[i + 1] = ss_conv_out(g->F[i], K, st, K / 4, 1);
        int64_t lp = ceil_div(g->Lt[i], st) * st;
        g->Lt[i + 1] = (lp + 2 * (K / 4) - K) / st + 1;
        if (g->F[i + 1] < 1 || g->Lt[i + 1] < 1)
            return ss_fail(err, SS_E_USAGE, "htdemucs: %lld samples are too few for the model", (long long)g->L);
        int64_t fo = (int64_t)(g->F[i + 1] - 1) * st + K, lz = (g->Lt[i + 1] - 1) * st + K;
        if (fo - 2 * (K / 4) != g->F[i] || lz < K / 4 + g->Lt[i])
            return ss_fail(err, SS_E_DATA, "htdemucs: nfft %d, kernel_size %d and stride %d do not give "
                           "matching encoder/decoder sizes", hp->nfft, K, st);
        size_t xo = (size_t)B * m->xch[i + 1] * g->F[i + 1] * T, to = (size_t)B * m->tch[i + 1] * g->Lt[i + 1];
        MAXTO(u, xo);
        MAXTO(ut, to);
        MAXTO(ut, (size_t)B * m->tch[i] * lp);
        MAXTO(r, 2 * u);
        MAXTO(r, (size_t)B * m->dec[i].cout * fo * T);
        MAXTO(rt, 2 * ut);
        MAXTO(rt, (size_t)B * m->tdec[i].cout * lz);
        if (m->enc[i].has_dconv || m->dec[i].has_dconv) {
            MAXTO(h, (size_t)B * m->enc[i].dconv.hidden * g->F[i + 1] * T);
            MAXTO(h, (size_t)B * m->dec[i].dconv.hidden * g->F[i + 1] * T);
        }
        if (m->tenc[i].has_dconv || m->tdec[i].has_dconv) {
            MAXTO(ht, (size_t)B * m->tenc[i].dconv.hidden * g->Lt[i + 1]);
            MAXTO(ht, (size_t)B * m->tdec[i].dconv.hidden * g->Lt[i + 1]);
        }
        MAXTO(io, (size_t)B * m->dec[i].cout * g->F[i] * T);
        MAXTO(tio, (size_t)B * m->tdec[i].cout * g->Lt[i]);
        if (need) {
            MAXTO(need[W_SKIP + i], xo);
            MAXTO(need[W_SKIP + HT_MAX_DEPTH + i], to);
        }
    }
    MAXTO(io, (size_t)B * m->xch[D_] * g->F[D_] * T);
    MAXTO(tio, (size_t)B * m->tch[D_] * g->Lt[D_]);
    g->N1 = (int64_t)g->F[D_] * T;
    g->N2 = g->Lt[D_];
    if (!need)
        return SS_OK;
    size_t rows = (size_t)B * C, srows = (size_t)B * S * C;
    MAXTO(need[W_MIXP], rows * g->L);
    MAXTO(need[W_SIG], rows * g->ls);
    MAXTO(need[W_SPEC], srows * 2 * (m->fq + 1) * (T + 4));
    MAXTO(need[W_XF], rows * 2 * m->fq * T);
    MAXTO(need[W_XT], rows * g->L);
    MAXTO(need[W_STATS], (size_t)8 * B);
    MAXTO(need[W_A], u);
    MAXTO(need[W_P], u);
    MAXTO(need[W_Q], u);
    MAXTO(need[W_H], h);
    MAXTO(need[W_R], r);
    MAXTO(need[W_TA], ut);
    MAXTO(need[W_TP], ut);
    MAXTO(need[W_TH], ht);
    MAXTO(need[W_TR], rt);
    MAXTO(need[W_IO0], io);
    MAXTO(need[W_IO1], io);
    MAXTO(need[W_TIO0], tio);
    MAXTO(need[W_TIO1], tio);
    MAXTO(need[W_WAVE], srows * g->ls);
    MAXTO(need[W_XTC], srows * length);
    if (hp->t_layers > 0) {
        size_t D = (size_t)m->tdim, n1 = (size_t)g->N1, n2 = (size_t)g->N2, nm = n1 > n2 ? n1 : n2;
        MAXTO(need[W_X], B * n1 * D);
        MAXTO(need[W_XTK], B * n2 * D);
        MAXTO(need[W_LNQ], B * nm * D);
        MAXTO(need[W_KX], B * n1 * D);
        MAXTO(need[W_KXT], B * n2 * D);
        MAXTO(need[W_QB], B * nm * D);
        MAXTO(need[W_KV], B * nm * 2 * D);
        MAXTO(need[W_CTX], B * nm * D);
        MAXTO(need[W_HID], B * nm * (size_t)m->thidden);
        MAXTO(need[W_SCORES], nm * nm);
        MAXTO(need[W_TLNQ], B * n2 * D);
        MAXTO(need[W_TQB], B * n2 * D);
        MAXTO(need[W_TKV], B * nm * 2 * D);
        MAXTO(need[W_TCTX], B * n2 * D);
        MAXTO(need[W_THID], B * n2 * (size_t)m->thidden);
        MAXTO(need[W_ONES], B * nm);
        if (hp->bottom_channels) {
            MAXTO(need[W_BOT], B * n1 * D);
            MAXTO(need[W_BOTT], B * n2 * D);
        }
    }
#undef MAXTO
    return SS_OK;
}

static void ws_release(ht_ws *ws, ss_backend *be)
{
    for (int k = 0; k < W_COUNT; k++) {
        if (ws->buf[k])
            ss_free(be, ws->buf[k]);
        ws->buf[k] = NULL;
        ws->cap[k] = 0;
    }
    ws->batch = 0;
    ws->length = 0;
}

/* Make every buffer at least need[k] floats. */
static ss_status ws_ensure(ht_ws *ws, ss_backend *be, const size_t *need, ss_error *err)
{
    for (int k = 0; k < W_COUNT; k++) {
        if (need[k] <= ws->cap[k])
            continue;
        if (ws->buf[k])
            ss_free(be, ws->buf[k]);
        ws->buf[k] = ss_alloc(be, need[k]);
        ws->cap[k] = ws->buf[k] ? need[k] : 0;
        if (!ws->buf[k]) {
            ss_backend_status(be, err);
            ws_release(ws, be);
            return ss_fail(err, SS_E_DEVICE, "htdemucs: cannot allocate %zu MiB of device memory for activations",
                           need[k] * sizeof(float) >> 20);
        }
        if (k == W_ONES)
            ss_fill(be, ws->buf[k], 1.0f, need[k]);
    }
    return SS_OK;
}

/* Sinusoidal embeddings for (Fr, T1, T2) in float32 as torch computes them,
 * already multiplied by t_weight_pos_embed. */
static ss_status pos_ensure(ht_model *m, ss_backend *be, int fr, int t1, int64_t t2, ss_error *err)
{
    if (m->pos2d && m->pos_fr == fr && m->pos_t1 == t1 && m->pos_t2 == t2)
        return SS_OK;
    int D = m->tdim, half = D / 2;
    float wpe = (float)m->hp.t_weight_pos_embed;
    float mp = (float)m->hp.t_max_period;
    size_t n1 = (size_t)fr * t1, n2 = (size_t)t2;
    float *h1 = malloc(n1 * D * sizeof *h1), *h2 = malloc(n2 * D * sizeof *h2);
    float *div = malloc((size_t)half * sizeof *div);
    if (!h1 || !h2 || !div) {
        free(h1);
        free(h2);
        free(div);
        return ss_fail(err, SS_E_NOMEM, "htdemucs: out of memory");
    }
    /* create_2d_sin_embedding(D, Fr, T1): channels [0, D/2) encode the time
     * position (sin, cos interleaved), [D/2, D) the frequency position */
    float coef = (float)-(log(m->hp.t_max_period) / half);
    for (int j = 0; j < half / 2; j++)
        div[j] = expf((float)(2 * j) * coef);
    for (int f = 0; f < fr; f++)
        for (int t = 0; t < t1; t++) {
            float *row = h1 + ((size_t)f * t1 + t) * D;
            for (int j = 0; j < half / 2; j++) {
                float pw = (float)t * div[j], ph = (float)f * div[j];
                row[2 * j] = wpe * sinf(pw);
                row[2 * j + 1] = wpe * cosf(pw);
                row[half + 2 * j] = wpe * sinf(ph);
                row[half + 2 * j + 1] = wpe * cosf(ph);
            }
        }
    /* create_sin_embedding(T2, D): [cos(phase), sin(phase)], phase = t / period^(j / (D/2 - 1)) */
    for (int j = 0; j < half; j++)
        div[j] = powf(mp, (float)j / (float)(half - 1));
    for (size_t t = 0; t < n2; t++)
        for (int j = 0; j < half; j++) {
            float ph = (float)t / div[j];
            h2[t * D + j] = wpe * cosf(ph);
            h2[t * D + half + j] = wpe * sinf(ph);
        }
    free(div);
    if (m->pos2d)
        ss_free(be, m->pos2d);
    if (m->pos1d)
        ss_free(be, m->pos1d);
    m->pos2d = ss_alloc(be, n1 * D);
    m->pos1d = ss_alloc(be, n2 * D);
    ss_status s = SS_OK;
    if (!m->pos2d || !m->pos1d) {
        s = ss_fail(err, SS_E_DEVICE, "htdemucs: cannot allocate device memory");
    } else {
        ss_upload(be, m->pos2d, h1, n1 * D);
        ss_upload(be, m->pos1d, h2, n2 * D);
        m->pos_fr = fr;
        m->pos_t1 = t1;
        m->pos_t2 = t2;
    }
    free(h1);
    free(h2);
    if (s != SS_OK) {
        if (m->pos2d)
            ss_free(be, m->pos2d);
        if (m->pos1d)
            ss_free(be, m->pos1d);
        m->pos2d = m->pos1d = NULL;
    }
    return s;
}

/* ============================================================================
 * Layers
 * ========================================================================== */

/* y = conv(x) + bias (bias may be NULL): x [batch, cin, h, w] -> y [batch, cout, oh, ow] */
static void conv_with(ss_backend *be, const ht_conv *c, const float *x, float *y, int batch, int h, int w,
                      const float *bias)
{
    ss_conv2d_desc d = {.batch = batch, .cin = c->cin, .h = h, .w = w, .cout = c->cout, .kh = c->kh, .kw = c->kw,
                        .sh = c->sh, .sw = c->sw, .ph = c->ph, .pw = c->pw, .dh = c->dh, .dw = c->dw};
    ss_conv2d(be, &d, x, c->w, bias, y);
}

/* with the layer's own bias */
static void conv_fwd(ss_backend *be, const ht_conv *c, const float *x, float *y, int batch, int h, int w)
{
    conv_with(be, c, x, y, batch, h, w, c->b);
}

/* conv_fwd without the bias, for a caller that adds it in its next pass */
static void conv_nobias(ss_backend *be, const ht_conv *c, const float *x, float *y, int batch, int h, int w)
{
    conv_with(be, c, x, y, batch, h, w, NULL);
}

/* y [batch, cout, len] = gelu(norm(conv(x))), norm a GroupNorm(groups) when the
 * layer has one (nm != NULL); the conv's bias is added by the pass after it */
static void conv_gelu(ss_backend *be, const ht_conv *c, const ht_affine *nm, int groups, const float *x, float *y,
                      int batch, int h, int w, int64_t len)
{
    conv_nobias(be, c, x, y, batch, h, w);
    if (nm)
        ss_group_norm_gelu(be, y, y, c->b, batch, c->cout, len, groups, nm->w, nm->b, HT_EPS);
    else
        ss_bias_gelu(be, y, y, c->b, batch, c->cout, len);
}

/* out [batch, ch, len] = glu(w x + bias) for the 1x1 convolution c (w [2ch, cin]) of x [batch, cin,
 * len]: the backend's "htdemucs.conv1x1_glu" where it has one, else the convolution into r [batch,
 * 2ch, len] and bias_glu. */
static void conv1x1_glu(const ht_model *m, ss_backend *be, const ht_conv *c, const float *x, float *r, float *out,
                        int batch, int64_t len)
{
    int ch = c->cout / 2;
    if (m->k_c1glu) {
        ss_error *e = ss_kernel_begin(be);
        if (e) {
            m->k_c1glu->run(ss_backend_kernel_ctx(be), out, x, c->w, c->b, batch, c->cin, ch, len, e);
            ss_kernel_end(be, "htdemucs.conv1x1_glu");
        }
        return;
    }
    ss_conv2d_desc d = {.batch = batch, .cin = c->cin, .h = 1, .w = (int)len, .cout = 2 * ch, .kh = 1, .kw = 1,
                        .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1};
    ss_conv2d(be, &d, x, c->w, NULL, r);                                    /* r [batch, 2ch, len]  */
    ss_bias_glu(be, out, r, c->b, batch, ch, len);
}

/* out [batch, cout/2, len] = glu(norm(conv(x))) through r [batch, cout, len],
 * norm as for conv_gelu; without a norm the bias is added by the GLU pass */
static void conv_glu(const ht_model *m, ss_backend *be, const ht_conv *c, const ht_affine *nm, int groups,
                     const float *x, float *r, float *out, int batch, int h, int w, int64_t len)
{
    if (nm) {
        conv_fwd(be, c, x, r, batch, h, w);
        ss_group_norm(be, r, r, batch, c->cout, len, groups, nm->w, nm->b, HT_EPS);
        ss_glu(be, out, r, batch, c->cout / 2, len);
    } else if (c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->ph == 0 && c->pw == 0 &&
               (int64_t)h * w == len && len <= INT_MAX) {
        conv1x1_glu(m, be, c, x, r, out, batch, len);                      /* an encoder's rewrite */
    } else {
        conv_nobias(be, c, x, r, batch, h, w);
        ss_bias_glu(be, out, r, c->b, batch, c->cout / 2, len);
    }
}

/* y = conv_transpose(x): x [batch, cin, h, w] -> y [batch, cout, (h-1) sh + kh, (w-1) sw + kw] */
static void convt_fwd(ss_backend *be, const ht_conv *c, const float *x, float *y, int batch, int h, int w)
{
    ss_convt2d_desc d = {.batch = batch, .cin = c->cin, .h = h, .w = w, .cout = c->cout, .kh = c->kh, .kw = c->kw,
                         .sh = c->sh, .sw = c->sw};
    ss_conv_transpose2d(be, &d, x, c->w, c->b, y);
}

/* The window c of the layer's transposed convolution (tmp: scratch of the full output's size) */
static void convt_crop(ss_backend *be, const ht_conv *c, const ss_convt_crop *crop, const float *x, float *tmp,
                       float *y, int batch, int h, int w)
{
    ss_convt2d_desc d = {.batch = batch, .cin = c->cin, .h = h, .w = w, .cout = c->cout, .kh = c->kh, .kw = c->kw,
                         .sh = c->sh, .sw = c->sw};
    ss_conv_transpose2d_crop(be, &d, crop, x, c->w, c->b, tmp, y);
}

static void copy(ss_backend *be, float *dst, const float *src, size_t n)
{
    ss_copy2d(be, dst, n, src, n, 1, n);
}

/* [B, X, Y, T] -> [B, Y, X, T] */
static void swap12(ss_backend *be, float *dst, const float *src, int B, int X, int Y, int64_t T)
{
    int64_t x = X, y = Y;
    const int64_t shape[4] = {B, y, x, T};
    const int64_t ds[4] = {y * x * T, x * T, T, 1}, ss[4] = {x * y * T, T, y * T, 1};
    ss_copy4d(be, dst, ds, src, ss, shape);
}

/* ---- DConv: the fused kernels where the backend has them, else primitive ops ---------- */

/* A DConv layer's tail on items: x += glu(norm2(conv2(h) + b2)) (conv2 1x1: [2ch, hidden]),
 * LayerScale folded into norm2.  rows == 1: x [items, ch, T]; rows > 1: item b is row b % rows of
 * x [items / rows, ch, rows, T] (only where the backend's kernel takes them: dconv_layers checks).
 * h [items, hidden, T]; g [items, 2ch, T] and o [items, ch, T] scratch. */
static void dconv_tail(const ht_model *m, ss_backend *be, const ht_dconv_layer *l, int ch, int hidden, float *x,
                       int rows, const float *h, int items, int64_t T, float *g, float *o)
{
    if (items <= 0 || ch <= 0 || T <= 0)
        return;
    if (m->k_c1g) {
        ss_error *e = ss_kernel_begin(be);
        if (e) {
            m->k_c1g->run(ss_backend_kernel_ctx(be), x, rows, h, l->conv2.w, l->conv2.b, items, ch, hidden, T,
                          l->norm2.w, l->norm2.b, HT_EPS, g, e);
            ss_kernel_end(be, "htdemucs.conv1x1_gn_glu_add");
        }
        return;
    }
    /* composed (rows == 1): the product into g, its bias, the norm over 2ch channels, GLU, add */
    ss_conv2d_desc d = {.batch = items, .cin = hidden, .h = 1, .w = (int)T, .cout = 2 * ch, .kh = 1, .kw = 1,
                        .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1};
    ss_conv2d(be, &d, h, l->conv2.w, NULL, g);                              /* g [items, 2ch, T]    */
    if (l->conv2.b)
        ss_channel_affine(be, g, g, items, 2 * ch, T, NULL, l->conv2.b);
    ss_group_norm(be, g, g, items, 2 * ch, T, 1, l->norm2.w, l->norm2.b, HT_EPS);
    ss_glu(be, o, g, items, ch, T);                                         /* o [items, ch, T]     */
    ss_add(be, x, x, o, (size_t)items * (size_t)ch * (size_t)T);
}

/* The residual layers on x [n, ch, rows, T] in place, each row its own item [ch, T] (rows > 1: a
 * freq layer's frequency rows, where the backend's tail can add into them; the first conv then
 * runs over (rows, T) with its (1, k) kernel and only its output, hidden = ch / compress
 * channels, is rearranged).  Scratch: h [n rows, hidden, T], g [n rows, 2ch, T], o [n rows, ch, T]. */
static void dconv_layers(const ht_model *m, ss_backend *be, const ht_dconv *dc, int ch, float *x, int n, int rows,
                         int64_t T, float *h, float *g, float *o)
{
    int items = n * rows;
    for (int d = 0; d < dc->depth; d++) {
        const ht_dconv_layer *l = &dc->l[d];
        /* each conv's bias is added by the pass after it */
        if (rows == 1) {
            conv_nobias(be, &l->conv1, x, h, n, 1, (int)T);                 /* h [n, hidden, T]       */
        } else {
            conv_nobias(be, &l->conv1, x, g, n, rows, (int)T);              /* g [n, hidden, rows, T] */
            swap12(be, h, g, n, dc->hidden, rows, T);                       /* h [n, rows, hidden, T] */
        }
        ss_group_norm_gelu(be, h, h, l->conv1.b, items, dc->hidden, T, 1, l->norm1.w, l->norm1.b, HT_EPS);
        dconv_tail(m, be, l, ch, dc->hidden, x, rows, h, items, T, g, o);
    }
}

/* Whether the backend's "htdemucs.dconv_rows" runs every layer of dc on t [B, ch, F, T]. */
static int dconv_rows_fused(const ht_model *m, ss_backend *be, const ht_dconv *dc, ht_dconv_desc *dd)
{
    if (!m->k_dconv_rows || dd->batch <= 0 || dd->rows <= 1 || dd->ch <= 0 || dd->hidden <= 0 || dd->len <= 0)
        return 0;
    void *ctx = ss_backend_kernel_ctx(be);
    for (int d = 0; d < dc->depth; d++) {
        dd->dilation = dc->l[d].conv1.dw;
        if (dc->l[d].conv1.kw != 3 || dc->l[d].conv1.pw != dd->dilation || dd->dilation <= 0 ||
            !m->k_dconv_rows->ok(ctx, dd))
            return 0;
    }
    return 1;
}

/* DConv: t [B, ch, F, T] += the residual branch, in place, each frequency row its own item (F = 1:
 * a time layer's [B, ch, T]).  One path per backend: each depth in one pass where the backend has
 * "htdemucs.dconv_rows" for the shape, else the layers on t's rows where its tail can add into
 * them, else (rows == 1 or the tail composed from primitive ops) rearranged to [B, F, ch, T] in q
 * (a buffer of t's size; unused when F = 1) and back.  h, g, o: dconv_layers' scratch. */
static void dconv(const ht_model *m, ss_backend *be, const ht_dconv *dc, int ch, float *t, int B, int F, int64_t T,
                  float *q, float *h, float *g, float *o)
{
    ht_dconv_desc dd = {.batch = B, .rows = F, .ch = ch, .hidden = dc->hidden, .kernel = 3, .len = T, .eps = HT_EPS};
    if (dconv_rows_fused(m, be, dc, &dd)) {
        void *ctx = ss_backend_kernel_ctx(be);
        for (int d = 0; d < dc->depth; d++) {
            const ht_dconv_layer *l = &dc->l[d];
            ht_dconv_w w = {l->conv1.w, l->conv1.b, l->norm1.w, l->norm1.b, l->conv2.w, l->conv2.b, l->norm2.w,
                            l->norm2.b};
            dd.dilation = l->conv1.dw;
            ss_error *e = ss_kernel_begin(be);
            if (e) {
                m->k_dconv_rows->run(ctx, &dd, t, &w, e);                  /* t [B, ch, F, T] in place */
                ss_kernel_end(be, "htdemucs.dconv_rows");
            }
        }
        return;
    }
    if (F == 1 || (m->k_c1g && m->k_c1g->rows_ok && dc->hidden > 0 &&
                   m->k_c1g->rows_ok(ss_backend_kernel_ctx(be), dc->hidden))) {
        dconv_layers(m, be, dc, ch, t, B, F, T, h, g, o);
        return;
    }
    swap12(be, q, t, B, ch, F, T);                                          /* [B, F, ch, T]   */
    dconv_layers(m, be, dc, ch, q, B * F, 1, T, h, g, o);
    swap12(be, t, q, B, F, ch, T);                                          /* [B, ch, F, T]   */
}

/* HEncLayer, frequency: x [B, cin, F, T] -> out [B, cout, F', T], F' = (F + 2 pad - K) / stride + 1 */
static void enc_freq(const ht_model *m, ht_ws *ws, ss_backend *be, const ht_layer *l, const float *x, float *out,
                     int B, int F, int T)
{
    float *a = ws->buf[W_A], *p = ws->buf[W_P], *q = ws->buf[W_Q], *h = ws->buf[W_H], *r = ws->buf[W_R];
    int f2 = ss_conv_out(F, l->conv.kh, l->conv.sh, l->conv.ph, 1);
    size_t n = (size_t)B * l->cout * f2 * T;
    int groups = m->hp.norm_groups;
    conv_gelu(be, &l->conv, l->norm ? &l->norm1 : NULL, groups, x, a, B, F, T,
              (int64_t)f2 * T);                                             /* a [B, cout, F', T]   */
    if (l->has_dconv)
        dconv(m, be, &l->dconv, l->cout, a, B, f2, T, q, h, r, p);
    if (l->has_rewrite) {                                                   /* r [B, 2cout, F', T]  */
        conv_glu(m, be, &l->rewrite, l->norm ? &l->norm2 : NULL, groups, a, r, out, B, f2, T,
                 (int64_t)f2 * T);                                          /* out [B, cout, F', T] */
    } else {
        copy(be, out, a, n);
    }
}

/* HEncLayer, time: x [B, cin, L] -> zero-pad to a multiple of the stride Lp
 * -> out [B, cout, (Lp + 2 pad - K) / stride + 1] */
static void enc_time(const ht_model *m, ht_ws *ws, ss_backend *be, const ht_layer *l, const float *x, float *out,
                     int B, int64_t L)
{
    float *a = ws->buf[W_TA], *p = ws->buf[W_TP], *h = ws->buf[W_TH], *r = ws->buf[W_TR];
    int st = l->conv.sw;
    int64_t lp = ceil_div(L, st) * st;
    const float *src = x;
    if (lp != L) {                                                          /* p [B, cin, Lp]       */
        ss_fill(be, p, 0.0f, (size_t)B * l->cin * lp);
        ss_copy2d(be, p, (size_t)lp, x, (size_t)L, (size_t)B * l->cin, (size_t)L);
        src = p;
    }
    int64_t l2 = ss_conv_out((int)lp, l->conv.kw, st, l->conv.pw, 1);
    size_t n = (size_t)B * l->cout * l2;
    int groups = m->hp.norm_groups;
    conv_gelu(be, &l->conv, l->norm ? &l->norm1 : NULL, groups, src, a, B, 1, (int)lp, l2); /* a [B, cout, L2] */
    if (l->has_dconv)
        dconv(m, be, &l->dconv, l->cout, a, B, 1, l2, NULL, h, r, p);
    if (l->has_rewrite)         /* r [B, 2cout, L2] -> out [B, cout, L2] */
        conv_glu(m, be, &l->rewrite, l->norm ? &l->norm2 : NULL, groups, a, r, out, B, 1, (int)l2, l2);
    else
        copy(be, out, a, n);
}

/* HDecLayer, frequency: x, skip [B, cin, F, T] -> out [B, cout, (F-1) stride + K - 2 pad, T] */
static void dec_freq(const ht_model *m, ht_ws *ws, ss_backend *be, const ht_layer *l, const float *x,
                     const float *skip, float *out, int B, int F, int T)
{
    float *a = ws->buf[W_A], *p = ws->buf[W_P], *q = ws->buf[W_Q], *h = ws->buf[W_H], *r = ws->buf[W_R];
    size_t n = (size_t)B * l->cin * F * T;
    int groups = m->hp.norm_groups, K = l->conv.kh, pad = K / 4;
    ss_add(be, a, x, skip, n);                                              /* a [B, cin, F, T]     */
    if (l->has_rewrite) {                                                   /* r [B, 2cin, F, T]    */
        conv_glu(m, be, &l->rewrite, l->norm ? &l->norm1 : NULL, groups, a, r, p, B, F, T,
                 (int64_t)F * T);                                           /* p [B, cin, F, T]     */
    } else {
        copy(be, p, a, n);
    }
    if (l->has_dconv)
        dconv(m, be, &l->dconv, l->cin, p, B, F, T, q, h, r, a);
    int fo = ss_convt_out(F, K, l->conv.sh), f2 = fo - 2 * pad;
    ss_convt_crop crop = {.h0 = pad, .w0 = 0, .oh = f2, .ow = T, .gelu = !l->last};
    if (!l->norm) {             /* out [B, cout, F2, T] = gelu(conv_tr(p) [.., pad:pad+F2, :]) (r: scratch) */
        convt_crop(be, &l->conv, &crop, p, r, out, B, F, T);
        return;
    }
    convt_fwd(be, &l->conv, p, r, B, F, T);                                 /* r [B, cout, Fo, T]   */
    ss_group_norm(be, r, r, B, l->cout, (int64_t)fo * T, groups, l->norm2.w, l->norm2.b, HT_EPS);
    ss_copy2d(be, out, (size_t)f2 * T, r + (size_t)pad * T, (size_t)fo * T, (size_t)B * l->cout,
              (size_t)f2 * T);                                              /* out [B, cout, F2, T] */
    if (!l->last)
        ss_gelu(be, out, out, (size_t)B * l->cout * f2 * T);
}

/* HDecLayer, time: x, skip [B, cin, L] -> out [B, cout, length] (conv_tr output
 * [B, cout, (L-1) stride + K] cropped to [pad, pad + length)) */
static void dec_time(const ht_model *m, ht_ws *ws, ss_backend *be, const ht_layer *l, const float *x,
                     const float *skip, float *out, int B, int64_t L, int64_t length)
{
    float *a = ws->buf[W_TA], *p = ws->buf[W_TP], *h = ws->buf[W_TH], *r = ws->buf[W_TR];
    size_t n = (size_t)B * l->cin * L;
    int groups = m->hp.norm_groups, K = l->conv.kw, pad = K / 4;
    ss_add(be, a, x, skip, n);                                              /* a [B, cin, L]        */
    if (l->has_rewrite)         /* r [B, 2cin, L] -> p [B, cin, L] */
        conv_glu(m, be, &l->rewrite, l->norm ? &l->norm1 : NULL, groups, a, r, p, B, 1, (int)L, L);
    else
        copy(be, p, a, n);
    if (l->has_dconv)
        dconv(m, be, &l->dconv, l->cin, p, B, 1, L, NULL, h, r, a);
    int64_t lz = ss_convt_out((int)L, K, l->conv.sw);
    ss_convt_crop crop = {.h0 = 0, .w0 = pad, .oh = 1, .ow = (int)length, .gelu = !l->last};
    if (!l->norm) {             /* out [B, cout, length] = gelu(conv_tr(p) [.., pad:pad+length]) (r: scratch) */
        convt_crop(be, &l->conv, &crop, p, r, out, B, 1, (int)L);
        return;
    }
    convt_fwd(be, &l->conv, p, r, B, 1, (int)L);                            /* r [B, cout, Lz]      */
    ss_group_norm(be, r, r, B, l->cout, lz, groups, l->norm2.w, l->norm2.b, HT_EPS);
    ss_copy2d(be, out, (size_t)length, r + pad, (size_t)lz, (size_t)B * l->cout, (size_t)length);
    if (!l->last)
        ss_gelu(be, out, out, (size_t)B * l->cout * length);
}

/* ---- transformer --------------------------------------------------------------- */

/* y [rows, out] = x [rows, in] @ w^T (w [out, in]) + b [out]; acc: y += that */
static void linear(ht_ws *ws, ss_backend *be, float *y, const float *x, const float *w, const float *b, int rows,
                   int in, int out, int acc)
{
    ss_gemm_desc d = {.trans_b = 1, .m = rows, .n = out, .k = in, .alpha = 1.0f, .beta = acc ? 1.0f : 0.0f,
                      .lda = in, .ldb = in, .ldc = out, .batch = 1, .reduced = 1};
    ss_gemm_bias(be, &d, x, w, b, ws->buf[W_ONES], y);                      /* y (+)= 1 b^T + x w^T */
}

/* The fused-attention descriptor of one item: q [Nq, D], k | v [Nk, 2D] -> ctx [Nq, D] */
static ss_attn_desc attn_desc(const ht_model *m, int nq, int nk)
{
    int D = m->tdim, heads = m->hp.t_heads;
    return (ss_attn_desc){.heads = heads, .nq = nq, .nk = nk, .hd = D / heads, .ldq = D, .ldk = 2 * D,
                          .ldv = 2 * D, .ldo = D, .scale = 1.0f / sqrtf((float)(D / heads)), .reduced = 1};
}

/* Multi-head attention (nn.MultiheadAttention, batch first) with its in/out
 * projections, added to the residual stream: out [B*Nq, D] += MHA(q [B*Nq, D],
 * kv [B*Nk, D]) (LayerScale folded into out_proj).  out must not be q or kv. */
/* A transformer sublayer's temporaries: the frequency branch's (W_LNQ, W_QB, W_KV,
 * W_CTX, W_HID, W_SCORES) or, with fused attention, the time branch's own. */
typedef struct ht_tbuf {
    float *lnq, *qb, *kv, *ctx, *hid, *sc;
    size_t sc_cap;
} ht_tbuf;

static void mha(const ht_model *m, ht_ws *ws, const ht_tbuf *tb, ss_backend *be, const ht_tlayer *l,
                const float *qin, int nq, const float *kvin, int nk, int B, float *out)
{
    int D = m->tdim, heads = m->hp.t_heads, hd = D / heads;
    float *qb = tb->qb, *kv = tb->kv, *ctx = tb->ctx, *sc = tb->sc;
    linear(ws, be, qb, qin, l->in_w, l->in_b, B * nq, D, D, 0);                          /* [B*Nq, D]  */
    linear(ws, be, kv, kvin, l->in_w + (size_t)D * D, l->in_b + D, B * nk, D, 2 * D, 0); /* [B*Nk, 2D] k | v */
    if (ws->attn_fused) {
        ss_attn_desc a = attn_desc(m, nq, nk);
        for (int b = 0; b < B; b++) {
            const float *kb = kv + (size_t)b * nk * 2 * D;
            ss_attention(be, &a, qb + (size_t)b * nq * D, kb, kb + D, ctx + (size_t)b * nq * D); /* [Nq, D] */
        }
        linear(ws, be, out, ctx, l->out_w, l->out_b, B * nq, D, D, 1);
        return;
    }
    if (ws->heads_batched) {
        /* one strided-batched product per item and group of heads (devices: fewer, larger
         * launches), as many heads per group as W_SCORES holds */
        int hg = head_group(tb->sc_cap / ((size_t)nq * (size_t)nk), heads);
        for (int b = 0; b < B; b++)
            for (int h0 = 0; h0 < heads; h0 += hg) {
                int nh = heads - h0 < hg ? heads - h0 : hg;
                const float *qh = qb + (size_t)b * nq * D + (size_t)h0 * hd;
                const float *kh = kv + (size_t)b * nk * 2 * D + (size_t)h0 * hd, *vh = kh + D;
                ss_gemm_desc s = {.trans_b = 1, .m = nq, .n = nk, .k = hd, .alpha = 1.0f, .beta = 0.0f, .lda = D,
                                  .ldb = 2 * D, .ldc = nk, .batch = nh, .stride_a = hd, .stride_b = hd,
                                  .stride_c = (int64_t)nq * nk, .reduced = 1};
                ss_gemm(be, &s, qh, kh, sc);                                /* sc [nh, Nq, Nk]      */
                ss_softmax(be, sc, sc, nh * nq, nk, 1.0f / sqrtf((float)hd));
                ss_gemm_desc o = {.m = nq, .n = hd, .k = nk, .alpha = 1.0f, .beta = 0.0f, .lda = nk,
                                  .ldb = 2 * D, .ldc = D, .batch = nh, .stride_a = (int64_t)nq * nk,
                                  .stride_b = hd, .stride_c = hd, .reduced = 1};
                ss_gemm(be, &o, sc, vh, ctx + (size_t)b * nq * D + (size_t)h0 * hd); /* ctx heads h0.. */
            }
        linear(ws, be, out, ctx, l->out_w, l->out_b, B * nq, D, D, 1);
        return;
    }
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < heads; hh++) {
            const float *qh = qb + (size_t)b * nq * D + (size_t)hh * hd;
            const float *kh = kv + (size_t)b * nk * 2 * D + (size_t)hh * hd;
            const float *vh = kh + D;
            ss_gemm_desc s = {.trans_b = 1, .m = nq, .n = nk, .k = hd, .alpha = 1.0f, .beta = 0.0f,
                              .lda = D, .ldb = 2 * D, .ldc = nk, .batch = 1, .reduced = 1};
            ss_gemm(be, &s, qh, kh, sc);                                    /* sc [Nq, Nk] = q k^T  */
            ss_softmax(be, sc, sc, nq, nk, 1.0f / sqrtf((float)hd));
            ss_gemm_desc o = {.m = nq, .n = hd, .k = nk, .alpha = 1.0f, .beta = 0.0f,
                              .lda = nk, .ldb = 2 * D, .ldc = D, .batch = 1, .reduced = 1};
            ss_gemm(be, &o, sc, vh, ctx + (size_t)b * nq * D + (size_t)hh * hd); /* [Nq, hd] of ctx */
        }
    linear(ws, be, out, ctx, l->out_w, l->out_b, B * nq, D, D, 1);
}

/* The feed-forward half and norm_out of a layer on x [B*N, D] (pre-norm `n`). */
static void ff_block(const ht_model *m, ht_ws *ws, const ht_tbuf *tb, ss_backend *be, const ht_tlayer *l,
                     const ht_affine *n, float *x, int B, int N)
{
    int D = m->tdim, H = m->thidden, rows = B * N;
    float *t = tb->lnq, *hid = tb->hid;
    ss_layer_norm(be, t, x, rows, D, n->w, n->b, HT_EPS);
    linear(ws, be, hid, t, l->l1_w, l->l1_b, rows, D, H, 0);                /* [B*N, H]             */
    ss_gelu(be, hid, hid, (size_t)rows * H);
    linear(ws, be, x, hid, l->l2_w, l->l2_b, rows, H, D, 1);                /* x [B*N, D] += ...    */
    if (m->hp.t_norm_out) {                                                 /* GroupNorm(1, D) over (N, D) */
        ss_group_norm(be, x, x, B, 1, (int64_t)N * D, 1, NULL, NULL, HT_EPS);
        ss_channel_affine(be, x, x, rows, D, 1, l->norm_out.w, l->norm_out.b);
    }
}

/* MyTransformerEncoderLayer (norm_first): x [B*N, D] in place */
static void self_layer(const ht_model *m, ht_ws *ws, const ht_tbuf *tb, ss_backend *be, const ht_tlayer *l,
                       float *x, int B, int N)
{
    int D = m->tdim;
    float *t = tb->lnq;
    ss_layer_norm(be, t, x, B * N, D, l->norm1.w, l->norm1.b, HT_EPS);
    mha(m, ws, tb, be, l, t, N, t, N, B, x);
    ff_block(m, ws, tb, be, l, &l->norm2, x, B, N);
}

/* CrossTransformerEncoderLayer (norm_first): x [B*N, D] in place, attending
 * to k [B*Nk, D], which the caller has already normalised with this layer's norm2. */
static void cross_layer(const ht_model *m, ht_ws *ws, const ht_tbuf *tb, ss_backend *be, const ht_tlayer *l,
                        float *x, int B, int N, const float *k, int nk)
{
    int D = m->tdim;
    float *t = tb->lnq;
    ss_layer_norm(be, t, x, B * N, D, l->norm1.w, l->norm1.b, HT_EPS);
    mha(m, ws, tb, be, l, t, N, k, nk, B, x);
    ff_block(m, ws, tb, be, l, &l->norm3, x, B, N);
}

/* CrossTransformerEncoder with the bottom-channel convs around it:
 *   x [B, Dx, Fr, T1] -> xo (same shape);  xt [B, Dx, T2] -> to (same shape).
 * Tokens are kept frequency-major (n = f T1 + t); demucs orders them time-major,
 * which only permutes the sequence (the positional embedding follows). */
static void transformer_fwd(const ht_model *m, ht_ws *ws, ss_backend *be, int B, int fr, int t1, int64_t t2_,
                            const float *x, const float *xt, float *xo, float *to)
{
    int D = m->tdim, n1 = fr * t1, n2 = (int)t2_;
    float *X = ws->buf[W_X], *XT = ws->buf[W_XTK], *kx = ws->buf[W_KX], *kxt = ws->buf[W_KXT];
    const float *src = x, *srct = xt;
    if (m->hp.bottom_channels) {
        conv_fwd(be, &m->up, x, ws->buf[W_BOT], B, 1, n1);                  /* [B, D, N1]           */
        conv_fwd(be, &m->up_t, xt, ws->buf[W_BOTT], B, 1, n2);              /* [B, D, N2]           */
        src = ws->buf[W_BOT];
        srct = ws->buf[W_BOTT];
    }
    ss_transpose(be, X, src, B, D, n1);                                     /* X  [B, N1, D]        */
    ss_transpose(be, XT, srct, B, D, n2);                                   /* XT [B, N2, D]        */
    if (m->hp.t_norm_in) {
        ss_layer_norm(be, X, X, B * n1, D, m->norm_in.w, m->norm_in.b, HT_EPS);
        ss_layer_norm(be, XT, XT, B * n2, D, m->norm_in_t.w, m->norm_in_t.b, HT_EPS);
    }
    for (int b = 0; b < B; b++) {
        ss_add(be, X + (size_t)b * n1 * D, X + (size_t)b * n1 * D, m->pos2d, (size_t)n1 * D);
        ss_add(be, XT + (size_t)b * n2 * D, XT + (size_t)b * n2 * D, m->pos1d, (size_t)n2 * D);
    }
    /* each layer's time sublayer on lane 1 beside the frequency one, with its own
     * temporaries (fused attention only: composed attention's scores are shared) */
    ht_tbuf tf = {ws->buf[W_LNQ], ws->buf[W_QB], ws->buf[W_KV], ws->buf[W_CTX], ws->buf[W_HID],
                  ws->buf[W_SCORES], ws->cap[W_SCORES]}, tt = tf;
    int lanes = ws->attn_fused && ws->buf[W_TLNQ] && ws->buf[W_TQB] && ws->buf[W_TKV] && ws->buf[W_TCTX] &&
                ws->buf[W_THID];
    if (lanes)
        tt = (ht_tbuf){ws->buf[W_TLNQ], ws->buf[W_TQB], ws->buf[W_TKV], ws->buf[W_TCTX], ws->buf[W_THID], NULL, 0};
    for (int i = 0; i < m->hp.t_layers; i++) {
        const ht_tlayer *l = &m->layers[i], *lt = &m->layers_t[i];
        if (!l->cross) {
            if (lanes)
                ss_lane(be, SS_LANE_FORK);
            self_layer(m, ws, &tt, be, lt, XT, B, n2);
            if (lanes)
                ss_lane(be, SS_LANE_BACK);
            self_layer(m, ws, &tf, be, l, X, B, n1);
        } else {
            /* both branches attend to the other's input of this layer */
            ss_layer_norm(be, kxt, XT, B * n2, D, l->norm2.w, l->norm2.b, HT_EPS);
            ss_layer_norm(be, kx, X, B * n1, D, lt->norm2.w, lt->norm2.b, HT_EPS);
            if (lanes)
                ss_lane(be, SS_LANE_FORK);
            cross_layer(m, ws, &tt, be, lt, XT, B, n2, kx, n1);
            if (lanes)
                ss_lane(be, SS_LANE_BACK);
            cross_layer(m, ws, &tf, be, l, X, B, n1, kxt, n2);
        }
        if (lanes)
            ss_lane(be, SS_LANE_JOIN);
    }
    if (m->hp.bottom_channels) {
        ss_transpose(be, ws->buf[W_BOT], X, B, n1, D);                      /* [B, D, N1]           */
        ss_transpose(be, ws->buf[W_BOTT], XT, B, n2, D);
        conv_fwd(be, &m->down, ws->buf[W_BOT], xo, B, 1, n1);               /* xo [B, Dx, N1]       */
        conv_fwd(be, &m->down_t, ws->buf[W_BOTT], to, B, 1, n2);            /* to [B, Dx, N2]       */
    } else {
        ss_transpose(be, xo, X, B, n1, D);
        ss_transpose(be, to, XT, B, n2, D);
    }
}

/* ============================================================================
 * Forward
 * ========================================================================== */

/* pad1d(x, (pl, pr), mode="reflect") of rows [rows, L] -> dst [rows, L + pl + pr],
 * zero-extending first when L is too short to reflect, as demucs does.  On the
 * device as three copies (the edges reversed) when L > max(pl, pr), the case of
 * every model input; through the host otherwise. */
static ss_status reflect_pad(ss_backend *be, float *dst, const float *src, int rows, int64_t L, int64_t pl,
                             int64_t pr, ss_error *err)
{
    int64_t lo = L + pl + pr, mx = pl > pr ? pl : pr, el = 0, er = 0;
    if (L > mx) {
        /* dst[pl + i] = src[i]; dst[i] = src[pl - i] (i < pl); dst[pl + L + t] = src[L - 2 - t] */
        ss_copy2d(be, dst + pl, (size_t)lo, src, (size_t)L, (size_t)rows, (size_t)L);
        const int64_t ds[4] = {0, lo, 0, 1}, ss[4] = {0, L, 0, -1};
        const int64_t shl[4] = {1, rows, 1, pl}, shr[4] = {1, rows, 1, pr};
        ss_copy4d(be, dst, ds, src + pl, ss, shl);
        ss_copy4d(be, dst + pl + L, ds, src + L - 2, ss, shr);
        return SS_OK;
    }
    if (L <= mx) {
        int64_t extra = mx - L + 1;
        er = pr < extra ? pr : extra;
        el = extra - er;
    }
    int64_t l2 = L + el + er, p2l = pl - el;
    float *in = malloc((size_t)rows * L * sizeof *in), *out = malloc((size_t)rows * lo * sizeof *out);
    float *ext = malloc((size_t)l2 * sizeof *ext);
    if (!in || !out || !ext) {
        free(in);
        free(out);
        free(ext);
        return ss_fail(err, SS_E_NOMEM, "htdemucs: out of memory");
    }
    ss_download(be, in, src, (size_t)rows * L);
    for (int r = 0; r < rows; r++) {
        memset(ext, 0, (size_t)l2 * sizeof *ext);
        memcpy(ext + el, in + (size_t)r * L, (size_t)L * sizeof *ext);
        float *o = out + (size_t)r * lo;
        for (int64_t i = 0; i < lo; i++) {
            int64_t j = i - p2l;                    /* index into ext, reflected at both ends */
            if (j < 0)
                j = -j;
            if (j >= l2)
                j = 2 * (l2 - 1) - j;
            o[i] = ext[j];
        }
    }
    ss_upload(be, dst, out, (size_t)rows * lo);
    free(in);
    free(out);
    free(ext);
    return SS_OK;
}

/* One HTDemucs: x [B, C, length] -> y [B, S, C, length]. */
static ss_status model_forward(ht_model *m, ht_ws *ws, ss_backend *be, const float *x, float *y, int B,
                               int64_t length, ss_error *err)
{
    const ht_hparams *hp = &m->hp;
    ht_geom g;
    ss_status s = model_plan(m, B, length, &g, NULL, err);
    if (s != SS_OK)
        return s;
    int C = hp->audio_channels, S = hp->sources, Dp = hp->depth, fq = m->fq, T = g.T;
    int64_t L = g.L;
    size_t rows = (size_t)B * C, srows = (size_t)B * S * C;
    if (hp->t_layers > 0 && (s = pos_ensure(m, be, g.F[Dp], T, g.N2, err)) != SS_OK)
        return s;

    /* 1. pad to the training length: mix [B, C, L] */
    const float *mix = x;
    if (L != length) {
        float *mp = ws->buf[W_MIXP];
        ss_fill(be, mp, 0.0f, rows * L);
        ss_copy2d(be, mp, (size_t)L, x, (size_t)length, rows, (size_t)length);
        mix = mp;
    }

    /* 2. spectrogram: reflect pad -> sig [B*C, Ls], STFT -> spec [B*C, 2, Fq+1, T+4],
     *    drop the last bin and 2 frames each side -> xf [B, 2C, Fq, T] (re, im per channel) */
    float *sig = ws->buf[W_SIG], *spec = ws->buf[W_SPEC], *xf = ws->buf[W_XF], *xt = ws->buf[W_XT];
    if ((s = reflect_pad(be, sig, mix, (int)rows, L, g.pad_l, g.pad_r, err)) != SS_OK)
        return s;
    ss_stft_desc sd = {.batch = (int)rows, .length = g.ls, .n_fft = hp->nfft, .hop = m->hop};
    ss_stft(be, &sd, sig, spec);
    {
        const int64_t shape[4] = {1, (int64_t)rows * 2, fq, T};
        const int64_t ds[4] = {0, (int64_t)fq * T, T, 1}, ss[4] = {0, (int64_t)(fq + 1) * (T + 4), T + 4, 1};
        ss_copy4d(be, xf, ds, spec + 2, ss, shape);
    }

    /* 3. normalise: xf = (xf - mean) / (1e-5 + std), xt = (mix - meant) / (1e-5 + stdt), per item */
    float *stats = ws->buf[W_STATS];                 /* [8, B]: mean std scale shift, then for time */
    float *mean = stats, *std = stats + B, *meant = stats + 4 * B, *stdt = stats + 5 * B;
    ss_row_moments(be, mean, std, xf, B, (int64_t)2 * C * fq * T);
    ss_row_moments(be, meant, stdt, mix, B, (int64_t)C * L);
    for (int k = 0; k < 2; k++) {                    /* scale = 1 / (1e-5 + std), shift = -mean * scale */
        float *blk = stats + 4 * k * B;
        ss_standardize_coef(be, blk + 2 * B, blk + 3 * B, blk, blk + B, B, 1e-5f);
    }
    ss_row_affine(be, xf, xf, B, (int64_t)2 * C * fq * T, stats + 2 * B, stats + 3 * B);
    ss_row_affine(be, xt, mix, B, (int64_t)C * L, stats + 6 * B, stats + 7 * B);

    /* 4. encoders: skip[i] [B, xch[i+1], F[i+1], T], skip_t[i] [B, tch[i+1], Lt[i+1]]; the
     *    time branch on lane 1 beside the frequency branch (own buffers: W_T*, skip_t) */
    const float *xi = xf, *ti = xt;
    ss_lane(be, SS_LANE_FORK);
    for (int i = 0; i < Dp; i++) {
        float *skt = ws->buf[W_SKIP + HT_MAX_DEPTH + i];
        enc_time(m, ws, be, &m->tenc[i], ti, skt, B, g.Lt[i]);
        ti = skt;
    }
    ss_lane(be, SS_LANE_BACK);
    for (int i = 0; i < Dp; i++) {
        float *sk = ws->buf[W_SKIP + i];
        enc_freq(m, ws, be, &m->enc[i], xi, sk, B, g.F[i], T);
        if (i == 0 && m->freq_emb)                                          /* + freq embedding [C1, F1] */
            ss_channel_affine(be, sk, sk, B, m->xch[1] * g.F[1], T, NULL, m->freq_emb);
        xi = sk;
    }
    ss_lane(be, SS_LANE_JOIN);

    /* 5. transformer: xo [B, xch[D], F[D], T], to [B, tch[D], Lt[D]] */
    float *xo = ws->buf[W_IO0], *xn = ws->buf[W_IO1], *to = ws->buf[W_TIO0], *tn = ws->buf[W_TIO1];
    if (hp->t_layers > 0) {
        transformer_fwd(m, ws, be, B, g.F[Dp], T, g.N2, xi, ti, xo, to);
    } else {
        copy(be, xo, xi, (size_t)B * m->xch[Dp] * g.F[Dp] * T);
        copy(be, to, ti, (size_t)B * m->tch[Dp] * g.Lt[Dp]);
    }

    /* 6. decoders, innermost first: x -> [B, S*2C, Fq, T], xt -> [B, S*C, L]; the time
     *    branch (and its de-normalisation) on lane 1 again */
    ss_lane(be, SS_LANE_FORK);
    for (int i = Dp - 1; i >= 0; i--) {
        dec_time(m, ws, be, &m->tdec[i], to, ws->buf[W_SKIP + HT_MAX_DEPTH + i], tn, B, g.Lt[i + 1], g.Lt[i]);
        float *sw = to;
        to = tn;
        tn = sw;
    }
    ss_row_affine(be, to, to, B, (int64_t)S * C * L, stdt, meant);         /* [B, S*C, L]          */
    ss_lane(be, SS_LANE_BACK);
    for (int i = Dp - 1; i >= 0; i--) {
        dec_freq(m, ws, be, &m->dec[i], xo, ws->buf[W_SKIP + i], xn, B, g.F[i + 1], T);
        float *sw = xo;
        xo = xn;
        xn = sw;
    }

    /* 7. undo the normalisation, iSTFT (pad the bin and frames back), add the branches */
    ss_row_affine(be, xo, xo, B, (int64_t)S * 2 * C * fq * T, std, mean);
    ss_fill(be, spec, 0.0f, srows * 2 * (fq + 1) * (T + 4));
    {
        const int64_t shape[4] = {1, (int64_t)srows * 2, fq, T};
        const int64_t ds[4] = {0, (int64_t)(fq + 1) * (T + 4), T + 4, 1}, ss[4] = {0, (int64_t)fq * T, T, 1};
        ss_copy4d(be, spec + 2, ds, xo, ss, shape);
    }
    float *wave = ws->buf[W_WAVE];
    ss_stft_desc id = {.batch = (int)srows, .length = g.ls, .n_fft = hp->nfft, .hop = m->hop};
    ss_istft(be, &id, spec, wave);                                          /* [B*S*C, Ls]          */
    ss_copy2d(be, y, (size_t)length, wave + g.pad_l, (size_t)g.ls, srows, (size_t)length);
    ss_lane(be, SS_LANE_JOIN);
    if (length == L) {
        ss_add(be, y, y, to, srows * length);
    } else {
        float *xc = ws->buf[W_XTC];
        ss_copy2d(be, xc, (size_t)length, to, (size_t)L, srows, (size_t)length);
        ss_add(be, y, y, xc, srows * length);
    }
    return ss_backend_check(be, err);
}

/* ============================================================================
 * The architecture: a single model or a bag of models
 * ========================================================================== */

static void ht_free(void *state, ss_backend *be)
{
    ht_bag *bag = state;
    if (!bag)
        return;
    for (int i = 0; i < bag->n; i++)
        model_free(bag->m[i], be);
    ws_release(&bag->ws, be);
    if (bag->wdev)
        ss_free(be, bag->wdev);
    free(bag->w);
    free(bag);
}

/* "1,0,0.5;0,1,0.5" -> n rows of s floats */
static ss_status parse_weights(const char *v, const char *path, int n, int s, float *out, ss_error *err)
{
    const char *p = v;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < s; k++) {
            while (*p == ' ')
                p++;
            char *end;
            double d = strtod(p, &end);
            if (end == p || !isfinite(d) || d < 0)
                return ss_fail(err, SS_E_DATA, "%s: stemsplit.bag.weights '%s': expected %d rows of %d "
                               "non-negative numbers", path, v, n, s);
            out[i * s + k] = (float)d;
            p = end;
            while (*p == ' ')
                p++;
            char want_sep = k + 1 < s ? ',' : (i + 1 < n ? ';' : '\0');
            if (*p != want_sep)
                return ss_fail(err, SS_E_DATA, "%s: stemsplit.bag.weights '%s': expected %d rows of %d "
                               "numbers (',' between numbers, ';' between rows)", path, v, n, s);
            if (*p)
                p++;
        }
    return SS_OK;
}

static ss_status ht_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    const char *path = ss_st_path(st);
    ht_bag *bag = calloc(1, sizeof *bag);
    if (!bag)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    bag->sources = info->n_sources;
    bag->channels = info->channels;
    ss_status s = SS_OK;
    int is_bag = ss_st_meta(st, "stemsplit.bag") != NULL;
    if (is_bag) {
        int64_t n;
        if ((s = ss_st_meta_int(st, "stemsplit.bag", &n, err)) != SS_OK)
            goto fail;
        if (n < 1 || n > HT_MAX_BAG) {
            s = ss_fail(err, SS_E_DATA, "%s: stemsplit.bag = %lld: between 1 and %d models are supported", path,
                        (long long)n, HT_MAX_BAG);
            goto fail;
        }
        bag->n = (int)n;
    } else {
        bag->n = 1;
    }
    for (int i = 0; i < bag->n; i++) {
        if ((s = model_load(st, is_bag ? i : -1, info, be, &bag->m[i], err)) != SS_OK) {
            bag->n = i;
            goto fail;
        }
        const ht_hparams *a = &bag->m[0]->hp, *b = &bag->m[i]->hp;
        if (a->use_train_segment != b->use_train_segment ||
            (a->use_train_segment && a->train_length != b->train_length)) {
            bag->n = i + 1;
            s = ss_fail(err, SS_E_DATA, "%s: the models of the bag have different segments (%lld and %lld samples); "
                        "combining them chunk by chunk would differ from demucs", path,
                        (long long)a->train_length, (long long)b->train_length);
            goto fail;
        }
    }
    if ((s = ss_st_check_all_used(st, err)) != SS_OK)
        goto fail;
    if (is_bag) {
        int S = bag->sources;
        bag->w = malloc((size_t)(bag->n + 1) * S * sizeof *bag->w);
        if (!bag->w) {
            s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        const char *wv = ss_st_meta(st, "stemsplit.bag.weights");
        if (!wv) {
            for (int k = 0; k < bag->n * S; k++)
                bag->w[k] = 1.0f;                       /* BagOfModels(weights=None) */
        } else if ((s = parse_weights(wv, path, bag->n, S, bag->w, err)) != SS_OK) {
            goto fail;
        }
        for (int k = 0; k < S; k++) {
            float tot = 0.0f;
            for (int i = 0; i < bag->n; i++)
                tot += bag->w[i * S + k];
            if (!(tot > 0.0f)) {
                s = ss_fail(err, SS_E_DATA, "%s: stemsplit.bag.weights: source %d (%s) has total weight 0", path,
                            k, info->sources[k]);
                goto fail;
            }
            bag->w[bag->n * S + k] = 1.0f / tot;
        }
        bag->wdev = ss_alloc(be, (size_t)(bag->n + 1) * S);
        if (!bag->wdev) {
            s = ss_fail(err, SS_E_DEVICE, "%s: cannot allocate device memory", path);
            goto fail;
        }
        ss_upload(be, bag->wdev, bag->w, (size_t)(bag->n + 1) * S);
    }
    if ((s = ss_backend_status(be, err)) != SS_OK)
        goto fail;
    *state = bag;
    return SS_OK;
fail:
    ht_free(bag, be);
    return s;
}

static int64_t ht_valid_length(void *state, int64_t length)
{
    const ht_hparams *hp = &((ht_bag *)state)->m[0]->hp;
    if (!hp->use_train_segment || length > hp->train_length)
        return length;
    return hp->train_length;
}

static ss_status ht_forward(void *state, ss_backend *be, const float *x, float *y, int batch, int64_t length,
                            ss_error *err)
{
    ht_bag *bag = state;
    ss_status s;
    if (bag->ws.batch != batch || bag->ws.length != length) {
        size_t need[W_COUNT] = {0};
        ht_geom g;
        int fused = 1;
        for (int i = 0; i < bag->n; i++) {
            const ht_model *mi = bag->m[i];
            if ((s = model_plan(mi, batch, length, &g, need, err)) != SS_OK)
                return s;
            /* the attentions this model runs: self on N1 and N2 tokens, cross both ways */
            ss_attn_desc a[4] = {attn_desc(mi, (int)g.N1, (int)g.N1), attn_desc(mi, (int)g.N2, (int)g.N2),
                                 attn_desc(mi, (int)g.N1, (int)g.N2), attn_desc(mi, (int)g.N2, (int)g.N1)};
            if (mi->hp.t_layers > 0)
                for (int j = 0; j < 4; j++)
                    fused &= ss_attention_fused(be, &a[j]);
        }
        /* where the backend fuses every attention, no scores are held */
        bag->ws.attn_fused = fused;
        if (fused)
            need[W_SCORES] = 0;
        else                    /* composed attention: the time sublayers share the frequency ones' */
            need[W_TLNQ] = need[W_TQB] = need[W_TKV] = need[W_TCTX] = need[W_THID] = 0;
        if (bag->n > 1)
            need[W_BAG] = (size_t)batch * bag->sources * bag->channels * length;
        /* off host memory, attention runs every head of an item in one batched product */
        bag->ws.heads_batched = !ss_backend_iface_of(be)->host_memory;
        if (bag->ws.heads_batched) {
            int heads = 1;
            for (int i = 0; i < bag->n; i++)
                heads = bag->m[i]->hp.t_heads > heads ? bag->m[i]->hp.t_heads : heads;
            /* as many heads per product as fit HT_SCORES_FLOATS (at least one) */
            need[W_SCORES] *= (size_t)head_group(need[W_SCORES] ? HT_SCORES_FLOATS / need[W_SCORES] : (size_t)heads,
                                                 heads);
        }
        double t0 = ss_seconds();
        if ((s = ws_ensure(&bag->ws, be, need, err)) != SS_OK)
            return s;
        if (ss_profile_stages()) {                  /* STEMSPLIT_PROFILE: what the buffers cost */
            size_t total = 0;
            for (int k = 0; k < W_COUNT; k++)
                total += bag->ws.cap[k];
            fprintf(stderr, "htdemucs: activation buffers for batch %d, %lld samples: %.1f MiB, ready in %.1f ms\n",
                    batch, (long long)length, (double)total * sizeof(float) / 1048576.0, 1e3 * (ss_seconds() - t0));
        }
        bag->ws.batch = batch;
        bag->ws.length = length;
    }
    if (bag->n == 1)
        return model_forward(bag->m[0], &bag->ws, be, x, y, batch, length, err);

    /* out_k = sum_i w_ik out_ik / sum_i w_ik */
    int S = bag->sources;
    int64_t item = (int64_t)bag->channels * length;
    size_t n = (size_t)batch * S * item;
    float *one = bag->ws.buf[W_BAG];
    ss_fill(be, y, 0.0f, n);
    for (int i = 0; i < bag->n; i++) {
        int used = 0;
        for (int k = 0; k < S; k++)
            used |= bag->w[i * S + k] != 0.0f;
        if (!used)                                      /* contributes nothing */
            continue;
        if ((s = model_forward(bag->m[i], &bag->ws, be, x, one, batch, length, err)) != SS_OK)
            return s;
        ss_channel_affine(be, one, one, batch, S, item, bag->wdev + (size_t)i * S, NULL);
        ss_add(be, y, y, one, n);
    }
    ss_channel_affine(be, y, y, batch, S, item, bag->wdev + (size_t)bag->n * S, NULL);
    return ss_backend_check(be, err);
}

/* Every step of the forward pass is a device op once the workspace and the
 * positional embeddings exist for these arguments (the first call makes them),
 * except reflect_pad's host path for inputs too short to reflect. */
static int ht_graph_ok(void *state, int batch, int64_t length)
{
    ht_bag *bag = state;
    ss_error e = {0};
    for (int i = 0; i < bag->n; i++) {
        ht_geom g;
        if (model_plan(bag->m[i], batch, length, &g, NULL, &e) != SS_OK || g.L <= g.pad_l || g.L <= g.pad_r)
            return 0;
    }
    return 1;
}

/* ============================================================================
 * Pipeline policy
 * ========================================================================== */

/* demucs's CLI normalises the mixture by its mono mix's mean and std */
static ss_input_norm ht_input_norm(const void *state)
{
    (void)state;
    return SS_NORM_MIX_MEAN_STD;
}

/* Device memory of a run: the weights; what does not grow with the batch
 * (896 MiB: the backend's im2col/FFT/Winograd scratch and the attention
 * scores' budget, cuBLAS's workspace, FFT plans, the recorded graph, and the
 * same again for the CUDA backend's second lane); and the activations of the
 * two branches, about 148 floats per input sample and channel of a segment.
 * Measured for the full-size HTDemucs on an H100 above the CUDA context, it
 * errs high by a few hundred MiB where attention is fused (no scores held);
 * an estimate for choosing the device and --batch. */
static ss_status ht_memory_estimate(ss_st *st, const ss_model_info *info, ss_mem_estimate *out, ss_error *err)
{
    (void)st;
    (void)err;
    out->fixed = info->parameters * 4u + ((uint64_t)896 << 20);
    out->per_item = (uint64_t)info->segment_length * (uint64_t)info->channels * 4u * 148u;
    return SS_OK;
}

const ss_arch ss_arch_htdemucs = {
    .name = "htdemucs",
    .load = ht_load,
    .forward = ht_forward,
    .valid_length = ht_valid_length,
    .free = ht_free,
    .graph_ok = ht_graph_ok,
    .input_norm = ht_input_norm,
    .chunking = SS_CHUNK_DEMUCS,
    .memory_estimate = ht_memory_estimate,
};

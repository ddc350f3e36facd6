/* bandsplit.c - a test architecture with no trained weights: it splits the
 * mixture into frequency bands with complementary STFT masks, so the stems
 * sum back to the mixture.  scripts/make-bandsplit.py writes such files.
 *
 * Hyperparameters (metadata):  bandsplit.n_fft, bandsplit.hop
 * Weights:                     masks [S, F], F = n_fft/2 + 1, sum over S = 1
 *
 *   x [B, C, T] --stft--> X [B*C, 2, F, N]
 *   for each source s:  Y_s = X * masks[s] (per frequency bin)  --istft--> y[:, s] [B, C, T]
 */
#include <stdlib.h>

#include "../../src/model.h"

typedef struct bandsplit {
    int n_sources;          /* S                                   */
    int channels;           /* C                                   */
    int n_fft, hop;         /* STFT size and hop                   */
    int64_t segment;        /* model input length (valid_length)   */
    float *masks;           /* [S, F] on the device                */
} bandsplit;

static ss_status bandsplit_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    const char *path = ss_st_path(st);
    int64_t n_fft, hop;
    ss_status s;
    if ((s = ss_st_meta_int(st, "bandsplit.n_fft", &n_fft, err)) != SS_OK ||
        (s = ss_st_meta_int(st, "bandsplit.hop", &hop, err)) != SS_OK)
        return s;
    if (n_fft < 16 || n_fft > 65536 || n_fft % 2 || hop < 1 || hop > n_fft)
        return ss_fail(err, SS_E_DATA, "%s: bandsplit.n_fft %lld / bandsplit.hop %lld out of range", path,
                       (long long)n_fft, (long long)hop);
    if (info->segment_length <= n_fft)
        return ss_fail(err, SS_E_DATA, "%s: segment must be longer than n_fft samples", path);
    int64_t bins = n_fft / 2 + 1, shape[2] = {info->n_sources, bins};
    const ss_st_tensor *t;
    if ((s = ss_st_get(st, "masks", 2, shape, &t, err)) != SS_OK || (s = ss_st_check_all_used(st, err)) != SS_OK)
        return s;
    bandsplit *m = calloc(1, sizeof *m);
    float *host = malloc((size_t)t->numel * sizeof *host);
    if (!m || !host) {
        free(m);
        free(host);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    }
    m->n_sources = info->n_sources;
    m->channels = info->channels;
    m->n_fft = (int)n_fft;
    m->hop = (int)hop;
    m->segment = info->segment_length;
    ss_st_to_f32(t, host);
    m->masks = ss_alloc(be, (size_t)t->numel);
    ss_upload(be, m->masks, host, (size_t)t->numel);
    free(host);
    *state = m;
    return ss_backend_status(be, err);
}

static ss_status bandsplit_forward(void *state, ss_backend *be, const float *x, float *y, int batch,
                                   int64_t length, ss_error *err)
{
    (void)err;
    const bandsplit *m = state;
    int rows = batch * m->channels, bins = m->n_fft / 2 + 1;
    ss_stft_desc d = {.batch = rows, .length = length, .n_fft = m->n_fft, .hop = m->hop};
    int64_t frames = ss_stft_frames(&d);
    size_t spec_n = (size_t)rows * 2 * (size_t)bins * (size_t)frames;
    float *spec = ss_alloc(be, spec_n);                          /* X  [B*C, 2, F, N] */
    float *masked = ss_alloc(be, spec_n);                        /* Y_s [B*C, 2, F, N] */
    float *wave = ss_alloc(be, (size_t)rows * (size_t)length);   /* y_s [B, C, T]     */
    ss_stft(be, &d, x, spec);
    size_t item = (size_t)m->channels * (size_t)length;          /* [C, T]            */
    for (int s = 0; s < m->n_sources; s++) {
        ss_channel_affine(be, masked, spec, rows * 2, bins, frames, m->masks + (size_t)s * bins, NULL);
        ss_istft(be, &d, masked, wave);
        /* y[b, s] <- wave[b] for every b */
        ss_copy2d(be, y + (size_t)s * item, (size_t)m->n_sources * item, wave, item, (size_t)batch, item);
    }
    ss_free(be, spec);
    ss_free(be, masked);
    ss_free(be, wave);
    return SS_OK;
}

static int64_t bandsplit_valid_length(void *state, int64_t length)
{
    const bandsplit *m = state;
    return length > m->segment ? length : m->segment;
}

static void bandsplit_free(void *state, ss_backend *be)
{
    bandsplit *m = state;
    if (!m)
        return;
    ss_free(be, m->masks);
    free(m);
}

/* Normalised as demucs's CLI does (a linear model: the stems come out the
 * same up to rounding, and so bit for bit as they always have). */
static ss_input_norm bandsplit_input_norm(const void *state)
{
    (void)state;
    return SS_NORM_MIX_MEAN_STD;
}

/* The masks; per segment (C rows of T samples, F bins, N frames) the spectrum
 * and the masked copy (2 x C x 2F x N floats), the inverse's output (C x T)
 * and the engine's input and output (C x T, S x C x T).  The FFT plans are the
 * backend's and small. */
static ss_status bandsplit_memory_estimate(ss_st *st, const ss_model_info *info, ss_mem_estimate *out,
                                           ss_error *err)
{
    int64_t n_fft, hop;
    ss_status s;
    if ((s = ss_st_meta_int(st, "bandsplit.n_fft", &n_fft, err)) != SS_OK ||
        (s = ss_st_meta_int(st, "bandsplit.hop", &hop, err)) != SS_OK)
        return s;
    if (n_fft < 16 || n_fft > 65536 || hop < 1 || hop > n_fft)
        return ss_fail(err, SS_E_DATA, "%s: bandsplit.n_fft %lld / bandsplit.hop %lld out of range", ss_st_path(st),
                       (long long)n_fft, (long long)hop);
    uint64_t C = (uint64_t)info->channels, T = (uint64_t)info->segment_length, S = (uint64_t)info->n_sources;
    uint64_t spec = C * 2u * (uint64_t)(n_fft / 2 + 1) * (T / (uint64_t)hop + 1u);
    out->fixed = info->parameters * 4u;
    out->per_item = 4u * (2u * spec + C * T + C * T + S * C * T);
    return SS_OK;
}

const ss_arch ss_arch_bandsplit = {
    .name = "bandsplit",
    .load = bandsplit_load,
    .forward = bandsplit_forward,
    .valid_length = bandsplit_valid_length,
    .free = bandsplit_free,
    .input_norm = bandsplit_input_norm,
    .chunking = SS_CHUNK_DEMUCS,
    .memory_estimate = bandsplit_memory_estimate,
};

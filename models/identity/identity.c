/* identity.c - a test architecture: every source is the input times a gain.
 *
 *   weights:  gain [n_sources]          (metadata as in docs/model-format.md)
 *   forward:  x [B, C, T] -> y [B, S, C, T],  y[b, s] = gain[s] * x[b]
 *
 * With unit gains it reconstructs its input exactly, which is what the
 * chunking engine's tests need: any error is the engine's.  Optional metadata
 * identity.pad = "segment" makes valid_length() ask for a whole training
 * segment, as HTDemucs does, so the engine's padding path is exercised.
 * Optional identity.norm = "none" asks the pipeline for its input as decoded
 * (SS_NORM_NONE); the default, "mix", for demucs's normalisation; metadata
 * msst.normalize = "true" (read for every architecture by src/model.c) for MSST's.
 * Optional identity.chunk_dc = "true" makes the output depend on where the
 * chunks fall, so that the chunking schemes can be tested against their
 * references:  y[b, s, c] = gain[s] * (x[b, c] - mean over t of x[b, c]).
 * Optional identity.offset = a number added to every output sample (so that
 * a normalisation's scale does not cancel out: a test can tell std from std). */
#include <stdlib.h>
#include <string.h>

#include "../../src/model.h"

typedef struct identity {
    int n_sources;              /* S                  */
    int channels;               /* C                  */
    float gain[SS_MAX_SOURCES]; /* gain [S], on host  */
    int64_t pad_to;             /* 0, or the segment length valid_length() pads to */
    ss_input_norm norm;         /* identity.norm (msst.normalize: src/model.c)     */
    int chunk_dc;               /* identity.chunk_dc                               */
    float offset;               /* identity.offset                                 */
    float *scratch;             /* chunk_dc: device [4, rows]: mean, std, scale, shift */
    size_t scratch_rows;
} identity;

static ss_status identity_load(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err)
{
    (void)be;
    const ss_st_tensor *t;
    int64_t shape[1] = {info->n_sources};
    ss_status s = ss_st_get(st, "gain", 1, shape, &t, err);
    if (s != SS_OK || (s = ss_st_check_all_used(st, err)) != SS_OK)
        return s;
    identity *m = calloc(1, sizeof *m);
    if (!m)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", ss_st_path(st));
    m->n_sources = info->n_sources;
    m->channels = info->channels;
    ss_st_to_f32(t, m->gain);
    const char *pad = ss_st_meta(st, "identity.pad");
    if (pad && strcmp(pad, "segment") == 0) {
        m->pad_to = info->segment_length;
    } else if (pad && strcmp(pad, "none") != 0) {
        free(m);
        return ss_fail(err, SS_E_DATA, "%s: identity.pad '%s': expected segment or none", ss_st_path(st), pad);
    }
    const char *norm = ss_st_meta(st, "identity.norm");
    m->norm = SS_NORM_MIX_MEAN_STD;
    if (norm && strcmp(norm, "none") == 0) {
        m->norm = SS_NORM_NONE;
    } else if (norm && strcmp(norm, "mix") != 0) {
        free(m);
        return ss_fail(err, SS_E_DATA, "%s: identity.norm '%s': expected mix or none", ss_st_path(st), norm);
    }
    if (ss_st_meta(st, "identity.chunk_dc") &&
        (s = ss_st_meta_bool(st, "identity.chunk_dc", &m->chunk_dc, err)) != SS_OK) {
        free(m);
        return s;
    }
    double off = 0.0;
    if (ss_st_meta(st, "identity.offset") && (s = ss_st_meta_double(st, "identity.offset", &off, err)) != SS_OK) {
        free(m);
        return s;
    }
    m->offset = (float)off;
    *state = m;
    return SS_OK;
}

static ss_status identity_forward(void *state, ss_backend *be, const float *x, float *y, int batch,
                                  int64_t length, ss_error *err)
{
    identity *m = state;
    size_t n = (size_t)m->channels * (size_t)length;       /* one item of x: [C, T] */
    if (m->chunk_dc || m->offset != 0.0f) {
        /* per row (b, c) of x: y row = gain * x + (offset - gain * mean), mean 0 without chunk_dc */
        int rows = batch * m->channels;
        if (m->scratch_rows < (size_t)rows) {
            ss_free(be, m->scratch);
            m->scratch_rows = 0;
            if (!(m->scratch = ss_alloc(be, 4 * (size_t)rows)))
                return ss_fail(err, SS_E_DEVICE, "identity: cannot allocate %d rows of scratch", rows);
            m->scratch_rows = (size_t)rows;
        }
        float *mean = m->scratch, *sd = mean + rows, *scale = sd + rows, *shift = scale + rows;
        if (m->chunk_dc)
            ss_row_moments(be, mean, sd, x, rows, length);
        for (int s = 0; s < m->n_sources; s++) {
            ss_fill(be, scale, m->gain[s], (size_t)rows);
            if (m->chunk_dc)
                ss_scale(be, shift, mean, -m->gain[s], (size_t)rows);
            else
                ss_fill(be, shift, 0.0f, (size_t)rows);
            if (m->offset != 0.0f) {
                ss_fill(be, sd, m->offset, (size_t)rows);
                ss_add(be, shift, shift, sd, (size_t)rows);
            }
            for (int b = 0; b < batch; b++)
                ss_row_affine(be, y + ((size_t)b * m->n_sources + s) * n, x + (size_t)b * n, m->channels, length,
                              scale + (size_t)b * m->channels, shift + (size_t)b * m->channels);
        }
        return SS_OK;
    }
    for (int b = 0; b < batch; b++)
        for (int s = 0; s < m->n_sources; s++)
            ss_scale(be, y + ((size_t)b * m->n_sources + s) * n, x + (size_t)b * n, m->gain[s], n);
    return SS_OK;
}

static int64_t identity_valid_length(void *state, int64_t length)
{
    const identity *m = state;
    return length < m->pad_to ? m->pad_to : length;
}

static void identity_free(void *state, ss_backend *be)
{
    identity *m = state;
    if (m)
        ss_free(be, m->scratch);
    free(m);
}

static ss_input_norm identity_input_norm(const void *state) { return ((const identity *)state)->norm; }

const ss_arch ss_arch_identity = {
    .name = "identity",
    .load = identity_load,
    .forward = identity_forward,
    .valid_length = identity_valid_length,
    .free = identity_free,
    .input_norm = identity_input_norm,
    .chunking = SS_CHUNK_DEMUCS,
    .memory_estimate = NULL,              /* the floor: weights and transfer buffers */
};

/* stream.c - --stream: raw PCM in, one stem out, frame by frame (see stream.h). */
#include "stream.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio.h"
#include "engine.h"

#define READ_FRAMES 4096          /* frames one read() asks for at most */

const char *ss_pcm_format_name(ss_pcm_format f) { return f == SS_PCM_F32 ? "f32" : "s16"; }

int ss_pcm_format_parse(const char *s)
{
    if (strcmp(s, "s16") == 0)
        return SS_PCM_S16;
    if (strcmp(s, "f32") == 0)
        return SS_PCM_F32;
    return -1;
}

int ss_pcm_format_bytes(ss_pcm_format f) { return f == SS_PCM_F32 ? 4 : 2; }

/* ---- the stream's state ----------------------------------------------------------- */

typedef struct sstream {
    const ss_stream_params *p;
    int C, fb;                    /* channels; bytes per frame                        */
    /* input side */
    unsigned char *rbuf;          /* [READ_FRAMES fb]: a read, a partial frame first  */
    size_t rn;                    /* bytes held (< fb between reads)                  */
    float *fin;                   /* [READ_FRAMES, C] one read's frames               */
    ss_resampler *ra;             /* rate -> the model's                              */
    float *fifo;                  /* [fifo_cap, C] model-rate frames not yet pulled   */
    int64_t fifo_n, fifo_cap;
    int eof;                      /* end of file seen (and ra's tail in the fifo)     */
    int64_t frames_in;            /* frames read                                      */
    /* output side */
    ss_resampler *rb;             /* the model's rate -> rate                         */
    float *mix;                   /* [mix_cap, C] the stem of one push                */
    int64_t mix_cap;
    float *res;                   /* [res_cap, C] output frames not yet written       */
    int64_t res_n, res_cap;
    unsigned char *wbuf;          /* [wcap] PCM being written                         */
    size_t wcap;
    int64_t frames_out;           /* frames written                                   */
} sstream;

/* buf [*cap, C] to room for at least `need` frames (what it holds kept) */
static int grow(float **buf, int64_t *cap, int64_t need, int C)
{
    if (need <= *cap)
        return 0;
    int64_t c = need + need / 2 + 1024;
    float *b = realloc(*buf, sizeof(float) * (size_t)c * (size_t)C);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

/* little-endian PCM -> float, n samples */
static void pcm_decode(ss_pcm_format f, const unsigned char *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f == SS_PCM_F32) {
            const unsigned char *b = in + 4 * i;
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&out[i], &u, sizeof u);
        } else {
            const unsigned char *b = in + 2 * i;
            int16_t v = (int16_t)(uint16_t)((unsigned)b[0] | (unsigned)b[1] << 8);
            out[i] = (float)v / 32768.0f;
        }
    }
}

/* float -> little-endian PCM, n samples (s16: as the file path's 16-bit WAV has them) */
static void pcm_encode(ss_pcm_format f, const float *in, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f == SS_PCM_F32) {
            uint32_t u;
            memcpy(&u, &in[i], sizeof u);
            unsigned char *b = out + 4 * i;
            b[0] = (unsigned char)u;
            b[1] = (unsigned char)(u >> 8);
            b[2] = (unsigned char)(u >> 16);
            b[3] = (unsigned char)(u >> 24);
        } else {
            float v = in[i] * 32768.0f;
            int16_t s = v >= 32767.0f ? 32767 : v <= -32768.0f ? -32768 : v == v ? (int16_t)floorf(v) : 0;
            uint16_t u = (uint16_t)s;
            out[2 * i] = (unsigned char)u;
            out[2 * i + 1] = (unsigned char)(u >> 8);
        }
    }
}

/* ---- input: read, decode, resample to the model's rate -------------------------------- */

/* Frames of the resampler's output appended to the fifo. */
static ss_status fifo_push(sstream *st, const float *in, int64_t n, ss_error *err)
{
    int64_t need = n >= 0 ? ss_resampler_max_out(st->ra, n) : ss_resampler_end_max(st->ra), got = 0;
    if (grow(&st->fifo, &st->fifo_cap, st->fifo_n + need + 1, st->C) != 0)     /* + 1: never NULL */
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", st->p->in_name);
    float *dst = st->fifo + (size_t)(st->fifo_n * st->C);
    ss_status s = n >= 0 ? ss_resampler_push(st->ra, in, n, dst, need, &got, err)
                         : ss_resampler_end(st->ra, dst, need, &got, err);
    st->fifo_n += got;
    return s;
}

/* One read(): its whole frames into the fifo; at end of file the resampler's tail. */
static ss_status read_some(sstream *st, ss_error *err)
{
    const ss_stream_params *p = st->p;
    size_t cap = (size_t)READ_FRAMES * (size_t)st->fb;
    ssize_t r;
    for (;;) {
        r = read(p->in_fd, st->rbuf + st->rn, cap - st->rn);
        if (r >= 0)
            break;
        if (errno != EINTR)
            return ss_fail(err, SS_E_IO, "%s: read error: %s", p->in_name, strerror(errno));
        if (p->cancel && *p->cancel)
            return ss_fail(err, SS_E_INTERRUPT, "interrupted");
    }
    if (r == 0) {
        if (st->rn > 0)
            return ss_fail(err, SS_E_DATA, "%s: the input ends inside a frame: %zu byte%s after %lld whole frames (a "
                           "frame is %d bytes: %d channel%s of %s)", p->in_name, st->rn, st->rn == 1 ? "" : "s",
                           (long long)st->frames_in, st->fb, st->C, st->C == 1 ? "" : "s",
                           ss_pcm_format_name(p->format));
        st->eof = 1;
        return fifo_push(st, NULL, -1, err);
    }
    st->rn += (size_t)r;
    size_t n = st->rn / (size_t)st->fb;
    if (n == 0)
        return SS_OK;
    pcm_decode(p->format, st->rbuf, st->fin, n * (size_t)st->C);
    st->rn -= n * (size_t)st->fb;
    memmove(st->rbuf, st->rbuf + n * (size_t)st->fb, st->rn);
    st->frames_in += (int64_t)n;
    return fifo_push(st, st->fin, (int64_t)n, err);
}

/* Engine pull: what has come, at least one frame (0: the end), planar [C, cap]. */
static ss_status stream_pull(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err)
{
    sstream *st = arg;
    *got = 0;
    while (st->fifo_n == 0 && !st->eof) {
        ss_status s = read_some(st, err);
        if (s != SS_OK)
            return s;
    }
    int64_t k = st->fifo_n < n ? st->fifo_n : n;
    for (int c = 0; c < st->C; c++)
        for (int64_t i = 0; i < k; i++)
            buf[c * cap + i] = st->fifo[i * st->C + c];
    if (st->fifo_n > k)
        memmove(st->fifo, st->fifo + k * st->C, sizeof(float) * (size_t)((st->fifo_n - k) * st->C));
    st->fifo_n -= k;
    *got = k;
    return SS_OK;
}

/* ---- output: the stem, resampled back, written ------------------------------------------ */

static ss_status write_all(sstream *st, const unsigned char *b, size_t len, ss_error *err)
{
    const ss_stream_params *p = st->p;
    while (len) {
        ssize_t w = write(p->out_fd, b, len);
        if (w < 0 && errno == EINTR) {
            if (p->cancel && *p->cancel)
                return ss_fail(err, SS_E_INTERRUPT, "interrupted");
            continue;
        }
        if (w <= 0)
            return ss_fail(err, SS_E_IO, "%s: write error: %s%s", p->out_name, w < 0 ? strerror(errno) : "no space",
                           w < 0 && errno == EPIPE ? " (its reader has gone)" : "");
        b += w;
        len -= (size_t)w;
    }
    return SS_OK;
}

/* Write the held output frames, at most up to frame `limit` of the stream
 * (the frames read so far: never more out than in). */
static ss_status flush_out(sstream *st, int64_t limit, ss_error *err)
{
    int64_t k = limit - st->frames_out < st->res_n ? limit - st->frames_out : st->res_n;
    if (k <= 0)
        return SS_OK;
    size_t bytes = (size_t)k * (size_t)st->fb;
    if (bytes > st->wcap) {
        unsigned char *w = realloc(st->wbuf, bytes);
        if (!w)
            return ss_fail(err, SS_E_NOMEM, "%s: out of memory", st->p->out_name);
        st->wbuf = w;
        st->wcap = bytes;
    }
    pcm_encode(st->p->format, st->res, st->wbuf, (size_t)(k * st->C));
    ss_status s = write_all(st, st->wbuf, bytes, err);
    if (s != SS_OK)
        return s;
    memmove(st->res, st->res + k * st->C, sizeof(float) * (size_t)((st->res_n - k) * st->C));
    st->res_n -= k;
    st->frames_out += k;
    return SS_OK;
}

/* resampled frames of mix (n frames; n < 0: the resampler's tail) held for writing */
static ss_status out_push(sstream *st, int64_t n, ss_error *err)
{
    int64_t need = n >= 0 ? ss_resampler_max_out(st->rb, n) : ss_resampler_end_max(st->rb), got = 0;
    if (grow(&st->res, &st->res_cap, st->res_n + need + 1, st->C) != 0)       /* + 1: never NULL */
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", st->p->out_name);
    float *dst = st->res + st->res_n * st->C;
    ss_status s = n >= 0 ? ss_resampler_push(st->rb, st->mix, n, dst, need, &got, err)
                         : ss_resampler_end(st->rb, dst, need, &got, err);
    st->res_n += got;
    return s;
}

/* Engine push: stems [S, C, n] planar -> the chosen stem, written as far as final. */
static ss_status stream_push(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err)
{
    sstream *st = arg;
    if (grow(&st->mix, &st->mix_cap, n, st->C) != 0)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", st->p->out_name);
    for (int c = 0; c < st->C; c++) {
        const float *row = stems + ((int64_t)st->p->source * st->C + c) * pitch;
        for (int64_t i = 0; i < n; i++)
            st->mix[i * st->C + c] = row[i] + 0.0f;   /* the file path's de-normalisation (-0 -> +0) */
    }
    ss_status s = out_push(st, n, err);
    return s != SS_OK ? s : flush_out(st, st->frames_in, err);
}

/* ---- the run -------------------------------------------------------------------------------- */

ss_status ss_stream_check(const ss_model *m, const ss_stream_params *p, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    if (!ss_model_stream_live(m))
        return ss_fail(err, SS_E_USAGE, "--stream: model %s (%s) does not run as a live stream: it needs the whole "
                       "track (--stream takes a model that runs frame by frame, e.g. DeepFilterNet3)", info->name,
                       info->architecture);
    if (ss_model_input_norm(m) != SS_NORM_NONE)
        return ss_fail(err, SS_E_USAGE, "--stream: model %s normalises the whole track first, which a live stream "
                       "cannot", info->name);
    if (!info->channels_independent && p->channels != info->channels)
        return ss_fail(err, SS_E_USAGE, "--stream-channels %d: model %s takes %d channel%s", p->channels, info->name,
                       info->channels, info->channels == 1 ? "" : "s");
    if (!ss_resample_possible(p->rate, info->samplerate))
        return ss_fail(err, SS_E_USAGE, "--stream-rate %d: too far from model %s's %d Hz to resample", p->rate,
                       info->name, info->samplerate);
    if (p->source < 0 || p->source >= ss_model_net_sources(info))
        return ss_fail(err, SS_E_INTERNAL, "--stream: stem %d of model %s's %d", p->source, info->name,
                       ss_model_net_sources(info));
    return SS_OK;
}

ss_status ss_stream_run(ss_model *m, ss_backend *be, const ss_stream_params *p, int64_t *frames, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    if (frames)
        *frames = 0;
    ss_status s = ss_stream_check(m, p, err);
    if (s != SS_OK)
        return s;
    sstream st = {.p = p, .C = p->channels, .fb = p->channels * ss_pcm_format_bytes(p->format)};
    st.rbuf = malloc((size_t)READ_FRAMES * (size_t)st.fb);
    st.fin = malloc(sizeof(float) * (size_t)READ_FRAMES * (size_t)st.C);
    if (!st.rbuf || !st.fin) {
        s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", p->in_name);
        goto done;
    }
    if ((s = ss_resampler_new(st.C, p->rate, info->samplerate, SS_RESAMPLE_LIVE, &st.ra, err)) != SS_OK ||
        (s = ss_resampler_new(st.C, info->samplerate, p->rate, SS_RESAMPLE_LIVE, &st.rb, err)) != SS_OK)
        goto done;
    if (p->verbose) {
        ss_stream_geom g;
        if ((s = ss_model_stream_geom(m, &g, err)) != SS_OK)
            goto done;
        fprintf(stderr, "stemsplit: --stream: %s %d Hz, %d channel%s from %s; stem %s of model %s to %s as it is "
                "final\n", ss_pcm_format_name(p->format), p->rate, st.C, st.C == 1 ? "" : "s", p->in_name,
                info->sources[p->source], info->name, p->out_name);
        if (g.latency > 0)
            fprintf(stderr, "stemsplit: --stream: algorithmic latency %lld samples at %d Hz (%.1f ms: the model's "
                    "window and look-ahead)%s\n", (long long)g.latency, info->samplerate,
                    1000.0 * (double)g.latency / info->samplerate,
                    p->rate != info->samplerate ? ", plus the two resampling filters' half lengths" : "");
    }
    ss_engine_params ep = {.batch = 1, .channels = st.C, .cancel = p->cancel};
    s = ss_engine_run(m, be, &ep, SS_ENGINE_LIVE, stream_pull, &st, stream_push, &st, err);
    /* the tail: the resampler's (beyond the input's length dropped), then
     * zeros up to that length (resampling may give a frame less), as the file
     * path pads */
    if (s == SS_OK && (s = out_push(&st, -1, err)) == SS_OK && (s = flush_out(&st, st.frames_in, err)) == SS_OK &&
        st.frames_out < st.frames_in) {
        int64_t gap = st.frames_in - st.frames_out;
        st.res_n = 0;
        if (grow(&st.res, &st.res_cap, gap, st.C) != 0) {
            s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", p->out_name);
        } else {
            memset(st.res, 0, sizeof(float) * (size_t)(gap * st.C));
            st.res_n = gap;
            s = flush_out(&st, st.frames_in, err);
        }
    }
    if (s == SS_OK && st.frames_out != st.frames_in)
        s = ss_fail(err, SS_E_INTERNAL, "--stream: %lld frames written for %lld read", (long long)st.frames_out,
                    (long long)st.frames_in);
    if (s == SS_OK && p->verbose) {
        ss_track_stat stats[SS_MAX_TRACK_STATS];
        int n = ss_model_track_stats(m, stats, SS_MAX_TRACK_STATS);
        fprintf(stderr, "stemsplit: --stream: %lld frames (%.2f s) in and out\n", (long long)st.frames_in,
                (double)st.frames_in / p->rate);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "stemsplit: --stream: %s %.2f %s\n", stats[i].what, stats[i].value, stats[i].unit);
    }
    if (frames)
        *frames = st.frames_in;
done:
    ss_resampler_free(st.ra);
    ss_resampler_free(st.rb);
    free(st.rbuf);
    free(st.fin);
    free(st.fifo);
    free(st.mix);
    free(st.res);
    free(st.wbuf);
    return s;
}

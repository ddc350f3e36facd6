/* separate.c - one file through decode, separation and encode (see separate.h). */
#include "separate.h"
#include "clock.h"
#include "settings.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "template.h"
#include "threadpool.h"

#define BLOCK 32768              /* frames per decode block */

const char *ss_clip_name(ss_clip c)
{
    return c == SS_CLIP_RESCALE ? "rescale" : c == SS_CLIP_CLAMP ? "clamp" : "none";
}

int ss_clip_parse(const char *s)
{
    for (int c = SS_CLIP_RESCALE; c <= SS_CLIP_NONE; c++)
        if (strcmp(s, ss_clip_name((ss_clip)c)) == 0)
            return c;
    return -1;
}

/* ---- the outputs of one file ------------------------------------------------------ */

typedef struct output {
    char name[2 * SS_MAX_NAME + 4]; /* stem name ("vocals", "no_vocals", "drums/kick") */
    uint32_t sources;             /* bit i: source i is summed into this output      */
    char path[PATH_MAX];          /* final path                                      */
    ss_resampler *rs;             /* model rate -> output rate (the input's, except
                                     where the format stores other rates: Opus)    */
    ss_audio_writer *w;           /* the encoder, or NULL (see write_frames)         */
    int stage_fd;                 /* unlinked raw f32 staging file (rescale), or -1  */
    int64_t written;              /* frames delivered so far (capped at the length)  */
    float peak;                   /* largest |sample| staged so far (rescale)        */
    /* rescale mode with a writer that writes at offsets (encoder.running): frames
     * [0, ok) and [from, enc) of the file hold the staged frames at the current
     * scale, [ok, from) still an earlier scale's (ok = from = 0: all of [0, enc));
     * seen: `written` at the last encode_running */
    int64_t enc, from, ok, seen;
    float *mix;                   /* [n, C] this output's block at model rate        */
    float *res;                   /* its resampled frames                            */
    int64_t mix_cap, res_cap;
} output;

/* Name of the track: the input's base name without its extension; *ext: the
 * extension without the dot ("" when none, and for standard input). */
static void track_name(const char *input, char *out, size_t size, const char **ext)
{
    *ext = "";
    if (strcmp(input, "-") == 0) {
        snprintf(out, size, "stdin");
        return;
    }
    const char *base = strrchr(input, '/');
    base = base ? base + 1 : input;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (dot && dot != base)
        *ext = dot + 1;
    snprintf(out, size, "%.*s", (int)(len < size - 1 ? len : size - 1), base);
}

/* The outputs the parameters ask for, with their paths. */
static ss_status plan_outputs(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                              output *outs, int *n_out, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    char track[NAME_MAX + 1], rel[PATH_MAX];
    const char *inext;
    track_name(input, track, sizeof track, &inext);
    int n = 0;
    uint32_t all = info->n_sources >= 32 ? 0xffffffffu : (1u << info->n_sources) - 1;
    const char *pre = p->stem_prefix ? p->stem_prefix : "";
    if (p->two_stems >= 0) {
        outs[n].sources = 1u << p->two_stems;
        snprintf(outs[n++].name, sizeof outs[0].name, "%s%s", pre, info->sources[p->two_stems]);
        outs[n].sources = all & ~(1u << p->two_stems);
        snprintf(outs[n++].name, sizeof outs[0].name, "%sno_%s", pre, info->sources[p->two_stems]);
    } else {
        for (int i = 0; i < info->n_sources; i++)
            if (!p->stems || (p->stems & (1u << i))) {
                outs[n].sources = 1u << i;
                snprintf(outs[n++].name, sizeof outs[0].name, "%s%s", pre, info->sources[i]);
            }
    }
    for (int i = 0; i < n; i++) {
        ss_template_fields f = {track, outs[i].name, ss_file_format_ext(p->format),
                                p->model_name ? p->model_name : info->name, reldir ? reldir : "", inext};
        ss_status s = ss_template_expand(p->filename, &f, rel, sizeof rel, err);
        if (s != SS_OK)
            return s;
        if ((size_t)snprintf(outs[i].path, sizeof outs[i].path, "%s/%s", p->out_dir, rel) >= sizeof outs[i].path)
            return ss_fail(err, SS_E_USAGE, "%s/%s: output path too long", p->out_dir, rel);
        for (int j = 0; j < i; j++)
            if (strcmp(outs[i].path, outs[j].path) == 0)
                return ss_fail(err, SS_E_USAGE, "--filename '%s' writes stems '%s' and '%s' of %s to the same file "
                               "%s (use {stem})", p->filename, outs[j].name, outs[i].name, input, outs[i].path);
        outs[i].stage_fd = -1;
    }
    *n_out = n;
    return SS_OK;
}

/* The parameters of chained stage c of p (a model run on p's model's stem):
 * p's outputs, encoding and threads, c's chunking with p's progress and
 * cancel, every stem of c's model, named prefix + stem (prefix: "STEM/",
 * room for SS_MAX_NAME + 1 bytes) with p's model's name as {model}. */
static void chain_params(ss_model *m, const ss_sep_params *p, const ss_chain *c, char *prefix, ss_sep_params *out)
{
    const ss_model_info *info = ss_model_get_info(m);
    snprintf(prefix, SS_MAX_NAME + 1, "%s/", info->sources[c->source]);
    *out = *p;
    out->engine = c->engine;
    out->engine.progress = p->engine.progress;
    out->engine.progress_arg = p->engine.progress_arg;
    out->engine.cancel = p->engine.cancel;
    out->stems = 0;
    out->two_stems = -1;
    out->chain = NULL;
    out->n_chain = 0;
    out->stem_prefix = prefix;
    out->model_name = info->name;
}

ss_status ss_separate_outputs(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                              void (*fn)(void *arg, const char *path), void *arg, ss_error *err)
{
    /* every model's outputs, one block of SS_MAX_SOURCES + 1 per model */
    output *outs = calloc((size_t)(1 + p->n_chain) * (SS_MAX_SOURCES + 1), sizeof *outs);
    if (!outs)
        return ss_fail(err, SS_E_NOMEM, "out of memory");
    int n = 0, total = 0;
    ss_status s = plan_outputs(m, p, input, reldir, outs, &n, err);
    total = n;
    for (int k = 0; s == SS_OK && k < p->n_chain; k++) {
        char prefix[SS_MAX_NAME + 1];
        ss_sep_params cp;
        chain_params(m, p, &p->chain[k], prefix, &cp);
        output *mine = outs + (size_t)(k + 1) * (SS_MAX_SOURCES + 1);
        s = plan_outputs(p->chain[k].model, &cp, input, reldir, mine, &n, err);
        for (int i = 0; s == SS_OK && i < n; i++) {
            for (int q = 0; q < total && s == SS_OK; q++)     /* another model's stem, same file */
                if (strcmp(mine[i].path, outs[q].path) == 0)
                    s = ss_fail(err, SS_E_USAGE, "--filename '%s' writes stems '%s' and '%s' of %s to the same file "
                                "%s (use {stem})", p->filename, outs[q].name, mine[i].name, input, mine[i].path);
            outs[total++] = mine[i];
        }
    }
    for (int i = 0; s == SS_OK && i < total; i++)
        fn(arg, outs[i].path);
    free(outs);
    return s;
}

/* Folders a job created (to remove again, when empty, after a failure). */
typedef struct dir_list {
    char **v;
    int n, cap;
} dir_list;

static void dirs_add(dir_list *d, const char *path)
{
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 8;
        char **v = realloc(d->v, sizeof *v * (size_t)cap);
        if (!v)
            return;                 /* best effort: the folder is then kept */
        d->v = v;
        d->cap = cap;
    }
    if ((d->v[d->n] = strdup(path)))
        d->n++;
}

/* rmdir the folders created, deepest first: only the empty ones go (a
 * failed or interrupted track leaves no empty folder behind). */
static void dirs_remove_empty(dir_list *d)
{
    for (int i = d->n - 1; i >= 0; i--) {
        (void)rmdir(d->v[i]);
        free(d->v[i]);
    }
    free(d->v);
    memset(d, 0, sizeof *d);
}

/* mkdir -p the directory part of path; the folders created go to `made`. */
static ss_status make_parents(const char *path, dir_list *made, ss_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return SS_OK;
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(dir, 0777) == 0)
                dirs_add(made, dir);
            else if (errno != EEXIST)
                return ss_fail(err, SS_E_CANTCREAT, "%s: cannot create directory: %s", dir, strerror(errno));
            struct stat sb;
            if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
                return ss_fail(err, SS_E_CANTCREAT, "%s: not a directory", dir);
            *p = c;
            if (!c)
                break;
        }
    }
    return SS_OK;
}

/* Does the folder of path exist?  (Another job or run may remove an empty
 * folder it created between our mkdir and our create: then try again.) */
static int parent_exists(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 1;
    *slash = '\0';
    struct stat sb;
    return stat(dir, &sb) == 0;
}

/* The outcome of one output's job; the first member of every per-output job. */
typedef struct out_result {
    ss_status status;
    ss_error err;
} out_result;

#define MAX_JOBS 64              /* threads of one each_output() call */

/* Run fn on n <= MAX_JOBS jobs of `size` bytes each (each starting with its
 * out_result), one thread per job (the first on this thread; a job whose
 * thread cannot be had runs here too); the first failure in job order is
 * returned with its message. */
static ss_status each_output(int n, void *(*fn)(void *), void *jobs, size_t size, ss_error *err)
{
    pthread_t tid[MAX_JOBS];
    int started[MAX_JOBS] = {0};
    if (n > MAX_JOBS)
        return ss_fail(err, SS_E_INTERNAL, "each_output: %d jobs (at most %d)", n, MAX_JOBS);
    char *job = jobs;
    for (int k = 1; k < n; k++)
        started[k] = pthread_create(&tid[k], NULL, fn, job + (size_t)k * size) == 0;
    if (n > 0)
        fn(job);
    for (int k = 1; k < n; k++) {
        if (started[k])
            pthread_join(tid[k], NULL);
        else
            fn(job + (size_t)k * size);
    }
    for (int k = 0; k < n; k++) {
        const out_result *r = (const out_result *)(job + (size_t)k * size);
        if (r->status != SS_OK)
            return ss_fail(err, r->status, "%s", r->err.msg);
    }
    return SS_OK;
}

/* ---- the mixture a residual stem needs ------------------------------------------------ */

/* The model-rate mixture as decoded (not normalised), from the frames the
 * engine has pulled to those it has pushed: the encoder takes each pushed
 * block's frames to make the residual stem (mixture minus the network's
 * stems).  Filled on the engine's thread, emptied on its writer thread; it
 * holds the engine's lookahead, a few chunks, whatever the track's length. */
typedef struct mix_fifo {
    pthread_mutex_t mu;
    float *buf;              /* [cap, C] interleaved, frames [0, n) waiting      */
    int64_t n, cap;
    int C;
} mix_fifo;

static ss_status mix_fifo_put(mix_fifo *f, const float *x, int64_t n, const char *input, ss_error *err)
{
    pthread_mutex_lock(&f->mu);
    if (f->n + n > f->cap) {
        int64_t cap = 2 * (f->n + n);
        float *b = realloc(f->buf, sizeof(float) * (size_t)cap * (size_t)f->C);
        if (!b) {
            pthread_mutex_unlock(&f->mu);
            return ss_fail(err, SS_E_NOMEM, "%s: out of memory keeping the mixture for the residual stem", input);
        }
        f->buf = b;
        f->cap = cap;
    }
    memcpy(f->buf + f->n * f->C, x, sizeof(float) * (size_t)(n * f->C));
    f->n += n;
    pthread_mutex_unlock(&f->mu);
    return SS_OK;
}

/* Move the first n frames into out [n, C]. */
static ss_status mix_fifo_take(mix_fifo *f, float *out, int64_t n, ss_error *err)
{
    pthread_mutex_lock(&f->mu);
    if (n > f->n) {
        int64_t have = f->n;
        pthread_mutex_unlock(&f->mu);
        return ss_fail(err, SS_E_INTERNAL, "residual stem: %lld frames pushed, %lld pulled", (long long)n,
                       (long long)have);
    }
    memcpy(out, f->buf, sizeof(float) * (size_t)(n * f->C));
    memmove(f->buf, f->buf + n * f->C, sizeof(float) * (size_t)((f->n - n) * f->C));
    f->n -= n;
    pthread_mutex_unlock(&f->mu);
    return SS_OK;
}

/* ---- decode side -------------------------------------------------------------------- */

typedef struct decoder {
    ss_audio_reader *rd;
    const char *input;
    int cin, cm;             /* file channels, model channels                   */
    float *raw;              /* [BLOCK, cin] from the file                       */
    float *mapped;           /* [BLOCK, cm] in model channels                    */
    ss_resampler *rs;        /* input rate -> model rate                         */
    float *fifo;             /* [cap, cm] model-rate frames not yet handed out   */
    int64_t fifo_n, fifo_cap;
    int64_t file_left;       /* frames still to read from the file               */
    double mean, std;        /* normalisation                                    */
    double seconds;          /* time spent decoding                              */
    mix_fifo *mix;           /* the frames handed out go here too, or NULL       */
} decoder;

/* Downmix of 3..8 channels to stereo: row L then row R, in the WAV (SMPTE)
 * default channel order for that count.  ITU-R BS.775 for 5.1: L' = L +
 * 0.7071 C + 0.7071 Ls, R' = R + 0.7071 C + 0.7071 Rs, LFE dropped; 7.1 the
 * same with the back and side surrounds each at 0.7071; a back centre goes to
 * both sides at 0.5 (0.7071 * 0.7071).  Not normalised. */
#define K3DB 0.70710678f
static const float *downmix_rows(int cin)
{
    static const float m3[2][3] = {{1, 0, K3DB}, {0, 1, K3DB}};                        /* L R C          */
    static const float m4[2][4] = {{1, 0, K3DB, 0}, {0, 1, 0, K3DB}};                  /* L R Lb Rb      */
    static const float m5[2][5] = {{1, 0, K3DB, K3DB, 0}, {0, 1, K3DB, 0, K3DB}};      /* L R C Ls Rs    */
    static const float m6[2][6] = {{1, 0, K3DB, 0, K3DB, 0}, {0, 1, K3DB, 0, 0, K3DB}}; /* L R C LFE Ls Rs */
    static const float m7[2][7] = {{1, 0, K3DB, 0, 0.5f, K3DB, 0},                     /* L R C LFE Cb Ls Rs */
                                   {0, 1, K3DB, 0, 0.5f, 0, K3DB}};
    static const float m8[2][8] = {{1, 0, K3DB, 0, K3DB, 0, K3DB, 0},                  /* L R C LFE Lb Rb Ls Rs */
                                   {0, 1, K3DB, 0, 0, K3DB, 0, K3DB}};
    switch (cin) {
    case 3: return &m3[0][0];
    case 4: return &m4[0][0];
    case 5: return &m5[0][0];
    case 6: return &m6[0][0];
    case 7: return &m7[0][0];
    case 8: return &m8[0][0];
    default: return NULL;
    }
}

/* Can a cin-channel file feed a cm-channel model? */
static int channels_mappable(int cin, int cm)
{
    return cin == cm || cin == 1 || cm == 1 || (cm == 2 && downmix_rows(cin));
}

/* File layout -> model channels: mono duplicated, averaged down to mono, or
 * 3..8 channels downmixed to stereo (downmix_rows). */
static void map_channels_n(int cin, int cm, const float *in, float *out, int64_t n)
{
    const float *mx = cm == 2 && cin > 2 ? downmix_rows(cin) : NULL;
    if (cin == cm) {
        memcpy(out, in, sizeof(float) * (size_t)(n * cm));
    } else if (cin == 1) {
        for (int64_t i = 0; i < n; i++)
            for (int c = 0; c < cm; c++)
                out[i * cm + c] = in[i];
    } else if (mx) {
        for (int64_t i = 0; i < n; i++) {
            const float *x = in + i * cin;
            float l = 0.0f, r = 0.0f;
            for (int c = 0; c < cin; c++) {
                l += mx[c] * x[c];
                r += mx[cin + c] * x[c];
            }
            out[i * 2] = l;
            out[i * 2 + 1] = r;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float s = 0.0f;
            for (int c = 0; c < cin; c++)
                s += in[i * cin + c];
            out[i] = s / (float)cin;
        }
    }
}

static void map_channels(const decoder *d, const float *in, float *out, int64_t n)
{
    map_channels_n(d->cin, d->cm, in, out, n);
}

/* Frame i of a mapped block as mono: the mean over the model's channels. */
static double mono_at(const float *mapped, int cm, int64_t i)
{
    double v = 0.0;
    for (int c = 0; c < cm; c++)
        v += mapped[i * cm + c];
    return v / cm;
}

/* One block's mean and sum of squared deviations (two passes over it in cache);
 * -1 when every sample is finite, else the index of the first frame that is not. */
static int64_t block_moments(const float *mapped, int cm, int64_t n, double *mean, double *m2)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += mono_at(mapped, cm, i);
    if (!isfinite(sum))                          /* some sample is NaN or infinite: which */
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(mono_at(mapped, cm, i)))
                return i;
    double bmean = sum / (double)n, bm2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double v = mono_at(mapped, cm, i) - bmean;
        bm2 += v * v;
    }
    *mean = bmean;
    *m2 = bm2;
    return -1;
}

/* Blocks [b0, b1) of the file, moments into the shared per-block arrays: read
 * through a clone of the reader on a thread of its own, or (`direct`, the one
 * part of a pass on one thread) through the reader itself from frame 0. */
typedef struct stats_part {
    out_result res;                /* first member: each_output's contract */
    ss_audio_reader *rd;
    int direct;
    const char *input;
    int cin, cm;
    int64_t frames, b0, b1;
    double *mean, *m2;
    int64_t bad;                   /* first non-finite frame, -1 when none */
} stats_part;

static void *stats_part_run(void *arg)
{
    stats_part *t = arg;
    ss_error *err = &t->res.err;
    ss_audio_reader *rd = t->direct ? t->rd : NULL;
    float *raw = malloc(sizeof(float) * (size_t)BLOCK * (size_t)t->cin);
    float *mapped = malloc(sizeof(float) * (size_t)BLOCK * (size_t)(t->cm > t->cin ? t->cm : t->cin));
    ss_status s = !raw || !mapped ? ss_fail(err, SS_E_NOMEM, "%s: out of memory reading it", t->input)
                  : t->direct     ? SS_OK
                                  : ss_audio_clone(t->rd, &rd, err);
    if (s == SS_OK && !t->direct)
        s = ss_audio_seek(rd, t->b0 * BLOCK, err);
    for (int64_t b = t->b0; s == SS_OK && b < t->b1; b++) {
        int64_t want = t->frames - b * BLOCK < BLOCK ? t->frames - b * BLOCK : BLOCK, got = 0;
        if ((s = ss_audio_read(rd, raw, want, &got, err)) != SS_OK)
            break;
        if (got != want) {
            s = ss_fail(err, SS_E_IO, "%s: read error: file ended after %lld of %lld frames", t->input,
                        (long long)(b * BLOCK + got), (long long)t->frames);
            break;
        }
        map_channels_n(t->cin, t->cm, raw, mapped, got);
        int64_t bad = block_moments(mapped, t->cm, got, &t->mean[b], &t->m2[b]);
        if (bad >= 0) {
            t->bad = b * BLOCK + bad;
            break;
        }
    }
    if (!t->direct)
        ss_audio_close(rd);
    free(raw);
    free(mapped);
    t->res.status = s;
    return NULL;
}

#define STATS_MAX_THREADS 8

/* Merge block moments in block order with Chan et al.'s pairwise update (no
 * division per sample); serial and parallel passes merge the same blocks the
 * same way, so they agree bit for bit. */
static void merge_moments(double *mean, double *m2, int64_t *n, double bmean, double bm2, int64_t got)
{
    double delta = bmean - *mean, tot = (double)(*n + got);
    *mean += delta * (double)got / tot;
    *m2 += bm2 + delta * delta * (double)*n * (double)got / tot;
    *n += got;
}

/* ss_mix_stats of a stream read to its end on this thread: the same blocks
 * merged in the same order as the parallel pass's. */
static ss_status stats_to_end(ss_audio_reader *rd, const char *input, int cin, int cm, double *mean, double *m2,
                              int64_t *n, ss_error *err)
{
    float *raw = malloc(sizeof(float) * (size_t)BLOCK * (size_t)cin);
    float *mapped = malloc(sizeof(float) * (size_t)BLOCK * (size_t)(cm > cin ? cm : cin));
    ss_status s = !raw || !mapped ? ss_fail(err, SS_E_NOMEM, "%s: out of memory reading it", input) : SS_OK;
    for (int64_t got = BLOCK; s == SS_OK && got == BLOCK;) {
        double bmean, bm2;
        if ((s = ss_audio_read(rd, raw, BLOCK, &got, err)) != SS_OK || got == 0)
            break;
        map_channels_n(cin, cm, raw, mapped, got);
        int64_t bad = block_moments(mapped, cm, got, &bmean, &bm2);
        if (bad >= 0)
            s = ss_fail(err, SS_E_DATA, "%s: sample at frame %lld is NaN or infinite", input, (long long)(*n + bad));
        else
            merge_moments(mean, m2, n, bmean, bm2, got);
    }
    free(raw);
    free(mapped);
    return s;
}

/* ss_mix_stats with the std's delta degrees of freedom: 1 (unbiased, demucs)
 * or 0 (numpy's default, MSST) */
static ss_status mix_stats(ss_audio_reader *rd, const char *input, int cin, int cm, int64_t frames, int threads,
                           int ddof, double *mean_out, double *std_out, int64_t *count, ss_error *err)
{
    if (frames < 0) {
        double mean = 0.0, m2 = 0.0;
        int64_t n = 0;
        ss_status s = stats_to_end(rd, input, cin, cm, &mean, &m2, &n, err);
        if (s == SS_OK)
            s = ss_audio_rewind(rd, err);
        if (s != SS_OK)
            return s;
        *mean_out = mean;
        *std_out = n > ddof ? sqrt(m2 / (double)(n - ddof)) : 0.0;
        if (count)
            *count = n;
        return SS_OK;
    }
    double mean = 0.0, m2 = 0.0;
    int64_t n = 0, nblk = (frames + BLOCK - 1) / BLOCK;
    if (threads <= 0)
        threads = ss_cpu_count();
    if (threads > STATS_MAX_THREADS)
        threads = STATS_MAX_THREADS;
    if (threads > nblk / 2)                      /* at least two blocks a thread */
        threads = (int)(nblk / 2);
    int direct = threads <= 1 || !ss_audio_seekable(rd);
    if (direct)
        threads = 1;
    double *bmean = malloc(sizeof(double) * (size_t)(nblk ? nblk : 1));
    double *bm2 = malloc(sizeof(double) * (size_t)(nblk ? nblk : 1));
    stats_part parts[STATS_MAX_THREADS];
    if (!bmean || !bm2) {
        free(bmean);
        free(bm2);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", input);
    }
    for (int t = 0; t < threads; t++)
        parts[t] = (stats_part){.rd = rd, .direct = direct, .input = input, .cin = cin, .cm = cm, .frames = frames,
                                .b0 = nblk * t / threads, .b1 = nblk * (t + 1) / threads, .mean = bmean,
                                .m2 = bm2, .bad = -1};
    ss_status s = each_output(threads, stats_part_run, parts, sizeof *parts, err);
    for (int t = 0; s == SS_OK && t < threads; t++)
        if (parts[t].bad >= 0)                     /* the first in file order */
            s = ss_fail(err, SS_E_DATA, "%s: sample at frame %lld is NaN or infinite", input,
                        (long long)parts[t].bad);
    for (int64_t b = 0; s == SS_OK && b < nblk; b++)
        merge_moments(&mean, &m2, &n, bmean[b], bm2[b], b + 1 < nblk ? BLOCK : frames - b * BLOCK);
    free(bmean);
    free(bm2);
    if (s == SS_OK && direct)                      /* the reader itself moved: back to frame 0 */
        s = ss_audio_rewind(rd, err);
    if (s != SS_OK)
        return s;
    *mean_out = mean;
    *std_out = n > ddof ? sqrt(m2 / (double)(n - ddof)) : 0.0;
    if (count)
        *count = n;
    return SS_OK;
}

ss_status ss_mix_stats(ss_audio_reader *rd, const char *input, int cin, int cm, int64_t frames, int threads,
                       double *mean_out, double *std_out, int64_t *count, ss_error *err)
{
    return mix_stats(rd, input, cin, cm, frames, threads, 1, mean_out, std_out, count, err);
}

/* Pass 1, as the model asks (ss_model_input_norm): for SS_NORM_MIX_MEAN_STD
 * the mean and unbiased std of the mono mix, as the demucs CLI computes them
 * (ss_mix_stats), for SS_NORM_MIX_MEAN_STD_POP the mean and population std
 * (ddof 0) as MSST's normalize_audio does with numpy; digital silence gets
 * std 1 (only the mean is removed; MSST would divide by 0);
 * for SS_NORM_NONE mean 0 and std 1 (the samples pass unchanged), and no pass
 * at all unless the length is only an estimate (frames -1: MPEG), which the
 * pass then counts into *count. */
static ss_status decode_stats(decoder *d, ss_input_norm norm, int64_t frames, int threads, int64_t *count,
                              ss_error *err)
{
    if (norm == SS_NORM_NONE && frames >= 0) {
        d->mean = 0.0;
        d->std = 1.0;
        return SS_OK;
    }
    ss_status s = mix_stats(d->rd, d->input, d->cin, d->cm, frames, threads, norm == SS_NORM_MIX_MEAN_STD_POP ? 0 : 1,
                            &d->mean, &d->std, count, err);
    if (norm == SS_NORM_NONE) {
        d->mean = 0.0;
        d->std = 1.0;
    }
    if (s == SS_OK && !(d->std > 1e-8))
        d->std = 1.0;
    return s;
}

/* Engine pull: normalised model-rate frames, planar [cm, cap]. */
static ss_status decode_pull(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err)
{
    decoder *d = arg;
    double t0 = ss_seconds();
    while (d->fifo_n < n && d->file_left > 0) {
        int64_t want = d->file_left < BLOCK ? d->file_left : BLOCK, r = 0;
        ss_status s = ss_audio_read(d->rd, d->raw, want, &r, err);
        if (s != SS_OK)
            return s;
        if (r == 0)
            return ss_fail(err, SS_E_IO, "%s: read error: the file ended early (was it truncated?)", d->input);
        d->file_left -= r;
        map_channels(d, d->raw, d->mapped, r);
        int64_t need = d->fifo_n + ss_resampler_max_out(d->rs, r);
        if (need > d->fifo_cap) {
            float *f = realloc(d->fifo, sizeof(float) * (size_t)(need * d->cm));
            if (!f)
                return ss_fail(err, SS_E_NOMEM, "%s: out of memory decoding", d->input);
            d->fifo = f;
            d->fifo_cap = need;
        }
        int64_t out = 0;
        if ((s = ss_resampler_push(d->rs, d->mapped, r, d->fifo + d->fifo_n * d->cm, d->fifo_cap - d->fifo_n,
                                   &out, err)) != SS_OK)
            return s;
        d->fifo_n += out;
    }
    int64_t k = d->fifo_n < n ? d->fifo_n : n;
    if (d->mix) {
        ss_status s = mix_fifo_put(d->mix, d->fifo, k, d->input, err);
        if (s != SS_OK)
            return s;
    }
    float mean = (float)d->mean, inv = (float)(1.0 / d->std);
    for (int c = 0; c < d->cm; c++)
        for (int64_t i = 0; i < k; i++)
            buf[c * cap + i] = (d->fifo[i * d->cm + c] - mean) * inv;
    memmove(d->fifo, d->fifo + k * d->cm, sizeof(float) * (size_t)((d->fifo_n - k) * d->cm));
    d->fifo_n -= k;
    *got = k;
    d->seconds += ss_seconds() - t0;
    return SS_OK;
}

/* ---- encode side -------------------------------------------------------------------- */

typedef struct encoder {
    const ss_sep_params *p;
    output *outs;
    int n_out;
    int S, C;                 /* the network's sources, channels                 */
    mix_fifo *mix;            /* a residual stem (source S) is written: the
                                 mixture, else NULL                              */
    float *mixblk;            /* [n, C] the pushed block's mixture               */
    int64_t mixblk_cap;
    int64_t length;           /* frames each output must have (input length)     */
    double mean, std;         /* de-normalisation                                */
    double seconds;           /* time spent encoding (resampling included)       */
    pthread_t owner;          /* the thread of ss_sep_infer                      */
    double inline_seconds;    /* the part of `seconds` spent on that thread (the
                                 engine pushes on a writer thread of its own when
                                 it can, beside inference)                      */
    atomic_int rescale;       /* rescale mode: some output's peak needs scaling  */
    float gain;               /* the scale the rescale pass applied              */
    /* rescale mode where every writer writes at offsets (WAV s16/s24): the
     * stems are encoded as they are staged, at the running scale of the peak
     * so far, and the frames an earlier scale wrote are re-encoded a few blocks
     * per push (encode_running), so that little is left after the last block */
    int running;
    float scale;              /* 1 / max(1.01 * peak so far, 1)                  */
    int threads;              /* threads of the encoding passes                  */
    struct capture *caps;     /* --then: the stems chained stages take, n_caps   */
    int n_caps;
} encoder;

/* A stem a chained stage separates (ss_chain): the first model's source at
 * its rate and channels, de-normalised (no clip policy), as a 32-bit float
 * RF64 file in an unlinked temporary file beside the track's stems, then
 * read back as an input file (ss_audio_open_fd): its pages are the page
 * cache's, never the process's memory. */
typedef struct capture {
    uint32_t sources;         /* bit i: source i (the residual: bit S)           */
    int fd;                   /* the staging file, or -1                         */
    char dir[PATH_MAX];       /* its folder (for messages)                       */
    int64_t frames;           /* frames staged                                   */
    float *buf;               /* [n, C] one pushed block                         */
    int64_t cap;
} capture;

#define RF64_HEADER 80        /* bytes before the samples (capture_finish)       */

/* Rescale mode scales every output by 1 / max(1.01 * peak, 1): by exactly 1,
 * i.e. not at all, while 1.01 * peak <= 1. */
static int needs_rescale(float peak) { return 1.01f * peak > 1.0f; }

/* The largest of peak and |x[i]|; NaN is skipped, as fmaxf would (no libm
 * call).  Eight running maxima, so that the compiler can keep them in one
 * vector register: the order of comparisons does not change a maximum. */
static float peak_of(const float *x, size_t n, float peak)
{
    float m[8] = {peak, peak, peak, peak, peak, peak, peak, peak};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float a = fabsf(x[i + k]);
            m[k] = a > m[k] ? a : m[k];
        }
    for (; i < n; i++) {
        float a = fabsf(x[i]);
        m[0] = a > m[0] ? a : m[0];
    }
    for (int k = 1; k < 8; k++)
        m[0] = m[k] > m[0] ? m[k] : m[0];
    return m[0];
}

static ss_status write_frames(encoder *e, output *o, float *buf, int64_t n, ss_error *err)
{
    if (o->written + n > e->length)            /* resampling may give one frame too many */
        n = e->length - o->written;
    if (n <= 0)
        return SS_OK;
    size_t count = (size_t)(n * e->C);
    if (e->p->clip == SS_CLIP_CLAMP)
        for (size_t i = 0; i < count; i++)
            buf[i] = buf[i] > 0.99f ? 0.99f : buf[i] < -0.99f ? -0.99f : buf[i];
    if (o->stage_fd >= 0) {
        /* rescale mode: stage the block for the scaled pass after the last one,
         * and, while no output has needed scaling yet, also encode it as it is:
         * if the whole track ends below the limit, that file is final and the
         * pass after the last block is skipped (same bytes: the scale is 1) */
        o->peak = peak_of(buf, count, o->peak);
        const char *b = (const char *)buf;
        size_t left = count * sizeof(float);
        while (left) {
            ssize_t w = write(o->stage_fd, b, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return ss_fail(err, SS_E_IO, "%s: cannot write temporary data: %s", o->path,
                               w < 0 ? strerror(errno) : "no space");
            b += w;
            left -= (size_t)w;
        }
        if (e->running) {
            /* encoded at its offset at the running scale; if this block raises
             * the peak, encode_running finds it stale with the frames before */
            if (e->scale != 1.0f)
                for (size_t i = 0; i < count; i++)
                    buf[i] *= e->scale;
            ss_status s = ss_audio_write_at(o->w, e->length, o->written, buf, n, err);
            if (s != SS_OK)
                return s;
            o->enc = o->written + n;
            goto staged;
        }
        if (o->w && (needs_rescale(o->peak) || atomic_load(&e->rescale))) {
            atomic_store(&e->rescale, 1);
            ss_audio_abort(o->w);                /* the scaled pass will write it */
            o->w = NULL;
        }
    }
    if (o->w) {
        ss_status s = ss_audio_write(o->w, buf, n, err);
        if (s != SS_OK)
            return s;
    }
staged:
    o->written += n;
    return SS_OK;
}

static ss_status ensure(float **buf, int64_t *cap, int64_t need)
{
    if (need <= *cap)
        return SS_OK;
    float *b = realloc(*buf, sizeof(float) * (size_t)need);
    if (!b)
        return SS_E_NOMEM;
    *buf = b;
    *cap = need;
    return SS_OK;
}


/* One output's share of a pushed block: sum its sources, de-normalise,
 * resample and write.  Outputs touch only their own state, so they run in
 * parallel (encode_push). */
typedef struct push_job {
    out_result res;
    encoder *e;
    output *o;
    const float *stems;
    int64_t pitch, n;
} push_job;

/* mix [n, C] = sum over `sources`, in source order, of stem * std + mean;
 * the residual (source S) = mixture - sum of the network's stems so */
static void sum_sources(const encoder *e, uint32_t sources, const float *stems, int64_t pitch, int64_t n, float *mix)
{
    float mean = (float)e->mean, std = (float)e->std;
    memset(mix, 0, sizeof(float) * (size_t)(n * e->C));
    if (e->mix && (sources & (1u << e->S)))
        for (int c = 0; c < e->C; c++) {
            float *m = mix + c;
            for (int64_t i = 0; i < n; i++) {
                float r = e->mixblk[i * e->C + c];
                for (int src = 0; src < e->S; src++)
                    r -= stems[((int64_t)src * e->C + c) * pitch + i] * std + mean;
                m[i * e->C] = r;
            }
        }
    for (int src = 0; src < e->S; src++) {
        if (!(sources & (1u << src)))
            continue;
        for (int c = 0; c < e->C; c++) {
            const float *row = stems + ((int64_t)src * e->C + c) * pitch;
            float *m = mix + c;
            for (int64_t i = 0; i < n; i++)
                m[i * e->C] += row[i] * std + mean;
        }
    }
}

/* Write all of buf at the descriptor's position (EINTR retried). */
static ss_status write_all(int fd, const void *buf, size_t len, const char *what, ss_error *err)
{
    const char *b = buf;
    while (len) {
        ssize_t w = write(fd, b, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ss_fail(err, SS_E_IO, "%s: cannot write temporary data: %s", what,
                           w < 0 ? strerror(errno) : "no space");
        b += w;
        len -= (size_t)w;
    }
    return SS_OK;
}

/* Stage one pushed block of a chained stage's stem. */
static ss_status capture_push(const encoder *e, capture *c, const float *stems, int64_t pitch, int64_t n,
                              ss_error *err)
{
    if (ensure(&c->buf, &c->cap, n * e->C) != SS_OK)
        return ss_fail(err, SS_E_NOMEM, "out of memory keeping a stem for a chained model");
    sum_sources(e, c->sources, stems, pitch, n, c->buf);
    ss_status s = write_all(c->fd, c->buf, sizeof(float) * (size_t)(n * e->C), c->dir, err);
    if (s == SS_OK)
        c->frames += n;
    return s;
}

static void *push_one(void *arg)
{
    push_job *j = arg;
    encoder *e = j->e;
    output *o = j->o;
    const float *stems = j->stems;
    int64_t n = j->n, pitch = j->pitch;
    j->res.status = SS_OK;
    if (ensure(&o->mix, &o->mix_cap, n * e->C) != SS_OK) {
        j->res.status = ss_fail(&j->res.err, SS_E_NOMEM, "%s: out of memory encoding", o->path);
        return NULL;
    }
    sum_sources(e, o->sources, stems, pitch, n, o->mix);
    int64_t need = ss_resampler_max_out(o->rs, n) * e->C, got = 0;
    if (ensure(&o->res, &o->res_cap, need) != SS_OK) {
        j->res.status = ss_fail(&j->res.err, SS_E_NOMEM, "%s: out of memory encoding", o->path);
        return NULL;
    }
    ss_status s = ss_resampler_push(o->rs, o->mix, n, o->res, need / e->C, &got, &j->res.err);
    if (s == SS_OK)
        s = write_frames(e, o, o->res, got, &j->res.err);
    j->res.status = s;
    return NULL;
}

static ss_status encode_running(encoder *e, int all, ss_error *err);

/* Engine push: stems [S, C, n] (planar, row pitch `pitch`), normalised; every
 * output on its own thread (the first on this one); then, with a running
 * scale, the staged block encoded. */
static ss_status encode_push(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err)
{
    encoder *e = arg;
    double t0 = ss_seconds();
    if (e->mix) {
        if (ensure(&e->mixblk, &e->mixblk_cap, n * e->C) != SS_OK)
            return ss_fail(err, SS_E_NOMEM, "out of memory making the residual stem");
        ss_status s = mix_fifo_take(e->mix, e->mixblk, n, err);
        if (s != SS_OK)
            return s;
    }
    push_job jobs[SS_MAX_SOURCES + 1];
    for (int k = 0; k < e->n_out; k++)
        jobs[k] = (push_job){.e = e, .o = &e->outs[k], .stems = stems, .pitch = pitch, .n = n};
    ss_status s = each_output(e->n_out, push_one, jobs, sizeof *jobs, err);
    for (int k = 0; k < e->n_caps && s == SS_OK; k++)
        s = capture_push(e, &e->caps[k], stems, pitch, n, err);
    if (s == SS_OK && e->running)
        s = encode_running(e, 0, err);
    double dt = ss_seconds() - t0;
    e->seconds += dt;
    if (pthread_equal(pthread_self(), e->owner))
        e->inline_seconds += dt;
    return s;
}

/* Pad every output to the input's length (resampling may give one frame less). */
static ss_status pad_outputs(encoder *e, ss_error *err)
{
    for (int k = 0; k < e->n_out; k++) {
        output *o = &e->outs[k];
        while (o->written < e->length) {
            int64_t n = e->length - o->written < 1024 ? e->length - o->written : 1024;
            if (ensure(&o->res, &o->res_cap, n * e->C) != SS_OK)
                return ss_fail(err, SS_E_NOMEM, "out of memory encoding");
            memset(o->res, 0, sizeof(float) * (size_t)(n * e->C));
            ss_status s = write_frames(e, o, o->res, n, err);
            if (s != SS_OK)
                return s;
        }
    }
    return SS_OK;
}

/* A range of one staged output of the rescale mode, encoded on its own thread. */
typedef struct stage_job {
    out_result res;
    const encoder *e;
    output *o;
    float scale;
    int64_t from, to;        /* frames [from, to) of the output            */
    int at;                  /* through ss_audio_write_at, else in order   */
} stage_job;

#define RANGE_BLOCK (8 * BLOCK)  /* frames read back and encoded at once */

/* Read back one staged range, scale it and encode it into its writer. */
static void *encode_range(void *arg)
{
    stage_job *j = arg;
    const encoder *e = j->e;
    output *o = j->o;
    ss_error *err = &j->res.err;
    size_t frame = sizeof(float) * (size_t)e->C;
    float *buf = malloc(frame * (size_t)RANGE_BLOCK);
    ss_status s = buf ? SS_OK : ss_fail(err, SS_E_NOMEM, "%s: out of memory encoding", o->path);
    for (int64_t pos = j->from; s == SS_OK && pos < j->to;) {
        int64_t n = j->to - pos < RANGE_BLOCK ? j->to - pos : RANGE_BLOCK;
        size_t bytes = frame * (size_t)n, have = 0;
        while (s == SS_OK && have < bytes) {
            ssize_t r = pread(o->stage_fd, (char *)buf + have, bytes - have, (off_t)(frame * (size_t)pos + have));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                s = ss_fail(err, SS_E_IO, "%s: cannot read back temporary data: %s", o->path,
                            r < 0 ? strerror(errno) : "short file");
            else
                have += (size_t)r;
        }
        if (s != SS_OK)
            break;
        for (int64_t i = 0; i < n * e->C; i++)
            buf[i] *= j->scale;
        s = j->at ? ss_audio_write_at(o->w, e->length, pos, buf, n, err) : ss_audio_write(o->w, buf, n, err);
        pos += n;
    }
    free(buf);
    j->res.status = s;
    return NULL;
}

/* Stale frames re-encoded per frame staged, for each output in each push (the
 * running scale): with the peak's position uniform over a track, what is left
 * after the last block is on average 1/8 of it (all of it without this). */
#define RERUN_PER_PUSH 3

/* Add jobs encoding frames [from, to) of o, in up to `parts` ranges of at
 * least 4 blocks each written at their offsets (at), else in one in order. */
static void add_ranges(stage_job *jobs, int *n, const encoder *e, output *o, float scale, int64_t from, int64_t to,
                       int parts, int at)
{
    int64_t len = to - from, most = len / (4 * BLOCK);
    if (len <= 0)
        return;
    if (!at || parts > most)
        parts = at ? (int)most : 1;
    if (parts < 1)
        parts = 1;
    for (int r = 0; r < parts; r++)
        jobs[(*n)++] = (stage_job){.e = e, .o = o, .scale = scale, .at = at, .from = from + len * r / parts,
                                   .to = from + len * (r + 1) / parts};
}

/* The largest |sample| staged so far over all outputs (they are scaled together). */
static float outputs_peak(const encoder *e)
{
    float peak = 0.0f;
    for (int k = 0; k < e->n_out; k++)
        peak = fmaxf(peak, e->outs[k].peak);
    return peak;
}

/* The running scale (encoder.running), after each push and (all) after the
 * last block: take the scale of the peak so far, and if it changed, every frame
 * encoded so far is stale (write_frames encodes each block as it is staged, at
 * the scale before it); encode any frames staged but not encoded, and re-encode
 * stale ones, RERUN_PER_PUSH per frame staged since the last call (all: every
 * one left), but none in a push that raised the scale (a peak that keeps
 * rising would have them all redone again: the frames are then encoded twice,
 * as they come and after the last block, not over and over).  Each output's
 * ranges run in parallel.  The bytes are those of one pass at the final scale
 * after the last block: every frame is last written at it, the same conversion
 * as ss_audio_write's. */
static ss_status encode_running(encoder *e, int all, ss_error *err)
{
    float scale = 1.0f / fmaxf(1.01f * outputs_peak(e), 1.0f);
    int raised = scale != e->scale;          /* no re-encoding in this push (below) */
    if (raised) {
        e->scale = scale;
        for (int k = 0; k < e->n_out; k++) {
            e->outs[k].from = e->outs[k].enc;
            e->outs[k].ok = 0;
        }
    }
    stage_job jobs[MAX_JOBS];
    int n = 0, share = MAX_JOBS / (2 * e->n_out), parts = e->threads / e->n_out;
    parts = parts > share ? share : parts < 1 ? 1 : parts;
    int64_t fix[SS_MAX_SOURCES + 1];
    for (int k = 0; k < e->n_out; k++) {
        output *o = &e->outs[k];
        int64_t fresh = o->written - o->seen, stale = o->from - o->ok;
        fix[k] = all || stale < RERUN_PER_PUSH * fresh ? stale : RERUN_PER_PUSH * fresh;
        if (raised && !all)
            fix[k] = 0;
        add_ranges(jobs, &n, e, o, scale, o->enc, o->written, parts, 1);
        add_ranges(jobs, &n, e, o, scale, o->ok, o->ok + fix[k], parts, 1);
    }
    ss_status s = each_output(n, encode_range, jobs, sizeof *jobs, err);
    for (int k = 0; k < e->n_out && s == SS_OK; k++) {
        output *o = &e->outs[k];
        o->enc = o->seen = o->written;
        o->ok += fix[k];
        if (o->ok >= o->from)
            o->ok = o->from = 0;
    }
    return s;
}

/* o's writer: a temporary file beside its path in the format asked for, at
 * --bitrate for a lossy format. */
static ss_status create_output(output *o, const ss_sep_params *p, int rate, int channels, ss_error *err)
{
    ss_status s = ss_audio_create(o->path, p->format, p->sample_format, rate, channels, &o->w, err);
    if (s == SS_OK && p->bitrate > 0 && ss_file_format_lossy(p->format) &&
        (s = ss_audio_set_bitrate(o->w, p->bitrate, err)) != SS_OK) {
        ss_audio_abort(o->w);
        o->w = NULL;
    }
    return s;
}

/* Rescale mode, after the last block: with a running scale, what is left of
 * it (encode_running).  Otherwise nothing to do when every output was encoded
 * as it came and the peak needs no scaling; else drop those files and encode
 * every staged output scaled by 1 / max(1.01 * peak, 1).  Outputs run in
 * parallel, and each in up to `e->threads / outputs` ranges at once where its
 * format allows writing at offsets (WAV s16/s24); the first error is
 * reported. */
static ss_status encode_staged(encoder *e, int rate, ss_error *err)
{
    stage_job jobs[MAX_JOBS];
    if (e->running) {
        ss_status s = encode_running(e, 1, err);
        e->gain = e->scale;
        return s;
    }
    float peak = outputs_peak(e);
    int direct = 1;                          /* every output was encoded as it came */
    for (int k = 0; k < e->n_out; k++)
        direct = direct && e->outs[k].w;
    if (direct && !needs_rescale(peak))
        return SS_OK;
    for (int k = 0; k < e->n_out; k++) {
        ss_audio_abort(e->outs[k].w);
        e->outs[k].w = NULL;
    }
    float scale = 1.0f / fmaxf(1.01f * peak, 1.0f);
    e->gain = scale;
    /* ranges per output: the threads shared out (add_ranges keeps each at least 4 blocks) */
    int per = e->threads / e->n_out;
    per = per > MAX_JOBS / e->n_out ? MAX_JOBS / e->n_out : per;
    int n = 0;
    for (int k = 0; k < e->n_out; k++) {
        output *o = &e->outs[k];
        ss_status s = create_output(o, e->p, rate, e->C, err);
        if (s != SS_OK)
            return s;
        add_ranges(jobs, &n, e, o, scale, 0, e->length, per, ss_audio_can_write_at(o->w));
    }
    return each_output(n, encode_range, jobs, sizeof *jobs, err);
}

/* An unlinked temporary file in the directory of path (so it shares its disk). */
static int stage_file(const char *path, ss_error *err)
{
    char tmp[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) : 0;
    snprintf(tmp, sizeof tmp, "%.*s%s.stemsplit-stage-XXXXXX", dlen, path, slash ? "/" : "");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        ss_fail(err, SS_E_CANTCREAT, "%s: cannot create a temporary file: %s", tmp, strerror(errno));
        return -1;
    }
    unlink(tmp);
    return fd;
}

/* ---- a stem for a chained stage ------------------------------------------------------------ */

/* The staging file of c in the folder of `path` (an output of the track),
 * its header's bytes reserved. */
static ss_status capture_open(capture *c, const char *path, ss_error *err)
{
    const char *slash = strrchr(path, '/');
    snprintf(c->dir, sizeof c->dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    if ((c->fd = stage_file(path, err)) < 0)
        return err->code;
    unsigned char zero[RF64_HEADER] = {0};
    return write_all(c->fd, zero, sizeof zero, c->dir, err);
}

static void put16(unsigned char *b, uint16_t v) { b[0] = (unsigned char)v; b[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *b, uint32_t v) { put16(b, (uint16_t)v); put16(b + 2, (uint16_t)(v >> 16)); }
static void put64(unsigned char *b, uint64_t v) { put32(b, (uint32_t)v); put32(b + 4, (uint32_t)(v >> 32)); }

/* The RF64 header (EBU Tech 3306: the sizes in the ds64 chunk, so any length
 * fits) of c's 32-bit float samples, written at the start of the file. */
static ss_status capture_finish(capture *c, int rate, int channels, ss_error *err)
{
    uint64_t data = (uint64_t)c->frames * (uint64_t)channels * 4u;
    unsigned char h[RF64_HEADER];
    memcpy(h, "RF64", 4);
    put32(h + 4, 0xffffffffu);
    memcpy(h + 8, "WAVEds64", 8);
    put32(h + 16, 28);
    put64(h + 20, RF64_HEADER - 8 + data);           /* RIFF size        */
    put64(h + 28, data);                             /* data size        */
    put64(h + 36, (uint64_t)c->frames);              /* sample count     */
    put32(h + 44, 0);                                /* table length     */
    memcpy(h + 48, "fmt ", 4);
    put32(h + 52, 16);
    put16(h + 56, 3);                                /* IEEE float       */
    put16(h + 58, (uint16_t)channels);
    put32(h + 60, (uint32_t)rate);
    put32(h + 64, (uint32_t)rate * (uint32_t)channels * 4u);
    put16(h + 68, (uint16_t)(channels * 4));
    put16(h + 70, 32);
    memcpy(h + 72, "data", 4);
    put32(h + 76, 0xffffffffu);
    for (size_t done = 0; done < sizeof h;) {
        ssize_t w = pwrite(c->fd, h + done, sizeof h - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ss_fail(err, SS_E_IO, "%s: cannot write temporary data: %s", c->dir,
                           w < 0 ? strerror(errno) : "no space");
        done += (size_t)w;
    }
    return SS_OK;
}

static void capture_free(capture *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

/* ---- the whole file, in three stages ------------------------------------------------------ */

struct ss_sep_job {
    const ss_sep_params *p;
    ss_model *m;
    const char *input;
    const char *reldir;
    ss_file_report *rep;
    ss_audio_info ai;
    decoder d;
    encoder e;
    mix_fifo mix;             /* for a residual stem (e.mix, d.mix)              */
    output *outs;
    int64_t model_len;
    int out_rate;             /* the stems' rate: the input's, or the one the
                                 output format stores (ss_file_format_rate)      */
    double stats_s;           /* pass 1                                          */
    double infer_wall;        /* stage 2 as a whole                              */
    double commit_s;          /* stage 3                                         */
    double rescale_s;         /* its rescale pass                                */
    int inferred;             /* stage 2 done: stage 3 may run                   */
    dir_list made;            /* folders created for the outputs                 */
    /* --then: one chained stage per p->chain entry (NULL until stage 2 makes it) */
    capture caps[SS_MAX_SOURCES];
    ss_sep_job *sub[SS_MAX_SOURCES];
    ss_file_report sub_rep[SS_MAX_SOURCES];
    ss_sep_params sub_p[SS_MAX_SOURCES];
    char sub_prefix[SS_MAX_SOURCES][SS_MAX_NAME + 1];
    int n_sub;
    /* a chained stage: where its input comes from and where its stems go */
    int fixed_rate;           /* the stems' rate, or 0: from the input's         */
    int64_t fixed_length;     /* the stems' length in frames (with fixed_rate)   */
};

void ss_sep_job_free(ss_sep_job *j)
{
    if (!j)
        return;
    for (int k = 0; k < j->n_sub; k++) {
        ss_sep_job_free(j->sub[k]);
        ss_file_report_clear(&j->sub_rep[k]);
        capture_free(&j->caps[k]);
    }
    for (int k = 0; k < SS_MAX_SOURCES + 1; k++) {
        ss_audio_abort(j->outs[k].w);
        ss_resampler_free(j->outs[k].rs);
        if (j->outs[k].stage_fd >= 0)
            close(j->outs[k].stage_fd);
        free(j->outs[k].mix);
        free(j->outs[k].res);
    }
    if (j->d.rd)
        ss_audio_close(j->d.rd);
    ss_resampler_free(j->d.rs);
    free(j->d.raw);
    free(j->d.mapped);
    free(j->d.fifo);
    free(j->e.mixblk);
    if (j->e.mix) {
        pthread_mutex_destroy(&j->mix.mu);
        free(j->mix.buf);
    }
    free(j->outs);
    dirs_remove_empty(&j->made);
    free(j);
}

/* Stage times into the report; wall = the stages' own time, queues excluded.
 * decode: pass 1 and pass 2's reading, with the resampling to the model's
 * rate; encode: the stems' resampling back, encoding and committing, partly
 * on the engine's writer thread beside inference; infer: the rest of the
 * separation pass's own thread (so decode + infer + encode can exceed wall). */
static void fill_times(ss_sep_job *j)
{
    ss_file_report *r = j->rep;
    double pull = j->d.seconds, push = j->e.seconds;
    r->decode = j->stats_s + pull;
    r->encode = push + j->commit_s;
    r->infer = j->infer_wall - pull - j->e.inline_seconds;
    if (r->infer < 0)
        r->infer = 0;
    r->wall_seconds = j->stats_s + j->infer_wall + j->commit_s;
}

/* A chained stage's input: the first model's stem, read back from its staging
 * file, and the rate and length its stems are written at (those of the
 * track's other stems). */
typedef struct chain_src {
    ss_audio_reader *rd;      /* owned by the job from the start                 */
    ss_audio_info ai;
    int out_rate;
    int64_t length;
} chain_src;

/* ss_sep_prepare, or with `src` a chained stage's (input: the track's name). */
static ss_status prepare(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                         const chain_src *src, ss_file_report *rep, ss_sep_job **out, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(m);
    double t0 = ss_seconds();
    ss_status s;
    *out = NULL;
    ss_sep_job *j = calloc(1, sizeof *j);
    output *outs = calloc(SS_MAX_SOURCES + 1, sizeof *outs);
    if (!j || !outs) {
        free(j);
        free(outs);
        if (src)
            ss_audio_close(src->rd);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", input);
    }
    for (int k = 0; k < SS_MAX_SOURCES + 1; k++)
        outs[k].stage_fd = -1;
    *j = (ss_sep_job){.p = p, .m = m, .input = input, .reldir = reldir, .rep = rep, .outs = outs,
                      .d = {.input = input, .cm = info->channels},
                      .e = {.p = p, .S = ss_model_net_sources(info), .C = info->channels, .outs = outs,
                            .gain = 1.0f}};
    decoder *d = &j->d;
    ss_audio_info *ai = &j->ai;
    if (src) {
        d->rd = src->rd;
        *ai = src->ai;
        j->fixed_rate = src->out_rate;
        j->fixed_length = src->length;
    }
    for (int k = 0; k < p->n_chain; k++) {         /* the stems chained stages take */
        j->caps[k].fd = -1;
        j->caps[k].sources = 1u << p->chain[k].source;
    }
    j->n_sub = j->e.n_caps = p->n_chain;
    j->e.caps = j->caps;
    if ((s = plan_outputs(m, p, input, reldir, outs, &j->e.n_out, err)) != SS_OK)
        goto fail;
    uint32_t used = 0;
    for (int k = 0; k < j->e.n_out; k++)
        used |= outs[k].sources;
    for (int k = 0; k < j->n_sub; k++)
        used |= j->caps[k].sources;
    if (info->residual && (used & (1u << j->e.S))) {   /* the residual is needed: keep the mixture */
        if (pthread_mutex_init(&j->mix.mu, NULL) != 0) {
            s = ss_fail(err, SS_E_NOMEM, "%s: cannot create a mutex", input);
            goto fail;
        }
        j->e.mix = d->mix = &j->mix;            /* its channels: the track's, below */
    }
    if (!src && (s = ss_audio_open(input, &d->rd, ai, err)) != SS_OK)
        goto fail;
    d->cin = ai->channels;
    /* a model that runs each channel on its own takes the file's as they are */
    d->cm = j->e.C = j->mix.C = ss_model_track_channels(info, d->cin);
    rep->audio_seconds = (double)ai->frames / ai->samplerate;
    if (!ss_resample_possible(ai->samplerate, info->samplerate)) {
        s = ss_fail(err, SS_E_DATA, "%s: sample rate %d Hz: stemsplit resamples to model %s's %d Hz only from "
                    "%d to %lld Hz", input, ai->samplerate, info->name, info->samplerate,
                    (info->samplerate + 255) / 256, (long long)info->samplerate * 256);
        goto fail;
    }
    if (ai->declared > ai->frames) {
        /* a truncated file (an interrupted download or copy): separated as far
         * as it goes, and said so */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s: truncated: its header announces %lld frames (%.2f s), the file holds %lld "
                 "(%.2f s); separating what it holds", input, (long long)ai->declared,
                 (double)ai->declared / ai->samplerate, (long long)ai->frames, (double)ai->frames / ai->samplerate);
        if (ss_report_add_warning(rep, msg) != SS_OK) {
            s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", input);
            goto fail;
        }
    }
    if (ai->frames <= 0 && !ai->estimated) {
        s = ss_fail(err, SS_E_DATA, "%s: contains no audio (0 frames)", input);
        goto fail;
    }
    if (!channels_mappable(d->cin, d->cm)) {
        s = ss_fail(err, SS_E_DATA, "%s: has %d channels, but model %s takes %d (give it mono, %d-channel%s audio)",
                    input, d->cin, info->name, d->cm, d->cm, d->cm == 2 ? " or 3 to 8-channel (downmixed)" : "");
        goto fail;
    }
    if (p->verbose && d->cm == 2 && d->cin > 2) {
        static const char *how[9] = {
            [3] = "L' = L + 0.707 C, R' = R + 0.707 C",
            [4] = "L' = L + 0.707 Lb, R' = R + 0.707 Rb",
            [5] = "L' = L + 0.707 C + 0.707 Ls, R' = R + 0.707 C + 0.707 Rs",
            [6] = "5.1, ITU-R BS.775: L' = L + 0.707 C + 0.707 Ls, R' = R + 0.707 C + 0.707 Rs, LFE dropped",
            [7] = "6.1: L' = L + 0.707 C + 0.5 Cb + 0.707 Ls, R' likewise, LFE dropped",
            [8] = "7.1: L' = L + 0.707 C + 0.707 Lb + 0.707 Ls, R' likewise, LFE dropped",
        };
        fprintf(stderr, "stemsplit: %s: %d channels downmixed to the 2 of model %s (%s; not normalised); stems are "
                "stereo\n", input, d->cin, info->name, how[d->cin]);
    }
    if (p->verbose && info->channels_independent && d->cin > 1)
        fprintf(stderr, "stemsplit: %s: %d channels, each separated on its own by model %s (no mixdown); stems have %d "
                "channels\n", input, d->cin, info->name, d->cin);
    d->raw = malloc(sizeof(float) * (size_t)BLOCK * (size_t)d->cin);
    d->mapped = malloc(sizeof(float) * (size_t)BLOCK * (size_t)(d->cm > d->cin ? d->cm : d->cin));
    if (!d->raw || !d->mapped) {
        s = ss_fail(err, SS_E_NOMEM, "%s: out of memory", input);
        goto fail;
    }
    /* pass 1: statistics; a length that was only an estimate (MPEG) becomes
     * the frames counted, and everything after (pass 2, the resamplers, the
     * stems' length) uses that count */
    int64_t counted = 0;
    if ((s = decode_stats(d, ss_model_input_norm(m), ai->estimated ? -1 : ai->frames, p->threads, &counted, err)) !=
        SS_OK)
        goto fail;
    if (ai->estimated) {
        ai->frames = counted;
        ai->estimated = 0;
        rep->audio_seconds = (double)ai->frames / ai->samplerate;
        if (ai->frames <= 0) {
            s = ss_fail(err, SS_E_DATA, "%s: contains no audio (0 frames)", input);
            goto fail;
        }
    }
    j->model_len = ss_resampled_length(ai->frames, ai->samplerate, info->samplerate);
    d->file_left = ai->frames;
    /* the stems are resampled from the model's rate straight to the rate the
     * output format stores (one conversion, not two), at the input's length */
    j->out_rate = j->fixed_rate ? j->fixed_rate : ss_file_format_rate(p->format, ai->samplerate);
    j->e.length = j->fixed_rate ? j->fixed_length : ss_resampled_length(ai->frames, ai->samplerate, j->out_rate);
    if (p->verbose && j->out_rate != ai->samplerate)
        fprintf(stderr, "stemsplit: %s: stems resampled from %d Hz to %d Hz: %s stores 8, 12, 16, 24 or 48 kHz only\n",
                input, ai->samplerate, j->out_rate, ss_file_format_name(p->format));
    j->e.mean = d->mean;
    j->e.std = d->std;
    if ((s = ss_resampler_new(d->cm, ai->samplerate, info->samplerate, ai->frames, &d->rs, err)) != SS_OK)
        goto fail;
    j->stats_s = ss_seconds() - t0;
    *out = j;
    return SS_OK;
fail:
    j->stats_s = ss_seconds() - t0;
    fill_times(j);
    ss_sep_job_free(j);
    return s;
}

ss_status ss_sep_prepare(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                         ss_file_report *rep, ss_sep_job **out, ss_error *err)
{
    return prepare(m, p, input, reldir, NULL, rep, out, err);
}

/* After the first model's engine: chained stage k, from its staged stem
 * (read as a file), prepared (its statistics pass) and inferred. */
static ss_status run_chained(ss_sep_job *j, int k, ss_backend *be, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(j->m);
    capture *c = &j->caps[k];
    ss_status s = capture_finish(c, info->samplerate, j->e.C, err);
    if (s != SS_OK)
        return s;
    chain_src src = {.out_rate = j->out_rate, .length = j->e.length};
    char name[PATH_MAX + SS_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s (stem %s of model %s)", j->input, info->sources[j->p->chain[k].source],
             info->name);
    int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);     /* the reader's own (the capture's is closed below) */
    if (fd < 0)
        return ss_fail(err, SS_E_IO, "%s: %s", name, strerror(errno));
    if ((s = ss_audio_open_fd(fd, name, &src.rd, &src.ai, err)) != SS_OK)
        return s;
    chain_params(j->m, j->p, &j->p->chain[k], j->sub_prefix[k], &j->sub_p[k]);
    if ((s = prepare(j->p->chain[k].model, &j->sub_p[k], j->input, j->reldir, &src, &j->sub_rep[k], &j->sub[k],
                     err)) != SS_OK)
        return s;
    s = ss_sep_infer(j->sub[k], be, err);
    /* the stem has been read (the reader is closed): give back its disk space now */
    close(c->fd);
    c->fd = -1;
    return s;
}

ss_status ss_sep_infer(ss_sep_job *j, ss_backend *be, ss_error *err)
{
    const ss_model_info *info = ss_model_get_info(j->m);
    const ss_sep_params *p = j->p;
    double t0 = ss_seconds();
    ss_status s = SS_OK;
    /* outputs: temporary files beside their final paths */
    for (int k = 0; k < j->e.n_out && s == SS_OK; k++) {
        output *o = &j->outs[k];
        if ((s = ss_resampler_new(j->e.C, info->samplerate, j->out_rate, j->model_len, &o->rs, err)) != SS_OK)
            break;
        for (int tries = 0;; tries++) {
            if ((s = make_parents(o->path, &j->made, err)) == SS_OK) {
                if (p->clip == SS_CLIP_RESCALE && o->stage_fd < 0 && (o->stage_fd = stage_file(o->path, err)) < 0)
                    s = err->code;
                else
                    s = create_output(o, p, j->out_rate, j->e.C, err);
            }
            if (s == SS_OK || tries == 3 || parent_exists(o->path))
                break;
            ss_error_clear(err);          /* its folder was removed under us (see parent_exists) */
        }
    }
    /* rescale mode: a running scale where every writer can write at offsets and
     * the network runs beside the host (a GPU), whose cores are then free for
     * it; on the CPU backend the pass after the last block costs less than the
     * encoding a rising peak repeats (p->rescale_when: tests force either) */
    j->e.running = s == SS_OK && p->clip == SS_CLIP_RESCALE &&
                   (p->rescale_when == SS_RESCALE_BY_DEVICE ? ss_downloads_overlap(be)
                                                            : p->rescale_when == SS_RESCALE_RUNNING);
    for (int k = 0; k < j->e.n_out && j->e.running; k++)
        j->e.running = ss_audio_can_write_at(j->outs[k].w);
    j->e.scale = 1.0f;
    j->e.threads = p->threads > 0 ? p->threads : ss_cpu_count();
    j->e.owner = pthread_self();
    /* the stems chained stages take: staged beside the track's stems */
    for (int k = 0; k < j->n_sub && s == SS_OK; k++) {
        char dir[PATH_MAX];
        if (j->e.n_out > 0)
            snprintf(dir, sizeof dir, "%s", j->outs[0].path);
        else
            snprintf(dir, sizeof dir, "%s/x", p->out_dir);
        s = capture_open(&j->caps[k], dir, err);
    }
    /* pass 2: separate */
    if (s == SS_OK) {
        ss_engine_params ep = p->engine;
        ep.channels = j->e.C;                      /* the track's (ss_model_track_channels) */
        s = ss_engine_run(j->m, be, &ep, j->model_len, decode_pull, &j->d, encode_push, &j->e, err);
    }
    if (s == SS_OK) {                              /* what the model says of the track */
        j->rep->n_stats = ss_model_track_stats(j->m, j->rep->stats, SS_MAX_TRACK_STATS);
        if (p->verbose)
            ss_report_print_stats(j->input, ss_model_get_info(j->m)->name, j->rep->stats, j->rep->n_stats, stderr);
    }
    if (s == SS_OK)
        s = pad_outputs(&j->e, err);
    /* the input is no longer needed: release it before the job waits for stage 3 */
    if (j->d.rd) {
        ss_audio_close(j->d.rd);
        j->d.rd = NULL;
    }
    j->infer_wall = ss_seconds() - t0;
    fill_times(j);
    /* --then: each chained stage on its stem, one after the other */
    for (int k = 0; k < j->n_sub && s == SS_OK; k++)
        s = run_chained(j, k, be, err);
    j->inferred = s == SS_OK;
    return s;
}

/* One output's ss_audio_commit (which frees the writer in every case). */
typedef struct commit_job {
    out_result res;
    ss_audio_writer *w;
} commit_job;

static void *commit_one(void *arg)
{
    commit_job *c = arg;
    c->res.status = ss_audio_commit(c->w, &c->res.err);
    return NULL;
}

/* Stage 3's first half: the rescale pass (--clip rescale). */
static ss_status commit_encode(ss_sep_job *j, ss_error *err)
{
    double t0 = ss_seconds();
    ss_status s = SS_OK;
    if (j->p->clip == SS_CLIP_RESCALE && (s = encode_staged(&j->e, j->out_rate, err)) == SS_OK)
        j->rep->gain = j->e.gain;
    j->rescale_s = ss_seconds() - t0;
    j->commit_s += j->rescale_s;
    return s;
}

/* Stage 3's second half: every output finished, flushed to disk and renamed
 * into place, in parallel (`encoded` 0: removed instead). */
static ss_status commit_files(ss_sep_job *j, int encoded, ss_error *err)
{
    double t0 = ss_seconds();
    ss_status s = encoded ? SS_OK : SS_E_INTERNAL;
    commit_job jobs[SS_MAX_SOURCES + 1];
    for (int k = 0; k < j->e.n_out; k++) {
        jobs[k] = (commit_job){.w = j->outs[k].w};
        j->outs[k].w = NULL;
    }
    if (encoded)
        s = each_output(j->e.n_out, commit_one, jobs, sizeof *jobs, err);
    else
        for (int k = 0; k < j->e.n_out; k++)
            ss_audio_abort(jobs[k].w);
    for (int k = 0; k < j->e.n_out && encoded; k++)       /* the outputs now in place */
        if (jobs[k].res.status == SS_OK && ss_report_add_output(j->rep, j->outs[k].path) != SS_OK && s == SS_OK)
            s = ss_fail(err, SS_E_NOMEM, "out of memory");
    j->commit_s += ss_seconds() - t0;
    fill_times(j);
    if (ss_profile_stages())
        fprintf(stderr, "separate profile: %s: statistics %.3f s, separation %.3f s, rescale pass %.3f s, "
                "finishing the files (close, flush to disk, rename) %.3f s\n", j->input, j->stats_s, j->infer_wall,
                j->rescale_s, j->commit_s - j->rescale_s);
    return s;
}

/* --then: each stage's times into rep->chain, the sums into rep's own
 * fields, and the chained stages' stems and warnings into rep's lists. */
static ss_status merge_chained(ss_sep_job *j, ss_error *err)
{
    ss_file_report *r = j->rep;
    const ss_model_info *info = ss_model_get_info(j->m);
    ss_stage_report st = {.audio_seconds = r->audio_seconds, .wall_seconds = r->wall_seconds, .decode = r->decode,
                          .infer = r->infer, .encode = r->encode, .n_stats = r->n_stats};
    memcpy(st.stats, r->stats, sizeof st.stats);
    snprintf(st.model, sizeof st.model, "%s", info->name);
    int bad = ss_report_add_stage(r, &st) != SS_OK;
    for (int k = 0; k < j->n_sub && !bad; k++) {
        const ss_file_report *q = &j->sub_rep[k];
        ss_stage_report c = {.audio_seconds = q->audio_seconds, .wall_seconds = q->wall_seconds, .decode = q->decode,
                             .infer = q->infer, .encode = q->encode, .n_stats = q->n_stats};
        memcpy(c.stats, q->stats, sizeof c.stats);
        snprintf(c.model, sizeof c.model, "%s", ss_model_get_info(j->p->chain[k].model)->name);
        snprintf(c.stem, sizeof c.stem, "%s", info->sources[j->p->chain[k].source]);
        bad = ss_report_add_stage(r, &c) != SS_OK;
        r->wall_seconds += q->wall_seconds;
        r->decode += q->decode;
        r->infer += q->infer;
        r->encode += q->encode;
        for (int i = 0; i < q->n_outputs && !bad; i++)
            bad = ss_report_add_output(r, q->outputs[i]) != SS_OK;
        for (int i = 0; i < q->n_warnings && !bad; i++)
            bad = ss_report_add_warning(r, q->warnings[i]) != SS_OK;
    }
    return bad ? ss_fail(err, SS_E_NOMEM, "%s: out of memory", j->input) : SS_OK;
}

ss_status ss_sep_commit(ss_sep_job *j, ss_error *err)
{
    if (!j->inferred)
        return ss_fail(err, SS_E_INTERNAL, "%s: ss_sep_commit before ss_sep_infer", j->input);
    /* every model's stems encoded before any is renamed into place */
    ss_status s = commit_encode(j, err);
    for (int k = 0; k < j->n_sub && s == SS_OK; k++)
        s = commit_encode(j->sub[k], err);
    ss_status f = commit_files(j, s == SS_OK, err);
    for (int k = 0; k < j->n_sub; k++) {
        ss_status fk = commit_files(j->sub[k], s == SS_OK && f == SS_OK, err);
        if (f == SS_OK)
            f = fk;
    }
    if (s == SS_OK)
        s = f;
    if (s == SS_OK && j->n_sub > 0)
        s = merge_chained(j, err);
    return s;
}

ss_status ss_separate(ss_model *m, ss_backend *be, const ss_sep_params *p, const char *input,
                      const char *reldir, ss_file_report *rep, ss_error *err)
{
    ss_sep_job *j = NULL;
    ss_status s = ss_sep_prepare(m, p, input, reldir, rep, &j, err);
    if (s == SS_OK && (s = ss_sep_infer(j, be, err)) == SS_OK)
        s = ss_sep_commit(j, err);
    ss_sep_job_free(j);
    return s;
}

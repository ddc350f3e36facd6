/* test_deepfilternet.c - DeepFilterNet3 (models/deepfilternet/deepfilternet.c)
 * against a reference made with the reference's own network code.
 *
 * The fixture ($SS_DFN_FIXTURES, else tests/fixtures/deepfilternet-dev, made
 * by scripts/make-dfn-fixtures.py --dev): model.safetensors (a small random-weight
 * configuration with the deepfilternet.* metadata) and ref.safetensors (`mix`
 * [C, L], `speech` [C, L]: df.enhance.enhance() of each channel).
 *
 *   - forward parity per channel through the ss_arch's forward(), relative
 *     L2 <= 1e-4;
 *   - block-size independence: blocks of 3, 7 and 64 frames give the same
 *     result as the default (<= 1e-6 relative L2; the sums run in another
 *     order only in the products' blocking);
 *   - the engine's SS_CHUNK_STREAM (ss_engine_run) on channel 0 with pieces
 *     of 256, 5 and 3 frames and short pulls: parity;
 *   - both channels of the mix through the engine at once (channels = 2),
 *     each its own stream, each within 1e-4; a model file that says
 *     stemsplit.channels=2 refused;
 *   - the real CLI on a mono float WAV of channel 0: speech.wav against the
 *     reference, noise.wav = mixture - speech; --shifts refused (64);
 *   - the CLI on 2- and 3-channel files (and 2 channels at 44.1 kHz): each
 *     channel of speech and noise bit for bit that channel run alone;
 *   - the local SNR summary in --report-json (model_stats) against the
 *     reference's own per-frame lsnr (ref.safetensors `lsnr`);
 *   - where they are present, the reference side's fixtures
 *     (tests/fixtures/deepfilternet/small) through their converter and the CLI.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <unistd.h>

#include <sndfile.h>

#include "../src/engine.h"
#include "../src/model.h"
#include "../src/safetensors.h"
#include "test.h"

#define TOL 1e-4

#ifndef DFN_DEVICE
#define DFN_DEVICE "cpu"
#endif

extern const ss_arch ss_arch_deepfilternet3;

static char fixture[512];

static double rel_l2(const float *y, const float *r, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    return sqrt(num / (den > 0 ? den : 1e-30));
}

/* tensor `name` of the safetensors file `path`, [C, L] or [S, C, L] (the first
 * stem), as [C, L] (malloc'd) or NULL */
static float *tensor_get(const char *path, const char *name, int *C, int64_t *L)
{
    ss_error err = {0};
    ss_st *st = NULL;
    if (ss_st_open(path, &st, &err) != SS_OK)
        return NULL;
    const ss_st_tensor *t = ss_st_find(st, name);
    float *y = NULL;
    if (t && (t->ndim == 2 || t->ndim == 3) && (y = malloc((size_t)t->numel * sizeof *y))) {
        ss_st_to_f32(t, y);
        *C = (int)t->shape[t->ndim - 2];
        *L = t->shape[t->ndim - 1];
    }
    ss_st_close(st);
    return y;
}

/* tensor `name` of the fixture's ref.safetensors [C, L] (malloc'd) or NULL */
static float *ref_get(const char *name, int *C, int64_t *L)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/ref.safetensors", fixture);
    return tensor_get(path, name, C, L);
}

typedef struct run {
    ss_backend *be;
    ss_st *st;
    void *state;
} run;

static ss_status open_model(run *r, ss_error *err)
{
    char path[1400];
    ss_backend_params bp = {.threads = 2};
    ss_model_info info = {.n_sources = 1, .channels = 1, .samplerate = 48000};   /* as load() sees it */
    strcpy(info.sources[0], "speech");
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    ss_status s = ss_backend_open(DFN_DEVICE, &bp, &r->be, NULL, 0, err);
    if (s == SS_OK)
        s = ss_st_open(path, &r->st, err);
    if (s == SS_OK)
        s = ss_arch_deepfilternet3.load(r->st, &info, r->be, &r->state, err);
    return s;
}

static void close_model(run *r)
{
    if (r->state)
        ss_arch_deepfilternet3.free(r->state, r->be);
    if (r->st)
        ss_st_close(r->st);
    if (r->be)
        ss_backend_close(r->be);
}

/* speech of x [C, L] with blocks of `block` frames (0: the default) */
static float *enhance(run *r, const float *x, int C, int64_t L, int block, ss_error *err)
{
    if (block && ss_arch_deepfilternet3.option(r->state, "block", block, err) != SS_OK)
        return NULL;
    float *y = malloc((size_t)C * L * sizeof *y);
    if (!y)
        return NULL;
    if (ss_arch_deepfilternet3.forward(r->state, r->be, x, y, C, L, err) != SS_OK) {
        free(y);
        return NULL;
    }
    return y;
}

static void test_forward_parity(void)
{
    int C = 0, C2 = 0;
    int64_t L = 0, L2 = 0;
    float *x = ref_get("mix", &C, &L), *ref = ref_get("speech", &C2, &L2);
    if (!x || !ref) {
        free(x);
        free(ref);
        SKIP("no fixture in %s (scripts/make-dfn-fixtures.py --dev makes one)", fixture);
    }
    CHECK(C == C2 && L == L2, "mix [%d, %lld] and speech [%d, %lld] differ", C, (long long)L, C2, (long long)L2);
    run r = {0};
    ss_error err = {0};
    CHECK(open_model(&r, &err) == SS_OK, "%s", err.msg);
    float *y = enhance(&r, x, C, L, 0, &err);
    CHECK(y, "%s", err.msg);
    for (int c = 0; c < C; c++) {
        double e = rel_l2(y + (size_t)c * L, ref + (size_t)c * L, (size_t)L);
        printf("%s deepfilternet speech channel %d: relative L2 %.3g (tolerance %g)\n", e <= TOL ? "PASS" : "FAIL", c,
               e, TOL);
        CHECK(e <= TOL, "channel %d: relative L2 %g", c, e);
    }
#ifdef DFN_LIGHT
    static const int blocks[] = {7};
#else
    static const int blocks[] = {3, 7, 64};
#endif
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
        float *yb = enhance(&r, x, C, L, blocks[i], &err);
        CHECK(yb, "block %d: %s", blocks[i], err.msg);
        double e = rel_l2(yb, y, (size_t)C * L);
        printf("%s deepfilternet blocks of %d frames vs the default: relative L2 %.3g\n", e <= 1e-6 ? "PASS" : "FAIL",
               blocks[i], e);
        CHECK(e <= 1e-6, "blocks of %d frames: relative L2 %g against the default", blocks[i], e);
        free(yb);
    }
    free(y);
    close_model(&r);
    free(x);
    free(ref);
}

/* ---- the engine's stream ---------------------------------------------------------- */

typedef struct feed {
    const float *x;             /* [L] */
    float *y;                   /* [L] */
    int64_t L, pos, out, chunk; /* pull at most `chunk` at a time */
    const int64_t *sizes;       /* or these in turn, n_sizes of them, where given */
    int n_sizes, turn;
} feed;

static ss_status pull(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err)
{
    (void)err, (void)cap;
    feed *f = arg;
    int64_t k = f->L - f->pos < n ? f->L - f->pos : n;
    int64_t chunk = f->n_sizes ? f->sizes[f->turn++ % f->n_sizes] : f->chunk;
    k = k < chunk ? k : chunk;
    memcpy(buf, f->x + f->pos, (size_t)k * sizeof *buf);
    f->pos += k;
    *got = k;
    return SS_OK;
}

static ss_status push(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err)
{
    (void)pitch;
    feed *f = arg;
    if (f->out + n > f->L)
        return ss_fail(err, SS_E_INTERNAL, "pushed %lld past %lld", (long long)(f->out + n), (long long)f->L);
    memcpy(f->y + f->out, stems, (size_t)n * sizeof *stems);
    f->out += n;
    return SS_OK;
}

static void test_engine_stream(void)
{
    int C = 0, C2 = 0;
    int64_t L = 0, L2 = 0;
    float *x = ref_get("mix", &C, &L), *ref = ref_get("speech", &C2, &L2);
    if (!x || !ref) {
        free(x);
        free(ref);
        SKIP("no fixture in %s", fixture);
    }
    char path[1400];
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.threads = 2};
    CHECK(ss_backend_open(DFN_DEVICE, &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_load(path, be, &m, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_chunking(m) == SS_CHUNK_STREAM, "chunking %d", (int)ss_model_chunking(m));
#ifdef DFN_LIGHT
    static const struct { int block; int64_t chunk; } runs[] = {{3, 77}};
#else
    static const struct { int block; int64_t chunk; } runs[] = {{0, 1 << 30}, {5, 1000}, {3, 77}};
#endif
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        if (runs[i].block)
            CHECK(ss_model_option(m, "block", runs[i].block, &err) == SS_OK, "%s", err.msg);
        float *y = calloc((size_t)L, sizeof *y);
        CHECK(y, "oom");
        feed f = {.x = x, .y = y, .L = L, .chunk = runs[i].chunk};
        ss_engine_params p = {.batch = 1};
        CHECK(ss_engine_run(m, be, &p, L, pull, &f, push, &f, &err) == SS_OK, "%s", err.msg);
        CHECK(f.out == L, "%lld of %lld samples pushed", (long long)f.out, (long long)L);
        double e = rel_l2(y, ref, (size_t)L);
        printf("%s deepfilternet engine stream (blocks %d, pulls of %lld): relative L2 %.3g (tolerance %g)\n",
               e <= TOL ? "PASS" : "FAIL", runs[i].block, (long long)runs[i].chunk, e, TOL);
        CHECK(e <= TOL, "relative L2 %g", e);
        free(y);
    }
    /* --shifts has no meaning for a stream */
    feed f = {.x = x, .y = ref, .L = L, .chunk = L};
    ss_engine_params p = {.batch = 1, .shifts = 1};
    CHECK(ss_engine_run(m, be, &p, L, pull, &f, push, &f, &err) == SS_E_USAGE, "shifts accepted");
    ss_model_free(m);
    ss_backend_close(be);
    free(x);
    free(ref);
}

/* A live stream (SS_ENGINE_LIVE: the length unknown until a pull gives 0)
 * gives as many samples as went in, the same bits whatever the pieces (1, 7,
 * 480, 4096, ... samples, or all at once) and the model's block (it runs
 * every frame as a block of its own), within 1e-6 of the track of that
 * length given up front (whose blocks of 256 frames round differently in
 * the last bits); the output of each sample comes `latency` samples after
 * it at the latest; an empty stream gives nothing. */
static void test_engine_live(void)
{
    int C = 0;
    int64_t L = 0;
    float *x = ref_get("mix", &C, &L);
    if (!x)
        SKIP("no fixture in %s", fixture);
    char path[1400];
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.threads = 2};
    CHECK(ss_backend_open(DFN_DEVICE, &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_load(path, be, &m, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_stream_live(m), "deepfilternet3 is not a live stream model");
    ss_stream_geom g;
    CHECK(ss_model_stream_geom(m, &g, &err) == SS_OK, "%s", err.msg);
    float *y0 = calloc((size_t)L, sizeof *y0), *y = calloc((size_t)L, sizeof *y);
    CHECK(y0 && y, "oom");
    feed f0 = {.x = x, .y = y0, .L = L, .chunk = 1 << 30};
    ss_engine_params p = {.batch = 1};
    CHECK(ss_engine_run(m, be, &p, L, pull, &f0, push, &f0, &err) == SS_OK, "%s", err.msg);
    static const int64_t sizes[] = {1, 7, 480, 4096, 333, 1, 1, 960};
    static const struct { int block; int n_sizes; int64_t chunk; } runs[] = {
        {0, 0, 1 << 30}, {0, 8, 0}, {3, 8, 0}, {0, 0, 1}};
    float *first = calloc((size_t)L, sizeof *first);
    CHECK(first, "oom");
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        CHECK(ss_model_option(m, "block", runs[i].block ? runs[i].block : 256, &err) == SS_OK, "%s", err.msg);
        memset(y, 0, (size_t)L * sizeof *y);
        feed f = {.x = x, .y = y, .L = L, .chunk = runs[i].chunk, .sizes = sizes, .n_sizes = runs[i].n_sizes};
        CHECK(ss_engine_run(m, be, &p, SS_ENGINE_LIVE, pull, &f, push, &f, &err) == SS_OK, "%s", err.msg);
        CHECK(f.out == L, "%lld of %lld samples pushed", (long long)f.out, (long long)L);
        const char *how = runs[i].n_sizes ? "1, 7, 480, 4096, 333, ..." : runs[i].chunk == 1 ? "1" : "all at once";
        if (i == 0) {
            memcpy(first, y, (size_t)L * sizeof *y);
            double e = rel_l2(y, y0, (size_t)L), worst = 0;
            for (int64_t k = 0; k < L; k++)
                worst = fabs((double)y[k] - y0[k]) > worst ? fabs((double)y[k] - y0[k]) : worst;
            printf("%s deepfilternet live stream vs the length up front: relative L2 %.3g, largest difference %.3g "
                   "(tolerance 1e-6)\n", e <= 1e-6 && worst <= 1e-6 ? "PASS" : "FAIL", e, worst);
            CHECK(e <= 1e-6 && worst <= 1e-6, "relative L2 %g, largest difference %g", e, worst);
            continue;
        }
        int64_t nd = 0, at = -1;
        for (int64_t k = 0; k < L; k++)
            if (memcmp(&y[k], &first[k], sizeof *y) != 0 && nd++ == 0)
                at = k;
        CHECK(nd == 0, "live stream (block %d, pieces of %s): %lld of %lld samples differ from one piece's, the first "
              "at %lld", runs[i].block, how, (long long)nd, (long long)L, (long long)at);
        printf("PASS deepfilternet live stream (blocks %d, pieces of %s): bit-identical to all at once\n",
               runs[i].block ? runs[i].block : 256, how);
    }
    free(first);
    /* the latency the geometry states: sample by sample, the output of a
     * sample comes at the latest `latency` samples after it went in */
    {
        feed f = {.x = x, .y = y, .L = L, .chunk = 1};
        int64_t worst = 0;
        CHECK(ss_model_stream_begin(m, -1, 1, &err) == SS_OK, "%s", err.msg);
        ss_model_io *io;
        CHECK(ss_model_io_get(m, (size_t)g.block, (size_t)(g.block + g.extra), &io, &err) == SS_OK, "%s", err.msg);
        int64_t out = 0;
        for (int64_t i = 0; i < L && i < 20 * g.latency; i++) {
            int64_t n_out = 0;
            CHECK(ss_upload(be, io->dev_x, x + i, 1) == SS_OK, "upload");
            CHECK(ss_model_stream_run(m, io->dev_x, io->dev_y, 1, &n_out, &err) == SS_OK, "%s", err.msg);
            /* samples out .. out + n_out - 1 became final with sample i */
            if (n_out > 0 && i - out > worst)
                worst = i - out;
            out += n_out;
        }
        (void)f;
        CHECK(worst == g.latency, "the first output sample of a piece waited %lld samples, geometry says %lld",
              (long long)worst, (long long)g.latency);
        printf("PASS deepfilternet live stream latency: %lld samples, as the geometry says\n", (long long)worst);
    }
    /* nothing in, nothing out */
    feed fe = {.x = x, .y = y, .L = 0, .chunk = 1};
    CHECK(ss_engine_run(m, be, &p, SS_ENGINE_LIVE, pull, &fe, push, &fe, &err) == SS_OK, "%s", err.msg);
    CHECK(fe.out == 0, "%lld samples from an empty stream", (long long)fe.out);
    printf("PASS deepfilternet live stream of 0 samples: 0 out\n");
    free(y0);
    free(y);
    ss_model_free(m);
    ss_backend_close(be);
    free(x);
}

/* ---- two channels, each its own stream ---------------------------------------------- */

/* dst = src with stemsplit.channels "1" made "2" (same length: the offsets hold); 0 on success */
static int stereo_copy(const char *src, const char *dst)
{
    FILE *f = fopen(src, "rb");
    if (!f)
        return -1;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    static const char key[] = "\"stemsplit.channels\":\"1\"";
    char *p = NULL;
    for (size_t i = 0; i + sizeof key - 1 <= n && i < 65536 && !p; i++)
        if (memcmp(buf + i, key, sizeof key - 1) == 0)
            p = buf + i;
    if (!p || n == sizeof buf)
        return -1;
    p[sizeof key - 3] = '2';
    f = fopen(dst, "wb");
    if (!f)
        return -1;
    int bad = fwrite(buf, 1, n, f) != n;
    return fclose(f) != 0 || bad ? -1 : 0;
}

typedef struct feed2 {
    const float *x;             /* [2, L] */
    float *y;                   /* [2, L] */
    int64_t L, pos, out;
} feed2;

static ss_status pull2(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err)
{
    (void)err;
    feed2 *f = arg;
    int64_t k = f->L - f->pos < n ? f->L - f->pos : n;
    k = k < 999 ? k : 999;
    for (int c = 0; c < 2; c++)
        memcpy(buf + c * cap, f->x + c * f->L + f->pos, (size_t)k * sizeof *buf);
    f->pos += k;
    *got = k;
    return SS_OK;
}

static ss_status push2(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err)
{
    feed2 *f = arg;
    if (f->out + n > f->L)
        return ss_fail(err, SS_E_INTERNAL, "pushed %lld past %lld", (long long)(f->out + n), (long long)f->L);
    for (int c = 0; c < 2; c++)
        memcpy(f->y + c * f->L + f->out, stems + c * pitch, (size_t)n * sizeof *stems);
    f->out += n;
    return SS_OK;
}

/* the model (stemsplit.channels=1, channels_independent) on the fixture's
 * two-channel mix through the engine with channels = 2: two independent
 * streams, each within 1e-4 of its own reference; a copy of the model file
 * that says stemsplit.channels=2 is refused (the count is the file's) */
static void test_stereo_streams(void)
{
    int C = 0, C2 = 0;
    int64_t L = 0, L2 = 0;
    float *x = ref_get("mix", &C, &L), *ref = ref_get("speech", &C2, &L2);
    if (!x || !ref || C != 2) {
        free(x);
        free(ref);
        SKIP("no two-channel fixture in %s", fixture);
    }
    char src[1400], dst[] = "/tmp/ss_dfn2_XXXXXX";
    snprintf(src, sizeof src, "%s/model.safetensors", fixture);
    int fd = mkstemp(dst);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    CHECK(stereo_copy(src, dst) == 0, "cannot make a two-channel copy of %s", src);
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.threads = 2};
    CHECK(ss_backend_open(DFN_DEVICE, &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_load(dst, be, &m, &err) == SS_E_DATA && strstr(err.msg, "stemsplit.channels 2"),
          "a stemsplit.channels=2 file loaded (%s)", err.msg);
    unlink(dst);
    ss_error_clear(&err);
    CHECK(ss_model_load(src, be, &m, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_get_info(m)->channels == 1 && ss_model_get_info(m)->channels_independent,
          "channels %d, independent %d", ss_model_get_info(m)->channels, ss_model_get_info(m)->channels_independent);
    CHECK(ss_model_track_channels(ss_model_get_info(m), 2) == 2, "a stereo file is not given as stereo");
    CHECK(ss_model_option(m, "block", 4, &err) == SS_OK, "%s", err.msg);
    float *y = calloc((size_t)2 * L, sizeof *y);
    CHECK(y, "oom");
    feed2 f = {.x = x, .y = y, .L = L};
    ss_engine_params p = {.batch = 1, .channels = 2};
    CHECK(ss_engine_run(m, be, &p, L, pull2, &f, push2, &f, &err) == SS_OK, "%s", err.msg);
    CHECK(f.out == L, "%lld of %lld samples pushed", (long long)f.out, (long long)L);
    for (int c = 0; c < 2; c++) {
        double e = rel_l2(y + c * L, ref + c * L, (size_t)L);
        printf("%s deepfilternet two-channel stream, channel %d: relative L2 %.3g (tolerance %g)\n",
               e <= TOL ? "PASS" : "FAIL", c, e, TOL);
        CHECK(e <= TOL, "channel %d: relative L2 %g", c, e);
    }
    ss_model_free(m);
    ss_backend_close(be);
    free(y);
    free(x);
    free(ref);
}

#ifndef DFN_NO_CLI
/* ---- the CLI ------------------------------------------------------------------------ */

static float *read_mono(const char *path, int64_t *L)
{
    SF_INFO si = {0};
    SNDFILE *f = sf_open(path, SFM_READ, &si);
    if (!f)
        return NULL;
    float *y = si.channels == 1 ? malloc((size_t)si.frames * sizeof *y) : NULL;
    if (y && sf_readf_float(f, y, si.frames) != si.frames) {
        free(y);
        y = NULL;
    }
    *L = si.frames;
    sf_close(f);
    return y;
}

static void test_cli_parity(void)
{
    const char *env = getenv("STEMSPLIT"), *root = getenv("SS_ROOT");
    char exe[1024], dir[] = "/tmp/ss_dfn_XXXXXX";
    snprintf(exe, sizeof exe, "%s", env && *env ? env : "");
    if (!*exe)
        snprintf(exe, sizeof exe, "%s/stemsplit", root && *root ? root : ".");
    if (access(exe, X_OK) != 0)
        SKIP("%s is not an executable (set STEMSPLIT)", exe);
    int C = 0, C2 = 0;
    int64_t L = 0, L2 = 0;
    float *x = ref_get("mix", &C, &L), *ref = ref_get("speech", &C2, &L2);
    if (!x || !ref) {
        free(x);
        free(ref);
        SKIP("no fixture in %s", fixture);
    }
    CHECK(mkdtemp(dir), "mkdtemp");
    char mix[1100], model[1100], cmd[4096], out[1200];
    snprintf(mix, sizeof mix, "%s/mix.wav", dir);
    snprintf(model, sizeof model, "%s/model.safetensors", fixture);
    SF_INFO si = {.samplerate = 48000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(mix, SFM_WRITE, &si);
    CHECK(f && sf_writef_float(f, x, L) == L, "cannot write %s", mix);
    sf_close(f);
    snprintf(cmd, sizeof cmd,
             "'%s' -q -m '%s' -d cpu -j 2 --sample-format f32 --clip none -o '%s' --filename '{stem}.{ext}' '%s' "
             ">'%s/cli.log' 2>&1", exe, model, dir, mix, dir);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "stemsplit failed (%d), log in %s/cli.log", rc, dir);
    int64_t n = 0;
    snprintf(out, sizeof out, "%s/speech.wav", dir);
    float *sp = read_mono(out, &n);
    CHECK(sp && n == L, "%s missing or not %lld mono samples", out, (long long)L);
    double e = rel_l2(sp, ref, (size_t)L);
    printf("%s deepfilternet CLI speech: relative L2 %.3g (tolerance %g)\n", e <= TOL ? "PASS" : "FAIL", e, TOL);
    CHECK(e <= TOL, "speech: relative L2 %g", e);
    snprintf(out, sizeof out, "%s/noise.wav", dir);
    float *no = read_mono(out, &n);
    CHECK(no && n == L, "%s missing or not %lld mono samples", out, (long long)L);
    for (int64_t i = 0; i < L; i++)
        ref[i] = x[i] - ref[i];
    e = rel_l2(no, ref, (size_t)L);
    printf("%s deepfilternet CLI noise: relative L2 %.3g (tolerance %g)\n", e <= TOL ? "PASS" : "FAIL", e, TOL);
    CHECK(e <= TOL, "noise: relative L2 %g", e);
    /* --shifts: a stream has none (usage error, 64) */
    snprintf(cmd, sizeof cmd, "'%s' -q -m '%s' -d cpu --shifts 1 -o '%s' '%s' >'%s/cli.log' 2>&1", exe, model, dir,
             mix, dir);
    rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 64, "--shifts 1 gave %d, not 64", rc);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cannot remove %s", dir);
    free(sp);
    free(no);
    free(x);
    free(ref);
}
/* ---- the local SNR summary ----------------------------------------------------------- */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* the number after "key": in the text, or NAN */
static double json_num(const char *text, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = text ? strstr(text, pat) : NULL;
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* The report's model_stats (--report-json `path`) against the reference's own
 * per-frame local SNR `ref` [n] (every channel's frames): min, median
 * (numpy's), max within 2e-3 dB, and the share of frames below -10 dB and
 * above 30 dB (libDF's thresholds) exactly. */
static void check_lsnr(const char *path, const float *ref, size_t n, const char *label)
{
    FILE *f = fopen(path, "rb");
    static char text[1 << 16];
    size_t got = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    text[got] = '\0';
    float *v = malloc(n * sizeof *v);
    CHECK(v && got > 0 && strstr(text, "\"model_stats\""), "%s: no model_stats in %s", label, path);
    memcpy(v, ref, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_float);
    double med = n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2 - 1] + v[n / 2]);
    size_t noise = 0, clean = 0;
    for (size_t i = 0; i < n; i++) {
        noise += v[i] < -10.0f;
        clean += v[i] > 30.0f;
    }
    static const char *const keys[5] = {"lsnr_min_db", "lsnr_median_db", "lsnr_max_db", "noise_only_percent",
                                        "clean_speech_percent"};
    double want[5] = {v[0], med, v[n - 1], 100.0 * (double)noise / (double)n, 100.0 * (double)clean / (double)n};
    double tol[5] = {2e-3, 2e-3, 2e-3, 1e-9, 1e-9};
    for (int k = 0; k < 5; k++) {
        double x = json_num(text, keys[k]);
        int ok = fabs(x - want[k]) <= tol[k];
        printf("%s deepfilternet %s %s: %.6g, the reference's %.6g\n", ok ? "PASS" : "FAIL", label, keys[k], x,
               want[k]);
        CHECK(ok, "%s %s: %g, the reference's %g", label, keys[k], x, want[k]);
    }
    free(v);
}

/* ---- a file's channels, each on its own ----------------------------------------------- */

/* x [C, L] planar as a float WAV of C channels at `rate`; 0 on success */
static int write_wav(const char *path, const float *x, int C, int64_t L, int rate)
{
    SF_INFO si = {.samplerate = rate, .channels = C, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    float *il = malloc((size_t)C * L * sizeof *il);
    SNDFILE *f = il ? sf_open(path, SFM_WRITE, &si) : NULL;
    int bad = !f;
    if (f) {
        for (int64_t i = 0; i < L; i++)
            for (int c = 0; c < C; c++)
                il[i * C + c] = x[c * L + i];
        bad = sf_writef_float(f, il, L) != L;
        bad |= sf_close(f) != 0;
    }
    free(il);
    return bad ? -1 : 0;
}

/* a WAV file's samples, interleaved [L, C] (malloc'd), or NULL */
static float *read_wav(const char *path, int *C, int64_t *L)
{
    SF_INFO si = {0};
    SNDFILE *f = sf_open(path, SFM_READ, &si);
    if (!f)
        return NULL;
    float *y = malloc((size_t)si.frames * si.channels * sizeof *y);
    if (y && sf_readf_float(f, y, si.frames) != si.frames) {
        free(y);
        y = NULL;
    }
    *C = si.channels;
    *L = si.frames;
    sf_close(f);
    return y;
}

/* the CLI on `in` into folder `out` (speech.wav, noise.wav as 32-bit float); its exit status */
static int cli_run(const char *exe, const char *model, const char *out, const char *in, const char *extra)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' -q -m '%s' -d cpu -j 2 --sample-format f32 --clip none -o '%s' --filename '{stem}.{ext}' %s '%s' "
             ">'%s.log' 2>&1", exe, model, out, extra ? extra : "", in, out);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A C-channel file (2 and 3 channels at 48 kHz, 2 at 44.1 kHz through the
 * resampling) gives C-channel speech and noise whose channel c is, bit for
 * bit, what the CLI gives for channel c alone as a mono file: each channel is
 * its own stream (no mixdown), and noise = mixture - speech per channel. */
static void test_cli_channels(void)
{
    const char *env = getenv("STEMSPLIT"), *root = getenv("SS_ROOT");
    char exe[1024], dir[] = "/tmp/ss_dfnc_XXXXXX";
    snprintf(exe, sizeof exe, "%s", env && *env ? env : "");
    if (!*exe)
        snprintf(exe, sizeof exe, "%s/stemsplit", root && *root ? root : ".");
    if (access(exe, X_OK) != 0)
        SKIP("%s is not an executable (set STEMSPLIT)", exe);
    int C = 0;
    int64_t L = 0;
    float *mix = ref_get("mix", &C, &L);
    if (!mix || C != 2) {
        free(mix);
        SKIP("no two-channel fixture in %s", fixture);
    }
    /* three different channels: the fixture's two and a mix of them */
    float *x = malloc((size_t)3 * L * sizeof *x);
    CHECK(x, "oom");
    memcpy(x, mix, (size_t)2 * L * sizeof *x);
    for (int64_t i = 0; i < L; i++)
        x[2 * L + i] = 0.5f * mix[i] - 0.3f * mix[L + L - 1 - i];
    CHECK(mkdtemp(dir), "mkdtemp");
    char model[1400], in[1200], out[1200], path[1500];
    snprintf(model, sizeof model, "%s/model.safetensors", fixture);
    static const struct { int C, rate; } cases[] = {{2, 48000}, {3, 48000}, {2, 44100}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int nc = cases[k].C, rate = cases[k].rate;
        snprintf(in, sizeof in, "%s/mix%d_%d.wav", dir, nc, rate);
        snprintf(out, sizeof out, "%s/out%d_%d", dir, nc, rate);
        CHECK(write_wav(in, x, nc, L, rate) == 0, "cannot write %s", in);
        char rep[1300], extra[1400];
        snprintf(rep, sizeof rep, "%s.json", out);
        snprintf(extra, sizeof extra, "--report-json '%s'", rep);
        int rc = cli_run(exe, model, out, in, extra);
        CHECK(rc == 0, "stemsplit gave %d on %s (log %s.log)", rc, in, out);
        if (nc == 2 && rate == 48000) {            /* the fixture's own channels: its reference LSNR */
            int lc = 0;
            int64_t lt = 0;
            float *lsnr = ref_get("lsnr", &lc, &lt);
            CHECK(lsnr && lc == 2, "%s/ref.safetensors: no lsnr [2, T]", fixture);
            check_lsnr(rep, lsnr, (size_t)lc * lt, "two-channel CLI");
            free(lsnr);
        }
        float *stem[2];
        static const char *const names[2] = {"speech", "noise"};
        for (int q = 0; q < 2; q++) {
            int sc = 0;
            int64_t sl = 0;
            snprintf(path, sizeof path, "%s/%s.wav", out, names[q]);
            stem[q] = read_wav(path, &sc, &sl);
            CHECK(stem[q] && sc == nc && sl == L, "%s: %d channels, %lld frames, not %d and %lld", path, sc,
                  (long long)sl, nc, (long long)L);
        }
        for (int c = 0; c < nc; c++) {
            char in1[1400], out1[1400];
            snprintf(in1, sizeof in1, "%s/ch%d.wav", out, c);
            snprintf(out1, sizeof out1, "%s/ch%d", out, c);
            CHECK(write_wav(in1, x + (size_t)c * L, 1, L, rate) == 0, "cannot write %s", in1);
            rc = cli_run(exe, model, out1, in1, NULL);
            CHECK(rc == 0, "stemsplit gave %d on %s (log %s.log)", rc, in1, out1);
            for (int q = 0; q < 2; q++) {
                int sc = 0;
                int64_t sl = 0, diff = 0;
                snprintf(path, sizeof path, "%s/%s.wav", out1, names[q]);
                float *mono = read_wav(path, &sc, &sl);
                CHECK(mono && sc == 1 && sl == L, "%s: not %lld mono frames", path, (long long)L);
                for (int64_t i = 0; i < L; i++)
                    diff += memcmp(&mono[i], &stem[q][i * nc + c], sizeof *mono) != 0;
                printf("%s deepfilternet %d channels at %d Hz: %s channel %d = channel %d alone (%lld of %lld "
                       "samples differ)\n", diff == 0 ? "PASS" : "FAIL", nc, rate, names[q], c, c, (long long)diff,
                       (long long)L);
                CHECK(diff == 0, "%s channel %d: %lld samples differ from the channel alone", names[q], c,
                      (long long)diff);
                free(mono);
            }
        }
        free(stem[0]);
        free(stem[1]);
    }
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cannot remove %s", dir);
    free(x);
    free(mix);
}

/* The reference side's fixtures (tests/fixtures/deepfilternet/small, made by
 * scripts/make-dfn-fixtures.py from DeepFilterNet's own enhance()), converted
 * by scripts/convert-deepfilternet.py and run through the CLI: speech within
 * 1e-4 of `speech` (mix.wav) and of stems[0] (mix_16000.wav).  Skipped where
 * they or python3 are absent. */
static void test_reference_fixtures(void)
{
    const char *env = getenv("STEMSPLIT"), *root = getenv("SS_ROOT");
    char exe[1024], src[1024], conv[1100], dir[] = "/tmp/ss_dfnr_XXXXXX", cmd[8192];
    if (!root || !*root)
        root = ".";
    snprintf(exe, sizeof exe, "%s", env && *env ? env : "");
    if (!*exe)
        snprintf(exe, sizeof exe, "%s/stemsplit", root);
    snprintf(src, sizeof src, "%s/tests/fixtures/deepfilternet/small", root);
    snprintf(conv, sizeof conv, "%s/scripts/convert-deepfilternet.py", root);
    snprintf(cmd, sizeof cmd, "%s/ref.safetensors", src);
    if (access(exe, X_OK) != 0 || access(conv, R_OK) != 0 || access(cmd, R_OK) != 0 ||
        system("python3 -c 'import sys' >/dev/null 2>&1") != 0)
        SKIP("tests/fixtures/deepfilternet/small, scripts/convert-deepfilternet.py, python3 or the CLI absent");
    CHECK(mkdtemp(dir), "mkdtemp");
    snprintf(cmd, sizeof cmd, "python3 '%s' -o '%s/dfn.safetensors' '%s' >'%s/convert.log' 2>&1", conv, dir, src, dir);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "convert-deepfilternet.py failed, log in %s/convert.log", dir);
    static const struct { const char *suffix, *tensor; } cases[] = {{"", "speech"}, {"_16000", "stems"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char ref[1200], out[1200];
        snprintf(cmd, sizeof cmd,
                 "'%s' -q -m '%s/dfn.safetensors' -d cpu -j 2 --sample-format f32 --clip none -o '%s' "
                 "--filename '{stem}.{ext}' --report-json '%s/rep.json' '%s/mix%s.wav' >'%s/cli.log' 2>&1", exe, dir,
                 dir, dir, src, cases[i].suffix, dir);
        rc = system(cmd);
        char logp[1200], why[400] = "";
        snprintf(logp, sizeof logp, "%s/cli.log", dir);
        FILE *lf = fopen(logp, "r");
        if (lf) {
            if (!fgets(why, sizeof why, lf))
                why[0] = '\0';
            fclose(lf);
        }
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "stemsplit failed (%d) on the converted reference model: %s", rc,
              why);
        snprintf(ref, sizeof ref, "%s/ref%s.safetensors", src, cases[i].suffix);
        int C = 0;
        int64_t L = 0, n = 0;
        float *r = tensor_get(ref, cases[i].tensor, &C, &L);
        CHECK(r && C == 1, "%s: no %s [1, L]", ref, cases[i].tensor);
        snprintf(out, sizeof out, "%s/speech.wav", dir);
        float *y = read_mono(out, &n);
        CHECK(y && n == L, "%s missing or not %lld mono samples", out, (long long)L);
        double e = rel_l2(y, r, (size_t)L);
        printf("%s deepfilternet reference fixture mix%s speech: relative L2 %.3g (tolerance %g)\n",
               e <= TOL ? "PASS" : "FAIL", cases[i].suffix, e, TOL);
        CHECK(e <= TOL, "mix%s: relative L2 %g", cases[i].suffix, e);
        if (!cases[i].suffix[0]) {                 /* the reference's lsnr [1, T, 1] of mix.wav */
            ss_error err = {0};
            ss_st *st = NULL;
            CHECK(ss_st_open(ref, &st, &err) == SS_OK, "%s", err.msg);
            const ss_st_tensor *t = ss_st_find(st, "lsnr");
            float *l = t ? malloc((size_t)t->numel * sizeof *l) : NULL;
            CHECK(l, "%s: no lsnr", ref);
            ss_st_to_f32(t, l);
            snprintf(out, sizeof out, "%s/rep.json", dir);
            check_lsnr(out, l, (size_t)t->numel, "reference fixture");
            free(l);
            ss_st_close(st);
        }
        free(r);
        free(y);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cannot remove %s", dir);
}
#endif

int main(void)
{
    const char *fx = getenv("SS_DFN_FIXTURES"), *root = getenv("SS_ROOT");
    if (fx && *fx)
        snprintf(fixture, sizeof fixture, "%s", fx);
    else
        snprintf(fixture, sizeof fixture, "%s/tests/fixtures/deepfilternet-dev", root && *root ? root : ".");
    RUN(test_forward_parity);
    RUN(test_engine_stream);
    RUN(test_engine_live);
    RUN(test_stereo_streams);
#ifndef DFN_NO_CLI
    RUN(test_cli_parity);
    RUN(test_cli_channels);
    RUN(test_reference_fixtures);
#endif
    return test_summary();
}

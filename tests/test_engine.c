/* test_engine.c - the chunked engine: an identity model must come back exactly
 * across chunk boundaries, padding, shifts, batching and thread counts; the
 * shift offsets must be those of Python's random module. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"
#include "model.h"
#include "st_write.h"
#include "test.h"

#define RATE 1000          /* identity model: 1000 Hz, 1 s segment -> 1000-frame chunks */
#define SEG 1000

static char dir[] = "/tmp/ss-engine-XXXXXX";
static char model_path[512], padded_path[512];
static const char *model_now;    /* the model run_case() uses */

/* An identity model with two sources of gain 1 and 0.5, stereo; `pad` makes it
 * ask for whole segments (valid_length), as HTDemucs does. */
static int make_model(const char *path, int pad)
{
    const char *names[] = {"gain"};
    const int64_t shapes[][ST_WRITE_MAX_DIMS] = {{2}};
    const int ndims[] = {1};
    const float gain[] = {1.0f, 0.5f};
    const float *data[] = {gain};
    return st_write_f32(path, pad ?
                        "{\"stemsplit.architecture\":\"identity\",\"stemsplit.sources\":\"a,b\","
                        "\"stemsplit.samplerate\":\"1000\",\"stemsplit.channels\":\"2\",\"stemsplit.segment\":\"1\","
                        "\"identity.pad\":\"segment\"}" :
                        "{\"stemsplit.architecture\":\"identity\",\"stemsplit.sources\":\"a,b\","
                        "\"stemsplit.samplerate\":\"1000\",\"stemsplit.channels\":\"2\",\"stemsplit.segment\":\"1\"}",
                        1, names, shapes, ndims, data);
}

typedef struct stream {
    const float *x;      /* [2, n] planar input  */
    float *y;            /* [2 sources, 2, n]    */
    int64_t n, pos_in, pos_out;
    int64_t max_block;   /* largest pull served at once (tests odd pulls) */
} stream;

static ss_status pull(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err)
{
    (void)err;
    stream *s = arg;
    int64_t k = s->n - s->pos_in < n ? s->n - s->pos_in : n;
    if (k > s->max_block)
        k = s->max_block;
    for (int c = 0; c < 2; c++)
        for (int64_t i = 0; i < k; i++)
            buf[c * cap + i] = s->x[c * s->n + s->pos_in + i];
    s->pos_in += k;
    *got = k;
    return SS_OK;
}

static ss_status push(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err)
{
    stream *s = arg;
    if (s->pos_out + n > s->n)
        return ss_fail(err, SS_E_INTERNAL, "pushed past the end");
    for (int row = 0; row < 4; row++)
        for (int64_t i = 0; i < n; i++)
            s->y[row * s->n + s->pos_out + i] = stems[row * pitch + i];
    s->pos_out += n;
    return SS_OK;
}

/* A backend whose downloads land late, like CUDA's: the CPU backend, except
 * that ss_download_start copies the device data aside (its place in the
 * queue) and fills the destination with NaN, and only ss_download_wait
 * delivers it.  An engine that read a download before waiting for it, or let
 * a later one overwrite it, would see NaN or the wrong chunk. */
extern const ss_backend_iface ss_backend_cpu;
static ss_backend_iface late_iface;
static struct { float *dst, *copy; size_t bytes; } late_q[4];
static int late_n, late_waits;

static void *late_host_alloc(void *ctx, size_t bytes) { (void)ctx; return malloc(bytes); }
static void late_host_free(void *ctx, void *p) { (void)ctx; free(p); }

static ss_status late_download_start(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    (void)ctx;
    float *copy = malloc(bytes);
    if (late_n == 4 || !copy) {
        free(copy);
        return ss_fail(err, SS_E_INTERNAL, "late backend: more than 4 downloads in flight");
    }
    memcpy(copy, src, bytes);
    for (size_t i = 0; i < bytes / sizeof(float); i++)
        ((float *)dst)[i] = NAN;
    late_q[late_n].dst = dst;
    late_q[late_n].copy = copy;
    late_q[late_n++].bytes = bytes;
    return SS_OK;
}

static ss_status late_download_wait(void *ctx, ss_error *err)
{
    (void)ctx, (void)err;
    for (int i = 0; i < late_n; i++) {
        memcpy(late_q[i].dst, late_q[i].copy, late_q[i].bytes);
        free(late_q[i].copy);
    }
    late_n = 0;
    late_waits++;
    return SS_OK;
}

static int use_late;             /* run_case() on the late backend */

/* Separate a random signal of n frames; returns the max error vs gain * x, or -1. */
static double run_case(int64_t n, int shifts, int batch, int threads, float *y_out)
{
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_backend_params bp = {.threads = threads};
    late_iface = ss_backend_cpu;
    late_iface.host_alloc = late_host_alloc;
    late_iface.host_free = late_host_free;
    late_iface.download_start = late_download_start;
    late_iface.download_wait = late_download_wait;
    if ((use_late ? ss_backend_open_iface(&late_iface, 0, &bp, &be, &err)
                  : ss_backend_open("cpu", &bp, &be, NULL, 0, &err)) != SS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    ss_model *m = NULL;
    if (ss_model_load(model_now, be, &m, &err) != SS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        ss_backend_close(be);
        return -1;
    }
    float *x = malloc(sizeof(float) * 2 * (size_t)n), *y = calloc(4 * (size_t)n, sizeof(float));
    srand(7);
    for (int64_t i = 0; i < 2 * n; i++)
        x[i] = (float)((double)rand() / RAND_MAX - 0.5);
    stream s = {x, y, n, 0, 0, 333};
    ss_engine_params p = {.overlap = 0.25, .shifts = shifts, .seed = 42, .batch = batch};
    double maxerr = -1;
    if (ss_engine_run(m, be, &p, n, pull, &s, push, &s, &err) == SS_OK && s.pos_out == n) {
        maxerr = 0;
        for (int src = 0; src < 2; src++)
            for (int64_t i = 0; i < 2 * n; i++) {
                double e = fabs(y[src * 2 * n + i] - (src ? 0.5 : 1.0) * x[i]);
                if (e > maxerr)
                    maxerr = e;
            }
        if (y_out)
            memcpy(y_out, y, sizeof(float) * 4 * (size_t)n);
    } else {
        fprintf(stderr, "engine: %s (pushed %lld of %lld)\n", err.msg, (long long)s.pos_out, (long long)n);
    }
    free(x);
    free(y);
    ss_model_free(m);
    ss_backend_close(be);
    return maxerr;
}

/* Both without padding and with the model padding each chunk to a whole segment. */
#define RECONSTRUCTS(name, n, shifts)                                                   \
    static void name(void)                                                              \
    {                                                                                   \
        model_now = model_path;                                                         \
        double e = run_case(n, shifts, 1, 1, NULL);                                     \
        CHECK(e >= 0 && e <= 1e-6, "length %d shifts %d: max error %g", (int)(n), shifts, e); \
        model_now = padded_path;                                                        \
        e = run_case(n, shifts, 1, 1, NULL);                                            \
        CHECK(e >= 0 && e <= 1e-6, "padded model, length %d shifts %d: max error %g", (int)(n), shifts, e); \
    }

RECONSTRUCTS(test_identity_shorter_than_segment, 137, 0)
RECONSTRUCTS(test_identity_exactly_one_segment, SEG, 0)
RECONSTRUCTS(test_identity_one_sample_more_than_segment, SEG + 1, 0)
RECONSTRUCTS(test_identity_many_segments, 12345, 0)
RECONSTRUCTS(test_identity_one_sample, 1, 0)
RECONSTRUCTS(test_identity_shorter_than_segment_with_shifts, 137, 3)
RECONSTRUCTS(test_identity_one_segment_with_shifts, SEG, 2)
RECONSTRUCTS(test_identity_many_segments_with_shifts, 12345, 4)

static void test_batch_and_threads_do_not_change_results(void)
{
    int64_t n = 9876;
    model_now = padded_path;
    float *a = malloc(sizeof(float) * 4 * (size_t)n), *b = malloc(sizeof(float) * 4 * (size_t)n);
    CHECK(a && b, "oom");
    int ok = run_case(n, 2, 1, 1, a) >= 0;
    const int batches[] = {2, 3, 8}, threads[] = {2, 1, 2};
    for (int k = 0; ok && k < 3; k++) {
        ok = run_case(n, 2, batches[k], threads[k], b) >= 0;
        for (int64_t i = 0; ok && i < 4 * n; i++)
            if (a[i] != b[i]) {
                fprintf(stderr, "batch %d threads %d differs at %lld: %g vs %g\n", batches[k], threads[k],
                        (long long)i, a[i], b[i]);
                ok = 0;
            }
    }
    free(a);
    free(b);
    CHECK(ok, "outputs differ between --batch/-j settings");
}

/* Downloads that land only when waited for (as on CUDA, where the next
 * batch's forward pass is queued before the wait): the same bits as the CPU
 * backend, batch 1 and 3, with shifts; every download was waited for. */
static void test_late_downloads_give_the_same_results(void)
{
    int64_t n = 9876;
    model_now = padded_path;
    float *a = malloc(sizeof(float) * 4 * (size_t)n), *b = malloc(sizeof(float) * 4 * (size_t)n);
    CHECK(a && b, "oom");
    int ok = 1;
    const int batches[] = {1, 3}, shifts[] = {0, 2};
    for (int k = 0; ok && k < 2; k++) {
        use_late = 0;
        ok = run_case(n, shifts[k], batches[k], 1, a) >= 0;
        use_late = 1;
        late_waits = 0;
        ok = ok && run_case(n, shifts[k], batches[k], 1, b) >= 0 && late_waits > 1 && late_n == 0;
        use_late = 0;
        for (int64_t i = 0; ok && i < 4 * n; i++)
            if (!(a[i] == b[i])) {
                fprintf(stderr, "batch %d shifts %d differs at %lld: %g vs %g\n", batches[k], shifts[k],
                        (long long)i, a[i], b[i]);
                ok = 0;
            }
    }
    free(a);
    free(b);
    CHECK(ok, "late downloads change the output (or were not waited for: %d waits, %d in flight)", late_waits,
          late_n);
}

/* One model, several runs (as in a batch): the engine's buffers are the
 * model's and are reused (the same device pointers, so a recorded pass
 * replays), grown for a larger --batch, and every run reconstructs its input
 * (within 1e-6, as the other identity cases). */
static void test_runs_reuse_the_models_buffers(void)
{
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_backend_params bp = {.threads = 1};
    CHECK(ss_backend_open("cpu", &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    ss_model *m = NULL;
    if (ss_model_load(padded_path, be, &m, &err) != SS_OK) {
        ss_backend_close(be);
        CHECK(0, "%s", err.msg);
    }
    const int64_t lens[3] = {4321, 2500, 3333};
    const int batches[3] = {1, 1, 3};
    float *dev_x[3] = {0}, *host_y[3] = {0};
    size_t n_x[3] = {0};
    int ok = 1;
    for (int k = 0; ok && k < 3; k++) {
        int64_t n = lens[k];
        float *x = malloc(sizeof(float) * 2 * (size_t)n), *y = calloc(4 * (size_t)n, sizeof(float));
        ok = x && y;
        for (int64_t i = 0; ok && i < 2 * n; i++)
            x[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5);
        stream st = {x, y, n, 0, 0, 333};
        ss_engine_params p = {.overlap = 0.25, .batch = batches[k]};
        ok = ok && ss_engine_run(m, be, &p, n, pull, &st, push, &st, &err) == SS_OK && st.pos_out == n;
        for (int src = 0; ok && src < 2; src++)
            for (int64_t i = 0; ok && i < 2 * n; i++)
                ok = fabs(y[src * 2 * n + i] - (src ? 0.5 : 1.0) * x[i]) <= 1e-6;
        ss_model_io *io = NULL;
        ok = ok && ss_model_io_get(m, 1, 1, &io, &err) == SS_OK;
        if (ok) {
            dev_x[k] = io->dev_x;
            host_y[k] = io->host_y[0];
            n_x[k] = io->n_x;
        }
        free(x);
        free(y);
    }
    ss_model_free(m);
    ss_backend_close(be);
    CHECK(ok, "a run did not reconstruct its input: %s", err.msg);
    /* a chunk is SEG frames of 2 channels: the engine's own sizes, not the 1 asked here */
    CHECK(n_x[0] >= 2 * SEG && n_x[2] >= 3 * 2 * SEG, "buffers of %zu / %zu floats: not the engine's", n_x[0],
          n_x[2]);
    CHECK(dev_x[0] && dev_x[1] == dev_x[0] && host_y[1] == host_y[0], "second run: new buffers (%p %p)",
          (void *)dev_x[0], (void *)dev_x[1]);
}

/* Reference values printed by CPython: random.seed(S); [random.randint(0, 22050) for _ in range(4)] */
static void test_shift_offsets_match_python_random(void)
{
    const struct { uint64_t seed; int64_t want[4]; } cases[] = {
        {0, {12623, 13781, 1326, 8484}},
        {42, {20952, 3648, 819, 9012}},
        {1099511627781ull, {16527, 16938, 8801, 21751}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t got[4];
        ss_py_randint(cases[c].seed, 22050, 4, got);
        for (int i = 0; i < 4; i++)
            CHECK(got[i] == cases[c].want[i], "seed %llu draw %d: got %lld want %lld",
                  (unsigned long long)cases[c].seed, i, (long long)got[i], (long long)cases[c].want[i]);
    }
}

static void test_bad_overlap_is_a_usage_error(void)
{
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_backend_params bp = {.threads = 1};
    CHECK(ss_backend_open("cpu", &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    ss_model *m = NULL;
    ss_status s = ss_model_load(model_path, be, &m, &err);
    if (s == SS_OK) {
        ss_engine_params p = {.overlap = 1.0, .batch = 1};
        s = ss_engine_run(m, be, &p, 100, pull, NULL, push, NULL, &err);
    }
    ss_model_free(m);
    ss_backend_close(be);
    CHECK(s == SS_E_USAGE, "got status %d (%s)", s, err.msg);
}

int main(void)
{
    if (mkdtemp(dir)) {
        snprintf(model_path, sizeof model_path, "%s/identity.safetensors", dir);
        snprintf(padded_path, sizeof padded_path, "%s/identity-padded.safetensors", dir);
    }
    if (!model_path[0] || make_model(model_path, 0) != 0 || make_model(padded_path, 1) != 0) {
        printf("FAIL setup: cannot create the test model in %s\n", dir);
        return 1;
    }
    RUN(test_identity_shorter_than_segment);
    RUN(test_identity_exactly_one_segment);
    RUN(test_identity_one_sample_more_than_segment);
    RUN(test_identity_many_segments);
    RUN(test_identity_one_sample);
    RUN(test_identity_shorter_than_segment_with_shifts);
    RUN(test_identity_one_segment_with_shifts);
    RUN(test_identity_many_segments_with_shifts);
    RUN(test_batch_and_threads_do_not_change_results);
    RUN(test_late_downloads_give_the_same_results);
    RUN(test_runs_reuse_the_models_buffers);
    RUN(test_shift_offsets_match_python_random);
    RUN(test_bad_overlap_is_a_usage_error);
    unlink(model_path);
    unlink(padded_path);
    rmdir(dir);
    return test_summary();
}

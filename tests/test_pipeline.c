/* test_pipeline - the batch's three stages pipelined over many files
 * (ss_batch_params.pipeline, the CLI's way) write the same bytes as the same
 * stages run one after the other (the library's way for a single file). */
#include "batch.h"
#include "backend.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static char dir[] = "/tmp/ss-pipeline-XXXXXX";

/* track k: two seconds of sines whose level and pitch depend on k */
static int write_track(const char *path, int k)
{
    enum { N = 2 * 44100 };
    float *x = malloc(sizeof(float) * 2 * N);
    if (!x)
        return -1;
    for (int i = 0; i < N; i++) {
        float t = (float)i / 44100.0f;
        x[2 * i] = (0.2f + 0.3f * (float)k) * sinf(6.2831853f * (110.0f * (float)(k + 1)) * t);
        x[2 * i + 1] = 0.4f * sinf(6.2831853f * 3000.0f * t + (float)k) * (i > N / 2 ? 2.5f : 1.0f);
    }
    SF_INFO info = {.samplerate = 44100, .channels = 2, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    int ok = f && sf_writef_float(f, x, N) == N;
    if (f)
        sf_close(f);
    free(x);
    return ok ? 0 : -1;
}

static ss_status run_batch(ss_model *m, ss_backend *be, const char *in, const char *out, int pipeline,
                           ss_error *err)
{
    static volatile sig_atomic_t cancel;
    ss_sep_params sp = {.out_dir = out, .filename = "{track}/{stem}.{ext}", .format = SS_FILE_WAV,
                        .sample_format = SS_SAMPLE_S16, .clip = SS_CLIP_RESCALE, .two_stems = -1,
                        .engine = {.segment = 1, .overlap = 0.25, .batch = 1, .cancel = &cancel}};
    ss_batch_params bp = {.sep = &sp, .pipeline = pipeline, .quiet = 1, .prog = "test_pipeline", .cancel = &cancel};
    ss_batch_list l = {0};
    ss_batch_scan sc = {0};
    ss_report *rep = ss_report_new();
    ss_status s = rep ? ss_batch_add(&l, in, &sc, err) : ss_fail(err, SS_E_NOMEM, "out of memory");
    for (size_t i = 0; s == SS_OK && i < l.n; i++)
        if (!ss_report_add(rep, l.v[i].path))
            s = ss_fail(err, SS_E_NOMEM, "out of memory");
    ss_status first = SS_OK;
    if (s == SS_OK && mkdir(out, 0755) != 0)
        s = ss_fail(err, SS_E_CANTCREAT, "%s: cannot create", out);
    if (s == SS_OK)
        s = ss_batch_run(m, be, &bp, &l, rep, &first, err);
    if (s == SS_OK && first != SS_OK)
        s = ss_fail(err, first, "a file failed");
    if (s == SS_OK && l.n != 5)
        s = ss_fail(err, SS_E_INTERNAL, "%zu inputs listed, 5 expected", l.n);
    ss_report_free(rep);
    ss_batch_list_free(&l);
    return s;
}

/* 1 when the two files hold the same bytes */
static int same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = getc(fa), cb = getc(fb);
        same = ca == cb;
        if (ca == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

static void test_pipelined_and_serial_stages_write_the_same_bytes(void)
{
    const char *root = getenv("SS_ROOT");
    if (!root) {
        SKIP("SS_ROOT is set by make check");
        return;
    }
    char model[1024], in[600], path[700], a[1200], b[1200];
    snprintf(model, sizeof model, "%s/models/bandsplit/bandsplit4.safetensors", root);
    snprintf(in, sizeof in, "%s/in", dir);
    CHECK(mkdir(in, 0755) == 0, "mkdir %s", in);
    for (int k = 0; k < 5; k++) {
        snprintf(path, sizeof path, "%s/t%d.wav", in, k);
        CHECK(write_track(path, k) == 0, "write %s", path);
    }
    ss_error err = {0};
    ss_backend_params bpar = {.threads = 2};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    CHECK(ss_backend_open("cpu", &bpar, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    ss_status s = ss_model_load(model, be, &m, &err);
    char p1[700], p0[700];
    snprintf(p1, sizeof p1, "%s/piped", dir);
    snprintf(p0, sizeof p0, "%s/serial", dir);
    if (s == SS_OK)
        s = run_batch(m, be, in, p1, 1, &err);
    if (s == SS_OK)
        s = run_batch(m, be, in, p0, 0, &err);
    ss_model_free(m);
    ss_backend_close(be);
    CHECK(s == SS_OK, "%s", err.msg);
    static const char *const stems[] = {"low", "lowmid", "highmid", "high"};
    for (int k = 0; k < 5; k++)
        for (int j = 0; j < 4; j++) {
            snprintf(a, sizeof a, "%s/t%d/%s.wav", p1, k, stems[j]);
            snprintf(b, sizeof b, "%s/t%d/%s.wav", p0, k, stems[j]);
            CHECK(access(a, R_OK) == 0 && same_bytes(a, b), "%s and %s differ", a, b);
        }
}

int main(void)
{
    if (!mkdtemp(dir)) {
        printf("FAIL setup: mkdtemp\n");
        return 1;
    }
    RUN(test_pipelined_and_serial_stages_write_the_same_bytes);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_pipeline: could not remove %s\n", dir);
    return test_summary();
}

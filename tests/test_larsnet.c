/* test_larsnet.c - LarsNet (models/larsnet/larsnet.c) and the engine's
 * whole-track STFT blocks (SS_CHUNK_STFT_BLOCKS, src/engine.c).
 *
 * The fixture (tests/fixtures/larsnet/small, or $SS_LARSNET_FIXTURES/small,
 * made by scripts/make-larsnet-fixtures.py): five reduced-width U-Nets with
 * random weights and BatchNorm statistics, n_fft 128, hop 32, F 64, T 64, a
 * stereo mixture of 6999 samples (220 frames: four blocks, the last of 28
 * frames, and a length that is not a multiple of the hop), and the
 * reference's `stems` (LarsNet.separate) and `wiener` (separate_wiener,
 * alpha 2).  The five .pth files are converted with scripts/convert-larsnet.py
 * (SKIP without python3).
 *
 * 1. Engine parity: ss_engine_run on the backend under test (this file: the
 *    CPU; test_cuda_emu_larsnet.c: the emulated CUDA backend) over the whole
 *    mixture, --batch 1 and 3, with and without the Wiener option: relative
 *    L2 per stem <= 1e-4 against the whole-track reference.  Also the same
 *    weights on 100 samples (one block of 4 frames) and 6112 (three full
 *    blocks): mix_N.wav / ref_N.safetensors.
 * 2. CLI parity (CPU build only): the binary ($STEMSPLIT) with f32 WAV
 *    output, plain and --wiener 2, each stem <= 1e-4.
 * 3. The option and chunking refusals: an unknown option, a Wiener exponent
 *    out of range, --shifts -> SS_E_USAGE; a track shorter than n_fft/2 ->
 *    SS_E_DATA.
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
#include "fixture_io.h"
#include "test.h"

#define TOL 1e-4

#ifndef LN_DEVICE
#define LN_DEVICE "cpu"
#define LN_PREFIX "larsnet"
#endif

static char root[1024], tmpdir[1024], fixture[1200], model_path[1400];
static int have_model;
static const char *why_no_model = "";

/* tensor `name` [5, C, L] of ref<suffix>.safetensors as floats (malloc'd) or NULL */
static float *ref_tensor_of(const char *suffix, const char *name, int C, int64_t L)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/ref%s.safetensors", fixture, suffix);
    ss_st *st = NULL;
    ss_error err = {0};
    if (ss_st_open(path, &st, &err) != SS_OK)
        return NULL;
    const ss_st_tensor *t = ss_st_find(st, name);
    float *r = NULL;
    if (t && t->ndim == 3 && t->shape[0] == 5 && t->shape[1] == C && t->shape[2] == L &&
        (r = malloc((size_t)t->numel * sizeof *r)))
        ss_st_to_f32(t, r);
    ss_st_close(st);
    return r;
}

static float *ref_tensor(const char *name, int C, int64_t L) { return ref_tensor_of("", name, C, L); }

static void convert_fixture(void)
{
    char conv[1200], cmd[8192];
    snprintf(conv, sizeof conv, "%s/scripts/convert-larsnet.py", root);
    snprintf(model_path, sizeof model_path, "%s/larsnet_small.safetensors", tmpdir);
    if (system("python3 -c 'import sys' >/dev/null 2>&1") != 0 || access(conv, R_OK) != 0) {
        why_no_model = "python3 or scripts/convert-larsnet.py missing";
        return;
    }
    snprintf(cmd, sizeof cmd,
             "cd '%s' && python3 '%s' -o '%s' config.yaml kick.pth snare.pth toms.pth hihat.pth cymbals.pth "
             ">'%s/convert.log' 2>&1", fixture, conv, model_path, tmpdir);
    if (system(cmd) != 0) {
        why_no_model = "convert-larsnet.py failed";
        have_model = -1;
        return;
    }
    have_model = 1;
}

/* ---- 1. engine parity ------------------------------------------------------------ */

typedef struct stream {
    const float *x;           /* [C, L] planar */
    float *y;                 /* [S, C, L] */
    int C, S;
    int64_t L, pos, out;
} stream;

static ss_status pull(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err)
{
    (void)err;
    stream *s = arg;
    int64_t k = s->L - s->pos < n ? s->L - s->pos : n;
    for (int c = 0; c < s->C; c++)
        memcpy(buf + c * cap, s->x + c * s->L + s->pos, (size_t)k * sizeof *buf);
    s->pos += k;
    *got = k;
    return SS_OK;
}

static ss_status push(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err)
{
    stream *s = arg;
    if (s->out + n > s->L)
        return ss_fail(err, SS_E_INTERNAL, "pushed %lld frames past the end", (long long)(s->out + n - s->L));
    for (int r = 0; r < s->S * s->C; r++)
        memcpy(s->y + r * s->L + s->out, stems + r * pitch, (size_t)n * sizeof *stems);
    s->out += n;
    return SS_OK;
}

/* run the model over x [C, L] -> y [5, C, L] (malloc'd) or NULL with err */
static float *separate(const float *x, int C, int64_t L, int batch, double wiener, int shifts, ss_error *err)
{
    ss_backend *be = NULL;
    ss_model *m = NULL;
    float *y = NULL;
    ss_backend_params bp = {.threads = 2};
    if (ss_backend_open(LN_DEVICE, &bp, &be, NULL, 0, err) != SS_OK)
        return NULL;
    if (ss_model_load(model_path, be, &m, err) == SS_OK &&
        (wiener <= 0 || ss_model_option(m, "wiener", wiener, err) == SS_OK)) {
        y = malloc((size_t)5 * C * L * sizeof *y);
        stream s = {.x = x, .y = y, .C = C, .S = 5, .L = L};
        ss_engine_params p = {.batch = batch, .shifts = shifts};
        if (!y || ss_engine_run(m, be, &p, L, pull, &s, push, &s, err) != SS_OK || s.out != L) {
            if (y && err->code == SS_OK)
                ss_fail(err, SS_E_INTERNAL, "%lld of %lld frames pushed", (long long)s.out, (long long)L);
            free(y);
            y = NULL;
        }
    }
    ss_model_free(m);
    ss_backend_close(be);
    return y;
}

static void compare(const char *label, const float *y, const float *ref, int C, int64_t L)
{
    static const char *const stems[5] = {"kick", "snare", "toms", "hihat", "cymbals"};
    for (int s = 0; s < 5; s++) {
        double e = rel_l2(y + (size_t)s * C * L, ref + (size_t)s * C * L, (size_t)C * L);
        printf("%s %s_%s_%s: relative L2 %.3g (tolerance %g)\n", e <= TOL ? "PASS" : "FAIL", LN_PREFIX, label,
               stems[s], e, TOL);
        if (!(e <= TOL))
            test_n_fail++;
    }
    fflush(stdout);
}

static void test_engine_parity(void)
{
    if (have_model <= 0) {
        CHECK(have_model == 0, "%s (log in %s/convert.log)", why_no_model, tmpdir);
        SKIP("%s", why_no_model);
    }
    char mix_path[1400];
    snprintf(mix_path, sizeof mix_path, "%s/mix.wav", fixture);
    int C = 0;
    int64_t L = 0;
    float *x = read_planar(mix_path, &C, &L);
    CHECK(x && C == 2, "%s unreadable or not stereo", mix_path);
    float *plain = ref_tensor("stems", C, L), *wien = ref_tensor("wiener", C, L);
    CHECK(plain && wien, "ref.safetensors lacks stems/wiener [5, %d, %lld]", C, (long long)L);
    static const struct { int batch; double wiener; const char *label; } runs[] = {
#ifdef LN_LIGHT
        {3, 0, "engine_batch3"}, {2, 2.0, "engine_wiener_batch2"},
#else
        {1, 0, "engine_batch1"}, {3, 0, "engine_batch3"}, {1, 2.0, "engine_wiener_batch1"},
        {2, 2.0, "engine_wiener_batch2"},
#endif
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        ss_error err = {0};
        float *y = separate(x, C, L, runs[i].batch, runs[i].wiener, 0, &err);
        if (!y) {
            printf("FAIL %s_%s: %s\n", LN_PREFIX, runs[i].label, err.msg);
            test_n_fail++;
            continue;
        }
        compare(runs[i].label, y, runs[i].wiener > 0 ? wien : plain, C, L);
        free(y);
    }
    free(x), free(plain), free(wien);
}

/* The same weights on a 100-sample track (one block of 4 frames, mostly reflect
 * padding; plain and Wiener) and on 6112 samples (192 frames: three full
 * blocks, no short last one). */
static void test_engine_lengths(void)
{
    if (have_model <= 0)
        SKIP("%s", why_no_model);
    static const struct { const char *suffix; int wiener; } cases[] = {{"_100", 1}, {"_6112", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char mix_path[1400], label[64];
        snprintf(mix_path, sizeof mix_path, "%s/mix%s.wav", fixture, cases[i].suffix);
        int C = 0;
        int64_t L = 0;
        float *x = read_planar(mix_path, &C, &L);
        float *plain = x ? ref_tensor_of(cases[i].suffix, "stems", C, L) : NULL;
        float *wien = x && cases[i].wiener ? ref_tensor_of(cases[i].suffix, "wiener", C, L) : NULL;
        CHECK(x && plain && (wien || !cases[i].wiener), "%s or its reference unreadable", mix_path);
        for (int w = 0; w <= cases[i].wiener; w++)
            for (int batch = 1; batch <= 2; batch++) {
                ss_error err = {0};
                float *y = separate(x, C, L, batch, w ? 2.0 : 0.0, 0, &err);
                snprintf(label, sizeof label, "len%lld%s_batch%d", (long long)L, w ? "_wiener" : "", batch);
                if (!y) {
                    printf("FAIL %s_%s: %s\n", LN_PREFIX, label, err.msg);
                    test_n_fail++;
                    continue;
                }
                compare(label, y, w ? wien : plain, C, L);
                free(y);
            }
        free(x), free(plain), free(wien);
    }
}

/* ---- 3. refusals ------------------------------------------------------------------- */

static void test_refusals(void)
{
    if (have_model <= 0)
        SKIP("%s", why_no_model);
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.threads = 1};
    CHECK(ss_backend_open(LN_DEVICE, &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_load(model_path, be, &m, &err) == SS_OK, "%s", err.msg);
    CHECK(ss_model_chunking(m) == SS_CHUNK_STFT_BLOCKS, "larsnet must run on STFT blocks");
    CHECK(ss_model_option(m, "wiener", 0.0, &err) == SS_E_USAGE && strstr(err.msg, "wiener"),
          "--wiener 0 must be refused (got: %s)", err.msg);
    err = (ss_error){0};
    CHECK(ss_model_option(m, "gain", 1.0, &err) == SS_E_USAGE && strstr(err.msg, "gain"),
          "an unknown option must be refused naming it (got: %s)", err.msg);
    float x[2 * 60] = {0}, y[5 * 2 * 60];
    stream s = {.x = x, .y = y, .C = 2, .S = 5, .L = 60};
    ss_engine_params p = {.batch = 1, .shifts = 2};
    err = (ss_error){0};
    CHECK(ss_engine_run(m, be, &p, 60, pull, &s, push, &s, &err) == SS_E_USAGE && strstr(err.msg, "shifts"),
          "--shifts must be refused (got: %s)", err.msg);
    p.shifts = 0;
    s.L = 40;                                   /* n_fft 128: needs more than 64 samples after padding to 32 */
    err = (ss_error){0};
    CHECK(ss_engine_run(m, be, &p, 40, pull, &s, push, &s, &err) == SS_E_DATA && strstr(err.msg, "40 samples"),
          "a track shorter than the STFT's padding must be refused (got: %s)", err.msg);
    ss_model_free(m);
    ss_backend_close(be);
}

#ifndef LN_NO_CLI
/* ---- 2. CLI parity ------------------------------------------------------------------ */

static void test_cli_parity(void)
{
    if (have_model <= 0)
        SKIP("%s", why_no_model);
    char exe[1200];
    const char *env = getenv("STEMSPLIT");
    snprintf(exe, sizeof exe, "%s", env && *env ? env : "");
    if (!*exe)
        snprintf(exe, sizeof exe, "%s/stemsplit", root);
    if (access(exe, X_OK) != 0)
        SKIP("%s is not an executable (set STEMSPLIT)", exe);
    char mix_path[1400];
    snprintf(mix_path, sizeof mix_path, "%s/mix.wav", fixture);
    int C = 0;
    int64_t L = 0;
    float *x = read_planar(mix_path, &C, &L);
    float *plain = ref_tensor("stems", C, L), *wien = ref_tensor("wiener", C, L);
    CHECK(x && plain && wien, "fixture unreadable");
    static const char *const stems[5] = {"kick", "snare", "toms", "hihat", "cymbals"};
    for (int w = 0; w < 2; w++) {
        char out[1400], cmd[8192];
        snprintf(out, sizeof out, "%s/cli%d", tmpdir, w);
        snprintf(cmd, sizeof cmd,
                 "'%s' -q -m '%s' -d cpu -j 2 %s --sample-format f32 --clip none -o '%s' --filename '{stem}.{ext}' "
                 "'%s' >'%s/cli.log' 2>&1", exe, model_path, w ? "--wiener 2" : "", out, mix_path, tmpdir);
        int rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "stemsplit failed (%d), log in %s/cli.log", rc, tmpdir);
        float *y = malloc((size_t)5 * C * L * sizeof *y);
        CHECK(y, "oom");
        for (int s = 0; s < 5; s++) {
            char p[1600];
            snprintf(p, sizeof p, "%s/%s.wav", out, stems[s]);
            int c = 0;
            int64_t l = 0;
            float *t = read_planar(p, &c, &l);
            CHECK(t && c == C && l == L, "%s missing or not %d x %lld", p, C, (long long)L);
            memcpy(y + (size_t)s * C * L, t, (size_t)C * L * sizeof *y);
            free(t);
            unlink(p);
        }
        rmdir(out);
        compare(w ? "cli_wiener" : "cli", y, w ? wien : plain, C, L);
        free(y);
    }
    free(x), free(plain), free(wien);
}
#endif

int main(void)
{
    const char *r = getenv("SS_ROOT");
    if (r && *r)
        snprintf(root, sizeof root, "%s", r);
    else if (!getcwd(root, sizeof root))
        snprintf(root, sizeof root, ".");
    const char *fx = getenv("SS_LARSNET_FIXTURES");
    snprintf(fixture, sizeof fixture, "%s/small", fx && *fx ? fx : "");
    if (!(fx && *fx))
        snprintf(fixture, sizeof fixture, "%s/tests/fixtures/larsnet/small", root);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ss-larsnet.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL test_larsnet: cannot create %s\n", tmpdir);
        return 1;
    }
    convert_fixture();
    RUN(test_engine_parity);
    RUN(test_engine_lengths);
#ifndef LN_NO_CLI
    RUN(test_cli_parity);
#endif
    RUN(test_refusals);
    char p[1500];
    snprintf(p, sizeof p, "%s/convert.log", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/cli.log", tmpdir);
    unlink(p);
    unlink(model_path);
    rmdir(tmpdir);
    return test_summary();
}

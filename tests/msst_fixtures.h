/* msst_fixtures.h - the fixture harness the tests of the MSST architectures share
 * (tests/test_roformer.c, tests/test_mdx23c.c and their CUDA-emulator builds): the
 * case folders under tests/fixtures/<arch>/ with ref.safetensors made by the PyTorch
 * reference, the model converted by scripts/convert-msst.py where a case has only
 * the checkpoint, the forward-pass parity (section 1 of each test), the CLI parity
 * (section 1b, left out where RF_NO_CLI is defined), for section 2 the generator
 * of small models (the includer's gen_model fills it), the refusal check, the
 * batch and graph-replay checks, and main()'s set-up and tear-down.
 * The includer defines RF_DEVICE (the backend) and RF_PREFIX (the test names'
 * prefix) first and sets root, tmpdir and fixtures (defined here) in main(); one
 * translation unit includes it. */
#ifndef SS_TESTS_MSST_FIXTURES_H
#define SS_TESTS_MSST_FIXTURES_H

#if !defined(RF_DEVICE) || !defined(RF_PREFIX)
#error "define RF_DEVICE and RF_PREFIX before including msst_fixtures.h"
#endif

#include "fixture_io.h"

#define TOL 1e-4
#define MAX_CASES 64

static char root[1024], tmpdir[1024], fixtures[1100];

static void report(int ok, const char *name, const char *detail)
{
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, detail);
    if (!ok)
        test_n_fail++;
    fflush(stdout);
}

static int is_file(const char *path) { return access(path, R_OK) == 0; }

/* Run x [B, C, L] through the model file on the CPU: y [B, S, C, L] (malloc'd) or NULL with err. */
static float *run_model(const char *path, const float *x, int B, int64_t L, int *S_out, int *C_out, ss_error *err)
{
    ss_backend *be = NULL;
    ss_model *m = NULL;
    float *y = NULL, *dx = NULL, *dy = NULL;
    ss_backend_params bp = {.threads = 2};
    if (ss_backend_open(RF_DEVICE, &bp, &be, NULL, 0, err) != SS_OK)
        return NULL;
    if (ss_model_load(path, be, &m, err) == SS_OK) {
        const ss_model_info *info = ss_model_get_info(m);
        int S = ss_model_net_sources(info), C = info->channels;
        size_t nx = (size_t)B * C * L, ny = nx * S;
        dx = ss_alloc(be, nx);
        dy = ss_alloc(be, ny);
        y = malloc(ny * sizeof *y);
        if (dx && dy && y) {
            ss_upload(be, dx, x, nx);
            ss_fill(be, dy, NAN, ny);
            if (ss_model_forward(m, dx, dy, B, L, err) == SS_OK && ss_download(be, y, dy, ny) == SS_OK) {
                *S_out = S;
                *C_out = C;
            } else {
                free(y);
                y = NULL;
                if (err->code == SS_OK)
                    ss_backend_status(be, err);
            }
        } else {
            free(y);
            y = NULL;
            ss_fail(err, SS_E_NOMEM, "out of memory");
        }
    }
    if (dx)
        ss_free(be, dx);
    if (dy)
        ss_free(be, dy);
    ss_model_free(m);
    ss_backend_close(be);
    return y;
}

/* ---- 1. parity with the PyTorch reference ------------------------------------------ */

static int convert_case(const char *dir, const char *out, char *why, size_t wsize)
{
    char conv[1200], cmd[8192];
    snprintf(conv, sizeof conv, "%s/scripts/convert-msst.py", root);
    if (system("python3 -c 'import sys' >/dev/null 2>&1") != 0 || !is_file(conv)) {
        snprintf(why, wsize, "python3 or %s missing", conv);
        return 1;
    }
    snprintf(cmd, sizeof cmd, "python3 '%s' -o '%s' '%s/config.yaml' '%s/model.ckpt' >'%s/convert.log' 2>&1", conv, out,
             dir, dir, tmpdir);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(why, wsize, "convert-msst.py failed (status %d), log in %s/convert.log", rc, tmpdir);
        return -1;
    }
    return 0;
}

static void parity_case(const char *name)
{
    char dir[1400], ref_path[1600], model_path[1600], why[2000], label[300];
    snprintf(dir, sizeof dir, "%s/%.200s", fixtures, name);
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", dir);
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", dir);
    snprintf(label, sizeof label, RF_PREFIX "_forward_%.200s", name);
    int converted = 0;
    if (!is_file(model_path)) {
        snprintf(model_path, sizeof model_path, "%s/%.200s.safetensors", tmpdir, name);
        int rc = convert_case(dir, model_path, why, sizeof why);
        if (rc > 0) {
            printf("SKIP %s: %s\n", label, why);
            return;
        }
        if (rc < 0) {
            report(0, label, why);
            return;
        }
        converted = 1;
    }
    ss_error err = {0};
    ss_st *ref = NULL;
    if (ss_st_open(ref_path, &ref, &err) != SS_OK) {
        report(0, label, err.msg);
        return;
    }
    const ss_st_tensor *fi = ss_st_find(ref, "forward_in"), *fo = ss_st_find(ref, "forward_out");
    if (!fi || !fo || fi->ndim != 3 || fo->ndim != 4 || fi->shape[0] != 1 || fo->shape[0] != 1 ||
        fo->shape[3] != fi->shape[2] || fo->shape[2] != fi->shape[1]) {
        report(0, label, "ref.safetensors: forward_in / forward_out missing or of unexpected shapes");
        ss_st_close(ref);
        return;
    }
    float *x = tensor_f32(fi), *yref = tensor_f32(fo), *y = NULL;
    int S = 0, C = 0;
    int64_t L = fi->shape[2];
    if (!x || !yref)
        report(0, label, "out of memory");
    else if (!(y = run_model(model_path, x, 1, L, &S, &C, &err)))
        report(0, label, err.msg);
    else if (S != fo->shape[1] || C != fo->shape[2])
        report(0, label, "the model's stems / channels differ from forward_out's shape");
    else
        for (int s = 0; s < S; s++) {
            size_t n = (size_t)C * (size_t)L;
            double e = rel_l2(y + s * n, yref + s * n, n);
            char line[200], sl[320];
            snprintf(sl, sizeof sl, "%s_stem%d", label, s);
            snprintf(line, sizeof line, "relative L2 %.3g (tolerance %g)", e, TOL);
            report(e <= TOL, sl, line);
        }
    free(x);
    free(yref);
    free(y);
    ss_st_close(ref);
    if (converted)
        unlink(model_path);
}

static int cmp_names(const void *a, const void *b) { return strcmp(a, b); }

static void test_parity(void)
{
    static char cases[MAX_CASES][256];
    int n = 0;
    DIR *d = opendir(fixtures);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && n < MAX_CASES) {
            char p[1600];
            if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof cases[0])
                continue;
            snprintf(p, sizeof p, "%s/%s/ref.safetensors", fixtures, e->d_name);
#ifdef RF_CASE_FILTER
            if (!strstr(e->d_name, RF_CASE_FILTER))     /* a subset: the full set runs in the other build */
                continue;
#endif
            if (is_file(p))
                snprintf(cases[n++], sizeof cases[0], "%s", e->d_name);
        }
        closedir(d);
    }
    if (n == 0)
        SKIP("no fixture cases under %s", fixtures);
    qsort(cases, (size_t)n, sizeof cases[0], cmp_names);
    for (int i = 0; i < n; i++)
        parity_case(cases[i]);
}

#ifndef RF_NO_CLI
/* ---- 1b. CLI parity: chunking, normalisation and residual through the binary --------------- */

static int run_cli(const char *exe, const char *model, const char *mix, const char *out, int batch, int threads)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' -q -m '%s' -d cpu -j %d --batch %d --sample-format f32 --clip none -o '%s' "
             "--filename '{stem}.{ext}' '%s' >'%s/cli.log' 2>&1", exe, model, threads, batch, out, mix, tmpdir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void cli_case(const char *exe, const char *name)
{
    char dir[1400], ref_path[1600], mix_path[1600], model_path[1600], out1[1600], out3[1600], why[2000], label[300];
    snprintf(dir, sizeof dir, "%s/%.200s", fixtures, name);
    snprintf(ref_path, sizeof ref_path, "%s/ref.safetensors", dir);
    snprintf(mix_path, sizeof mix_path, "%s/mix.wav", dir);
    snprintf(model_path, sizeof model_path, "%s/cli_%.200s.safetensors", tmpdir, name);
    snprintf(out1, sizeof out1, "%s/out1_%.200s", tmpdir, name);
    snprintf(out3, sizeof out3, "%s/out3_%.200s", tmpdir, name);
    snprintf(label, sizeof label, RF_PREFIX "_cli_%.200s", name);
    int rc = convert_case(dir, model_path, why, sizeof why);
    if (rc != 0) {
        if (rc > 0)
            printf("SKIP %s: %s\n", label, why);
        else
            report(0, label, why);
        return;
    }
    if ((rc = run_cli(exe, model_path, mix_path, out1, 1, 2)) != 0 ||
        (rc = run_cli(exe, model_path, mix_path, out3, 3, 1)) != 0) {
        snprintf(why, sizeof why, "stemsplit failed (exit %d), log in %s/cli.log", rc, tmpdir);
        report(0, label, why);
        unlink(model_path);
        return;
    }
    ss_error err = {0};
    ss_st *ref = NULL, *mod = NULL;
    if (ss_st_open(ref_path, &ref, &err) != SS_OK || ss_st_open(model_path, &mod, &err) != SS_OK) {
        report(0, label, err.msg);
        ss_st_close(ref);
        unlink(model_path);
        return;
    }
    const ss_st_tensor *st = ss_st_find(ref, "stems");
    const char *srcs = ss_st_meta(ref, "sources"), *residual = ss_st_meta(mod, "stemsplit.residual");
    float *stems = st && st->ndim == 3 ? tensor_f32(st) : NULL;
    int MC = 0;
    int64_t ML = 0;
    float *mix = read_planar(mix_path, &MC, &ML);
    if (!stems || !srcs || !mix) {
        report(0, label, "ref.safetensors lacks `stems` [S, C, L] or `sources`, or mix.wav is unreadable");
    } else {
        int S = (int)st->shape[0], C = (int)st->shape[1];
        int64_t L = st->shape[2];
        const char *p = srcs;
        for (int s = 0; s <= S; s++) {
            char stem[SS_MAX_NAME] = "", path1[1800], path3[1800], line[4000], sl[400];
            const float *want = NULL;
            float *res = NULL;
            if (s < S) {
                size_t len = strcspn(p, ",");
                snprintf(stem, sizeof stem, "%.*s", (int)(len < SS_MAX_NAME ? len : SS_MAX_NAME - 1), p);
                p += len + (p[len] == ',');
                want = stems + (size_t)s * C * L;
            } else {
                if (!residual)
                    break;
                /* the residual: mixture minus the reference's single target, as MSST's inference.py */
                snprintf(stem, sizeof stem, "%s", residual);
                res = malloc((size_t)C * L * sizeof *res);
                if (!res || S != 1 || MC != C || ML != L) {
                    report(0, label, "a residual needs one target stem and a mixture of the stems' shape");
                    free(res);
                    break;
                }
                for (size_t i = 0; i < (size_t)C * L; i++)
                    res[i] = mix[i] - stems[i];
                want = res;
            }
            snprintf(sl, sizeof sl, "%s_%s", label, stem);
            snprintf(path1, sizeof path1, "%s/%s.wav", out1, stem);
            snprintf(path3, sizeof path3, "%s/%s.wav", out3, stem);
            int c1 = 0, c3 = 0;
            int64_t l1 = 0, l3 = 0;
            float *y1 = read_planar(path1, &c1, &l1), *y3 = read_planar(path3, &c3, &l3);
            if (!y1 || !y3 || c1 != C || l1 != L || c3 != C || l3 != L) {
                snprintf(line, sizeof line, "%s or %s missing or not %d x %lld", path1, path3, C, (long long)L);
                report(0, sl, line);
            } else {
                double e = rel_l2(y1, want, (size_t)C * L);
                snprintf(line, sizeof line, "relative L2 %.3g (tolerance %g)", e, TOL);
                report(e <= TOL, sl, line);
                snprintf(sl, sizeof sl, "%s_%s_batch3", label, stem);
                report(memcmp(y1, y3, (size_t)C * L * sizeof *y1) == 0, sl, "--batch 3 -j 1 gives --batch 1 -j 2's bits");
            }
            free(y1), free(y3), free(res);
            unlink(path1), unlink(path3);
        }
    }
    free(stems);
    free(mix);
    ss_st_close(ref);
    ss_st_close(mod);
    rmdir(out1), rmdir(out3);
    unlink(model_path);
}

static void test_cli_parity(void)
{
    char exe[1200];
    const char *env = getenv("STEMSPLIT");
    snprintf(exe, sizeof exe, "%s", env && *env ? env : "");
    if (!*exe)
        snprintf(exe, sizeof exe, "%s/stemsplit", root);
    if (access(exe, X_OK) != 0)
        SKIP("%s is not an executable (set STEMSPLIT)", exe);
    static char cases[MAX_CASES][256];
    int n = 0;
    DIR *d = opendir(fixtures);
    CHECK(d, "no fixture folder %s", fixtures);
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_CASES) {
        char p[1700];
        snprintf(p, sizeof p, "%s/%.200s/mix.wav", fixtures, e->d_name);
        if (e->d_name[0] != '.' && is_file(p))
            snprintf(cases[n++], sizeof cases[0], "%s", e->d_name);
    }
    closedir(d);
    CHECK(n > 0, "no fixture cases with mix.wav under %s", fixtures);
    qsort(cases, (size_t)n, sizeof cases[0], cmp_names);
    for (int i = 0; i < n; i++)
        cli_case(exe, cases[i]);
}
#endif

/* ---- 2. small models written here: the generator and the checks both tests make ------- */

/* A model's tensors as the test makes them (the includer's gen_model) */
#define MAXT 512
typedef struct gen {
    int n;
    char *names[MAXT];
    int64_t shapes[MAXT][ST_WRITE_MAX_DIMS];
    int ndims[MAXT];
    float *data[MAXT];
    unsigned rng;
} gen;

/* the generator's deterministic pseudo-random numbers, in [-0.5, 0.5) */
static float frand(gen *g)
{
    g->rng = g->rng * 1664525u + 1013904223u;
    return (float)((g->rng >> 8) & 0xffff) / 65536.0f - 0.5f;
}


/* tensor `name` [d0, d1, d2, d3] (trailing zeros: fewer dims) = base + spread * frand */
static void add4(gen *g, const char *name, int64_t d0, int64_t d1, int64_t d2, int64_t d3, float base, float spread)
{
    int i = g->n++;
    int64_t d[4] = {d0, d1, d2, d3};
    g->names[i] = strdup(name);
    g->ndims[i] = d3 ? 4 : d2 ? 3 : d1 ? 2 : 1;
    size_t n = 1;
    for (int k = 0; k < g->ndims[i]; k++) {
        g->shapes[i][k] = d[k];
        n *= (size_t)d[k];
    }
    g->data[i] = malloc(n * sizeof(float));
    for (size_t j = 0; j < n; j++)
        g->data[i][j] = base + spread * frand(g);
}


static void gen_free(gen *g)
{
    for (int i = 0; i < g->n; i++) {
        free(g->names[i]);
        free(g->data[i]);
    }
    g->n = 0;
}


/* Write the model (without tensor `drop`) to path; 0 ok */
static int gen_write(gen *g, const char *path, const char *meta, const char *drop)
{
    static const char *names[MAXT];
    static const float *data[MAXT];
    static int64_t shapes[MAXT][ST_WRITE_MAX_DIMS];
    int ndims[MAXT], n = 0;
    for (int i = 0; i < g->n; i++) {
        if (drop && strcmp(drop, g->names[i]) == 0)
            continue;
        names[n] = g->names[i];
        data[n] = g->data[i];
        memcpy(shapes[n], g->shapes[i], sizeof shapes[n]);
        ndims[n] = g->ndims[i];
        n++;
    }
    return st_write_f32(path, meta, n, names, (const int64_t(*)[ST_WRITE_MAX_DIMS])shapes, ndims, data);
}


/* load path; expect SS_E_DATA with `needle` in the message */
static int expect_refusal(const char *path, const char *needle, char *why, size_t wsize)
{
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_error err = {0};
    ss_backend_params bp = {.threads = 1};
    if (ss_backend_open("cpu", &bp, &be, NULL, 0, &err) != SS_OK) {
        snprintf(why, wsize, "%s", err.msg);
        return 0;
    }
    ss_status s = ss_model_load(path, be, &m, &err);
    ss_model_free(m);
    ss_backend_close(be);
    if (s != SS_E_DATA || !strstr(err.msg, needle) || !strstr(err.msg, path)) {
        snprintf(why, wsize, "status %d, message '%s' (expected SS_E_DATA naming the file and '%s')", (int)s, err.msg,
                 needle);
        return 0;
    }
    return 1;
}


/* The model at path (2 stems, stereo) run on x [2, 2, L]: batch 2 gives each item
 * what batch 1 gives it, finite and not silent.  Removes path. */
static void check_batch_items(const char *path, const float *x, int64_t L)
{
    ss_error err = {0};
    int S = 0, C = 0;
    float *y2 = run_model(path, x, 2, L, &S, &C, &err), *y1a = NULL, *y1b = NULL;
    if (y2) {
        y1a = run_model(path, x, 1, L, &S, &C, &err);
        y1b = y1a ? run_model(path, x + 2 * L, 1, L, &S, &C, &err) : NULL;
    }
    unlink(path);
    int ok = y2 && y1a && y1b;
    size_t n1 = (size_t)S * C * L;
    double e0 = ok ? rel_l2(y2, y1a, n1) : 0, e1 = ok ? rel_l2(y2 + n1, y1b, n1) : 0, energy = 0;
    int finite = 1;
    for (size_t i = 0; ok && i < 2 * n1; i++) {
        finite &= isfinite(y2[i]) != 0;
        energy += (double)y2[i] * y2[i];
    }
    free(y2);
    free(y1a);
    free(y1b);
    CHECK(ok, "forward failed: %s", err.msg);
    CHECK(S == 2 && C == 2, "stems %d channels %d", S, C);
    CHECK(finite && energy > 1e-6, "output not finite or silent (energy %g)", energy);
    CHECK(e0 < 1e-6 && e1 < 1e-6, "batch 2 differs from batch 1: %g %g", e0, e1);
}

/* Four passes of the model at path on x [B, C, L] with the same arguments give
 * the same bits.  On a backend that records (the CUDA emulator: RF_GRAPH_STATS)
 * the first two run directly (the first makes the workspace), the third is
 * recorded and launched, the fourth replays the recording.  Removes path. */
static void check_graph_replay(const char *path, const float *x, int B, int C, int64_t L)
{
    enum { PASSES = 4 };
#ifdef RF_GRAPH_STATS
    ss_cuda_emu_stats a, b;
    ss_cuda_emu_get_stats(&a);
#endif
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.threads = 2};
    float *y[PASSES] = {0}, *dx = NULL, *dy = NULL;
    size_t ny = 0;
    int ok = ss_backend_open(RF_DEVICE, &bp, &be, NULL, 0, &err) == SS_OK && ss_model_load(path, be, &m, &err) == SS_OK;
    if (ok) {
        ny = (size_t)B * ss_model_net_sources(ss_model_get_info(m)) * C * L;
        dx = ss_alloc(be, (size_t)B * C * L);
        dy = ss_alloc(be, ny);
        ok = dx && dy;
        if (ok)
            ss_upload(be, dx, x, (size_t)B * C * L);
    }
    for (int p = 0; ok && p < PASSES; p++) {
        ok = (y[p] = malloc(ny * sizeof *y[p])) != NULL;
        if (ok) {
            ss_fill(be, dy, NAN, ny);
            ok = ss_model_forward(m, dx, dy, B, L, &err) == SS_OK && ss_download(be, y[p], dy, ny) == SS_OK;
        }
    }
    int same = ok;
    for (int p = 1; ok && p < PASSES; p++)
        same &= memcmp(y[p], y[0], ny * sizeof *y[0]) == 0;
    int finite = ok;
    for (size_t i = 0; ok && i < ny; i++)
        finite &= isfinite(y[0][i]) != 0;
    for (int p = 0; p < PASSES; p++)
        free(y[p]);
    if (dx)
        ss_free(be, dx);
    if (dy)
        ss_free(be, dy);
    ss_model_free(m);
    ss_backend_close(be);
    unlink(path);
    CHECK(ok, "forward failed: %s", err.msg);
    CHECK(finite, "output not finite");
    CHECK(same, "the passes with the same arguments differ");
#ifdef RF_GRAPH_STATS
    ss_cuda_emu_get_stats(&b);
    CHECK(b.captures_refused == a.captures_refused, "%lld waiting calls while recording",
          b.captures_refused - a.captures_refused);
    CHECK(b.graphs_recorded - a.graphs_recorded == 1 && b.graph_launches - a.graph_launches == 2,
          "passes 3 and 4 were not a recording and a replay (%lld recorded, %lld launched)",
          b.graphs_recorded - a.graphs_recorded, b.graph_launches - a.graph_launches);
#endif
}

/* main()'s set-up: root ($SS_ROOT or the working directory), the fixtures
 * ($ENV or ROOT/tests/fixtures/SUB) and a fresh temporary folder; 0, or 1
 * after a FAIL line naming `test` when the folder cannot be made. */
static int fixtures_init(const char *env, const char *sub, const char *test)
{
    const char *r = getenv("SS_ROOT");
    if (r && *r)
        snprintf(root, sizeof root, "%s", r);
    else if (!getcwd(root, sizeof root))
        snprintf(root, sizeof root, ".");
    const char *fx = getenv(env);
    if (fx && *fx)
        snprintf(fixtures, sizeof fixtures, "%s", fx);
    else
        snprintf(fixtures, sizeof fixtures, "%s/tests/fixtures/%s", root, sub);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ss-%s.XXXXXX", t && *t ? t : "/tmp", sub);
    if (!mkdtemp(tmpdir)) {
        printf("FAIL %s: cannot create %s\n", test, tmpdir);
        return 1;
    }
    return 0;
}

/* main()'s tear-down: the logs the conversion and the CLI runs left, and the folder */
static void fixtures_done(void)
{
    fixture_dir_remove(tmpdir);
}

#endif

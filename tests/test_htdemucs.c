/* test_htdemucs.c - HTDemucs against the PyTorch reference fixtures in
 * tests/fixtures/htdemucs/ (scripts/make-reference.py; see its README.md).
 *
 *  1. forward level: for every case whose ref.safetensors holds forward_in /
 *     forward_out, convert the checkpoint, ss_model_load + ss_model_forward on
 *     forward_in, relative L2 per source <= 1e-4;
 *  2. CLI parity: for every case, convert, run $STEMSPLIT on mix.wav with f32
 *     output and compare each stem with `stems` [S, C, L]: relative L2 <= 1e-4.
 *
 * The converter is scripts/convert-demucs.py (python3; SKIP without it).  The
 * repository root is $SS_ROOT (set by tests/run.sh) or the current directory.
 */
#include <sndfile.h>

#include "htdemucs_fixtures.h"
#include "st_write.h"

static void test_forward(void)
{
    if (!have_python())
        SKIP("python3 not found (needed by scripts/convert-demucs.py)");
    CHECK(n_cases > 0, "no fixture cases under %s/tests/fixtures/htdemucs", root);
    for (int i = 0; i < n_cases; i++)
        fixture_forward_case(cases[i], "cpu", "forward", 0);
}

/* ---- 2. CLI parity ------------------------------------------------------------------ */

static void cli_case(const char *exe, const char *name)
{
    char dir[1400], model_path[1400], out_dir[1400], why[1024], label[300], cmd[8192] = "";
    fmt(dir, sizeof dir, "%s/tests/fixtures/htdemucs/%s", root, name);
    fmt(model_path, sizeof model_path, "%s/%s.safetensors", tmpdir, name);
    fmt(out_dir, sizeof out_dir, "%s/out_%s", tmpdir, name);
    fmt(label, sizeof label, "cli_%s", name);
    if (convert_case(name, model_path, why, sizeof why) != 0) {
        report(0, label, why);
        return;
    }
    char ref_path[1500], mix_path[1500];
    fmt(ref_path, sizeof ref_path, "%s/ref.safetensors", dir);
    fmt(mix_path, sizeof mix_path, "%s/mix.wav", dir);
    /* --clip none: the reference is the raw model output, not rescaled */
    const char *args[] = {exe, "-q", "-m", model_path, "-d", "cpu", "--sample-format", "f32", "--clip", "none",
                          "-o", out_dir, "--filename", "{stem}.{ext}", mix_path};
    int bad = 0;
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
        bad |= append_quoted(cmd, sizeof cmd, args[i]);
    fmt(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " >%s/cli.log 2>&1", tmpdir);
    int rc = bad ? -1 : system(cmd);
    if (rc != 0) {
        char log[600], lp[1100];
        fmt(lp, sizeof lp, "%s/cli.log", tmpdir);
        read_log(lp, log, sizeof log);
        fmt(why, sizeof why, "stemsplit failed (exit %d): %s", exit_code(rc), log);
        report(0, label, why);
        unlink(model_path);
        return;
    }
    ss_error err = {0};
    ss_st *ref = NULL;
    if (ss_st_open(ref_path, &ref, &err) != SS_OK) {
        report(0, label, err.msg);
        unlink(model_path);
        return;
    }
    const ss_st_tensor *st = ss_st_find(ref, "stems");
    const char *srcs = ss_st_meta(ref, "sources");
    float *stems = st ? tensor_f32(st) : NULL;
    if (!st || st->ndim != 3 || !srcs || !stems) {
        report(0, label, "ref.safetensors lacks `stems` [S, C, L] or its `sources` metadata");
    } else {
        int S = (int)st->shape[0], C = (int)st->shape[1];
        int64_t L = st->shape[2];
        const char *p = srcs;
        for (int s = 0; s < S; s++) {
            char stem[SS_MAX_NAME] = "", wav[1700], line[400];
            size_t len = strcspn(p, ",");
            fmt(stem, sizeof stem, "%.*s", (int)(len < SS_MAX_NAME ? len : SS_MAX_NAME - 1), p);
            p += len + (p[len] == ',');
            fmt(label, sizeof label, "cli_%s_%s", name, stem);
            fmt(wav, sizeof wav, "%s/%s.wav", out_dir, stem);
            SF_INFO si = {0};
            SNDFILE *sf = sf_open(wav, SFM_READ, &si);
            if (!sf) {
                fmt(line, sizeof line, "cannot read %s: %s", wav, sf_strerror(NULL));
                report(0, label, line);
                continue;
            }
            if (si.channels != C || si.frames != L) {
                fmt(line, sizeof line, "%s has %d channels x %lld frames, expected %d x %lld", wav,
                         si.channels, (long long)si.frames, C, (long long)L);
                report(0, label, line);
                sf_close(sf);
                continue;
            }
            float *inter = malloc((size_t)C * L * sizeof *inter), *planar = malloc((size_t)C * L * sizeof *planar);
            if (!inter || !planar || sf_readf_float(sf, inter, L) != L) {
                report(0, label, "cannot read the samples");
            } else {
                for (int c = 0; c < C; c++)
                    for (int64_t i = 0; i < L; i++)
                        planar[(size_t)c * L + i] = inter[(size_t)i * C + c];
                double e = rel_l2(planar, stems + (size_t)s * C * L, (size_t)C * L);
                fmt(line, sizeof line, "relative L2 %.3g (tolerance %g)", e, TOL);
                report(e <= TOL, label, line);
            }
            free(inter);
            free(planar);
            sf_close(sf);
            unlink(wav);
        }
    }
    free(stems);
    ss_st_close(ref);
    rmdir(out_dir);
    unlink(model_path);
}

static void test_cli_parity(void)
{
    if (!have_python())
        SKIP("python3 not found (needed by scripts/convert-demucs.py)");
    CHECK(n_cases > 0, "no fixture cases under %s/tests/fixtures/htdemucs", root);
    char exe[1200];
    const char *env = getenv("STEMSPLIT");
    fmt(exe, sizeof exe, "%s", env && *env ? env : "");
    if (!*exe)
        fmt(exe, sizeof exe, "%s/stemsplit", root);
    CHECK(access(exe, X_OK) == 0, "%s is not an executable (set STEMSPLIT)", exe);
    for (int i = 0; i < n_cases; i++)
        cli_case(exe, cases[i]);
}

/* ---- 3. refusals --------------------------------------------------------------------- */

/* Copy model `src` to `dst` with metadata key `key` set to `val` (NULL: keep),
 * tensor `drop` left out (NULL: none) and, if `extra`, one more tensor. */
static int rewrite_model(const char *src, const char *dst, const char *key, const char *val, const char *drop,
                         int extra)
{
    ss_error err = {0};
    ss_st *st = NULL;
    if (ss_st_open(src, &st, &err) != SS_OK)
        return -1;
    int n = ss_st_count(st), m = 0, rc = -1;
    size_t msize = 1 << 16, used = 0;
    char *meta = malloc(msize);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    const float **data = calloc((size_t)n + 1, sizeof *data);
    int64_t (*shapes)[ST_WRITE_MAX_DIMS] = calloc((size_t)n + 1, sizeof *shapes);
    int *ndims = calloc((size_t)n + 1, sizeof *ndims);
    static const float extra_data[3] = {1, 2, 3};
    if (!meta || !names || !data || !shapes || !ndims)
        goto out;
    used += (size_t)snprintf(meta, msize, "{");
    for (int i = 0; i < ss_st_meta_count(st) && used < msize; i++) {
        const char *k, *v;
        ss_st_meta_at(st, i, &k, &v);
        if (key && strcmp(k, key) == 0)
            v = val;
        used += (size_t)snprintf(meta + used, msize - used, "%s\"%s\":\"%s\"", i ? "," : "", k, v);
    }
    if (used + 2 >= msize)
        goto out;
    strcat(meta, "}");
    for (int i = 0; i < n; i++) {
        const ss_st_tensor *t = ss_st_tensor_at(st, i);
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        float *f = tensor_f32(t);
        if (!f)
            goto out;
        names[m] = t->name;
        data[m] = f;
        ndims[m] = t->ndim;
        for (int d = 0; d < t->ndim; d++)
            shapes[m][d] = t->shape[d];
        m++;
    }
    if (extra) {
        names[m] = "bogus.extra";
        data[m] = extra_data;
        ndims[m] = 1;
        shapes[m][0] = 3;
        m++;
    }
    rc = st_write_f32(dst, meta, m, names, (const int64_t(*)[ST_WRITE_MAX_DIMS])shapes, ndims, data);
out:
    for (int i = 0; data && i < m; i++)
        if (data[i] != extra_data)
            free((void *)data[i]);
    free(meta);
    free(names);
    free(data);
    free(shapes);
    free(ndims);
    ss_st_close(st);
    return rc;
}

static void test_refusals(void)
{
    if (!have_python())
        SKIP("python3 not found (needed by scripts/convert-demucs.py)");
    char base[1200], bad[1200], why[1024];
    fmt(base, sizeof base, "%s/refuse_base.safetensors", tmpdir);
    fmt(bad, sizeof bad, "%s/refuse.safetensors", tmpdir);
    CHECK(convert_case("t1_base", base, why, sizeof why) == 0, "%s", why);
    static const struct {
        const char *key, *val, *drop;
        int extra;
        const char *expect;             /* in the error message */
    } variants[] = {
        {NULL, NULL, NULL, 0, NULL},                              /* the copy itself loads */
        {"htdemucs.t_sparse_self_attn", "true", NULL, 0, "t_sparse_self_attn"},
        {"htdemucs.t_sparse_cross_attn", "true", NULL, 0, "t_sparse_cross_attn"},
        {"htdemucs.cac", "false", NULL, 0, "cac"},
        {"htdemucs.multi_freqs", "0.25,0.5", NULL, 0, "multi_freqs"},
        {"htdemucs.t_emb", "cape", NULL, 0, "t_emb"},
        {"htdemucs.t_sin_random_shift", "2", NULL, 0, "t_sin_random_shift"},
        {"htdemucs.t_group_norm", "true", NULL, 0, "t_group_norm"},
        {"htdemucs.t_norm_first", "false", NULL, 0, "t_norm_first"},
        {"htdemucs.t_gelu", "false", NULL, 0, "t_gelu"},
        {"htdemucs.depth", "5", NULL, 0, "kernel_size"},           /* would merge the branches */
        {"htdemucs.channels", "9", NULL, 0, "encoder.0.conv.weight"},
        {"htdemucs.nfft", "banana", NULL, 0, "htdemucs.nfft"},
        {NULL, NULL, "crosstransformer.norm_in.weight", 0, "crosstransformer.norm_in.weight"},
        {NULL, NULL, NULL, 1, "bogus.extra"},
    };
    ss_backend *be = NULL;
    ss_backend_params bp = {0};
    ss_error err = {0};
    CHECK(ss_backend_open("cpu", &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        ss_model *m = NULL;
        ss_error_clear(&err);
        if (rewrite_model(base, bad, variants[i].key, variants[i].val, variants[i].drop, variants[i].extra) != 0) {
            ss_backend_close(be);
            CHECK(0, "cannot write %s", bad);
        }
        ss_status st = ss_model_load(bad, be, &m, &err);
        ss_model_free(m);
        if (!variants[i].expect) {
            if (st != SS_OK)
                ss_backend_close(be);
            CHECK(st == SS_OK, "unmodified copy refused: %s", err.msg);
            continue;
        }
        if (st != SS_E_DATA || !strstr(err.msg, variants[i].expect))
            ss_backend_close(be);
        CHECK(st == SS_E_DATA, "%s=%s / drop %s / extra %d: status %d (%s), expected SS_E_DATA",
              variants[i].key ? variants[i].key : "-", variants[i].val ? variants[i].val : "-",
              variants[i].drop ? variants[i].drop : "-", variants[i].extra, (int)st, err.msg);
        CHECK(strstr(err.msg, variants[i].expect), "message '%s' does not name '%s'", err.msg, variants[i].expect);
    }
    ss_backend_close(be);
    unlink(bad);
    unlink(base);
}

/* ---- main ---------------------------------------------------------------------------- */

int main(void)
{
    if (fixture_setup("ss-htdemucs", "mix.wav") != 0)
        return 1;
    RUN(test_forward);
    RUN(test_cli_parity);
    RUN(test_refusals);
    fixture_cleanup();
    return test_summary();
}

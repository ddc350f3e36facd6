/* htdemucs_fixtures.h - shared by the tests that run HTDemucs on the PyTorch
 * reference fixtures in tests/fixtures/htdemucs/ (test_htdemucs.c on the CPU,
 * test_metal_htdemucs.c through the emulated Metal kernels): finding the
 * cases, converting a checkpoint with scripts/convert-demucs.py, comparing by
 * relative L2, and the forward-level check on a chosen backend.  Header-only
 * (static functions); include it from one test file.
 */
#ifndef SS_TEST_HTDEMUCS_FIXTURES_H
#define SS_TEST_HTDEMUCS_FIXTURES_H

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/model.h"
#include "../src/safetensors.h"
#include "fixture_io.h"
#include "test.h"

#define TOL 1e-4
#define MAX_CASES 64

static char root[1024];
static char tmpdir[1024];
static char cases[MAX_CASES][256];
static int n_cases;

/* ---- helpers ------------------------------------------------------------------ */

/* snprintf that truncates silently (paths here are short; a truncated one
 * just fails to open) */
static void fmt(char *buf, size_t size, const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void fmt(char *buf, size_t size, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, size, f, ap);
    va_end(ap);
}

static int have_python(void)
{
    return system("python3 -c 'import sys' >/dev/null 2>&1") == 0;
}

/* Append `s` single-quoted for sh to cmd. */
static int append_quoted(char *cmd, size_t size, const char *s)
{
    size_t n = strlen(cmd);
    if (n + 3 >= size)
        return -1;
    cmd[n++] = ' ';
    cmd[n++] = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            if (n + 5 >= size)
                return -1;
            memcpy(cmd + n, "'\\''", 4);
            n += 4;
        } else {
            if (n + 2 >= size)
                return -1;
            cmd[n++] = *s;
        }
    }
    cmd[n++] = '\'';
    cmd[n] = '\0';
    return 0;
}

/* The first part of a log file as one line. */
static void read_log(const char *path, char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (out[i] == '\n' || out[i] == '\r')
            out[i] = ' ';
}

/* "exit status N" or "signal N" for a system() result */
static int exit_code(int rc)
{
    return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
}

static int is_file(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Convert case `name` into `out`; 0 on success, else a message in `why`. */
static int convert_case(const char *name, const char *out, char *why, size_t wsize)
{
    char dir[1400], path[1600], cmd[8192] = "python3";
    fmt(dir, sizeof dir, "%s/tests/fixtures/htdemucs/%s", root, name);
    fmt(path, sizeof path, "%s/scripts/convert-demucs.py", root);
    int bad = append_quoted(cmd, sizeof cmd, path) || append_quoted(cmd, sizeof cmd, "-o") ||
              append_quoted(cmd, sizeof cmd, out);
    fmt(path, sizeof path, "%s/model.th", dir);
    if (is_file(path)) {
        bad |= append_quoted(cmd, sizeof cmd, path);
    } else {
        for (int i = 0;; i++) {
            fmt(path, sizeof path, "%s/model%d.th", dir, i);
            if (!is_file(path))
                break;
            bad |= append_quoted(cmd, sizeof cmd, path);
        }
    }
    fmt(path, sizeof path, "%s/convert.args", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char tok[4096];
        while (fscanf(f, "%4095s", tok) == 1)
            bad |= append_quoted(cmd, sizeof cmd, tok);
        fclose(f);
    }
    if (bad) {
        fmt(why, wsize, "command line too long");
        return -1;
    }
    fmt(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " >%s/convert.log 2>&1", tmpdir);
    int rc = system(cmd);
    if (rc != 0) {
        char log[600];
        fmt(path, sizeof path, "%s/convert.log", tmpdir);
        read_log(path, log, sizeof log);
        fmt(why, wsize, "convert-demucs.py failed (exit %d): %s", exit_code(rc), log);
        return -1;
    }
    return 0;
}

/* Print one PASS/FAIL line of our own (counted by tests/run.sh). */
static void report(int ok, const char *name, const char *detail)
{
    printf("%s %s: %s\n", ok ? "PASS" : "FAIL", name, detail);
    if (!ok)
        test_n_fail++;
    fflush(stdout);
}

/* ---- 1. forward level ------------------------------------------------------------ */

/* One case at the forward level on backend `device` with `threads` threads;
 * results are reported as <prefix>_<case>_<source>. */
/* forward passes per case, each compared (the CUDA emulator's test: direct,
 * recorded, replayed) */
static int fixture_passes = 1;

static void fixture_forward_case(const char *name, const char *device, const char *prefix, int threads)
{
    char ref_path[1400], model_path[1400], why[1024], label[300];
    fmt(ref_path, sizeof ref_path, "%s/tests/fixtures/htdemucs/%s/ref.safetensors", root, name);
    fmt(model_path, sizeof model_path, "%s/%s.safetensors", tmpdir, name);
    fmt(label, sizeof label, "%s_%s", prefix, name);
    ss_error err = {0};
    ss_st *ref = NULL;
    if (ss_st_open(ref_path, &ref, &err) != SS_OK) {
        report(0, label, err.msg);
        return;
    }
    const ss_st_tensor *fi = ss_st_find(ref, "forward_in"), *fo = ss_st_find(ref, "forward_out");
    if (!fi || !fo) {
        ss_st_close(ref);
        return;                                   /* this case has no forward tensors */
    }
    if (fi->ndim != 3 || fo->ndim != 4 || fi->shape[0] != 1 || fo->shape[0] != 1 || fo->shape[3] != fi->shape[2]) {
        report(0, label, "forward_in / forward_out have unexpected shapes");
        ss_st_close(ref);
        return;
    }
    if (convert_case(name, model_path, why, sizeof why) != 0) {
        report(0, label, why);
        ss_st_close(ref);
        return;
    }
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.threads = threads};
    float *x = tensor_f32(fi), *yref = tensor_f32(fo), *y = malloc((size_t)fo->numel * sizeof *y);
    float *dx = NULL, *dy = NULL;
    int64_t L = fi->shape[2];
    int S = (int)fo->shape[1], C = (int)fo->shape[2];
    if (!x || !yref || !y) {
        report(0, label, "out of memory");
    } else if (ss_backend_open(device, &bp, &be, NULL, 0, &err) != SS_OK ||
               ss_model_load(model_path, be, &m, &err) != SS_OK) {
        report(0, label, err.msg);
    } else if (ss_model_get_info(m)->n_sources != S || ss_model_get_info(m)->channels != C) {
        report(0, label, "the model's sources/channels differ from forward_out's shape");
    } else if (!(dx = ss_alloc(be, (size_t)fi->numel)) || !(dy = ss_alloc(be, (size_t)fo->numel))) {
        report(0, label, "cannot allocate device memory");
    } else {
        ss_upload(be, dx, x, (size_t)fi->numel);
        int64_t vl = ss_model_valid_length(m, L);
        if (vl != L) {
            fmt(why, sizeof why, "valid_length(%lld) = %lld, expected the training length itself",
                     (long long)L, (long long)vl);
            report(0, label, why);
        } else {
            for (int pass = 0; pass < fixture_passes; pass++) {
                char pl[16] = "";
                if (fixture_passes > 1)
                    fmt(pl, sizeof pl, "_pass%d", pass + 1);
                ss_fill(be, dy, NAN, (size_t)fo->numel);
                if (ss_model_forward(m, dx, dy, 1, L, &err) != SS_OK) {
                    report(0, label, err.msg);
                    break;
                }
                ss_download(be, y, dy, (size_t)fo->numel);
                for (int s = 0; s < S; s++) {
                    size_t n = (size_t)C * L;
                    double e = rel_l2(y + s * n, yref + s * n, n);
                    char line[300];
                    fmt(label, sizeof label, "%s_%s_%s%s", prefix, name, ss_model_get_info(m)->sources[s], pl);
                    fmt(line, sizeof line, "relative L2 %.3g (tolerance %g)", e, TOL);
                    report(e <= TOL, label, line);
                }
            }
        }
    }
    if (dx)
        ss_free(be, dx);
    if (dy)
        ss_free(be, dy);
    ss_model_free(m);
    if (be)
        ss_backend_close(be);
    free(x);
    free(yref);
    free(y);
    ss_st_close(ref);
    unlink(model_path);
}

static int cmp_names(const void *a, const void *b) { return strcmp(a, b); }

/* Find the repository root ($SS_ROOT or the current directory), the cases
 * (sub-folders holding `marker`), sorted, and make the scratch directory
 * $TMPDIR/<tmp_prefix>.XXXXXX.  0, or -1 after printing a FAIL line. */
static int fixture_setup(const char *tmp_prefix, const char *marker)
{
    const char *r = getenv("SS_ROOT");
    if (r && *r)
        fmt(root, sizeof root, "%s", r);
    else if (!getcwd(root, sizeof root))
        fmt(root, sizeof root, ".");
    char fx[1200];
    fmt(fx, sizeof fx, "%s/tests/fixtures/htdemucs", root);
    DIR *d = opendir(fx);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && n_cases < MAX_CASES) {
            char mix[1600];
            if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof cases[0])
                continue;
            fmt(mix, sizeof mix, "%s/%s/%s", fx, e->d_name, marker);
            if (is_file(mix))
                fmt(cases[n_cases++], sizeof cases[0], "%s", e->d_name);
        }
        closedir(d);
    }
    qsort(cases, (size_t)n_cases, sizeof cases[0], cmp_names);
    const char *t = getenv("TMPDIR");
    fmt(tmpdir, sizeof tmpdir, "%s/%s.XXXXXX", t && *t ? t : "/tmp", tmp_prefix);
    if (!mkdtemp(tmpdir)) {
        printf("FAIL %s: cannot create a temporary directory %s\n", tmp_prefix, tmpdir);
        return -1;
    }
    return 0;
}

/* Remove the scratch directory and the logs the helpers leave in it. */
static void fixture_cleanup(void)
{
    fixture_dir_remove(tmpdir);
}

#endif

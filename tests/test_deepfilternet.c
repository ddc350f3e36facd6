/* test_deepfilternet.c - DeepFilterNet3 (models/deepfilternet/deepfilternet.c)
 * against a reference made with the reference's own network code.
 *
 * The fixture ($SS_DFN_FIXTURES, else tests/fixtures/deepfilternet-dev, made
 * by scripts/dfn-devref.py): model.safetensors (a small random-weight
 * configuration with the deepfilternet.* metadata) and ref.safetensors (`mix`
 * [C, L], `speech` [C, L]: df.enhance.enhance() of each channel).
 *
 * The architecture is driven through its ss_arch directly (it is not in
 * models/registry.h until it passes parity through the CLI):
 *   - forward parity per channel, relative L2 <= 1e-4;
 *   - block-size independence: blocks of 3, 7 and 64 frames give the same
 *     result as the default (<= 1e-6 relative L2; the sums run in another
 *     order only in the products' blocking).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model.h"
#include "../src/safetensors.h"
#include "test.h"

#define TOL 1e-4

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

/* tensor `name` of ref.safetensors [C, L] (malloc'd) or NULL */
static float *ref_get(const char *name, int *C, int64_t *L)
{
    char path[1400];
    ss_error err = {0};
    ss_st *st = NULL;
    snprintf(path, sizeof path, "%s/ref.safetensors", fixture);
    if (ss_st_open(path, &st, &err) != SS_OK)
        return NULL;
    const ss_st_tensor *t = ss_st_find(st, name);
    float *y = NULL;
    if (t && t->ndim == 2 && (y = malloc((size_t)t->numel * sizeof *y))) {
        ss_st_to_f32(t, y);
        *C = (int)t->shape[0];
        *L = t->shape[1];
    }
    ss_st_close(st);
    return y;
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
    ss_model_info info = {.n_sources = 2, .residual = 1, .channels = 1, .samplerate = 48000};
    strcpy(info.sources[0], "speech");
    strcpy(info.sources[1], "noise");
    snprintf(path, sizeof path, "%s/model.safetensors", fixture);
    ss_status s = ss_backend_open("cpu", &bp, &r->be, NULL, 0, err);
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
        SKIP("no fixture in %s (scripts/dfn-devref.py makes one)", fixture);
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
    static const int blocks[] = {3, 7, 64};
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

int main(void)
{
    const char *fx = getenv("SS_DFN_FIXTURES"), *root = getenv("SS_ROOT");
    if (fx && *fx)
        snprintf(fixture, sizeof fixture, "%s", fx);
    else
        snprintf(fixture, sizeof fixture, "%s/tests/fixtures/deepfilternet-dev", root && *root ? root : ".");
    RUN(test_forward_parity);
    return test_summary();
}

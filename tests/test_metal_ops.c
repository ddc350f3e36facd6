/* test_metal_ops.c - every Metal kernel (the .metal files of kernels/metal, compiled as
 * C++17 and run by the grid emulator) against the CPU backend, on random
 * inputs with odd sizes: max |metal - cpu| / max |cpu| <= 1e-5 per op.
 * Also the emulator itself: barriers, threadgroup memory, simdgroup sums, and
 * that a divergent barrier is caught.  The "mps" backend here is the emulated
 * one (kernels/metal/emu/backend_metal_emu.c), registered by the test build. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/cpu/cpu_ops.h"
#include "../kernels/metal/emu/emu.h"
#include "../src/backend.h"
#include "test.h"

#define TOL 1e-5

static ss_backend *cpu, *mtl, *mtl_small;   /* mtl_small: tiny column budget (blocked convs) */
static double worst;
static const char *worst_op = "";
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static float *rnd(ss_backend *be, size_t n, float scale)
{
    float *p = ss_alloc(be, n);
    for (size_t i = 0; i < n && p; i++)
        p[i] = frand() * scale;
    return p;
}

static float *dupb(ss_backend *be, const float *src, size_t n)
{
    float *p = ss_alloc(be, n);
    if (p)
        memcpy(p, src, n * sizeof *p);
    return p;
}

/* max |a - b| / max |b| (NaN where both NaN counts as equal) */
static double relerr(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) && isnan(b[i]))
            continue;
        if (isnan(a[i]) || isnan(b[i]))
            return INFINITY;
        double d = fabs((double)a[i] - b[i]);
        num = d > num ? d : num;
        den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return den > 0 ? num / den : num;
}

static int status_ok(ss_backend *be, char *why, size_t n)
{
    ss_error e = {0};
    if (ss_backend_status(be, &e) != SS_OK) {
        snprintf(why, n, "%s", e.msg);
        return 0;
    }
    return 1;
}

/* Compare, record the worst error; returns the error (INFINITY on backend errors). */
static double cmp(const char *op, ss_backend *be, const float *got, const float *want, size_t n)
{
    char why[1100];
    if (!status_ok(be, why, sizeof why) || !status_ok(cpu, why, sizeof why)) {
        printf("# %s: backend error: %s\n", op, why);
        return INFINITY;
    }
    double e = relerr(got, want, n);
    if (e > worst) {
        worst = e;
        worst_op = op;
    }
    return e;
}

#define EXPECT(op, be, got, want, n)                                                        \
    do {                                                                                    \
        double e_ = cmp(op, be, got, want, n);                                              \
        CHECK(e_ <= TOL, "%s: max relative error %.3g > %g", op, e_, TOL);                  \
    } while (0)

/* ---- emulator ------------------------------------------------------------------------- */

static _Thread_local int shared_tg[256];

static void k_rotate(void *const *bufs, const void *params, const ss_emu_ids *id)
{
    (void)params;
    int *out = bufs[0];
    unsigned i = id->lid[0], n = id->tgs[0];
    shared_tg[i] = (int)(id->gid[0] * 3 + 1);
    ss_emu_barrier();
    int v = shared_tg[(i + 1) % n];
    ss_emu_barrier();
    shared_tg[i] = v + 1;                      /* overwrite: a missing barrier would show */
    ss_emu_barrier();
    out[id->gid[0]] = shared_tg[(i + n - 1) % n] + (int)ss_emu_simd(SS_EMU_SIMD_SUM, (float)id->sl);
}

static void k_divergent(void *const *bufs, const void *params, const ss_emu_ids *id)
{
    (void)bufs;
    (void)params;
    if (id->lid[0] < 5)
        ss_emu_barrier();
}

static void test_emulator(void)
{
    enum { TG = 96, G = 5 };
    int out[TG * G];
    void *bufs[1] = {out};
    unsigned groups[3] = {G, 1, 1}, tg[3] = {TG, 1, 1};
    char why[300];
    CHECK(ss_emu_run(k_rotate, bufs, NULL, groups, tg, 1, 2, why, sizeof why) == 0, "%s", why);
    for (int g = 0; g < G; g++)
        for (int i = 0; i < TG; i++) {
            /* lane i reads (lane i-1)'s value v = x[i] + 1, x[j] = gid(j+1)*3+1 */
            int gi = g * TG + i, want = (g * TG + i) * 3 + 1 + 1;
            int simd = i / 32, lanes = TG - simd * 32 < 32 ? TG - simd * 32 : 32;
            want += lanes * (lanes - 1) / 2;
            CHECK(out[gi] == want, "lane %d: %d, want %d", gi, out[gi], want);
        }
    CHECK(ss_emu_run(k_divergent, bufs, NULL, groups, tg, 1, 1, why, sizeof why) != 0,
          "a barrier reached by 5 of %d threads was not reported", TG);
    printf("# emulator: divergent barrier reported: %s\n", why);
    CHECK(ss_emu_run(k_divergent, bufs, NULL, groups, tg, 0, 1, why, sizeof why) != 0,
          "a barrier in a kernel dispatched as not cooperative was not reported");
}

/* ---- elementwise ---------------------------------------------------------------------- */

static void test_elementwise(void)
{
    static const size_t sizes[] = {1, 7, 1031, 70001};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *a = rnd(cpu, n, 6.0f), *b = rnd(cpu, n, 3.0f), *yc = ss_alloc(cpu, n);
        float *ma = dupb(mtl, a, n), *mb = dupb(mtl, b, n), *ym = ss_alloc(mtl, n);
        CHECK(a && b && yc && ma && mb && ym, "alloc");
        ss_fill(cpu, yc, 0.375f, n);
        ss_fill(mtl, ym, 0.375f, n);
        EXPECT("fill", mtl, ym, yc, n);
        ss_add(cpu, yc, a, b, n);
        ss_add(mtl, ym, ma, mb, n);
        EXPECT("add", mtl, ym, yc, n);
        ss_scale(cpu, yc, a, -0.7f, n);
        ss_scale(mtl, ym, ma, -0.7f, n);
        EXPECT("scale", mtl, ym, yc, n);
        ss_gelu(cpu, yc, a, n);
        ss_gelu(mtl, ym, ma, n);
        EXPECT("gelu", mtl, ym, yc, n);
        ss_gelu(mtl, ma, ma, n);                 /* in place */
        EXPECT("gelu in place", mtl, ma, yc, n);
        ss_free(cpu, a), ss_free(cpu, b), ss_free(cpu, yc);
        ss_free(mtl, ma), ss_free(mtl, mb), ss_free(mtl, ym);
    }
}

static void test_affine_glu(void)
{
    int batch = 3, ch = 5;
    int64_t len = 77;
    size_t n = (size_t)batch * ch * len;
    float *x = rnd(cpu, 2 * n, 4.0f), *s = rnd(cpu, ch, 2.0f), *t = rnd(cpu, ch, 1.0f), *yc = ss_alloc(cpu, 2 * n);
    float *mx = dupb(mtl, x, 2 * n), *ms = dupb(mtl, s, ch), *mt = dupb(mtl, t, ch), *ym = ss_alloc(mtl, 2 * n);
    CHECK(x && s && t && yc && mx && ms && mt && ym, "alloc");
    for (int v = 0; v < 4; v++) {
        const float *cs = v & 1 ? s : NULL, *cb = v & 2 ? t : NULL;
        const float *gs = v & 1 ? ms : NULL, *gb = v & 2 ? mt : NULL;
        ss_channel_affine(cpu, yc, x, batch, ch, len, cs, cb);
        ss_channel_affine(mtl, ym, mx, batch, ch, len, gs, gb);
        EXPECT("channel_affine", mtl, ym, yc, n);
    }
    int rows = 9;
    float *rs = rnd(cpu, (size_t)rows, 2.0f), *rt = rnd(cpu, (size_t)rows, 1.0f);
    float *mrs = dupb(mtl, rs, (size_t)rows), *mrt = dupb(mtl, rt, (size_t)rows);
    ss_row_affine(cpu, yc, x, rows, 131, rs, rt);
    ss_row_affine(mtl, ym, mx, rows, 131, mrs, mrt);
    EXPECT("row_affine", mtl, ym, yc, (size_t)rows * 131);
    ss_glu(cpu, yc, x, batch, ch, len);
    ss_glu(mtl, ym, mx, batch, ch, len);
    EXPECT("glu", mtl, ym, yc, n);
    ss_free(cpu, x), ss_free(cpu, s), ss_free(cpu, t), ss_free(cpu, yc), ss_free(cpu, rs), ss_free(cpu, rt);
    ss_free(mtl, mx), ss_free(mtl, ms), ss_free(mtl, mt), ss_free(mtl, ym), ss_free(mtl, mrs), ss_free(mtl, mrt);
}

static void test_copies(void)
{
    size_t rows = 37, cols = 53, sp = 61, dp = 57;
    size_t ns = rows * sp, nd = rows * dp;
    float *s = rnd(cpu, ns, 1.0f), *dc = rnd(cpu, nd, 1.0f);
    float *ms = dupb(mtl, s, ns), *dm = dupb(mtl, dc, nd);
    CHECK(s && dc && ms && dm, "alloc");
    ss_copy2d(cpu, dc, dp, s, sp, rows, cols);
    ss_copy2d(mtl, dm, dp, ms, sp, rows, cols);
    EXPECT("copy2d", mtl, dm, dc, nd);
    /* copy4d: permute [3,5,7,9] -> [9,3,7,5] layout inside a padded destination */
    int64_t shape[4] = {3, 5, 7, 9};
    int64_t sst[4] = {5 * 7 * 9, 7 * 9, 9, 1};
    int64_t dst[4] = {7 * 6 + 1, 1, 3 * 7 * 6 + 3, 3 * 3 * 7 * 6 + 11};   /* odd, non-overlapping */
    size_t n4 = 3 * 5 * 7 * 9, nd4 = (size_t)(2 * dst[0] + 4 * dst[1] + 6 * dst[2] + 8 * dst[3] + 1);
    float *s4 = rnd(cpu, n4, 1.0f), *d4 = rnd(cpu, nd4, 1.0f);
    float *ms4 = dupb(mtl, s4, n4), *md4 = dupb(mtl, d4, nd4);
    CHECK(s4 && d4 && ms4 && md4, "alloc");
    ss_copy4d(cpu, d4, dst, s4, sst, shape);
    ss_copy4d(mtl, md4, dst, ms4, sst, shape);
    EXPECT("copy4d", mtl, md4, d4, nd4);
    /* reversed rows (negative stride), as in reflect padding */
    const int64_t dr[4] = {0, 7, 0, 1}, sr[4] = {0, 9, 0, -1}, shr[4] = {1, 40, 1, 7};
    ss_copy4d(cpu, d4, dr, s4 + 8, sr, shr);
    ss_copy4d(mtl, md4, dr, ms4 + 8, sr, shr);
    EXPECT("copy4d reversed", mtl, md4, d4, nd4);
    ss_free(cpu, s), ss_free(cpu, dc), ss_free(cpu, s4), ss_free(cpu, d4);
    ss_free(mtl, ms), ss_free(mtl, dm), ss_free(mtl, ms4), ss_free(mtl, md4);
}

static void test_transpose(void)
{
    static const int dims[][3] = {{3, 37, 19}, {1, 1, 1}, {2, 16, 33}, {1, 100, 3}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        size_t n = (size_t)dims[i][0] * dims[i][1] * dims[i][2];
        float *x = rnd(cpu, n, 1.0f), *yc = ss_alloc(cpu, n), *mx = dupb(mtl, x, n), *ym = ss_alloc(mtl, n);
        CHECK(x && yc && mx && ym, "alloc");
        ss_transpose(cpu, yc, x, dims[i][0], dims[i][1], dims[i][2]);
        ss_transpose(mtl, ym, mx, dims[i][0], dims[i][1], dims[i][2]);
        EXPECT("transpose", mtl, ym, yc, n);
        ss_free(cpu, x), ss_free(cpu, yc), ss_free(mtl, mx), ss_free(mtl, ym);
    }
}

static void test_reductions(void)
{
    static const int lens[] = {1, 2, 3, 33, 100, 1025};
    int rows = 7;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int len = lens[li];
        size_t n = (size_t)rows * len;
        float *x = rnd(cpu, n, 5.0f), *yc = ss_alloc(cpu, n), *mx = dupb(mtl, x, n), *ym = ss_alloc(mtl, n);
        float *g = rnd(cpu, (size_t)len, 1.5f), *b = rnd(cpu, (size_t)len, 1.0f);
        float *mg = dupb(mtl, g, (size_t)len), *mb = dupb(mtl, b, (size_t)len);
        float mc[2][7], mm[2][7];
        float *cm = ss_alloc(cpu, 2 * 7), *gm = ss_alloc(mtl, 2 * 7);
        CHECK(x && yc && mx && ym && g && b && mg && mb && cm && gm, "alloc");
        for (int i = 0; i < rows; i++)           /* an offset row: cancellation */
            for (int j = 0; j < len; j++)
                x[(size_t)i * len + j] += 100.0f * (float)i, mx[(size_t)i * len + j] = x[(size_t)i * len + j];
        ss_softmax(cpu, yc, x, rows, len, 0.7f);
        ss_softmax(mtl, ym, mx, rows, len, 0.7f);
        EXPECT("softmax", mtl, ym, yc, n);
        ss_layer_norm(cpu, yc, x, rows, len, g, b, 1e-5f);
        ss_layer_norm(mtl, ym, mx, rows, len, mg, mb, 1e-5f);
        if (len > 1)
            EXPECT("layer_norm", mtl, ym, yc, n);
        ss_layer_norm(cpu, yc, x, rows, len, NULL, NULL, 1e-5f);
        ss_layer_norm(mtl, ym, mx, rows, len, NULL, NULL, 1e-5f);
        if (len > 1)
            EXPECT("layer_norm (no affine)", mtl, ym, yc, n);
        ss_row_moments(cpu, cm, cm + 7, x, rows, len);
        ss_row_moments(mtl, gm, gm + 7, mx, rows, len);
        memcpy(mc, cm, sizeof mc);
        memcpy(mm, gm, sizeof mm);
        EXPECT("row_moments mean", mtl, mm[0], mc[0], 7);
        /* std relative to itself, not to the mean offset */
        EXPECT("row_moments std", mtl, mm[1], mc[1], 7);
        ss_softmax(mtl, mx, mx, rows, len, 0.7f);                 /* in place */
        ss_softmax(cpu, yc, x, rows, len, 0.7f);
        EXPECT("softmax in place", mtl, mx, yc, n);
        ss_free(cpu, x), ss_free(cpu, yc), ss_free(cpu, g), ss_free(cpu, b), ss_free(cpu, cm);
        ss_free(mtl, mx), ss_free(mtl, ym), ss_free(mtl, mg), ss_free(mtl, mb), ss_free(mtl, gm);
    }
}

static void test_group_norm(void)
{
    static const int cfg[][4] = {{2, 6, 333, 1}, {2, 6, 333, 2}, {1, 6, 5, 3}, {3, 6, 17, 6}, {1, 4, 40001, 1}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        int batch = cfg[i][0], ch = cfg[i][1], groups = cfg[i][3];
        int64_t len = cfg[i][2];
        size_t n = (size_t)batch * ch * len;
        float *x = rnd(cpu, n, 3.0f), *yc = ss_alloc(cpu, n), *mx = dupb(mtl, x, n), *ym = ss_alloc(mtl, n);
        float *g = rnd(cpu, (size_t)ch, 1.5f), *b = rnd(cpu, (size_t)ch, 1.0f);
        float *mg = dupb(mtl, g, (size_t)ch), *mb = dupb(mtl, b, (size_t)ch);
        CHECK(x && yc && mx && ym && g && b && mg && mb, "alloc");
        for (size_t j = 0; j < n; j++)
            x[j] += 2.0f, mx[j] = x[j];
        ss_group_norm(cpu, yc, x, batch, ch, len, groups, g, b, 1e-5f);
        ss_group_norm(mtl, ym, mx, batch, ch, len, groups, mg, mb, 1e-5f);
        EXPECT("group_norm", mtl, ym, yc, n);
        ss_group_norm(cpu, yc, x, batch, ch, len, groups, NULL, NULL, 1e-5f);
        ss_group_norm(mtl, mx, mx, batch, ch, len, groups, NULL, NULL, 1e-5f);   /* in place */
        EXPECT("group_norm in place, no affine", mtl, mx, yc, n);
        ss_free(cpu, x), ss_free(cpu, yc), ss_free(cpu, g), ss_free(cpu, b);
        ss_free(mtl, mx), ss_free(mtl, ym), ss_free(mtl, mg), ss_free(mtl, mb);
    }
}

/* ---- API 12 primitives: mul, activations, RMS norm, rotary embedding ---------------------------- */

/* The backend has the op itself (no fallback to the CPU reference). */
#define HAS_SLOT(slot) CHECK(ss_backend_iface_of(mtl)->slot != NULL, "the mps backend has no " #slot)

static void test_mul_activate(void)
{
    HAS_SLOT(mul);
    HAS_SLOT(activate);
    static const size_t sizes[] = {1, 7, 1031, 70001};
    static const struct { ss_act act; float alpha; const char *what; } acts[] = {
        {SS_ACT_RELU, 0.0f, "relu"},       {SS_ACT_SIGMOID, 0.0f, "sigmoid"}, {SS_ACT_TANH, 0.0f, "tanh"},
        {SS_ACT_SILU, 0.0f, "silu"},       {SS_ACT_ELU, 1.0f, "elu"},         {SS_ACT_ELU, 0.3f, "elu 0.3"},
        {SS_ACT_LEAKY_RELU, 0.01f, "leaky_relu"}, {SS_ACT_POW, 0.5f, "pow 0.5"}, {SS_ACT_POW, 2.0f, "pow 2"},
    };
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *a = rnd(cpu, n, 8.0f), *b = rnd(cpu, n, 3.0f), *yc = ss_alloc(cpu, n);
        float *ma = dupb(mtl, a, n), *mb = dupb(mtl, b, n), *ym = ss_alloc(mtl, n);
        CHECK(a && b && yc && ma && mb && ym, "alloc");
        ss_mul(cpu, yc, a, b, n);
        ss_mul(mtl, ym, ma, mb, n);
        EXPECT("mul", mtl, ym, yc, n);
        for (size_t k = 0; k < sizeof acts / sizeof acts[0]; k++) {
            ss_activate(cpu, yc, a, n, acts[k].act, acts[k].alpha);
            ss_activate(mtl, ym, ma, n, acts[k].act, acts[k].alpha);
            EXPECT(acts[k].what, mtl, ym, yc, n);
            /* small arguments, where ELU's e^x - 1 cancels: relative to the values themselves */
            for (size_t i = 0; i < n; i++)
                mb[i] = b[i] * 1e-4f;
            ss_activate(cpu, yc, mb, n, acts[k].act, acts[k].alpha);
            ss_activate(mtl, mb, mb, n, acts[k].act, acts[k].alpha);     /* in place */
            EXPECT(acts[k].what, mtl, mb, yc, n);
        }
        ss_free(cpu, a), ss_free(cpu, b), ss_free(cpu, yc);
        ss_free(mtl, ma), ss_free(mtl, mb), ss_free(mtl, ym);
    }
}

static void test_rms_norm(void)
{
    HAS_SLOT(rms_norm);
    static const int dims[][2] = {{7, 1}, {5, 33}, {9, 384}, {3, 512}, {2, 1025}};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int rows = dims[di][0], dim = dims[di][1];
        size_t n = (size_t)rows * dim;
        float *x = rnd(cpu, n, 4.0f), *g = rnd(cpu, (size_t)dim, 1.5f), *yc = ss_alloc(cpu, n);
        float *mx = dupb(mtl, x, n), *mg = dupb(mtl, g, (size_t)dim), *ym = ss_alloc(mtl, n);
        CHECK(x && g && yc && mx && mg && ym, "alloc");
        for (int form = 0; form < 2; form++)
            for (int with_g = 0; with_g < 2; with_g++) {
                float eps = form ? 1e-12f : 1e-5f;
                ss_rms_norm(cpu, yc, x, rows, dim, with_g ? g : NULL, eps, (ss_rms_form)form);
                ss_rms_norm(mtl, ym, mx, rows, dim, with_g ? mg : NULL, eps, (ss_rms_form)form);
                EXPECT(form ? "rms_norm l2" : "rms_norm mean", mtl, ym, yc, n);
            }
        ss_rms_norm(cpu, yc, x, rows, dim, g, 1e-12f, SS_RMS_L2);
        ss_rms_norm(mtl, mx, mx, rows, dim, mg, 1e-12f, SS_RMS_L2);      /* in place */
        EXPECT("rms_norm in place", mtl, mx, yc, n);
        ss_free(cpu, x), ss_free(cpu, g), ss_free(cpu, yc);
        ss_free(mtl, mx), ss_free(mtl, mg), ss_free(mtl, ym);
    }
}

static void test_rope(void)
{
    HAS_SLOT(rope);
    /* batch, seq, heads, hd, ld (> heads * hd: columns the op leaves alone) */
    static const int cfg[][5] = {{2, 33, 4, 16, 64}, {3, 7, 3, 10, 37}, {1, 62, 8, 48, 384}, {2, 5, 1, 2, 5}};
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        int B = cfg[ci][0], S = cfg[ci][1], H = cfg[ci][2], hd = cfg[ci][3], ld = cfg[ci][4];
        size_t n = (size_t)B * S * ld, ncs = (size_t)S * hd;
        float *x = rnd(cpu, n, 2.0f), *cs = ss_alloc(cpu, ncs), *yc = rnd(cpu, n, 1.0f);
        CHECK(x && cs && yc, "alloc");
        for (int p = 0; p < S; p++)
            for (int i = 0; i < hd / 2; i++) {
                double th = p * pow(10000.0, -2.0 * i / hd);
                cs[((size_t)p * (hd / 2) + i) * 2] = (float)cos(th);
                cs[((size_t)p * (hd / 2) + i) * 2 + 1] = (float)sin(th);
            }
        float *mx = dupb(mtl, x, n), *mcs = dupb(mtl, cs, ncs), *ym = dupb(mtl, yc, n);
        CHECK(mx && mcs && ym, "alloc");
        ss_rope(cpu, yc, x, B, S, H, hd, ld, cs);
        ss_rope(mtl, ym, mx, B, S, H, hd, ld, mcs);
        EXPECT("rope", mtl, ym, yc, n);
        ss_rope(cpu, x, x, B, S, H, hd, ld, cs);
        ss_rope(mtl, mx, mx, B, S, H, hd, ld, mcs);                        /* in place */
        EXPECT("rope in place", mtl, mx, x, n);
        ss_free(cpu, x), ss_free(cpu, cs), ss_free(cpu, yc);
        ss_free(mtl, mx), ss_free(mtl, mcs), ss_free(mtl, ym);
    }
}

static void run_gemm(ss_backend *be, const ss_gemm_desc *d, const char *what, float round_bits)
{
    (void)round_bits;
    size_t ra = (size_t)(d->trans_a ? d->k : d->m), rb = (size_t)(d->trans_b ? d->n : d->k);
    size_t na = (size_t)(d->batch - 1) * (size_t)d->stride_a + ra * (size_t)d->lda;
    size_t nb = (size_t)(d->batch - 1) * (size_t)d->stride_b + rb * (size_t)d->ldb;
    size_t nc = (size_t)(d->batch - 1) * (size_t)d->stride_c + (size_t)d->m * (size_t)d->ldc;
    float *a = rnd(cpu, na ? na : 1, 1.0f), *b = rnd(cpu, nb ? nb : 1, 1.0f), *c = rnd(cpu, nc, 1.0f);
    float *ma = dupb(be, a, na ? na : 1), *mb = dupb(be, b, nb ? nb : 1), *mc = dupb(be, c, nc);
    if (!a || !b || !c || !ma || !mb || !mc) {
        test_fail_(__FILE__, __LINE__, "alloc", "%s", what);
        return;
    }
    ss_gemm(cpu, d, a, b, c);
    ss_gemm(be, d, ma, mb, mc);
    double e = cmp(what, be, mc, c, nc);
    if (e > TOL)
        test_fail_(__FILE__, __LINE__, "gemm", "%s ta=%d tb=%d m=%d n=%d k=%d batch=%d beta=%g: error %.3g", what,
                   d->trans_a, d->trans_b, d->m, d->n, d->k, d->batch, d->beta, e);
    ss_free(cpu, a), ss_free(cpu, b), ss_free(cpu, c), ss_free(be, ma), ss_free(be, mb), ss_free(be, mc);
}

static void test_gemm(void)
{
    static const int mnk[][3] = {{37, 45, 29}, {1, 1, 1}, {64, 32, 16}, {33, 1, 70}, {5, 77, 0}, {100, 3, 257}};
    for (size_t i = 0; i < sizeof mnk / sizeof mnk[0]; i++)
        for (int t = 0; t < 4; t++)
            for (int bt = 0; bt < 2; bt++) {
                ss_gemm_desc d = {0};
                d.trans_a = t & 1, d.trans_b = t >> 1;
                d.m = mnk[i][0], d.n = mnk[i][1], d.k = mnk[i][2];
                d.alpha = 0.7f, d.beta = bt ? 0.5f : 0.0f;
                d.lda = (d.trans_a ? d.m : d.k) + 3;
                d.ldb = (d.trans_b ? d.k : d.n) + 1;
                d.ldc = d.n + 2;
                d.batch = i % 2 ? 1 : 3;
                d.stride_a = (int64_t)(d.trans_a ? d.k : d.m) * d.lda + 5;
                d.stride_b = (int64_t)(d.trans_b ? d.n : d.k) * d.ldb + 7;
                d.stride_c = (int64_t)d.m * d.ldc + 1;
                run_gemm(mtl, &d, "gemm", 0);
                if (test_failed_now)
                    return;
            }
}

/* fp16 / bf16 inputs: the kernel's rounding against CPU sgemm on inputs rounded
 * the same way (round to nearest even of the mantissa) */
static float round_bits(float x, int drop)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u += (1u << (drop - 1)) - 1u + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1u);
    memcpy(&x, &u, 4);
    return x;
}

static void test_gemm_precision(void)
{
    static const ss_precision precs[] = {SS_PREC_FP16, SS_PREC_BF16};
    for (int pi = 0; pi < 2; pi++) {
        ss_backend *be = NULL;
        ss_error e = {0};
        ss_backend_params bp = {.threads = 2, .precision = precs[pi]};
        CHECK(ss_backend_open("mps", &bp, &be, NULL, 0, &e) == SS_OK, "%s", e.msg);
        CHECK(ss_backend_precision(be) == precs[pi], "precision not kept");
        int m = 19, n = 23, k = 41, drop = precs[pi] == SS_PREC_FP16 ? 13 : 16;
        float *a = rnd(cpu, (size_t)m * k, 1.0f), *b = rnd(cpu, (size_t)k * n, 1.0f), *c = ss_alloc(cpu, (size_t)m * n);
        float *ma = dupb(be, a, (size_t)m * k), *mb = dupb(be, b, (size_t)k * n), *mc = ss_alloc(be, (size_t)m * n);
        ss_gemm_desc d = {.m = m, .n = n, .k = k, .alpha = 1.0f, .beta = 0.0f, .lda = k, .ldb = n, .ldc = n, .batch = 1};
        ss_gemm(be, &d, ma, mb, mc);
        for (int i = 0; i < m * k; i++)
            a[i] = round_bits(a[i], drop);
        for (int i = 0; i < k * n; i++)
            b[i] = round_bits(b[i], drop);
        ss_gemm(cpu, &d, a, b, c);
        double err = cmp(precs[pi] == SS_PREC_FP16 ? "gemm fp16" : "gemm bf16", be, mc, c, (size_t)m * n);
        ss_free(cpu, a), ss_free(cpu, b), ss_free(cpu, c), ss_free(be, ma), ss_free(be, mb), ss_free(be, mc);
        ss_backend_close(be);
        CHECK(err <= TOL, "%s: error %.3g against CPU sgemm on rounded inputs", ss_precision_name(precs[pi]), err);
    }
}

static void conv_case(ss_backend *be, const ss_conv2d_desc *d, int with_bias, const char *what)
{
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    size_t nx = (size_t)d->batch * d->cin * d->h * d->w, nw = (size_t)d->cout * d->cin * d->kh * d->kw;
    size_t ny = (size_t)d->batch * d->cout * oh * ow;
    float *x = rnd(cpu, nx, 1.0f), *w = rnd(cpu, nw, 1.0f), *b = rnd(cpu, (size_t)d->cout, 1.0f);
    float *y = ss_alloc(cpu, ny);
    float *mx = dupb(be, x, nx), *mw = dupb(be, w, nw), *mb = dupb(be, b, (size_t)d->cout), *my = ss_alloc(be, ny);
    ss_conv2d(cpu, d, x, w, with_bias ? b : NULL, y);
    ss_conv2d(be, d, mx, mw, with_bias ? mb : NULL, my);
    double e = cmp(what, be, my, y, ny);
    if (e > TOL)
        test_fail_(__FILE__, __LINE__, what, "cin %d h %d w %d cout %d k %dx%d s %d,%d p %d,%d d %d,%d batch %d: %.3g",
                   d->cin, d->h, d->w, d->cout, d->kh, d->kw, d->sh, d->sw, d->ph, d->pw, d->dh, d->dw, d->batch, e);
    ss_free(cpu, x), ss_free(cpu, w), ss_free(cpu, b), ss_free(cpu, y);
    ss_free(be, mx), ss_free(be, mw), ss_free(be, mb), ss_free(be, my);
}

static void test_conv2d(void)
{
    static const ss_conv2d_desc cs[] = {
        {.batch = 2, .cin = 3, .h = 5, .w = 37, .cout = 4, .kh = 3, .kw = 5, .sh = 2, .sw = 1, .ph = 1, .pw = 2, .dh = 1, .dw = 2},
        {.batch = 3, .cin = 5, .h = 1, .w = 101, .cout = 7, .kh = 1, .kw = 8, .sh = 1, .sw = 4, .ph = 0, .pw = 2, .dh = 1, .dw = 1},
        {.batch = 2, .cin = 6, .h = 7, .w = 9, .cout = 5, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1},
        {.batch = 9, .cin = 4, .h = 1, .w = 33, .cout = 3, .kh = 1, .kw = 3, .sh = 1, .sw = 1, .ph = 0, .pw = 2, .dh = 1, .dw = 2},
        {.batch = 1, .cin = 2, .h = 40, .w = 3, .cout = 3, .kh = 8, .kw = 1, .sh = 4, .sw = 1, .ph = 2, .pw = 0, .dh = 1, .dw = 1},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (int bias = 0; bias < 2; bias++) {
            conv_case(mtl, &cs[i], bias, "conv2d");
            conv_case(mtl_small, &cs[i], bias, "conv2d (blocked)");
            if (test_failed_now)
                return;
        }
}

static void convt_case(ss_backend *be, const ss_convt2d_desc *d, int with_bias, const char *what)
{
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    size_t nx = (size_t)d->batch * d->cin * d->h * d->w, nw = (size_t)d->cin * d->cout * d->kh * d->kw;
    size_t ny = (size_t)d->batch * d->cout * oh * ow;
    float *x = rnd(cpu, nx, 1.0f), *w = rnd(cpu, nw, 1.0f), *b = rnd(cpu, (size_t)d->cout, 1.0f);
    float *y = ss_alloc(cpu, ny);
    float *mx = dupb(be, x, nx), *mw = dupb(be, w, nw), *mb = dupb(be, b, (size_t)d->cout), *my = ss_alloc(be, ny);
    ss_conv_transpose2d(cpu, d, x, w, with_bias ? b : NULL, y);
    ss_conv_transpose2d(be, d, mx, mw, with_bias ? mb : NULL, my);
    double e = cmp(what, be, my, y, ny);
    if (e > TOL)
        test_fail_(__FILE__, __LINE__, what, "cin %d h %d w %d cout %d k %dx%d s %d,%d batch %d: %.3g", d->cin, d->h,
                   d->w, d->cout, d->kh, d->kw, d->sh, d->sw, d->batch, e);
    ss_free(cpu, x), ss_free(cpu, w), ss_free(cpu, b), ss_free(cpu, y);
    ss_free(be, mx), ss_free(be, mw), ss_free(be, mb), ss_free(be, my);
}

static void test_conv_transpose2d(void)
{
    static const ss_convt2d_desc cs[] = {
        {.batch = 3, .cin = 4, .h = 3, .w = 21, .cout = 5, .kh = 4, .kw = 3, .sh = 2, .sw = 2},
        {.batch = 2, .cin = 6, .h = 1, .w = 57, .cout = 3, .kh = 1, .kw = 8, .sh = 1, .sw = 4},
        {.batch = 1, .cin = 3, .h = 35, .w = 2, .cout = 4, .kh = 8, .kw = 1, .sh = 4, .sw = 1},
        {.batch = 2, .cin = 2, .h = 5, .w = 7, .cout = 2, .kh = 2, .kw = 3, .sh = 3, .sw = 4},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (int bias = 0; bias < 2; bias++) {
            convt_case(mtl, &cs[i], bias, "conv_transpose2d");
            convt_case(mtl_small, &cs[i], bias, "conv_transpose2d (blocked)");
            if (test_failed_now)
                return;
        }
}

static void test_stft(void)
{
    ss_stft_desc d = {.batch = 3, .length = 1001, .n_fft = 64, .hop = 16};
    size_t nx = (size_t)d.batch * (size_t)d.length;
    size_t ns = (size_t)d.batch * 2 * (size_t)(d.n_fft / 2 + 1) * (size_t)ss_stft_frames(&d);
    float *x = rnd(cpu, nx, 1.0f), *sc = ss_alloc(cpu, ns), *xc = ss_alloc(cpu, nx);
    float *mx = dupb(mtl, x, nx), *sm = ss_alloc(mtl, ns), *xm = ss_alloc(mtl, nx);
    CHECK(x && sc && xc && mx && sm && xm, "alloc");
    ss_stft(cpu, &d, x, sc);
    ss_stft(mtl, &d, mx, sm);
    EXPECT("stft (CPU on shared buffers)", mtl, sm, sc, ns);
    ss_istft(cpu, &d, sc, xc);
    ss_istft(mtl, &d, sm, xm);
    EXPECT("istft (CPU on shared buffers)", mtl, xm, xc, nx);
    ss_free(cpu, x), ss_free(cpu, sc), ss_free(cpu, xc), ss_free(mtl, mx), ss_free(mtl, sm), ss_free(mtl, xm);
}

/* The GRU against the CPU's: one call, in two pieces with the state carried, y = x (in == hidden) */
static void test_gru(void)
{
    HAS_SLOT(gru);
    static const struct { ss_gru_desc d; int cut; } cases[] = {
        {{1, 20, 256, 256}, 0}, {{2, 11, 256, 256}, 4}, {{3, 9, 33, 20}, 1}, {{2, 5, 1, 1}, 0}, {{1, 3, 40, 40}, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int bias = 0; bias < 2; bias++) {
            ss_gru_desc d = cases[ci].d;
            int H = d.hidden, cut = cases[ci].cut;
            size_t nx = (size_t)d.batch * d.seq * d.in, ny = (size_t)d.batch * d.seq * H, nh = (size_t)d.batch * H;
            size_t g3 = 3 * (size_t)H;
            float k = 1.0f / sqrtf((float)H);
            float *x = rnd(cpu, nx, 2.0f), *wi = rnd(cpu, g3 * d.in, k), *wh = rnd(cpu, g3 * H, k);
            float *bi = rnd(cpu, g3, k), *bh = rnd(cpu, g3, k), *h = rnd(cpu, nh, 1.0f), *yc = ss_alloc(cpu, ny);
            float *sc = ss_alloc(cpu, ss_gru_scratch(&d));
            float *mx = dupb(mtl, x, nx), *mwi = dupb(mtl, wi, g3 * d.in), *mwh = dupb(mtl, wh, g3 * H);
            float *mbi = dupb(mtl, bi, g3), *mbh = dupb(mtl, bh, g3), *mh = dupb(mtl, h, nh), *ym = ss_alloc(mtl, ny);
            float *ms = ss_alloc(mtl, ss_gru_scratch(&d));
            CHECK(x && wi && wh && bi && bh && h && yc && sc && mx && mwi && mwh && mbi && mbh && mh && ym && ms,
                  "alloc");
            ss_gru(cpu, &d, x, wi, wh, bias ? bi : NULL, bias ? bh : NULL, h, yc, sc);
            if (cut) {
                /* the two pieces laid out as a stream's caller has them */
                ss_gru_desc p1 = d, p2 = d;
                p1.seq = cut, p2.seq = d.seq - cut;
                float *xa = ss_alloc(mtl, (size_t)d.batch * cut * d.in), *xb = ss_alloc(mtl, (size_t)d.batch * p2.seq * d.in);
                float *ya = ss_alloc(mtl, (size_t)d.batch * cut * H), *yb = ss_alloc(mtl, (size_t)d.batch * p2.seq * H);
                CHECK(xa && xb && ya && yb, "alloc");
                ss_copy2d(mtl, xa, (size_t)cut * d.in, mx, (size_t)d.seq * d.in, d.batch, (size_t)cut * d.in);
                ss_copy2d(mtl, xb, (size_t)p2.seq * d.in, mx + (size_t)cut * d.in, (size_t)d.seq * d.in, d.batch,
                          (size_t)p2.seq * d.in);
                ss_gru(mtl, &p1, xa, mwi, mwh, bias ? mbi : NULL, bias ? mbh : NULL, mh, ya, ms);
                ss_gru(mtl, &p2, xb, mwi, mwh, bias ? mbi : NULL, bias ? mbh : NULL, mh, yb, ms);
                ss_copy2d(mtl, ym, (size_t)d.seq * H, ya, (size_t)cut * H, d.batch, (size_t)cut * H);
                ss_copy2d(mtl, ym + (size_t)cut * H, (size_t)d.seq * H, yb, (size_t)p2.seq * H, d.batch,
                          (size_t)p2.seq * H);
                EXPECT("gru in two pieces", mtl, ym, yc, ny);
                EXPECT("gru in two pieces: final state", mtl, mh, h, nh);
                ss_free(mtl, xa), ss_free(mtl, xb), ss_free(mtl, ya), ss_free(mtl, yb);
            } else {
                float *out = d.in == H ? mx : ym;              /* y = x where the shapes allow */
                ss_gru(mtl, &d, mx, mwi, mwh, bias ? mbi : NULL, bias ? mbh : NULL, mh, out, ms);
                EXPECT(d.in == H ? "gru, y = x" : "gru", mtl, out, yc, ny);
                EXPECT("gru: final state", mtl, mh, h, nh);
            }
            ss_free(cpu, x), ss_free(cpu, wi), ss_free(cpu, wh), ss_free(cpu, bi), ss_free(cpu, bh);
            ss_free(cpu, h), ss_free(cpu, yc), ss_free(cpu, sc);
            ss_free(mtl, mx), ss_free(mtl, mwi), ss_free(mtl, mwh), ss_free(mtl, mbi), ss_free(mtl, mbh);
            ss_free(mtl, mh), ss_free(mtl, ym), ss_free(mtl, ms);
        }
}

/* The host code (kernels/metal/backend_metal.m, macOS only) type-checked with
 * clang against the minimal Metal/Foundation declarations in tests/metal_stubs. */
static void test_host_syntax(void)
{
#ifdef __APPLE__
    SKIP("on macOS the real build compiles backend_metal.m");
#else
    if (system("clang --version >/dev/null 2>&1") != 0)
        SKIP("clang not found");
    const char *root = getenv("SS_ROOT");
    char cmd[4096], dir[] = "/tmp/ss-metal-syntax.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    const char *r = root && *root ? root : ".";
    snprintf(cmd, sizeof cmd,
             "cd '%s' && sh kernels/metal/embed.sh '%s/metal_source.h' kernels/metal/ss_metal_params.h "
             "kernels/metal/common.metal kernels/metal/elementwise.metal kernels/metal/reduce.metal "
             "kernels/metal/gemm.metal kernels/metal/conv.metal && "
             "clang -fsyntax-only -x objective-c -fno-objc-arc -std=c11 -Wall -Wextra -Werror -Wshadow -Wvla "
             "-Wformat=2 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Itests/metal_stubs -I'%s' -Isrc "
             "kernels/metal/backend_metal.m >'%s/log' 2>&1",
             r, dir, dir, dir);
    int rc = system(cmd);
    char log[1024] = "", path[64];
    snprintf(path, sizeof path, "%s/log", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(log, 1, sizeof log - 1, f);
        log[n] = '\0';
        fclose(f);
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/metal_source.h", dir);
    unlink(path);
    rmdir(dir);
    CHECK(rc == 0, "clang -fsyntax-only on backend_metal.m: %s", log);
#endif
}

static void test_registry(void)
{
    const ss_backend_iface *bi = ss_backend_find("mps");
    CHECK(bi != NULL, "no mps backend registered in the test build");
    const ss_backend_iface *const *l = ss_backend_list();
    CHECK(l[0] == bi, "mps is not first in the auto order of this build (no CUDA)");
    CHECK(strcmp(ss_backend_iface_of(mtl)->name, "mps") == 0, "opened %s", ss_backend_iface_of(mtl)->name);
}

int main(void)
{
    ss_error e = {0};
    ss_backend_params bp = {.threads = 2};
    if (ss_backend_open("cpu", &bp, &cpu, NULL, 0, &e) != SS_OK || ss_backend_open("mps", &bp, &mtl, NULL, 0, &e) != SS_OK) {
        printf("FAIL test_metal_ops: cannot open backends: %s\n", e.msg);
        return 1;
    }
    setenv("STEMSPLIT_METAL_EMU_COL", "300", 1);
    if (ss_backend_open("mps", &bp, &mtl_small, NULL, 0, &e) != SS_OK) {
        printf("FAIL test_metal_ops: %s\n", e.msg);
        return 1;
    }
    unsetenv("STEMSPLIT_METAL_EMU_COL");
    RUN(test_registry);
    RUN(test_emulator);
    RUN(test_elementwise);
    RUN(test_affine_glu);
    RUN(test_copies);
    RUN(test_transpose);
    RUN(test_reductions);
    RUN(test_group_norm);
    RUN(test_mul_activate);
    RUN(test_rms_norm);
    RUN(test_rope);
    RUN(test_gru);
    RUN(test_gemm);
    RUN(test_gemm_precision);
    RUN(test_conv2d);
    RUN(test_conv_transpose2d);
    RUN(test_stft);
    RUN(test_host_syntax);
    ss_emu_stats st;
    ss_emu_get_stats(&st);
    printf("# worst relative error %.3g (%s); emulator: %lld dispatches, %lld threadgroups, %lld threads, "
           "%lld barriers, %lld simdgroup reductions\n",
           worst, worst_op, st.dispatches, st.threadgroups, st.threads, st.barriers, st.simd_ops);
    ss_backend_close(mtl_small);
    ss_backend_close(mtl);
    ss_backend_close(cpu);
    return test_summary();
}

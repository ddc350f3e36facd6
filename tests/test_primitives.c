/* test_primitives.c - the model-agnostic ops of API 12 (mul, the ss_act
 * activations, RMS norm in both forms, instance norm, rotary embedding,
 * batched attention) and API 14 (the GRU) through the public wrappers: on the CPU backend against
 * double-precision formulas written out here, and on a backend that has none
 * of these ops and keeps its memory apart from the host's (every op goes
 * through the dispatcher's download / reference op / upload fallback), which
 * must give the CPU backend's bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test.h"

/* ---- a backend with no ops whose buffers are "device" memory ------------------------- */

static int mirror_count(void) { return 1; }
static ss_status mirror_info(int index, ss_device_info *out)
{
    memset(out, 0, sizeof *out);
    strcpy(out->backend, "mirror");
    out->index = index;
    strcpy(out->name, "test device without ops");
    out->usable = 1;
    return SS_OK;
}
static ss_status mirror_init(const ss_backend_params *p, void **ctx, ss_error *err)
{
    (void)p, (void)err;
    *ctx = NULL;
    return SS_OK;
}
static void mirror_free(void *ctx) { (void)ctx; }
static void *mirror_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    return malloc(bytes ? bytes : 1);
}
static void mirror_release(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}
static ss_status mirror_copy(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    (void)ctx, (void)err;
    memcpy(dst, src, bytes);
    return SS_OK;
}
static const ss_backend_iface mirror_iface = {
    .api_version = SS_BACKEND_API_VERSION, .name = "mirror", .device_count = mirror_count,
    .device_info = mirror_info, .init = mirror_init, .free = mirror_free, .host_memory = 0,
    .alloc = mirror_alloc, .release = mirror_release, .upload = mirror_copy, .download = mirror_copy,
};

static ss_backend *open_cpu(void)
{
    ss_backend *be = NULL;
    ss_backend_params p = {.threads = 2, .precision = SS_PREC_FP32};
    char note[256];
    ss_error err;
    if (ss_backend_open("cpu", &p, &be, note, sizeof note, &err) != SS_OK)
        return NULL;
    return be;
}

static ss_backend *open_mirror(void)
{
    ss_backend *be = NULL;
    ss_backend_params p = {.threads = 2, .precision = SS_PREC_FP32};
    ss_error err;
    if (ss_backend_open_iface(&mirror_iface, 0, &p, &be, &err) != SS_OK)
        return NULL;
    return be;
}

static float *rnd(size_t n, unsigned seed, float lo, float hi)
{
    float *x = malloc(n * sizeof *x);
    if (!x)
        return NULL;
    unsigned s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)(s >> 8) / 16777216.0f;
    }
    return x;
}

/* ss_X on the device copies of host arrays: upload, run, download */
static float *dev(ss_backend *be, const float *h, size_t n)
{
    float *d = ss_alloc(be, n);
    if (d && h)
        ss_upload(be, d, h, n);
    return d;
}

static double rel_err(const float *y, const double *r, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e += (y[i] - r[i]) * (y[i] - r[i]);
        s += r[i] * r[i];
    }
    return sqrt(e / (s > 0 ? s : 1));
}

/* ---- mul and the activations ----------------------------------------------------- */

static double act_ref(ss_act a, double x, double alpha)
{
    switch (a) {
    case SS_ACT_RELU: return x > 0 ? x : 0;
    case SS_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case SS_ACT_TANH: return tanh(x);
    case SS_ACT_SILU: return x / (1 + exp(-x));
    case SS_ACT_ELU: return x > 0 ? x : alpha * expm1(x);
    case SS_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case SS_ACT_POW: return pow(fabs(x), alpha);
    default: return NAN;
    }
}

static void test_mul_and_activations(void)
{
    ss_backend *be = open_cpu();
    CHECK(be, "cpu backend");
    size_t n = 40003;                     /* odd: a tail past the vector width and the task blocks */
    float *a = rnd(n, 1, -12, 12), *b = rnd(n, 2, -3, 3), *y = malloc(n * sizeof *y);
    CHECK(a && b && y, "oom");
    ss_mul(be, y, a, b, n);
    CHECK(ss_backend_status(be, NULL) == SS_OK, "mul failed");
    for (size_t i = 0; i < n; i++)
        CHECK(y[i] == a[i] * b[i], "mul at %zu: %g != %g", i, y[i], a[i] * b[i]);
    for (int k = 0; k < SS_ACT_COUNT; k++) {
        float alpha = k == SS_ACT_LEAKY_RELU ? 0.2f : k == SS_ACT_POW ? 0.5f : 1.3f;
        ss_activate(be, y, a, n, (ss_act)k, alpha);
        CHECK(ss_backend_status(be, NULL) == SS_OK, "activation %d failed", k);
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double r = act_ref((ss_act)k, a[i], alpha);
            worst = fmax(worst, fabs(y[i] - r) / fmax(fabs(r), 1e-6));
        }
        CHECK(worst < 2e-6, "activation %d: max relative error %g", k, worst);
    }
    /* in place, and the shorthands are the same op */
    memcpy(y, a, n * sizeof *y);
    ss_tanh(be, y, y, n);
    for (size_t i = 0; i < n; i++)
        CHECK(fabs(y[i] - tanh(a[i])) <= 2e-7 * fmax(1, fabs(tanh(a[i]))), "in-place tanh at %zu", i);
    ss_activate(be, y, a, n, (ss_act)SS_ACT_COUNT, 0);
    ss_error err;
    CHECK(ss_backend_status(be, &err) == SS_E_INTERNAL, "an unknown activation must be refused");
    free(a), free(b), free(y);
    ss_backend_close(be);
}

/* ---- norms ----------------------------------------------------------------------- */

static void test_rms_norm_both_forms(void)
{
    ss_backend *be = open_cpu();
    CHECK(be, "cpu backend");
    int rows = 37, dim = 515;
    size_t n = (size_t)rows * dim;
    float *x = rnd(n, 3, -2, 2), *g = rnd((size_t)dim, 4, 0.5f, 1.5f), *y = malloc(n * sizeof *y);
    double *r = malloc(n * sizeof *r);
    CHECK(x && g && y && r, "oom");
    for (int i = 0; i < dim; i++)
        x[5 * dim + i] = 0.0f;            /* a silent row: 0 out, never NaN */
    for (int form = 0; form < 2; form++)
        for (int with_g = 0; with_g < 2; with_g++) {
            float eps = form == SS_RMS_L2 ? 1e-12f : 1e-6f;
            ss_rms_norm(be, y, x, rows, dim, with_g ? g : NULL, eps, (ss_rms_form)form);
            CHECK(ss_backend_status(be, NULL) == SS_OK, "rms_norm failed");
            for (int q = 0; q < rows; q++) {
                double ss = 0;
                for (int i = 0; i < dim; i++)
                    ss += (double)x[q * dim + i] * x[q * dim + i];
                double f = form == SS_RMS_L2 ? sqrt((double)dim) / fmax(sqrt(ss), eps) : 1 / sqrt(ss / dim + eps);
                for (int i = 0; i < dim; i++)
                    r[q * dim + i] = x[q * dim + i] * f * (with_g ? g[i] : 1.0);
            }
            double e = rel_err(y, r, n);
            CHECK(e < 1e-6, "form %d gamma %d: relative L2 error %g", form, with_g, e);
            for (int i = 0; i < dim; i++)
                CHECK(y[5 * dim + i] == 0.0f, "silent row gives %g", y[5 * dim + i]);
        }
    free(x), free(g), free(y), free(r);
    ss_backend_close(be);
}

static void test_instance_norm(void)
{
    ss_backend *be = open_cpu();
    CHECK(be, "cpu backend");
    int batch = 2, ch = 3, len = 1001;
    size_t n = (size_t)batch * ch * len;
    float *x = rnd(n, 5, -1, 3), *g = rnd((size_t)ch, 6, 0.5f, 1.5f), *b = rnd((size_t)ch, 7, -1, 1);
    float *y = malloc(n * sizeof *y);
    double *r = malloc(n * sizeof *r);
    CHECK(x && g && b && y && r, "oom");
    ss_instance_norm(be, y, x, batch, ch, len, g, b, 1e-5f);
    CHECK(ss_backend_status(be, NULL) == SS_OK, "instance_norm failed");
    for (int q = 0; q < batch * ch; q++) {
        const float *xr = x + (size_t)q * len;
        double m = 0, v = 0;
        for (int i = 0; i < len; i++)
            m += xr[i];
        m /= len;
        for (int i = 0; i < len; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= len;                          /* biased, as torch's InstanceNorm */
        for (int i = 0; i < len; i++)
            r[(size_t)q * len + i] = (xr[i] - m) / sqrt(v + 1e-5) * g[q % ch] + b[q % ch];
    }
    double e = rel_err(y, r, n);
    CHECK(e < 1e-6, "relative L2 error %g", e);
    free(x), free(g), free(b), free(y), free(r);
    ss_backend_close(be);
}

/* ---- rotary embedding and batched attention ------------------------------------------- */

static void test_rope(void)
{
    ss_backend *be = open_cpu();
    CHECK(be, "cpu backend");
    int batch = 3, seq = 17, heads = 2, hd = 8, ld = 3 * heads * hd + 1;   /* q of a packed qkv row */
    size_t n = (size_t)batch * seq * ld;
    float *x = rnd(n, 8, -1, 1), *y = rnd(n, 9, -1, 1), *cs = malloc((size_t)seq * hd * sizeof *cs);
    float *y0 = malloc(n * sizeof *y0);
    CHECK(x && y && cs && y0, "oom");
    for (int p = 0; p < seq; p++)             /* rotary_embedding_torch: theta 10000, freq i = theta^(-2i/hd) */
        for (int i = 0; i < hd / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / hd);
            cs[(p * hd / 2 + i) * 2] = (float)cos(ang);
            cs[(p * hd / 2 + i) * 2 + 1] = (float)sin(ang);
        }
    memcpy(y0, y, n * sizeof *y);
    ss_rope(be, y, x, batch, seq, heads, hd, ld, cs);
    CHECK(ss_backend_status(be, NULL) == SS_OK, "rope failed");
    double worst = 0;
    for (int b = 0; b < batch; b++)
        for (int p = 0; p < seq; p++)
            for (int c = 0; c < ld; c++) {
                size_t o = ((size_t)b * seq + p) * ld + c;
                if (c >= heads * hd) {
                    CHECK(y[o] == y0[o], "column %d past the heads changed", c);
                    continue;
                }
                int i = (c % hd) / 2;
                double ang = p * pow(10000.0, -2.0 * i / hd);
                double x0 = x[o - (c % 2)], x1 = x[o - (c % 2) + 1];
                double r = c % 2 == 0 ? x0 * cos(ang) - x1 * sin(ang) : x1 * cos(ang) + x0 * sin(ang);
                worst = fmax(worst, fabs(y[o] - r));
            }
    CHECK(worst < 1e-6, "max error %g", worst);
    /* in place gives the same bits */
    ss_rope(be, x, x, batch, seq, heads, hd, ld, cs);
    for (int b = 0; b < batch * seq; b++)
        for (int c = 0; c < heads * hd; c++)
            CHECK(x[(size_t)b * ld + c] == y[(size_t)b * ld + c], "in place differs");
    ss_rope(be, y, x, batch, seq, heads, 7, ld, cs);
    CHECK(ss_backend_status(be, NULL) == SS_E_INTERNAL, "an odd head size must be refused");
    free(x), free(y), free(y0), free(cs);
    ss_backend_close(be);
}

static void test_attention_batched(void)
{
    ss_backend *be = open_cpu();
    CHECK(be, "cpu backend");
    int batch = 5, heads = 2, nq = 9, hd = 8, w = heads * hd, ld = 3 * w;    /* packed qkv rows */
    size_t n = (size_t)batch * nq * ld, no = (size_t)batch * nq * w;
    float *qkv = rnd(n, 10, -2, 2), *o = malloc(no * sizeof *o);
    double *r = malloc(no * sizeof *r);
    CHECK(qkv && o && r, "oom");
    ss_attn_desc d = {.heads = heads, .nq = nq, .nk = nq, .hd = hd, .ldq = ld, .ldk = ld, .ldv = ld, .ldo = w,
                      .scale = 1.0f / sqrtf((float)hd), .batch = batch, .stride_q = (int64_t)nq * ld,
                      .stride_k = (int64_t)nq * ld, .stride_v = (int64_t)nq * ld, .stride_o = (int64_t)nq * w};
    CHECK(ss_attention_fused(be, &d), "the CPU runs every attention");
    ss_attention(be, &d, qkv, qkv + w, qkv + 2 * w, o);
    CHECK(ss_backend_status(be, NULL) == SS_OK, "attention failed");
    for (int b = 0; b < batch; b++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < nq; i++) {
                const float *base = qkv + (size_t)b * nq * ld;
                double s[16], mx = -INFINITY, z = 0;
                for (int j = 0; j < nq; j++) {
                    double dot = 0;
                    for (int c = 0; c < hd; c++)
                        dot += (double)base[i * ld + h * hd + c] * base[j * ld + w + h * hd + c];
                    s[j] = dot / sqrt((double)hd);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < nq; j++)
                    z += (s[j] = exp(s[j] - mx));
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int j = 0; j < nq; j++)
                        acc += s[j] / z * base[j * ld + 2 * w + h * hd + c];
                    r[((size_t)b * nq + i) * w + h * hd + c] = acc;
                }
            }
    double e = rel_err(o, r, no);
    CHECK(e < 1e-5, "relative L2 error %g", e);
    free(qkv), free(o), free(r);
    ss_backend_close(be);
}

/* ---- GRU (API 14) ------------------------------------------------------------------- */

static double sigm(double v) { return 1 / (1 + exp(-v)); }

/* nn.GRU in double: y [batch, seq, H], h [batch, H] in (the initial state) and out */
static void gru_ref(const ss_gru_desc *d, const float *x, const float *wi, const float *wh, const float *bi,
                    const float *bh, double *h, double *y)
{
    int H = d->hidden;
    double g[3][512];
    for (int b = 0; b < d->batch; b++) {
        double *hb = h + (size_t)b * H;
        for (int t = 0; t < d->seq; t++) {
            const float *xt = x + ((size_t)b * d->seq + t) * d->in;
            double gi[3][512];
            for (int q = 0; q < 3; q++)
                for (int j = 0; j < H; j++) {
                    int row = q * H + j;
                    double si = bi ? bi[row] : 0, sh = bh ? bh[row] : 0;
                    for (int i = 0; i < d->in; i++)
                        si += (double)wi[(size_t)row * d->in + i] * xt[i];
                    for (int i = 0; i < H; i++)
                        sh += (double)wh[(size_t)row * H + i] * hb[i];
                    gi[q][j] = si, g[q][j] = sh;
                }
            double *yt = y + ((size_t)b * d->seq + t) * H;
            for (int j = 0; j < H; j++) {
                double r = sigm(gi[0][j] + g[0][j]), z = sigm(gi[1][j] + g[1][j]);
                double n = tanh(gi[2][j] + r * g[2][j]);
                yt[j] = (1 - z) * n + z * hb[j];
            }
            memcpy(hb, yt, (size_t)H * sizeof *hb);
        }
    }
}

typedef struct gru_case {
    ss_gru_desc d;
    float *x, *wi, *wh, *bi, *bh, *h0;
} gru_case;

/* random weights as nn.GRU initialises them (+-1/sqrt(H)), inputs in [-2, 2], a nonzero initial state */
static int gru_case_new(gru_case *c, ss_gru_desc d, unsigned seed)
{
    float k = 1.0f / sqrtf((float)d.hidden);
    size_t g3 = 3 * (size_t)d.hidden;
    c->d = d;
    c->x = rnd((size_t)d.batch * d.seq * d.in, seed, -2, 2);
    c->wi = rnd(g3 * d.in, seed + 1, -k, k);
    c->wh = rnd(g3 * d.hidden, seed + 2, -k, k);
    c->bi = rnd(g3, seed + 3, -k, k);
    c->bh = rnd(g3, seed + 4, -k, k);
    c->h0 = rnd((size_t)d.batch * d.hidden, seed + 5, -1, 1);
    return c->x && c->wi && c->wh && c->bi && c->bh && c->h0;
}

static void gru_case_free(gru_case *c) { free(c->x), free(c->wi), free(c->wh), free(c->bi), free(c->bh), free(c->h0); }

/* ss_gru on be for steps [t0, t0 + len) of c with the state h (host, [batch, H], updated) into
 * the host y [batch, c->d.seq, H] at those steps; biases unless nobias */
static void gru_run(ss_backend *be, const gru_case *c, int t0, int len, int nobias, float *h, float *y)
{
    ss_gru_desc d = c->d;
    d.seq = len;
    int H = d.hidden;
    size_t nx = (size_t)d.batch * len * d.in, ny = (size_t)d.batch * len * H, g3 = 3 * (size_t)H;
    float *xp = malloc((nx ? nx : 1) * sizeof *xp), *yp = malloc((ny ? ny : 1) * sizeof *yp);
    if (!xp || !yp) {
        free(xp), free(yp);
        return;
    }
    for (int b = 0; b < d.batch; b++)
        memcpy(xp + (size_t)b * len * d.in, c->x + ((size_t)b * c->d.seq + t0) * d.in,
               (size_t)len * d.in * sizeof *xp);
    float *dx = dev(be, xp, nx), *dwi = dev(be, c->wi, g3 * d.in), *dwh = dev(be, c->wh, g3 * H);
    float *dbi = nobias ? NULL : dev(be, c->bi, g3), *dbh = nobias ? NULL : dev(be, c->bh, g3);
    float *dh = dev(be, h, (size_t)d.batch * H), *dy = dev(be, NULL, ny), *ds = dev(be, NULL, ss_gru_scratch(&d));
    ss_gru(be, &d, dx, dwi, dwh, dbi, dbh, dh, dy, ds);
    ss_download(be, h, dh, (size_t)d.batch * H);
    ss_download(be, yp, dy, ny);
    for (int b = 0; b < d.batch; b++)
        memcpy(y + ((size_t)b * c->d.seq + t0) * H, yp + (size_t)b * len * H, (size_t)len * H * sizeof *y);
    ss_free(be, dx), ss_free(be, dwi), ss_free(be, dwh), ss_free(be, dbi), ss_free(be, dbh);
    ss_free(be, dh), ss_free(be, dy), ss_free(be, ds);
    free(xp), free(yp);
}

static void test_gru_against_double(void)
{
    ss_backend *be = open_cpu();
    CHECK(be, "cpu backend");
    /* batch, seq, in, hidden: odd sizes (lanes and row blocks with tails), batch > 1,
     * DeepFilterNet3's 256 */
    static const ss_gru_desc shapes[] = {{1, 7, 5, 3}, {2, 9, 33, 17}, {3, 20, 64, 48}, {1, 40, 256, 256},
                                         {2, 5, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int nobias = 0; nobias < 2; nobias++) {
            gru_case c;
            ss_gru_desc d = shapes[s];
            int H = d.hidden;
            size_t ny = (size_t)d.batch * d.seq * H, nh = (size_t)d.batch * H;
            float *y = malloc(ny * sizeof *y), *h = malloc(nh * sizeof *h);
            double *ry = malloc(ny * sizeof *ry), *rh = malloc(nh * sizeof *rh);
            CHECK(gru_case_new(&c, d, 40 + (unsigned)s) && y && h && ry && rh, "oom");
            memcpy(h, c.h0, nh * sizeof *h);
            for (size_t i = 0; i < nh; i++)
                rh[i] = c.h0[i];
            gru_run(be, &c, 0, d.seq, nobias, h, y);
            CHECK(ss_backend_status(be, NULL) == SS_OK, "gru failed");
            gru_ref(&d, c.x, c.wi, c.wh, nobias ? NULL : c.bi, nobias ? NULL : c.bh, rh, ry);
            double e = rel_err(y, ry, ny), eh = rel_err(h, rh, nh);
            CHECK(e < 2e-6 && eh < 2e-6, "shape %zu bias %d: relative L2 error %g (y), %g (final state)", s,
                  !nobias, e, eh);
            for (size_t i = 0; i < nh; i++)     /* the final state is the last step's output */
                CHECK(h[i] == y[((i / H) * d.seq + d.seq - 1) * H + i % H], "final state differs from y");
            gru_case_free(&c);
            free(y), free(h), free(ry), free(rh);
        }
    ss_backend_close(be);
}

/* A sequence in pieces with the state carried gives the bits of one call, whatever the threads;
 * y may be x; seq 0 leaves the state alone; a bad shape is an error */
static void test_gru_pieces_and_rules(void)
{
    ss_backend *be = open_cpu(), *one = NULL;
    ss_backend_params p1 = {.threads = 1, .precision = SS_PREC_FP32};
    char note[256];
    CHECK(be && ss_backend_open("cpu", &p1, &one, note, sizeof note, NULL) == SS_OK, "cpu backends");
    static const ss_gru_desc shapes[] = {{1, 30, 256, 256}, {3, 23, 40, 40}, {4, 64, 96, 96}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        gru_case c;
        ss_gru_desc d = shapes[s];
        int H = d.hidden;
        size_t ny = (size_t)d.batch * d.seq * H, nh = (size_t)d.batch * H;
        float *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2), *h1 = malloc(nh * sizeof *h1);
        float *h2 = malloc(nh * sizeof *h2);
        CHECK(gru_case_new(&c, d, 60 + (unsigned)s) && y1 && y2 && h1 && h2, "oom");
        memcpy(h1, c.h0, nh * sizeof *h1);
        gru_run(be, &c, 0, d.seq, 0, h1, y1);
        /* pieces 1, 0, 7, rest, on one thread */
        int cuts[] = {0, 1, 1, 8, d.seq};
        memcpy(h2, c.h0, nh * sizeof *h2);
        for (int k = 0; k + 1 < 5; k++)
            gru_run(one, &c, cuts[k], cuts[k + 1] - cuts[k], 0, h2, y2);
        CHECK(ss_backend_status(be, NULL) == SS_OK && ss_backend_status(one, NULL) == SS_OK, "gru failed");
        CHECK(memcmp(y1, y2, ny * sizeof *y1) == 0, "shape %zu: y in pieces differs from one call", s);
        CHECK(memcmp(h1, h2, nh * sizeof *h1) == 0, "shape %zu: final state in pieces differs", s);
        /* in place: y = x (in == hidden) */
        if (d.in == H) {
            float *dx = dev(be, c.x, ny), *dwi = dev(be, c.wi, 3 * (size_t)H * H), *dwh = dev(be, c.wh, 3 * (size_t)H * H);
            float *dbi = dev(be, c.bi, 3 * (size_t)H), *dbh = dev(be, c.bh, 3 * (size_t)H);
            float *dh = dev(be, c.h0, nh), *ds = dev(be, NULL, ss_gru_scratch(&d));
            ss_gru(be, &d, dx, dwi, dwh, dbi, dbh, dh, dx, ds);
            ss_download(be, y2, dx, ny);
            ss_download(be, h2, dh, nh);
            CHECK(ss_backend_status(be, NULL) == SS_OK, "gru in place failed");
            CHECK(memcmp(y1, y2, ny * sizeof *y1) == 0 && memcmp(h1, h2, nh * sizeof *h1) == 0,
                  "shape %zu: y = x differs", s);
            ss_free(be, dx), ss_free(be, dwi), ss_free(be, dwh), ss_free(be, dbi), ss_free(be, dbh);
            ss_free(be, dh), ss_free(be, ds);
        }
        gru_case_free(&c);
        free(y1), free(y2), free(h1), free(h2);
    }
    /* seq 0: h as it was, no error; batch 0: an error naming the op */
    float h[4] = {1, 2, 3, 4}, w[12] = {0}, s[12];
    ss_gru_desc d0 = {2, 0, 1, 2};
    ss_gru(be, &d0, w, w, w, NULL, NULL, h, s, s);
    CHECK(ss_backend_status(be, NULL) == SS_OK && h[0] == 1 && h[3] == 4, "seq 0 changed the state");
    ss_gru_desc bad = {0, 3, 1, 2};
    ss_error err = {SS_OK, ""};
    ss_gru(be, &bad, w, w, w, NULL, NULL, h, s, s);
    CHECK(ss_backend_status(be, &err) == SS_E_INTERNAL && strstr(err.msg, "gru"), "batch 0 accepted");
    ss_backend_close(be);
    ss_backend_close(one);
}

/* ---- the fallback: a backend without these ops gives the CPU's bits ---------------------- */

static void test_fallback_matches_cpu(void)
{
    ss_backend *cpu = open_cpu(), *mir = open_mirror();
    CHECK(cpu && mir, "backends");
    int rows = 6, seq = 5, heads = 2, hd = 4, ld = 11;
    size_t n = (size_t)rows * seq * ld;
    float *x = rnd(n, 11, -3, 3), *b = rnd(n, 12, -1, 1), *g = rnd((size_t)ld, 13, 0.5f, 1.5f);
    float *cs = rnd((size_t)seq * hd, 14, -1, 1);
    float *hc = malloc(n * sizeof *hc), *hm = malloc(n * sizeof *hm);
    CHECK(x && b && g && cs && hc && hm, "oom");
    for (int op = 0; op < 5; op++) {
        ss_backend *bes[2] = {cpu, mir};
        float *outs[2] = {hc, hm};
        for (int k = 0; k < 2; k++) {
            ss_backend *be = bes[k];
            float *dx = dev(be, x, n), *db = dev(be, b, n), *dg = dev(be, g, (size_t)ld), *dc = dev(be, cs, (size_t)seq * hd);
            float *dy = dev(be, b, n);          /* starts as b: rope keeps the columns past the heads */
            switch (op) {
            case 0: ss_mul(be, dy, dx, db, n); break;
            case 1: ss_activate(be, dy, dx, n, SS_ACT_ELU, 0.7f); break;
            case 2: ss_rms_norm(be, dy, dx, rows * seq, ld, dg, 1e-12f, SS_RMS_L2); break;
            case 3: ss_rope(be, dy, dx, rows, seq, heads, hd, ld, dc); break;
            default: ss_rope(be, dx, dx, rows, seq, heads, hd, ld, dc); ss_copy2d(be, dy, n, dx, n, 1, n); break;
            }
            ss_download(be, outs[k], dy, n);
            CHECK(ss_backend_status(be, NULL) == SS_OK, "op %d on %s failed", op, k ? "mirror" : "cpu");
            ss_free(be, dx), ss_free(be, db), ss_free(be, dg), ss_free(be, dc), ss_free(be, dy);
        }
        CHECK(memcmp(hc, hm, n * sizeof *hc) == 0, "op %d: the fallback differs from the CPU backend", op);
    }
    free(x), free(b), free(g), free(cs), free(hc), free(hm);
    /* the GRU: y and the final state, with and without biases, y separate and y = x */
    gru_case c;
    ss_gru_desc d = {3, 11, 20, 20};
    size_t ny = (size_t)d.batch * d.seq * d.hidden, nh = (size_t)d.batch * d.hidden;
    float *yc = malloc(ny * sizeof *yc), *ym = malloc(ny * sizeof *ym), *hcs = malloc(nh * sizeof *hcs);
    float *hms = malloc(nh * sizeof *hms);
    CHECK(gru_case_new(&c, d, 90) && yc && ym && hcs && hms, "oom");
    for (int nobias = 0; nobias < 2; nobias++) {
        memcpy(hcs, c.h0, nh * sizeof *hcs);
        memcpy(hms, c.h0, nh * sizeof *hms);
        gru_run(cpu, &c, 0, d.seq, nobias, hcs, yc);
        gru_run(mir, &c, 0, 4, nobias, hms, ym);
        gru_run(mir, &c, 4, d.seq - 4, nobias, hms, ym);
        CHECK(ss_backend_status(cpu, NULL) == SS_OK && ss_backend_status(mir, NULL) == SS_OK, "gru failed");
        CHECK(memcmp(yc, ym, ny * sizeof *yc) == 0 && memcmp(hcs, hms, nh * sizeof *hcs) == 0,
              "gru (bias %d): the fallback differs from the CPU backend", !nobias);
    }
    float *dx = dev(mir, c.x, ny), *dwi = dev(mir, c.wi, 3 * nh / d.batch * d.in);
    float *dwh = dev(mir, c.wh, 3 * nh / d.batch * d.hidden), *dh = dev(mir, c.h0, nh);
    float *ds = dev(mir, NULL, ss_gru_scratch(&d));
    ss_gru(mir, &d, dx, dwi, dwh, NULL, NULL, dh, dx, ds);
    ss_download(mir, ym, dx, ny);
    ss_download(mir, hms, dh, nh);
    CHECK(ss_backend_status(mir, NULL) == SS_OK, "gru in place on the fallback failed");
    CHECK(memcmp(yc, ym, ny * sizeof *yc) == 0 && memcmp(hcs, hms, nh * sizeof *hcs) == 0,
          "gru y = x: the fallback differs from the CPU backend");
    ss_free(mir, dx), ss_free(mir, dwi), ss_free(mir, dwh), ss_free(mir, dh), ss_free(mir, ds);
    gru_case_free(&c);
    free(yc), free(ym), free(hcs), free(hms);
    ss_backend_close(cpu);
    ss_backend_close(mir);
}

int main(void)
{
    RUN(test_mul_and_activations);
    RUN(test_rms_norm_both_forms);
    RUN(test_instance_norm);
    RUN(test_rope);
    RUN(test_attention_batched);
    RUN(test_gru_against_double);
    RUN(test_gru_pieces_and_rules);
    RUN(test_fallback_matches_cpu);
    return test_summary();
}

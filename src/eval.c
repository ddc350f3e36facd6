/* eval.c - BSSEval v4 as museval computes it, and the MDX SDR (see eval.h).
 *
 * Notation as in museval/metrics.py: nsrc sources, nchan channels, F = 512
 * filter taps, x_p (p = j * nchan + c) the reference signals, e_q the
 * estimates (zero beyond their length, cut at the references' length).
 *
 * 1. Correlations, for lags 0..F-1 over the whole track:
 *        cxx[p][q][a] = sum_t x_p[t] x_q[t - a]
 *        cex[q][p][a] = sum_t e_q[t] x_p[t - a]
 *    museval takes them from one FFT of the whole zero-padded track; here
 *    the track is cut into blocks, each block's spectra multiplied and the
 *    products summed in the frequency domain, one inverse FFT at the end:
 *    the same sums, with memory that does not grow with the track.
 * 2. G[(j,c2,a),(i,c1,b)] = <x_{j,c2} delayed by a, x_{i,c1} delayed by b>
 *    (museval's _reshape_G order), D[(j,cj,a)][(e,c)] = cex[e,c][j,cj][a];
 *    (G + eps I) C = D by Cholesky (museval: np.linalg.solve, LU), with
 *    pivoted LU when Cholesky meets a non-positive pivot; the same for each
 *    source's own block G[j][j] and its rows of D (museval's Cj).
 * 3. Per frame: the references cut to the frame, convolved with the filters
 *    (overlap-save FFT convolution of the zero-extended frame), and the energies of
 *    museval's _bss_decomp_mtifilt / _bss_crit (images mode).
 */
#include "eval.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <fftw3.h>

#ifdef SS_ACCELERATE
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

#define F SS_EVAL_FILTER_LEN
/* block length of the correlation FFTs (the block advances by CORR_N - (F - 1)) */
#define CORR_N 8192
/* FFT length of the frames' overlap-save convolutions: its filter spectra stay in cache */
#define FRAME_N 4096

#if defined(OPENBLAS_VERSION)
static pthread_once_t eval_blas_once = PTHREAD_ONCE_INIT;
static void eval_blas_one_thread(void) { openblas_set_num_threads(1); }
#endif

/* complex stride of a spectrum of an n-point real FFT, rounded up so every
 * spectrum in an array keeps fftw_malloc's alignment */
static int64_t spec_stride(int64_t n) { return ((n / 2 + 1) + 3) & ~(int64_t)3; }

/* ---- linear algebra ------------------------------------------------------------------- */

/* In-place lower Cholesky of the n x n row-major a (upper triangle untouched).
 * Returns 0, or -1 at a non-positive pivot. */
static int cholesky(double *a, int n)
{
    const int nb = 96;
    for (int k = 0; k < n; k += nb) {
        int kb = n - k < nb ? n - k : nb;
        for (int j = k; j < k + kb; j++) {
            double *rj = a + (int64_t)j * n;
            double d = rj[j];
            for (int p = k; p < j; p++)
                d -= rj[p] * rj[p];
            if (!(d > 0.0))
                return -1;
            d = sqrt(d);
            rj[j] = d;
            for (int i = j + 1; i < k + kb; i++) {
                double *ri = a + (int64_t)i * n;
                double s = ri[j];
                for (int p = k; p < j; p++)
                    s -= ri[p] * rj[p];
                ri[j] = s / d;
            }
        }
        int rest = n - k - kb;
        if (rest > 0) {
            double *a11 = a + (int64_t)k * n + k;
            double *a21 = a + (int64_t)(k + kb) * n + k;
            double *a22 = a + (int64_t)(k + kb) * n + k + kb;
            cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, rest, kb, 1.0, a11, n,
                        a21, n);
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, rest, kb, -1.0, a21, n, 1.0, a22, n);
        }
    }
    return 0;
}

/* Solve with the factor of cholesky(): b (n x m, row-major) := A^-1 b. */
static void cholesky_solve(const double *l, int n, double *b, int m)
{
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, n, m, 1.0, l, n, b, m);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n, m, 1.0, l, n, b, m);
}

/* Gaussian elimination with partial pivoting (LAPACK's getrf/getrs, what
 * np.linalg.solve does) of the full n x n a; b (n x m) := a^-1 b.  -1 when
 * a pivot is exactly 0 (np.linalg.LinAlgError).  Blocked as getrf: a panel
 * of nb columns is factored in place (its pivots swap whole rows of a and b),
 * then the rows right of it are solved with its unit lower triangle and the
 * trailing matrix updated by one product. */
static int lu_solve(double *a, int n, double *b, int m)
{
    const int nb = 64;
    for (int k0 = 0; k0 < n; k0 += nb) {
        int kb = n - k0 < nb ? n - k0 : nb, kend = k0 + kb;
        for (int k = k0; k < kend; k++) {
            int piv = k;
            double best = fabs(a[(int64_t)k * n + k]);
            for (int i = k + 1; i < n; i++) {
                double v = fabs(a[(int64_t)i * n + k]);
                if (v > best) {
                    best = v;
                    piv = i;
                }
            }
            if (best == 0.0)
                return -1;
            if (piv != k) {
                for (int j = 0; j < n; j++) {
                    double t = a[(int64_t)k * n + j];
                    a[(int64_t)k * n + j] = a[(int64_t)piv * n + j];
                    a[(int64_t)piv * n + j] = t;
                }
                for (int j = 0; j < m; j++) {
                    double t = b[(int64_t)k * m + j];
                    b[(int64_t)k * m + j] = b[(int64_t)piv * m + j];
                    b[(int64_t)piv * m + j] = t;
                }
            }
            const double *rk = a + (int64_t)k * n;
            for (int i = k + 1; i < n; i++) {
                double *ri = a + (int64_t)i * n;
                double f = ri[k] /= rk[k];
                for (int j = k + 1; j < kend; j++)
                    ri[j] -= f * rk[j];
            }
        }
        int rest = n - kend;
        if (rest > 0) {
            cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, kb, rest, 1.0,
                        a + (int64_t)k0 * n + k0, n, a + (int64_t)k0 * n + kend, n);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rest, rest, kb, -1.0, a + (int64_t)kend * n + k0,
                        n, a + (int64_t)k0 * n + kend, n, 1.0, a + (int64_t)kend * n + kend, n);
        }
    }
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, n, m, 1.0, a, n, b, m);
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, n, m, 1.0, a, n, b, m);
    return 0;
}

/* (g + eps I) x = b for the symmetric n x n g (full, row-major; destroyed);
 * b (n x m) is overwritten by x.  *fallback counts LU solves. */
static ss_status solve_filters(double *g, int n, double *b, int m, int *fallback, ss_error *err)
{
    double *diag = malloc((size_t)n * sizeof *diag);
    if (!diag)
        return ss_fail(err, SS_E_NOMEM, "eval: out of memory for a %d x %d Gram matrix", n, n);
    for (int i = 0; i < n; i++) {
        g[(int64_t)i * n + i] += DBL_EPSILON;
        diag[i] = g[(int64_t)i * n + i];
    }
    ss_status st = SS_OK;
    double *b0 = malloc((size_t)n * (size_t)m * sizeof *b0);
    if (!b0) {
        free(diag);
        return ss_fail(err, SS_E_NOMEM, "eval: out of memory for a %d x %d Gram matrix", n, n);
    }
    memcpy(b0, b, (size_t)n * (size_t)m * sizeof *b0);
    if (cholesky(g, n) == 0) {
        cholesky_solve(g, n, b, m);
    } else {
        /* the upper triangle is intact: rebuild the matrix, then pivoted LU */
        for (int i = 0; i < n; i++) {
            g[(int64_t)i * n + i] = diag[i];
            for (int j = 0; j < i; j++)
                g[(int64_t)i * n + j] = g[(int64_t)j * n + i];
        }
        memcpy(b, b0, (size_t)n * (size_t)m * sizeof *b0);
        (*fallback)++;
        if (lu_solve(g, n, b, m) != 0)
            st = ss_fail(err, SS_E_DATA, "eval: the references' Gram matrix is singular");
    }
    free(b0);
    free(diag);
    return st;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static double sample(const float *x, int64_t len, int64_t t) { return (t >= 0 && t < len) ? (double)x[t] : 0.0; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ss_eval_nanmedian(const double *v, int n)
{
    if (n <= 0)
        return NAN;
    double *w = malloc((size_t)n * sizeof *w);
    if (!w)
        return NAN;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            w[m++] = v[i];
    double r = NAN;
    if (m > 0) {
        qsort(w, (size_t)m, sizeof *w, cmp_double);
        r = (m & 1) ? w[m / 2] : 0.5 * (w[m / 2 - 1] + w[m / 2]);
    }
    free(w);
    return r;
}

double ss_eval_nanmean(const double *v, int n)
{
    double s = 0.0;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) {
            s += v[i];
            m++;
        }
    return m ? s / m : NAN;
}

double ss_eval_mdx_sdr(const float *const *ref, const float *const *est, int nchan, int64_t length,
                       int64_t est_length)
{
    double num = 0.0, den = 0.0;
    for (int c = 0; c < nchan; c++)
        for (int64_t t = 0; t < length; t++) {
            double r = ref[c][t], e = t < est_length ? (double)est[c][t] : 0.0;
            num += r * r;
            den += (r - e) * (r - e);
        }
    return 10.0 * log10((num + 1e-7) / (den + 1e-7));
}

/* museval's _safe_db, then TrackStore's inf -> NaN */
static double safe_db(double num, double den)
{
    if (den == 0.0)
        return NAN;
    double v = 10.0 * log10(num / den);
    return isinf(v) ? NAN : v;
}

/* museval's _any_source_silent on samples [s, s + n): some source whose
 * channels sum to exactly 0 at every sample */
static int any_silent(const float *const *x, const int64_t *len, int nsrc, int nchan, int64_t s, int64_t n)
{
    for (int j = 0; j < nsrc; j++) {
        int silent = 1;
        for (int64_t t = s; t < s + n && silent; t++) {
            double sum = 0.0;
            for (int c = 0; c < nchan; c++)
                sum += sample(x[j * nchan + c], len[j], t);
            if (sum != 0.0)
                silent = 0;
        }
        if (silent)
            return 1;
    }
    return 0;
}

/* ---- 1. correlations ------------------------------------------------------------------- */

/* cxx: K*K*F, cex: K*K*F (K = nsrc * nchan) */
static ss_status correlations(const float *const *ref, const float *const *est, const int64_t *est_len, int k,
                              int nchan, int64_t length, double *cxx, double *cex, ss_error *err)
{
    const int64_t n = CORR_N, step = CORR_N - (F - 1), ns = spec_stride(CORR_N), nf = n / 2 + 1;
    double *buf = fftw_malloc(sizeof(double) * (size_t)n);
    fftw_complex *ux = fftw_malloc(sizeof(fftw_complex) * (size_t)(ns * k));
    fftw_complex *vx = fftw_malloc(sizeof(fftw_complex) * (size_t)(ns * k));
    fftw_complex *ue = fftw_malloc(sizeof(fftw_complex) * (size_t)(ns * k));
    double *acc = calloc((size_t)(2 * k * k) * (size_t)ns * 2, sizeof(double));
    fftw_plan fwd = NULL, inv = NULL;
    ss_status st = SS_OK;
    if (!buf || !ux || !vx || !ue || !acc) {
        st = ss_fail(err, SS_E_NOMEM, "eval: out of memory for the correlations");
        goto out;
    }
    fwd = fftw_plan_dft_r2c_1d((int)n, buf, ux, FFTW_ESTIMATE);
    inv = fftw_plan_dft_c2r_1d((int)n, ux, buf, FFTW_ESTIMATE);
    if (!fwd || !inv) {
        st = ss_fail(err, SS_E_INTERNAL, "eval: FFTW could not plan a %lld-point transform", (long long)n);
        goto out;
    }
    for (int64_t t0 = 0; t0 < length; t0 += step) {
        int64_t m = length - t0 < step ? length - t0 : step;
        for (int p = 0; p < k; p++) {
            const float *x = ref[p];
            for (int64_t i = 0; i < n; i++)
                buf[i] = i < m ? (double)x[t0 + i] : 0.0;
            fftw_execute_dft_r2c(fwd, buf, ux + p * ns);
            for (int64_t i = 0; i < n; i++) {
                int64_t t = t0 - (F - 1) + i;
                buf[i] = (t >= 0 && t < t0 + m) ? (double)x[t] : 0.0;
            }
            fftw_execute_dft_r2c(fwd, buf, vx + p * ns);
            const float *e = est[p];
            int64_t el = est_len[p / nchan];
            for (int64_t i = 0; i < n; i++)
                buf[i] = (i < m && t0 + i < el) ? (double)e[t0 + i] : 0.0;
            fftw_execute_dft_r2c(fwd, buf, ue + p * ns);
        }
        for (int side = 0; side < 2; side++) {
            const fftw_complex *u = side ? ue : ux;
            for (int p = 0; p < k; p++) {
                const double *up = (const double *)(u + p * ns);
                for (int q = 0; q < k; q++) {
                    const double *vq = (const double *)(vx + q * ns);
                    double *a = acc + ((int64_t)(side * k + p) * k + q) * ns * 2;
                    for (int64_t f = 0; f < nf; f++) {
                        double ur = up[2 * f], ui = up[2 * f + 1], vr = vq[2 * f], vi = vq[2 * f + 1];
                        a[2 * f] += ur * vr + ui * vi;     /* conj(u) * v */
                        a[2 * f + 1] += ur * vi - ui * vr;
                    }
                }
            }
        }
    }
    for (int side = 0; side < 2; side++)
        for (int p = 0; p < k; p++)
            for (int q = 0; q < k; q++) {
                double *a = acc + ((int64_t)(side * k + p) * k + q) * ns * 2;
                fftw_execute_dft_c2r(inv, (fftw_complex *)a, buf);
                double *dst = (side ? cex : cxx) + ((int64_t)p * k + q) * F;
                for (int l = 0; l < F; l++)
                    dst[l] = buf[F - 1 - l] / (double)n;
            }
out:
    if (fwd)
        fftw_destroy_plan(fwd);
    if (inv)
        fftw_destroy_plan(inv);
    fftw_free(buf);
    fftw_free(ux);
    fftw_free(vx);
    fftw_free(ue);
    free(acc);
    return st;
}

/* G[(p,a),(q,b)] = sum_t x_p[t - a] x_q[t - b] from cxx */
static void fill_gram(const double *cxx, int k, double *g, int p0, int np)
{
    const int64_t n = (int64_t)np * F;
    for (int p = p0; p < p0 + np; p++)
        for (int q = p0; q < p0 + np; q++) {
            const double *pq = cxx + ((int64_t)p * k + q) * F, *qp = cxx + ((int64_t)q * k + p) * F;
            for (int a = 0; a < F; a++) {
                double *row = g + ((int64_t)(p - p0) * F + a) * n + (int64_t)(q - p0) * F;
                for (int b = 0; b < F; b++)
                    row[b] = b >= a ? pq[b - a] : qp[a - b];
            }
        }
}

/* ---- 3. frames ----------------------------------------------------------------------------- */

void ss_eval_scores_free(ss_eval_scores *s)
{
    if (!s)
        return;
    free(s->frames);
    free(s);
}

ss_status ss_eval_bss(const float *const *ref, const float *const *est, int nsrc, int nchan, int64_t length,
                      const int64_t *est_length, int64_t window, int64_t hop, ss_eval_scores **out, ss_error *err)
{
    *out = NULL;
    if (nsrc < 1 || nsrc > SS_EVAL_MAX_SOURCES || nchan < 1 || nchan > 64 || length < 1 || window < 1 || hop < 1)
        return ss_fail(err, SS_E_DATA, "eval: nothing to score (%d sources, %d channels, %lld samples)", nsrc,
                       nchan, (long long)length);
    const int k = nsrc * nchan;
    int64_t est_len[SS_EVAL_MAX_SOURCES];
    for (int j = 0; j < nsrc; j++) {
        est_len[j] = est_length[j] < length ? est_length[j] : length;
        for (int c = 0; c < nchan; c++) {
            const float *r = ref[j * nchan + c], *e = est[j * nchan + c];
            for (int64_t t = 0; t < length; t++)
                if (!isfinite(r[t]))
                    return ss_fail(err, SS_E_DATA, "eval: reference %d channel %d: sample %lld is not finite", j,
                                   c, (long long)t);
            for (int64_t t = 0; t < est_len[j]; t++)
                if (!isfinite(e[t]))
                    return ss_fail(err, SS_E_DATA, "eval: estimate %d channel %d: sample %lld is not finite", j,
                                   c, (long long)t);
        }
    }
    int64_t ref_len[SS_EVAL_MAX_SOURCES];
    for (int j = 0; j < nsrc; j++)
        ref_len[j] = length;

    /* museval's Framing */
    int64_t nwin = window < length ? (length - window + hop) / hop : 1;
    int64_t wlen = window < length ? window : length;
    if (nwin > INT32_MAX / 8)
        return ss_fail(err, SS_E_DATA, "eval: %lld frames are too many", (long long)nwin);

    ss_eval_scores *s = calloc(1, sizeof *s);
    if (!s)
        return ss_fail(err, SS_E_NOMEM, "eval: out of memory");
    s->nsrc = nsrc;
    s->nframes = (int)nwin;
    s->window = window;
    s->hop = hop;
    s->frames = malloc(sizeof(double) * (size_t)SS_EVAL_NMETRICS * (size_t)nsrc * (size_t)nwin);
    if (!s->frames) {
        free(s);
        return ss_fail(err, SS_E_NOMEM, "eval: out of memory");
    }
    for (int64_t i = 0; i < (int64_t)SS_EVAL_NMETRICS * nsrc * nwin; i++)
        s->frames[i] = NAN;
    for (int j = 0; j < nsrc; j++) {
        s->nsdr[j] = ss_eval_mdx_sdr(ref + j * nchan, est + j * nchan, nchan, length, est_len[j]);
        for (int m = 0; m < SS_EVAL_NMETRICS; m++)
            s->median[m][j] = NAN;
    }
    /* museval's validate(): a silent reference or estimate is refused */
    if (any_silent(ref, ref_len, nsrc, nchan, 0, length) || any_silent(est, est_len, nsrc, nchan, 0, length)) {
        s->bss_defined = 0;
        *out = s;
        return SS_OK;
    }
    s->bss_defined = 1;

#if defined(OPENBLAS_VERSION)
    pthread_once(&eval_blas_once, eval_blas_one_thread);
#endif
    ss_status st = SS_OK;
    const int64_t mbig = (int64_t)k * F, msmall = (int64_t)nchan * F;
    const int64_t nfft = FRAME_N, ns = spec_stride(nfft), nf = nfft / 2 + 1;
    double *cxx = malloc(sizeof(double) * (size_t)(k * k * F));
    double *cex = malloc(sizeof(double) * (size_t)(k * k * F));
    double *g = malloc(sizeof(double) * (size_t)(mbig * mbig));
    double *cfil = malloc(sizeof(double) * (size_t)(mbig * k));          /* C: rows (p,a), cols (e,c) */
    double *gj = malloc(sizeof(double) * (size_t)(msmall * msmall));
    double *cjfil = malloc(sizeof(double) * (size_t)(nsrc * msmall * nchan)); /* Cj per source */
    /* filter spectra: per source e, per output channel c: k filters for P, nchan for Pj */
    fftw_complex *hspec = fftw_malloc(sizeof(fftw_complex) * (size_t)(ns * nsrc * nchan * (k + nchan)));
    fftw_complex *rspec = fftw_malloc(sizeof(fftw_complex) * (size_t)(ns * k));
    fftw_complex *pspec = fftw_malloc(sizeof(fftw_complex) * (size_t)(ns * 2));
    double *buf = fftw_malloc(sizeof(double) * (size_t)nfft);
    double *pbuf = fftw_malloc(sizeof(double) * (size_t)nfft);
    double *pjbuf = fftw_malloc(sizeof(double) * (size_t)nfft);
    fftw_plan fwd = NULL, inv = NULL;
    if (!cxx || !cex || !g || !cfil || !gj || !cjfil || !hspec || !rspec || !pspec || !buf || !pbuf || !pjbuf) {
        st = ss_fail(err, SS_E_NOMEM, "eval: out of memory for %d sources x %d channels", nsrc, nchan);
        goto out;
    }
    st = correlations(ref, est, est_len, k, nchan, length, cxx, cex, err);
    if (st != SS_OK)
        goto out;

    /* 2. filters: (G + eps I) C = D for all estimates at once, then Cj */
    fill_gram(cxx, k, g, 0, k);
    for (int p = 0; p < k; p++)
        for (int a = 0; a < F; a++)
            for (int q = 0; q < k; q++)   /* q = (e, c): estimate e, channel c */
                cfil[((int64_t)p * F + a) * k + q] = cex[((int64_t)q * k + p) * F + a];
    st = solve_filters(g, (int)mbig, cfil, k, &s->solve_fallback, err);
    if (st != SS_OK)
        goto out;
    for (int j = 0; j < nsrc; j++) {
        fill_gram(cxx, k, gj, j * nchan, nchan);
        double *cj = cjfil + (int64_t)j * msmall * nchan;
        for (int cj_ = 0; cj_ < nchan; cj_++)
            for (int a = 0; a < F; a++)
                for (int c = 0; c < nchan; c++)
                    cj[((int64_t)cj_ * F + a) * nchan + c] =
                        cex[((int64_t)(j * nchan + c) * k + j * nchan + cj_) * F + a];
        st = solve_filters(gj, (int)msmall, cj, nchan, &s->solve_fallback, err);
        if (st != SS_OK)
            goto out;
    }

    fwd = fftw_plan_dft_r2c_1d((int)nfft, buf, rspec, FFTW_ESTIMATE);
    inv = fftw_plan_dft_c2r_1d((int)nfft, pspec, pbuf, FFTW_ESTIMATE);
    if (!fwd || !inv) {
        st = ss_fail(err, SS_E_INTERNAL, "eval: FFTW could not plan a %lld-point transform", (long long)nfft);
        goto out;
    }
    /* filter spectra, scaled by 1/nfft for the unnormalised inverse */
    for (int e = 0; e < nsrc; e++)
        for (int c = 0; c < nchan; c++)
            for (int i = 0; i < k + nchan; i++) {
                fftw_complex *h = hspec + ((int64_t)(e * nchan + c) * (k + nchan) + i) * ns;
                for (int64_t t = 0; t < nfft; t++) {
                    double v = 0.0;
                    if (t < F) {
                        if (i < k)
                            v = cfil[((int64_t)i * F + t) * k + e * nchan + c];
                        else
                            v = cjfil[(int64_t)e * msmall * nchan + ((int64_t)(i - k) * F + t) * nchan + c];
                    }
                    buf[t] = v / (double)nfft;
                }
                fftw_execute_dft_r2c(fwd, buf, h);
            }

    for (int64_t w = 0; w < nwin; w++) {
        int64_t s0 = w * hop;
        if (any_silent(ref, ref_len, nsrc, nchan, s0, wlen) || any_silent(est, est_len, nsrc, nchan, s0, wlen))
            continue; /* NaN for every source */
        /* energies per source: s_true, SDR den, ISR den, SIR num, SIR den, SAR num, SAR den */
        double en[SS_EVAL_MAX_SOURCES][7];
        memset(en, 0, sizeof en);
        /* overlap-save: output samples [n0, n0 + FRAME_STEP) of the filtered frame from its
         * input samples [n0 - (F - 1), n0 - (F - 1) + nfft) */
        for (int64_t n0 = 0; n0 < wlen + F - 1; n0 += nfft - (F - 1)) {
            for (int p = 0; p < k; p++) {
                for (int64_t t = 0; t < nfft; t++) {
                    int64_t i = n0 - (F - 1) + t;
                    buf[t] = (i >= 0 && i < wlen) ? (double)ref[p][s0 + i] : 0.0;
                }
                fftw_execute_dft_r2c(fwd, buf, rspec + p * ns);
            }
            int64_t nend = wlen + F - 1 - n0 < nfft - (F - 1) ? wlen + F - 1 - n0 : nfft - (F - 1);
            for (int e = 0; e < nsrc; e++) {
                double *a = en[e];
                for (int c = 0; c < nchan; c++) {
                    const fftw_complex *h = hspec + (int64_t)(e * nchan + c) * (k + nchan) * ns;
                    double *ps = (double *)pspec, *pjs = (double *)(pspec + ns);
                    memset(ps, 0, sizeof(double) * 2 * (size_t)nf);
                    memset(pjs, 0, sizeof(double) * 2 * (size_t)nf);
                    for (int i = 0; i < k + nchan; i++) {
                        const double *hi = (const double *)(h + i * ns);
                        const double *ri = (const double *)(rspec + (i < k ? i : e * nchan + (i - k)) * ns);
                        double *dst = i < k ? ps : pjs;
                        for (int64_t f = 0; f < nf; f++) {
                            double hr = hi[2 * f], hm = hi[2 * f + 1], rr = ri[2 * f], rm = ri[2 * f + 1];
                            dst[2 * f] += hr * rr - hm * rm;
                            dst[2 * f + 1] += hr * rm + hm * rr;
                        }
                    }
                    fftw_execute_dft_c2r(inv, pspec, pbuf);
                    fftw_execute_dft_c2r(inv, pspec + ns, pjbuf);
                    const float *xr = ref[e * nchan + c], *xe = est[e * nchan + c];
                    for (int64_t o = 0; o < nend; o++) {
                        int64_t t = n0 + o;
                        double st_ = t < wlen ? (double)xr[s0 + t] : 0.0;
                        double es = (t < wlen && s0 + t < est_len[e]) ? (double)xe[s0 + t] : 0.0;
                        double pv = pbuf[F - 1 + o], pj = pjbuf[F - 1 + o];
                        a[0] += st_ * st_;
                        a[1] += (es - st_) * (es - st_);
                        a[2] += (pj - st_) * (pj - st_);
                        a[3] += pj * pj;
                        a[4] += (pv - pj) * (pv - pj);
                        a[5] += pv * pv;
                        a[6] += (es - pv) * (es - pv);
                    }
                }
            }
        }
        for (int e = 0; e < nsrc; e++) {
            const double *a = en[e];
            s->frames[((int64_t)SS_EVAL_SDR * nsrc + e) * nwin + w] = safe_db(a[0], a[1]);
            s->frames[((int64_t)SS_EVAL_ISR * nsrc + e) * nwin + w] = safe_db(a[0], a[2]);
            s->frames[((int64_t)SS_EVAL_SIR * nsrc + e) * nwin + w] = safe_db(a[3], a[4]);
            s->frames[((int64_t)SS_EVAL_SAR * nsrc + e) * nwin + w] = safe_db(a[5], a[6]);
        }
    }
    for (int m = 0; m < SS_EVAL_NMETRICS; m++)
        for (int j = 0; j < nsrc; j++)
            s->median[m][j] = ss_eval_nanmedian(s->frames + ((int64_t)m * nsrc + j) * nwin, (int)nwin);
out:
    if (fwd)
        fftw_destroy_plan(fwd);
    if (inv)
        fftw_destroy_plan(inv);
    free(cxx);
    free(cex);
    free(g);
    free(cfil);
    free(gj);
    free(cjfil);
    fftw_free(hspec);
    fftw_free(rspec);
    fftw_free(pspec);
    fftw_free(buf);
    fftw_free(pbuf);
    fftw_free(pjbuf);
    if (st != SS_OK) {
        ss_eval_scores_free(s);
        return st;
    }
    *out = s;
    return SS_OK;
}

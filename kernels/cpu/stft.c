/* stft.c - torch.stft / torch.istft on the CPU with FFTW3 (single precision).
 *
 * Semantics (see ss_stft_desc in backend.h): center=True with reflect padding
 * of n_fft/2 on both sides, periodic Hann window, normalized=True (spectrum
 * scaled by 1/sqrt(n_fft)), onesided.  Spectra are [batch, 2, F, frames]:
 * the real plane, then the imaginary plane.  The inverse divides the windowed
 * overlap-add by the summed squared window, as torch.istft does, and returns
 * exactly `length` samples.
 */
#include "cpu_ops.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- plans and windows, cached per n_fft (plan creation is not thread-safe) --- */

#define MAX_PLANS 8

typedef struct fft_plan {
    int n_fft;               /* transform size                 */
    fftwf_plan fwd;          /* real -> half complex           */
    fftwf_plan inv;          /* half complex -> real           */
    float *window;           /* periodic Hann, n_fft samples   */
} fft_plan;

static pthread_mutex_t plan_mu = PTHREAD_MUTEX_INITIALIZER;
static fft_plan plans[MAX_PLANS];
static int n_plans;

static const fft_plan *get_plan(int n_fft)
{
    const fft_plan *found = NULL;
    pthread_mutex_lock(&plan_mu);
    for (int i = 0; i < n_plans; i++)
        if (plans[i].n_fft == n_fft)
            found = &plans[i];
    if (!found && n_plans < MAX_PLANS) {
        int nb = n_fft / 2 + 1;
        float *in = fftwf_malloc(sizeof(float) * (size_t)n_fft);
        fftwf_complex *out = fftwf_malloc(sizeof(fftwf_complex) * (size_t)nb);
        float *win = malloc(sizeof(float) * (size_t)n_fft);
        if (in && out && win) {
            fft_plan *p = &plans[n_plans];
            p->fwd = fftwf_plan_dft_r2c_1d(n_fft, in, out, FFTW_ESTIMATE);
            p->inv = fftwf_plan_dft_c2r_1d(n_fft, out, in, FFTW_ESTIMATE);
            if (p->fwd && p->inv) {
                for (int i = 0; i < n_fft; i++)
                    win[i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / n_fft));
                p->window = win;
                p->n_fft = n_fft;
                win = NULL;
                found = p;
                n_plans++;
            } else {
                if (p->fwd) fftwf_destroy_plan(p->fwd);
                if (p->inv) fftwf_destroy_plan(p->inv);
            }
        }
        fftwf_free(in);
        fftwf_free(out);
        free(win);
    }
    pthread_mutex_unlock(&plan_mu);
    return found;
}

void ss_cpu_stft_cleanup(void)
{
    pthread_mutex_lock(&plan_mu);
    for (int i = 0; i < n_plans; i++) {
        fftwf_destroy_plan(plans[i].fwd);
        fftwf_destroy_plan(plans[i].inv);
        free(plans[i].window);
    }
    n_plans = 0;
    fftwf_cleanup();
    pthread_mutex_unlock(&plan_mu);
}

/* Index into x[0..len) of position i in the reflect-padded signal (repeated
 * mirroring, so it is defined for any padding; torch needs pad < len). */
static int64_t reflect_index(int64_t i, int64_t len)
{
    if (len == 1)
        return 0;
    int64_t period = 2 * (len - 1);
    i %= period;
    if (i < 0)
        i += period;
    return i < len ? i : period - i;
}

/* ---- forward ----------------------------------------------------------------- */

#define FRAMES_PER_TASK 16

typedef struct stft_job {
    const ss_stft_desc *d;
    const fft_plan *plan;
    const float *x;          /* [batch, length]               */
    float *spec;             /* [batch, 2, F, frames]         */
    int64_t frames;
    int64_t blocks;          /* frame blocks per batch row    */
    int fail;                /* a task could not allocate     */
} stft_job;

/* Frames go through the transform one by one, and their bins are written (and, in the
 * inverse, read) TILE frames at a time: a spectrum plane is [F, frames], so one frame's
 * bins are a column, and a column a bin per cache line. */
#define TILE 8

/* complex slots per frame in a tile: nb rounded up to 8 (64 bytes), so that every frame of a
 * tile starts as aligned as fftwf_malloc's block (FFTW's new-array execute needs the
 * plan's alignment) */
static size_t tile_pitch(int nb)
{
    return ((size_t)nb + 7) & ~(size_t)7;
}

static void stft_task(void *arg, int64_t t)
{
    stft_job *j = arg;
    const ss_stft_desc *d = j->d;
    int n = d->n_fft, nb = n / 2 + 1;
    int64_t b = t / j->blocks, f0 = (t % j->blocks) * FRAMES_PER_TASK;
    int64_t f1 = f0 + FRAMES_PER_TASK < j->frames ? f0 + FRAMES_PER_TASK : j->frames;
    float *in = fftwf_malloc(sizeof(float) * (size_t)n);
    size_t pitch = tile_pitch(nb);
    fftwf_complex *out = fftwf_malloc(sizeof(fftwf_complex) * pitch * TILE);
    if (!in || !out) {
        j->fail = 1;
        fftwf_free(in);
        fftwf_free(out);
        return;
    }
    const float *x = j->x + b * d->length, *win = j->plan->window;
    float *re = j->spec + b * 2 * (int64_t)nb * j->frames, *im = re + (int64_t)nb * j->frames;
    float norm = 1.0f / sqrtf((float)n);
    for (int64_t g0 = f0; g0 < f1; g0 += TILE) {
        int g1 = f1 - g0 < TILE ? (int)(f1 - g0) : TILE;
        for (int g = 0; g < g1; g++) {
            int64_t start = (g0 + g) * d->hop - n / 2;
            if (start >= 0 && start + n <= d->length)
                for (int i = 0; i < n; i++)
                    in[i] = x[start + i] * win[i];
            else
                for (int i = 0; i < n; i++)
                    in[i] = x[reflect_index(start + i, d->length)] * win[i];
            fftwf_execute_dft_r2c(j->plan->fwd, in, out + (size_t)g * pitch);
        }
        for (int k = 0; k < nb; k++) {
            float *rk = re + (int64_t)k * j->frames + g0, *ik = im + (int64_t)k * j->frames + g0;
            for (int g = 0; g < g1; g++) {
                rk[g] = out[(size_t)g * pitch + k][0] * norm;
                ik[g] = out[(size_t)g * pitch + k][1] * norm;
            }
        }
    }
    fftwf_free(in);
    fftwf_free(out);
}

ss_status ss_cpu_stft(ss_pool *p, const ss_stft_desc *d, const float *x, float *spec)
{
    const fft_plan *plan = get_plan(d->n_fft);
    if (!plan)
        return SS_E_NOMEM;
    stft_job job = {d, plan, x, spec, ss_stft_frames(d), 0, 0};
    job.blocks = (job.frames + FRAMES_PER_TASK - 1) / FRAMES_PER_TASK;
    ss_pool_for(p, d->batch * job.blocks, stft_task, &job);
    return job.fail ? SS_E_NOMEM : SS_OK;
}

/* ---- inverse ------------------------------------------------------------------ */

/* The inverse transforms each frame and overlap-adds it straight into x (the
 * samples of the padded signal that x keeps), with no buffer of all frames.
 * Tasks take a block of frames of one row; a block's output overlaps only
 * its neighbours' (block_frames * hop >= n_fft - hop), so the even blocks run
 * together, then the odd ones: no two tasks touch the same samples, and the
 * order of the sums does not depend on the number of threads. */
typedef struct istft_job {
    const ss_stft_desc *d;
    const fft_plan *plan;
    const float *spec;       /* [batch, 2, F, frames]                    */
    float *x;                /* [batch, length]                          */
    const float *env;        /* [length] summed squared window at x      */
    int64_t frames;
    int64_t block_frames;    /* frames per task                          */
    int64_t blocks;          /* frame blocks per row                     */
    int64_t half;            /* blocks of this phase per row             */
    int parity;              /* 0: even blocks, 1: odd blocks            */
    int fail;
} istft_job;

static void istft_block_task(void *arg, int64_t t)
{
    istft_job *j = arg;
    const ss_stft_desc *d = j->d;
    int n = d->n_fft, nb = n / 2 + 1;
    int64_t b = t / j->half, blk = 2 * (t % j->half) + j->parity;
    if (blk >= j->blocks)
        return;
    int64_t f0 = blk * j->block_frames;
    int64_t f1 = f0 + j->block_frames < j->frames ? f0 + j->block_frames : j->frames;
    float *outr = fftwf_malloc(sizeof(float) * (size_t)n);
    size_t pitch = tile_pitch(nb);
    fftwf_complex *in = fftwf_malloc(sizeof(fftwf_complex) * pitch * TILE);
    if (!in || !outr) {
        j->fail = 1;
        fftwf_free(in);
        fftwf_free(outr);
        return;
    }
    const float *re = j->spec + b * 2 * (int64_t)nb * j->frames, *im = re + (int64_t)nb * j->frames;
    float *x = j->x + b * d->length;
    /* normalized: undo the forward's 1/sqrt(n); the c2r transform is unnormalised (x n) */
    float norm = sqrtf((float)n) / (float)n;
    const float *win = j->plan->window;
    for (int64_t g0 = f0; g0 < f1; g0 += TILE) {
        int g1 = f1 - g0 < TILE ? (int)(f1 - g0) : TILE;
        for (int k = 0; k < nb; k++) {
            const float *rk = re + (int64_t)k * j->frames + g0, *ik = im + (int64_t)k * j->frames + g0;
            for (int g = 0; g < g1; g++) {
                in[(size_t)g * pitch + k][0] = rk[g];
                in[(size_t)g * pitch + k][1] = ik[g];
            }
        }
        for (int g = 0; g < g1; g++) {
            fftwf_complex *ig = in + (size_t)g * pitch;
            ig[0][1] = 0.0f;          /* a real signal's DC and Nyquist bins are real */
            ig[nb - 1][1] = 0.0f;
            fftwf_execute_dft_c2r(j->plan->inv, ig, outr);
            /* frame sample i lands on padded position f hop + i, i.e. x[f hop + i - n/2] */
            int64_t o = (g0 + g) * d->hop - n / 2;
            int64_t i0 = o < 0 ? -o : 0, i1 = d->length - o < n ? d->length - o : n;
            for (int64_t i = i0; i < i1; i++)
                x[o + i] += outr[i] * norm * win[i];
        }
    }
    fftwf_free(in);
    fftwf_free(outr);
}

/* x[b] = 0 before the overlap-add, x[b] /= env after it */
static void istft_zero_row(void *arg, int64_t b)
{
    istft_job *j = arg;
    memset(j->x + b * j->d->length, 0, (size_t)j->d->length * sizeof(float));
}

static void istft_norm_row(void *arg, int64_t b)
{
    istft_job *j = arg;
    float *x = j->x + b * j->d->length;
    for (int64_t i = 0; i < j->d->length; i++)
        x[i] = j->env[i] > 1e-11f ? x[i] / j->env[i] : 0.0f;
}

ss_status ss_cpu_istft(ss_pool *p, const ss_stft_desc *d, const float *spec, float *x)
{
    const fft_plan *plan = get_plan(d->n_fft);
    if (!plan)
        return SS_E_NOMEM;
    if (d->batch <= 0 || d->length <= 0)
        return SS_OK;
    int n = d->n_fft;
    istft_job job = {.d = d, .plan = plan, .spec = spec, .x = x, .frames = ss_stft_frames(d)};
    /* the summed squared window of every frame at each kept sample, frame by frame */
    float *env = calloc((size_t)d->length, sizeof *env);
    if (!env)
        return SS_E_NOMEM;
    for (int64_t f = 0; f < job.frames; f++) {
        int64_t o = f * d->hop - n / 2;
        int64_t i0 = o < 0 ? -o : 0, i1 = d->length - o < n ? d->length - o : n;
        for (int64_t i = i0; i < i1; i++)
            env[o + i] += plan->window[i] * plan->window[i];
    }
    job.env = env;
    job.block_frames = FRAMES_PER_TASK;
    if (job.block_frames * d->hop < n - d->hop)       /* blocks two apart must not overlap */
        job.block_frames = (n - 1) / d->hop + 1;
    job.blocks = (job.frames + job.block_frames - 1) / job.block_frames;
    job.half = (job.blocks + 1) / 2;
    ss_pool_for(p, d->batch, istft_zero_row, &job);
    for (job.parity = 0; job.parity < 2 && !job.fail; job.parity++)
        ss_pool_for(p, d->batch * job.half, istft_block_task, &job);
    if (!job.fail)
        ss_pool_for(p, d->batch, istft_norm_row, &job);
    free(env);
    return job.fail ? SS_E_NOMEM : SS_OK;
}

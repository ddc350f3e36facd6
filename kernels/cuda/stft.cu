/* stft.cu - the CUDA backend's STFT and iSTFT: Hann-windowed frames transformed by batched cuFFT
 * R2C / C2R plans (kept in a small cache, N_PLANS, on the current lane's stream), then the spectrum
 * rearranged to the backend's layout; the inverse overlaps and adds the frames.  Rows in chunks of
 * CHUNK_FLOATS of scratch.
 */

#include "cuda_internal.h"

/* ---- STFT -------------------------------------------------------------------------- */

static const float *window(cuda_ctx *c, int n, ss_error *err)
{
    if (c->window_n == n)
        return c->window;
    float *h = (float *)malloc(sizeof(float) * (size_t)n);
    if (!h) {
        fail(err, SS_E_NOMEM, "out of host memory");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        h[i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / n));
    if (c->window) {
        before_release(c);
        cudaFree(c->window);
        c->window = NULL;
        c->window_n = 0;
    }
    cudaError_t e = cudaMalloc(&c->window, sizeof(float) * (size_t)n);
    if (e == cudaSuccess)
        e = cudaMemcpy(c->window, h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice);
    free(h);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cuda_fail(err, e, "stft window");
        return NULL;
    }
    c->window_n = n;
    return c->window;
}

static int get_plan(cuda_ctx *c, int type, int n, int howmany, cufftHandle *out, ss_error *err)
{
    plan_entry *victim = &c->plans[0];
    for (int i = 0; i < N_PLANS; i++) {
        plan_entry *p = &c->plans[i];
        if (p->n == n && p->type == type && p->howmany == howmany) {
            p->use = ++c->plan_clock;
            cufftSetStream(p->plan, c->stream);      /* the current lane's */
            *out = p->plan;
            return 0;
        }
        if (!p->n || p->use < victim->use)
            victim = p;
        if (!p->n)
            break;
    }
    if (victim->n) {
        before_release(c);
        cufftDestroy(victim->plan);
        victim->n = 0;
    }
    cufftHandle h;
    cufftResult r = cufftPlan1d(&h, n, (cufftType)type, howmany);
    if (r != CUFFT_SUCCESS) {
        fail(err, r == CUFFT_ALLOC_FAILED ? SS_E_DEVICE : SS_E_INTERNAL,
             "cuda: cuFFT plan (n=%d, batch %d) failed: error %d%s", n, howmany, (int)r,
             r == CUFFT_ALLOC_FAILED ? " (out of device memory)" : "");
        return -1;
    }
    cufftSetStream(h, c->stream);
    victim->n = n;
    victim->type = type;
    victim->howmany = howmany;
    victim->plan = h;
    victim->use = ++c->plan_clock;
    *out = h;
    return 0;
}

__device__ __forceinline__ int64_t reflect_idx(int64_t i, int64_t len)
{
    if (len == 1) return 0;
    int64_t period = 2 * (len - 1);
    i %= period;
    if (i < 0) i += period;
    return i < len ? i : period - i;
}

/* fr [rows, F, n] = windowed frames of x rows [r0, r0 + rows) */
__global__ void k_frames(float *fr, const float *x, const float *win, int rows, int64_t frames, int n, int hop,
                         int64_t length)
{
    size_t tot = (size_t)rows * frames * n;
    GRID_LOOP(i, tot) {
        int k = (int)(i % n);
        int64_t rf = (int64_t)(i / n), f = rf % frames, r = rf / frames;
        fr[i] = x[r * length + reflect_idx(f * hop - n / 2 + k, length)] * win[k];
    }
}

/* spec rows [rows, 2, nb, F] from complex [rows, F, nb] */
__global__ void k_spec_out(float *spec, const float2 *z, int rows, int64_t frames, int nb, float norm)
{
    size_t tot = (size_t)rows * nb * frames;
    GRID_LOOP(i, tot) {
        int64_t f = (int64_t)(i % frames), k = (int64_t)((i / frames) % nb), r = (int64_t)(i / ((size_t)frames * nb));
        float2 v = z[(r * frames + f) * nb + k];
        float *re = spec + r * 2 * nb * frames;
        re[k * frames + f] = v.x * norm;
        re[(int64_t)nb * frames + k * frames + f] = v.y * norm;
    }
}

ss_status cu_stft(void *vctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    int n = d->n_fft, nb = n / 2 + 1;
    int64_t frames = ss_stft_frames(d);
    if (d->batch <= 0) return SS_OK;
    const float *win = window(c, n, err);
    if (!win) return err->code;
    size_t per_row = (size_t)frames * ((size_t)n + 2 * (size_t)nb);
    int rows = (int)(CHUNK_FLOATS / per_row);
    if (rows < 1) rows = 1;
    if (rows > d->batch) rows = d->batch;
    float *buf = (float *)scratch(c, (size_t)rows * per_row * sizeof(float), err);
    if (!buf) return err->code;
    float *fr = buf;
    float2 *z = (float2 *)(buf + (size_t)rows * frames * n);
    for (int r0 = 0; r0 < d->batch; r0 += rows) {
        int cnt = d->batch - r0 < rows ? d->batch - r0 : rows;
        cufftHandle plan;
        if (get_plan(c, CUFFT_R2C, n, (int)(cnt * frames), &plan, err))
            return err->code;
        LAUNCH(k_frames, (size_t)cnt * frames * n, fr, x + (int64_t)r0 * d->length, win, cnt, frames, n, d->hop,
               d->length);
        cufftResult r = cufftExecR2C(plan, fr, (cufftComplex *)z);
        if (r != CUFFT_SUCCESS)
            return fail(err, SS_E_INTERNAL, "cuda: cuFFT R2C failed: error %d", (int)r);
        LAUNCH(k_spec_out, (size_t)cnt * nb * frames, spec + (int64_t)r0 * 2 * nb * frames, z, cnt, frames, nb,
               1.0f / sqrtf((float)n));
    }
    CK_LAUNCH(c, err, "stft");
    return SS_OK;
}

__global__ void k_spec_in(float2 *z, const float *spec, int rows, int64_t frames, int nb)
{
    size_t tot = (size_t)rows * frames * nb;
    GRID_LOOP(i, tot) {
        int64_t k = (int64_t)(i % nb), rf = (int64_t)(i / nb), f = rf % frames, r = rf / frames;
        const float *re = spec + r * 2 * nb * frames;
        float2 v;
        v.x = re[k * frames + f];
        v.y = (k == 0 || k == nb - 1) ? 0.0f : re[(int64_t)nb * frames + k * frames + f];
        z[i] = v;
    }
}

/* x rows from frames fr [rows, F, n] (unnormalised c2r output) by windowed overlap-add */
__global__ void k_ola(float *x, const float *fr, const float *win, int rows, int64_t frames, int n, int hop,
                      int64_t length, float norm)
{
    size_t tot = (size_t)rows * length;
    int64_t full = (int64_t)n + (int64_t)hop * (frames - 1);
    GRID_LOOP(i, tot) {
        int64_t r = (int64_t)(i / length), k = (int64_t)(i % length) + n / 2;
        float acc = 0.0f, env = 0.0f;
        int64_t f0 = k - n + 1 > 0 ? (k - n + 1 + hop - 1) / hop : 0, f1 = k / hop;
        if (f1 > frames - 1) f1 = frames - 1;
        for (int64_t f = f0; f <= f1; f++) {
            int j = (int)(k - f * hop);
            float wv = win[j];
            acc += fr[(r * frames + f) * n + j] * norm * wv;
            env += wv * wv;
        }
        x[i] = (k < full && env > 1e-11f) ? acc / env : 0.0f;
    }
}

ss_status cu_istft(void *vctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    int n = d->n_fft, nb = n / 2 + 1;
    int64_t frames = ss_stft_frames(d);
    if (d->batch <= 0) return SS_OK;
    const float *win = window(c, n, err);
    if (!win) return err->code;
    size_t per_row = (size_t)frames * ((size_t)n + 2 * (size_t)nb);
    int rows = (int)(CHUNK_FLOATS / per_row);
    if (rows < 1) rows = 1;
    if (rows > d->batch) rows = d->batch;
    float *buf = (float *)scratch(c, (size_t)rows * per_row * sizeof(float), err);
    if (!buf) return err->code;
    float *fr = buf;
    float2 *z = (float2 *)(buf + (size_t)rows * frames * n);
    float norm = sqrtf((float)n) / (float)n;
    for (int r0 = 0; r0 < d->batch; r0 += rows) {
        int cnt = d->batch - r0 < rows ? d->batch - r0 : rows;
        cufftHandle plan;
        if (get_plan(c, CUFFT_C2R, n, (int)(cnt * frames), &plan, err))
            return err->code;
        LAUNCH(k_spec_in, (size_t)cnt * frames * nb, z, spec + (int64_t)r0 * 2 * nb * frames, cnt, frames, nb);
        cufftResult r = cufftExecC2R(plan, (cufftComplex *)z, fr);
        if (r != CUFFT_SUCCESS)
            return fail(err, SS_E_INTERNAL, "cuda: cuFFT C2R failed: error %d", (int)r);
        LAUNCH(k_ola, (size_t)cnt * d->length, x + (int64_t)r0 * d->length, fr, win, cnt, frames, n, d->hop,
               d->length, norm);
    }
    CK_LAUNCH(c, err, "istft");
    return SS_OK;
}

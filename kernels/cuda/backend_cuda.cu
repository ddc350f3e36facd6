/* backend_cuda.cu - the CUDA backend, built as the shared module
 * libstemsplit-cuda.so that src/backend.c dlopen()s at run time.
 *
 * Everything runs on one stream of one device: elementwise and reduction
 * kernels here, matrix products through cuBLAS (GemmEx with an fp32, tf32,
 * bf16 or fp16 compute type chosen by --precision, always fp32 accumulation),
 * convolutions as im2col + strided-batched GEMM (transposed ones as GEMM +
 * a col2im gather), STFT/iSTFT through cuFFT.  Ops never synchronise; only
 * download() and synchronize() wait for the stream.  Errors are recorded in
 * the caller's sticky ss_error.  Scratch memory (im2col columns, FFT frames,
 * statistics) is one buffer grown on demand and kept for the backend's life.
 *
 * The module exports one symbol, ss_cuda_module(), which checks the backend
 * API version and returns the vtable (or NULL with a reason).
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cufft.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../src/backend.h"
}

/* ---- errors --------------------------------------------------------------------- */

static ss_status fail(ss_error *err, ss_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static ss_status fail(ss_error *err, ss_status code, const char *fmt, ...)
{
    if (err && err->code == SS_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* An out-of-memory CUDA error maps to SS_E_DEVICE with a clear message. */
static ss_status cuda_fail(ss_error *err, cudaError_t e, const char *what)
{
    if (e == cudaErrorMemoryAllocation)
        return fail(err, SS_E_DEVICE, "cuda: out of device memory (%s)", what);
    return fail(err, SS_E_DEVICE, "cuda: %s: %s", what, cudaGetErrorString(e));
}

#define CK_LAUNCH(c, err, what)                                                   \
    do {                                                                          \
        cudaError_t e_ = cudaGetLastError();                                      \
        if (e_ != cudaSuccess)                                                    \
            return cuda_fail(err, e_, what);                                      \
    } while (0)

/* ---- context -------------------------------------------------------------------- */

typedef struct plan_entry {
    int type;          /* CUFFT_R2C or CUFFT_C2R */
    int n, howmany;
    cufftHandle plan;
    unsigned long use;
} plan_entry;

#define N_PLANS 8

typedef struct cuda_ctx {
    int device;
    ss_precision prec;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *scratch;           /* grown on demand                         */
    size_t scratch_size;
    float *window;           /* Hann window of window_n samples          */
    int window_n;
    plan_entry plans[N_PLANS];
    unsigned long plan_clock;
    int capturing;           /* between graph_begin and graph_end             */
    void *blas_ws;           /* cuBLAS workspace (set, so recording allocates nothing) */
    size_t base_used;        /* device memory in use when the backend started */
    size_t peak_used;        /* most seen since (sampled at synchronisations) */
} cuda_ctx;

/* Sample device memory in use (all of this process's allocations, cuBLAS and
 * cuFFT workspaces included) for the peak that STEMSPLIT_CUDA_STATS prints. */
static void sample_memory(cuda_ctx *c)
{
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > c->peak_used)
        c->peak_used = tot - fr;
}

/* Scratch budget for one im2col/FFT chunk (floats). */
#define CHUNK_FLOATS ((size_t)48 << 20)

static void *scratch(cuda_ctx *c, size_t bytes, ss_error *err)
{
    if (bytes <= c->scratch_size)
        return c->scratch;
    if (c->scratch) {
        cudaStreamSynchronize(c->stream);
        cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_size = 0;
    }
    size_t want = bytes + (bytes >> 3);
    cudaError_t e = cudaMalloc(&c->scratch, want);
    if (e != cudaSuccess) {
        cudaGetLastError();
        c->scratch = NULL;
        cuda_fail(err, e, "scratch buffer");
        return NULL;
    }
    c->scratch_size = want;
    return c->scratch;
}

/* ---- device ---------------------------------------------------------------------- */

static char g_why[256];

static int cu_device_count(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(g_why, sizeof g_why, "%s", cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    if (n == 0)
        snprintf(g_why, sizeof g_why, "the CUDA driver reports no GPU");
    return n;
}

static ss_status cu_device_info(int index, ss_device_info *out)
{
    int n = cu_device_count();
    if (index < 0 || index >= n)
        return SS_E_DEVICE;
    cudaDeviceProp pr;
    if (cudaGetDeviceProperties(&pr, index) != cudaSuccess) {
        cudaGetLastError();
        return SS_E_DEVICE;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->backend, sizeof out->backend, "cuda");
    out->index = index;
    snprintf(out->name, sizeof out->name, "%.127s", pr.name);
    out->mem_total = pr.totalGlobalMem;
    int prev = 0;
    cudaGetDevice(&prev);
    size_t fr = 0, tot = 0;
    if (cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
        out->mem_free = fr;
        out->mem_total = tot;
    }
    cudaGetLastError();
    cudaSetDevice(prev);
    out->usable = pr.major >= 7;
    snprintf(out->note, sizeof out->note, "compute capability %d.%d, %d SMs%s", pr.major, pr.minor,
             pr.multiProcessorCount, out->usable ? "" : " (needs 7.0 or newer)");
    return SS_OK;
}

static void cu_free(void *vctx)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!c)
        return;
    cudaSetDevice(c->device);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    const char *st = getenv("STEMSPLIT_CUDA_STATS");
    if (st && *st && c->blas)
        fprintf(stderr, "cuda: peak device memory in use %.1f MiB (%.1f MiB above the %.1f MiB at start)\n",
                c->peak_used / 1048576.0, (c->peak_used - c->base_used) / 1048576.0, c->base_used / 1048576.0);
    for (int i = 0; i < N_PLANS; i++)
        if (c->plans[i].n)
            cufftDestroy(c->plans[i].plan);
    if (c->blas)
        cublasDestroy(c->blas);
    cudaFree(c->blas_ws);
    cudaFree(c->scratch);
    cudaFree(c->window);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

static ss_status cu_init(const ss_backend_params *p, void **out, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c)
        return fail(err, SS_E_NOMEM, "out of memory starting the CUDA backend");
    c->device = p->device;
    c->prec = p->precision == SS_PREC_AUTO ? SS_PREC_MIXED : p->precision;   /* the default: see --help */
    cudaError_t e = cudaSetDevice(p->device);
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cu_free(c);
        return cuda_fail(err, e, "starting the device");
    }
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        cu_free(c);
        return fail(err, SS_E_DEVICE, "cuda: cannot start cuBLAS (out of device memory?)");
    }
    cublasSetStream(c->blas, c->stream);
    cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
    /* our own workspace, so that a recorded product never allocates (32 MiB:
     * NVIDIA's recommendation for Hopper); without it cuBLAS keeps its own */
    const size_t blas_ws = (size_t)32 << 20;
    if (cudaMalloc(&c->blas_ws, blas_ws) == cudaSuccess) {
        if (cublasSetWorkspace(c->blas, c->blas_ws, blas_ws) != CUBLAS_STATUS_SUCCESS) {
            cudaFree(c->blas_ws);
            c->blas_ws = NULL;
        }
    } else {
        c->blas_ws = NULL;
        cudaGetLastError();
    }
    sample_memory(c);
    c->base_used = c->peak_used;
    *out = c;
    return SS_OK;
}

static ss_status cu_synchronize(void *vctx, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (c->capturing) {             /* recording: nothing has run yet, launch errors only */
        cudaError_t le = cudaGetLastError();
        return le == cudaSuccess ? SS_OK : cuda_fail(err, le, "synchronize");
    }
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e == cudaSuccess)
        e = cudaGetLastError();
    sample_memory(c);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "synchronize");
}

/* ---- op recording (CUDA graphs) ------------------------------------------------------ */

/* Thread-local capture: a synchronising call from this thread (a download, a
 * cudaMalloc) invalidates the recording instead of running; other threads are
 * not affected. */
static ss_status cu_graph_begin(void *vctx, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess)
        return cuda_fail(err, e, "graph capture");
    c->capturing = 1;
    return SS_OK;
}

static ss_status cu_graph_end(void *vctx, void **out, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &g);
    c->capturing = 0;
    if (e == cudaSuccess)
        e = cudaGraphInstantiate(&x, g, 0);
    if (g)
        cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();                      /* not sticky: the stream runs on */
        return fail(err, SS_E_DEVICE, "cuda: recording a graph failed: %s", cudaGetErrorString(e));
    }
    *out = (void *)x;
    return SS_OK;
}

static ss_status cu_graph_launch(void *vctx, void *graph, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph, c->stream);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "graph launch");
}

static void cu_graph_free(void *vctx, void *graph)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaStreamSynchronize(c->stream);            /* no launch of it still in flight */
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static ss_precision cu_precision(void *vctx) { return ((cuda_ctx *)vctx)->prec; }
static int cu_threads(void *vctx) { (void)vctx; return 1; }

static void *cu_alloc(void *vctx, size_t bytes)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    void *p = NULL;
    cudaSetDevice(c->device);
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_release(void *vctx, void *ptr)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaStreamSynchronize(c->stream);
    cudaFree(ptr);
}

static ss_status cu_upload(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "upload");
}

static ss_status cu_download(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    sample_memory(c);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
}

/* ---- elementwise ------------------------------------------------------------------ */

#define TPB 256

static unsigned grid_for(size_t n)
{
    size_t g = (n + TPB - 1) / TPB;
    if (g > 65535u * 16u)
        g = 65535u * 16u;
    return (unsigned)(g ? g : 1);
}

#define GRID_LOOP(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
                             i += (size_t)gridDim.x * blockDim.x)

/* Row launches for [rows, len] work: blockIdx.x is the row (its indices are
 * worked out once per thread, not per element), blockIdx.y and the threads
 * stride along it.  Used when rows are long enough to fill a block. */
#define ROW_MIN 64
#define ROW_LOOP(j, len) for (int64_t j = (int64_t)blockIdx.y * blockDim.x + threadIdx.x; j < (len); \
                              j += (int64_t)gridDim.y * blockDim.x)

static int use_rows(size_t rows, int64_t len) { return len >= ROW_MIN && rows > 0 && rows <= 0x7fffffffu; }

static dim3 row_grid(size_t rows, int64_t len)
{
    int64_t by = (len + TPB - 1) / TPB;
    return dim3((unsigned)rows, (unsigned)(by > 64 ? 64 : by));
}

__global__ void k_fill(float *y, float v, size_t n) { GRID_LOOP(i, n) y[i] = v; }

__global__ void k_copy2d(float *dst, size_t dp, const float *src, size_t sp, size_t rows, size_t cols)
{
    size_t n = rows * cols;
    GRID_LOOP(i, n) {
        size_t r = i / cols, q = i % cols;
        dst[r * dp + q] = src[r * sp + q];
    }
}

__global__ void k_add(float *y, const float *a, const float *b, size_t n) { GRID_LOOP(i, n) y[i] = a[i] + b[i]; }
__global__ void k_scale(float *y, const float *x, float a, size_t n) { GRID_LOOP(i, n) y[i] = a * x[i]; }

__global__ void k_channel_affine(float *y, const float *x, size_t n, int ch, int64_t len, const float *s,
                                 const float *t)
{
    GRID_LOOP(i, n) {
        int c = (int)((i / (size_t)len) % (size_t)ch);
        y[i] = x[i] * (s ? s[c] : 1.0f) + (t ? t[c] : 0.0f);
    }
}

__global__ void k_channel_affine_rows(float *y, const float *x, int ch, int64_t len, const float *s, const float *t)
{
    int c = (int)(blockIdx.x % (unsigned)ch);
    float sv = s ? s[c] : 1.0f, tv = t ? t[c] : 0.0f;
    size_t base = (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) y[base + j] = x[base + j] * sv + tv;
}

__global__ void k_row_affine_rows(float *y, const float *x, int64_t len, const float *s, const float *t)
{
    float sv = s[blockIdx.x], tv = t[blockIdx.x];
    size_t base = (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) y[base + j] = x[base + j] * sv + tv;
}

__global__ void k_row_affine(float *y, const float *x, size_t n, int64_t len, const float *s, const float *t)
{
    GRID_LOOP(i, n) {
        size_t r = i / (size_t)len;
        y[i] = x[i] * s[r] + t[r];
    }
}

__device__ __forceinline__ float gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

__global__ void k_gelu(float *y, const float *x, size_t n) { GRID_LOOP(i, n) y[i] = gelu_f(x[i]); }

__global__ void k_glu(float *y, const float *x, size_t n, int ch, int64_t len)
{
    GRID_LOOP(i, n) {
        size_t per = (size_t)ch * (size_t)len, b = i / per, rem = i % per;
        const float *a = x + b * 2 * per + rem;
        y[i] = a[0] / (1.0f + expf(-a[per]));
    }
}

/* y row (b, c) = x row (b, c) * sigmoid(x row (b, ch + c)) */
__global__ void k_glu_rows(float *y, const float *x, int ch, int64_t len)
{
    unsigned b = blockIdx.x / (unsigned)ch, c = blockIdx.x % (unsigned)ch;
    const float *a = x + ((size_t)b * 2 * ch + c) * (size_t)len, *g = a + (size_t)ch * (size_t)len;
    float *yr = y + (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) yr[j] = a[j] / (1.0f + expf(-g[j]));
}

#define LAUNCH(kern, n, ...) kern<<<grid_for(n), TPB, 0, c->stream>>>(__VA_ARGS__)
#define LAUNCH_ROWS(kern, rows, len, ...) kern<<<row_grid(rows, len), TPB, 0, c->stream>>>(__VA_ARGS__)

static ss_status cu_fill(void *vctx, float *y, float v, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_fill, n, y, v, n);
    CK_LAUNCH(c, err, "fill");
    return SS_OK;
}

static ss_status cu_copy2d(void *vctx, float *dst, size_t dpitch, const float *src, size_t spitch, size_t rows,
                           size_t cols, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!rows || !cols) return SS_OK;
    LAUNCH(k_copy2d, rows * cols, dst, dpitch, src, spitch, rows, cols);
    CK_LAUNCH(c, err, "copy2d");
    return SS_OK;
}

static ss_status cu_add(void *vctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_add, n, y, a, b, n);
    CK_LAUNCH(c, err, "add");
    return SS_OK;
}

static ss_status cu_scale(void *vctx, float *y, const float *x, float alpha, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_scale, n, y, x, alpha, n);
    CK_LAUNCH(c, err, "scale");
    return SS_OK;
}

static ss_status cu_channel_affine(void *vctx, float *y, const float *x, int batch, int ch, int64_t len,
                                   const float *scale, const float *bias, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * (size_t)ch * (size_t)len, rows = (size_t)batch * (size_t)ch;
    if (!n) return SS_OK;
    if (use_rows(rows, len))
        LAUNCH_ROWS(k_channel_affine_rows, rows, len, y, x, ch, len, scale, bias);
    else
        LAUNCH(k_channel_affine, n, y, x, n, ch, len, scale, bias);
    CK_LAUNCH(c, err, "channel_affine");
    return SS_OK;
}

static ss_status cu_row_affine(void *vctx, float *y, const float *x, int rows, int64_t len, const float *scale,
                               const float *shift, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)rows * (size_t)len;
    if (!n) return SS_OK;
    if (use_rows((size_t)rows, len))
        LAUNCH_ROWS(k_row_affine_rows, (size_t)rows, len, y, x, len, scale, shift);
    else
        LAUNCH(k_row_affine, n, y, x, n, len, scale, shift);
    CK_LAUNCH(c, err, "row_affine");
    return SS_OK;
}

static ss_status cu_gelu(void *vctx, float *y, const float *x, size_t n, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!n) return SS_OK;
    LAUNCH(k_gelu, n, y, x, n);
    CK_LAUNCH(c, err, "gelu");
    return SS_OK;
}

static ss_status cu_glu(void *vctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * (size_t)ch * (size_t)len, rows = (size_t)batch * (size_t)ch;
    if (!n) return SS_OK;
    if (use_rows(rows, len))
        LAUNCH_ROWS(k_glu_rows, rows, len, y, x, ch, len);
    else
        LAUNCH(k_glu, n, y, x, n, ch, len);
    CK_LAUNCH(c, err, "glu");
    return SS_OK;
}

typedef struct dims4 {
    int64_t d[4], s[4], n[4];
} dims4;

template <typename I>   /* index type: unsigned when n < 2^31 (cheaper division) */
__global__ void k_copy4d(float *dst, const float *src, dims4 g, I n)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I k = i / (I)g.n[3];
        int64_t i3 = (int64_t)(i - k * (I)g.n[3]);
        I k2 = k / (I)g.n[2];
        int64_t i2 = (int64_t)(k - k2 * (I)g.n[2]);
        int64_t i1 = (int64_t)(k2 % (I)g.n[1]), i0 = (int64_t)(k2 / (I)g.n[1]);
        dst[i0 * g.d[0] + i1 * g.d[1] + i2 * g.d[2] + i3 * g.d[3]] =
            src[i0 * g.s[0] + i1 * g.s[1] + i2 * g.s[2] + i3 * g.s[3]];
    }
}

static ss_status cu_copy4d(void *vctx, float *dst, const int64_t dstride[4], const float *src,
                           const int64_t sstride[4], const int64_t shape[4], ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    dims4 g;
    size_t n = 1;
    for (int i = 0; i < 4; i++) {
        if (shape[i] <= 0)
            return SS_OK;
        g.d[i] = dstride[i];
        g.s[i] = sstride[i];
        g.n[i] = shape[i];
        n *= (size_t)shape[i];
    }
    if (n < 0x80000000u)
        LAUNCH(k_copy4d<unsigned>, n, dst, src, g, (unsigned)n);
    else
        LAUNCH(k_copy4d<size_t>, n, dst, src, g, n);
    CK_LAUNCH(c, err, "copy4d");
    return SS_OK;
}

/* ---- reductions ---------------------------------------------------------------------- */

template <typename T>
__device__ __forceinline__ T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum of a block's values (blockDim.x a multiple of 32, <= 1024); result in every thread. */
template <typename T>
__device__ T block_sum(T v, T *sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    T r = 0;
    for (int i = 0; i < nw; i++)
        r += sh[i];
    return r;
}

#define STAT_CHUNK 8192   /* elements per block of the statistics pass */

/* acc[2g], acc[2g+1] += sum, sum of squares of group g ([ngroups, gn] contiguous). */
__global__ void k_stats(double *acc, const float *x, int64_t gn)
{
    __shared__ double sh[32];
    int64_t g = blockIdx.y, lo = (int64_t)blockIdx.x * STAT_CHUNK;
    int64_t hi = lo + STAT_CHUNK < gn ? lo + STAT_CHUNK : gn;
    const float *xg = x + g * gn;
    double s = 0.0, q = 0.0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        double v = xg[i];
        s += v;
        q += v * v;
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        atomicAdd(&acc[2 * g], s);
        atomicAdd(&acc[2 * g + 1], q);
    }
}

/* The same over x + bias[c] for x [batch, ch, len] in GroupNorm(groups): one block
 * per row (b, c) and chunk of it (the bias is a convolution's, added here instead of
 * in a pass of its own; float sum first, as the separate add would store it). */
__global__ void k_stats_bias(double *acc, const float *x, const float *bias, int ch, int groups, int64_t len)
{
    __shared__ double sh[32];
    int c = (int)(blockIdx.x % (unsigned)ch);
    size_t g = (size_t)(blockIdx.x / (unsigned)ch) * groups + c / (ch / groups);
    int64_t lo = (int64_t)blockIdx.y * STAT_CHUNK, hi = lo + STAT_CHUNK < len ? lo + STAT_CHUNK : len;
    const float *xr = x + (size_t)blockIdx.x * (size_t)len;
    float bc = bias[c];
    double s = 0.0, q = 0.0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        double v = xr[i] + bc;
        s += v;
        q += v * v;
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        atomicAdd(&acc[2 * g], s);
        atomicAdd(&acc[2 * g + 1], q);
    }
}

static ss_status stats_bias(cuda_ctx *c, double *acc, const float *x, const float *bias, int batch, int ch,
                            int groups, int64_t len, ss_error *err)
{
    cudaMemsetAsync(acc, 0, (size_t)batch * groups * 2 * sizeof(double), c->stream);
    dim3 grid((unsigned)((size_t)batch * ch), (unsigned)((len + STAT_CHUNK - 1) / STAT_CHUNK));
    k_stats_bias<<<grid, TPB, 0, c->stream>>>(acc, x, bias, ch, groups, len);
    CK_LAUNCH(c, err, "statistics");
    return SS_OK;
}

static ss_status stats(cuda_ctx *c, double *acc, const float *x, int64_t ngroups, int64_t gn, ss_error *err)
{
    cudaMemsetAsync(acc, 0, (size_t)ngroups * 2 * sizeof(double), c->stream);
    dim3 grid((unsigned)((gn + STAT_CHUNK - 1) / STAT_CHUNK), (unsigned)ngroups);
    k_stats<<<grid, TPB, 0, c->stream>>>(acc, x, gn);
    CK_LAUNCH(c, err, "statistics");
    return SS_OK;
}

__global__ void k_moments(float *mean, float *sd, const double *acc, int rows, int64_t len)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    double m = acc[2 * r] / (double)len;
    double ss = acc[2 * r + 1] - (double)len * m * m;
    if (ss < 0)
        ss = 0;
    mean[r] = (float)m;
    sd[r] = len > 1 ? (float)sqrt(ss / (double)(len - 1)) : nanf("");
}

__global__ void k_standardize_coef(float *scale, float *shift, const float *mean, const float *sd, int n, float eps)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float sc = 1.0f / (eps + sd[i]);
    scale[i] = sc;
    shift[i] = -mean[i] * sc;
}

static ss_status cu_standardize_coef(void *vctx, float *scale, float *shift, const float *mean, const float *sd,
                                     int n, float eps, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (n <= 0) return SS_OK;
    k_standardize_coef<<<(n + 127) / 128, 128, 0, c->stream>>>(scale, shift, mean, sd, n, eps);
    CK_LAUNCH(c, err, "standardize_coef");
    return SS_OK;
}

static ss_status cu_row_moments(void *vctx, float *mean, float *sd, const float *x, int rows, int64_t len,
                                ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0) return SS_OK;
    double *acc = (double *)scratch(c, (size_t)rows * 2 * sizeof(double), err);
    if (!acc) return err->code;
    if (len > 0 && stats(c, acc, x, rows, len, err) != SS_OK)
        return err->code;
    if (len <= 0)
        cudaMemsetAsync(acc, 0, (size_t)rows * 2 * sizeof(double), c->stream);
    k_moments<<<(rows + 127) / 128, 128, 0, c->stream>>>(mean, sd, acc, rows, len);
    CK_LAUNCH(c, err, "row_moments");
    return SS_OK;
}

/* y = (x - mean_g) * rstd_g * gamma[c] + beta[c] for rows (b, c) of len. */
__global__ void k_gn_apply(float *y, const float *x, const double *acc, size_t n, int ch, int groups, int64_t len,
                           int64_t gn, const float *gamma, const float *beta, float eps, int act)
{
    GRID_LOOP(i, n) {
        size_t row = i / (size_t)len;
        int cc = (int)(row % (size_t)ch);
        size_t g = (row / (size_t)ch) * groups + cc / (ch / groups);
        double m = acc[2 * g] / (double)gn;
        double var = acc[2 * g + 1] / (double)gn - m * m;
        float rs = (float)(1.0 / sqrt((var > 0 ? var : 0) + (double)eps));
        float a = rs * (gamma ? gamma[cc] : 1.0f);
        float v = (x[i] - (float)m) * a + (beta ? beta[cc] : 0.0f);
        y[i] = act ? gelu_f(v) : v;
    }
}

__global__ void k_gn_apply_rows(float *y, const float *x, const float *bias, const double *acc, int ch, int groups,
                                int64_t len, int64_t gn, const float *gamma, const float *beta, float eps, int act)
{
    int cc = (int)(blockIdx.x % (unsigned)ch);
    size_t g = (size_t)(blockIdx.x / (unsigned)ch) * groups + cc / (ch / groups);
    double m = acc[2 * g] / (double)gn;
    double var = acc[2 * g + 1] / (double)gn - m * m;
    float rs = (float)(1.0 / sqrt((var > 0 ? var : 0) + (double)eps));
    float a = rs * (gamma ? gamma[cc] : 1.0f), b = beta ? beta[cc] : 0.0f, mf = (float)m;
    float bc = bias ? bias[cc] : 0.0f;
    size_t base = (size_t)blockIdx.x * (size_t)len;
    ROW_LOOP(j, len) {
        float v = ((x[base + j] + bc) - mf) * a + b;
        y[base + j] = act ? gelu_f(v) : v;
    }
}

/* y = group_norm(x + bias) (bias per channel, may be NULL), then GELU when act. */
static ss_status group_norm_act(cuda_ctx *c, float *y, const float *x, const float *bias, int batch, int ch,
                                int64_t len, int groups, const float *gamma, const float *beta, float eps, int act,
                                ss_error *err)
{
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (groups <= 0 || ch % groups)
        return fail(err, SS_E_INTERNAL, "cuda group_norm: %d channels in %d groups", ch, groups);
    int64_t ng = (int64_t)batch * groups, gn = (int64_t)(ch / groups) * len;
    size_t n = (size_t)batch * ch * (size_t)len, rows = (size_t)batch * ch;
    int row_path = use_rows(rows, len);
    if (bias && !row_path) {                    /* short rows: the bias in a pass of its own */
        LAUNCH(k_channel_affine, n, y, x, n, ch, len, (const float *)NULL, bias);
        x = y;
        bias = NULL;
    }
    double *acc = (double *)scratch(c, (size_t)ng * 2 * sizeof(double), err);
    if (!acc) return err->code;
    if ((bias ? stats_bias(c, acc, x, bias, batch, ch, groups, len, err) : stats(c, acc, x, ng, gn, err)) != SS_OK)
        return err->code;
    if (row_path)
        LAUNCH_ROWS(k_gn_apply_rows, rows, len, y, x, bias, acc, ch, groups, len, gn, gamma, beta, eps, act);
    else
        LAUNCH(k_gn_apply, n, y, x, acc, n, ch, groups, len, gn, gamma, beta, eps, act);
    CK_LAUNCH(c, err, "group_norm");
    return SS_OK;
}

static ss_status cu_group_norm_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch,
                                    int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                    ss_error *err)
{
    return group_norm_act((cuda_ctx *)vctx, y, x, bias, batch, ch, len, groups, gamma, beta, eps, 1, err);
}

/* x [batch, ch, len] += glu(group_norm(g)): the GLU's two halves are channels c and
 * ch + c of g [batch, 2ch, len]; same arithmetic as k_gn_apply_rows, k_glu_rows and
 * k_add one after the other.  gn_coef: mean, scale, shift of channel cc of item b. */
__device__ __forceinline__ void gn_coef(float *co, const double *acc, int b, int cc, int per, int groups, int64_t gn,
                                        const float *gamma, const float *beta, float eps)
{
    size_t grp = (size_t)b * groups + cc / per;
    double m = acc[2 * grp] / (double)gn;
    double var = acc[2 * grp + 1] / (double)gn - m * m;
    float rs = (float)(1.0 / sqrt((var > 0 ? var : 0) + (double)eps));
    co[0] = (float)m;
    co[1] = rs * (gamma ? gamma[cc] : 1.0f);
    co[2] = beta ? beta[cc] : 0.0f;
}

__device__ __forceinline__ float gn_glu(float a, float b, const float *ca, const float *cb)
{
    float va = (a - ca[0]) * ca[1] + ca[2];
    float vb = (b - cb[0]) * cb[1] + cb[2];
    return va / (1.0f + expf(-vb));
}

/* With the per-channel bias of channels c (ba) and ch + c (bb) added first. */
__device__ __forceinline__ float gn_glu_bias(float a, float b, float ba, float bb, const float *ca, const float *cb)
{
    return gn_glu(a + ba, b + bb, ca, cb);
}

/* One output row (b, c) per blockIdx.x. */
__global__ void k_gn_glu_add_rows(float *x, const float *g, const float *bias, const double *acc, int ch, int groups,
                                  int64_t len, int64_t gn, const float *gamma, const float *beta, float eps)
{
    int b = (int)(blockIdx.x / (unsigned)ch), c = (int)(blockIdx.x % (unsigned)ch), per = 2 * ch / groups;
    float ca[3], cb[3];
    gn_coef(ca, acc, b, c, per, groups, gn, gamma, beta, eps);
    gn_coef(cb, acc, b, c + ch, per, groups, gn, gamma, beta, eps);
    const float *ga = g + ((size_t)b * 2 * ch + c) * (size_t)len, *gb = ga + (size_t)ch * (size_t)len;
    float *xr = x + (size_t)blockIdx.x * (size_t)len;
    if (bias) {
        float ba = bias[c], bb = bias[ch + c];
        ROW_LOOP(j, len) xr[j] = xr[j] + gn_glu_bias(ga[j], gb[j], ba, bb, ca, cb);
    } else {
        ROW_LOOP(j, len) xr[j] = xr[j] + gn_glu(ga[j], gb[j], ca, cb);
    }
}

/* Short rows: one thread per element of x. */
__global__ void k_gn_glu_add(float *x, const float *g, const double *acc, size_t n, int ch, int groups, int64_t len,
                             int64_t gn, const float *gamma, const float *beta, float eps)
{
    GRID_LOOP(i, n) {
        size_t row = i / (size_t)len, j = i % (size_t)len;
        int b = (int)(row / (size_t)ch), c = (int)(row % (size_t)ch), per = 2 * ch / groups;
        float ca[3], cb[3];
        gn_coef(ca, acc, b, c, per, groups, gn, gamma, beta, eps);
        gn_coef(cb, acc, b, c + ch, per, groups, gn, gamma, beta, eps);
        const float *ga = g + ((size_t)b * 2 * ch + c) * (size_t)len + j;
        x[i] = x[i] + gn_glu(ga[0], ga[(size_t)ch * (size_t)len], ca, cb);
    }
}

static ss_status cu_group_norm_glu_add(void *vctx, float *x, float *g, const float *bias, int batch, int ch,
                                       int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                       ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    if (groups <= 0 || (2 * ch) % groups)
        return fail(err, SS_E_INTERNAL, "cuda group_norm_glu_add: %d channels in %d groups", 2 * ch, groups);
    size_t rows = (size_t)batch * ch, n = rows * (size_t)len;
    int64_t ng = (int64_t)batch * groups, gn = (int64_t)(2 * ch / groups) * len;
    int row_path = use_rows(rows, len);
    if (bias && !row_path) {                    /* short rows: the bias into g in a pass of its own */
        size_t ng_el = 2 * n;
        LAUNCH(k_channel_affine, ng_el, g, g, ng_el, 2 * ch, len, (const float *)NULL, bias);
        bias = NULL;
    }
    double *acc = (double *)scratch(c, (size_t)ng * 2 * sizeof(double), err);
    if (!acc) return err->code;
    if ((bias ? stats_bias(c, acc, g, bias, batch, 2 * ch, groups, len, err) : stats(c, acc, g, ng, gn, err)) !=
        SS_OK)
        return err->code;
    if (row_path)
        LAUNCH_ROWS(k_gn_glu_add_rows, rows, len, x, g, bias, acc, ch, groups, len, gn, gamma, beta, eps);
    else
        LAUNCH(k_gn_glu_add, n, x, g, acc, n, ch, groups, len, gn, gamma, beta, eps);
    CK_LAUNCH(c, err, "group_norm_glu_add");
    return SS_OK;
}

static ss_status cu_group_norm(void *vctx, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                               const float *gamma, const float *beta, float eps, ss_error *err)
{
    return group_norm_act((cuda_ctx *)vctx, y, x, NULL, batch, ch, len, groups, gamma, beta, eps, 0, err);
}

/* One warp per row. */
__global__ void k_layer_norm(float *y, const float *x, int rows, int dim, const float *gamma, const float *beta,
                             float eps)
{
    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (r >= rows)
        return;
    const float *xr = x + (size_t)r * dim;
    float *yr = y + (size_t)r * dim;
    float s = 0.0f;
    for (int i = lane; i < dim; i += 32)
        s += xr[i];
    float m = warp_sum(s) / (float)dim, v = 0.0f;
    for (int i = lane; i < dim; i += 32) {
        float d = xr[i] - m;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / (float)dim + eps);
    for (int i = lane; i < dim; i += 32) {
        float z = (xr[i] - m) * rs;
        if (gamma) z *= gamma[i];
        if (beta) z += beta[i];
        yr[i] = z;
    }
}

static ss_status cu_layer_norm(void *vctx, float *y, const float *x, int rows, int dim, const float *gamma,
                               const float *beta, float eps, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0 || dim <= 0) return SS_OK;
    k_layer_norm<<<(rows + 7) / 8, 256, 0, c->stream>>>(y, x, rows, dim, gamma, beta, eps);
    CK_LAUNCH(c, err, "layer_norm");
    return SS_OK;
}

/* One block per row. */
__global__ void k_softmax(float *y, const float *x, int len, float scale)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * len;
    float *yr = y + (size_t)blockIdx.x * len;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < len; i += blockDim.x)
        mx = fmaxf(mx, scale * xr[i]);
    mx = warp_max(mx);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sh[w] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < nw; i++) mx = fmaxf(mx, sh[i]);
    float s = 0.0f;
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
        float e = expf(scale * xr[i] - mx);
        yr[i] = e;
        s += e;
    }
    s = block_sum(s, sh);
    float inv = 1.0f / s;
    for (int i = threadIdx.x; i < len; i += blockDim.x)
        yr[i] *= inv;
}

static ss_status cu_softmax(void *vctx, float *y, const float *x, int rows, int len, float scale, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0 || len <= 0) return SS_OK;
    for (int r0 = 0; r0 < rows; r0 += 65535) {
        int nr = rows - r0 < 65535 ? rows - r0 : 65535;
        k_softmax<<<nr, 256, 0, c->stream>>>(y + (size_t)r0 * len, x + (size_t)r0 * len, len, scale);
    }
    CK_LAUNCH(c, err, "softmax");
    return SS_OK;
}

__global__ void k_transpose(float *y, const float *x, int rows, int cols)
{
    __shared__ float t[32][33];
    size_t off = (size_t)blockIdx.z * rows * cols;
    int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int r = r0 + k, cc = c0 + threadIdx.x;
        if (r < rows && cc < cols)
            t[k][threadIdx.x] = x[off + (size_t)r * cols + cc];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        int cc = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && cc < cols)
            y[off + (size_t)cc * rows + r] = t[threadIdx.x][k];
    }
}

static ss_status cu_transpose(void *vctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (batch <= 0 || rows <= 0 || cols <= 0) return SS_OK;
    for (int b0 = 0; b0 < batch; b0 += 65535) {
        int nb = batch - b0 < 65535 ? batch - b0 : 65535;
        size_t off = (size_t)b0 * rows * cols;
        dim3 grid((unsigned)((cols + 31) / 32), (unsigned)((rows + 31) / 32), (unsigned)nb);
        k_transpose<<<grid, dim3(32, 8), 0, c->stream>>>(y + off, x + off, rows, cols);
    }
    CK_LAUNCH(c, err, "transpose");
    return SS_OK;
}

/* ---- matrix products ---------------------------------------------------------------- */

/* The compute type of a product: `reduced` products (ss_gemm_desc.reduced) take
 * tf32 under --precision mixed; convolutions and unmarked products stay fp32. */
static cublasComputeType_t compute_type(ss_precision p, int reduced)
{
    switch (p) {
    case SS_PREC_MIXED: return reduced ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    case SS_PREC_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case SS_PREC_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case SS_PREC_FP16: return CUBLAS_COMPUTE_32F_FAST_16F;
    default: return CUBLAS_COMPUTE_32F;
    }
}

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, batched with element strides. */
static ss_status gemm_rm(cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         int64_t sa, const float *b, int ldb, int64_t sb, float beta, float *cc, int ldc, int64_t sc,
                         int batch, int reduced, ss_error *err)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return SS_OK;
    /* column-major: C^T [n, m] = op(B)^T [n, k] op(A)^T [k, m] */
    cublasStatus_t st = cublasGemmStridedBatchedEx(
        c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, CUDA_R_32F, ldb,
        sb, a, CUDA_R_32F, lda, sa, &beta, cc, CUDA_R_32F, ldc, sc, batch, compute_type(c->prec, reduced),
        CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return fail(err, st == CUBLAS_STATUS_ALLOC_FAILED ? SS_E_DEVICE : SS_E_INTERNAL,
                    "cuda: cuBLAS gemm %dx%dx%d (batch %d) failed: %s", m, n, k, batch, cublasGetStatusString(st));
    return SS_OK;
}

static ss_status cu_gemm(void *vctx, const ss_gemm_desc *d, const float *a, const float *b, float *cc, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->k <= 0) {
        /* C = beta C */
        if (d->m <= 0 || d->n <= 0) return SS_OK;
        for (int i = 0; i < d->batch; i++) {
            float *ci = cc + (d->batch > 1 ? i * d->stride_c : 0);
            if (d->beta == 0.0f) {
                cudaMemset2DAsync(ci, (size_t)d->ldc * 4, 0, (size_t)d->n * 4, (size_t)d->m, c->stream);
            } else {
                for (int r = 0; r < d->m; r++)
                    LAUNCH(k_scale, (size_t)d->n, ci + (size_t)r * d->ldc, ci + (size_t)r * d->ldc, d->beta,
                           (size_t)d->n);
            }
        }
        CK_LAUNCH(c, err, "gemm");
        return SS_OK;
    }
    int64_t sa = d->batch > 1 ? d->stride_a : 0, sb = d->batch > 1 ? d->stride_b : 0,
            sc = d->batch > 1 ? d->stride_c : 0;
    return gemm_rm(c, d->trans_a, d->trans_b, d->m, d->n, d->k, d->alpha, a, d->lda, sa, b, d->ldb, sb, d->beta, cc,
                   d->ldc, sc, d->batch, d->reduced, err);
}

/* ---- convolutions ------------------------------------------------------------------- */

typedef struct conv_geom {
    int cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
} conv_geom;

/* col [nb, kdim, ncols] for output positions [p0, p0 + ncols) of items x [nb, cin, h, w] */
__global__ void k_im2col(float *col, const float *x, conv_geom g, int nb, int64_t p0, int64_t ncols)
{
    int64_t kdim = (int64_t)g.cin * g.kh * g.kw;
    size_t n = (size_t)nb * kdim * ncols;
    GRID_LOOP(i, n) {
        int64_t q = (int64_t)(i % (size_t)ncols), r = (int64_t)((i / (size_t)ncols) % (size_t)kdim);
        int64_t b = (int64_t)(i / ((size_t)ncols * kdim));
        int kj = (int)(r % g.kw), ki = (int)((r / g.kw) % g.kh), ci = (int)(r / ((int64_t)g.kw * g.kh));
        int64_t p = p0 + q;
        int oy = (int)(p / g.ow), ox = (int)(p % g.ow);
        int iy = oy * g.sh - g.ph + ki * g.dh, ix = ox * g.sw - g.pw + kj * g.dw;
        float v = 0.0f;
        if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
            v = x[((b * g.cin + ci) * (int64_t)g.h + iy) * g.w + ix];
        col[i] = v;
    }
}

/* The same by rows: row (b, r) of col is one (item, channel, tap); its output
 * positions [p0, p0 + ncols) < 2^31 take a 32-bit division each. */
__global__ void k_im2col_rows(float *col, const float *x, conv_geom g, int kdim, int p0, int ncols)
{
    unsigned b = blockIdx.x / (unsigned)kdim, r = blockIdx.x % (unsigned)kdim;
    int kj = (int)(r % (unsigned)g.kw), ki = (int)((r / (unsigned)g.kw) % (unsigned)g.kh),
        ci = (int)(r / (unsigned)(g.kw * g.kh));
    const float *xb = x + ((size_t)b * g.cin + ci) * (size_t)g.h * (size_t)g.w;
    float *cr = col + (size_t)blockIdx.x * (size_t)ncols;
    int yoff = ki * g.dh - g.ph, xoff = kj * g.dw - g.pw;
    for (int q = blockIdx.y * blockDim.x + threadIdx.x; q < ncols; q += gridDim.y * blockDim.x) {
        int p = p0 + q, oy = p / g.ow, ox = p - oy * g.ow;
        int iy = oy * g.sh + yoff, ix = ox * g.sw + xoff;
        cr[q] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? xb[(size_t)iy * g.w + ix] : 0.0f;
    }
}

/* col [nb, kdim, ncols] from x, by rows when the sizes allow it. */
static void im2col(cuda_ctx *c, float *col, const float *x, const conv_geom &g, int nb, int64_t kdim, int64_t p0,
                   int64_t ncols)
{
    size_t rows = (size_t)nb * (size_t)kdim;
    if (rows <= 0x7fffffffu && p0 + ncols <= 0x7fffffff && kdim <= 0x7fffffff)
        LAUNCH_ROWS(k_im2col_rows, rows, ncols, col, x, g, (int)kdim, (int)p0, (int)ncols);
    else
        LAUNCH(k_im2col, rows * (size_t)ncols, col, x, g, nb, p0, ncols);
}

static ss_status cu_conv2d(void *vctx, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                           float *y, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    if (d->batch <= 0 || d->cout <= 0 || oh <= 0 || ow <= 0)
        return SS_OK;
    int64_t npos = (int64_t)oh * ow, kdim = (int64_t)d->cin * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * d->h * d->w, out_size = (int64_t)d->cout * npos;
    int pointwise = d->kh == 1 && d->kw == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->pw == 0;
    if (pointwise) {
        if (gemm_rm(c, 0, 0, d->cout, (int)npos, d->cin, 1.0f, w, d->cin, 0, x, (int)npos, in_size, 0.0f, y,
                    (int)npos, out_size, d->batch, 0, err) != SS_OK)
            return err->code;
    } else {
        conv_geom g = {d->cin, d->h, d->w, d->kh, d->kw, d->sh, d->sw, d->ph, d->pw, d->dh, d->dw, oh, ow};
        int64_t per_item = kdim * npos;
        if ((size_t)per_item <= CHUNK_FLOATS) {
            int nb = (int)(CHUNK_FLOATS / (size_t)per_item);
            if (nb > d->batch) nb = d->batch;
            float *col = (float *)scratch(c, (size_t)nb * per_item * sizeof(float), err);
            if (!col) return err->code;
            for (int b0 = 0; b0 < d->batch; b0 += nb) {
                int cnt = d->batch - b0 < nb ? d->batch - b0 : nb;
                im2col(c, col, x + b0 * in_size, g, cnt, kdim, 0, npos);
                if (gemm_rm(c, 0, 0, d->cout, (int)npos, (int)kdim, 1.0f, w, (int)kdim, 0, col, (int)npos, per_item,
                            0.0f, y + b0 * out_size, (int)npos, out_size, cnt, 0, err) != SS_OK)
                    return err->code;
            }
        } else {
            int64_t block = (int64_t)(CHUNK_FLOATS / (size_t)kdim);
            if (block < 1) block = 1;
            float *col = (float *)scratch(c, (size_t)kdim * block * sizeof(float), err);
            if (!col) return err->code;
            for (int b = 0; b < d->batch; b++)
                for (int64_t p0 = 0; p0 < npos; p0 += block) {
                    int64_t nc = npos - p0 < block ? npos - p0 : block;
                    im2col(c, col, x + b * in_size, g, 1, kdim, p0, nc);
                    if (gemm_rm(c, 0, 0, d->cout, (int)nc, (int)kdim, 1.0f, w, (int)kdim, 0, col, (int)nc, 0, 0.0f,
                                y + b * out_size + p0, (int)npos, 0, 1, 0, err) != SS_OK)
                        return err->code;
                }
        }
    }
    if (bias) {
        size_t n = (size_t)d->batch * out_size, rows = (size_t)d->batch * d->cout;
        if (use_rows(rows, npos))
            LAUNCH_ROWS(k_channel_affine_rows, rows, npos, y, y, d->cout, npos, (const float *)NULL, bias);
        else
            LAUNCH(k_channel_affine, n, y, y, n, d->cout, npos, (const float *)NULL, bias);
    }
    CK_LAUNCH(c, err, "conv2d");
    return SS_OK;
}

/* y [nb, cout, oh, ow] = bias + gather of col [nb, cout*kh*kw, h*w] */
template <typename I>   /* index type: unsigned when n < 2^31 (cheaper division) */
__global__ void k_col2im(float *y, const float *col, const float *bias, int nb, int cout, int h, int w, int kh,
                         int kw, int sh, int sw, int oh, int ow)
{
    I n = (I)nb * (I)cout * (I)oh * (I)ow;
    int64_t npos = (int64_t)h * w;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I t = i / (I)ow;
        int ox = (int)(i - t * (I)ow), oy = (int)(t % (I)oh);
        I bc = t / (I)oh;
        int co = (int)(bc % (I)cout);
        int64_t b = (int64_t)(bc / (I)cout);
        float v = bias ? bias[co] : 0.0f;
        const float *cb = col + (b * cout + co) * (int64_t)kh * kw * npos;
        for (int ki = oy % sh; ki < kh; ki += sh) {
            int iy = (oy - ki) / sh;
            if (iy < 0) break;
            if (iy >= h) continue;
            for (int kj = ox % sw; kj < kw; kj += sw) {
                int ix = (ox - kj) / sw;
                if (ix < 0) break;
                if (ix >= w) continue;
                v += cb[((int64_t)ki * kw + kj) * npos + (int64_t)iy * w + ix];
            }
        }
        y[i] = v;
    }
}

static ss_status cu_conv_transpose2d(void *vctx, const ss_convt2d_desc *d, const float *x, const float *w,
                                     const float *bias, float *y, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    if (d->batch <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0)
        return SS_OK;
    int64_t npos = (int64_t)d->h * d->w, opos = (int64_t)oh * ow, kdim = (int64_t)d->cout * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * npos, out_size = (int64_t)d->cout * opos, per_item = kdim * npos;
    int nb = (size_t)per_item <= CHUNK_FLOATS ? (int)(CHUNK_FLOATS / (size_t)per_item) : 1;
    if (nb > d->batch) nb = d->batch;
    float *col = (float *)scratch(c, (size_t)nb * per_item * sizeof(float), err);
    if (!col) return err->code;
    for (int b0 = 0; b0 < d->batch; b0 += nb) {
        int cnt = d->batch - b0 < nb ? d->batch - b0 : nb;
        /* col[b] [kdim, npos] = w^T (w [cin, kdim]) @ x[b] [cin, npos] */
        if (gemm_rm(c, 1, 0, (int)kdim, (int)npos, d->cin, 1.0f, w, (int)kdim, 0, x + b0 * in_size, (int)npos,
                    in_size, 0.0f, col, (int)npos, per_item, cnt, 0, err) != SS_OK)
            return err->code;
        size_t n = (size_t)cnt * out_size;
        if (n < 0x80000000u)
            LAUNCH(k_col2im<unsigned>, n, y + b0 * out_size, col, bias, cnt, d->cout, d->h, d->w, d->kh, d->kw, d->sh,
                   d->sw, oh, ow);
        else
            LAUNCH(k_col2im<size_t>, n, y + b0 * out_size, col, bias, cnt, d->cout, d->h, d->w, d->kh, d->kw, d->sh,
                   d->sw, oh, ow);
    }
    CK_LAUNCH(c, err, "conv_transpose2d");
    return SS_OK;
}

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
        cudaStreamSynchronize(c->stream);
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
            *out = p->plan;
            return 0;
        }
        if (!p->n || p->use < victim->use)
            victim = p;
        if (!p->n)
            break;
    }
    if (victim->n) {
        cudaStreamSynchronize(c->stream);
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

static ss_status cu_stft(void *vctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err)
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

static ss_status cu_istft(void *vctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err)
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

/* ---- the vtable ---------------------------------------------------------------------- */

static ss_backend_iface g_iface;

extern "C" __attribute__((visibility("default"))) const ss_backend_iface *ss_cuda_module(int api_version,
                                                                                          const char **why)
{
    if (api_version != SS_BACKEND_API_VERSION) {
        snprintf(g_why, sizeof g_why, "CUDA module built for backend API %d, this stemsplit has %d",
                 SS_BACKEND_API_VERSION, api_version);
        if (why) *why = g_why;
        return NULL;
    }
    ss_backend_iface *f = &g_iface;
    memset(f, 0, sizeof *f);
    f->api_version = SS_BACKEND_API_VERSION;
    f->name = "cuda";
    f->device_count = cu_device_count;
    f->device_info = cu_device_info;
    f->init = cu_init;
    f->free = cu_free;
    f->synchronize = cu_synchronize;
    f->precision = cu_precision;
    f->threads = cu_threads;
    f->host_memory = 0;
    f->alloc = cu_alloc;
    f->release = cu_release;
    f->upload = cu_upload;
    f->download = cu_download;
    f->fill = cu_fill;
    f->copy2d = cu_copy2d;
    f->add = cu_add;
    f->scale = cu_scale;
    f->channel_affine = cu_channel_affine;
    f->row_affine = cu_row_affine;
    f->row_moments = cu_row_moments;
    f->gelu = cu_gelu;
    f->glu = cu_glu;
    f->softmax = cu_softmax;
    f->transpose = cu_transpose;
    f->group_norm = cu_group_norm;
    f->layer_norm = cu_layer_norm;
    f->gemm = cu_gemm;
    f->conv2d = cu_conv2d;
    f->conv_transpose2d = cu_conv_transpose2d;
    f->stft = cu_stft;
    f->istft = cu_istft;
    f->copy4d = cu_copy4d;
    f->standardize_coef = cu_standardize_coef;
    f->group_norm_gelu = cu_group_norm_gelu;
    f->group_norm_glu_add = cu_group_norm_glu_add;
    f->graph_begin = cu_graph_begin;
    f->graph_end = cu_graph_end;
    f->graph_launch = cu_graph_launch;
    f->graph_free = cu_graph_free;
    if (why) *why = g_why;
    return f;
}

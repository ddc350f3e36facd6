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
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_pipeline.h>
#include <cuda_runtime.h>
#include <cufft.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../../src/backend.h"
#include "attention.h"
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

#define TIMER_PAIRS 16
enum { TM_GRAPH, TM_UPLOAD, TM_DOWNLOAD };

/* What each lane has of its own (see cuda_ctx's lanes). */
typedef struct lane_res {
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    void *scratch;
    size_t scratch_size;
} lane_res;

typedef struct cuda_ctx {
    int device;
    int n_sm;                /* multiprocessors (launch shapes)            */
    ss_precision prec;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;     /* products with a bias epilogue, or NULL        */
    void *scratch;           /* grown on demand                         */
    size_t scratch_size;
    float *window;           /* Hann window of window_n samples          */
    int window_n;
    plan_entry plans[N_PLANS];
    unsigned long plan_clock;
    int capturing;           /* between graph_begin and graph_end             */
    int wino_tile;           /* Winograd output tile: 4 (default) or 2         */
    unsigned long generation; /* bumped when memory ops may use is released   */
    void *blas_ws;           /* cuBLAS workspace (set, so recording allocates nothing) */
    size_t base_used;        /* device memory in use when the backend started */
    size_t peak_used;        /* most seen since (sampled at synchronisations) */
    cudaEvent_t dl_event;    /* after the last download_start, or NULL        */
    /* Lanes (ss_lane; STEMSPLIT_CUDA_LANES=0 turns them off): a second stream with
     * its own cuBLAS handle, workspace and scratch.  The fields above (stream,
     * blas, blas_ws, scratch, scratch_size) are always the current lane's; the
     * other lane's wait in `other` until lane_switch swaps them back. */
    int lanes;               /* lane 1 made                                    */
    int cur_lane;
    lane_res other;
    cudaEvent_t ev_fork, ev_join;
    /* Copy queues (STEMSPLIT_CUDA_COPY_QUEUE, on by default): transfers from and
     * to page-locked buffers of ours (the engine's staging) run on streams of
     * their own through device buffers of their own (xq, yq), so that the next
     * batch's upload and this batch's download run beside the forward passes;
     * the compute stream only copies between those and the op buffers. */
    int copyq;
    cudaStream_t up, down;
    cudaEvent_t ev_up;       /* an upload into xq landed                       */
    cudaEvent_t ev_xq_free;  /* the copy out of xq that follows it is done     */
    cudaEvent_t ev_yq_full;  /* the copy into yq a download reads is done      */
    float *xq, *yq;
    size_t xq_size, yq_size;
    struct pinned { void *p; size_t n; } pinned[8];  /* cu_host_alloc's page-locked buffers */
    pthread_t warm;          /* warm_main: cuBLAS's first use, beside the load */
    int warm_running;        /* warm started and not yet joined               */
    struct dev_timer {       /* STEMSPLIT_CUDA_STATS: device time of the forward */
        int on;              /* graphs, uploads and downloads (event pairs    */
        cudaEvent_t ev[2 * TIMER_PAIRS];   /* recorded around each, read once  */
        int kind[TIMER_PAIRS];             /* done: -1 = free)                 */
        double ms[3];
        long n[3];
        double bytes[3];
        size_t pend_bytes[TIMER_PAIRS];
    } tm;
} cuda_ctx;

/* Sample device memory in use (all of this process's allocations, cuBLAS and
 * cuFFT workspaces included) for the peak that STEMSPLIT_CUDA_STATS prints. */
static void sample_memory(cuda_ctx *c)
{
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot - fr > c->peak_used)
        c->peak_used = tot - fr;
}

/* STEMSPLIT_CUDA_STATS: device time of the graph launches, uploads and
 * downloads, from event pairs recorded around each on the stream and read
 * once they have completed (not while a graph is being recorded). */
static void tm_collect(cuda_ctx *c, int wait)
{
    for (int i = 0; i < TIMER_PAIRS; i++) {
        int k = c->tm.kind[i];
        if (k < 0)
            continue;
        cudaError_t e = wait ? cudaEventSynchronize(c->tm.ev[2 * i + 1]) : cudaEventQuery(c->tm.ev[2 * i + 1]);
        if (e == cudaErrorNotReady) {
            cudaGetLastError();
            continue;
        }
        float ms = 0.0f;
        if (e == cudaSuccess && cudaEventElapsedTime(&ms, c->tm.ev[2 * i], c->tm.ev[2 * i + 1]) == cudaSuccess) {
            c->tm.ms[k] += ms;
            c->tm.n[k]++;
            c->tm.bytes[k] += (double)c->tm.pend_bytes[i];
        }
        cudaGetLastError();
        c->tm.kind[i] = -1;
    }
}

static int tm_begin_on(cuda_ctx *c, cudaStream_t st)
{
    if (!c->tm.on || c->capturing)
        return -1;
    tm_collect(c, 0);
    for (int i = 0; i < TIMER_PAIRS; i++)
        if (c->tm.kind[i] < 0 && cudaEventRecord(c->tm.ev[2 * i], st) == cudaSuccess)
            return i;
    return -1;
}

static void tm_end_on(cuda_ctx *c, int i, int kind, size_t bytes, cudaStream_t st)
{
    if (i < 0 || cudaEventRecord(c->tm.ev[2 * i + 1], st) != cudaSuccess)
        return;
    c->tm.kind[i] = kind;
    c->tm.pend_bytes[i] = bytes;
}

static int tm_begin(cuda_ctx *c) { return tm_begin_on(c, c->stream); }
static void tm_end(cuda_ctx *c, int i, int kind, size_t bytes) { tm_end_on(c, i, kind, bytes, c->stream); }

/* Before releasing memory queued ops may use (a buffer, scratch, the window,
 * an FFT plan): let them finish, and change the generation so that recordings
 * that use it are made again (see `generation` in backend.h). */
static void before_release(cuda_ctx *c)
{
    cudaStreamSynchronize(c->stream);
    if (c->lanes)
        cudaStreamSynchronize(c->other.stream);
    c->generation++;
}

/* Scratch budget for one im2col/FFT/Winograd chunk (floats): 96 MiB. */
#define CHUNK_FLOATS ((size_t)24 << 20)

static void *scratch(cuda_ctx *c, size_t bytes, ss_error *err)
{
    if (bytes <= c->scratch_size)
        return c->scratch;
    if (c->scratch) {
        before_release(c);
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

#define BLAS_WS_BYTES ((size_t)32 << 20)

/* ---- lanes ------------------------------------------------------------------------ */

/* Make lane k current: the current lane's resources go to `other`, lane k's come out. */
static void lane_switch(cuda_ctx *c, int k)
{
    if (k == c->cur_lane)
        return;
    lane_res cur = {c->stream, c->blas, c->blas_ws, c->scratch, c->scratch_size};
    c->stream = c->other.stream;
    c->blas = c->other.blas;
    c->blas_ws = c->other.blas_ws;
    c->scratch = c->other.scratch;
    c->scratch_size = c->other.scratch_size;
    c->other = cur;
    c->cur_lane = k;
}

/* Lane 1's stream, cuBLAS handle and workspace, and the fork/join events (at
 * start-up: nothing may be allocated while a pass is recorded).  0 where any
 * of them cannot be made (lanes stay off: everything runs on lane 0). */
static int lanes_make(cuda_ctx *c)
{
    lane_res *o = &c->other;
    cudaStream_t st = NULL;
    cudaEvent_t ef = NULL, ej = NULL;
    void *ws = NULL;
    cublasHandle_t h = NULL;
    /* each handle stored only once it was made, so that lanes_free releases what exists */
    if (cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess)
        o->stream = st;
    if (o->stream && cudaEventCreateWithFlags(&ef, cudaEventDisableTiming) == cudaSuccess)
        c->ev_fork = ef;
    if (c->ev_fork && cudaEventCreateWithFlags(&ej, cudaEventDisableTiming) == cudaSuccess)
        c->ev_join = ej;
    if (c->ev_join && cudaMalloc(&ws, BLAS_WS_BYTES) == cudaSuccess)
        o->blas_ws = ws;
    if (o->blas_ws && cublasCreate(&h) == CUBLAS_STATUS_SUCCESS)
        o->blas = h;
    int ok = o->blas && cublasSetStream(o->blas, o->stream) == CUBLAS_STATUS_SUCCESS &&
             cublasSetMathMode(o->blas, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS &&
             cublasSetWorkspace(o->blas, o->blas_ws, BLAS_WS_BYTES) == CUBLAS_STATUS_SUCCESS;
    if (!ok)
        cudaGetLastError();
    return ok;
}

static void lanes_free(cuda_ctx *c)
{
    lane_switch(c, 0);
    lane_res *o = &c->other;
    if (o->stream)
        cudaStreamSynchronize(o->stream);
    if (o->blas)
        cublasDestroy(o->blas);
    cudaFree(o->blas_ws);
    cudaFree(o->scratch);
    if (o->stream)
        cudaStreamDestroy(o->stream);
    if (c->ev_fork)
        cudaEventDestroy(c->ev_fork);
    if (c->ev_join)
        cudaEventDestroy(c->ev_join);
    memset(o, 0, sizeof *o);
    c->ev_fork = c->ev_join = NULL;
    c->lanes = 0;
}

static ss_status cu_lane(void *vctx, ss_lane_op op, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!c->lanes)
        return SS_OK;
    cudaError_t e = cudaSuccess;
    switch (op) {
    case SS_LANE_FORK:                   /* lane 1 after everything queued on lane 0 */
        lane_switch(c, 0);
        e = cudaEventRecord(c->ev_fork, c->stream);
        if (e == cudaSuccess)
            e = cudaStreamWaitEvent(c->other.stream, c->ev_fork, 0);
        if (e == cudaSuccess)
            lane_switch(c, 1);
        break;
    case SS_LANE_BACK:
        lane_switch(c, 0);
        break;
    case SS_LANE_JOIN:                   /* lane 0 after everything queued on lane 1 */
        lane_switch(c, 1);
        e = cudaEventRecord(c->ev_join, c->stream);
        lane_switch(c, 0);
        if (e == cudaSuccess)
            e = cudaStreamWaitEvent(c->stream, c->ev_join, 0);
        break;
    }
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "lane");
}

/* ---- cuBLAS's first use, beside the model load --------------------------------------- */

/* A process's first cuBLAS product pays the library's one-time start: 102-162
 * ms on an H100 whether it is a GemmEx or a cuBLASLt call (run 64b), and the
 * first product of another kind (strided-batched over many matrices, cuBLASLt
 * with a bias epilogue) 15-17 ms more (run 57), the device idle meanwhile.
 * cu_init therefore makes such products on a thread of its own, with a handle,
 * a stream and buffers of its own, while the caller goes on (reading and
 * uploading the model's weights, opening the first file); the backend's first
 * product or recording waits for it (warm_join).  It shares nothing with the
 * backend's state but the device; its errors are ignored (the products then
 * pay the start themselves).  STEMSPLIT_CUDA_WARMUP=0 turns it off. */
enum { WARM_M = 256, WARM_N = 1024, WARM_K = 256, WARM_B = 16, WARM_S = 64 };

static cublasComputeType_t compute_type(ss_precision p, int reduced);
static cublasStatus_t gemm_rm_on(cublasHandle_t h, cublasComputeType_t ct, int ta, int tb, int m, int n, int k,
                                 float alpha, const float *a, int lda, int64_t sa, const float *b, int ldb, int64_t sb,
                                 float beta, float *cc, int ldc, int64_t sc, int batch);
static int lt_bias_on(cublasLtHandle_t lt, cublasComputeType_t ct, const ss_gemm_desc *d, const float *a,
                      const float *b, const float *bias, float *cc, void *ws, size_t ws_bytes, cudaStream_t s,
                      cublasStatus_t *st_out);

static void warm_products(cublasHandle_t h, cublasLtHandle_t lt, cublasComputeType_t ct, float *buf, void *ws,
                          size_t ws_bytes, cudaStream_t s)
{
    float *a = buf, *b = a + WARM_M * WARM_K, *cc = b + WARM_K * WARM_N, *bias = cc + WARM_M * WARM_N;
    const int64_t S2 = WARM_S * WARM_S;
    /* one product and one over WARM_B matrices (the shapes of convolutions and of
     * the Winograd products), as gemm_rm makes them */
    gemm_rm_on(h, ct, 0, 0, WARM_M, WARM_N, WARM_K, 1.0f, a, WARM_K, 0, b, WARM_N, 0, 0.0f, cc, WARM_N, 0, 1);
    gemm_rm_on(h, ct, 0, 0, WARM_S, WARM_S, WARM_S, 1.0f, a, WARM_S, S2, b, WARM_S, S2, 0.0f, cc, WARM_S, S2, WARM_B);
    if (!lt)
        return;
    /* a product with a bias epilogue, as gemm_lt_bias makes it */
    ss_gemm_desc d = {0, 0, WARM_M, WARM_N, WARM_K, 1.0f, 0.0f, WARM_K, WARM_N, WARM_N, 1, 0, 0, 0, 0};
    cublasStatus_t st;
    lt_bias_on(lt, ct, &d, a, b, bias, cc, ws, ws_bytes, s, &st);
}

static void *warm_main(void *arg)
{
    const cuda_ctx *c = (const cuda_ctx *)arg;     /* device and prec: set before the thread starts */
    const size_t floats = (size_t)WARM_M * WARM_K + (size_t)WARM_K * WARM_N + (size_t)WARM_M * WARM_N + WARM_N;
    const size_t ws_bytes = (size_t)4 << 20;
    cudaStream_t s = NULL;
    cublasHandle_t h = NULL;
    cublasLtHandle_t lt = NULL;
    float *buf = NULL;
    void *ws = NULL;
    cudaStream_t s0 = NULL;
    cublasHandle_t h0 = NULL;
    /* each handle kept only once it was made, so that the end releases what exists */
    if (cudaSetDevice(c->device) == cudaSuccess && cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking) == cudaSuccess)
        s = s0;
    if (s && cudaMalloc((void **)&buf, sizeof(float) * floats) != cudaSuccess)
        buf = NULL;
    if (buf && cudaMalloc(&ws, ws_bytes) != cudaSuccess)
        ws = NULL;
    if (ws && cublasCreate(&h0) == CUBLAS_STATUS_SUCCESS)
        h = h0;
    if (h && cudaMemsetAsync(buf, 0, sizeof(float) * floats, s) == cudaSuccess &&
        cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS &&
        cublasSetWorkspace(h, ws, ws_bytes) == CUBLAS_STATUS_SUCCESS) {
        cublasLtHandle_t lt0 = NULL;
        if (cublasLtCreate(&lt0) == CUBLAS_STATUS_SUCCESS)
            lt = lt0;
        cublasComputeType_t fp32 = compute_type(SS_PREC_FP32, 0), red = compute_type(c->prec, 1);
        warm_products(h, lt, fp32, buf, ws, ws_bytes, s);
        if (red != fp32)
            warm_products(h, lt, red, buf, ws, ws_bytes, s);
        cudaStreamSynchronize(s);
    }
    if (lt) cublasLtDestroy(lt);
    if (h) cublasDestroy(h);
    cudaFree(ws);
    cudaFree(buf);
    if (s) cudaStreamDestroy(s);
    cudaGetLastError();                              /* this thread's; nothing to report */
    return NULL;
}

static void warm_start(cuda_ctx *c)
{
    const char *env = getenv("STEMSPLIT_CUDA_WARMUP");
    if (env && strcmp(env, "0") == 0)
        return;
    c->warm_running = pthread_create(&c->warm, NULL, warm_main, c) == 0;
}

/* Before the backend's own products, recordings and release: the warm-up has ended. */
static void warm_join(cuda_ctx *c)
{
    if (c->warm_running) {
        pthread_join(c->warm, NULL);
        c->warm_running = 0;
    }
}

static void cu_free(void *vctx)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!c)
        return;
    warm_join(c);
    cudaSetDevice(c->device);
    lanes_free(c);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    const char *st = getenv("STEMSPLIT_CUDA_STATS");
    if (st && *st && c->blas)
        fprintf(stderr, "cuda: peak device memory in use %.1f MiB (%.1f MiB above the %.1f MiB at start)\n",
                c->peak_used / 1048576.0, (c->peak_used - c->base_used) / 1048576.0, c->base_used / 1048576.0);
    if (c->tm.on) {
        tm_collect(c, 1);
        const char *what[3] = {"forward graphs", "uploads", "downloads"};
        for (int k = 0; k < 3; k++) {
            if (!c->tm.n[k])
                continue;
            fprintf(stderr, "cuda: device time of %ld %s: %.1f ms, %.3f ms each", c->tm.n[k], what[k], c->tm.ms[k],
                    c->tm.ms[k] / c->tm.n[k]);
            if (k != TM_GRAPH && c->tm.ms[k] > 0)
                fprintf(stderr, ", %.1f GB/s", c->tm.bytes[k] / c->tm.ms[k] / 1e6);
            fputc('\n', stderr);
        }
    }
    for (int i = 0; i < 2 * TIMER_PAIRS; i++)
        if (c->tm.ev[i])
            cudaEventDestroy(c->tm.ev[i]);
    for (int i = 0; i < N_PLANS; i++)
        if (c->plans[i].n)
            cufftDestroy(c->plans[i].plan);
    if (c->blas)
        cublasDestroy(c->blas);
    if (c->lt)
        cublasLtDestroy(c->lt);
    cudaFree(c->blas_ws);
    cudaFree(c->scratch);
    cudaFree(c->window);
    if (c->copyq) {
        cudaStreamSynchronize(c->up);
        cudaStreamSynchronize(c->down);
        cudaFree(c->xq);
        cudaFree(c->yq);
        cudaEventDestroy(c->ev_up);
        cudaEventDestroy(c->ev_xq_free);
        cudaEventDestroy(c->ev_yq_full);
        cudaStreamDestroy(c->up);
        cudaStreamDestroy(c->down);
    }
    if (c->dl_event)
        cudaEventDestroy(c->dl_event);
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
    if (cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, p->device) != cudaSuccess || c->n_sm < 1) {
        cudaGetLastError();
        c->n_sm = 1;
    }
    const char *wino_env = getenv("STEMSPLIT_CUDA_WINO");
    c->wino_tile = wino_env && strcmp(wino_env, "2") == 0 ? 2 : 4;
    /* our own workspace, so that a recorded product never allocates (32 MiB:
     * NVIDIA's recommendation for Hopper); without it cuBLAS keeps its own */
    const size_t blas_ws = BLAS_WS_BYTES;
    if (cudaMalloc(&c->blas_ws, blas_ws) == cudaSuccess) {
        if (cublasSetWorkspace(c->blas, c->blas_ws, blas_ws) != CUBLAS_STATUS_SUCCESS) {
            cudaFree(c->blas_ws);
            c->blas_ws = NULL;
        }
    } else {
        c->blas_ws = NULL;
        cudaGetLastError();
    }
    if (!c->blas_ws || cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS)
        c->lt = NULL;                                /* gemm_bias stores the bias first */
    const char *cq = getenv("STEMSPLIT_CUDA_COPY_QUEUE");
    if (!(cq && strcmp(cq, "0") == 0)) {
        int made = 0;
        c->copyq = cudaStreamCreateWithFlags(&c->up, cudaStreamNonBlocking) == cudaSuccess && ++made &&
                   cudaStreamCreateWithFlags(&c->down, cudaStreamNonBlocking) == cudaSuccess && ++made &&
                   cudaEventCreateWithFlags(&c->ev_up, cudaEventDisableTiming) == cudaSuccess && ++made &&
                   cudaEventCreateWithFlags(&c->ev_xq_free, cudaEventDisableTiming) == cudaSuccess && ++made &&
                   cudaEventCreateWithFlags(&c->ev_yq_full, cudaEventDisableTiming) == cudaSuccess && ++made &&
                   (c->dl_event || cudaEventCreateWithFlags(&c->dl_event, cudaEventDisableTiming) == cudaSuccess);
        if (!c->copyq) {                             /* plain transfers on the one stream */
            cudaGetLastError();
            if (made > 0) cudaStreamDestroy(c->up);
            if (made > 1) cudaStreamDestroy(c->down);
            if (made > 2) cudaEventDestroy(c->ev_up);
            if (made > 3) cudaEventDestroy(c->ev_xq_free);
            if (made > 4) cudaEventDestroy(c->ev_yq_full);
        }
    }
    const char *lanes_env = getenv("STEMSPLIT_CUDA_LANES");
    if (c->blas_ws && !(lanes_env && strcmp(lanes_env, "0") == 0)) {
        c->lanes = lanes_make(c);
        if (!c->lanes)
            lanes_free(c);
    }
    for (int i = 0; i < TIMER_PAIRS; i++)
        c->tm.kind[i] = -1;
    const char *stats_env = getenv("STEMSPLIT_CUDA_STATS");
    if (stats_env && *stats_env) {
        c->tm.on = 1;
        for (int i = 0; i < 2 * TIMER_PAIRS && c->tm.on; i++)
            if (cudaEventCreate(&c->tm.ev[i]) != cudaSuccess) {
                cudaGetLastError();
                c->tm.on = 0;                        /* no timing; the events made are freed */
            }
    }
    sample_memory(c);
    c->base_used = c->peak_used;
    warm_start(c);
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
    if (e == cudaSuccess && c->lanes)
        e = cudaStreamSynchronize(c->other.stream);
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
    if (c->cur_lane != 0)
        return fail(err, SS_E_INTERNAL, "cuda: a recording must start on lane 0");
    warm_join(c);                                   /* no allocation beside a recording */
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
    lane_switch(c, 0);                        /* a pass that forked must have joined (else this fails) */
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
    int t = tm_begin(c);
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph, c->stream);
    tm_end(c, t, TM_GRAPH, 0);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "graph launch");
}

static void cu_graph_free(void *vctx, void *graph)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaStreamSynchronize(c->stream);            /* no launch of it still in flight */
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

static unsigned long cu_generation(void *vctx) { return ((cuda_ctx *)vctx)->generation; }

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
    before_release(c);
    cudaFree(ptr);
}

/* The compute stream and the copy queues have finished what was queued on them. */
static void transfers_idle(cuda_ctx *c)
{
    cudaStreamSynchronize(c->stream);
    if (c->copyq) {
        cudaStreamSynchronize(c->up);
        cudaStreamSynchronize(c->down);
    }
}

/* Whether [p, p + n) lies in one of cu_host_alloc's page-locked buffers. */
static int is_pinned(const cuda_ctx *c, const void *p, size_t n)
{
    for (int i = 0; i < (int)(sizeof c->pinned / sizeof *c->pinned); i++)
        if (c->pinned[i].p && (const char *)p >= (const char *)c->pinned[i].p &&
            (const char *)p + n <= (const char *)c->pinned[i].p + c->pinned[i].n)
            return 1;
    return 0;
}

/* A copy queue's device buffer *q of at least `bytes` (grown with both
 * queues idle), or NULL (the caller then copies on the compute stream). */
static float *queue_buffer(cuda_ctx *c, float **q, size_t *size, size_t bytes)
{
    if (*size >= bytes)
        return *q;
    transfers_idle(c);
    cudaFree(*q);
    *q = NULL;
    *size = 0;
    if (cudaMalloc((void **)q, bytes) != cudaSuccess) {
        cudaGetLastError();
        *q = NULL;
        return NULL;
    }
    *size = bytes;
    return *q;
}

static ss_status cu_upload(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (c->copyq && !c->capturing && bytes && is_pinned(c, src, bytes) &&
        queue_buffer(c, &c->xq, &c->xq_size, bytes)) {
        /* up: wait until xq's last copy out is done, fill it, mark it landed;
         * compute: wait for that, copy it to dst (ops after it see dst) */
        cudaError_t e = cudaStreamWaitEvent(c->up, c->ev_xq_free, 0);
        int t = e == cudaSuccess ? tm_begin_on(c, c->up) : -1;
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->xq, src, bytes, cudaMemcpyHostToDevice, c->up);
        tm_end_on(c, t, TM_UPLOAD, bytes, c->up);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->ev_up, c->up);
        if (e == cudaSuccess)
            e = cudaStreamWaitEvent(c->stream, c->ev_up, 0);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(dst, c->xq, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->ev_xq_free, c->stream);
        return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "upload");
    }
    int t = tm_begin(c);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream);
    tm_end(c, t, TM_UPLOAD, bytes);
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

/* Page-locked host memory (copies to and from it need no staging and do not
 * block the host); plain memory above PINNED_MAX (a large --batch: locking
 * gigabytes would take them from the rest of the machine) or when the driver
 * will not lock that much. */
#define PINNED_MAX ((size_t)512 << 20)

static void *cu_host_alloc(void *vctx, size_t bytes)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    void *p = NULL;
    cudaSetDevice(c->device);
    if (bytes <= PINNED_MAX && cudaHostAlloc(&p, bytes, cudaHostAllocDefault) == cudaSuccess) {
        for (int i = 0; i < (int)(sizeof c->pinned / sizeof *c->pinned); i++)
            if (!c->pinned[i].p) {
                c->pinned[i].p = p;
                c->pinned[i].n = bytes;
                break;
            }
        return p;
    }
    cudaGetLastError();
    return malloc(bytes);
}

static void cu_host_free(void *vctx, void *ptr)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    transfers_idle(c);                           /* no copy of it still in flight */
    for (int i = 0; i < (int)(sizeof c->pinned / sizeof *c->pinned); i++)
        if (c->pinned[i].p == ptr)
            c->pinned[i].p = NULL;
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, ptr) == cudaSuccess && a.type == cudaMemoryTypeHost) {
        cudaFreeHost(ptr);
    } else {
        cudaGetLastError();
        free(ptr);
    }
}

static ss_status cu_download_start(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaSuccess;
    if (c->copyq && !c->capturing && bytes && is_pinned(c, dst, bytes) &&
        queue_buffer(c, &c->yq, &c->yq_size, bytes)) {
        /* compute: wait until the last download out of yq landed, copy src into
         * it; down: wait for that, download it (the next forward pass may
         * overwrite src meanwhile) */
        e = cudaStreamWaitEvent(c->stream, c->dl_event, 0);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->yq, src, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->ev_yq_full, c->stream);
        if (e == cudaSuccess)
            e = cudaStreamWaitEvent(c->down, c->ev_yq_full, 0);
        int t = e == cudaSuccess ? tm_begin_on(c, c->down) : -1;
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(dst, c->yq, bytes, cudaMemcpyDeviceToHost, c->down);
        tm_end_on(c, t, TM_DOWNLOAD, bytes, c->down);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->dl_event, c->down);
        return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
    }
    if (!c->dl_event)
        e = cudaEventCreateWithFlags(&c->dl_event, cudaEventDisableTiming);
    int t = e == cudaSuccess ? tm_begin(c) : -1;
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream);
    tm_end(c, t, TM_DOWNLOAD, bytes);
    if (e == cudaSuccess)
        e = cudaEventRecord(c->dl_event, c->stream);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
}

static ss_status cu_download_wait(void *vctx, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = c->dl_event ? cudaEventSynchronize(c->dl_event) : cudaSuccess;
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

/* Up to 64 blocks along a row, more when there are few rows (so that a launch
 * has at least 4096 blocks where the rows are long enough). */
static dim3 row_grid(size_t rows, int64_t len)
{
    int64_t by = (len + TPB - 1) / TPB, cap = 64;
    if ((size_t)cap * rows < 4096)
        cap = (int64_t)((4096 + rows - 1) / rows);
    if (cap > 65535)
        cap = 65535;
    return dim3((unsigned)rows, (unsigned)(by > cap ? cap : by));
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

static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

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

/* copy4d whose rows are contiguous on both sides (d[3] == s[3] == 1): one warp
 * per task of up to CP_CHUNK floats of one row, the row's start worked out once
 * per task instead of per element; V = 4: float4 moves (rows, their strides
 * and both bases 16-byte aligned). */
#define CP_CHUNK 1024
template <int V>
__global__ void k_copy4d_rows(float *dst, const float *src, dims4 g, unsigned tasks, unsigned chunks)
{
    unsigned lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    for (unsigned t = blockIdx.x * wpb + (threadIdx.x >> 5); t < tasks; t += gridDim.x * wpb) {
        unsigned r = t / chunks, q = t - r * chunks;
        unsigned k = r / (unsigned)g.n[2], i2 = r - k * (unsigned)g.n[2];
        unsigned i0 = k / (unsigned)g.n[1], i1 = k - i0 * (unsigned)g.n[1];
        const float *s = src + (int64_t)i0 * g.s[0] + (int64_t)i1 * g.s[1] + (int64_t)i2 * g.s[2];
        float *d = dst + (int64_t)i0 * g.d[0] + (int64_t)i1 * g.d[1] + (int64_t)i2 * g.d[2];
        int64_t j0 = (int64_t)q * CP_CHUNK, j1 = j0 + CP_CHUNK < g.n[3] ? j0 + CP_CHUNK : g.n[3];
        if (V == 4)
            for (int64_t j = j0 + 4 * lane; j < j1; j += 128)
                *(float4 *)(d + j) = *(const float4 *)(s + j);
        else
            for (int64_t j = j0 + lane; j < j1; j += 32)
                d[j] = s[j];
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
    size_t rows = n / (size_t)shape[3], chunks = ((size_t)shape[3] + CP_CHUNK - 1) / CP_CHUNK;
    if (dstride[3] == 1 && sstride[3] == 1 && shape[3] >= 16 && rows * chunks < 0x80000000u) {
        int v4 = shape[3] % 4 == 0 && aligned16(dst) && aligned16(src);
        for (int i = 0; i < 3; i++)
            v4 = v4 && dstride[i] % 4 == 0 && sstride[i] % 4 == 0;
        unsigned tasks = (unsigned)(rows * chunks), blocks = (tasks + TPB / 32 - 1) / (TPB / 32);
        if (v4)
            k_copy4d_rows<4><<<blocks, TPB, 0, c->stream>>>(dst, src, g, tasks, (unsigned)chunks);
        else
            k_copy4d_rows<1><<<blocks, TPB, 0, c->stream>>>(dst, src, g, tasks, (unsigned)chunks);
        CK_LAUNCH(c, err, "copy4d");
        return SS_OK;
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


/* part[g][chunk] = {sum, sum of squares} of chunk blockIdx.y of group g = blockIdx.x of x
 * [ngroups, gn] (contiguous); of x + bias[c] when bias is given, added in
 * float first as a separate bias pass would store it: group g is `per` rows of
 * len, channels (g % groups) * per onwards.  k_stats_sum adds the chunks in
 * order (no atomics: the same bits on every run). */
__global__ void k_stats(double *part, const float *x, int64_t gn, const float *bias, int per, int groups,
                        int64_t len)
{
    __shared__ double sh[32];
    int64_t g = blockIdx.x, lo = (int64_t)blockIdx.y * STAT_CHUNK;
    int64_t hi = lo + STAT_CHUNK < gn ? lo + STAT_CHUNK : gn;
    const float *xg = x + g * gn;
    double s = 0.0, q = 0.0;
    if (!bias) {
#pragma unroll 4
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
            double v = xg[i];
            s += v;
            q += v * v;
        }
    } else {
        const float *bg = bias + (size_t)(g % groups) * per;
        int64_t i = lo + threadIdx.x, r = i / len, j = i - r * len;     /* row and column of i */
        for (; i < hi; i += blockDim.x) {
            double v = xg[i] + bg[r];
            s += v;
            q += v * v;
            if ((j += blockDim.x) >= len) {
                int64_t k = j / len;
                r += k;
                j -= k * len;
            }
        }
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        double2 *pg = (double2 *)part + (size_t)g * gridDim.y + blockIdx.y;
        *pg = make_double2(s, q);
    }
}

/* The same four elements at a time: len (and so gn) a multiple of 4, x 16-byte aligned. */
__global__ void k_stats4(double *part, const float4 *x, int64_t gn4, const float *bias, int per, int groups,
                         int64_t len4)
{
    __shared__ double sh[32];
    int64_t g = blockIdx.x, lo = (int64_t)blockIdx.y * (STAT_CHUNK / 4);
    int64_t hi = lo + STAT_CHUNK / 4 < gn4 ? lo + STAT_CHUNK / 4 : gn4;
    const float4 *xg = x + g * gn4;
    const float *bg = bias ? bias + (size_t)(g % groups) * per : NULL;
    double s = 0.0, q = 0.0;
    int64_t i = lo + threadIdx.x, r = i / len4, j = i - r * len4;      /* row and column of i */
    for (; i < hi; i += blockDim.x) {
        float4 v = xg[i];
        if (bg) {
            float bc = bg[r];
            v = make_float4(v.x + bc, v.y + bc, v.z + bc, v.w + bc);
            if ((j += blockDim.x) >= len4) {
                int64_t k = j / len4;
                r += k;
                j -= k * len4;
            }
        }
        double a = v.x, b = v.y, e = v.z, f = v.w;
        s += (a + b) + (e + f);
        q += (a * a + b * b) + (e * e + f * f);
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        double2 *pg = (double2 *)part + (size_t)g * gridDim.y + blockIdx.y;
        *pg = make_double2(s, q);
    }
}

/* The sums of group blockIdx.x's nch chunk partials in every thread, in chunk
 * order (each thread a fixed strided subset, then the block's fixed reduction
 * tree: the same bits on every run). */
__device__ __forceinline__ double2 part_sums(const double *part, int nch, double *sh)
{
    const double2 *pg = (const double2 *)part + (size_t)blockIdx.x * nch;
    double s = 0.0, q = 0.0;
    for (int i = threadIdx.x; i < nch; i += blockDim.x) {
        double2 v = pg[i];
        s += v.x;
        q += v.y;
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    return make_double2(s, q);
}

/* acc[2g], acc[2g+1] = the sums of group g's nch chunk partials (part_sums). */
__global__ void k_stats_sum(double *acc, const double *part, int nch)
{
    __shared__ double sh[32];
    double2 t = part_sums(part, nch, sh);
    double s = t.x, q = t.y;
    if (threadIdx.x == 0) {
        acc[2 * blockIdx.x] = s;
        acc[2 * blockIdx.x + 1] = q;
    }
}

/* Chunks of the statistics pass per group, and the doubles its partials take. */
static int64_t stat_chunks(int64_t gn) { return (gn + STAT_CHUNK - 1) / STAT_CHUNK; }
static size_t stat_part_doubles(int64_t ngroups, int64_t gn) { return (size_t)ngroups * stat_chunks(gn) * 2; }

/* The chunk partials part [ngroups, stat_chunks(gn), 2] of x [ngroups, gn] (per
 * channels of len each), of x + bias when given. */
static ss_status stats_parts(cuda_ctx *c, double *part, const float *x, int64_t ngroups, int64_t gn,
                             const float *bias, int per, int groups, int64_t len, ss_error *err)
{
    int64_t nch = stat_chunks(gn);
    if (ngroups > 0x7fffffff || nch > 65535)
        return fail(err, SS_E_INTERNAL, "cuda statistics: %lld groups of %lld", (long long)ngroups, (long long)gn);
    dim3 grid((unsigned)ngroups, (unsigned)nch);  /* groups along x: --batch 1024 makes 524288 of them */
    if (len % 4 == 0 && aligned16(x))
        k_stats4<<<grid, TPB, 0, c->stream>>>(part, (const float4 *)x, gn / 4, bias, per, groups, len / 4);
    else
        k_stats<<<grid, TPB, 0, c->stream>>>(part, x, gn, bias, per, groups, len);
    CK_LAUNCH(c, err, "statistics");
    return SS_OK;
}

/* Group sums acc [ngroups, 2] of x [ngroups, gn] (per channels of len each), of
 * x + bias when given; part: stat_part_doubles() of workspace. */
static ss_status stats(cuda_ctx *c, double *acc, double *part, const float *x, int64_t ngroups, int64_t gn,
                       const float *bias, int per, int groups, int64_t len, ss_error *err)
{
    if (stats_parts(c, part, x, ngroups, gn, bias, per, groups, len, err) != SS_OK)    /* checks the grid */
        return err->code;
    k_stats_sum<<<(unsigned)ngroups, 128, 0, c->stream>>>(acc, part, (int)stat_chunks(gn));
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
    size_t na = (size_t)rows * 2, np = len > 0 ? stat_part_doubles(rows, len) : 0;
    double *acc = (double *)scratch(c, (na + np) * sizeof(double), err);
    if (!acc) return err->code;
    if (len > 0 && stats(c, acc, acc + na, x, rows, len, NULL, 1, 1, len, err) != SS_OK)
        return err->code;
    if (len <= 0)
        cudaMemsetAsync(acc, 0, (size_t)rows * 2 * sizeof(double), c->stream);
    k_moments<<<(rows + 127) / 128, 128, 0, c->stream>>>(mean, sd, acc, rows, len);
    CK_LAUNCH(c, err, "row_moments");
    return SS_OK;
}

/* ---- group norm: statistics, then per-row coefficients, then one flat pass ------------ */

/* Thread 0 turns the sum s and the sum of squares q of n values into their
 * mean and 1 / sqrt(variance + eps) in mr[0..1]; then every thread of the block
 * may read them. */
__device__ __forceinline__ void moments_shared(double s, double q, double n, float eps, float *mr)
{
    if (threadIdx.x == 0) {
        double m = s / n;
        double var = q / n - m * m;
        mr[0] = (float)m;
        mr[1] = (float)(1.0 / sqrt((var > 0 ? var : 0) + (double)eps));
    }
    __syncthreads();
}

/* co[r] for row r = (b, c) of [batch, ch, len] in `groups` groups: {bias[c],
 * group mean, rstd * gamma[c], beta[c]}, so that the norm of x in row r is
 * ((x + co.x) - co.y) * co.z + co.w (the arithmetic of a bias pass followed by
 * the norm).  Block g adds group g's nch chunk partials (part_sums), then
 * writes the coefficients of the group's rows. */
__global__ void k_gn_coef(float4 *co, const double *part, int nch, const float *bias, int ch, int groups, int64_t gn,
                          const float *gamma, const float *beta, float eps)
{
    __shared__ double sh[32];
    __shared__ float mr[2];
    double2 t = part_sums(part, nch, sh);
    moments_shared(t.x, t.y, (double)gn, eps, mr);
    int per = ch / groups, g0 = (int)(blockIdx.x % (unsigned)groups) * per;
    size_t r0 = (size_t)(blockIdx.x / (unsigned)groups) * ch + g0;
    for (int i = threadIdx.x; i < per; i += blockDim.x) {
        int cc = g0 + i;
        co[r0 + i] = make_float4(bias ? bias[cc] : 0.0f, mr[0], mr[1] * (gamma ? gamma[cc] : 1.0f),
                                 beta ? beta[cc] : 0.0f);
    }
}

__device__ __forceinline__ float gn_val(float x, float4 k) { return ((x + k.x) - k.y) * k.z + k.w; }

__device__ __forceinline__ float gn_act(float x, float4 k, int act)
{
    float v = gn_val(x, k);
    return act ? gelu_f(v) : v;
}

/* y = norm(x) (GELU'd when act), one thread per element; I: index type. */
template <typename I>
__global__ void k_gn_apply(float *y, const float *x, const float4 *co, I n, I len, int act)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x)
        y[i] = gn_act(x[i], co[i / len], act);
}

/* The same four elements at a time (len a multiple of 4, 16-byte aligned rows). */
template <typename I>
__global__ void k_gn_apply4(float4 *y, const float4 *x, const float4 *co, I n4, I len4, int act)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        float4 k = co[i / len4], v = x[i];
        y[i] = make_float4(gn_act(v.x, k, act), gn_act(v.y, k, act), gn_act(v.z, k, act), gn_act(v.w, k, act));
    }
}

__device__ __forceinline__ float gn_glu(float a, float b, float4 ka, float4 kb)
{
    return gn_val(a, ka) / (1.0f + expf(-gn_val(b, kb)));
}

/* x [batch, ch, len] += glu(norm(g)) for g [batch, 2ch, len]: the GLU's halves
 * are rows b*2ch + c and b*2ch + ch + c of g (= row + b*ch and + ch for the row
 * b*ch + c of x); same arithmetic as the norm, k_glu_rows and k_add in turn. */
template <typename I>
__global__ void k_gn_glu_add(float *x, const float *g, const float4 *co, I n, I len, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I row = i / len, ra = row + (row / ch) * ch, ia = ra * len + (i - row * len);
        x[i] = x[i] + gn_glu(g[ia], g[ia + ch * len], co[ra], co[ra + ch]);
    }
}

template <typename I>
__global__ void k_gn_glu_add4(float4 *x, const float4 *g, const float4 *co, I n4, I len4, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        I row = i / len4, ra = row + (row / ch) * ch, ia = ra * len4 + (i - row * len4);
        float4 ka = co[ra], kb = co[ra + ch], a = g[ia], b = g[ia + ch * len4], v = x[i];
        v.x += gn_glu(a.x, b.x, ka, kb);
        v.y += gn_glu(a.y, b.y, ka, kb);
        v.z += gn_glu(a.z, b.z, ka, kb);
        v.w += gn_glu(a.w, b.w, ka, kb);
        x[i] = v;
    }
}

/* Launch kernel K (K4 four elements at a time when len % 4 == 0 and x, y are
 * 16-byte aligned) over the n elements of [rows of ch channels, len], 32-bit
 * indices when `span` (the largest index the kernel forms) fits; the kernels
 * take (y, x, extra args..., n, len, ch). */
#define LAUNCH_FLAT(K, K4, y, x, n, span, len, ch, ...)                                                          \
    do {                                                                                                       \
        if ((len) % 4 == 0 && aligned16(x) && aligned16(y)) {                                                  \
            if ((span) <= 0xffffffffu)                                                                         \
                LAUNCH(K4<unsigned>, (n) / 4, (float4 *)(y), (const float4 *)(x), __VA_ARGS__, (unsigned)((n) / 4), \
                       (unsigned)((len) / 4), (unsigned)(ch));                                                 \
            else                                                                                               \
                LAUNCH(K4<size_t>, (n) / 4, (float4 *)(y), (const float4 *)(x), __VA_ARGS__, (size_t)(n) / 4,  \
                       (size_t)(len) / 4, (size_t)(ch));                                                       \
        } else if ((span) <= 0xffffffffu) {                                                                    \
            LAUNCH(K<unsigned>, (n), (y), (x), __VA_ARGS__, (unsigned)(n), (unsigned)(len), (unsigned)(ch));     \
        } else {                                                                                               \
            LAUNCH(K<size_t>, (n), (y), (x), __VA_ARGS__, (size_t)(n), (size_t)(len), (size_t)(ch));           \
        }                                                                                                      \
    } while (0)

/* Statistics and coefficients of the norm of x [batch, ch, len] (+ bias) in
 * `groups` groups; returns the coefficients ([batch * ch] float4) in scratch. */
static const float4 *gn_prepare(cuda_ctx *c, const float *x, const float *bias, int batch, int ch, int64_t len,
                                int groups, const float *gamma, const float *beta, float eps, ss_error *err)
{
    int64_t ng = (int64_t)batch * groups, per = ch / groups, gn = per * len;
    size_t rows = (size_t)batch * ch;
    if (rows > 0x7fffffffu) {
        fail(err, SS_E_INTERNAL, "cuda group_norm: %zu rows", rows);
        return NULL;
    }
    size_t co_bytes = rows * sizeof(float4);
    char *buf = (char *)scratch(c, co_bytes + stat_part_doubles(ng, gn) * sizeof(double), err);
    if (!buf) return NULL;
    float4 *co = (float4 *)buf;
    double *part = (double *)(buf + co_bytes);       /* co_bytes is a multiple of 16 */
    if (stats_parts(c, part, x, ng, gn, bias, (int)per, groups, len, err) != SS_OK)
        return NULL;
    k_gn_coef<<<(unsigned)ng, 128, 0, c->stream>>>(co, part, (int)stat_chunks(gn), bias, ch, groups, gn, gamma, beta,
                                                   eps);
    return co;
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
    const float4 *co = gn_prepare(c, x, bias, batch, ch, len, groups, gamma, beta, eps, err);
    if (!co) return err->code;
    size_t n = (size_t)batch * ch * (size_t)len;
    if (len % 4 == 0 && aligned16(x) && aligned16(y)) {
        size_t n4 = n / 4, l4 = (size_t)len / 4;
        if (n4 <= 0xffffffffu)
            LAUNCH(k_gn_apply4<unsigned>, n4, (float4 *)y, (const float4 *)x, co, (unsigned)n4, (unsigned)l4, act);
        else
            LAUNCH(k_gn_apply4<size_t>, n4, (float4 *)y, (const float4 *)x, co, n4, l4, act);
    } else if (n <= 0xffffffffu) {
        LAUNCH(k_gn_apply<unsigned>, n, y, x, co, (unsigned)n, (unsigned)len, act);
    } else {
        LAUNCH(k_gn_apply<size_t>, n, y, x, co, n, (size_t)len, act);
    }
    CK_LAUNCH(c, err, "group_norm");
    return SS_OK;
}

static ss_status cu_group_norm_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch,
                                    int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                    ss_error *err)
{
    return group_norm_act((cuda_ctx *)vctx, y, x, bias, batch, ch, len, groups, gamma, beta, eps, 1, err);
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
    const float4 *co = gn_prepare(c, g, bias, batch, 2 * ch, len, groups, gamma, beta, eps, err);
    if (!co) return err->code;
    size_t n = (size_t)batch * ch * (size_t)len;
    LAUNCH_FLAT(k_gn_glu_add, k_gn_glu_add4, x, g, n, 2 * n, len, ch, co);
    CK_LAUNCH(c, err, "group_norm_glu_add");
    return SS_OK;
}

/* ---- a DConv layer's second half without storing its 1x1 convolution ------------
 * x [batch, ch, len] += glu(norm(w h + bias)), w [2ch, hidden], h [batch, hidden,
 * len], GroupNorm(1) per item over the 2ch x len values.  hidden is ch / 8 in
 * HTDemucs, so w h costs 2ch * hidden multiply-adds per position: computing it
 * twice costs less than writing it [batch, 2ch, len] and reading it twice
 * where hidden is small (the outer layers, whose tensors are the largest); the
 * deeper layers' products (hidden 24-48) run faster through cuBLAS, so
 * hidden > PW_MAX_HIDDEN takes the composed path.
 * Pass 1 (k_pw_stats) keeps only each block's {sum, sum of squares}; k_gn_coef
 * turns them into per-row coefficients; pass 2 (k_pw_glu_add) computes w h again
 * with the same fmaf chain (so the same bits) and adds the GLU to x.
 * A block: PW_TT positions of one item (lane l holds positions l + 32 j) and two
 * halves of PW_HALF weight rows (pass 1: 2 PW_HALF consecutive rows; pass 2: GLU
 * rows p.. and ch + p..), h and the rows' weights in shared memory. */
#define PW_TT 128
#define PW_HALF 64
#define PW_WP (2 * PW_HALF + 4)   /* row pitch of the weights in shared memory (floats) */
#define PW_THREADS 256
#define PW_MAX_HIDDEN 16   /* beyond: cuBLAS's product and one more pass are faster (run 38) */

static size_t pw_smem(int hidden) { return (size_t)hidden * (PW_TT + PW_WP) * sizeof(float); }

/* Stage h [hidden, PW_TT] (zeros past len) and the weights of rows ra.. (na of
 * them) and rb.. (nb) as [hidden, PW_WP] columns 0.. and PW_HALF.. (zeros past). */
__device__ __forceinline__ void pw_stage(float *hs, float *ws, const float *hb, const float *w, int hidden,
                                         int64_t len, int64_t t0, int ra, int na, int rb, int nb)
{
    for (int i = threadIdx.x; i < hidden * PW_TT; i += blockDim.x) {
        int k = i / PW_TT, tt = i - k * PW_TT;
        hs[i] = t0 + tt < len ? hb[(size_t)k * len + t0 + tt] : 0.0f;
    }
    for (int i = threadIdx.x; i < hidden * 2 * PW_HALF; i += blockDim.x) {
        int k = i / (2 * PW_HALF), j = i - k * (2 * PW_HALF), half = j >= PW_HALF, jj = j - half * PW_HALF;
        int row = half ? rb + jj : ra + jj, n = half ? nb : na;
        ws[k * PW_WP + j] = jj < n ? __ldg(w + (size_t)row * hidden + k) : 0.0f;
    }
}

/* The 4 x 4 products of weight rows 4q..4q+3 of each half with the lane's 4
 * positions: a[i][j], b[i][j] = sum over k in order of fmaf. */
__device__ __forceinline__ void pw_dot(float a[4][4], float b[4][4], const float *hs, const float *ws, int hidden,
                                       int q, int lane)
{
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
            a[i][j] = b[i][j] = 0.0f;
    for (int k = 0; k < hidden; k++) {
        float4 wa = *(const float4 *)(ws + k * PW_WP + 4 * q);
        float4 wb = *(const float4 *)(ws + k * PW_WP + PW_HALF + 4 * q);
        const float *hk = hs + k * PW_TT + lane;
        float hv[4] = {hk[0], hk[32], hk[64], hk[96]};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            a[0][j] = fmaf(wa.x, hv[j], a[0][j]);
            a[1][j] = fmaf(wa.y, hv[j], a[1][j]);
            a[2][j] = fmaf(wa.z, hv[j], a[2][j]);
            a[3][j] = fmaf(wa.w, hv[j], a[3][j]);
            b[0][j] = fmaf(wb.x, hv[j], b[0][j]);
            b[1][j] = fmaf(wb.y, hv[j], b[1][j]);
            b[2][j] = fmaf(wb.z, hv[j], b[2][j]);
            b[3][j] = fmaf(wb.w, hv[j], b[3][j]);
        }
    }
}

/* part [batch, tiles * gridDim.y, 2]: block (item b, tile, row block z) adds
 * w h + bias over rows 2 PW_HALF z.. of its tile (as k_stats would add the
 * stored w h + bias: the sum in float, then in double). grid.x = batch * tiles. */
__global__ void __launch_bounds__(PW_THREADS) k_pw_stats(double *part, const float *h, const float *w,
                                                         const float *bias, int hidden, int cout, int64_t len,
                                                         int tiles)
{
    extern __shared__ float pw_sh[];
    __shared__ double sh[32];
    float *hs = pw_sh, *ws = pw_sh + hidden * PW_TT;
    int b = blockIdx.x / tiles, tile = blockIdx.x - b * tiles, o0 = blockIdx.y * 2 * PW_HALF;
    int na = min(PW_HALF, cout - o0), nb = min(PW_HALF, cout - o0 - PW_HALF);
    int64_t t0 = (int64_t)tile * PW_TT;
    pw_stage(hs, ws, h + (size_t)b * hidden * len, w, hidden, len, t0, o0, na, o0 + PW_HALF, nb);
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double s = 0.0, sq = 0.0;
    for (int q = warp; 4 * q < na; q += PW_THREADS / 32) {
        float a[4][4], g[4][4];
        pw_dot(a, g, hs, ws, hidden, q, lane);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int r = 4 * q + i;                  /* row r of each half */
            float ba = r < na && bias ? bias[o0 + r] : 0.0f, bb = r < nb && bias ? bias[o0 + PW_HALF + r] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                if (t0 + lane + 32 * j >= len)
                    continue;
                if (r < na) {
                    double v = a[i][j] + ba;
                    s += v;
                    sq += v * v;
                }
                if (r < nb) {
                    double v = g[i][j] + bb;
                    s += v;
                    sq += v * v;
                }
            }
        }
    }
    s = block_sum(s, sh);
    sq = block_sum(sq, sh);
    if (threadIdx.x == 0)
        ((double2 *)part)[(size_t)blockIdx.x * gridDim.y + blockIdx.y] = make_double2(s, sq);
}

/* x += glu(norm(w h)) over GLU rows PW_HALF z.. (and ch + PW_HALF z..) of a tile;
 * co [batch * 2ch] from k_gn_coef. grid.x = batch * tiles. */
__global__ void __launch_bounds__(PW_THREADS) k_pw_glu_add(float *__restrict__ x, const float *__restrict__ h,
                                                           const float *__restrict__ w, const float4 *__restrict__ co,
                                                           int hidden, int ch, int64_t len, int tiles)
{
    extern __shared__ float pw_sh[];
    float *hs = pw_sh, *ws = pw_sh + hidden * PW_TT;
    int b = blockIdx.x / tiles, tile = blockIdx.x - b * tiles, p0 = blockIdx.y * PW_HALF;
    int np = min(PW_HALF, ch - p0);
    int64_t t0 = (int64_t)tile * PW_TT;
    pw_stage(hs, ws, h + (size_t)b * hidden * len, w, hidden, len, t0, p0, np, ch + p0, np);
    __syncthreads();
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const float4 *cb = co + (size_t)b * 2 * ch;
    for (int q = warp; 4 * q < np; q += PW_THREADS / 32) {
        float a[4][4], g[4][4];
        pw_dot(a, g, hs, ws, hidden, q, lane);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int p = p0 + 4 * q + i;
            if (4 * q + i >= np)
                break;
            float4 ka = cb[p], kb = cb[ch + p];
            float *xr = x + ((size_t)b * ch + p) * len + t0 + lane;
            float xv[4];
#pragma unroll
            for (int j = 0; j < 4; j++)         /* the four loads in flight before any store */
                xv[j] = t0 + lane + 32 * j < len ? xr[32 * j] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (t0 + lane + 32 * j < len)
                    xr[32 * j] = xv[j] + gn_glu(a[i][j], g[i][j], ka, kb);
        }
    }
}

/* y = gelu(x + bias[c]) for rows (b, c) of len; same arithmetic as a bias pass then k_gelu. */
template <typename I>
__global__ void k_bias_gelu(float *y, const float *x, const float *bias, I n, I len, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x)
        y[i] = gelu_f(x[i] + bias[(i / len) % ch]);
}

template <typename I>
__global__ void k_bias_gelu4(float4 *y, const float4 *x, const float *bias, I n4, I len4, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        float bc = bias[(i / len4) % ch];
        float4 v = x[i];
        y[i] = make_float4(gelu_f(v.x + bc), gelu_f(v.y + bc), gelu_f(v.z + bc), gelu_f(v.w + bc));
    }
}

/* y [batch, ch, len] = glu(x + bias) for x [batch, 2ch, len]: row b*ch + c of y
 * takes rows b*2ch + c and + ch of x (= row + b*ch); as a bias pass then k_glu_rows. */
template <typename I>
__global__ void k_bias_glu(float *y, const float *x, const float *bias, I n, I len, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I row = i / len, b = row / ch, c = row - b * ch, ia = (row + b * ch) * len + (i - row * len);
        y[i] = (x[ia] + bias[c]) / (1.0f + expf(-(x[ia + ch * len] + bias[c + ch])));
    }
}

template <typename I>
__global__ void k_bias_glu4(float4 *y, const float4 *x, const float *bias, I n4, I len4, I ch)
{
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n4; i += (I)gridDim.x * blockDim.x) {
        I row = i / len4, b = row / ch, c = row - b * ch, ia = (row + b * ch) * len4 + (i - row * len4);
        float ba = bias[c], bb = bias[c + ch];
        float4 a = x[ia], g = x[ia + ch * len4];
        y[i] = make_float4((a.x + ba) / (1.0f + expf(-(g.x + bb))), (a.y + ba) / (1.0f + expf(-(g.y + bb))),
                           (a.z + ba) / (1.0f + expf(-(g.z + bb))), (a.w + ba) / (1.0f + expf(-(g.w + bb))));
    }
}

static ss_status cu_bias_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                              ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * ch * (size_t)len;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    LAUNCH_FLAT(k_bias_gelu, k_bias_gelu4, y, x, n, n, len, ch, bias);
    CK_LAUNCH(c, err, "bias_gelu");
    return SS_OK;
}

static ss_status cu_bias_glu(void *vctx, float *y, float *x, const float *bias, int batch, int ch, int64_t len,
                             ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    size_t n = (size_t)batch * ch * (size_t)len;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    LAUNCH_FLAT(k_bias_glu, k_bias_glu4, y, x, n, 2 * n, len, ch, bias);
    CK_LAUNCH(c, err, "bias_glu");
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

/* The same for rows of up to 256 * SM_NPT: each row read once into registers
 * and written once (same arithmetic and order as k_softmax). */
#define SM_NPT 12
__global__ void __launch_bounds__(256) k_softmax_reg(float *y, const float *x, int len, float scale)
{
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * len;
    float *yr = y + (size_t)blockIdx.x * len;
    float v[SM_NPT], mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < SM_NPT; k++) {
        int i = threadIdx.x + k * 256;
        v[k] = i < len ? scale * xr[i] : -INFINITY;
        mx = fmaxf(mx, v[k]);
    }
    mx = warp_max(mx);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) sh[w] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < 8; i++) mx = fmaxf(mx, sh[i]);
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < SM_NPT; k++) {
        float e = threadIdx.x + k * 256 < len ? expf(v[k] - mx) : 0.0f;
        v[k] = e;
        s += e;
    }
    s = block_sum(s, sh);
    float inv = 1.0f / s;
#pragma unroll
    for (int k = 0; k < SM_NPT; k++)
        if (threadIdx.x + k * 256 < len)
            yr[threadIdx.x + k * 256] = v[k] * inv;
}

static ss_status cu_softmax(void *vctx, float *y, const float *x, int rows, int len, float scale, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (rows <= 0 || len <= 0) return SS_OK;
    for (int r0 = 0; r0 < rows; r0 += 65535) {
        int nr = rows - r0 < 65535 ? rows - r0 : 65535;
        if (len <= 256 * SM_NPT)
            k_softmax_reg<<<nr, 256, 0, c->stream>>>(y + (size_t)r0 * len, x + (size_t)r0 * len, len, scale);
        else
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

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, batched with element strides,
 * on cuBLAS handle h in compute type ct (gemm_rm's product; the warm-up's). */
static cublasStatus_t gemm_rm_on(cublasHandle_t h, cublasComputeType_t ct, int ta, int tb, int m, int n, int k,
                                 float alpha, const float *a, int lda, int64_t sa, const float *b, int ldb, int64_t sb,
                                 float beta, float *cc, int ldc, int64_t sc, int batch)
{
    /* column-major: C^T [n, m] = op(B)^T [n, k] op(A)^T [k, m] */
    return cublasGemmStridedBatchedEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                                      &alpha, b, CUDA_R_32F, ldb, sb, a, CUDA_R_32F, lda, sa, &beta, cc, CUDA_R_32F,
                                      ldc, sc, batch, ct, CUBLAS_GEMM_DEFAULT);
}

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, batched with element strides. */
static ss_status gemm_rm(cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         int64_t sa, const float *b, int ldb, int64_t sb, float beta, float *cc, int ldc, int64_t sc,
                         int batch, int reduced, ss_error *err)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return SS_OK;
    warm_join(c);
    cublasStatus_t st = gemm_rm_on(c->blas, compute_type(c->prec, reduced), ta, tb, m, n, k, alpha, a, lda, sa, b,
                                   ldb, sb, beta, cc, ldc, sc, batch);
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

/* c [m, n] (pitch ldc) = beta c + bias (a row per row; beta 0: c not read),
 * as the rank-1 product ones x bias^T with that beta stores it. */
__global__ void k_bias_rows(float *c, int ldc, const float *bias, int n, float beta)
{
    float *row = c + (size_t)blockIdx.x * (size_t)ldc;
    ROW_LOOP(j, n) row[j] = beta != 0.0f ? beta * row[j] + bias[j] : bias[j];
}

/* gemm d (batch 1) + bias as one cuBLASLt product with a bias epilogue: D =
 * alpha op(A) op(B) + beta C + bias, no pass of its own and no read of C for
 * the bias (column-major as gemm_rm: D^T [n, m], the bias along its n rows), on
 * handle lt in compute type ct with workspace ws on stream s (gemm_lt_bias's
 * product; the warm-up's).  Returns whether cuBLASLt had an algorithm for it
 * (*st: the first failure, CUBLAS_STATUS_SUCCESS if none). */
static int lt_bias_on(cublasLtHandle_t lt, cublasComputeType_t ct, const ss_gemm_desc *d, const float *a,
                      const float *b, const float *bias, float *cc, void *ws, size_t ws_bytes, cudaStream_t s,
                      cublasStatus_t *st_out)
{
    cublasLtMatmulDesc_t md = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasOperation_t ta = d->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = d->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasStatus_t st = cublasLtMatmulDescCreate(&md, ct, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, d->trans_b ? d->k : d->n, d->trans_b ? d->n : d->k, d->ldb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, d->trans_a ? d->m : d->k, d->trans_a ? d->k : d->m, d->lda);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, d->n, d->m, d->ldc);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                  sizeof ws_bytes);
    if (st == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulAlgoGetHeuristic(lt, md, la, lb, lc, lc, pref, 1, &res, &found) != CUBLAS_STATUS_SUCCESS)
        found = 0;
    if (st == CUBLAS_STATUS_SUCCESS && found > 0)
        st = cublasLtMatmul(lt, md, &d->alpha, b, la, a, lb, &d->beta, cc, lc, cc, lc, &res.algo, ws, ws_bytes, s);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (md) cublasLtMatmulDescDestroy(md);
    *st_out = st;
    return found > 0;
}

/* gemm_lt_bias: lt_bias_on with the backend's handle, workspace and stream.
 * Returns 0 where cuBLASLt has no algorithm for it (the caller stores the bias
 * first instead), -1 with err set on a failure. */
static int gemm_lt_bias(cuda_ctx *c, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                        float *cc, ss_error *err)
{
    warm_join(c);
    cublasStatus_t st;
    int found = lt_bias_on(c->lt, compute_type(c->prec, d->reduced), d, a, b, bias, cc, c->blas_ws, BLAS_WS_BYTES,
                           c->stream, &st);
    if (st != CUBLAS_STATUS_SUCCESS) {
        fail(err, st == CUBLAS_STATUS_ALLOC_FAILED ? SS_E_DEVICE : SS_E_INTERNAL,
             "cuda: cuBLASLt product %dx%dx%d with a bias failed: %s", d->m, d->n, d->k, cublasGetStatusString(st));
        return -1;
    }
    return found;
}

/* gemm d with a bias row: one cuBLASLt product, or the bias stored first (one
 * pass instead of a rank-1 product) where cuBLASLt has nothing for it. */
static ss_status cu_gemm_bias(void *vctx, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                              float *cc, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->m <= 0 || d->n <= 0)
        return SS_OK;
    if (c->lt && d->k > 0) {
        int r = gemm_lt_bias(c, d, a, b, bias, cc, err);
        if (r != 0)
            return r > 0 ? SS_OK : err->code;
    }
    LAUNCH_ROWS(k_bias_rows, (size_t)d->m, d->n, cc, d->ldc, bias, d->n, d->beta);
    CK_LAUNCH(c, err, "gemm_bias");
    ss_gemm_desc p = *d;
    p.beta = 1.0f;
    return cu_gemm(vctx, &p, a, b, cc, err);
}

/* ---- fused attention (attention.cu) --------------------------------------------------- */

/* Fused where the two products may take tf32 inputs: strict fp32 keeps the
 * cuBLAS products and the softmax kernel. */
static int cu_attention_ok(void *vctx, const ss_attn_desc *d)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    return ss_cuda_attention_ok(d, compute_type(c->prec, d->reduced) != CUBLAS_COMPUTE_32F);
}

static ss_status cu_attention(void *vctx, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                              float *o, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = ss_cuda_attention(c->stream, d, q, k, v, o);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "attention");
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

/* Direct 1-D convolution along w for few output channels (HTDemucs's DConv
 * compresses channels 8x in its first conv): y [nb, cout, h, ow] from
 * x [nb, cin, h, w] and w [cout, cin, 1, kw], stride 1, padding pw, dilation dw,
 * each row of h on its own (kh = 1, no padding along h).  Reads x once per
 * DC_CO output channels instead of im2col's kw copies and a GEMM with few
 * rows.  Block: DC_TPB * P outputs of one row for DC_CO output channels and
 * one slice of the input channels, taken DC_CI input channels at a time: their
 * input span and weights are copied to shared memory asynchronously (cp.async),
 * the next chunk while the current one is summed (two buffers); each thread
 * keeps P outputs x DC_CO sums (fp32 multiply-adds).  With several slices
 * (small grids: deep layers) each writes its partial sums to
 * part [slices, nb, cout, h, ow] and k_sum_slices adds them in slice order with
 * the bias (deterministic). */
#define DC_TPB 128
#define DC_P_MAX 4
#define DC_CO 8
#define DC_CI 8
#define DC_COUT_MAX 64
#define DC_KW_MAX 16
#define DC_SPAN_MAX 64    /* (kw - 1) * dw: two buffers of shared memory <= 45 KiB */

/* Start copying chunk [ci0, ci0 + nci) of the input span and its weights into xs, ws. */
__device__ __forceinline__ void dc_stage(float *xs, float *ws, const float *xb, size_t cs, const float *w, int ci0,
                                         int nci, int cin, int cout, int co0, int kw, int span, int in0, int wd)
{
    for (int ci = 0; ci < nci; ci++) {
        const float *xr = xb + (size_t)(ci0 + ci) * cs;
        float *dst = xs + ci * span;
        for (int e = threadIdx.x; e < span; e += DC_TPB) {
            int ix = in0 + e;
            if (ix >= 0 && ix < wd)
                __pipeline_memcpy_async(dst + e, xr + ix, sizeof(float));
            else
                dst[e] = 0.0f;
        }
    }
    for (int e = threadIdx.x; e < DC_CI * kw * DC_CO; e += DC_TPB) {
        int o = e % DC_CO, r = e / DC_CO, ci = r / kw;
        if (co0 + o < cout && ci < nci)
            __pipeline_memcpy_async(ws + e, w + ((size_t)(co0 + o) * cin + ci0 + ci) * kw + (r - ci * kw),
                                    sizeof(float));
        else
            ws[e] = 0.0f;
    }
    __pipeline_commit();
}

template <int P>
__global__ void __launch_bounds__(DC_TPB) k_conv1d_direct(float *y, const float *x, const float *w,
                                                          const float *bias, int cin, int h, int wd, int cout, int kw,
                                                          int pw, int dw, int ow, int co_blocks, int per_slice)
{
    extern __shared__ float4 sm4[];
    int span = DC_TPB * P + (kw - 1) * dw, xsz = DC_CI * span, wsz = DC_CI * kw * DC_CO;
    float *sm = (float *)sm4;                         /* per buffer: xs [DC_CI][span], ws [DC_CI][kw][DC_CO] */
    int t0 = blockIdx.x * DC_TPB * P, row = blockIdx.y;
    int co0 = (int)(blockIdx.z % (unsigned)co_blocks) * DC_CO, slice = (int)(blockIdx.z / (unsigned)co_blocks);
    int b = row / h, yy = row - b * h, c_lo = slice * per_slice;
    int c_hi = c_lo + per_slice < cin ? c_lo + per_slice : cin;
    size_t cs = (size_t)h * wd;                       /* channel stride of x */
    const float *xb = x + (size_t)b * cin * cs + (size_t)yy * wd;
    float acc[P][DC_CO];
#pragma unroll
    for (int p = 0; p < P; p++)
#pragma unroll
        for (int o = 0; o < DC_CO; o++)
            acc[p][o] = 0.0f;
    int nch = (c_hi - c_lo + DC_CI - 1) / DC_CI;
    if (nch > 0)
        dc_stage(sm, sm + xsz, xb, cs, w, c_lo, c_hi - c_lo < DC_CI ? c_hi - c_lo : DC_CI, cin, cout, co0, kw, span,
                 t0 - pw, wd);
    for (int q = 0; q < nch; q++) {
        int ci0 = c_lo + q * DC_CI, nci = c_hi - ci0 < DC_CI ? c_hi - ci0 : DC_CI;
        if (q + 1 < nch) {                            /* next chunk into the other buffer */
            int n1 = c_hi - ci0 - DC_CI < DC_CI ? c_hi - ci0 - DC_CI : DC_CI;
            float *nb_ = sm + ((q + 1) & 1) * (xsz + wsz);
            dc_stage(nb_, nb_ + xsz, xb, cs, w, ci0 + DC_CI, n1, cin, cout, co0, kw, span, t0 - pw, wd);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const float *xs = sm + (q & 1) * (xsz + wsz), *ws = xs + xsz;
        for (int ci = 0; ci < nci; ci++)
            for (int k = 0; k < kw; k++) {
                const float4 *wk = (const float4 *)(ws + (ci * kw + k) * DC_CO);
                float4 w0 = wk[0], w1 = wk[1];
                float wv[DC_CO] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
                const float *xr = xs + ci * span + threadIdx.x + k * dw;
#pragma unroll
                for (int p = 0; p < P; p++) {
                    float xv = xr[p * DC_TPB];
#pragma unroll
                    for (int o = 0; o < DC_CO; o++)
                        acc[p][o] += wv[o] * xv;
                }
            }
        __syncthreads();                              /* before this buffer is staged again */
    }
    size_t out_size = (size_t)cout * h * ow, all = (size_t)(gridDim.y / h) * out_size;
    float *yo = y + (size_t)slice * all;              /* this slice's part (slice 0: y) */
#pragma unroll
    for (int p = 0; p < P; p++) {
        int t = t0 + threadIdx.x + p * DC_TPB;
        if (t >= ow)
            continue;
#pragma unroll
        for (int o = 0; o < DC_CO; o++)
            if (co0 + o < cout)
                yo[(((size_t)b * cout + co0 + o) * h + yy) * ow + t] = acc[p][o] + (bias ? bias[co0 + o] : 0.0f);
    }
}

/* y [n] = bias[channel] + the sum of part [slices, n] in slice order. */
__global__ void k_sum_slices(float *y, const float *part, int slices, unsigned n, unsigned len, int cout,
                             const float *bias)
{
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float v = part[i];
        for (int s = 1; s < slices; s++)
            v += part[(size_t)s * n + i];
        y[i] = v + (bias ? bias[(i / len) % (unsigned)cout] : 0.0f);
    }
}

/* Whether conv2d d runs as k_conv1d_direct. */
static int conv_direct_ok(const ss_conv2d_desc *d, int ow)
{
    return d->kh == 1 && d->sh == 1 && d->sw == 1 && d->ph == 0 && d->kw > 1 && d->kw <= DC_KW_MAX &&
           d->cout <= DC_COUT_MAX && (int64_t)(d->kw - 1) * d->dw <= DC_SPAN_MAX &&
           (int64_t)d->batch * d->h <= 65535 && (int64_t)d->batch * d->cout * d->h * ow <= 0x3fffffff;
}

static ss_status conv_direct(cuda_ctx *c, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                             float *y, int ow, ss_error *err)
{
    /* P outputs per thread: one tile per row for rows up to DC_P_MAX * DC_TPB */
    int P = (ow + DC_TPB - 1) / DC_TPB;
    if (P > DC_P_MAX) P = DC_P_MAX;
    int tile = DC_TPB * P, span = tile + (d->kw - 1) * d->dw, co_blocks = (d->cout + DC_CO - 1) / DC_CO;
    size_t smem = 2 * ((size_t)DC_CI * span + (size_t)DC_CI * d->kw * DC_CO) * sizeof(float);
    unsigned tiles = (unsigned)((ow + tile - 1) / tile), rows = (unsigned)(d->batch * d->h);
    /* few blocks (deep layers: long input rows, few outputs): split the input
     * channels into slices of whole DC_CI chunks until about 4 blocks per SM */
    int64_t base = (int64_t)tiles * rows * co_blocks, chunks = (d->cin + DC_CI - 1) / DC_CI;
    int64_t want = (4 * (int64_t)c->n_sm + base - 1) / base;
    if (want > chunks) want = chunks;
    if (want < 1) want = 1;
    int per_slice = (int)((chunks + want - 1) / want) * DC_CI, slices = (d->cin + per_slice - 1) / per_slice;
    size_t n = (size_t)d->batch * d->cout * d->h * ow;
    float *part = y;
    if (slices > 1) {
        part = (float *)scratch(c, (size_t)slices * n * sizeof(float), err);
        if (!part) return err->code;
    }
    dim3 grid(tiles, rows, (unsigned)(co_blocks * slices));
    const float *b0 = slices > 1 ? NULL : bias;
#define DC_LAUNCH(PP)                                                                                             \
    k_conv1d_direct<PP><<<grid, DC_TPB, smem, c->stream>>>(part, x, w, b0, d->cin, d->h, d->w, d->cout, d->kw, d->pw, \
                                                           d->dw, ow, co_blocks, per_slice)
    switch (P) {
    case 1: DC_LAUNCH(1); break;
    case 2: DC_LAUNCH(2); break;
    case 3: DC_LAUNCH(3); break;
    default: DC_LAUNCH(4); break;
    }
#undef DC_LAUNCH
    if (slices > 1)
        LAUNCH(k_sum_slices, n, y, part, slices, (unsigned)n, (unsigned)(d->h * ow), d->cout, bias);
    CK_LAUNCH(c, err, "conv2d (direct)");
    return SS_OK;
}

/* Winograd F(2x2, 3x3) for 3x3 convolutions with stride 1, padding 1 and
 * dilation 1 (HTDemucs's frequency-decoder rewrite convs): each 2x2 output
 * tile comes from a 4x4 input patch, d -> V = B^T d B, g -> U = G g G^T,
 * M = U V summed over input channels (16 batched products of cout x cin by
 * cin x tiles: 2.25x fewer multiply-adds than the direct product, and the
 * input expanded 4x instead of im2col's 9x), y = A^T M A.  fp32 throughout
 * (the products are convolutions: CUBLAS_COMPUTE_32F in every precision but
 * tf32/bf16/fp16); the transforms' additions cost about 1e-7 relative. */

/* u [16, cout, cin] = G g G^T for g = w [cout, cin, 3, 3] */
__global__ void k_wino_filter(float *u, const float *w, int64_t n)
{
    GRID_LOOP(i, (size_t)n) {
        const float *g = w + i * 9;
        float t[4][3];
        for (int j = 0; j < 3; j++) {
            t[0][j] = g[j];
            t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
            t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
            t[3][j] = g[6 + j];
        }
        for (int r = 0; r < 4; r++) {
            u[(size_t)(r * 4 + 0) * n + i] = t[r][0];
            u[(size_t)(r * 4 + 1) * n + i] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
            u[(size_t)(r * 4 + 2) * n + i] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
            u[(size_t)(r * 4 + 3) * n + i] = t[r][2];
        }
    }
}

/* Element i of a [channels, pc] plane of tiles [p0, p0 + pc): its channel,
 * tile row and column; returns the batch item. */
__device__ __forceinline__ int64_t wino_tile(size_t i, int64_t p0, int64_t pc, int th, int tw, int *ch, int *ty,
                                             int *tx)
{
    int64_t p = p0 + (int64_t)(i % (size_t)pc);
    *ch = (int)(i / (size_t)pc);
    int64_t b = p / ((int64_t)th * tw);
    int t = (int)(p - b * th * tw);
    *ty = t / tw;
    *tx = t - *ty * tw;
    return b;
}

/* d = the A x A input patch of tile (ty, tx) of plane xc [h, w] for output tiles of M x M
 * (rows M ty - 1 .. M ty + A - 2, likewise the columns; zero outside the plane) */
template <int A, int M>
__device__ __forceinline__ void wino_patch(float (*d)[A], const float *xc, int h, int w, int ty, int tx)
{
    for (int r = 0; r < A; r++) {
        int iy = M * ty - 1 + r;
        for (int k = 0; k < A; k++) {
            int ix = M * tx - 1 + k;
            d[r][k] = iy >= 0 && iy < h && ix >= 0 && ix < w ? xc[(size_t)iy * w + ix] : 0.0f;
        }
    }
}

/* v [16, cin, pc] = B^T d B for tiles [p0, p0 + pc) of x [nb, cin, h, w]
 * (tile p: item p / (th tw), rows 2 ty - 1 .. 2 ty + 2, columns 2 tx - 1 .. 2 tx + 2;
 * zero outside) */
__global__ void k_wino_input(float *v, const float *x, int cin, int h, int w, int th, int tw, int64_t p0, int64_t pc)
{
    size_t n = (size_t)cin * (size_t)pc;
    GRID_LOOP(i, n) {
        int ci, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &ci, &ty, &tx);
        const float *xc = x + ((size_t)b * cin + ci) * (size_t)h * w;
        float d[4][4];
        wino_patch<4, 2>(d, xc, h, w, ty, tx);
        float e[4][4];                            /* B^T d */
        for (int k = 0; k < 4; k++) {
            e[0][k] = d[0][k] - d[2][k];
            e[1][k] = d[1][k] + d[2][k];
            e[2][k] = d[2][k] - d[1][k];
            e[3][k] = d[1][k] - d[3][k];
        }
        size_t plane = n;
        for (int r = 0; r < 4; r++) {             /* (B^T d) B */
            v[(size_t)(r * 4 + 0) * plane + i] = e[r][0] - e[r][2];
            v[(size_t)(r * 4 + 1) * plane + i] = e[r][1] + e[r][2];
            v[(size_t)(r * 4 + 2) * plane + i] = e[r][2] - e[r][1];
            v[(size_t)(r * 4 + 3) * plane + i] = e[r][1] - e[r][3];
        }
    }
}

/* y [nb, cout, h, w] tiles [p0, p0 + pc) = A^T M A (+ bias) from m [16, cout, pc] */
__global__ void k_wino_output(float *y, const float *m, const float *bias, int cout, int h, int w, int th, int tw,
                              int64_t p0, int64_t pc)
{
    size_t n = (size_t)cout * (size_t)pc;
    GRID_LOOP(i, n) {
        int co, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &co, &ty, &tx);
        float a[4][4];
        for (int s = 0; s < 16; s++)
            a[s / 4][s % 4] = m[(size_t)s * n + i];
        float e[2][4];                            /* A^T M */
        for (int k = 0; k < 4; k++) {
            e[0][k] = a[0][k] + a[1][k] + a[2][k];
            e[1][k] = a[1][k] - a[2][k] - a[3][k];
        }
        float b0 = bias ? bias[co] : 0.0f;
        float *yc = y + ((size_t)b * cout + co) * (size_t)h * w;
        for (int r = 0; r < 2; r++) {
            int oy = 2 * ty + r;
            if (oy >= h)
                break;
            float o0 = e[r][0] + e[r][1] + e[r][2], o1 = e[r][1] - e[r][2] - e[r][3];
            int ox = 2 * tx;
            yc[(size_t)oy * w + ox] = b0 + o0;
            if (ox + 1 < w)
                yc[(size_t)oy * w + ox + 1] = b0 + o1;
        }
    }
}

/* Winograd F(4x4, 3x3), the same convolutions with 4x4 output tiles from 6x6
 * input patches: 36 batched products of cout x cin by cin x tiles (4x fewer
 * multiply-adds than the direct product, 1.78x fewer than F(2x2)) and the
 * input expanded 2.25x instead of 4x.  The transforms are the CPU backend's
 * (kernels/cpu/nn.c: B^T, G, A^T there), in the same order of operations:
 * the filter's in double, rounded once; the input's and output's add,
 * subtract and scale by powers of two only. */

/* u [36, cout, cin] = G g G^T for g = w [cout, cin, 3, 3] */
__global__ void k_wino4_filter(float *u, const float *w, int64_t n)
{
    const double gm[6][3] = {{1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                             {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    GRID_LOOP(i, (size_t)n) {
        const float *g = w + i * 9;
        double t[6][3];                           /* G g */
        for (int r = 0; r < 6; r++)
            for (int q = 0; q < 3; q++)
                t[r][q] = gm[r][0] * (double)g[q] + gm[r][1] * (double)g[3 + q] + gm[r][2] * (double)g[6 + q];
        for (int r = 0; r < 6; r++)               /* (G g) G^T */
            for (int q = 0; q < 6; q++)
                u[(size_t)(r * 6 + q) * n + i] = (float)(gm[q][0] * t[r][0] + gm[q][1] * t[r][1] + gm[q][2] * t[r][2]);
    }
}

/* the six rows of B^T applied to x0..x5 (kernels/cpu/nn.c wino_input4) */
#define WG_BT4(x0, x1, x2, x3, x4, x5, y)                \
    do {                                                 \
        (y)[0] = 4.0f * ((x0) - (x2)) + ((x4) - (x2));   \
        (y)[1] = ((x3) + (x4)) - 4.0f * ((x1) + (x2));   \
        (y)[2] = 4.0f * ((x1) - (x2)) + ((x4) - (x3));   \
        (y)[3] = 2.0f * ((x3) - (x1)) + ((x4) - (x2));   \
        (y)[4] = 2.0f * ((x1) - (x3)) + ((x4) - (x2));   \
        (y)[5] = 4.0f * ((x1) - (x3)) + ((x5) - (x3));   \
    } while (0)

/* the four rows of A^T applied to x0..x5 (kernels/cpu/nn.c WG_AT4) */
#define WG_AT4D(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3)                    \
    do {                                                                  \
        float p_ = (x1) + (x2), q_ = (x1) - (x2), r_ = (x3) + (x4), s_ = (x3) - (x4); \
        y0 = (x0) + p_ + r_;                                              \
        y1 = q_ + 2.0f * s_;                                              \
        y2 = p_ + 4.0f * r_;                                              \
        y3 = (q_ + 8.0f * s_) + (x5);                                     \
    } while (0)

/* v [36, cin, pc] = B^T d B for tiles [p0, p0 + pc) of x [nb, cin, h, w]
 * (tile p: rows 4 ty - 1 .. 4 ty + 4, columns 4 tx - 1 .. 4 tx + 4; zero outside) */
__global__ void k_wino4_input(float *v, const float *x, int cin, int h, int w, int th, int tw, int64_t p0,
                              int64_t pc)
{
    size_t n = (size_t)cin * (size_t)pc;
    GRID_LOOP(i, n) {
        int ci, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &ci, &ty, &tx);
        const float *xc = x + ((size_t)b * cin + ci) * (size_t)h * w;
        float d[6][6];
        wino_patch<6, 4>(d, xc, h, w, ty, tx);
        float e[6][6];                            /* B^T d: e[q][k] = row combination q of column k */
        for (int k = 0; k < 6; k++) {
            float y6[6];
            WG_BT4(d[0][k], d[1][k], d[2][k], d[3][k], d[4][k], d[5][k], y6);
            for (int q = 0; q < 6; q++)
                e[q][k] = y6[q];
        }
        for (int q = 0; q < 6; q++) {             /* (B^T d) B */
            float y6[6];
            WG_BT4(e[q][0], e[q][1], e[q][2], e[q][3], e[q][4], e[q][5], y6);
            for (int k = 0; k < 6; k++)
                v[(size_t)(q * 6 + k) * n + i] = y6[k];
        }
    }
}

/* y [nb, cout, h, w] tiles [p0, p0 + pc) = A^T M A (+ bias) from m [36, cout, pc] */
__global__ void k_wino4_output(float *y, const float *m, const float *bias, int cout, int h, int w, int th, int tw,
                               int64_t p0, int64_t pc)
{
    size_t n = (size_t)cout * (size_t)pc;
    GRID_LOOP(i, n) {
        int co, ty, tx;
        int64_t b = wino_tile(i, p0, pc, th, tw, &co, &ty, &tx);
        float t[4][6];                            /* A^T M, column by column */
        for (int c6 = 0; c6 < 6; c6++) {
            float a0 = m[(size_t)(0 * 6 + c6) * n + i], a1 = m[(size_t)(1 * 6 + c6) * n + i];
            float a2 = m[(size_t)(2 * 6 + c6) * n + i], a3 = m[(size_t)(3 * 6 + c6) * n + i];
            float a4 = m[(size_t)(4 * 6 + c6) * n + i], a5 = m[(size_t)(5 * 6 + c6) * n + i];
            WG_AT4D(a0, a1, a2, a3, a4, a5, t[0][c6], t[1][c6], t[2][c6], t[3][c6]);
        }
        float b0 = bias ? bias[co] : 0.0f;
        float *yc = y + ((size_t)b * cout + co) * (size_t)h * w;
        for (int r = 0; r < 4; r++) {             /* (A^T M) A */
            int oy = 4 * ty + r;
            if (oy >= h)
                break;
            float o[4];
            WG_AT4D(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], o[0], o[1], o[2], o[3]);
            int ox = 4 * tx;
            for (int q = 0; q < 4 && ox + q < w; q++)
                yc[(size_t)oy * w + ox + q] = b0 + o[q];
        }
    }
}

static int wino_ok(const ss_conv2d_desc *d)
{
    return d->kh == 3 && d->kw == 3 && d->sh == 1 && d->sw == 1 && d->ph == 1 && d->pw == 1 && d->dh == 1 &&
           d->dw == 1 && d->h >= 2 && d->w >= 2;
}

/* F(4x4, 3x3) where both sides of the plane have at least 4 samples and
 * STEMSPLIT_CUDA_WINO is not 2; F(2x2, 3x3) otherwise. */
static ss_status conv_wino(cuda_ctx *c, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                           float *y, ss_error *err)
{
    const int tm = c->wino_tile == 4 && d->h >= 4 && d->w >= 4 ? 4 : 2, kk = (tm + 2) * (tm + 2);
    int th = (d->h + tm - 1) / tm, tw = (d->w + tm - 1) / tm;
    int64_t tiles = (int64_t)d->batch * th * tw, nu = (int64_t)d->cout * d->cin;
    /* tiles per pass: u, v and m within the chunk budget */
    size_t room = CHUNK_FLOATS > (size_t)(kk * nu) ? CHUNK_FLOATS - (size_t)(kk * nu) : 0;
    int64_t pc = (int64_t)(room / ((size_t)kk * (size_t)(d->cin + d->cout)));
    if (pc < 1) pc = 1;
    if (pc > tiles) pc = tiles;
    float *u = (float *)scratch(c, sizeof(float) * (size_t)(kk * nu + kk * (int64_t)(d->cin + d->cout) * pc), err);
    if (!u) return err->code;
    float *v = u + kk * nu, *m = v + kk * (int64_t)d->cin * pc;
    if (tm == 4)
        LAUNCH(k_wino4_filter, (size_t)nu, u, w, nu);
    else
        LAUNCH(k_wino_filter, (size_t)nu, u, w, nu);
    for (int64_t p0 = 0; p0 < tiles; p0 += pc) {
        int64_t n = tiles - p0 < pc ? tiles - p0 : pc;
        if (tm == 4)
            LAUNCH(k_wino4_input, (size_t)d->cin * n, v, x, d->cin, d->h, d->w, th, tw, p0, n);
        else
            LAUNCH(k_wino_input, (size_t)d->cin * n, v, x, d->cin, d->h, d->w, th, tw, p0, n);
        if (gemm_rm(c, 0, 0, d->cout, (int)n, d->cin, 1.0f, u, d->cin, nu, v, (int)n, (int64_t)d->cin * n, 0.0f, m,
                    (int)n, (int64_t)d->cout * n, kk, 0, err) != SS_OK)
            return err->code;
        if (tm == 4)
            LAUNCH(k_wino4_output, (size_t)d->cout * n, y, m, bias, d->cout, d->h, d->w, th, tw, p0, n);
        else
            LAUNCH(k_wino_output, (size_t)d->cout * n, y, m, bias, d->cout, d->h, d->w, th, tw, p0, n);
    }
    CK_LAUNCH(c, err, "conv2d (winograd)");
    return SS_OK;
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
    if (conv_direct_ok(d, ow))
        return conv_direct(c, d, x, w, bias, y, ow, err);
    if (wino_ok(d))
        return conv_wino(c, d, x, w, bias, y, err);
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
    CK_LAUNCH(c, err, "conv2d");
    if (bias)
        return cu_channel_affine(c, y, y, d->batch, d->cout, npos, NULL, bias, err);
    return SS_OK;
}

/* y [nb, cout, win.oh, win.ow] = the window win of bias + gather of col [nb,
 * cout*kh*kw, h*w] (the full output [oh, ow] has oh = (h-1) sh + kh rows),
 * GELU'd when win.gelu (as k_gelu would after it) */
template <typename I>   /* index type: unsigned when n < 2^31 (cheaper division) */
__global__ void k_col2im(float *y, const float *col, const float *bias, int nb, int cout, int h, int w, int kh,
                         int kw, int sh, int sw, ss_convt_crop win)
{
    I n = (I)nb * (I)cout * (I)win.oh * (I)win.ow;
    int64_t npos = (int64_t)h * w;
    for (I i = blockIdx.x * (I)blockDim.x + threadIdx.x; i < n; i += (I)gridDim.x * blockDim.x) {
        I t = i / (I)win.ow;
        int ox = win.w0 + (int)(i - t * (I)win.ow), oy = win.h0 + (int)(t % (I)win.oh);
        I bc = t / (I)win.oh;
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
        y[i] = win.gelu ? gelu_f(v) : v;
    }
}

/* k_col2im by rows of the window (one row (b, co, oy) per blockIdx.x, its
 * taps along y worked out once per thread; per element one division by sw):
 * the same sums in the same order (bias, then ki and kj ascending). */
__global__ void k_col2im_rows(float *y, const float *col, const float *bias, int cout, int h, int w, int kh, int kw,
                              int sh, int sw, ss_convt_crop win)
{
    unsigned row = blockIdx.x, bc = row / (unsigned)win.oh;
    int oy = win.h0 + (int)(row - bc * (unsigned)win.oh), co = (int)(bc % (unsigned)cout);
    int64_t npos = (int64_t)h * w;
    const float *cb = col + (int64_t)bc * kh * kw * npos;      /* bc = b * cout + co */
    float bv = bias ? bias[co] : 0.0f, *yr = y + (size_t)row * (size_t)win.ow;
    int ry = oy % sh, qy = oy / sh;
    ROW_LOOP(j, win.ow) {
        int ox = win.w0 + (int)j, rx = ox % sw, qx = ox / sw;
        float v = bv;
        for (int ki = ry, iy = qy; ki < kh && iy >= 0; ki += sh, iy--) {
            if (iy >= h)
                continue;
            const float *cr = cb + (int64_t)ki * kw * npos + (int64_t)iy * w;
            for (int kj = rx, ix = qx; kj < kw && ix >= 0; kj += sw, ix--)
                if (ix < w)
                    v += cr[(int64_t)kj * npos + ix];
        }
        yr[j] = win.gelu ? gelu_f(v) : v;
    }
}

/* y = the window c of the transposed convolution d (the whole output when c
 * is NULL): per chunk of items col = w^T x, then k_col2im gathers the window. */
static ss_status convt(cuda_ctx *c, const ss_convt2d_desc *d, const ss_convt_crop *cw, const float *x,
                       const float *w, const float *bias, float *y, ss_error *err)
{
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    if (d->batch <= 0 || d->cout <= 0 || d->h <= 0 || d->w <= 0)
        return SS_OK;
    ss_convt_crop win = cw ? *cw : ss_convt_crop{0, 0, oh, ow, 0};
    int64_t npos = (int64_t)d->h * d->w, kdim = (int64_t)d->cout * d->kh * d->kw;
    int64_t in_size = (int64_t)d->cin * npos, out_size = (int64_t)d->cout * win.oh * win.ow, per_item = kdim * npos;
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
        size_t n = (size_t)cnt * out_size, rows = (size_t)cnt * d->cout * win.oh;
        if (use_rows(rows, win.ow))
            LAUNCH_ROWS(k_col2im_rows, rows, win.ow, y + b0 * out_size, col, bias, d->cout, d->h, d->w, d->kh, d->kw,
                        d->sh, d->sw, win);
        else if (n < 0x80000000u)
            LAUNCH(k_col2im<unsigned>, n, y + b0 * out_size, col, bias, cnt, d->cout, d->h, d->w, d->kh, d->kw, d->sh,
                   d->sw, win);
        else
            LAUNCH(k_col2im<size_t>, n, y + b0 * out_size, col, bias, cnt, d->cout, d->h, d->w, d->kh, d->kw, d->sh,
                   d->sw, win);
    }
    CK_LAUNCH(c, err, "conv_transpose2d");
    return SS_OK;
}

static ss_status cu_conv_transpose2d(void *vctx, const ss_convt2d_desc *d, const float *x, const float *w,
                                     const float *bias, float *y, ss_error *err)
{
    return convt((cuda_ctx *)vctx, d, NULL, x, w, bias, y, err);
}

/* The window (the wrapper checked it lies in the output) without the full output. */
static ss_status cu_conv_transpose2d_crop(void *vctx, const ss_convt2d_desc *d, const ss_convt_crop *cw,
                                          const float *x, const float *w, const float *bias, float *y, ss_error *err)
{
    return convt((cuda_ctx *)vctx, d, cw, x, w, bias, y, err);
}

/* x [batch, ch, len] += glu(group_norm(w h + bias)), one group per item (see
 * k_pw_stats); where hidden or the grid is out of the kernels' range, the 1x1
 * convolution into g [batch, 2ch, len] and group_norm_glu_add. */
static ss_status cu_conv1x1_gn_glu_add(void *vctx, float *x, const float *h, const float *w, const float *bias,
                                       int batch, int ch, int hidden, int64_t len, const float *gamma,
                                       const float *beta, float eps, float *g, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (batch <= 0 || ch <= 0 || len <= 0)
        return SS_OK;
    int64_t tiles = (len + PW_TT - 1) / PW_TT;
    unsigned zs = (unsigned)((2 * (int64_t)ch + 2 * PW_HALF - 1) / (2 * PW_HALF));
    unsigned zg = (unsigned)(((int64_t)ch + PW_HALF - 1) / PW_HALF);
    if (hidden <= 0 || hidden > PW_MAX_HIDDEN || batch * tiles > 0x7fffffff || zs > 65535 || len > 0x7fffffff) {
        if (hidden <= 0 || len > 0x7fffffff)
            return fail(err, SS_E_INTERNAL, "cuda conv1x1_gn_glu_add: %d inputs, length %lld", hidden,
                        (long long)len);
        ss_conv2d_desc d = {.batch = batch, .cin = hidden, .h = 1, .w = (int)len, .cout = 2 * ch, .kh = 1, .kw = 1,
                            .sh = 1, .sw = 1, .ph = 0, .pw = 0, .dh = 1, .dw = 1};
        if (cu_conv2d(c, &d, h, w, NULL, g, err) != SS_OK)
            return err->code;
        return cu_group_norm_glu_add(c, x, g, bias, batch, ch, len, 1, gamma, beta, eps, err);
    }
    size_t co_bytes = (size_t)batch * 2 * ch * sizeof(float4), nch = (size_t)tiles * zs;
    char *buf = (char *)scratch(c, co_bytes + (size_t)batch * nch * 2 * sizeof(double), err);
    if (!buf)
        return err->code;
    float4 *co = (float4 *)buf;
    double *part = (double *)(buf + co_bytes);
    size_t sm = pw_smem(hidden);                     /* <= 16.6 KB */
    unsigned nb = (unsigned)(batch * tiles);
    k_pw_stats<<<dim3(nb, zs), PW_THREADS, sm, c->stream>>>(part, h, w, bias, hidden, 2 * ch, len, (int)tiles);
    k_gn_coef<<<(unsigned)batch, 128, 0, c->stream>>>(co, part, (int)nch, bias, 2 * ch, 1, 2 * (int64_t)ch * len,
                                                      gamma, beta, eps);
    k_pw_glu_add<<<dim3(nb, zg), PW_THREADS, sm, c->stream>>>(x, h, w, co, hidden, ch, len, (int)tiles);
    CK_LAUNCH(c, err, "conv1x1_gn_glu_add");
    return SS_OK;
}

/* ---- a DConv layer on a frequency layer's rows in one pass (ss_dconv_rows) ------------
 * One block per row item (b, r) of x [batch, ch, rows, len]: the item [ch, len]
 * is read into shared memory once; conv1 (kernel k along len) goes to h [hidden,
 * len] in shared memory and is normed and GELU'd there; then w2 h is computed
 * twice, first for the second norm's statistics, then for the GLU, which is added
 * to the item as it is written back.  The unfused path reads and writes the item
 * five times and rearranges it twice.  Statistics as k_stats / k_gn_coef form
 * them (value + bias in float, sums in double); the 1x1 products as fmaf chains
 * in k order (as k_pw_*).  Shared memory: w1 as [ch][k][hp] (hp: hidden rounded
 * up to 4, zero-padded), w2 as [2ch][hp], the item, h. */
#define DR_THREADS 512
#define DR_MAX_HIDDEN 16
#define DR_MAX_K 7

__host__ __device__ static inline int dr_hp(int hidden) { return (hidden + 3) / 4 * 4; }

static size_t dr_smem(const ss_dconv_desc *d)
{
    size_t hp = (size_t)dr_hp(d->hidden);
    return ((size_t)d->ch * d->kernel * hp + 2 * (size_t)d->ch * hp + (size_t)d->ch * (size_t)d->len +
            (size_t)d->hidden * (size_t)d->len) * sizeof(float);
}

/* hv = column t of h [hid, len], zero-padded to DR_MAX_HIDDEN */
__device__ __forceinline__ void dr_column(float *hv, const float *hs, int hid, int len, int t)
{
#pragma unroll
    for (int q = 0; q < DR_MAX_HIDDEN; q++)
        hv[q] = q < hid ? hs[(size_t)q * len + t] : 0.0f;
}

/* acc + w . h over hp (a multiple of 4, <= DR_MAX_HIDDEN) in k order */
__device__ __forceinline__ float dr_dot(const float *w, const float *hv, int hp, float acc)
{
#pragma unroll
    for (int q4 = 0; q4 < DR_MAX_HIDDEN / 4; q4++)
        if (4 * q4 < hp) {
            float4 wv = *(const float4 *)(w + 4 * q4);
            acc = fmaf(wv.x, hv[4 * q4], acc);
            acc = fmaf(wv.y, hv[4 * q4 + 1], acc);
            acc = fmaf(wv.z, hv[4 * q4 + 2], acc);
            acc = fmaf(wv.w, hv[4 * q4 + 3], acc);
        }
    return acc;
}

__global__ void __launch_bounds__(DR_THREADS) k_dconv_rows(float *__restrict__ x, int rows, int ch, int hid, int len,
                                                           int k, int dil, const float *__restrict__ w1,
                                                           const float *__restrict__ b1, const float *__restrict__ g1,
                                                           const float *__restrict__ be1, const float *__restrict__ w2,
                                                           const float *__restrict__ b2, const float *__restrict__ g2,
                                                           const float *__restrict__ be2, float eps)
{
    extern __shared__ float4 dr_sm4[];
    __shared__ double red[32];
    __shared__ float st[2];
    const int hp = dr_hp(hid), tid = threadIdx.x, nt = blockDim.x;
    float *w1t = (float *)dr_sm4, *w2s = w1t + (size_t)ch * k * hp, *xs = w2s + (size_t)2 * ch * hp;
    float *hs = xs + (size_t)ch * len;
    const int item = blockIdx.x, bb = item / rows, r = item - bb * rows;
    const size_t cs = (size_t)rows * len;                    /* channel stride of x */
    float *xb = x + (size_t)bb * ch * cs + (size_t)r * len;
    for (int i = tid; i < ch * len; i += nt) {
        int c = i / len, t = i - c * len;
        xs[i] = xb[c * cs + t];
    }
    for (int i = tid; i < ch * k * hp; i += nt) {
        int o = i % hp, cj = i / hp;
        w1t[i] = o < hid ? w1[(size_t)o * ch * k + cj] : 0.0f;
    }
    for (int i = tid; i < 2 * ch * hp; i += nt) {
        int q = i % hp, o = i / hp;
        w2s[i] = q < hid ? w2[(size_t)o * hid + q] : 0.0f;
    }
    __syncthreads();

    /* conv1: a task is 4 outputs at positions t and t + half (h stored without the bias) */
    const int half = (len + 1) / 2, tasks = (hp / 4) * half, kh = (k - 1) / 2;
    double s = 0.0, q2 = 0.0;
    for (int task = tid; task < tasks; task += nt) {
        int og = task / half, t1 = task - og * half, t2 = t1 + half;
        float a1[4] = {0.0f, 0.0f, 0.0f, 0.0f}, a2[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int c = 0; c < ch; c++) {
            const float *xr = xs + (size_t)c * len;
            for (int j = 0; j < k; j++) {
                int u1 = t1 + (j - kh) * dil, u2 = u1 + half;
                float v1 = u1 >= 0 && u1 < len ? xr[u1] : 0.0f, v2 = u2 >= 0 && u2 < len ? xr[u2] : 0.0f;
                float4 wv = *(const float4 *)(w1t + ((size_t)c * k + j) * hp + 4 * og);
                a1[0] = fmaf(wv.x, v1, a1[0]);
                a1[1] = fmaf(wv.y, v1, a1[1]);
                a1[2] = fmaf(wv.z, v1, a1[2]);
                a1[3] = fmaf(wv.w, v1, a1[3]);
                a2[0] = fmaf(wv.x, v2, a2[0]);
                a2[1] = fmaf(wv.y, v2, a2[1]);
                a2[2] = fmaf(wv.z, v2, a2[2]);
                a2[3] = fmaf(wv.w, v2, a2[3]);
            }
        }
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int o = 4 * og + e;
            if (o >= hid)
                break;
            float bo = b1 ? b1[o] : 0.0f, v = a1[e] + bo;
            hs[(size_t)o * len + t1] = a1[e];
            s += v;
            q2 += (double)v * v;
            if (t2 < len) {
                v = a2[e] + bo;
                hs[(size_t)o * len + t2] = a2[e];
                s += v;
                q2 += (double)v * v;
            }
        }
    }
    s = block_sum(s, red);
    q2 = block_sum(q2, red);
    moments_shared(s, q2, (double)hid * len, eps, st);
    const float m1 = st[0], rs1 = st[1];
    for (int i = tid; i < hid * len; i += nt) {
        int o = i / len;
        float4 kc = make_float4(b1 ? b1[o] : 0.0f, m1, rs1 * (g1 ? g1[o] : 1.0f), be1 ? be1[o] : 0.0f);
        hs[i] = gelu_f(gn_val(hs[i], kc));
    }
    __syncthreads();

    /* w2 h + b2: the second norm's statistics; a task is one position and a slice of the rows */
    const int S = (nt + len - 1) / len, per2 = (2 * ch + S - 1) / S, per1 = (ch + S - 1) / S;
    s = 0.0;
    q2 = 0.0;
    for (int task = tid; task < len * S; task += nt) {
        int sl = task / len, t = task - sl * len;
        float hv[DR_MAX_HIDDEN];
        dr_column(hv, hs, hid, len, t);
        int o1 = min(2 * ch, (sl + 1) * per2);
        for (int o = sl * per2; o < o1; o++) {
            float v = dr_dot(w2s + (size_t)o * hp, hv, hp, 0.0f) + (b2 ? b2[o] : 0.0f);
            s += v;
            q2 += (double)v * v;
        }
    }
    s = block_sum(s, red);
    q2 = block_sum(q2, red);
    moments_shared(s, q2, 2.0 * ch * len, eps, st);
    const float m2 = st[0], rs2 = st[1];
    /* x += glu(norm(w2 h)): GLU rows p and ch + p, written back to x */
    for (int task = tid; task < len * S; task += nt) {
        int sl = task / len, t = task - sl * len;
        float hv[DR_MAX_HIDDEN];
        dr_column(hv, hs, hid, len, t);
        int p1 = min(ch, (sl + 1) * per1);
        for (int p = sl * per1; p < p1; p++) {
            float a = dr_dot(w2s + (size_t)p * hp, hv, hp, 0.0f);
            float g = dr_dot(w2s + (size_t)(ch + p) * hp, hv, hp, 0.0f);
            float4 ka = make_float4(b2 ? b2[p] : 0.0f, m2, rs2 * (g2 ? g2[p] : 1.0f), be2 ? be2[p] : 0.0f);
            float4 kb = make_float4(b2 ? b2[ch + p] : 0.0f, m2, rs2 * (g2 ? g2[ch + p] : 1.0f),
                                    be2 ? be2[ch + p] : 0.0f);
            xb[p * cs + t] = xs[(size_t)p * len + t] + gn_glu(a, g, ka, kb);
        }
    }
}

static int cu_dconv_rows_ok(void *vctx, const ss_dconv_desc *d)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->hidden > DR_MAX_HIDDEN || d->kernel > DR_MAX_K || d->kernel % 2 == 0 || d->len > 65536 ||
        (int64_t)d->batch * d->rows > 0x7fffffff || (int64_t)d->ch * d->len > 0x7fffffff)
        return 0;
    /* enough items to fill the device: the outer layers (e.g. 512 and 128 rows), not the deep ones */
    if ((int64_t)d->batch * d->rows < c->n_sm / 2)
        return 0;
    int optin = 0;
    if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return dr_smem(d) + 1024 <= (size_t)optin;
}

static ss_status cu_dconv_rows(void *vctx, const ss_dconv_desc *d, float *x, const ss_dconv_w *w, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (!cu_dconv_rows_ok(vctx, d))
        return fail(err, SS_E_INTERNAL, "cuda dconv_rows: shape out of range (%d channels, hidden %d, length %lld)",
                    d->ch, d->hidden, (long long)d->len);
    size_t sm = dr_smem(d);
    /* per device and cheap: set before every launch (also while a graph is being recorded) */
    cudaError_t e = cudaFuncSetAttribute(k_dconv_rows, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    if (e != cudaSuccess)
        return cuda_fail(err, e, "dconv_rows");
    k_dconv_rows<<<(unsigned)(d->batch * d->rows), DR_THREADS, sm, c->stream>>>(
        x, d->rows, d->ch, d->hidden, (int)d->len, d->kernel, d->dilation, w->w1, w->b1, w->g1, w->be1, w->w2, w->b2,
        w->g2, w->be2, d->eps);
    CK_LAUNCH(c, err, "dconv_rows");
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
    f->host_alloc = cu_host_alloc;
    f->host_free = cu_host_free;
    f->download_start = cu_download_start;
    f->download_wait = cu_download_wait;
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
    f->bias_gelu = cu_bias_gelu;
    f->bias_glu = cu_bias_glu;
    f->conv1x1_gn_glu_add = cu_conv1x1_gn_glu_add;
    f->conv_transpose2d_crop = cu_conv_transpose2d_crop;
    f->gemm_bias = cu_gemm_bias;
    f->graph_begin = cu_graph_begin;
    f->graph_end = cu_graph_end;
    f->graph_launch = cu_graph_launch;
    f->graph_free = cu_graph_free;
    f->generation = cu_generation;
    f->dconv_rows_ok = cu_dconv_rows_ok;
    f->dconv_rows = cu_dconv_rows;
    f->lane = cu_lane;
    f->attention_ok = cu_attention_ok;
    f->attention = cu_attention;
    if (why) *why = g_why;
    return f;
}

/* context.cu - the CUDA backend's context (cuda_ctx, cuda_internal.h): start (cu_init) and end
 * (cu_free), device queries, errors, scratch memory, lanes, graph recording, device memory and the
 * device-time statistics of STEMSPLIT_CUDA_STATS.
 *
 * Streams: ops run on the current lane's stream (c->stream).  Lane 1 (ss_lane) is a second stream
 * with its own cuBLAS handle, workspace and scratch, swapped into the context while it is current
 * (lane_switch); the copy queues (copy.cu) are two more streams, for uploads and downloads.  Ops
 * never synchronise; downloads, synchronize() and the release of memory that queued ops may use
 * wait.  Scratch memory (im2col columns, FFT frames, statistics) is one buffer per lane, grown on
 * demand and kept for the backend's life.  Errors go into the caller's sticky ss_error.
 */

#include "cuda_internal.h"

/* ---- errors --------------------------------------------------------------------- */

ss_status fail(ss_error *err, ss_status code, const char *fmt, ...)
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
ss_status cuda_fail(ss_error *err, cudaError_t e, const char *what)
{
    if (e == cudaErrorMemoryAllocation)
        return fail(err, SS_E_DEVICE, "cuda: out of device memory (%s)", what);
    return fail(err, SS_E_DEVICE, "cuda: %s: %s", what, cudaGetErrorString(e));
}

/* Sample device memory in use (all of this process's allocations, cuBLAS and
 * cuFFT workspaces included) for the peak that STEMSPLIT_CUDA_STATS prints. */
void sample_memory(cuda_ctx *c)
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

int tm_begin_on(cuda_ctx *c, cudaStream_t st)
{
    if (!c->tm.on || c->capturing)
        return -1;
    tm_collect(c, 0);
    for (int i = 0; i < TIMER_PAIRS; i++)
        if (c->tm.kind[i] < 0 && cudaEventRecord(c->tm.ev[2 * i], st) == cudaSuccess)
            return i;
    return -1;
}

void tm_end_on(cuda_ctx *c, int i, int kind, size_t bytes, cudaStream_t st)
{
    if (i < 0 || cudaEventRecord(c->tm.ev[2 * i + 1], st) != cudaSuccess)
        return;
    c->tm.kind[i] = kind;
    c->tm.pend_bytes[i] = bytes;
}

int tm_begin(cuda_ctx *c) { return tm_begin_on(c, c->stream); }
void tm_end(cuda_ctx *c, int i, int kind, size_t bytes) { tm_end_on(c, i, kind, bytes, c->stream); }

/* Before releasing memory queued ops may use (a buffer, scratch, the window,
 * an FFT plan): let them finish, and change the generation so that recordings
 * that use it are made again (see `generation` in backend.h). */
void before_release(cuda_ctx *c)
{
    cudaStreamSynchronize(c->stream);
    if (c->lanes)
        cudaStreamSynchronize(c->other.stream);
    c->generation++;
}

void *scratch(cuda_ctx *c, size_t bytes, ss_error *err)
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

char g_why[256];

int cu_device_count(void)
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

ss_status cu_device_info(int index, ss_device_info *out)
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

ss_status cu_lane(void *vctx, ss_lane_op op, ss_error *err)
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

void cu_free(void *vctx)
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

ss_status cu_init(const ss_backend_params *p, void **out, ss_error *err)
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
    int made = 0;
    c->copyq = cudaStreamCreateWithFlags(&c->up, cudaStreamNonBlocking) == cudaSuccess && ++made &&
               cudaStreamCreateWithFlags(&c->down, cudaStreamNonBlocking) == cudaSuccess && ++made &&
               cudaEventCreateWithFlags(&c->ev_up, cudaEventDisableTiming) == cudaSuccess && ++made &&
               cudaEventCreateWithFlags(&c->ev_xq_free, cudaEventDisableTiming) == cudaSuccess && ++made &&
               cudaEventCreateWithFlags(&c->ev_yq_full, cudaEventDisableTiming) == cudaSuccess && ++made &&
               (c->dl_event || cudaEventCreateWithFlags(&c->dl_event, cudaEventDisableTiming) == cudaSuccess);
    if (!c->copyq) {                                 /* plain transfers on the one stream */
        cudaGetLastError();
        if (made > 0) cudaStreamDestroy(c->up);
        if (made > 1) cudaStreamDestroy(c->down);
        if (made > 2) cudaEventDestroy(c->ev_up);
        if (made > 3) cudaEventDestroy(c->ev_xq_free);
        if (made > 4) cudaEventDestroy(c->ev_yq_full);
    }
    if (c->blas_ws) {
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

ss_status cu_synchronize(void *vctx, ss_error *err)
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
ss_status cu_graph_begin(void *vctx, ss_error *err)
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

ss_status cu_graph_end(void *vctx, void **out, ss_error *err)
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

ss_status cu_graph_launch(void *vctx, void *graph, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    int t = tm_begin(c);
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)graph, c->stream);
    tm_end(c, t, TM_GRAPH, 0);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "graph launch");
}

void cu_graph_free(void *vctx, void *graph)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaStreamSynchronize(c->stream);            /* no launch of it still in flight */
    cudaGraphExecDestroy((cudaGraphExec_t)graph);
}

unsigned long cu_generation(void *vctx) { return ((cuda_ctx *)vctx)->generation; }

ss_precision cu_precision(void *vctx) { return ((cuda_ctx *)vctx)->prec; }
int cu_threads(void *vctx) { (void)vctx; return 1; }

void *cu_alloc(void *vctx, size_t bytes)
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

void cu_release(void *vctx, void *ptr)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    before_release(c);
    cudaFree(ptr);
}

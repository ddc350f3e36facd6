// runtime.cpp - the CUDA emulator's runtime: the CUDA runtime, cuBLAS,
// cuBLASLt and cuFFT calls of kernels/cuda/*.cu implemented on the host.
//
// Device memory is host memory (cudaMalloc: an exact-size heap block filled
// with 0xff bytes, so reading memory nothing wrote gives NaN and AddressSanitizer
// sees overruns; a budget of STEMSPLIT_CUDA_EMU_MEM_MB, default 8192, makes
// out-of-memory reachable).  Work is done when it is issued, in issue order,
// on the issuing thread: a valid order for any program whose streams and
// events are correct (so races between streams are not found here).  A stream
// capture records the work of the streams in it instead (the origin and those
// that waited on an event recorded into it), and a graph launch replays it.  Kernels run
// on the grid emulator (cuda_emu.h); products are CBLAS sgemm, with the
// operands of the tensor-core compute types rounded to tf32 / bf16 / fp16 as
// the hardware does; FFTs are FFTW's, unnormalised as cuFFT's.
#include "cuda_runtime.h"
#include "cublasLt.h"
#include "cublas_v2.h"
#include "cufft.h"
#include "cuda_emu_stats.h"

#include <cblas.h>
#include <cxxabi.h>
#include <dlfcn.h>
#include <fftw3.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <atomic>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using Op = std::function<void()>;

struct CUstream_st {
    unsigned flags;
};
struct CUevent_st {
    unsigned flags;
    double t;
    const void *capture;   // the capture it was last recorded into, if any
};
struct CUgraph_st {
    std::vector<Op> ops;
};
struct CUgraphExec_st {
    std::vector<Op> ops;
};

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace emu {
thread_local const ss_emu_ids *t_ids;
}

namespace {

thread_local cudaError_t t_last = cudaSuccess;   // cudaGetLastError()
thread_local cudaError_t t_fault = cudaSuccess;  // a failed kernel, reported by the next wait

// A capture records the work issued to its origin stream and to the streams
// that have waited on an event recorded into it (as CUDA's capture spreads);
// work on other streams runs at once, as it would on a GPU.
struct Capture {
    cudaStream_t origin;
    std::set<cudaStream_t> streams;
    std::vector<Op> ops;
    bool invalid = false;
};
thread_local Capture *t_cap;

std::atomic<long long> st_kernels{0}, st_graphs{0}, st_graph_launches{0}, st_refused{0}, st_faults{0};

std::mutex g_mu;
std::map<uintptr_t, size_t> g_dev, g_host;   // live allocations: base -> bytes
std::map<const void *, int> g_smem_limit;     // cudaFuncAttributeMaxDynamicSharedMemorySize
size_t g_used;
const int kSmemDefault = 48 << 10, kSmemOptin = 227 << 10;

size_t mem_total()
{
    static size_t total = [] {
        const char *e = getenv("STEMSPLIT_CUDA_EMU_MEM_MB");
        long long mb = e && *e ? atoll(e) : 8192;
        return (size_t)(mb > 0 ? mb : 8192) << 20;
    }();
    return total;
}

int emu_threads()
{
    static int n = [] {
        const char *e = getenv("STEMSPLIT_CUDA_EMU_THREADS");
        int v = e && *e ? atoi(e) : (int)std::thread::hardware_concurrency();
        return v > 0 ? v : 1;
    }();
    return n;
}

cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess)
        t_last = e;
    return e;
}

double now()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool captured(cudaStream_t s) { return t_cap && t_cap->streams.count(s); }

// run op (work on stream s) now, or record it into this thread's capture
void enqueue(cudaStream_t s, Op op)
{
    if (captured(s))
        t_cap->ops.push_back(std::move(op));
    else
        op();
}

// the failure of a kernel run since the last wait, reported once (the work is done)
cudaError_t take_fault()
{
    cudaError_t f = t_fault;
    t_fault = cudaSuccess;
    return ret(f);
}

// a call that waits for the device: not allowed while this thread captures
cudaError_t waiting_call()
{
    if (t_cap) {
        t_cap->invalid = true;
        st_refused++;
        return ret(cudaErrorStreamCaptureUnsupported);
    }
    return take_fault();
}

std::string kernel_name(const emu::Launch &l)
{
    if (l.name)
        return l.name;
    Dl_info info;
    if (dladdr(l.kern, &info) && info.dli_sname) {
        int st = 0;
        char *d = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &st);
        std::string s = st == 0 && d ? d : info.dli_sname;
        free(d);
        return s;
    }
    char buf[40];
    snprintf(buf, sizeof buf, "kernel at %p", l.kern);
    return buf;
}

struct Run {
    const Op *body;
    size_t smem;
};

thread_local std::vector<unsigned char> t_smem_buf;
thread_local unsigned char *t_smem;

void tramp(void *const *bufs, const void *params, const ss_emu_ids *ids)
{
    (void)params;
    const Run *r = (const Run *)bufs[0];
    if (ids->lid[0] == 0 && ids->lid[1] == 0 && ids->lid[2] == 0) {   // a block starts (its first fiber runs first)
        if (t_smem_buf.size() < r->smem + 16)
            t_smem_buf.resize(r->smem + 16);
        uintptr_t a = ((uintptr_t)t_smem_buf.data() + 15) & ~(uintptr_t)15;
        t_smem = (unsigned char *)a;
        memset(t_smem, 0xff, r->smem);
    }
    emu::t_ids = ids;
    threadIdx = uint3{ids->lid[0], ids->lid[1], ids->lid[2]};
    blockIdx = uint3{ids->tgp[0], ids->tgp[1], ids->tgp[2]};
    blockDim = dim3(ids->tgs[0], ids->tgs[1], ids->tgs[2]);
    gridDim = dim3(ids->ngrp[0], ids->ngrp[1], ids->ngrp[2]);
    (*r->body)();
}

void run_grid(const emu::Launch &l, const Op *body)
{
    unsigned groups[3] = {l.grid.x, l.grid.y, l.grid.z}, tg[3] = {l.block.x, l.block.y, l.block.z};
    Run r{body, l.smem};
    void *bufs[1] = {&r};
    char why[400];
    st_kernels++;
    if (ss_emu_run(tramp, bufs, nullptr, groups, tg, 1, emu_threads(), why, sizeof why) != 0) {
        fprintf(stderr, "cuda-emu: %s <<<(%u,%u,%u), (%u,%u,%u), %zu>>>: %s\n", kernel_name(l).c_str(), l.grid.x,
                l.grid.y, l.grid.z, l.block.x, l.block.y, l.block.z, l.smem, why);
        t_fault = t_last = cudaErrorLaunchFailure;
        st_faults++;
    }
}

}  // namespace

void *emu::dyn_smem() { return t_smem; }

void emu::set_last_error(cudaError_t e) { ret(e); }

cudaError_t emu::submit(const Launch &l, std::shared_ptr<const Op> body)
{
    unsigned long long threads = (unsigned long long)l.block.x * l.block.y * l.block.z;
    if (threads == 0 || threads > 1024 || l.block.z > 64 || l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 ||
        l.grid.x > 0x7fffffffu || l.grid.y > 65535 || l.grid.z > 65535) {
        fprintf(stderr, "cuda-emu: %s: invalid launch <<<(%u,%u,%u), (%u,%u,%u)>>>\n", kernel_name(l).c_str(),
                l.grid.x, l.grid.y, l.grid.z, l.block.x, l.block.y, l.block.z);
        return cudaErrorInvalidConfiguration;
    }
    int limit = kSmemDefault;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto it = g_smem_limit.find(l.kern);
        if (it != g_smem_limit.end())
            limit = it->second;
    }
    if (l.smem > (size_t)limit) {
        fprintf(stderr, "cuda-emu: %s: %zu bytes of dynamic shared memory, the kernel's limit is %d\n",
                kernel_name(l).c_str(), l.smem, limit);
        return cudaErrorInvalidValue;
    }
    enqueue(l.stream, [l, body]() { run_grid(l, body.get()); });
    return cudaSuccess;
}

/* ---- errors and devices ---------------------------------------------------------- */

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorLaunchFailure: return "unspecified launch failure (the CUDA emulator reported it on stderr)";
    default: return "unknown error";
    }
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last; }

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d)
{
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return ret(d == 0 ? cudaSuccess : cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    if (d != 0)
        return ret(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulator (kernels on the CPU)");
    p->totalGlobalMem = mem_total();
    p->sharedMemPerBlock = kSmemDefault;
    p->sharedMemPerBlockOptin = kSmemOptin;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 132;
    p->l2CacheSize = 50 << 20;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d)
{
    if (d != 0)
        return ret(cudaErrorInvalidDevice);
    switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = kSmemOptin; break;
    default: return ret(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return waiting_call(); }

cudaError_t cudaFuncSetAttribute(const void *f, enum cudaFuncAttribute a, int v)
{
    if (a == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (v < 0 || v > kSmemOptin)
            return ret(cudaErrorInvalidValue);
        std::lock_guard<std::mutex> lk(g_mu);
        g_smem_limit[f] = v;
        return cudaSuccess;
    }
    if (a == cudaFuncAttributePreferredSharedMemoryCarveout)
        return ret(v >= -1 && v <= 100 ? cudaSuccess : cudaErrorInvalidValue);
    return ret(cudaErrorInvalidValue);
}

/* ---- memory ------------------------------------------------------------------------ */

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    std::lock_guard<std::mutex> lk(g_mu);
    *total_bytes = mem_total();
    *free_bytes = mem_total() - g_used;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    *p = nullptr;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (bytes > mem_total() - g_used)
            return ret(cudaErrorMemoryAllocation);
        g_used += bytes;
    }
    void *q = nullptr;
    if (posix_memalign(&q, 256, bytes ? bytes : 1) != 0) {
        std::lock_guard<std::mutex> lk(g_mu);
        g_used -= bytes;
        return ret(cudaErrorMemoryAllocation);
    }
    memset(q, 0xff, bytes);
    std::lock_guard<std::mutex> lk(g_mu);
    g_dev[(uintptr_t)q] = bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p)
        return cudaSuccess;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto it = g_dev.find((uintptr_t)p);
        if (it == g_dev.end()) {
            fprintf(stderr, "cuda-emu: cudaFree(%p): not an allocation of cudaMalloc\n", p);
            return ret(cudaErrorInvalidValue);
        }
        g_used -= it->second;
        g_dev.erase(it);
    }
    free(p);
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags)
{
    (void)flags;
    *p = nullptr;
    void *q = malloc(bytes ? bytes : 1);
    if (!q)
        return ret(cudaErrorMemoryAllocation);
    std::lock_guard<std::mutex> lk(g_mu);
    g_host[(uintptr_t)q] = bytes;
    *p = q;
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, 0); }

cudaError_t cudaFreeHost(void *p)
{
    if (!p)
        return cudaSuccess;
    {
        std::lock_guard<std::mutex> lk(g_mu);
        if (!g_host.erase((uintptr_t)p)) {
            fprintf(stderr, "cuda-emu: cudaFreeHost(%p): not an allocation of cudaHostAlloc\n", p);
            return ret(cudaErrorInvalidValue);
        }
    }
    free(p);
    return cudaSuccess;
}

static bool in_map(const std::map<uintptr_t, size_t> &m, const void *p)
{
    auto it = m.upper_bound((uintptr_t)p);
    if (it == m.begin())
        return false;
    --it;
    return (uintptr_t)p < it->first + (it->second ? it->second : 1);
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *a, const void *p)
{
    memset(a, 0, sizeof *a);
    std::lock_guard<std::mutex> lk(g_mu);
    if (in_map(g_host, p)) {
        a->type = cudaMemoryTypeHost;
        a->hostPointer = a->devicePointer = (void *)p;
    } else if (in_map(g_dev, p)) {
        a->type = cudaMemoryTypeDevice;
        a->devicePointer = (void *)p;
    } else {
        a->type = cudaMemoryTypeUnregistered;
        a->hostPointer = (void *)p;
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind k)
{
    (void)k;
    cudaError_t e = waiting_call();
    if (e != cudaSuccess)
        return e;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s)
{
    (void)k;
    enqueue(s, [=]() { memmove(dst, src, bytes); });
    return cudaSuccess;
}

cudaError_t cudaMemset(void *p, int v, size_t bytes)
{
    cudaError_t e = waiting_call();
    if (e != cudaSuccess)
        return e;
    memset(p, v, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s)
{
    enqueue(s, [=]() { memset(p, v, bytes); });
    return cudaSuccess;
}

cudaError_t cudaMemset2DAsync(void *p, size_t pitch, int v, size_t width, size_t height, cudaStream_t s)
{
    if (width > pitch && height > 1)
        return ret(cudaErrorInvalidValue);
    enqueue(s, [=]() {
        for (size_t r = 0; r < height; r++)
            memset((char *)p + r * pitch, v, width);
    });
    return cudaSuccess;
}

/* ---- streams, events, graphs --------------------------------------------------------- */

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    *s = new (std::nothrow) CUstream_st{flags};
    return ret(*s ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    if (t_cap && !captured(s))                   /* a stream outside the capture: its work is done */
        return take_fault();
    return waiting_call();
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags)
{
    (void)flags;
    if (!e)
        return ret(cudaErrorInvalidResourceHandle);
    if (t_cap && e->capture == t_cap)
        t_cap->streams.insert(s);     // s joins the capture
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode mode)
{
    (void)mode;
    if (t_cap || !s)
        return ret(cudaErrorStreamCaptureUnsupported);
    t_cap = new (std::nothrow) Capture;
    if (!t_cap)
        return ret(cudaErrorMemoryAllocation);
    t_cap->origin = s;
    t_cap->streams.insert(s);
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
    *g = nullptr;
    if (!t_cap || t_cap->origin != s)
        return ret(cudaErrorStreamCaptureInvalidated);
    Capture *c = t_cap;
    t_cap = nullptr;
    if (c->invalid) {
        delete c;
        return ret(cudaErrorStreamCaptureInvalidated);
    }
    *g = new (std::nothrow) CUgraph_st{std::move(c->ops)};
    delete c;
    if (*g)
        st_graphs++;
    return ret(*g ? cudaSuccess : cudaErrorMemoryAllocation);
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, enum cudaStreamCaptureStatus *st)
{
    *st = captured(s) ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    *e = new (std::nothrow) CUevent_st{flags, now(), nullptr};
    return ret(*e ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    if (!e)
        return ret(cudaErrorInvalidResourceHandle);
    e->capture = captured(s) ? t_cap : nullptr;
    enqueue(s, [e]() { e->t = now(); });
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return ret(e ? cudaSuccess : cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    if (!e)
        return ret(cudaErrorInvalidResourceHandle);
    if (t_cap && e->capture != t_cap)
        return take_fault();
    return waiting_call();
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    if (!a || !b || (a->flags & cudaEventDisableTiming) || (b->flags & cudaEventDisableTiming))
        return ret(cudaErrorInvalidResourceHandle);
    *ms = (float)((b->t - a->t) * 1e3);
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags)
{
    (void)flags;
    *x = g ? new (std::nothrow) CUgraphExec_st{g->ops} : nullptr;
    return ret(*x ? cudaSuccess : cudaErrorInvalidValue);
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s)
{
    if (!x)
        return ret(cudaErrorInvalidResourceHandle);
    st_graph_launches++;
    for (const Op &op : x->ops)
        enqueue(s, op);
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g)
{
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x)
{
    delete x;
    return cudaSuccess;
}

/* ---- cuBLAS ------------------------------------------------------------------------ */

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
};

namespace {

/* x as a tensor core reads it: tf32 (cvt.rna: nearest, ties away), bf16 or fp16 (nearest even) */
float round_tf32(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&x, &u, 4);
    return x;
}
float round_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
float round_fp16(float x)
{
    float a = fabsf(x);
    if (!(a < INFINITY))
        return x;
    if (a >= 65520.0f)                           /* past the largest half, 65504 */
        return copysignf(INFINITY, x);
    if (a < 6.103515625e-05f)                    /* subnormal half: steps of 2^-24 */
        return copysignf(nearbyintf(a * 16777216.0f) / 16777216.0f, x);
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x0fffu + ((u >> 13) & 1u)) & ~0x1fffu;
    memcpy(&x, &u, 4);
    return x;
}

typedef float (*rounder)(float);
rounder rounder_for(cublasComputeType_t comp, cublasMath_t math)
{
    switch (comp) {
    case CUBLAS_COMPUTE_32F_FAST_TF32: return round_tf32;
    case CUBLAS_COMPUTE_32F_FAST_16BF: return round_bf16;
    case CUBLAS_COMPUTE_32F_FAST_16F: return round_fp16;
    case CUBLAS_COMPUTE_32F: return math == CUBLAS_TF32_TENSOR_OP_MATH ? round_tf32 : nullptr;
    default: return nullptr;
    }
}

/* col-major rows x cols at pitch ld, rounded, into a packed copy */
std::vector<float> rounded(const float *a, int rows, int cols, int ld, rounder f)
{
    std::vector<float> r((size_t)rows * cols);
    for (int j = 0; j < cols; j++)
        for (int i = 0; i < rows; i++)
            r[(size_t)j * rows + i] = f(a[(size_t)j * ld + i]);
    return r;
}

/* C = alpha op(A) op(B) + beta C, column-major, batched; beta 0: C not read */
void sgemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float *a,
                   int lda, long long sa, const float *b, int ldb, long long sb, float beta, float *c, int ldc,
                   long long sc, int batch, rounder f)
{
    for (int i = 0; i < batch; i++) {
        const float *ai = a + i * sa, *bi = b + i * sb;
        float *ci = c + i * sc;
        if (beta == 0.0f)
            for (int j = 0; j < n; j++)
                memset(ci + (size_t)j * ldc, 0, (size_t)m * sizeof(float));
        if (k == 0 || alpha == 0.0f) {
            if (beta != 0.0f && beta != 1.0f)
                for (int j = 0; j < n; j++)
                    for (int r = 0; r < m; r++)
                        ci[(size_t)j * ldc + r] *= beta;
            continue;
        }
        int ar = ta == CUBLAS_OP_N ? m : k, ac = ta == CUBLAS_OP_N ? k : m;
        int br = tb == CUBLAS_OP_N ? k : n, bc = tb == CUBLAS_OP_N ? n : k;
        std::vector<float> ra, rb;
        int la = lda, lb = ldb;
        if (f) {
            ra = rounded(ai, ar, ac, lda, f);
            rb = rounded(bi, br, bc, ldb, f);
            ai = ra.data(), bi = rb.data(), la = ar, lb = br;
        }
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, ai, la > 0 ? la : 1, bi,
                    lb > 0 ? lb : 1, beta, ci, ldc);
    }
}

bool bad_ld(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc)
{
    int ar = ta == CUBLAS_OP_N ? m : k, br = tb == CUBLAS_OP_N ? k : n;
    return m < 0 || n < 0 || k < 0 || lda < (ar > 1 ? ar : 1) || ldb < (br > 1 ? br : 1) || ldc < (m > 1 ? m : 1) ||
           (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T);
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = new (std::nothrow) cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes)
{
    (void)h, (void)ws, (void)bytes;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t st)
{
    switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_INTERNAL_ERROR";
    }
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                          int n, int k, const void *alpha, const void *a, cudaDataType at, int lda,
                                          long long sa, const void *b, cudaDataType bt, int ldb, long long sb,
                                          const void *beta, void *c, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t comp, cublasGemmAlgo_t algo)
{
    (void)algo;
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (bad_ld(ta, tb, m, n, k, lda, ldb, ldc) || batch < 0) {
        fprintf(stderr, "cuda-emu: cuBLAS gemm %c%c m %d n %d k %d lda %d ldb %d ldc %d: invalid\n",
                ta == CUBLAS_OP_N ? 'N' : 'T', tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float al = *(const float *)alpha, be = *(const float *)beta;
    rounder f = rounder_for(comp, h->math);
    const float *fa = (const float *)a, *fb = (const float *)b;
    float *fc = (float *)c;
    enqueue(h->stream, [=]() { sgemm_batched(ta, tb, m, n, k, al, fa, lda, sa, fb, ldb, sb, be, fc, ldc, sc, batch, f); });
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *a, cudaDataType at, int lda, const void *b,
                            cudaDataType bt, int ldb, const void *beta, void *c, cudaDataType ct, int ldc,
                            cublasComputeType_t comp, cublasGemmAlgo_t algo)
{
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, at, lda, 0, b, bt, ldb, 0, beta, c, ct, ldc, 0,
                                      1, comp, algo);
}

/* ---- cuBLASLt ------------------------------------------------------------------------ */

struct cublasLtContext {
    int unused;
};
struct cublasLtMatmulDescOpaque {
    cublasComputeType_t comp;
    cublasOperation_t ta, tb;
    cublasLtEpilogue_t epi;
    const float *bias;
};
struct cublasLtMatrixLayoutOpaque {
    uint64_t rows, cols;
    int64_t ld;
};
struct cublasLtMatmulPreferenceOpaque {
    size_t ws;
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    *h = new (std::nothrow) cublasLtContext{0};
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t comp, cudaDataType_t scale)
{
    if (scale != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new (std::nothrow) cublasLtMatmulDescOpaque{comp, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, nullptr};
    return *d ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void *v, size_t size)
{
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (size != sizeof(cublasOperation_t))
            return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(a == CUBLASLT_MATMUL_DESC_TRANSA ? &d->ta : &d->tb, v, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof(cublasLtEpilogue_t))
            return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epi, v, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *))
            return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, v, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows, uint64_t cols,
                                          int64_t ld)
{
    if (t != CUDA_R_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (ld < (int64_t)(rows > 1 ? rows : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    *l = new (std::nothrow) cublasLtMatrixLayoutOpaque{rows, cols, ld};
    return *l ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p)
{
    *p = new (std::nothrow) cublasLtMatmulPreferenceOpaque{0};
    return *p ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *v, size_t size)
{
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || size != sizeof(size_t))
        return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->ws, v, size);
    return CUBLAS_STATUS_SUCCESS;
}

static bool lt_shape(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                     cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dl, int *m, int *n, int *k)
{
    uint64_t am = d->ta == CUBLAS_OP_N ? a->rows : a->cols, ak = d->ta == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t bk = d->tb == CUBLAS_OP_N ? b->rows : b->cols, bn = d->tb == CUBLAS_OP_N ? b->cols : b->rows;
    if (ak != bk || c->rows != am || c->cols != bn || dl->rows != am || dl->cols != bn)
        return false;
    *m = (int)am, *n = (int)bn, *k = (int)ak;
    return true;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p, int req,
                                              cublasLtMatmulHeuristicResult_t *res, int *found)
{
    (void)h, (void)p;
    *found = 0;
    int m, n, k;
    if (req < 1 || !lt_shape(d, a, b, c, dl, &m, &n, &k))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (d->epi != CUBLASLT_EPILOGUE_DEFAULT && d->epi != CUBLASLT_EPILOGUE_BIAS)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    memset(res, 0, sizeof *res);
    res->state = CUBLAS_STATUS_SUCCESS;
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *a,
                              cublasLtMatrixLayout_t al, const void *b, cublasLtMatrixLayout_t bl, const void *beta,
                              const void *c, cublasLtMatrixLayout_t cl, void *dd, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_bytes, cudaStream_t s)
{
    (void)h, (void)algo, (void)ws, (void)ws_bytes;
    int m, n, k;
    if (!lt_shape(d, al, bl, cl, dl, &m, &n, &k))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (d->epi == CUBLASLT_EPILOGUE_BIAS && !d->bias)
        return CUBLAS_STATUS_INVALID_VALUE;
    float alv = *(const float *)alpha, bev = *(const float *)beta;
    rounder f = rounder_for(d->comp, CUBLAS_DEFAULT_MATH);
    cublasOperation_t ta = d->ta, tb = d->tb;
    const float *fa = (const float *)a, *fb = (const float *)b, *fc = (const float *)c, *bias =
        d->epi == CUBLASLT_EPILOGUE_BIAS ? d->bias : nullptr;
    float *fd = (float *)dd;
    int lda = (int)al->ld, ldb = (int)bl->ld, ldc = (int)cl->ld, ldd = (int)dl->ld;
    enqueue(s, [=]() {
        if (bev != 0.0f && fc != fd)
            for (int j = 0; j < n; j++)
                memcpy(fd + (size_t)j * ldd, fc + (size_t)j * ldc, (size_t)m * sizeof(float));
        sgemm_batched(ta, tb, m, n, k, alv, fa, lda, 0, fb, ldb, 0, bev, fd, ldd, 0, 1, f);
        if (bias)
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++)
                    fd[(size_t)j * ldd + i] += bias[i];
    });
    return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuFFT ------------------------------------------------------------------------ */

namespace {
struct FftPlan {
    int n, batch;
    cufftType type;
    fftwf_plan p;
    cudaStream_t stream;
};
std::mutex fft_mu;   // FFTW's planner is not thread-safe
std::map<int, FftPlan> fft_plans;
int fft_next = 1;

bool find_plan(cufftHandle h, FftPlan *out)
{
    std::lock_guard<std::mutex> lk(fft_mu);
    auto it = fft_plans.find(h);
    if (it == fft_plans.end())
        return false;
    *out = it->second;
    return true;
}
}  // namespace

cufftResult cufftPlan1d(cufftHandle *plan, int n, cufftType type, int batch)
{
    if (n < 1 || batch < 1)
        return CUFFT_INVALID_SIZE;
    if (type != CUFFT_R2C && type != CUFFT_C2R)
        return CUFFT_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(fft_mu);
    float *r = fftwf_alloc_real((size_t)n);
    fftwf_complex *z = fftwf_alloc_complex((size_t)n / 2 + 1);
    fftwf_plan p = nullptr;
    if (r && z)
        p = type == CUFFT_R2C ? fftwf_plan_dft_r2c_1d(n, r, z, FFTW_ESTIMATE | FFTW_UNALIGNED)
                              : fftwf_plan_dft_c2r_1d(n, z, r, FFTW_ESTIMATE | FFTW_UNALIGNED);
    fftwf_free(r);
    fftwf_free(z);
    if (!p)
        return CUFFT_ALLOC_FAILED;
    *plan = fft_next++;
    fft_plans[*plan] = FftPlan{n, batch, type, p, nullptr};
    return CUFFT_SUCCESS;
}

cufftResult cufftSetStream(cufftHandle plan, cudaStream_t s)
{
    std::lock_guard<std::mutex> lk(fft_mu);
    auto it = fft_plans.find(plan);
    if (it == fft_plans.end())
        return CUFFT_INVALID_PLAN;
    it->second.stream = s;
    return CUFFT_SUCCESS;
}

cufftResult cufftDestroy(cufftHandle plan)
{
    std::lock_guard<std::mutex> lk(fft_mu);
    auto it = fft_plans.find(plan);
    if (it == fft_plans.end())
        return CUFFT_INVALID_PLAN;
    fftwf_destroy_plan(it->second.p);
    fft_plans.erase(it);
    return CUFFT_SUCCESS;
}

/* each transform through buffers of its own: in place or not, and C2R's input kept */
static cufftResult fft_exec(cufftHandle plan, cufftType type, const void *in, void *out)
{
    FftPlan p;
    if (!find_plan(plan, &p) || p.type != type)
        return CUFFT_INVALID_PLAN;
    enqueue(p.stream, [p, in, out]() {
        size_t n = (size_t)p.n, nb = n / 2 + 1;
        bool fwd = p.type == CUFFT_R2C;
        size_t isz = fwd ? n * sizeof(float) : nb * sizeof(fftwf_complex);
        size_t osz = fwd ? nb * sizeof(fftwf_complex) : n * sizeof(float);
        std::vector<float> r(n);
        std::vector<fftwf_complex> z(nb);
        void *ti = fwd ? (void *)r.data() : (void *)z.data(), *to = fwd ? (void *)z.data() : (void *)r.data();
        for (int b = 0; b < p.batch; b++) {
            memcpy(ti, (const char *)in + b * isz, isz);
            if (fwd)
                fftwf_execute_dft_r2c(p.p, r.data(), z.data());
            else
                fftwf_execute_dft_c2r(p.p, z.data(), r.data());
            memcpy((char *)out + b * osz, to, osz);
        }
    });
    return CUFFT_SUCCESS;
}

cufftResult cufftExecR2C(cufftHandle plan, cufftReal *in, cufftComplex *out) { return fft_exec(plan, CUFFT_R2C, in, out); }
cufftResult cufftExecC2R(cufftHandle plan, cufftComplex *in, cufftReal *out) { return fft_exec(plan, CUFFT_C2R, in, out); }

/* ---- tensor-core mma (attention.cu) ------------------------------------------------------- */

uint32_t emu::tf32_round(float x)
{
    float r = round_tf32(x);
    uint32_t u;
    memcpy(&u, &r, 4);
    return u;
}

/* mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, d += a b, a warp-collective
 * call: lane = 4 g + t holds a[0..3] = A(g, t), A(g+8, t), A(g, t+4), A(g+8, t+4),
 * b0, b1 = B(t, g), B(t+4, g) and d[0..3] = D(g, 2t), D(g, 2t+1), D(g+8, 2t), D(g+8, 2t+1)
 * (PTX ISA, matrix fragments for mma.m16n8k8 with .tf32).  Each lane reads the
 * operands of its four outputs from the posts of the lanes that hold them. */
void emu::tf32_mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    uint32_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
    const unsigned char *t = warp_gather(mine, sizeof mine);
    auto reg = [t](int lane, int r) {
        float f;
        memcpy(&f, t + 64 * lane + 4 * r, 4);
        return f;
    };
    int l = (int)lane(), g = l / 4, q = l % 4;
    float A[2][8], B[8][2];
    for (int k = 0; k < 8; k++) {
        /* A(r, k): lane 4 (r % 8) + k % 4, register (r >= 8) + 2 (k >= 4); B(k, c): lane 4 c + k % 4, register k >= 4 */
        A[0][k] = reg(4 * g + k % 4, (k >= 4) * 2);
        A[1][k] = reg(4 * g + k % 4, 1 + (k >= 4) * 2);
        B[k][0] = reg(4 * (2 * q) + k % 4, 4 + (k >= 4));
        B[k][1] = reg(4 * (2 * q + 1) + k % 4, 4 + (k >= 4));
    }
    for (int e = 0; e < 4; e++) {
        float s = d[e];
        for (int k = 0; k < 8; k++)
            s += A[e / 2][k] * B[k][e % 2];
        d[e] = s;
    }
}

extern "C" void ss_cuda_emu_get_stats(ss_cuda_emu_stats *out)
{
    out->kernels = st_kernels;
    out->graphs_recorded = st_graphs;
    out->graph_launches = st_graph_launches;
    out->captures_refused = st_refused;
    out->kernel_faults = st_faults;
}

/* cuda_emu.h - CUDA C++ device code as host C++17 (included by the emulator's
 * cuda_runtime.h).
 *
 * A kernel launch runs the grid on the grid emulator (kernels/metal/emu/emu.h):
 * the threads of a block are fibers on one OS thread that switch only at
 * __syncthreads() (released when every live thread of the block waits there)
 * and at warp-collective calls (__shfl_*_sync, mma; released when every live
 * lane of the warp has called one), blocks spread over OS threads.  threadIdx,
 * blockIdx, blockDim and gridDim are thread-local variables set for the running
 * fiber; __shared__ variables are per OS thread (blocks of one OS thread run one
 * after another); dynamic shared memory is filled with 0xff bytes (NaN) when a
 * block starts, so a read of what no thread wrote shows.  cp.async copies are
 * immediate. */
#ifndef SS_CUDA_EMU_H
#define SS_CUDA_EMU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#include "../../metal/emu/emu.h"

#define SS_CUDA_EMU 1
#define SS_EMU_NAME(...) #__VA_ARGS__

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static const

/* the running fiber's: threadIdx is restored after every switch (the other three
 * are the block's, the same for every fiber of it) */
extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

namespace emu {
extern thread_local const ss_emu_ids *t_ids;   /* the running fiber's ids */
void *dyn_smem();
inline unsigned lane() { return t_ids->sl; }

/* around a call that switches fibers: the running fiber's ids back afterwards */
struct KeepIds {
    const ss_emu_ids *ids = t_ids;
    uint3 ti = threadIdx;
    ~KeepIds()
    {
        t_ids = ids;
        threadIdx = ti;
    }
};

/* every live lane of the warp posts `bytes` (<= 64) of `in`; returns lane i's post at +64 i */
inline const unsigned char *warp_gather(const void *in, size_t bytes)
{
    KeepIds keep;
    return (const unsigned char *)ss_emu_simd_gather(in, bytes);
}

template <typename T>
inline T shfl_from(T v, unsigned src)
{
    static_assert(sizeof(T) <= 64, "shuffle of a value over 64 bytes");
    const unsigned char *t = warp_gather(&v, sizeof v);
    T r;
    memcpy(&r, t + 64 * (src & 31u), sizeof r);
    return r;
}

/* launches (runtime.cpp runs or records them) */
struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const void *kern;
    const char *name;
};
cudaError_t submit(const Launch &l, std::shared_ptr<const std::function<void()>> body);

template <typename... P, typename... A>
cudaError_t launch(const Launch &l, void (*k)(P...), A &&...a)
{
    auto args = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(a)...);
    return submit(l, std::make_shared<const std::function<void()>>([k, args]() { std::apply(k, *args); }));
}

void set_last_error(cudaError_t e);

/* kern<<<grid, block, smem, stream>>>(args) is rewritten (rewrite.sed) as
 * emu::chevron(SS_EMU_NAME(kern), kern, grid, block, smem, stream)(args) */
template <typename K>
struct Chevron {
    K k;
    Launch l;
    template <typename... A>
    void operator()(A &&...a) const
    {
        cudaError_t e = launch(l, k, std::forward<A>(a)...);
        if (e != cudaSuccess)
            set_last_error(e);
    }
};
template <typename... P>
Chevron<void (*)(P...)> chevron(const char *name, void (*k)(P...), dim3 g, dim3 b, size_t smem = 0,
                                cudaStream_t s = 0)
{
    return Chevron<void (*)(P...)>{k, Launch{g, b, smem, s, (const void *)k, name}};
}

void tf32_mma(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
uint32_t tf32_round(float x);
}  // namespace emu

template <typename... P, typename... A>
static inline cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t *cfg, void (*k)(P...), A &&...a)
{
    emu::Launch l{cfg->gridDim, cfg->blockDim, cfg->dynamicSmemBytes, cfg->stream, (const void *)k, nullptr};
    cudaError_t e = emu::launch(l, k, std::forward<A>(a)...);
    if (e != cudaSuccess)
        emu::set_last_error(e);
    return e;
}

static constexpr int warpSize = 32;

static inline void __syncthreads()
{
    emu::KeepIds keep;
    ss_emu_barrier();
}
static inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    (void)mask;
    char z = 0;
    emu::warp_gather(&z, 1);
}
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() {}

template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int m, int width = 32)
{
    (void)mask;
    unsigned l = emu::lane(), src = l ^ (unsigned)m;
    if ((src & ~(unsigned)(width - 1)) != (l & ~(unsigned)(width - 1)))
        src = l;
    return emu::shfl_from(v, src);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    (void)mask;
    unsigned l = emu::lane(), seg = l & ~(unsigned)(width - 1), src = l + d;
    if (src >= seg + (unsigned)width)
        src = l;
    return emu::shfl_from(v, src);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32)
{
    (void)mask;
    unsigned l = emu::lane(), seg = l & ~(unsigned)(width - 1);
    unsigned src = l - seg >= d ? l - d : l;
    return emu::shfl_from(v, src);
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    (void)mask;
    unsigned l = emu::lane(), seg = l & ~(unsigned)(width - 1);
    return emu::shfl_from(v, seg + ((unsigned)src & (unsigned)(width - 1)));
}

/* intrinsics */
template <typename T>
static inline T __ldg(const T *p) { return *p; }
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline unsigned __float_as_uint(float x) { unsigned u; memcpy(&u, &x, 4); return u; }
static inline int __float_as_int(float x) { int u; memcpy(&u, &x, 4); return u; }
static inline float __uint_as_float(unsigned u) { float x; memcpy(&x, &u, 4); return x; }
static inline float __int_as_float(int u) { float x; memcpy(&x, &u, 4); return x; }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* atomics: blocks run on several OS threads */
template <typename T>
static inline T emu_atomic_add_cas(T *p, T v)
{
    T old, want;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        want = old + v;
    } while (!__atomic_compare_exchange(p, &old, &want, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
static inline float atomicAdd(float *p, float v) { return emu_atomic_add_cas(p, v); }
static inline double atomicAdd(double *p, double v) { return emu_atomic_add_cas(p, v); }
static inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v)
{
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
static inline int atomicMax(int *p, int v)
{
    int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

#endif

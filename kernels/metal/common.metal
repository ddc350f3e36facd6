// common.metal - prelude of the embedded Metal source: thread-position
// arguments every kernel takes, a threadgroup reduction, and the scalar
// helpers (erf-GELU, fp16/bf16 rounding) shared by the kernels.
//
// The same text is compiled by the Metal compiler at run time (the host
// prepends ss_metal_params.h) and, on any machine, as C++17 through
// kernels/metal/emu/msl_shim.hpp for the grid emulator that `make check`
// runs.  Keep it within the common subset: no pointers to threadgroup
// memory as parameters (the shim maps `threadgroup` declarations to
// per-threadgroup storage), no half/bfloat types (rounding is done in bits).
#ifdef __METAL_VERSION__
#include <metal_stdlib>
using namespace metal;
#endif

#define SS_TARGS                                                                  \
    uint3 gid [[thread_position_in_grid]], uint3 lid [[thread_position_in_threadgroup]], \
    uint3 tgp [[threadgroup_position_in_grid]], uint3 tgs [[threads_per_threadgroup]],   \
    uint3 ngrp [[threadgroups_per_grid]], uint sl [[thread_index_in_simdgroup]],         \
    uint sg [[simdgroup_index_in_threadgroup]]

// Sum (OP = simd_sum, COMBINE = +) or maximum of `v` over the threadgroup into
// `out`; every thread gets the same value (partials added in a fixed order).
// PART is a threadgroup float[32] declared by the kernel; NSG the number of
// simdgroups.  Ends with a barrier so PART can be reused at once.
#define SS_TG_REDUCE(out, v, PART, NSG, OP, INIT, COMBINE)            \
    do {                                                              \
        float r_ = OP(v);                                             \
        if (sl == 0)                                                  \
            PART[sg] = r_;                                            \
        threadgroup_barrier(mem_flags::mem_threadgroup);              \
        float t_ = INIT;                                              \
        for (uint i_ = 0; i_ < (NSG); i_++)                           \
            t_ = COMBINE(t_, PART[i_]);                               \
        out = t_;                                                     \
        threadgroup_barrier(mem_flags::mem_threadgroup);              \
    } while (0)

inline float ss_add2(float a, float b) { return a + b; }
inline float ss_max2(float a, float b) { return a > b ? a : b; }

// Flat index of a thread and the number of threads of a 1-D grid.
inline long ss_flat(uint3 gid) { return long(gid.x); }
inline long ss_nthreads(uint3 tgs, uint3 ngrp) { return long(tgs.x) * long(ngrp.x); }

// exact-erf GELU: x * erfc(-x / sqrt 2) / 2 with the erfc of Numerical
// Recipes (fractional error < 1.2e-7), as the CPU kernel computes it.
inline float ss_gelu_f(float x)
{
    float z = fabs(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float q = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
              t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f +
              t * (-0.82215223f + t * 0.17087277f))))))));
    float erfc_z = t * exp(-z * z + q);
    return x >= 0.0f ? x * (1.0f - 0.5f * erfc_z) : x * (0.5f * erfc_z);
}

// e^x - 1 without the cancellation of exp(x) - 1 near 0 (the Metal library has
// no expm1): Kahan's (u - 1) x / log u with u = exp(x), within a few ulp.
inline float ss_expm1_f(float x)
{
    float u = exp(x);
    if (u == 1.0f)
        return x;
    float um1 = u - 1.0f;
    if (um1 == -1.0f || isinf(u))
        return um1;
    return um1 * x / log(u);
}

// The ss_act activations (src/ops.h), as the CPU kernels compute them:
// 0 ReLU, 1 sigmoid, 2 tanh, 3 SiLU, 4 ELU(alpha), 5 leaky ReLU(alpha).
inline float ss_act_f(float x, int act, float alpha)
{
    switch (act) {
    case 0: return x > 0.0f ? x : 0.0f;
    case 1: return 1.0f / (1.0f + exp(-x));
    case 2: return tanh(x);
    case 3: return x / (1.0f + exp(-x));
    case 4: return x > 0.0f ? x : alpha * ss_expm1_f(x);
    case 6: return pow(fabs(x), alpha);     // SS_ACT_POW
    default: return x > 0.0f ? x : alpha * x;
    }
}

// Round an fp32 value to the precision of fp16 (10 mantissa bits) or bf16
// (7 mantissa bits), nearest-even, keeping fp32 storage: matmul inputs under
// --precision fp16 / bf16 (fp32 accumulation).  Range is not clamped.
inline float ss_round_bits(float x, uint drop)
{
    uint u = as_type<uint>(x);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return x;                                   // inf / nan unchanged
    uint half_ulp = (1u << (drop - 1u)) - 1u;
    u += half_ulp + ((u >> drop) & 1u);
    u &= ~((1u << drop) - 1u);
    return as_type<float>(u);
}

inline float ss_round_prec(float x, int prec)
{
    // prec: 0 fp32, 1 fp16, 2 bf16 (tf32 behaves as fp32 here)
    return prec == 1 ? ss_round_bits(x, 13u) : prec == 2 ? ss_round_bits(x, 16u) : x;
}

// msl_shim.hpp - compile Metal Shading Language kernels as C++17 for the grid
// emulator (emu.h).  Include it, then ss_metal_params.h and the .metal files.
//
//   kernel, device, thread      -> nothing (plain functions and pointers)
//   constant                    -> const
//   threadgroup T v[N];         -> static thread_local: one instance per OS
//                                  thread, and a threadgroup's threads all run
//                                  as fibers on one OS thread, one threadgroup
//                                  at a time: storage shared by the group
//   [[buffer(n)]], [[thread_position_in_grid]], ...  -> ignored attributes
//   threadgroup_barrier(), simd_sum/max/min          -> the emulator's scheduler
//   uint/ushort/uchar, float2/3/4, int2/3/4, uint2/3/4, as_type<>, rsqrt,
//   fma/exp/sqrt/fabs in float, mem_flags
#ifndef SS_MSL_SHIM_HPP
#define SS_MSL_SHIM_HPP

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "emu.h"

#pragma GCC diagnostic ignored "-Wattributes"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-variable"
#ifdef __clang__
#pragma clang diagnostic ignored "-Wunknown-attributes"
#endif

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;

template <class T, int N> struct ss_vec;
template <class T> struct ss_vec<T, 2> {
    T x, y;
    ss_vec() : x(), y() {}
    ss_vec(T a, T b) : x(a), y(b) {}
    explicit ss_vec(T a) : x(a), y(a) {}
};
template <class T> struct ss_vec<T, 3> {
    T x, y, z;
    ss_vec() : x(), y(), z() {}
    ss_vec(T a, T b, T c) : x(a), y(b), z(c) {}
    explicit ss_vec(T a) : x(a), y(a), z(a) {}
};
template <class T> struct ss_vec<T, 4> {
    T x, y, z, w;
    ss_vec() : x(), y(), z(), w() {}
    ss_vec(T a, T b, T c, T d) : x(a), y(b), z(c), w(d) {}
    explicit ss_vec(T a) : x(a), y(a), z(a), w(a) {}
};
template <class T, int N> inline T &ss_at(ss_vec<T, N> &v, int i) { return (&v.x)[i]; }
template <class T, int N> inline T ss_at(const ss_vec<T, N> &v, int i) { return (&v.x)[i]; }
#define SS_VEC_OP(op)                                                                   \
    template <class T, int N> inline ss_vec<T, N> operator op(ss_vec<T, N> a, ss_vec<T, N> b) \
    {                                                                                   \
        for (int i = 0; i < N; i++)                                                     \
            ss_at(a, i) = ss_at(a, i) op ss_at(b, i);                                   \
        return a;                                                                       \
    }                                                                                   \
    template <class T, int N> inline ss_vec<T, N> operator op(ss_vec<T, N> a, T s)      \
    {                                                                                   \
        for (int i = 0; i < N; i++)                                                     \
            ss_at(a, i) = ss_at(a, i) op s;                                             \
        return a;                                                                       \
    }
SS_VEC_OP(+)
SS_VEC_OP(-)
SS_VEC_OP(*)
SS_VEC_OP(/)
#undef SS_VEC_OP
template <class T, int N> inline T dot(ss_vec<T, N> a, ss_vec<T, N> b)
{
    T s = T();
    for (int i = 0; i < N; i++)
        s += ss_at(a, i) * ss_at(b, i);
    return s;
}

typedef ss_vec<float, 2> float2;
typedef ss_vec<float, 3> float3;
typedef ss_vec<float, 4> float4;
typedef ss_vec<int, 2> int2;
typedef ss_vec<int, 3> int3;
typedef ss_vec<int, 4> int4;
typedef ss_vec<uint, 2> uint2;
typedef ss_vec<uint, 3> uint3;
typedef ss_vec<uint, 4> uint4;

enum class mem_flags : unsigned { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
inline mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(unsigned(a) | unsigned(b)); }

inline void threadgroup_barrier(mem_flags) { ss_emu_barrier(); }
inline void simdgroup_barrier(mem_flags) { ss_emu_barrier(); }
inline float simd_sum(float v) { return ss_emu_simd(SS_EMU_SIMD_SUM, v); }
inline float simd_max(float v) { return ss_emu_simd(SS_EMU_SIMD_MAX, v); }
inline float simd_min(float v) { return ss_emu_simd(SS_EMU_SIMD_MIN, v); }

// float math as the Metal standard library has it (float in, float out)
using std::exp;
using std::fabs;
using std::fma;
using std::sqrt;
using std::log;
using std::tanh;
using std::isinf;
inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline float min(float a, float b) { return std::fmin(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline uint max(uint a, uint b) { return a > b ? a : b; }
inline uint min(uint a, uint b) { return a < b ? a : b; }
inline float clamp(float x, float lo, float hi) { return std::fmin(std::fmax(x, lo), hi); }

template <class T, class U> inline T as_type(U u)
{
    static_assert(sizeof(T) == sizeof(U), "as_type: sizes differ");
    T t;
    std::memcpy(&t, &u, sizeof t);
    return t;
}

#define kernel
#define device
#define thread
#define constant const
#define threadgroup static thread_local

#endif

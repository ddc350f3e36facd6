/* fastmath.h - the branch-free exp and tanh of the CPU kernels (internal to
 * kernels/cpu): ss_activate's sigmoid and tanh (elementwise.c), softmax, GLU,
 * GELU and the GRU's gates (gru.c) all compute them with these, so a gate
 * gives the same bits as the activation op would.
 *
 * libm's expf/tanhf are scalar calls; softmax, GLU and GELU spend most of their
 * time in them.  These branch-free versions compile to SIMD loops (with an
 * AVX2 + FMA / AVX-512 clone picked at run time where the compiler supports it).
 * expf: Cody-Waite reduction x = n ln2 + r, degree-6 polynomial for e^r
 * (relative error < 2e-7 on [-87, 88]); inputs are clamped to that range, so
 * the result is never inf or denormal (callers only need it for softmax and
 * sigmoid, where that is harmless). */
#ifndef SS_CPU_FASTMATH_H
#define SS_CPU_FASTMATH_H

#include <math.h>
#include <stdint.h>

static inline float fast_expf(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f;
    float fn = (t + 12582912.0f) - 12582912.0f;          /* round to nearest */
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale = {.i = ((int32_t)fn + 127) * (1 << 23)};
    return p * scale.f;
}

/* tanh x, branch-free: below |x| = 0.625 Cephes's odd polynomial x + x^3 P(x^2),
 * above it 1 - 2 / (e^2|x| + 1) with the sign of x; relative error < 1.5e-7,
 * absolute < 8e-8 (every float in [-12, 12] against double tanh) */
static inline float fast_tanhf(float x)
{
    float z = x * x, a = fabsf(x);
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = x + x * z * p;
    float big = copysignf(1.0f - 2.0f / (fast_expf(2.0f * a) + 1.0f), x);
    return a < 0.625f ? small : big;
}

#endif

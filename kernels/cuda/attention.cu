/* attention.cu - fused multi-head attention on TF32 tensor cores (FlashAttention-2 style), its strict-fp32
 * counterpart on the FP32 cores (after the tf32 kernel), and the
 * rotary position embedding applied to q and k before it (ss_rope; at the end of the file).
 *
 * For each head h of each batch item (ss_attn_desc, heads side by side in the columns):
 *
 *   q [nq, ldq], k [nk, ldk], v [nk, ldv] -> o [nq, ldo];   head h is columns [h*hd, (h+1)*hd):
 *   o_h = softmax(scale * q_h k_h^T) v_h                     q_h [nq, hd], k_h, v_h [nk, hd], o_h [nq, hd]
 *
 * without the nq x nk score matrix ever reaching global memory.  Grid (ceil(nq / 64), heads, items); a block of
 * 4 warps owns 64 query rows of one head, each warp 16 of them, and walks the keys in tiles of 64:
 *
 *   S  = Q K_t^T          [16, 64] per warp, fp32 accumulators in registers (mma m16n8k8, tf32 inputs)
 *   m' = max(m, rowmax(scale * S)),  P = exp(scale * S - m'),  l = l e^(m - m') + rowsum(P)
 *   O  = O e^(m - m') + P V_t        [16, HD] per warp, P taken straight from the S accumulators
 *
 * and finally o = O / l.  The softmax runs in base 2 (scale * log2(e) folded into one multiply, exp2f);
 * keys past nk get -inf before the row maximum.  Every input to a product (q, k, v and P) is rounded
 * to tf32 with cvt.rna, as cuBLAS's TF32 mode does; accumulation, softmax and the final division are fp32.
 *
 * Head size: the kernel is compiled for HD in {16, 32, 64, 128}, the smallest >= hd; columns hd..HD-1
 * of the shared-memory tiles are zero (exact) and only the hd real columns of o are written.  Query
 * rows past nq are zero in shared memory and never written.
 *
 * Shared memory (dynamic, floats; two K+V buffers, the Q tile borrowing buffer 1 before the loop):
 *   buffer b: K_t [64][LDK] then V_t [64][LDV];  Q [64][LDK] at buffer 1;  O staged [64][LDV] at buffer 0
 *   LDK = HD rounded up to 32, + 16 (16 mod 32),  LDV = HD + 4 (4 mod 16):  2 * 64 * (LDK + LDV) floats =
 *   34816 B (HD 16), 43008 B (HD 32), 75776 B (HD 64: three blocks per H100 SM), 141312 B (HD 128).
 * Tile t+1 is copied with cp.async (16-byte copies when pointers and pitches allow, else 4-byte ones)
 * while tile t is computed.
 *
 * Fragments (PTX mma.m16n8k8 .tf32; lane = 4 g + t, g = lane / 4, t = lane % 4):
 *   A 16x8 row:  a0 (g, t)  a1 (g+8, t)  a2 (g, t+4)  a3 (g+8, t+4)
 *   B 8x8 col:   b0 (t, g)  b1 (t+4, g)
 *   C 16x8:      c0 (g, 2t)  c1 (g, 2t+1)  c2 (g+8, 2t)  c3 (g+8, 2t+1)
 * A sum over k may visit k in any order as long as A and B agree, so three orders are chosen to make the
 * shared-memory reads wide and the P hand-over free:
 *   Q K^T: k-steps 2c and 2c+1 take head columns 16c + 4t + {0, 1} and {2, 3} as (t, t+4): one 16-byte
 *          read of a K row gives b0 b1 of both steps (and of the Q fragments, loaded once);
 *   P V:   k-step j takes keys 8j + 2t and 8j + 2t + 1 as (t, t+4): that is where the S accumulator of
 *          key tile j already holds them (c0 c1 / c2 c3), so P needs no shuffle;
 *   O:     output n-tile nn = G a + r (G = 4, or 2 for HD 16) takes head column 8G a + G n + r for its
 *          column n, so one G-float read of a V row gives b0 (or b1) of G n-tiles.
 */
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#include "attention.h"

/* ---- tiling ------------------------------------------------------------------------ */

#define AT_BQ 64                     /* query rows per block (16 per warp)      */
#define AT_BK 64                     /* keys per shared-memory tile             */
#define AT_THREADS 128               /* 4 warps                                 */
#define AT_HD_MAX 128
#define AT_MIN_BLOCKS(HD) ((HD) <= 64 ? 3 : 1)   /* blocks per SM the registers must allow (H100: 3 x 74 KiB) */

template <int HD>
struct at_geom {
    static constexpr int LDK = (HD + 31) / 32 * 32 + 16;  /* Q and K row pitch: 16-byte reads conflict-free */
    static constexpr int LDV = HD + 4;                    /* V (and staged O) row pitch                    */
    static constexpr int G = HD >= 32 ? 4 : 2;            /* output n-tiles served by one V read           */
    static constexpr int STAGE = AT_BK * (LDK + LDV);     /* floats of one K + V buffer                    */
    static constexpr size_t SMEM = 2 * (size_t)STAGE * sizeof(float);
};

/* ---- PTX primitives ------------------------------------------------------------------ */

/* x rounded to tf32 (nearest, ties away from zero), as the bits an mma operand register holds */
__device__ __forceinline__ uint32_t to_tf32(float x)
{
#ifdef SS_CUDA_EMU
    return emu::tf32_round(x);
#else
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
#endif
}

/* d [16x8] += a [16x8] b [8x8] on tensor cores (fragments as in the comment on top) */
__device__ __forceinline__ void mma_tf32(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
#ifdef SS_CUDA_EMU
    emu::tf32_mma(d, a, b0, b1);
#else
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* ---- end of PTX primitives ------------------------------------------------------------ */

/* Queue the copy of rows [r0, r0 + 64) of src (row pitch lds, head columns 0..hd-1) into dst [64][ld]
 * (cp.async; the caller commits): rows >= nrows and columns >= hd are stored as zeros.  VEC: 16-byte
 * copies (src and lds 16-byte aligned, hd % 4 == 0), else one float at a time.  A thread copies the same
 * columns of rows rt, rt + R, rt + 2R, ... (R = rows per pass of the block). */
template <int HD, bool VEC>
__device__ __forceinline__ void at_load(float *dst, int ld, const float *src, int lds, int r0, int nrows, int hd)
{
    constexpr int W = VEC ? 4 : 1, CW = HD / W, R = AT_THREADS / CW;  /* floats per copy, copies per row */
    const int rt = (int)threadIdx.x / CW, c = ((int)threadIdx.x % CW) * W;
    const float *p = src + (size_t)(r0 + rt) * lds + c;
    float *d = dst + rt * ld + c;
    const bool col_ok = c < hd;
    constexpr int UNROLL = VEC ? AT_BK / R : 1;   /* the scalar path (odd shapes) kept short */
#pragma unroll(UNROLL)
    for (int i = 0; i < AT_BK / R; i++, p += (size_t)R * lds, d += R * ld) {
        if (col_ok && r0 + rt + i * R < nrows) {
            __pipeline_memcpy_async(d, p, W * sizeof(float));
        } else {
            if constexpr (VEC)
                *(float4 *)d = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            else
                *d = 0.0f;
        }
    }
}

/* Write rows [r0, r0 + 64) (those < nrows) and columns 0..hd-1 of src [64][ld] to dst (row pitch ldd),
 * with the thread-to-element map of at_load. */
template <int HD, bool VEC>
__device__ __forceinline__ void at_store(float *dst, int ldd, const float *src, int ld, int r0, int nrows, int hd)
{
    constexpr int W = VEC ? 4 : 1, CW = HD / W, R = AT_THREADS / CW;
    const int rt = (int)threadIdx.x / CW, c = ((int)threadIdx.x % CW) * W;
    if (c >= hd)
        return;
    float *p = dst + (size_t)(r0 + rt) * ldd + c;
    const float *d = src + rt * ld + c;
    constexpr int UNROLL = VEC ? AT_BQ / R : 1;
#pragma unroll(UNROLL)
    for (int i = 0; i < AT_BQ / R; i++, p += (size_t)R * ldd, d += R * ld)
        if (r0 + rt + i * R < nrows) {
            if constexpr (VEC)
                *(float4 *)p = *(const float4 *)d;
            else
                *p = *d;
        }
}

/* One block: query rows [64 blockIdx.x, +64) of head blockIdx.y of batch item blockIdx.z (whose
 * matrices start zq, zk, zv, zo floats after the previous item's).  sl2 = scale * log2(e). */
template <int HD, bool VEC>
__global__ void __launch_bounds__(AT_THREADS, AT_MIN_BLOCKS(HD))
    k_attention(const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                float *__restrict__ o, int nq, int nk, int hd, int ldq, int ldk, int ldv, int ldo, float sl2,
                int64_t zq, int64_t zk, int64_t zv, int64_t zo)
{
    constexpr int LDK = at_geom<HD>::LDK, LDV = at_geom<HD>::LDV, G = at_geom<HD>::G;
    constexpr int STAGE = at_geom<HD>::STAGE;
    extern __shared__ float4 at_sm4[];
    float *sm = (float *)at_sm4;
    const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int q0 = (int)blockIdx.x * AT_BQ;
    const size_t col0 = (size_t)blockIdx.y * hd;                   /* this head's first column */
    const int64_t item = blockIdx.z;                               /* batch item */
    q += item * zq + col0;
    k += item * zk + col0;
    v += item * zv + col0;
    o += item * zo + col0;

    /* Q tile (in buffer 1) and key tile 0 (buffer 0) */
    float *sq = sm + STAGE;
    at_load<HD, VEC>(sq, LDK, q, ldq, q0, nq, hd);
    at_load<HD, VEC>(sm, LDK, k, ldk, 0, nk, hd);
    at_load<HD, VEC>(sm + AT_BK * LDK, LDV, v, ldv, 0, nk, hd);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();

    /* this warp's Q rows as A fragments, k-step 2c + s: columns 16c + 4t + 2s (a0 a1) and + 1 (a2 a3) */
    uint32_t qf[HD / 8][4];
    {
        const float *r0 = sq + (w * 16 + g) * LDK + 4 * t, *r1 = r0 + 8 * LDK;
#pragma unroll
        for (int c = 0; c < HD / 16; c++) {
            float4 x0 = *(const float4 *)(r0 + 16 * c), x1 = *(const float4 *)(r1 + 16 * c);
            qf[2 * c][0] = to_tf32(x0.x);
            qf[2 * c][1] = to_tf32(x1.x);
            qf[2 * c][2] = to_tf32(x0.y);
            qf[2 * c][3] = to_tf32(x1.y);
            qf[2 * c + 1][0] = to_tf32(x0.z);
            qf[2 * c + 1][1] = to_tf32(x1.z);
            qf[2 * c + 1][2] = to_tf32(x0.w);
            qf[2 * c + 1][3] = to_tf32(x1.w);
        }
    }
    __syncthreads();                                               /* buffer 1 is free for key tile 1 */

    /* acc: O of rows g (c0 c1) and g + 8 (c2 c3); m, l: running max (base 2) and this lane's part of the
     * row sum, for rows g (m0 l0) and g + 8 (m1 l1) */
    float acc[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int ntiles = (nk + AT_BK - 1) / AT_BK;

    for (int kt = 0; kt < ntiles; kt++) {
        const int k0 = kt * AT_BK;
        if (kt + 1 < ntiles) {                                     /* next tile into the other buffer */
            float *nb = sm + ((kt + 1) & 1) * STAGE;
            at_load<HD, VEC>(nb, LDK, k, ldk, k0 + AT_BK, nk, hd);
            at_load<HD, VEC>(nb + AT_BK * LDK, LDV, v, ldv, k0 + AT_BK, nk, hd);
            __pipeline_commit();
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const float *ks = sm + (kt & 1) * STAGE, *vs = ks + AT_BK * LDK;

        /* S = Q K^T: n-tile j is keys k0 + 8j .. + 7; s[j] = rows g, g + 8 x keys 8j + 2t, + 1 */
        float s[AT_BK / 8][4];
#pragma unroll
        for (int j = 0; j < AT_BK / 8; j++)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        const float *kr = ks + g * LDK + 4 * t;                    /* key 8j + g, columns 16c + 4t .. + 3 */
#pragma unroll
        for (int c = 0; c < HD / 16; c++)
#pragma unroll
            for (int j = 0; j < AT_BK / 8; j++) {
                float4 x = *(const float4 *)(kr + j * 8 * LDK + 16 * c);
                mma_tf32(s[j], qf[2 * c], to_tf32(x.x), to_tf32(x.y));
                mma_tf32(s[j], qf[2 * c + 1], to_tf32(x.z), to_tf32(x.w));
            }

        /* scale (base 2), mask keys >= nk, row maxima over the quad that shares the rows */
        float x0 = -INFINITY, x1 = -INFINITY;
        const bool tail = k0 + AT_BK > nk;
#pragma unroll
        for (int j = 0; j < AT_BK / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float z = s[j][e] * sl2;
                if (tail && k0 + 8 * j + 2 * t + (e & 1) >= nk)
                    z = -INFINITY;
                s[j][e] = z;
            }
#pragma unroll
        for (int j = 0; j < AT_BK / 8; j++) {
            x0 = fmaxf(x0, fmaxf(s[j][0], s[j][1]));
            x1 = fmaxf(x1, fmaxf(s[j][2], s[j][3]));
        }
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
        const float n0 = fmaxf(m0, x0), n1 = fmaxf(m1, x1);
        const float b0 = n0 == -INFINITY ? 0.0f : n0, b1 = n1 == -INFINITY ? 0.0f : n1;  /* no inf - inf */
        const float a0 = exp2f(m0 - b0), a1 = exp2f(m1 - b1);     /* rescale of what came before (0 at first) */
        m0 = n0;
        m1 = n1;
        float r0 = 0.0f, r1 = 0.0f;
#pragma unroll
        for (int j = 0; j < AT_BK / 8; j++) {
            s[j][0] = exp2f(s[j][0] - b0);
            s[j][1] = exp2f(s[j][1] - b0);
            s[j][2] = exp2f(s[j][2] - b1);
            s[j][3] = exp2f(s[j][3] - b1);
            r0 += s[j][0] + s[j][1];
            r1 += s[j][2] + s[j][3];
        }
        l0 = l0 * a0 + r0;
        l1 = l1 * a1 + r1;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            acc[n][0] *= a0;
            acc[n][1] *= a0;
            acc[n][2] *= a1;
            acc[n][3] *= a1;
        }

        /* O += P V: k-step j = keys 8j + 2t (a0 a1, b0) and 8j + 2t + 1 (a2 a3, b1); n-tile G a + r is
         * head columns 8G a + G n + r */
#pragma unroll
        for (int j = 0; j < AT_BK / 8; j++) {
            const uint32_t pa[4] = {to_tf32(s[j][0]), to_tf32(s[j][2]), to_tf32(s[j][1]), to_tf32(s[j][3])};
            const float *v0 = vs + (8 * j + 2 * t) * LDV + G * g, *v1 = v0 + LDV;
#pragma unroll
            for (int a = 0; a < HD / (8 * G); a++) {
                if constexpr (G == 4) {
                    float4 y0 = *(const float4 *)(v0 + 32 * a), y1 = *(const float4 *)(v1 + 32 * a);
                    mma_tf32(acc[4 * a], pa, to_tf32(y0.x), to_tf32(y1.x));
                    mma_tf32(acc[4 * a + 1], pa, to_tf32(y0.y), to_tf32(y1.y));
                    mma_tf32(acc[4 * a + 2], pa, to_tf32(y0.z), to_tf32(y1.z));
                    mma_tf32(acc[4 * a + 3], pa, to_tf32(y0.w), to_tf32(y1.w));
                } else {
                    float2 y0 = *(const float2 *)(v0 + 16 * a), y1 = *(const float2 *)(v1 + 16 * a);
                    mma_tf32(acc[2 * a], pa, to_tf32(y0.x), to_tf32(y1.x));
                    mma_tf32(acc[2 * a + 1], pa, to_tf32(y0.y), to_tf32(y1.y));
                }
            }
        }
        __syncthreads();                                           /* this buffer is read: free to refill */
    }

    /* o = O / l: full row sums over the quad, O staged row-major in buffer 0, then written out */
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
    float *so = sm;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        int c = 8 * G * (n / G) + 2 * G * t + n % G;               /* column of c0 / c2; c1 / c3: + G */
        float *r = so + (w * 16 + g) * LDV + c;
        r[0] = acc[n][0] * i0;
        r[G] = acc[n][1] * i0;
        r[8 * LDV] = acc[n][2] * i1;
        r[8 * LDV + G] = acc[n][3] * i1;
    }
    __syncthreads();
    at_store<HD, VEC>(o, ldo, so, LDV, q0, nq, hd);
}

/* ---- the strict-fp32 kernel: the same pass on the FP32 cores -------------------------------
 *
 * Where no product may take tf32 inputs (--precision fp32, or a product not marked reduced) the pass
 * runs on the ordinary FP32 units: every product an fma in fp32, no operand rounded.  Grid as above
 * (ceil(nq / 64), heads, items); a block of 256 threads (tx = 0..15, ty = 0..15) owns 64 query rows and
 * walks the keys in tiles of 64:
 *
 *   S = Q K_t^T   thread (ty, tx): rows 4 ty + i (i < 4) x keys tx + 16 j (j < 4), summed over the head
 *                 columns in order;
 *   the online softmax in base 2 as above (row maxima over the 16 threads of a row: shuffles 1..8);
 *   P (the exponentials) through shared memory;
 *   O += P V_t    thread (ty, tx): rows 4 ty + i x NC = HD / 16 head columns (HD 32: 2 tx + e; else
 *                 64 (e / 4) + 4 tx + e % 4), summed over the keys in order.
 *
 * Shared memory (floats): Q, K_t, V_t [64][HD + 4] and P [64][68]: rows 4 mod 32 floats apart, so the
 * 16-byte reads of 8 consecutive rows fall in distinct banks.  43008 B (HD 32), 69632 B (HD 64),
 * 118784 B (HD 128).  K_{t+1} is copied (cp.async) while the softmax and P V_t run, V_{t+1} while
 * S_{t+1} does.  HD in {32, 64, 128}, the smallest >= hd; columns hd..HD-1 are zero as above. */

#define AF_THREADS 256

template <int HD>
struct af_geom {
    static constexpr int LD = HD + 4;                     /* Q, K, V row pitch */
    static constexpr int LP = AT_BK + 4;                  /* P row pitch       */
    static constexpr int NC = HD / 16;                    /* output columns per thread */
    static constexpr size_t SMEM = (size_t)(3 * AT_BQ * LD + AT_BQ * LP) * sizeof(float);
};

/* Head column of a thread's output column e (see the comment above). */
template <int HD>
__device__ __forceinline__ int af_col(int tx, int e)
{
    return HD == 32 ? 2 * tx + e : 64 * (e / 4) + 4 * tx + e % 4;
}

/* Queue the copy of rows [r0, r0 + 64) of src (row pitch lds, columns 0..hd-1) into dst [64][HD + 4]
 * (cp.async, the caller commits); rows >= nrows and columns >= hd stored as zeros. */
template <int HD, bool VEC>
__device__ __forceinline__ void af_load(float *dst, const float *src, int lds, int r0, int nrows, int hd)
{
    constexpr int LD = af_geom<HD>::LD, W = VEC ? 4 : 1, CW = HD / W, R = AF_THREADS / CW;
    const int rt = (int)threadIdx.x / CW, c = ((int)threadIdx.x % CW) * W;
    const float *p = src + (size_t)(r0 + rt) * lds + c;
    float *d = dst + rt * LD + c;
    const bool col_ok = c < hd;
    constexpr int UNROLL = VEC ? AT_BK / R : 1;
#pragma unroll(UNROLL)
    for (int i = 0; i < AT_BK / R; i++, p += (size_t)R * lds, d += R * LD) {
        if (col_ok && r0 + rt + i * R < nrows) {
            __pipeline_memcpy_async(d, p, W * sizeof(float));
        } else {
            if constexpr (VEC)
                *(float4 *)d = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            else
                *d = 0.0f;
        }
    }
}

template <int HD, bool VEC>
__global__ void __launch_bounds__(AF_THREADS, 2)
    k_attention_f32(const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                    float *__restrict__ o, int nq, int nk, int hd, int ldq, int ldk, int ldv, int ldo, float sl2,
                    int64_t zq, int64_t zk, int64_t zv, int64_t zo)
{
    constexpr int LD = af_geom<HD>::LD, LP = af_geom<HD>::LP, NC = af_geom<HD>::NC;
    extern __shared__ float4 af_sm4[];
    float *qs = (float *)af_sm4, *ks = qs + AT_BQ * LD, *vs = ks + AT_BK * LD, *ps = vs + AT_BK * LD;
    const int tx = (int)threadIdx.x & 15, ty = (int)threadIdx.x >> 4;
    const int q0 = (int)blockIdx.x * AT_BQ;
    const size_t col0 = (size_t)blockIdx.y * hd;
    const int64_t item = blockIdx.z;
    q += item * zq + col0;
    k += item * zk + col0;
    v += item * zv + col0;
    o += item * zo + col0;

    af_load<HD, VEC>(qs, q, ldq, q0, nq, hd);                      /* group: Q and K_0 */
    af_load<HD, VEC>(ks, k, ldk, 0, nk, hd);
    __pipeline_commit();
    af_load<HD, VEC>(vs, v, ldv, 0, nk, hd);                       /* group: V_0 */
    __pipeline_commit();

    float acc[4][NC], m[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < NC; e++)
            acc[i][e] = 0.0f;
    }
    const int ntiles = (nk + AT_BK - 1) / AT_BK;
    for (int kt = 0; kt < ntiles; kt++) {
        const int k0 = kt * AT_BK;
        __pipeline_wait_prior(1);                                  /* K_t landed (V_t may not have) */
        __syncthreads();

        /* S: rows 4 ty + i, keys tx + 16 j */
        float s[4][4];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
                s[i][j] = 0.0f;
#pragma unroll 4
        for (int d = 0; d < HD; d += 4) {
            float4 a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                a[i] = *(const float4 *)(qs + (4 * ty + i) * LD + d);
#pragma unroll
            for (int j = 0; j < 4; j++)
                b[j] = *(const float4 *)(ks + (tx + 16 * j) * LD + d);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float z = s[i][j];
                    z = fmaf(a[i].x, b[j].x, z);
                    z = fmaf(a[i].y, b[j].y, z);
                    z = fmaf(a[i].z, b[j].z, z);
                    z = fmaf(a[i].w, b[j].w, z);
                    s[i][j] = z;
                }
        }
        __syncthreads();                                           /* K_t read: K_{t+1} may come in */
        if (kt + 1 < ntiles)
            af_load<HD, VEC>(ks, k, ldk, k0 + AT_BK, nk, hd);
        __pipeline_commit();

        /* online softmax of each row; P into shared memory */
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float z = s[i][j] * sl2;
                if (k0 + tx + 16 * j >= nk)
                    z = -INFINITY;
                s[i][j] = z;
                mx = fmaxf(mx, z);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
            const float n = fmaxf(m[i], mx), b = n == -INFINITY ? 0.0f : n;
            const float a = exp2f(m[i] - b);
            m[i] = n;
            float r = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float p = exp2f(s[i][j] - b);
                ps[(4 * ty + i) * LP + tx + 16 * j] = p;
                r += p;
            }
            l[i] = l[i] * a + r;
#pragma unroll
            for (int e = 0; e < NC; e++)
                acc[i][e] *= a;
        }
        __pipeline_wait_prior(1);                                  /* V_t landed (K_{t+1} may not have) */
        __syncthreads();

        /* O += P V_t */
#pragma unroll 2
        for (int kk = 0; kk < AT_BK; kk += 4) {
            float4 p[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                p[i] = *(const float4 *)(ps + (4 * ty + i) * LP + kk);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const float *vr = vs + (kk + u) * LD;
                float vv[NC];
                if constexpr (HD == 32) {
                    float2 t2 = *(const float2 *)(vr + 2 * tx);
                    vv[0] = t2.x;
                    vv[1] = t2.y;
                } else {
#pragma unroll
                    for (int g = 0; g < NC / 4; g++) {
                        float4 t4 = *(const float4 *)(vr + 64 * g + 4 * tx);
                        vv[4 * g] = t4.x;
                        vv[4 * g + 1] = t4.y;
                        vv[4 * g + 2] = t4.z;
                        vv[4 * g + 3] = t4.w;
                    }
                }
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const float pi = u == 0 ? p[i].x : u == 1 ? p[i].y : u == 2 ? p[i].z : p[i].w;
#pragma unroll
                    for (int e = 0; e < NC; e++)
                        acc[i][e] = fmaf(pi, vv[e], acc[i][e]);
                }
            }
        }
        __syncthreads();                                           /* V_t and P read: V_{t+1} may come in */
        if (kt + 1 < ntiles)
            af_load<HD, VEC>(vs, v, ldv, k0 + AT_BK, nk, hd);
        __pipeline_commit();
    }
    __pipeline_wait_prior(0);

    /* o = O / l (full row sums over the 16 threads of a row), straight from the registers */
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float lt = l[i];
        lt += __shfl_xor_sync(0xffffffffu, lt, 1);
        lt += __shfl_xor_sync(0xffffffffu, lt, 2);
        lt += __shfl_xor_sync(0xffffffffu, lt, 4);
        lt += __shfl_xor_sync(0xffffffffu, lt, 8);
        const float inv = 1.0f / lt;
        const int row = q0 + 4 * ty + i;
        if (row >= nq)
            continue;
        float *orow = o + (size_t)row * ldo;
        if constexpr (VEC && HD != 32) {
#pragma unroll
            for (int g = 0; g < NC / 4; g++) {
                int c = 64 * g + 4 * tx;
                if (c < hd)
                    *(float4 *)(orow + c) = make_float4(acc[i][4 * g] * inv, acc[i][4 * g + 1] * inv,
                                                        acc[i][4 * g + 2] * inv, acc[i][4 * g + 3] * inv);
            }
        } else {
#pragma unroll
            for (int e = 0; e < NC; e++) {
                int c = af_col<HD>(tx, e);
                if (c < hd)
                    orow[c] = acc[i][e] * inv;
            }
        }
    }
}

/* ---- host side ------------------------------------------------------------------------- */

/* The compiled head size for hd (1..128): the tf32 kernel's, the fp32 kernel's. */
static int at_hd(int hd) { return hd <= 16 ? 16 : hd <= 32 ? 32 : hd <= 64 ? 64 : 128; }
static int af_hd(int hd) { return hd <= 32 ? 32 : hd <= 64 ? 64 : 128; }

static size_t at_smem(int HD, int tf32)
{
    if (!tf32)
        return HD <= 32 ? af_geom<32>::SMEM : HD <= 64 ? af_geom<64>::SMEM : af_geom<128>::SMEM;
    switch (HD) {
    case 16: return at_geom<16>::SMEM;
    case 32: return at_geom<32>::SMEM;
    case 64: return at_geom<64>::SMEM;
    default: return at_geom<128>::SMEM;
    }
}

int ss_cuda_attention_ok(const ss_attn_desc *d, int tf32)
{
    if (d->heads <= 0 || d->nq <= 0 || d->nk <= 0 || d->hd <= 0 || d->hd > AT_HD_MAX || d->heads > 65535)
        return 0;
    int64_t w = (int64_t)d->heads * d->hd;
    if (d->ldq < w || d->ldk < w || d->ldv < w || d->ldo < w)
        return 0;
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return at_smem(tf32 ? at_hd(d->hd) : af_hd(d->hd), tf32) <= (size_t)optin;
}

/* The kernel of one (HD, VEC, TF32) and its block. */
template <int HD, bool VEC, bool TF32>
static auto at_kernel()
{
    if constexpr (TF32)
        return k_attention<HD, VEC>;
    else
        return k_attention_f32<HD, VEC>;
}

template <int HD, bool VEC, bool TF32>
static cudaError_t at_launch(cudaStream_t s, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                             float *o, float sl2)
{
    auto kern = at_kernel<HD, VEC, TF32>();
    size_t smem;
    if constexpr (TF32)
        smem = at_geom<HD>::SMEM;
    else
        smem = af_geom<HD>::SMEM;
    const int threads = TF32 ? AT_THREADS : AF_THREADS;
    /* per device and cheap: set before every launch (also while a graph is being recorded) */
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return e;
    }
    /* batch items along grid.z, at most 65535 a launch */
    int batch = d->batch > 1 ? d->batch : 1;
    int64_t sq = batch > 1 ? d->stride_q : 0, sk = batch > 1 ? d->stride_k : 0, sv = batch > 1 ? d->stride_v : 0,
            so = batch > 1 ? d->stride_o : 0;
    for (int b0 = 0; b0 < batch; b0 += 65535) {
        unsigned nb = (unsigned)(batch - b0 < 65535 ? batch - b0 : 65535);
        dim3 grid((unsigned)((d->nq + AT_BQ - 1) / AT_BQ), (unsigned)d->heads, nb);
        kern<<<grid, threads, smem, s>>>(q + b0 * sq, k + b0 * sk, v + b0 * sv, o + b0 * so, d->nq, d->nk, d->hd,
                                         d->ldq, d->ldk, d->ldv, d->ldo, sl2, sq, sk, sv, so);
        if ((e = cudaGetLastError()) != cudaSuccess)
            return e;
    }
    return cudaSuccess;
}

static int at_aligned(const void *p) { return ((uintptr_t)p & 15) == 0; }

cudaError_t ss_cuda_attention(cudaStream_t s, const ss_attn_desc *d, int tf32, const float *q, const float *k,
                              const float *v, float *o)
{
    if (!ss_cuda_attention_ok(d, tf32))
        return cudaErrorInvalidValue;
    /* 16-byte copies: every head's first column 16-byte aligned, every row pitch (and item stride) a
     * multiple of 4 floats */
    int vec = d->hd % 4 == 0 && d->ldq % 4 == 0 && d->ldk % 4 == 0 && d->ldv % 4 == 0 && d->ldo % 4 == 0 &&
              at_aligned(q) && at_aligned(k) && at_aligned(v) && at_aligned(o);
    if (d->batch > 1)
        vec = vec && d->stride_q % 4 == 0 && d->stride_k % 4 == 0 && d->stride_v % 4 == 0 && d->stride_o % 4 == 0;
    float sl2 = (float)((double)d->scale * 1.4426950408889634);   /* log2(e) */
#define AT_CASE(HD, TF)                                                                                   \
    case HD:                                                                                              \
        return vec ? at_launch<HD, true, TF>(s, d, q, k, v, o, sl2) : at_launch<HD, false, TF>(s, d, q, k, v, o, sl2)
    if (!tf32) {
        switch (af_hd(d->hd)) {
        AT_CASE(32, false);
        AT_CASE(64, false);
        default: AT_CASE(128, false);
        }
    }
    switch (at_hd(d->hd)) {
    AT_CASE(16, true);
    AT_CASE(32, true);
    AT_CASE(64, true);
    default: AT_CASE(128, true);
    }
#undef AT_CASE
}

/* ---- rotary position embedding (ss_rope) ------------------------------------------------------ */

/* Rows r of x, y [rows, ld] (row r at position r % seq) with cs [seq, half, 2]: pair j (columns 2j,
 * 2j + 1, j < pairs = heads * half) is rotated by the angle of position r % seq and pair j % half.
 * One block per row (grid-stride over rows), the threads over the pairs; VEC: a pair and its (cos,
 * sin) as float2 (ld even, x, y and cs 8-byte aligned).  Products and sums rounded one by one, as
 * the CPU kernel rounds them (the same bits).  In place is fine: a thread reads the pair it writes. */
template <bool VEC>
__global__ void k_rope(float *y, const float *x, const float *cs, size_t rows, int seq, int half, int pairs, int ld)
{
    for (size_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * (size_t)ld, *cr = cs + (r % (size_t)seq) * 2 * (size_t)half;
        float *yr = y + r * (size_t)ld;
        for (int j = (int)threadIdx.x; j < pairs; j += (int)blockDim.x) {
            int i = j % half;
            float x0, x1, c, s;
            if constexpr (VEC) {
                float2 v = ((const float2 *)xr)[j], t = ((const float2 *)cr)[i];
                x0 = v.x, x1 = v.y, c = t.x, s = t.y;
            } else {
                x0 = xr[2 * j], x1 = xr[2 * j + 1], c = cr[2 * i], s = cr[2 * i + 1];
            }
            float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            float y1 = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
            if constexpr (VEC) {
                ((float2 *)yr)[j] = make_float2(y0, y1);
            } else {
                yr[2 * j] = y0;
                yr[2 * j + 1] = y1;
            }
        }
    }
}

cudaError_t ss_cuda_rope(cudaStream_t st, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                         const float *cs)
{
    if (hd <= 0 || hd % 2 != 0 || heads < 0 || seq < 0 || batch < 0 || (int64_t)heads * hd > ld)
        return cudaErrorInvalidValue;
    size_t rows = (size_t)batch * (size_t)seq;
    int half = hd / 2, pairs = heads * half;
    if (rows == 0 || pairs == 0)
        return cudaSuccess;
    int threads = pairs >= 256 ? 256 : (pairs + 31) / 32 * 32;
    unsigned blocks = (unsigned)(rows < ((size_t)1 << 20) ? rows : ((size_t)1 << 20));
    int vec = ld % 2 == 0 && ((uintptr_t)x & 7) == 0 && ((uintptr_t)y & 7) == 0 && ((uintptr_t)cs & 7) == 0;
    if (vec)
        k_rope<true><<<blocks, threads, 0, st>>>(y, x, cs, rows, seq, half, pairs, ld);
    else
        k_rope<false><<<blocks, threads, 0, st>>>(y, x, cs, rows, seq, half, pairs, ld);
    return cudaGetLastError();
}

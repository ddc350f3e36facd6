/* cuda_internal.h - private to kernels/cuda/: the CUDA backend's context (cuda_ctx) and what
 * its files share.  Not part of any interface outside this folder.
 *
 * The backend is the shared module libstemsplit-cuda.so that src/backend.c dlopen()s at run time
 * (and, compiled as C++ for the CPU, the CUDA emulator of kernels/cuda/emu).  Its files, by family:
 *   context.cu      the context: start and end, device queries, errors, scratch memory, lanes,
 *                   graph recording, device memory, device-time statistics
 *   copy.cu         transfers between host and device, page-locked host buffers, copy queues
 *   elementwise.cu  fill, copies, add, mul, scale, affine, GELU, the ss_act activations, GLU (also
 *                   with a bias), transpose
 *   norms.cu        statistics, row moments, group norm and its fused forms, layer norm, RMS norm,
 *                   softmax
 *   gemm.cu         matrix products (cuBLAS, cuBLASLt), cuBLAS's warm-up beside the model load
 *   conv.cu         conv2d (direct 1-D kernel, im2col + GEMM) and transposed conv2d (GEMM + col2im)
 *   winograd.cu     3x3 stride-1 conv2d as Winograd F(4x4, 3x3) or F(2x2, 3x3)
 *   stft.cu         STFT and iSTFT through cuFFT
 *   attention.cu    fused multi-head attention, batched, and the rotary embedding (attention.h)
 *   module.cu       the vtable and the module's one exported symbol, ss_cuda_module()
 * and, built into the same module, the models' fused kernels (models/<arch>/fused_cuda.cu, found
 * by name through models/kernels.h: the `kernel` slot of the vtable).
 * Every op takes the context as void *vctx, queues its work on the current lane's stream
 * (c->stream) without synchronising, and records errors in the caller's sticky ss_error.
 * The functions declared here have C++ linkage; the module is built with hidden visibility, so
 * none of them is exported.
 */
#ifndef SS_CUDA_INTERNAL_H
#define SS_CUDA_INTERNAL_H

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

/* ---- errors (context.cu) ------------------------------------------------------------- */

ss_status fail(ss_error *err, ss_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
ss_status cuda_fail(ss_error *err, cudaError_t e, const char *what);

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
    unsigned long generation; /* bumped when memory ops may use is released   */
    void *blas_ws;           /* cuBLAS workspace (set, so recording allocates nothing) */
    size_t base_used;        /* device memory in use when the backend started */
    size_t peak_used;        /* most seen since (sampled at synchronisations) */
    cudaEvent_t dl_event;    /* after the last download_start, or NULL        */
    /* Lanes (ss_lane): a second stream with its own cuBLAS handle, workspace and
     * scratch, made at start where it can be (else everything runs on lane 0).  The fields above (stream,
     * blas, blas_ws, scratch, scratch_size) are always the current lane's; the
     * other lane's wait in `other` until lane_switch swaps them back. */
    int lanes;               /* lane 1 made                                    */
    int cur_lane;
    lane_res other;
    cudaEvent_t ev_fork, ev_join;
    /* Copy queues (made at start where they can be): transfers from and
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

/* Scratch budget for one im2col/FFT/Winograd chunk (floats): 96 MiB. */
#define CHUNK_FLOATS ((size_t)24 << 20)

/* cuBLAS workspace of each lane (32 MiB: NVIDIA's recommendation for Hopper) */
#define BLAS_WS_BYTES ((size_t)32 << 20)

/* ---- context.cu ---------------------------------------------------------------------- */

extern char g_why[256];   /* why the device list is empty, or why the module was refused */
void sample_memory(cuda_ctx *c);
int tm_begin_on(cuda_ctx *c, cudaStream_t st);
void tm_end_on(cuda_ctx *c, int i, int kind, size_t bytes, cudaStream_t st);
int tm_begin(cuda_ctx *c);
void tm_end(cuda_ctx *c, int i, int kind, size_t bytes);
void before_release(cuda_ctx *c);
void *scratch(cuda_ctx *c, size_t bytes, ss_error *err);
int cu_device_count(void);
ss_status cu_device_info(int index, ss_device_info *out);
ss_status cu_lane(void *vctx, ss_lane_op op, ss_error *err);
void cu_free(void *vctx);
ss_status cu_init(const ss_backend_params *p, void **out, ss_error *err);
ss_status cu_synchronize(void *vctx, ss_error *err);
ss_status cu_graph_begin(void *vctx, ss_error *err);
ss_status cu_graph_end(void *vctx, void **out, ss_error *err);
ss_status cu_graph_launch(void *vctx, void *graph, ss_error *err);
void cu_graph_free(void *vctx, void *graph);
unsigned long cu_generation(void *vctx);
ss_precision cu_precision(void *vctx);
int cu_threads(void *vctx);
void *cu_alloc(void *vctx, size_t bytes);
void cu_release(void *vctx, void *ptr);

/* ---- copy.cu ----------------------------------------------------------------------------- */

ss_status cu_upload(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err);
ss_status cu_download(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err);
void *cu_host_alloc(void *vctx, size_t bytes);
void cu_host_free(void *vctx, void *ptr);
ss_status cu_download_start(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err);
ss_status cu_download_wait(void *vctx, ss_error *err);

/* ---- gemm.cu ----------------------------------------------------------------------------- */

cublasComputeType_t compute_type(ss_precision p, int reduced);
ss_status gemm_rm(cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  int64_t sa, const float *b, int ldb, int64_t sb, float beta, float *cc, int ldc, int64_t sc,
                  int batch, int reduced, ss_error *err);
ss_status cu_gemm(void *vctx, const ss_gemm_desc *d, const float *a, const float *b, float *cc, ss_error *err);
ss_status cu_gemm_bias(void *vctx, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                       float *cc, ss_error *err);
void warm_start(cuda_ctx *c);
void warm_join(cuda_ctx *c);

/* ---- elementwise.cu ---------------------------------------------------------------------- */

__global__ void k_scale(float *y, const float *x, float a, size_t n);   /* y = a x (also cu_gemm's) */
ss_status cu_fill(void *vctx, float *y, float v, size_t n, ss_error *err);
ss_status cu_copy2d(void *vctx, float *dst, size_t dpitch, const float *src, size_t spitch, size_t rows,
                    size_t cols, ss_error *err);
ss_status cu_add(void *vctx, float *y, const float *a, const float *b, size_t n, ss_error *err);
ss_status cu_scale(void *vctx, float *y, const float *x, float alpha, size_t n, ss_error *err);
ss_status cu_channel_affine(void *vctx, float *y, const float *x, int batch, int ch, int64_t len,
                            const float *scale, const float *bias, ss_error *err);
ss_status cu_row_affine(void *vctx, float *y, const float *x, int rows, int64_t len, const float *scale,
                        const float *shift, ss_error *err);
ss_status cu_gelu(void *vctx, float *y, const float *x, size_t n, ss_error *err);
ss_status cu_mul(void *vctx, float *y, const float *a, const float *b, size_t n, ss_error *err);
ss_status cu_activate(void *vctx, float *y, const float *x, size_t n, ss_act act, float alpha, ss_error *err);
ss_status cu_glu(void *vctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err);
ss_status cu_copy4d(void *vctx, float *dst, const int64_t dstride[4], const float *src,
                    const int64_t sstride[4], const int64_t shape[4], ss_error *err);
ss_status cu_bias_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                       ss_error *err);
ss_status cu_bias_glu(void *vctx, float *y, float *x, const float *bias, int batch, int ch, int64_t len,
                      ss_error *err);
ss_status cu_transpose(void *vctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err);

/* ---- norms.cu ---------------------------------------------------------------------------- */

/* (k_gn_coef's arguments are described at its definition) */
__global__ void k_gn_coef(float4 *co, const double *part, int nch, const float *bias, int ch, int groups, int64_t gn,
                          const float *gamma, const float *beta, float eps);
ss_status cu_standardize_coef(void *vctx, float *scale, float *shift, const float *mean, const float *sd,
                              int n, float eps, ss_error *err);
ss_status cu_row_moments(void *vctx, float *mean, float *sd, const float *x, int rows, int64_t len,
                         ss_error *err);
ss_status cu_group_norm_gelu(void *vctx, float *y, const float *x, const float *bias, int batch, int ch,
                             int64_t len, int groups, const float *gamma, const float *beta, float eps,
                             ss_error *err);
/* x [batch, ch, len] += glu(group_norm(g + bias)) for g [batch, 2ch, len] (a model's fusion's tail:
 * models/htdemucs/fused_cuda.cu); not an op of the vtable */
ss_status cu_group_norm_glu_add(void *vctx, float *x, float *g, const float *bias, int batch, int ch,
                                int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                ss_error *err);
ss_status cu_group_norm(void *vctx, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                        const float *gamma, const float *beta, float eps, ss_error *err);
ss_status cu_layer_norm(void *vctx, float *y, const float *x, int rows, int dim, const float *gamma,
                        const float *beta, float eps, ss_error *err);
ss_status cu_rms_norm(void *vctx, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                      ss_rms_form form, ss_error *err);
ss_status cu_softmax(void *vctx, float *y, const float *x, int rows, int len, float scale, ss_error *err);

/* ---- conv.cu ----------------------------------------------------------------------------- */

ss_status cu_conv2d(void *vctx, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                    float *y, ss_error *err);
ss_status cu_conv_transpose2d(void *vctx, const ss_convt2d_desc *d, const float *x, const float *w,
                              const float *bias, float *y, ss_error *err);
ss_status cu_conv_transpose2d_crop(void *vctx, const ss_convt2d_desc *d, const ss_convt_crop *cw,
                                   const float *x, const float *w, const float *bias, float *y, ss_error *err);

/* ---- winograd.cu ------------------------------------------------------------------------- */

int wino_ok(const ss_conv2d_desc *d);
ss_status conv_wino(cuda_ctx *c, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                    float *y, ss_error *err);

/* ---- stft.cu ----------------------------------------------------------------------------- */

ss_status cu_stft(void *vctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err);
ss_status cu_istft(void *vctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err);

/* ---- gru.cu ------------------------------------------------------------------------------ */

ss_status cu_gru(void *vctx, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                 const float *b_ih, const float *b_hh, float *h, float *y, float *scratch, ss_error *err);

/* ---- launch shapes (every kernel file) ------------------------------------------------ */

#define TPB 256

static inline unsigned grid_for(size_t n)
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

static inline int use_rows(size_t rows, int64_t len) { return len >= ROW_MIN && rows > 0 && rows <= 0x7fffffffu; }

/* Up to 64 blocks along a row, more when there are few rows (so that a launch
 * has at least 4096 blocks where the rows are long enough). */
static inline dim3 row_grid(size_t rows, int64_t len)
{
    int64_t by = (len + TPB - 1) / TPB, cap = 64;
    if ((size_t)cap * rows < 4096)
        cap = (int64_t)((4096 + rows - 1) / rows);
    if (cap > 65535)
        cap = 65535;
    return dim3((unsigned)rows, (unsigned)(by > cap ? cap : by));
}

#define LAUNCH(kern, n, ...) kern<<<grid_for(n), TPB, 0, c->stream>>>(__VA_ARGS__)
#define LAUNCH_ROWS(kern, rows, len, ...) kern<<<row_grid(rows, len), TPB, 0, c->stream>>>(__VA_ARGS__)

static inline int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

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

/* ---- device helpers (every kernel file) ----------------------------------------------- */

__device__ __forceinline__ float gelu_f(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

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

__device__ __forceinline__ float gn_val(float x, float4 k) { return ((x + k.x) - k.y) * k.z + k.w; }

__device__ __forceinline__ float gn_glu(float a, float b, float4 ka, float4 kb)
{
    return gn_val(a, ka) / (1.0f + expf(-gn_val(b, kb)));
}

#endif

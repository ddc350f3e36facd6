/* backend.h - the device abstraction every model is written against.
 *
 * Three ideas kept apart (after ggml-backend):
 *   device  - what exists: enumeration, name, memory, usability;
 *   backend - a running context on one device: init, ops, synchronise;
 *   buffer  - memory on that device: alloc, release, upload, download.
 *
 * Memory is addressed with plain pointers returned by ss_alloc(); on the CPU
 * they are host pointers, on a GPU they are device pointers that only the
 * backend's ops may dereference.  All tensors are fp32, row-major, contiguous
 * unless a descriptor gives strides; shapes are given in the comments as
 * [dim0, dim1, ...] with the last dimension contiguous.
 *
 * Errors are sticky (like cudaGetLastError): an op that fails records the
 * error in the backend, and every later op is a no-op until the caller reads
 * it with ss_backend_status().  Model code therefore calls a sequence of ops
 * and checks once, at the end of its forward pass.
 *
 * Every op in ss_backend_iface is optional.  The CPU backend (backend_cpu.c)
 * fills every primitive op from kernels/cpu: those are the reference
 * implementation.  A NULL primitive op means the one public wrapper below
 * runs the reference backend's entry instead (downloading inputs and
 * uploading outputs when the device memory is not host memory); a NULL fused
 * op means the wrapper composes the backend's own primitive ops.  Callers
 * never test for NULL.
 *
 * The ops here are model-agnostic.  A fusion only one architecture needs is
 * not an op: it lives with the model (models/<arch>/fused.h and its
 * implementations per backend) and is found by name (ss_backend_kernel), the
 * model composing these ops where a backend has none.
 */
#ifndef SS_BACKEND_H
#define SS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "ops.h"

#define SS_BACKEND_API_VERSION 14

typedef struct ss_backend ss_backend;            /* opaque running context */

typedef enum ss_precision {
    SS_PREC_FP32 = 0,  /* strict IEEE fp32 everywhere                     */
    SS_PREC_TF32,      /* fp32 storage, tf32 tensor-core matmuls          */
    SS_PREC_BF16,      /* bf16 matmul inputs, fp32 accumulation           */
    SS_PREC_FP16,      /* fp16 matmul inputs, fp32 accumulation           */
    SS_PREC_MIXED,     /* tf32 for the products a model marks `reduced`,
                        * fp32 for the rest (convolutions)                */
    SS_PREC_AUTO       /* the backend's default: mixed on CUDA, else fp32 */
} ss_precision;

const char *ss_precision_name(ss_precision p);
/* Parse "fp32|tf32|bf16|fp16|mixed|auto"; returns -1 when unknown. */
int ss_precision_parse(const char *s);

typedef struct ss_device_info {
    char backend[16];     /* "cpu", "cuda", "mps"                              */
    int index;            /* index within the backend                          */
    char name[128];       /* human name, e.g. "x86_64 (16 cores)"              */
    uint64_t mem_total;   /* bytes, 0 when unknown                             */
    uint64_t mem_free;    /* bytes, 0 when unknown                             */
    int usable;           /* 1 when a backend can be started on it             */
    char note[160];       /* extra facts or why it is not usable               */
} ss_device_info;

typedef struct ss_backend_params {
    int device;              /* index within the backend                       */
    int threads;             /* CPU worker threads; 0 = one per online core    */
    ss_precision precision;  /* requested precision                            */
} ss_backend_params;

/* ss_lane: SS_LANE_FORK: ops from now on go to lane 1, after everything queued
 * so far; SS_LANE_BACK: ops go to lane 0 again while lane 1's run on;
 * SS_LANE_JOIN: ops go to lane 0, after everything queued on lane 1 so far. */
typedef enum ss_lane_op { SS_LANE_FORK, SS_LANE_BACK, SS_LANE_JOIN } ss_lane_op;

/* ---- the vtable a backend fills ------------------------------------------- */

typedef struct ss_backend_iface {
    int api_version;               /* SS_BACKEND_API_VERSION                  */
    const char *name;              /* "cpu", "cuda", "mps"                    */

    /* device */
    int (*device_count)(void);                                /* 0 if none    */
    ss_status (*device_info)(int index, ss_device_info *out);

    /* backend */
    ss_status (*init)(const ss_backend_params *p, void **ctx, ss_error *err);
    void (*free)(void *ctx);
    /* optional, NULL = ops complete before they return */
    ss_status (*synchronize)(void *ctx, ss_error *err);
    /* optional, NULL = precision is always fp32 */
    ss_precision (*precision)(void *ctx);
    /* optional, NULL = 1 thread */
    int (*threads)(void *ctx);

    /* buffer */
    int host_memory;               /* 1 when ss_alloc() returns host memory   */
    void *(*alloc)(void *ctx, size_t bytes);                  /* NULL if OOM  */
    void (*release)(void *ctx, void *ptr);
    ss_status (*upload)(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err);
    ss_status (*download)(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err);

    /* ops: every entry optional (NULL = the reference backend's, on host
     * mirrors); each returns SS_OK or fills err.  In-place use (y == x) is allowed where the wrapper says so. */
    ss_status (*fill)(void *ctx, float *y, float v, size_t n, ss_error *err);
    ss_status (*copy2d)(void *ctx, float *dst, size_t dpitch, const float *src, size_t spitch,
                        size_t rows, size_t cols, ss_error *err);
    ss_status (*add)(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err);
    ss_status (*scale)(void *ctx, float *y, const float *x, float alpha, size_t n, ss_error *err);
    ss_status (*channel_affine)(void *ctx, float *y, const float *x, int batch, int ch, int64_t len,
                                const float *scale, const float *bias, ss_error *err);
    ss_status (*row_affine)(void *ctx, float *y, const float *x, int rows, int64_t len,
                            const float *scale, const float *shift, ss_error *err);
    ss_status (*row_moments)(void *ctx, float *mean, float *std, const float *x, int rows,
                             int64_t len, ss_error *err);
    ss_status (*gelu)(void *ctx, float *y, const float *x, size_t n, ss_error *err);
    ss_status (*glu)(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err);
    ss_status (*softmax)(void *ctx, float *y, const float *x, int rows, int len, float scale, ss_error *err);
    ss_status (*transpose)(void *ctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err);
    ss_status (*group_norm)(void *ctx, float *y, const float *x, int batch, int ch, int64_t len,
                            int groups, const float *gamma, const float *beta, float eps, ss_error *err);
    ss_status (*layer_norm)(void *ctx, float *y, const float *x, int rows, int dim,
                            const float *gamma, const float *beta, float eps, ss_error *err);
    ss_status (*gemm)(void *ctx, const ss_gemm_desc *d, const float *a, const float *b, float *c, ss_error *err);
    ss_status (*conv2d)(void *ctx, const ss_conv2d_desc *d, const float *x, const float *w,
                        const float *bias, float *y, ss_error *err);
    ss_status (*conv_transpose2d)(void *ctx, const ss_convt2d_desc *d, const float *x, const float *w,
                                  const float *bias, float *y, ss_error *err);
    ss_status (*stft)(void *ctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err);
    ss_status (*istft)(void *ctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err);

    /* ---- appended ops (optional like the others; NULL = the reference's) ---- */
    ss_status (*copy4d)(void *ctx, float *dst, const int64_t dstride[4], const float *src,
                        const int64_t sstride[4], const int64_t shape[4], ss_error *err);
    ss_status (*standardize_coef)(void *ctx, float *scale, float *shift, const float *mean, const float *std,
                                  int n, float eps, ss_error *err);
    /* fused epilogues of the primitive ops, model-agnostic (a convolution's bias and
     * norm with its activation); NULL = the wrapper composes the backend's own ops.
     * A model's own fusions are not slots: see `kernel` below. */
    ss_status (*group_norm_gelu)(void *ctx, float *y, const float *x, const float *bias, int batch, int ch,
                                 int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                 ss_error *err);
    ss_status (*bias_gelu)(void *ctx, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                           ss_error *err);
    ss_status (*bias_glu)(void *ctx, float *y, float *x, const float *bias, int batch, int ch, int64_t len,
                          ss_error *err);

    /* Optional op recording (CUDA graphs): between graph_begin and graph_end the
     * ops are recorded, not run; graph_end returns a handle that graph_launch
     * replays (same pointers, same shapes) and graph_free releases.  A host
     * round trip while recording fails the recording.  NULL = not supported. */
    ss_status (*graph_begin)(void *ctx, ss_error *err);
    ss_status (*graph_end)(void *ctx, void **graph, ss_error *err);
    ss_status (*graph_launch)(void *ctx, void *graph, ss_error *err);
    void (*graph_free)(void *ctx, void *graph);

    /* Optional transfers that do not wait (NULL = plain host memory, downloads
     * that complete before they return): host_alloc gives host memory the device
     * copies to and from directly (page-locked), host_free releases it;
     * download_start queues a copy into it after the queued work and returns at
     * once; download_wait returns when every download started has landed. */
    void *(*host_alloc)(void *ctx, size_t bytes);
    void (*host_free)(void *ctx, void *ptr);
    ss_status (*download_start)(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err);
    ss_status (*download_wait)(void *ctx, ss_error *err);

    /* Optional fused attention (API 5): attention_ok says whether attention
     * runs descriptor d (shape and precision) as one fused pass; where it does
     * not (or either is NULL) the model composes gemm + softmax + gemm. */
    int (*attention_ok)(void *ctx, const ss_attn_desc *d);
    ss_status (*attention)(void *ctx, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                           float *o, ss_error *err);

    /* Optional (API 6): the window c of conv_transpose2d d straight into y
     * [batch, cout, c->oh, c->ow] (see ss_conv_transpose2d_crop).  NULL: the
     * wrapper composes conv_transpose2d, copy4d and gelu. */
    ss_status (*conv_transpose2d_crop)(void *ctx, const ss_convt2d_desc *d, const ss_convt_crop *c, const float *x,
                                       const float *w, const float *bias, float *y, ss_error *err);
    /* Optional (API 6): gemm d (batch 1) plus a bias row on every row of C (see
     * ss_gemm_bias).  NULL: the wrapper adds it with a rank-1 product. */
    ss_status (*gemm_bias)(void *ctx, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                           float *c, ss_error *err);
    /* Optional (API 7): a count that changes whenever device memory the ops
     * may have used is released or moved (buffers freed, scratch regrown, FFT
     * plans dropped): a recording stays valid while it does not change.
     * NULL: a caller must assume that any direct op may have changed it. */
    unsigned long (*generation)(void *ctx);
    /* Optional (API 9): a second queue of device work ("lane" 1) beside the
     * first, for independent parts of a forward pass (see ss_lane).  NULL: ops
     * run in the order they are issued. */
    ss_status (*lane)(void *ctx, ss_lane_op op, ss_error *err);
    /* Optional (API 11): a model's fused kernel by name ("<arch>.<kernel>/<version>",
     * e.g. "htdemucs.dconv_rows/1"), as ggml's get_proc_address: a pointer to
     * the struct of entry points the model's header declares for that name, or
     * NULL where the backend has none (the model then composes primitive ops).
     * A backend looks the name up in the models' tables (models/kernels.h).
     * NULL: no named kernels. */
    const void *(*kernel)(void *ctx, const char *name);

    /* ---- API 12: the primitives the transformer and spectrogram models need
     * (optional like the others; NULL = the reference's on host mirrors) ---- */
    ss_status (*mul)(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err);
    ss_status (*activate)(void *ctx, float *y, const float *x, size_t n, ss_act act, float alpha, ss_error *err);
    ss_status (*rms_norm)(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                          ss_rms_form form, ss_error *err);
    ss_status (*rope)(void *ctx, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                      const float *cs, ss_error *err);
    /* 1 when `attention` runs descriptors with batch > 1 itself; 0: the
     * wrapper calls it once per item */
    int attention_batched;
    /* API 13: no new slot; `activate` gained SS_ACT_POW (|x|^alpha), so a
     * module built for API 12 would refuse it */
    /* API 14: a GRU layer over a sequence (see ss_gru); NULL = the reference's */
    ss_status (*gru)(void *ctx, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, float *h, float *y, float *scratch, ss_error *err);
} ss_backend_iface;

/* ---- registry and device selection ---------------------------------------- */

/* Backends compiled into this binary, CPU last; NULL-terminated. */
const ss_backend_iface *const *ss_backend_list(void);
const ss_backend_iface *ss_backend_find(const char *name);
/* Why a compiled-in backend has no device (e.g. the CUDA module or driver is
 * missing), or NULL when it has devices or gives no reason. */
const char *ss_backend_unavailable(const ss_backend_iface *bi);

/* Resolve a --device string ("auto", "cpu", "cuda", "cuda:N", "mps") to a
 * running backend.  `note` (may be NULL) receives one line saying what was
 * chosen and why (printed under -v).  SS_E_USAGE for a malformed string,
 * SS_E_DEVICE when the device is not compiled in or not usable. */
ss_status ss_backend_open(const char *device, const ss_backend_params *p, ss_backend **out,
                          char *note, size_t note_size, ss_error *err);
/* The same for a run that needs about mem_need bytes of device memory (0:
 * unknown): where every device is chosen, before a model is loaded.  "auto"
 * passes over a device other than the CPU whose free memory is known and
 * smaller (the next in the registry, at last the CPU, is taken), and then
 * writes one line saying so into `warn` (may be NULL; "" when nothing was
 * passed over).  A named device is opened whatever its free memory. */
ss_status ss_backend_open_for(const char *device, const ss_backend_params *p, uint64_t mem_need, ss_backend **out,
                              char *note, size_t note_size, char *warn, size_t warn_size, ss_error *err);
/* --device auto's choice among `list` (NULL-terminated, in order of
 * preference; ss_backend_open_for passes the registry): the first usable
 * device 0 that starts and, unless it is the CPU, has mem_need bytes free
 * (where it knows).  For tests with backends of their own. */
ss_status ss_backend_open_auto(const ss_backend_iface *const *list, const ss_backend_params *p, uint64_t mem_need,
                               ss_backend **out, char *note, size_t note_size, char *warn, size_t warn_size,
                               ss_error *err);
void ss_backend_close(ss_backend *be);
/* Start device `index` of a backend given by its vtable rather than by name
 * (one outside the registry, e.g. a test's).  SS_E_DEVICE for an API version
 * other than SS_BACKEND_API_VERSION or a device it does not have. */
ss_status ss_backend_open_iface(const ss_backend_iface *bi, int index, const ss_backend_params *p, ss_backend **out,
                                ss_error *err);

const ss_backend_iface *ss_backend_iface_of(const ss_backend *be);
const ss_device_info *ss_backend_device(const ss_backend *be);
ss_precision ss_backend_precision(const ss_backend *be);
/* Op recording (see graph_begin in the vtable): available when the backend has
 * it and ops are not being profiled (STEMSPLIT_PROFILE=1).  ss_graph_end returns the handle in *graph, or fails (the recorded
 * ops did not run; the backend's sticky error is cleared so the caller can
 * run them again directly). */
int ss_graph_available(const ss_backend *be);
ss_status ss_graph_begin(ss_backend *be, ss_error *err);
ss_status ss_graph_end(ss_backend *be, void **graph, ss_error *err);
ss_status ss_graph_launch(ss_backend *be, void *graph, ss_error *err);
void ss_graph_free(ss_backend *be, void *graph);
/* The backend's memory generation (see `generation` in the vtable) in *gen;
 * 0 where the backend does not keep one. */
int ss_backend_generation(const ss_backend *be, unsigned long *gen);
int ss_backend_threads(const ss_backend *be);

/* The sticky error: SS_OK, or the first failure since the last call (which
 * is copied into err and then cleared).  Synchronises first. */
ss_status ss_backend_status(ss_backend *be, ss_error *err);
/* The same without synchronising: the errors known so far (failed launches);
 * what the queued ops hit shows at the next download or ss_backend_status.
 * For the end of a forward pass, so the host may go on while the device runs. */
ss_status ss_backend_check(ss_backend *be, ss_error *err);

/* ---- buffers ---------------------------------------------------------------- */

/* n floats of device memory (uninitialised), or NULL with the sticky error set. */
float *ss_alloc(ss_backend *be, size_t n);
void ss_free(ss_backend *be, float *p);
ss_status ss_upload(ss_backend *be, float *dst, const float *src, size_t n);
ss_status ss_download(ss_backend *be, float *dst, const float *src, size_t n);
/* Host staging buffers for the transfers of every batch: n floats the device
 * copies to and from directly where it can (page-locked), else plain memory;
 * NULL when out of memory.  An upload from such memory may still be reading
 * it after ss_upload returns: the caller leaves the buffer alone until work
 * queued after that upload (e.g. a download) has been waited for. */
float *ss_host_alloc(ss_backend *be, size_t n);
void ss_host_free(ss_backend *be, float *p);
/* A download that returns at once where the backend can (queued after the
 * work before it; dst from ss_host_alloc); ss_download_wait returns when every
 * download started has landed.  Elsewhere ss_download_start is ss_download.
 * ss_downloads_overlap: whether they really overlap (so that a caller queues
 * its next work before waiting). */
ss_status ss_download_start(ss_backend *be, float *dst, const float *src, size_t n);
ss_status ss_download_wait(ss_backend *be);
int ss_downloads_overlap(const ss_backend *be);

/* ---- ops (public wrappers; every one works on every backend) ------------------
 *
 * The CPU kernel of every op (kernels/cpu, through src/backend_cpu.c) is the
 * reference: the other backends are tested against it (tests/test_cuda_ops.c,
 * tests/test_metal_ops.c: the same bits where the arithmetic is the same, else
 * within the tolerance each case states), and where a backend has no kernel
 * for a primitive op the wrapper runs the CPU's on host mirrors.  Shapes are in
 * each op's comment (descriptors in ops.h); an output may be one of the inputs
 * only where the comment says "in place ok", and must not overlap any input
 * elsewhere.  The op set, by family:
 *
 *   elementwise    ss_fill, ss_add, ss_mul, ss_scale, ss_gelu, ss_activate
 *                  (ReLU, sigmoid, tanh, SiLU, ELU, leaky ReLU; ss_relu,
 *                  ss_sigmoid, ss_tanh, ss_silu), ss_glu; with a per-channel
 *                  bias first: ss_bias_gelu, ss_bias_glu
 *   affine         ss_channel_affine (a bias, a scale, and BatchNorm at
 *                  inference: its statistics folded into scale and bias at
 *                  load), ss_row_affine, ss_standardize_coef
 *   reductions     ss_row_moments (mean, std), ss_softmax
 *   norms          ss_layer_norm, ss_group_norm (ss_group_norm_gelu),
 *                  ss_instance_norm, ss_rms_norm (mean and L2 forms)
 *   products       ss_gemm (transposes, batched with strides, alpha/beta),
 *                  ss_gemm_bias (a linear layer)
 *   convolutions   ss_conv2d (the 1-D convolution is h == 1, kh == 1),
 *                  ss_conv_transpose2d (1-D likewise), ss_conv_transpose2d_crop
 *   spectral       ss_stft, ss_istft
 *   attention      ss_rope on q and k (rotary embedding, optional), then
 *                  ss_attention where ss_attention_fused says so (batched
 *                  descriptors allowed), else ss_gemm + ss_softmax + ss_gemm
 *   recurrent      ss_gru (one GRU layer over a sequence, the state carried
 *                  between calls)
 *   layout         ss_copy2d, ss_copy4d (permutations, crops, pads,
 *                  reversals), ss_transpose
 *   a model's own  ss_backend_kernel: fusions found by name
 *
 * Around the ops: buffers and host staging buffers (above), op recording
 * (ss_graph_*, above), lanes (ss_lane, below), the sticky error. */

void ss_fill(ss_backend *be, float *y, float v, size_t n);                       /* y[i] = v */
/* copy `rows` rows of `cols` floats from src to dst; pitches in floats; the
 * two must not overlap */
void ss_copy2d(ss_backend *be, float *dst, size_t dpitch, const float *src, size_t spitch,
               size_t rows, size_t cols);
void ss_add(ss_backend *be, float *y, const float *a, const float *b, size_t n);  /* y = a + b, in place ok */
void ss_mul(ss_backend *be, float *y, const float *a, const float *b, size_t n);  /* y = a * b, in place ok */
void ss_scale(ss_backend *be, float *y, const float *x, float alpha, size_t n);   /* y = alpha x, in place ok */
/* x, y [batch, ch, len]: y = x * scale[c] + bias[c]; scale/bias may be NULL; in place ok */
void ss_channel_affine(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len,
                       const float *scale, const float *bias);
/* x, y [rows, len]: y = x * scale[r] + shift[r] (device vectors [rows]); in place ok */
void ss_row_affine(ss_backend *be, float *y, const float *x, int rows, int64_t len,
                   const float *scale, const float *shift);
/* x [rows, len] -> mean [rows], std [rows] (unbiased, as torch.std) on the device */
void ss_row_moments(ss_backend *be, float *mean, float *std, const float *x, int rows, int64_t len);
/* mean, std [n] -> scale [n] = 1 / (eps + std), shift [n] = -mean * scale: the
 * ss_row_affine coefficients of (x - mean) / (eps + std), computed on the device
 * (no host round trip); scale and shift must not overlap mean or std */
void ss_standardize_coef(ss_backend *be, float *scale, float *shift, const float *mean, const float *std, int n,
                         float eps);
void ss_gelu(ss_backend *be, float *y, const float *x, size_t n);                 /* exact erf GELU, in place ok */
/* x, y [n]: y = act(x) with parameter alpha (ss_act in ops.h: ReLU, sigmoid,
 * tanh, SiLU, ELU, leaky ReLU, |x|^alpha); in place ok.  The four below are shorthands. */
void ss_activate(ss_backend *be, float *y, const float *x, size_t n, ss_act act, float alpha);
void ss_relu(ss_backend *be, float *y, const float *x, size_t n);
void ss_sigmoid(ss_backend *be, float *y, const float *x, size_t n);
void ss_tanh(ss_backend *be, float *y, const float *x, size_t n);
void ss_silu(ss_backend *be, float *y, const float *x, size_t n);
/* x [batch, 2*ch, len] -> y [batch, ch, len] = x[:, :ch] * sigmoid(x[:, ch:]); not in place */
void ss_glu(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len);
/* x, y [rows, len]: y = softmax(scale * x) along len; in place ok */
void ss_softmax(ss_backend *be, float *y, const float *x, int rows, int len, float scale);
/* Fused multi-head attention (ss_attn_desc in ops.h: q [nq, ldq], k [nk, ldk],
 * v [nk, ldv] -> o [nq, ldo] per item, head h in columns [h*hd, (h+1)*hd),
 * d->batch items stride_* apart): ss_attention_fused says whether the backend
 * runs d as one pass; ss_attention may only be called where it does
 * (elsewhere it records an internal error), the caller composing ss_gemm +
 * ss_softmax + ss_gemm otherwise.  A batched d runs as one pass where the
 * backend has attention_batched, else item by item.  o must not overlap q, k
 * or v; columns of o outside the heads' are left alone.  A rotary embedding
 * is ss_rope on q and k first. */
int ss_attention_fused(const ss_backend *be, const ss_attn_desc *d);
void ss_attention(ss_backend *be, const ss_attn_desc *d, const float *q, const float *k, const float *v, float *o);
/* One GRU layer over a sequence (ss_gru_desc in ops.h: nn.GRU, batch_first,
 * one layer, one direction, gates r, z, n): x [batch, seq, in] -> y [batch,
 * seq, hidden]; h [batch, hidden] is the initial state on entry and the final
 * state on return, so a long sequence runs in pieces, the state carried from
 * one call to the next (the CPU gives the same bits as in one call; other
 * backends within their tolerance).  b_ih, b_hh may be NULL (zero).  scratch:
 * ss_gru_scratch(d) floats of device memory, clobbered.  y may be x (when
 * in == hidden); h, y and scratch must not overlap each other or the inputs
 * otherwise.  A shape with batch, in or hidden below 1 (or seq below 0) records
 * an internal error; seq 0 leaves h alone. */
void ss_gru(ss_backend *be, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
            const float *b_ih, const float *b_hh, float *h, float *y, float *scratch);
/* x [batch, rows, cols] -> y [batch, cols, rows]; not in place */
void ss_transpose(ss_backend *be, float *y, const float *x, int batch, int rows, int cols);
/* x, y [batch, ch, len]: GroupNorm(groups) with affine gamma/beta [ch] (may be NULL); in place ok */
void ss_group_norm(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len,
                   int groups, const float *gamma, const float *beta, float eps);
/* y = gelu(group_norm(x + bias)), as the separate calls would give; bias [ch] (a
 * convolution's, added per channel) may be NULL; in place ok */
void ss_group_norm_gelu(ss_backend *be, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                        int groups, const float *gamma, const float *beta, float eps);
/* ---- named kernels: a model's own fusions (see `kernel` in the vtable) ----------
 * ss_backend_kernel: the entry points for `name`, or NULL where the backend has
 * none.  The model calls them with ss_backend_kernel_ctx(be) as the context
 * and, to keep the errors sticky and the profile complete, between
 *   ss_error *e = ss_kernel_begin(be);      NULL: a sticky error is set, skip the call
 *   if (e) { k->run(ctx, ..., e); ss_kernel_end(be, "name"); }
 * (the kernel records its failure in e, as an op does; `name` a string literal). */
const void *ss_backend_kernel(const ss_backend *be, const char *name);
void *ss_backend_kernel_ctx(const ss_backend *be);
ss_error *ss_kernel_begin(ss_backend *be);
void ss_kernel_end(ss_backend *be, const char *name);
/* Lanes: a backend may run the ops issued between SS_LANE_FORK and the next
 * SS_LANE_BACK / SS_LANE_JOIN (lane 1) at the same time as those issued on
 * lane 0 after SS_LANE_BACK and before SS_LANE_JOIN, so the two sets must not
 * touch the same buffers (reading what both only read is fine); after
 * SS_LANE_JOIN everything is ordered again.  Each lane has its own scratch.
 * Where the backend has no lanes these calls do nothing and the ops run in
 * the order they are issued (the results are the same). */
void ss_lane(ss_backend *be, ss_lane_op op);
/* y [batch, ch, len] = gelu(x + bias) with bias [ch] (a convolution's; NULL: plain
 * GELU), as ss_channel_affine and ss_gelu would give; in place ok */
void ss_bias_gelu(ss_backend *be, float *y, const float *x, const float *bias, int batch, int ch, int64_t len);
/* y [batch, ch, len] = glu(x + bias) for x [batch, 2*ch, len] and bias [2*ch]
 * (NULL: plain GLU), as ss_channel_affine and ss_glu would give; x may be
 * overwritten (when the backend composes the two); y must not overlap x */
void ss_bias_glu(ss_backend *be, float *y, float *x, const float *bias, int batch, int ch, int64_t len);
/* x, y [batch, ch, len]: InstanceNorm (each (item, channel) row normalised over
 * len, biased variance) with affine gamma/beta [ch] (may be NULL), i.e.
 * ss_group_norm with one group per channel (the same op, the same bits); a
 * 2-D InstanceNorm is len = height * width; in place ok.  BatchNorm at
 * inference is ss_channel_affine with its statistics folded into scale and
 * bias at load. */
void ss_instance_norm(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len, const float *gamma,
                      const float *beta, float eps);
/* x, y [rows, dim]: RMSNorm over dim in the form `form` (ss_rms_form in ops.h)
 * with gain gamma [dim] (may be NULL: 1); in place ok */
void ss_rms_norm(ss_backend *be, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                 ss_rms_form form);
/* Rotary position embedding (RoFormer; rotary_embedding_torch's interleaved
 * pairs), the optional first step of attention on q and k:
 *   x, y [batch, seq, ld], head h in columns [h*hd, (h+1)*hd), hd even;
 *   cs [seq, hd/2, 2] = (cos, sin) of the angle of position p and pair i;
 *   for each pair (x0, x1) = x[b, p, h*hd + 2i .. +1]:
 *     y0 = x0 cos - x1 sin,  y1 = x1 cos + x0 sin.
 * Columns from heads*hd to ld are left alone.  In place ok (y == x). */
void ss_rope(ss_backend *be, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
             const float *cs);
/* x, y [rows, dim]: LayerNorm over dim with gamma/beta [dim] (may be NULL); in place ok */
void ss_layer_norm(ss_backend *be, float *y, const float *x, int rows, int dim,
                   const float *gamma, const float *beta, float eps);
/* C = alpha op(A) op(B) + beta C for each of d->batch items (ss_gemm_desc in ops.h:
 * row-major, pitches lda/ldb/ldc, item strides stride_a/b/c, `reduced` for the
 * products that may take tf32 inputs); C must not overlap A or B */
void ss_gemm(ss_backend *be, const ss_gemm_desc *d, const float *a, const float *b, float *c);
/* C [m, n] = alpha op(A) op(B) + beta C + 1 bias^T for gemm d with batch 1 and
 * bias [n]: a linear layer's product and bias (beta 1: added to C).  Backends
 * without the op store beta C + 1 bias^T first with the rank-1 product ones [m]
 * x bias (ones: m device floats of 1.0, used only then), then add the product;
 * CUDA adds the bias in its product's epilogue (the same sum, rounded in
 * another order). */
void ss_gemm_bias(ss_backend *be, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                  const float *ones, float *c);
/* x [batch, cin, h, w] * w [cout, cin, kh, kw] + bias [cout] (may be NULL) -> y
 * [batch, cout, oh, ow] (ss_conv2d_desc: strides, zero padding, dilation); the
 * 1-D convolution over length L is h == 1, kh == 1, w == L.  y must not overlap
 * x, w or bias. */
void ss_conv2d(ss_backend *be, const ss_conv2d_desc *d, const float *x, const float *w,
               const float *bias, float *y);
/* transposed convolution (PyTorch's, padding 0): x [batch, cin, h, w], w [cin,
 * cout, kh, kw], bias [cout] (may be NULL) -> y [batch, cout, (h-1)*sh + kh,
 * (w-1)*sw + kw] (ss_convt2d_desc); 1-D is h == 1, kh == 1.  y must not overlap
 * x, w or bias. */
void ss_conv_transpose2d(ss_backend *be, const ss_convt2d_desc *d, const float *x, const float *w,
                         const float *bias, float *y);
/* y [batch, cout, c->oh, c->ow] = the window c of ss_conv_transpose2d(d, x, w,
 * bias), GELU'd when c->gelu, as the convolution into tmp [batch, cout, full
 * height, full width], a copy of the window and ss_gelu would give (the crop
 * and activation of a decoder layer); tmp is scratch a backend with the fused
 * op may leave untouched.  A window outside the output is an internal error. */
void ss_conv_transpose2d_crop(ss_backend *be, const ss_convt2d_desc *d, const ss_convt_crop *c, const float *x,
                              const float *w, const float *bias, float *tmp, float *y);
/* Strided copy: dst[i0,i1,i2,i3] = src[i0,i1,i2,i3] over shape[4], element strides
 * per dimension for each side (permutations, crops, pads in one call); a negative
 * stride walks backwards from the pointer (reversals, e.g. reflect padding).  The
 * two must not overlap.  Elements of dst outside the pattern are kept. */
void ss_copy4d(ss_backend *be, float *dst, const int64_t dstride[4], const float *src, const int64_t sstride[4],
               const int64_t shape[4]);
/* STFT as torch.stft(center, reflect padding, periodic Hann window, normalized,
 * onesided) (ss_stft_desc in ops.h): x [batch, length] -> spec [batch, 2, n_fft/2
 * + 1, frames], real plane first; ss_istft is its inverse (torch.istft with the
 * same settings, windowed overlap-add divided by the window's squared
 * envelope) back to [batch, length].  Any hop (it need not divide n_fft);
 * length > n_fft / 2.  Not in place. */
void ss_stft(ss_backend *be, const ss_stft_desc *d, const float *x, float *spec);
void ss_istft(ss_backend *be, const ss_stft_desc *d, const float *spec, float *x);

#endif

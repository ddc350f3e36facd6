/* module.cu - the entry point of libstemsplit-cuda.so: ss_cuda_module(), its one exported symbol,
 * checks the backend API version and returns the vtable of the ops defined in the other files of
 * kernels/cuda/ (or NULL with a reason).  Also the backend's adapters of attention.cu's fused
 * attention and rotary embedding.
 */

#include "cuda_internal.h"

/* ---- fused attention and the rotary embedding (attention.cu) ---------------------------- */

/* Fused in both modes: on tensor cores where the two products may take tf32
 * inputs, else the strict-fp32 kernel. */
static int attn_tf32(const cuda_ctx *c, const ss_attn_desc *d)
{
    return compute_type(c->prec, d->reduced) != CUBLAS_COMPUTE_32F;
}

static int cu_attention_ok(void *vctx, const ss_attn_desc *d)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    return ss_cuda_attention_ok(d, attn_tf32(c, d));
}

static ss_status cu_attention(void *vctx, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                              float *o, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = ss_cuda_attention(c->stream, d, attn_tf32(c, d), q, k, v, o);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "attention");
}

static ss_status cu_rope(void *vctx, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                         const float *cs, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = ss_cuda_rope(c->stream, y, x, batch, seq, heads, hd, ld, cs);
    if (e == cudaErrorInvalidValue)
        return fail(err, SS_E_INTERNAL, "cuda: rope: %d heads of size %d in rows of %d (the size must be even)",
                    heads, hd, ld);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "rope");
}

/* ---- the vtable ---------------------------------------------------------------------- */

/* The models' fused kernels built into this module (models/kernels.h), first match wins. */
#define SS_KERNELS_CUDA(arch) const void *ss_kernels_cuda_##arch(const char *name);
#include "../../models/kernels.h"
#undef SS_KERNELS_CUDA

static const void *cu_kernel(void *vctx, const char *name)
{
    (void)vctx;
    const void *k = NULL;
#define SS_KERNELS_CUDA(arch)                \
    if (!k)                                  \
        k = ss_kernels_cuda_##arch(name);
#include "../../models/kernels.h"
#undef SS_KERNELS_CUDA
    return k;
}

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
    f->bias_gelu = cu_bias_gelu;
    f->bias_glu = cu_bias_glu;
    f->conv_transpose2d_crop = cu_conv_transpose2d_crop;
    f->gemm_bias = cu_gemm_bias;
    f->graph_begin = cu_graph_begin;
    f->graph_end = cu_graph_end;
    f->graph_launch = cu_graph_launch;
    f->graph_free = cu_graph_free;
    f->generation = cu_generation;
    f->lane = cu_lane;
    f->attention_ok = cu_attention_ok;
    f->attention = cu_attention;
    f->attention_batched = 1;
    f->mul = cu_mul;
    f->activate = cu_activate;
    f->rms_norm = cu_rms_norm;
    f->rope = cu_rope;
    f->gru = cu_gru;
    f->kernel = cu_kernel;
    if (why) *why = g_why;
    return f;
}

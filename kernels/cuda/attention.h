/* attention.h - the fused multi-head attention pass of the CUDA backend (kernels/cuda/attention.cu)
 * and the rotary position embedding applied to q and k before it.
 *
 * One kernel computes o_h = softmax(scale * q_h k_h^T) v_h for every head h of every batch item
 * (ss_attn_desc's layout: head h is columns [h*hd, (h+1)*hd) of q, k, v and o; items stride_q/k/v/o
 * floats apart) without storing the nq x nk scores: TF32 tensor-core products with fp32
 * accumulation and an fp32 online softmax, or (strict fp32) the same pass with fp32 fma products.
 */
#ifndef SS_CUDA_ATTENTION_H
#define SS_CUDA_ATTENTION_H

/* The two functions have C linkage wherever this header is included (cuda_internal.h includes it inside
 * its extern "C" block), so the declaration and attention.cu's definitions always agree. */
extern "C++" {
#include <cuda_runtime.h>
}

extern "C" {
#include "../../src/backend.h"

/* 1 when ss_cuda_attention runs d on the current device; tf32 = 1 when the two products may take tf32
 * inputs (the tensor-core kernel), 0 for strict fp32 (the FP32-core kernel).  0 for an empty or negative
 * shape, hd > 128, more than 65535 heads, a row pitch smaller than heads * hd, or a head size whose
 * shared memory the device cannot give one block (hd > 64 needs 138 KiB, 116 KiB in fp32).  Pointers and pitches need no
 * alignment: unaligned ones take a slower scalar load path. */
int ss_cuda_attention_ok(const ss_attn_desc *d, int tf32);

/* Queue the fused pass on stream s (q, k, v, o device pointers as in ss_attn_desc; o must not overlap
 * q, k or v), on tensor cores with tf32 inputs where tf32 = 1, else in strict fp32; returns
 * cudaGetLastError() of the launch, or cudaErrorInvalidValue where ss_cuda_attention_ok(d, tf32) is 0. */
cudaError_t ss_cuda_attention(cudaStream_t s, const ss_attn_desc *d, int tf32, const float *q, const float *k,
                              const float *v, float *o);

/* Queue ss_rope (src/backend.h: x, y [batch, seq, ld], heads of hd columns from column 0, cs [seq, hd/2, 2];
 * in place allowed, columns from heads * hd on left alone) on stream s; cudaErrorInvalidValue for an odd
 * or non-positive hd, a negative size or heads * hd > ld, else cudaGetLastError() of the launch. */
cudaError_t ss_cuda_rope(cudaStream_t s, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                         const float *cs);
}

#endif

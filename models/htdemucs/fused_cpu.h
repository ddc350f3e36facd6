/* fused_cpu.h - HTDemucs's fused kernels on the CPU (fused_cpu.c): the reference
 * implementations of models/htdemucs/fused.h, on host memory with a thread pool
 * (NULL: the calling thread).  The CPU backend finds them through
 * ss_kernels_cpu_htdemucs() (models/kernels.h); tests call them directly. */
#ifndef HT_FUSED_CPU_H
#define HT_FUSED_CPU_H

#include <stdint.h>

#include "../../src/error.h"
#include "../../src/threadpool.h"

/* x [batch, ch, len] += glu(group_norm(w h + bias)) ("htdemucs.conv1x1_gn_glu_add") without storing
 * w h: the statistics come from h's row means and centred products (h is hidden / (2 ch) of w h's
 * size), then column blocks of w h are made in cache once, for the apply.  For small hidden.
 * rows > 1: item b of h [batch, hidden, len] is row b % rows of x [batch / rows, ch, rows, len]
 * (a frequency layer's DConv on the layout the model keeps); rows must divide batch. */
ss_status ht_cpu_conv1x1_gn_glu_add(ss_pool *p, float *x, int rows, const float *h, const float *w,
                                    const float *bias, int batch, int ch, int hidden, int64_t len,
                                    const float *gamma, const float *beta, float eps);
/* out [batch, ch, len] = glu(w x + bias) for the 1x1 convolution w [2ch, cin] ("htdemucs.conv1x1_glu")
 * without storing w x: column blocks of it are made in cache and go straight through the GLU (the
 * bias and GLU as ss_cpu_bias_glu; the product's rounding may differ from ss_cpu_conv2d's, whose
 * sgemm calls have other shapes). */
ss_status ht_cpu_conv1x1_glu(ss_pool *p, float *out, const float *x, const float *w, const float *bias, int batch,
                             int cin, int ch, int64_t len);

/* The CPU backend's table (models/kernels.h): the entry points for `name`, or NULL. */
const void *ss_kernels_cpu_htdemucs(const char *name);

#endif

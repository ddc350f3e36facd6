/* ss_metal_kernels.h - the table of Metal kernels (X-macro), shared by the
 * host code (pipeline names, buffer counts) and the emulator (trampolines).
 *   X(ID, function, buffers, cooperative)
 * buffers: device pointers at [[buffer(0 .. buffers-1)]]; the params block
 * follows at [[buffer(buffers)]].  cooperative: the kernel uses threadgroup
 * memory with barriers or simdgroup functions, so the emulator must run the
 * threads of a threadgroup as cooperative fibers. */
#ifndef SS_METAL_KERNELS_H
#define SS_METAL_KERNELS_H

#define SS_MTL_KERNELS(X)                       \
    X(FILL, ss_fill, 1, 0)                      \
    X(COPY2D, ss_copy2d, 2, 0)                  \
    X(COPY4D, ss_copy4d, 2, 0)                  \
    X(ADD, ss_add, 3, 0)                        \
    X(SCALE, ss_scale, 2, 0)                    \
    X(CHANNEL_AFFINE, ss_channel_affine, 4, 0)  \
    X(ROW_AFFINE, ss_row_affine, 4, 0)          \
    X(GELU, ss_gelu, 2, 0)                      \
    X(GLU, ss_glu, 2, 0)                        \
    X(TRANSPOSE, ss_transpose, 2, 1)            \
    X(ROW_MOMENTS, ss_row_moments, 3, 1)        \
    X(SOFTMAX, ss_softmax, 2, 1)                \
    X(LAYER_NORM, ss_layer_norm, 4, 1)          \
    X(GN_PARTIAL, ss_gn_partial, 3, 1)          \
    X(GN_FINALIZE, ss_gn_finalize, 2, 1)        \
    X(GN_APPLY, ss_gn_apply, 5, 0)              \
    X(GEMM, ss_gemm, 3, 1)                      \
    X(BIAS_FILL, ss_bias_fill, 2, 0)            \
    X(IM2COL, ss_im2col, 2, 0)                  \
    X(COL2IM, ss_col2im, 2, 0)                  \
    X(MUL, ss_mul, 3, 0)                        \
    X(ACTIVATE, ss_activate, 2, 0)              \
    X(RMS_NORM, ss_rms_norm, 3, 1)              \
    X(ROPE, ss_rope, 3, 0)                      \
    X(GRU_STEP, ss_gru_step, 6, 1)

enum ss_mtl_kernel_id {
#define SS_MTL_ENUM_(id, fn, nb, coop) SS_K_##id,
    SS_MTL_KERNELS(SS_MTL_ENUM_)
#undef SS_MTL_ENUM_
    SS_K_COUNT
};

/* Threads per threadgroup of the reductions and of the gemm tile. */
#define SS_MTL_RED_THREADS 256
#define SS_MTL_GEMM_TILE 32      /* output tile: 32 x 32                 */
#define SS_MTL_GEMM_BK 16        /* k per step                           */
#define SS_MTL_GEMM_THREADS 8    /* 8 x 8 threads, 4 x 4 outputs each    */
#define SS_MTL_TR_TILE 16        /* transpose tile, 16 x 16 threads      */
#define SS_MTL_EW_THREADS 256    /* elementwise threadgroup              */

#endif

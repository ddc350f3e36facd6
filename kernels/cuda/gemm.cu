/* gemm.cu - the CUDA backend's matrix products: row-major (batched, strided) products through
 * cuBLAS GemmEx in the compute type that --precision and ss_gemm_desc.reduced choose (fp32, or tf32,
 * bf16 or fp16 inputs, always with fp32 accumulation); gemm_bias through cuBLASLt with a bias
 * epilogue where it can, else the bias written first and the product added onto it.  Also
 * cuBLAS's first use, made on a thread of its own while the model loads (warm_start, warm_join).
 */

#include "cuda_internal.h"

/* ---- matrix products ---------------------------------------------------------------- */

/* The compute type of a product: `reduced` products (ss_gemm_desc.reduced) take
 * tf32 under --precision mixed; convolutions and unmarked products stay fp32. */
cublasComputeType_t compute_type(ss_precision p, int reduced)
{
    switch (p) {
    case SS_PREC_MIXED: return reduced ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    case SS_PREC_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case SS_PREC_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case SS_PREC_FP16: return CUBLAS_COMPUTE_32F_FAST_16F;
    default: return CUBLAS_COMPUTE_32F;
    }
}

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, batched with element strides,
 * on cuBLAS handle h in compute type ct (gemm_rm's product; the warm-up's). */
static cublasStatus_t gemm_rm_on(cublasHandle_t h, cublasComputeType_t ct, int ta, int tb, int m, int n, int k,
                                 float alpha, const float *a, int lda, int64_t sa, const float *b, int ldb, int64_t sb,
                                 float beta, float *cc, int ldc, int64_t sc, int batch)
{
    /* column-major: C^T [n, m] = op(B)^T [n, k] op(A)^T [k, m] */
    return cublasGemmStridedBatchedEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                                      &alpha, b, CUDA_R_32F, ldb, sb, a, CUDA_R_32F, lda, sa, &beta, cc, CUDA_R_32F,
                                      ldc, sc, batch, ct, CUBLAS_GEMM_DEFAULT);
}

/* Row-major C[m,n] = alpha op(A) op(B) + beta C, batched with element strides. */
ss_status gemm_rm(cuda_ctx *c, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  int64_t sa, const float *b, int ldb, int64_t sb, float beta, float *cc, int ldc, int64_t sc,
                  int batch, int reduced, ss_error *err)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return SS_OK;
    warm_join(c);
    cublasStatus_t st = gemm_rm_on(c->blas, compute_type(c->prec, reduced), ta, tb, m, n, k, alpha, a, lda, sa, b,
                                   ldb, sb, beta, cc, ldc, sc, batch);
    if (st != CUBLAS_STATUS_SUCCESS)
        return fail(err, st == CUBLAS_STATUS_ALLOC_FAILED ? SS_E_DEVICE : SS_E_INTERNAL,
                    "cuda: cuBLAS gemm %dx%dx%d (batch %d) failed: %s", m, n, k, batch, cublasGetStatusString(st));
    return SS_OK;
}

ss_status cu_gemm(void *vctx, const ss_gemm_desc *d, const float *a, const float *b, float *cc, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->k <= 0) {
        /* C = beta C */
        if (d->m <= 0 || d->n <= 0) return SS_OK;
        for (int i = 0; i < d->batch; i++) {
            float *ci = cc + (d->batch > 1 ? i * d->stride_c : 0);
            if (d->beta == 0.0f) {
                cudaMemset2DAsync(ci, (size_t)d->ldc * 4, 0, (size_t)d->n * 4, (size_t)d->m, c->stream);
            } else {
                for (int r = 0; r < d->m; r++)
                    LAUNCH(k_scale, (size_t)d->n, ci + (size_t)r * d->ldc, ci + (size_t)r * d->ldc, d->beta,
                           (size_t)d->n);
            }
        }
        CK_LAUNCH(c, err, "gemm");
        return SS_OK;
    }
    int64_t sa = d->batch > 1 ? d->stride_a : 0, sb = d->batch > 1 ? d->stride_b : 0,
            sc = d->batch > 1 ? d->stride_c : 0;
    return gemm_rm(c, d->trans_a, d->trans_b, d->m, d->n, d->k, d->alpha, a, d->lda, sa, b, d->ldb, sb, d->beta, cc,
                   d->ldc, sc, d->batch, d->reduced, err);
}

/* c [m, n] (pitch ldc) = beta c + bias (a row per row; beta 0: c not read),
 * as the rank-1 product ones x bias^T with that beta stores it. */
__global__ void k_bias_rows(float *c, int ldc, const float *bias, int n, float beta)
{
    float *row = c + (size_t)blockIdx.x * (size_t)ldc;
    ROW_LOOP(j, n) row[j] = beta != 0.0f ? beta * row[j] + bias[j] : bias[j];
}

/* gemm d (batch 1) + bias as one cuBLASLt product with a bias epilogue: D =
 * alpha op(A) op(B) + beta C + bias, no pass of its own and no read of C for
 * the bias (column-major as gemm_rm: D^T [n, m], the bias along its n rows), on
 * handle lt in compute type ct with workspace ws on stream s (gemm_lt_bias's
 * product; the warm-up's).  Returns whether cuBLASLt had an algorithm for it
 * (*st: the first failure, CUBLAS_STATUS_SUCCESS if none). */
static int lt_bias_on(cublasLtHandle_t lt, cublasComputeType_t ct, const ss_gemm_desc *d, const float *a,
                      const float *b, const float *bias, float *cc, void *ws, size_t ws_bytes, cudaStream_t s,
                      cublasStatus_t *st_out)
{
    cublasLtMatmulDesc_t md = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasOperation_t ta = d->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = d->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasStatus_t st = cublasLtMatmulDescCreate(&md, ct, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(md, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, d->trans_b ? d->k : d->n, d->trans_b ? d->n : d->k, d->ldb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, d->trans_a ? d->m : d->k, d->trans_a ? d->k : d->m, d->lda);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, d->n, d->m, d->ldc);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                  sizeof ws_bytes);
    if (st == CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulAlgoGetHeuristic(lt, md, la, lb, lc, lc, pref, 1, &res, &found) != CUBLAS_STATUS_SUCCESS)
        found = 0;
    if (st == CUBLAS_STATUS_SUCCESS && found > 0)
        st = cublasLtMatmul(lt, md, &d->alpha, b, la, a, lb, &d->beta, cc, lc, cc, lc, &res.algo, ws, ws_bytes, s);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (md) cublasLtMatmulDescDestroy(md);
    *st_out = st;
    return found > 0;
}

/* gemm_lt_bias: lt_bias_on with the backend's handle, workspace and stream.
 * Returns 0 where cuBLASLt has no algorithm for it (the caller stores the bias
 * first instead), -1 with err set on a failure. */
static int gemm_lt_bias(cuda_ctx *c, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                        float *cc, ss_error *err)
{
    warm_join(c);
    cublasStatus_t st;
    int found = lt_bias_on(c->lt, compute_type(c->prec, d->reduced), d, a, b, bias, cc, c->blas_ws, BLAS_WS_BYTES,
                           c->stream, &st);
    if (st != CUBLAS_STATUS_SUCCESS) {
        fail(err, st == CUBLAS_STATUS_ALLOC_FAILED ? SS_E_DEVICE : SS_E_INTERNAL,
             "cuda: cuBLASLt product %dx%dx%d with a bias failed: %s", d->m, d->n, d->k, cublasGetStatusString(st));
        return -1;
    }
    return found;
}

/* gemm d with a bias row: one cuBLASLt product, or the bias stored first (one
 * pass instead of a rank-1 product) where cuBLASLt has nothing for it. */
ss_status cu_gemm_bias(void *vctx, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                       float *cc, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (d->m <= 0 || d->n <= 0)
        return SS_OK;
    if (c->lt && d->k > 0) {
        int r = gemm_lt_bias(c, d, a, b, bias, cc, err);
        if (r != 0)
            return r > 0 ? SS_OK : err->code;
    }
    LAUNCH_ROWS(k_bias_rows, (size_t)d->m, d->n, cc, d->ldc, bias, d->n, d->beta);
    CK_LAUNCH(c, err, "gemm_bias");
    ss_gemm_desc p = *d;
    p.beta = 1.0f;
    return cu_gemm(vctx, &p, a, b, cc, err);
}

/* ---- cuBLAS's first use, beside the model load --------------------------------------- */

/* A process's first cuBLAS product pays the library's one-time start: 102-162
 * ms on an H100 whether it is a GemmEx or a cuBLASLt call, and the first
 * product of another kind (strided-batched over many matrices, cuBLASLt with a
 * bias epilogue) 15-17 ms more, the device idle meanwhile (measured in
 * standalone programs and cold runs: docs/performance-log.md).
 * cu_init therefore makes such products on a thread of its own, with a handle,
 * a stream and buffers of its own, while the caller goes on (reading and
 * uploading the model's weights, opening the first file); the backend's first
 * product or recording waits for it (warm_join).  It shares nothing with the
 * backend's state but the device; its errors are ignored (the products then
 * pay the start themselves). */
enum { WARM_M = 256, WARM_N = 1024, WARM_K = 256, WARM_B = 16, WARM_S = 64 };

static void warm_products(cublasHandle_t h, cublasLtHandle_t lt, cublasComputeType_t ct, float *buf, void *ws,
                          size_t ws_bytes, cudaStream_t s)
{
    float *a = buf, *b = a + WARM_M * WARM_K, *cc = b + WARM_K * WARM_N, *bias = cc + WARM_M * WARM_N;
    const int64_t S2 = WARM_S * WARM_S;
    /* one product and one over WARM_B matrices (the shapes of convolutions and of
     * the Winograd products), as gemm_rm makes them */
    gemm_rm_on(h, ct, 0, 0, WARM_M, WARM_N, WARM_K, 1.0f, a, WARM_K, 0, b, WARM_N, 0, 0.0f, cc, WARM_N, 0, 1);
    gemm_rm_on(h, ct, 0, 0, WARM_S, WARM_S, WARM_S, 1.0f, a, WARM_S, S2, b, WARM_S, S2, 0.0f, cc, WARM_S, S2, WARM_B);
    if (!lt)
        return;
    /* a product with a bias epilogue, as gemm_lt_bias makes it */
    ss_gemm_desc d = {0, 0, WARM_M, WARM_N, WARM_K, 1.0f, 0.0f, WARM_K, WARM_N, WARM_N, 1, 0, 0, 0, 0};
    cublasStatus_t st;
    lt_bias_on(lt, ct, &d, a, b, bias, cc, ws, ws_bytes, s, &st);
}

static void *warm_main(void *arg)
{
    const cuda_ctx *c = (const cuda_ctx *)arg;     /* device and prec: set before the thread starts */
    const size_t floats = (size_t)WARM_M * WARM_K + (size_t)WARM_K * WARM_N + (size_t)WARM_M * WARM_N + WARM_N;
    const size_t ws_bytes = (size_t)4 << 20;
    cudaStream_t s = NULL;
    cublasHandle_t h = NULL;
    cublasLtHandle_t lt = NULL;
    float *buf = NULL;
    void *ws = NULL;
    cudaStream_t s0 = NULL;
    cublasHandle_t h0 = NULL;
    /* each handle kept only once it was made, so that the end releases what exists */
    if (cudaSetDevice(c->device) == cudaSuccess && cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking) == cudaSuccess)
        s = s0;
    if (s && cudaMalloc((void **)&buf, sizeof(float) * floats) != cudaSuccess)
        buf = NULL;
    if (buf && cudaMalloc(&ws, ws_bytes) != cudaSuccess)
        ws = NULL;
    if (ws && cublasCreate(&h0) == CUBLAS_STATUS_SUCCESS)
        h = h0;
    if (h && cudaMemsetAsync(buf, 0, sizeof(float) * floats, s) == cudaSuccess &&
        cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS &&
        cublasSetWorkspace(h, ws, ws_bytes) == CUBLAS_STATUS_SUCCESS) {
        cublasLtHandle_t lt0 = NULL;
        if (cublasLtCreate(&lt0) == CUBLAS_STATUS_SUCCESS)
            lt = lt0;
        cublasComputeType_t fp32 = compute_type(SS_PREC_FP32, 0), red = compute_type(c->prec, 1);
        warm_products(h, lt, fp32, buf, ws, ws_bytes, s);
        if (red != fp32)
            warm_products(h, lt, red, buf, ws, ws_bytes, s);
        cudaStreamSynchronize(s);
    }
    if (lt) cublasLtDestroy(lt);
    if (h) cublasDestroy(h);
    cudaFree(ws);
    cudaFree(buf);
    if (s) cudaStreamDestroy(s);
    cudaGetLastError();                              /* this thread's; nothing to report */
    return NULL;
}

void warm_start(cuda_ctx *c)
{
    c->warm_running = pthread_create(&c->warm, NULL, warm_main, c) == 0;
}

/* Before the backend's own products, recordings and release: the warm-up has ended. */
void warm_join(cuda_ctx *c)
{
    if (c->warm_running) {
        pthread_join(c->warm, NULL);
        c->warm_running = 0;
    }
}

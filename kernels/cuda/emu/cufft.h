/* cufft.h - the cuFFT API as far as the CUDA backend uses it (batched 1-D
 * real transforms), for the CUDA emulator (runtime.cpp: FFTW, unnormalised as
 * cuFFT). */
#ifndef SS_CUDA_EMU_CUFFT_H
#define SS_CUDA_EMU_CUFFT_H
#include "cuda_runtime.h"

typedef enum {
    CUFFT_SUCCESS = 0,
    CUFFT_INVALID_PLAN = 1,
    CUFFT_ALLOC_FAILED = 2,
    CUFFT_INVALID_VALUE = 4,
    CUFFT_INTERNAL_ERROR = 5,
    CUFFT_EXEC_FAILED = 6,
    CUFFT_INVALID_SIZE = 8
} cufftResult;
typedef enum { CUFFT_R2C = 0x2a, CUFFT_C2R = 0x2c, CUFFT_C2C = 0x29 } cufftType;
typedef int cufftHandle;
typedef float2 cufftComplex;
typedef float cufftReal;

cufftResult cufftPlan1d(cufftHandle *plan, int n, cufftType type, int batch);
cufftResult cufftSetStream(cufftHandle plan, cudaStream_t s);
cufftResult cufftDestroy(cufftHandle plan);
cufftResult cufftExecR2C(cufftHandle plan, cufftReal *in, cufftComplex *out);
cufftResult cufftExecC2R(cufftHandle plan, cufftComplex *in, cufftReal *out);
#endif

/* kernels.h - the models' fused kernels per backend: one line per architecture and
 * backend that has some, SS_KERNELS_<BACKEND>(arch) for the lookup
 *   const void *ss_kernels_<backend>_<arch>(const char *name)
 * that models/<arch>/ defines (fused_cpu.c, fused_cuda.cu, ...).  A backend's
 * `kernel` slot (src/backend.h) includes this list with its own macro defined
 * and asks each lookup in turn; the macros it leaves undefined expand to
 * nothing here.  Names and contracts: models/<arch>/fused.h. */
#ifndef SS_KERNELS_CPU
#define SS_KERNELS_CPU(arch)
#define SS_KERNELS_CPU_UNSET_
#endif
#ifndef SS_KERNELS_CUDA
#define SS_KERNELS_CUDA(arch)
#define SS_KERNELS_CUDA_UNSET_
#endif

SS_KERNELS_CPU(htdemucs)
SS_KERNELS_CUDA(htdemucs)

#ifdef SS_KERNELS_CPU_UNSET_
#undef SS_KERNELS_CPU
#undef SS_KERNELS_CPU_UNSET_
#endif
#ifdef SS_KERNELS_CUDA_UNSET_
#undef SS_KERNELS_CUDA
#undef SS_KERNELS_CUDA_UNSET_
#endif

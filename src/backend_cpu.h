/* backend_cpu.h - facts about the CPU backend's BLAS, its start-up check and clean-up. */
#ifndef SS_BACKEND_CPU_H
#define SS_BACKEND_CPU_H

#include <stddef.h>

#include "threadpool.h"

/* OpenBLAS picks its kernels for the CPU when the library loads; a CPU newer
 * than the library (e.g. Debian 12's 0.3.21 on Emerald Rapids) gets its
 * generic "Prescott" kernels, several times slower.  Call this first thing in
 * main(): if that happened on a CPU with AVX2 or AVX-512 and the user did not
 * choose with OPENBLAS_CORETYPE, it sets OPENBLAS_CORETYPE to the matching
 * kernel family and re-executes the program once (before any input is read).
 * Returns only when nothing needs doing or the re-exec failed. */
void ss_cpu_blas_preflight(char **argv);

/* Release what the CPU kernels cache across runs (FFT plans and windows);
 * call once at exit, after every backend is closed. */
void ss_cpu_backend_cleanup(void);

/* "OpenBLAS 0.3.21 (SkylakeX kernels)" or similar, for -v. */
void ss_cpu_blas_describe(char *out, size_t size);

/* The thread pool of a CPU backend context (the `ctx` a CPU kernel gets), for
 * the models' fused kernels on the CPU (models/<arch>/fused_cpu.c). */
ss_pool *ss_cpu_backend_pool(void *ctx);

#endif

/* emu.h - a grid emulator for the Metal kernels (C API; C++17 inside).
 *
 * ss_emu_run() runs a dispatch of groups[0..2] threadgroups of tg[0..2]
 * threads, as dispatchThreadgroups:threadsPerThreadgroup: does.  A kernel
 * that is not cooperative runs its threads one after another.  A cooperative
 * kernel (threadgroup memory + barriers, simdgroup functions) runs the
 * threads of a threadgroup as fibers on one OS thread: a thread runs until
 * it reaches threadgroup_barrier() or a simd_* function, and the scheduler
 * releases a barrier only when every thread of the threadgroup waits at it,
 * and a simdgroup function when every live thread of the simdgroup has
 * called it.  So threadgroup memory and barriers behave as on a GPU, and a
 * barrier that only some threads reach, or a deadlock, is reported as an
 * error instead of passing silently.  Threadgroups are spread over up to
 * `max_threads` OS threads (each with its own threadgroup memory).
 */
#ifndef SS_METAL_EMU_H
#define SS_METAL_EMU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ss_emu_ids {
    unsigned gid[3], lid[3], tgp[3], tgs[3], ngrp[3];
    unsigned sl, sg;            /* index in simdgroup (32 wide), simdgroup index */
} ss_emu_ids;

typedef void (*ss_emu_fn)(void *const *bufs, const void *params, const ss_emu_ids *ids);

enum { SS_EMU_SIMD_SUM = 0, SS_EMU_SIMD_MAX = 1, SS_EMU_SIMD_MIN = 2, SS_EMU_SIMD_GATHER = 3 };

/* 0 on success; -1 with a reason in why (a kernel error the emulator caught). */
int ss_emu_run(ss_emu_fn fn, void *const *bufs, const void *params, const unsigned groups[3],
               const unsigned tg[3], int cooperative, int max_threads, char *why, size_t why_size);

/* called by the kernels through msl_shim.hpp */
void ss_emu_barrier(void);
float ss_emu_simd(int op, float v);
/* simdgroup exchange (the CUDA emulator's warp shuffles and mma): every live
 * lane of the simdgroup posts `bytes` (<= 64) from `in`; returns the
 * simdgroup's posts, lane i's at +64 i, valid until this lane's next simd call */
const void *ss_emu_simd_gather(const void *in, size_t bytes);

typedef struct ss_emu_stats {
    long long dispatches, threadgroups, threads, barriers, simd_ops;
} ss_emu_stats;
void ss_emu_get_stats(ss_emu_stats *out);

/* kernels_emu.cpp: the emulated kernel with id SS_K_* (ss_metal_kernels.h) */
ss_emu_fn ss_emu_kernel(int id, int *cooperative, const char **name, int *nbufs);

#ifdef __cplusplus
}
#endif

#endif

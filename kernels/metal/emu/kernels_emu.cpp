// kernels_emu.cpp - the Metal kernels of kernels/metal/*.metal compiled as
// C++17 through msl_shim.hpp, with one trampoline per kernel that the grid
// emulator calls once per thread.
#include "msl_shim.hpp"

#include "../ss_metal_params.h"
#include "../ss_metal_kernels.h"

#include "../common.metal"
#include "../elementwise.metal"
#include "../reduce.metal"
#include "../gemm.metal"
#include "../conv.metal"

#undef kernel
#undef device
#undef thread
#undef constant
#undef threadgroup

namespace {

#define SS_B1(b) (float *)(b)[0]
#define SS_B2(b) SS_B1(b), (float *)(b)[1]
#define SS_B3(b) SS_B2(b), (float *)(b)[2]
#define SS_B4(b) SS_B3(b), (float *)(b)[3]
#define SS_B5(b) SS_B4(b), (float *)(b)[4]
#define SS_B6(b) SS_B5(b), (float *)(b)[5]

inline uint3 u3(const unsigned v[3]) { return uint3(v[0], v[1], v[2]); }

#define SS_TRAMPOLINE_(id, fn, nb, coop)                                                   \
    void tramp_##fn(void *const *b, const void *p, const ss_emu_ids *t)                   \
    {                                                                                      \
        fn(SS_B##nb(b), *(const ss_mtl_params *)p, u3(t->gid), u3(t->lid), u3(t->tgp),     \
           u3(t->tgs), u3(t->ngrp), t->sl, t->sg);                                         \
    }
SS_MTL_KERNELS(SS_TRAMPOLINE_)

struct Entry {
    ss_emu_fn fn;
    int coop;
    const char *name;
    int nbufs;
};

#define SS_ENTRY_(id, fn, nb, coop) {tramp_##fn, coop, #fn, nb},
const Entry table[SS_K_COUNT] = {SS_MTL_KERNELS(SS_ENTRY_)};

}  // namespace

extern "C" ss_emu_fn ss_emu_kernel(int id, int *cooperative, const char **name, int *nbufs)
{
    if (id < 0 || id >= SS_K_COUNT)
        return nullptr;
    if (cooperative)
        *cooperative = table[id].coop;
    if (name)
        *name = table[id].name;
    if (nbufs)
        *nbufs = table[id].nbufs;
    return table[id].fn;
}

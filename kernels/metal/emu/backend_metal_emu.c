/* backend_metal_emu.c - a backend whose ops are the Metal kernels run by the
 * grid emulator (emu.h), for the tests only (never part of the CLI).
 *
 * It registers as "mps" in test binaries that compile src/backend.c with
 * -DSS_WITH_METAL -Dss_backend_metal=ss_backend_metal_emu, so the model code
 * runs unchanged through ss_backend_open("mps").  Memory is host memory, like
 * the MTLStorageModeShared buffers of the real backend; the ops are the very
 * op code of the real backend (metal_ops.c).  Every dispatch checks that each
 * buffer argument points into a live allocation (the real backend must turn
 * each pointer into an MTLBuffer + offset).
 *
 * STEMSPLIT_METAL_EMU_COL (floats) sets the convolutions' column budget, so
 * the tests can force the blocked code paths. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../metal_ops.h"
#include "emu.h"

typedef struct emu_alloc {
    char *p;
    size_t bytes;
} emu_alloc;

typedef struct emu_ctx {
    ss_mtl_rt rt;                /* first: the ops cast ctx to it   */
    float *scratch[2];
    size_t scratch_n[2];
    emu_alloc *allocs;
    size_t n_allocs, cap_allocs;
    pthread_mutex_t mu;
    int threads;
    ss_precision prec;
} emu_ctx;

static int emu_owns(emu_ctx *c, const void *p)
{
    const char *q = p;
    for (int s = 0; s < 2; s++)
        if (c->scratch[s] && q >= (const char *)c->scratch[s] && q < (const char *)(c->scratch[s] + c->scratch_n[s]))
            return 1;
    pthread_mutex_lock(&c->mu);
    int ok = 0;
    for (size_t i = 0; i < c->n_allocs && !ok; i++)
        ok = q >= c->allocs[i].p && q < c->allocs[i].p + (c->allocs[i].bytes ? c->allocs[i].bytes : 1);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static ss_status emu_dispatch(ss_mtl_rt *rt, int k, void *const *bufs, const ss_mtl_params *p,
                              const unsigned groups[3], const unsigned tg[3], ss_error *err)
{
    emu_ctx *c = (emu_ctx *)rt;
    int coop = 0, nb = 0;
    const char *name = "?";
    ss_emu_fn fn = ss_emu_kernel(k, &coop, &name, &nb);
    if (!fn)
        return ss_fail(err, SS_E_INTERNAL, "metal-emu: no kernel %d", k);
    for (int i = 0; i < nb; i++)
        if (!bufs[i] || !emu_owns(c, bufs[i]))
            return ss_fail(err, SS_E_INTERNAL, "metal-emu %s: buffer %d (%p) is not in any allocation", name, i,
                           bufs[i]);
    char why[300];
    if (ss_emu_run(fn, bufs, p, groups, tg, coop, c->threads, why, sizeof why) != 0)
        return ss_fail(err, SS_E_INTERNAL, "metal-emu %s: %s", name, why);
    return SS_OK;
}

static float *emu_scratch(ss_mtl_rt *rt, int slot, size_t n, ss_error *err)
{
    emu_ctx *c = (emu_ctx *)rt;
    if (c->scratch_n[slot] < n) {
        free(c->scratch[slot]);
        c->scratch_n[slot] = 0;
        c->scratch[slot] = malloc(n * sizeof(float));
        if (!c->scratch[slot]) {
            ss_fail(err, SS_E_NOMEM, "metal-emu: out of memory for %zu scratch floats", n);
            return NULL;
        }
        c->scratch_n[slot] = n;
    }
    return c->scratch[slot];
}

static ss_status emu_finish(ss_mtl_rt *rt, ss_error *err)
{
    (void)rt;
    (void)err;
    return SS_OK;                  /* dispatches are synchronous */
}

static int emu_count(void) { return 1; }

static ss_status emu_info(int index, ss_device_info *out)
{
    if (index != 0)
        return SS_E_DEVICE;
    memset(out, 0, sizeof *out);
    snprintf(out->backend, sizeof out->backend, "mps");
    snprintf(out->name, sizeof out->name, "Metal kernels on the grid emulator (tests only)");
    out->usable = 1;
    snprintf(out->note, sizeof out->note, "emulated Apple GPU, fp32; on the CPU: %s", SS_MTL_CPU_OPS);
    return SS_OK;
}

static ss_status emu_init(const ss_backend_params *bp, void **ctx, ss_error *err)
{
    emu_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return ss_fail(err, SS_E_NOMEM, "metal-emu: out of memory");
    c->threads = bp->threads > 0 ? bp->threads : ss_cpu_count();
    c->rt.pool = ss_pool_new(c->threads);
    if (!c->rt.pool) {
        free(c);
        return ss_fail(err, SS_E_NOMEM, "metal-emu: cannot start threads");
    }
    pthread_mutex_init(&c->mu, NULL);
    c->rt.dispatch = emu_dispatch;
    c->rt.scratch = emu_scratch;
    c->rt.finish = emu_finish;
    c->prec = bp->precision == SS_PREC_FP16 || bp->precision == SS_PREC_BF16 ? bp->precision : SS_PREC_FP32;
    c->rt.prec = c->prec == SS_PREC_FP16 ? 1 : c->prec == SS_PREC_BF16 ? 2 : 0;
    const char *e = getenv("STEMSPLIT_METAL_EMU_COL");
    c->rt.col_floats = e && atol(e) > 0 ? (size_t)atol(e) : (size_t)1 << 20;
    *ctx = c;
    return SS_OK;
}

static void emu_free(void *ctx)
{
    emu_ctx *c = ctx;
    if (!c)
        return;
    for (int s = 0; s < 2; s++)
        free(c->scratch[s]);
    for (size_t i = 0; i < c->n_allocs; i++)
        free(c->allocs[i].p);
    free(c->allocs);
    ss_pool_free(c->rt.pool);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static ss_precision emu_precision(void *ctx) { return ((emu_ctx *)ctx)->prec; }
static int emu_threads(void *ctx) { return ((emu_ctx *)ctx)->threads; }

static void *emu_alloc_fn(void *ctx, size_t bytes)
{
    emu_ctx *c = ctx;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0)
        return NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_allocs == c->cap_allocs) {
        size_t nc = c->cap_allocs ? 2 * c->cap_allocs : 64;
        emu_alloc *na = realloc(c->allocs, nc * sizeof *na);
        if (!na) {
            pthread_mutex_unlock(&c->mu);
            free(p);
            return NULL;
        }
        c->allocs = na;
        c->cap_allocs = nc;
    }
    c->allocs[c->n_allocs].p = p;
    c->allocs[c->n_allocs++].bytes = bytes;
    pthread_mutex_unlock(&c->mu);
    return p;
}

static void emu_release(void *ctx, void *ptr)
{
    emu_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n_allocs; i++)
        if (c->allocs[i].p == ptr) {
            c->allocs[i] = c->allocs[--c->n_allocs];
            break;
        }
    pthread_mutex_unlock(&c->mu);
    free(ptr);
}

static ss_status emu_copy(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    (void)ctx;
    (void)err;
    if (dst != src)
        memmove(dst, src, bytes);
    return SS_OK;
}

const ss_backend_iface ss_backend_metal_emu = {
    .api_version = SS_BACKEND_API_VERSION,
    .name = "mps",
    .device_count = emu_count,
    .device_info = emu_info,
    .init = emu_init,
    .free = emu_free,
    .precision = emu_precision,
    .threads = emu_threads,
    .host_memory = 1,
    .alloc = emu_alloc_fn,
    .release = emu_release,
    .upload = emu_copy,
    .download = emu_copy,
    SS_MTL_OP_SLOTS,
};

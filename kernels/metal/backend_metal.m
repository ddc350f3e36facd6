/* backend_metal.m - the Metal backend (--device mps), macOS only.
 *
 * Kernels: the MSL of kernels/metal/ *.metal, embedded as a string
 * (metal_source.h, made by embed.sh) and compiled at start-up with
 * newLibraryWithSource: (fast math off).  Ops: metal_ops.c, shared with the
 * grid emulator that `make check` runs on every platform; this file only
 * supplies the ss_mtl_rt interface: dispatch (one compute encoder per command
 * buffer, serial dispatches), scratch buffers and finish (commit + wait).
 *
 * Memory: MTLResourceStorageModeShared buffers; ss_alloc() returns their
 * contents pointer (host_memory = 1: Apple memory is unified, so upload and
 * download are memcpy after the GPU has finished, and STFT/iSTFT run on the
 * CPU on the same buffers).  A pointer is bound as (buffer, offset) by a
 * lookup in the allocation table.  Released buffers are kept for reuse by an
 * allocation of the same size (the model allocates the same sizes for every
 * chunk and file) up to a cap, and all freed with the backend.
 *
 * Precision: fp32 default; --precision fp16 rounds matmul inputs to fp16
 * (fp32 accumulation); bf16 needs macOS 14 (Metal 3.1 bfloat), else fp16.
 * Manual reference counting (no ARC): objects are released in metal_free.
 *
 * Status: written against the Metal API and type-checked on Linux against
 * tests/metal_stubs (clang -fsyntax-only); it has NOT run on Apple hardware.
 */
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metal_ops.h"
#include "metal_source.h"

#define SS_MTL_MIN_MACOS_MAJOR 11     /* simdgroup functions, Apple GPUs */
#define SS_MTL_CACHE_BUFFERS 64

typedef struct mtl_alloc {
    char *p;
    size_t bytes;
    id<MTLBuffer> buf;
} mtl_alloc;

typedef struct mtl_ctx {
    ss_mtl_rt rt;                            /* first: metal_ops.c casts ctx to it */
    id<MTLDevice> dev;
    id<MTLCommandQueue> queue;
    id<MTLComputePipelineState> pso[SS_K_COUNT];
    id<MTLCommandBuffer> cb;                 /* open command buffer, or nil        */
    id<MTLComputeCommandEncoder> enc;
    mtl_alloc *live;
    size_t n_live, cap_live;
    mtl_alloc cache[SS_MTL_CACHE_BUFFERS];   /* released, kept for reuse          */
    int n_cache;
    float *scratch[2];
    size_t scratch_n[2];
    ss_precision prec;
    int threads;
} mtl_ctx;

static const char *const kernel_names[SS_K_COUNT] = {
#define SS_MTL_NAME_(id, fn, nb, coop) #fn,
    SS_MTL_KERNELS(SS_MTL_NAME_)
#undef SS_MTL_NAME_
};

static int os_major(void)
{
    NSOperatingSystemVersion v = [[NSProcessInfo processInfo] operatingSystemVersion];
    return (int)v.majorVersion;
}

static NSArray *all_devices(void)
{
    NSArray *a = MTLCopyAllDevices();           /* retained: caller releases */
    if (a && [a count] > 0)
        return a;
    [a release];
    id<MTLDevice> d = MTLCreateSystemDefaultDevice();
    if (!d)
        return nil;
    NSArray *one = [[NSArray alloc] initWithObjects:d, nil];
    [d release];
    return one;
}

static int metal_count(void)
{
    @autoreleasepool {
        NSArray *a = all_devices();
        int n = a ? (int)[a count] : 0;
        [a release];
        return n;
    }
}

static ss_status metal_info(int index, ss_device_info *out)
{
    @autoreleasepool {
        NSArray *a = all_devices();
        if (!a || index < 0 || (NSUInteger)index >= [a count]) {
            [a release];
            return SS_E_DEVICE;
        }
        id<MTLDevice> d = [a objectAtIndex:(NSUInteger)index];
        memset(out, 0, sizeof *out);
        snprintf(out->backend, sizeof out->backend, "mps");
        out->index = index;
        snprintf(out->name, sizeof out->name, "%s", [[d name] UTF8String]);
        out->mem_total = (uint64_t)[d recommendedMaxWorkingSetSize];
        uint64_t used = (uint64_t)[d currentAllocatedSize];
        out->mem_free = out->mem_total > used ? out->mem_total - used : 0;
        int major = os_major();
        out->usable = 1;
        snprintf(out->note, sizeof out->note,
                 "recommendedMaxWorkingSetSize %.1f GiB, unified memory, macOS %d%s; fp32/fp16%s; CPU: %s",
                 out->mem_total / 1073741824.0, major,
                 major < SS_MTL_MIN_MACOS_MAJOR ? " (older than the 11 this backend needs)" : "",
                 major >= 14 ? "/bf16" : "", SS_MTL_CPU_OPS);
        [a release];
        return SS_OK;
    }
}

/* allocation table: pointer -> (buffer, offset) */
static mtl_alloc *find_alloc(mtl_ctx *c, const void *p)
{
    const char *q = p;
    for (size_t i = 0; i < c->n_live; i++)
        if (q >= c->live[i].p && q < c->live[i].p + (c->live[i].bytes ? c->live[i].bytes : 1))
            return &c->live[i];
    return NULL;
}

static void end_encoder(mtl_ctx *c)
{
    if (c->enc) {
        [c->enc endEncoding];
        [c->enc release];
        c->enc = nil;
    }
}

static ss_status metal_finish(ss_mtl_rt *rt, ss_error *err)
{
    mtl_ctx *c = (mtl_ctx *)rt;
    if (!c->cb)
        return SS_OK;
    end_encoder(c);
    [c->cb commit];
    [c->cb waitUntilCompleted];
    ss_status st = SS_OK;
    if ([c->cb status] == MTLCommandBufferStatusError) {
        NSError *e = [c->cb error];
        st = ss_fail(err, SS_E_DEVICE, "Metal command buffer failed: %s",
                     e ? [[e localizedDescription] UTF8String] : "unknown error");
    }
    [c->cb release];
    c->cb = nil;
    return st;
}

static ss_status metal_dispatch(ss_mtl_rt *rt, int k, void *const *bufs, const ss_mtl_params *p,
                                const unsigned groups[3], const unsigned tg[3], ss_error *err)
{
    mtl_ctx *c = (mtl_ctx *)rt;
    if (!c->cb) {
        c->cb = [[c->queue commandBuffer] retain];
        c->enc = [[c->cb computeCommandEncoder] retain];
        if (!c->cb || !c->enc)
            return ss_fail(err, SS_E_DEVICE, "Metal: cannot create a command buffer");
    }
    [c->enc setComputePipelineState:c->pso[k]];
    int nb = 0;
#define SS_MTL_NB_(id, fn, n, coop) if (k == SS_K_##id) nb = n;
    SS_MTL_KERNELS(SS_MTL_NB_)
#undef SS_MTL_NB_
    for (int i = 0; i < nb; i++) {
        mtl_alloc *a = find_alloc(c, bufs[i]);
        if (!a)
            return ss_fail(err, SS_E_INTERNAL, "Metal %s: argument %d is not device memory", kernel_names[k], i);
        [c->enc setBuffer:a->buf offset:(NSUInteger)((const char *)bufs[i] - a->p) atIndex:(NSUInteger)i];
    }
    [c->enc setBytes:p length:sizeof *p atIndex:(NSUInteger)nb];
    [c->enc dispatchThreadgroups:MTLSizeMake(groups[0], groups[1], groups[2])
           threadsPerThreadgroup:MTLSizeMake(tg[0], tg[1], tg[2])];
    return SS_OK;
}

static void *metal_alloc(void *ctx, size_t bytes)
{
    mtl_ctx *c = ctx;
    if (bytes == 0)
        bytes = 4;
    id<MTLBuffer> buf = nil;
    for (int i = 0; i < c->n_cache; i++)
        if (c->cache[i].bytes == bytes) {
            buf = c->cache[i].buf;
            c->cache[i] = c->cache[--c->n_cache];
            break;
        }
    if (!buf)
        buf = [c->dev newBufferWithLength:bytes options:MTLResourceStorageModeShared];
    if (!buf)
        return NULL;
    if (c->n_live == c->cap_live) {
        size_t nc = c->cap_live ? 2 * c->cap_live : 256;
        mtl_alloc *na = realloc(c->live, nc * sizeof *na);
        if (!na) {
            [buf release];
            return NULL;
        }
        c->live = na;
        c->cap_live = nc;
    }
    mtl_alloc a = {(char *)[buf contents], bytes, buf};
    c->live[c->n_live++] = a;
    return a.p;
}

static void metal_release(void *ctx, void *ptr)
{
    mtl_ctx *c = ctx;
    for (size_t i = 0; i < c->n_live; i++)
        if (c->live[i].p == ptr) {
            mtl_alloc a = c->live[i];
            c->live[i] = c->live[--c->n_live];
            if (c->n_cache < SS_MTL_CACHE_BUFFERS) {
                c->cache[c->n_cache++] = a;          /* a pending command buffer retains it too */
            } else {
                [a.buf release];
            }
            return;
        }
}

static float *metal_scratch(ss_mtl_rt *rt, int slot, size_t n, ss_error *err)
{
    mtl_ctx *c = (mtl_ctx *)rt;
    if (c->scratch_n[slot] < n) {
        if (c->scratch[slot])
            metal_release(c, c->scratch[slot]);     /* in-flight work keeps the old buffer alive */
        c->scratch_n[slot] = 0;
        c->scratch[slot] = metal_alloc(c, n * sizeof(float));
        if (!c->scratch[slot]) {
            ss_fail(err, SS_E_DEVICE, "Metal: out of memory for %zu MiB of scratch", (n * 4) >> 20);
            return NULL;
        }
        c->scratch_n[slot] = n;
    }
    return c->scratch[slot];
}

static void metal_free(void *ctx)
{
    mtl_ctx *c = ctx;
    if (!c)
        return;
    @autoreleasepool {
        ss_error e = {0};
        metal_finish(&c->rt, &e);
        for (size_t i = 0; i < c->n_live; i++)
            [c->live[i].buf release];
        for (int i = 0; i < c->n_cache; i++)
            [c->cache[i].buf release];
        free(c->live);
        for (int k = 0; k < SS_K_COUNT; k++)
            [c->pso[k] release];
        [c->queue release];
        [c->dev release];
    }
    ss_pool_free(c->rt.pool);
    free(c);
}

static ss_status metal_init(const ss_backend_params *bp, void **out, ss_error *err)
{
    @autoreleasepool {
        int major = os_major();
        if (major < SS_MTL_MIN_MACOS_MAJOR)
            fprintf(stderr, "stemsplit: warning: macOS %d is older than the macOS %d the Metal backend needs; "
                    "kernels may fail to compile (use --device cpu)\n", major, SS_MTL_MIN_MACOS_MAJOR);
        NSArray *a = all_devices();
        if (!a || bp->device < 0 || (NSUInteger)bp->device >= [a count]) {
            [a release];
            return ss_fail(err, SS_E_DEVICE, "mps:%d: no such Metal device", bp->device);
        }
        mtl_ctx *c = calloc(1, sizeof *c);
        if (!c) {
            [a release];
            return ss_fail(err, SS_E_NOMEM, "out of memory starting the Metal backend");
        }
        c->dev = [[a objectAtIndex:(NSUInteger)bp->device] retain];
        [a release];
        c->queue = [c->dev newCommandQueue];
        c->threads = bp->threads > 0 ? bp->threads : ss_cpu_count();
        c->rt.pool = ss_pool_new(c->threads);
        c->rt.dispatch = metal_dispatch;
        c->rt.scratch = metal_scratch;
        c->rt.finish = metal_finish;
        c->rt.col_floats = (size_t)1 << 24;       /* 64 MiB column buffers */
        c->prec = SS_PREC_FP32;
        if (bp->precision == SS_PREC_FP16 || (bp->precision == SS_PREC_BF16 && major < 14))
            c->prec = SS_PREC_FP16;               /* bf16 needs macOS 14: fp16 (shown by -v) */
        else if (bp->precision == SS_PREC_BF16)
            c->prec = SS_PREC_BF16;
        c->rt.prec = c->prec == SS_PREC_FP16 ? 1 : c->prec == SS_PREC_BF16 ? 2 : 0;
        if (!c->queue || !c->rt.pool) {
            metal_free(c);
            return ss_fail(err, SS_E_DEVICE, "Metal: cannot create a command queue");
        }
        MTLCompileOptions *opt = [[MTLCompileOptions alloc] init];
        [opt setFastMathEnabled:NO];
        NSError *e = nil;
        NSString *src = [NSString stringWithUTF8String:ss_metal_source];
        id<MTLLibrary> lib = [c->dev newLibraryWithSource:src options:opt error:&e];
        [opt release];
        if (!lib) {
            ss_status st = ss_fail(err, SS_E_DEVICE, "Metal: the kernels do not compile: %s",
                                   e ? [[e localizedDescription] UTF8String] : "unknown error");
            metal_free(c);
            return st;
        }
        for (int k = 0; k < SS_K_COUNT; k++) {
            id<MTLFunction> f = [lib newFunctionWithName:[NSString stringWithUTF8String:kernel_names[k]]];
            c->pso[k] = f ? [c->dev newComputePipelineStateWithFunction:f error:&e] : nil;
            [f release];
            if (!c->pso[k]) {
                [lib release];
                ss_status st = ss_fail(err, SS_E_DEVICE, "Metal: no pipeline for %s", kernel_names[k]);
                metal_free(c);
                return st;
            }
        }
        [lib release];
        *out = c;
        return SS_OK;
    }
}

static ss_status metal_sync(void *ctx, ss_error *err) { return metal_finish(&((mtl_ctx *)ctx)->rt, err); }
static ss_precision metal_precision(void *ctx) { return ((mtl_ctx *)ctx)->prec; }
static int metal_threads(void *ctx) { return ((mtl_ctx *)ctx)->threads; }

static ss_status metal_copy(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    ss_status st = metal_finish(&((mtl_ctx *)ctx)->rt, err);   /* the GPU may still write src/dst */
    if (st == SS_OK && dst != src)
        memmove(dst, src, bytes);
    return st;
}

const ss_backend_iface ss_backend_metal = {
    .api_version = SS_BACKEND_API_VERSION,
    .name = "mps",
    .device_count = metal_count,
    .device_info = metal_info,
    .init = metal_init,
    .free = metal_free,
    .synchronize = metal_sync,
    .precision = metal_precision,
    .threads = metal_threads,
    .host_memory = 1,
    .alloc = metal_alloc,
    .release = metal_release,
    .upload = metal_copy,
    .download = metal_copy,
    SS_MTL_OP_SLOTS,
};

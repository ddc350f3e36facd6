/* backend_cpu.c - the CPU backend: host memory and the reference kernels.
 *
 * Every op slot is NULL on purpose: the dispatcher in backend.c then runs the
 * CPU reference kernels (kernels/cpu) directly on host memory with the
 * backend's thread pool (-j).  Matrix products go through CBLAS (OpenBLAS on
 * Linux, Accelerate on macOS), FFTs through FFTW3f. */
#include "backend.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../kernels/cpu/cpu_ops.h"
#include "backend_cpu.h"
#include "threadpool.h"

#if defined(SS_ACCELERATE)
#include <Accelerate/Accelerate.h>
#else
#include <cblas.h>
#endif

/* ---- BLAS kernel selection ------------------------------------------------------- */

#if defined(OPENBLAS_VERSION)
/* OpenBLAS's generic fallbacks for CPUs it does not know */
static int blas_generic(const char *core)
{
    static const char *const generic[] = {"Prescott", "Katmai", "Coppermine", "Northwood", "Core2",
                                          "Penryn", "Dunnington", "Nehalem", "Atom", "Unknown"};
    for (size_t i = 0; i < sizeof generic / sizeof generic[0]; i++)
        if (strcmp(core, generic[i]) == 0)
            return 1;
    return 0;
}
#endif

void ss_cpu_blas_preflight(char **argv)
{
#if defined(OPENBLAS_VERSION) && defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
    const char *core = openblas_get_corename();
    if (getenv("OPENBLAS_CORETYPE") || !core || !blas_generic(core))
        return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        want = "Haswell";
    if (!want || setenv("OPENBLAS_CORETYPE", want, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");     /* exec failed: carry on with the generic kernels */
#else
    (void)argv;
#endif
}

void ss_cpu_blas_describe(char *out, size_t size)
{
#if defined(OPENBLAS_VERSION)
    const char *v = OPENBLAS_VERSION;           /* " OpenBLAS 0.3.21 " */
    while (*v == ' ')
        v++;
    int len = (int)strlen(v);
    while (len > 0 && v[len - 1] == ' ')
        len--;
    snprintf(out, size, "%.*s (%s kernels%s)", len, v, openblas_get_corename(),
             getenv("OPENBLAS_CORETYPE") ? ", from OPENBLAS_CORETYPE" : "");
#elif defined(SS_ACCELERATE)
    snprintf(out, size, "Accelerate");
#else
    snprintf(out, size, "CBLAS");
#endif
}

void ss_cpu_backend_cleanup(void) { ss_cpu_stft_cleanup(); }

/* ---- the backend -------------------------------------------------------------------- */

/* Large blocks (weights, the model's activation workspace) are mapped
 * directly on Linux, aligned to 2 MiB and marked MADV_HUGEPAGE: the first
 * touch of a fresh block then costs one page fault per 2 MiB instead of one
 * per 4 KiB (with transparent huge pages in "madvise" mode, the common
 * default, that was ~10% of a short run).  Only whole 2 MiB pages inside the
 * block can be huge, so this never adds to the resident size.  Smaller blocks
 * come from malloc.  The models keep their activations in a workspace that
 * lives across forward passes, so there is no free list to keep here. */
#if defined(__linux__) && defined(MADV_HUGEPAGE)
#define CPU_MAP 1
#define CPU_MAP_MIN ((size_t)2 << 20)      /* map blocks of at least this many bytes */
#define CPU_HUGE ((size_t)2 << 20)         /* huge page size, the mapping's alignment */

typedef struct cpu_map {
    void *p;               /* the block (start of the mapping)    */
    size_t len;            /* mapped bytes                        */
} cpu_map;
#endif

typedef struct cpu_ctx {
    int threads;           /* worker threads of the kernels' pool */
#ifdef CPU_MAP
    pthread_mutex_t mu;    /* guards maps                         */
    cpu_map *maps;         /* live mapped blocks                  */
    size_t n_maps, cap_maps;
#endif
} cpu_ctx;

static int cpu_device_count(void) { return 1; }

/* "model name" from /proc/cpuinfo, or the machine type. */
static void cpu_model_name(char *out, size_t size)
{
    snprintf(out, size, "CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ' || *c == '\t')
                    c++;
                c[strcspn(c, "\n")] = '\0';
                snprintf(out, size, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

static ss_status cpu_device_info(int index, ss_device_info *out)
{
    if (index != 0)
        return SS_E_DEVICE;
    memset(out, 0, sizeof *out);
    snprintf(out->backend, sizeof out->backend, "cpu");
    out->index = 0;
    cpu_model_name(out->name, sizeof out->name);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
#ifdef _SC_AVPHYS_PAGES
    long avail = sysconf(_SC_AVPHYS_PAGES);
#else
    long avail = 0;
#endif
    if (pages > 0 && page > 0) {
        out->mem_total = (uint64_t)pages * (uint64_t)page;
        out->mem_free = avail > 0 ? (uint64_t)avail * (uint64_t)page : 0;
    }
    out->usable = 1;
    char blas[96];
    ss_cpu_blas_describe(blas, sizeof blas);
    snprintf(out->note, sizeof out->note, "%d cores, fp32, FFTW3f + %s", ss_cpu_count(), blas);
    return SS_OK;
}

static ss_status cpu_init(const ss_backend_params *p, void **ctx, ss_error *err)
{
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return ss_fail(err, SS_E_NOMEM, "out of memory starting the CPU backend");
    c->threads = p->threads > 0 ? p->threads : ss_cpu_count();
#ifdef CPU_MAP
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return ss_fail(err, SS_E_NOMEM, "cannot start the CPU backend (mutex)");
    }
#endif
    *ctx = c;
    return SS_OK;
}

static void cpu_free(void *ctx)
{
    cpu_ctx *c = ctx;
#ifdef CPU_MAP
    for (size_t i = 0; i < c->n_maps; i++)      /* blocks the caller never released */
        munmap(c->maps[i].p, c->maps[i].len);
    free(c->maps);
    pthread_mutex_destroy(&c->mu);
#endif
    free(c);
}

static int cpu_threads(void *ctx) { return ((cpu_ctx *)ctx)->threads; }

#ifdef CPU_MAP
/* A fresh mapping of `bytes` (rounded up to whole pages) starting on a 2 MiB
 * boundary, recorded in c->maps; NULL when out of memory. */
static void *map_block(cpu_ctx *c, size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (page == 0 || page > CPU_HUGE || bytes > SIZE_MAX - 2 * CPU_HUGE)
        return NULL;
    size_t len = (bytes + page - 1) / page * page, span = len + CPU_HUGE - page;
    char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    char *p = (char *)(((uintptr_t)base + CPU_HUGE - 1) & ~(uintptr_t)(CPU_HUGE - 1));
    if (p > base)                                   /* trim to the aligned block */
        munmap(base, (size_t)(p - base));
    if (base + span > p + len)
        munmap(p + len, (size_t)(base + span - (p + len)));
    madvise(p, len, MADV_HUGEPAGE);                 /* a hint: failure is harmless */
    pthread_mutex_lock(&c->mu);
    if (c->n_maps == c->cap_maps) {
        size_t cap = c->cap_maps ? 2 * c->cap_maps : 64;
        cpu_map *m = realloc(c->maps, cap * sizeof *m);
        if (!m) {
            pthread_mutex_unlock(&c->mu);
            munmap(p, len);
            return NULL;
        }
        c->maps = m;
        c->cap_maps = cap;
    }
    c->maps[c->n_maps++] = (cpu_map){p, len};
    pthread_mutex_unlock(&c->mu);
    return p;
}

/* Unmap `ptr` if it is a mapped block; 0 when it is not one. */
static int unmap_block(cpu_ctx *c, void *ptr)
{
    pthread_mutex_lock(&c->mu);
    for (size_t i = c->n_maps; i-- > 0;) {
        if (c->maps[i].p == ptr) {
            cpu_map m = c->maps[i];
            c->maps[i] = c->maps[--c->n_maps];
            pthread_mutex_unlock(&c->mu);
            munmap(m.p, m.len);
            return 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return 0;
}
#endif

static void *cpu_alloc(void *ctx, size_t bytes)
{
#ifdef CPU_MAP
    if (bytes >= CPU_MAP_MIN)
        return map_block(ctx, bytes);
#else
    (void)ctx;
#endif
    void *p = NULL;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
}

static void cpu_release(void *ctx, void *ptr)
{
#ifdef CPU_MAP
    if (ptr && unmap_block(ctx, ptr))
        return;
#else
    (void)ctx;
#endif
    free(ptr);
}

static ss_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    (void)ctx;
    (void)err;
    if (dst != src)
        memmove(dst, src, bytes);
    return SS_OK;
}

const ss_backend_iface ss_backend_cpu = {
    .api_version = SS_BACKEND_API_VERSION,
    .name = "cpu",
    .device_count = cpu_device_count,
    .device_info = cpu_device_info,
    .init = cpu_init,
    .free = cpu_free,
    .synchronize = NULL,            /* ops finish before they return */
    .precision = NULL,              /* always fp32                   */
    .threads = cpu_threads,
    .host_memory = 1,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_copy,
    .download = cpu_copy,
    /* ops: NULL = the reference kernels in kernels/cpu, run by the dispatcher */
    .fill = NULL, .copy2d = NULL, .add = NULL, .scale = NULL,
    .channel_affine = NULL, .row_affine = NULL, .row_moments = NULL,
    .gelu = NULL, .glu = NULL, .softmax = NULL, .transpose = NULL,
    .group_norm = NULL, .layer_norm = NULL, .gemm = NULL,
    .conv2d = NULL, .conv_transpose2d = NULL, .stft = NULL, .istft = NULL,
};

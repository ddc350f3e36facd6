/* backend_cpu.c - the CPU backend: host memory and the reference kernels.
 *
 * Its vtable is filled from kernels/cpu: every primitive op and the fused
 * passes the kernels have, run on host memory with the backend's thread pool
 * (-j).  The dispatcher (backend.c) runs these same entries, on host mirrors,
 * for any op another backend leaves NULL: they are the reference
 * implementation.  Matrix products go through CBLAS (OpenBLAS on Linux,
 * Accelerate on macOS), FFTs through FFTW3f. */
#include "backend.h"

#include <limits.h>
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
    ss_pool *pool;         /* the kernels' threads                */
    float *scratch;        /* attention's row-block scores        */
    size_t scratch_cap;    /* floats                              */
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
    if (!(c->pool = ss_pool_new(c->threads))) {
        int threads = c->threads;
        free(c);
        return ss_fail(err, SS_E_NOMEM, "cannot start %d worker threads for the CPU backend", threads);
    }
#ifdef CPU_MAP
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        ss_pool_free(c->pool);
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
    ss_pool_free(c->pool);
    free(c->scratch);
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

/* ---- the ops: kernels/cpu on host memory ------------------------------------------ */

#define POOL(ctx) (((cpu_ctx *)(ctx))->pool)

/* A kernel's status as the op's: the kernels fail only for host memory or a
 * shape they do not take. */
static ss_status kst(ss_error *err, const char *op, ss_status st)
{
    return st == SS_OK ? SS_OK : ss_fail(err, st, "cpu: %s failed: %s", op, ss_status_name(st));
}

static ss_status cpu_fill(void *ctx, float *y, float v, size_t n, ss_error *err)
{
    return kst(err, "fill", ss_cpu_fill(POOL(ctx), y, v, n));
}

static ss_status cpu_copy2d(void *ctx, float *dst, size_t dpitch, const float *src, size_t spitch, size_t rows,
                            size_t cols, ss_error *err)
{
    return kst(err, "copy2d", ss_cpu_copy2d(POOL(ctx), dst, dpitch, src, spitch, rows, cols));
}

static ss_status cpu_add(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    return kst(err, "add", ss_cpu_add(POOL(ctx), y, a, b, n));
}

static ss_status cpu_scale(void *ctx, float *y, const float *x, float alpha, size_t n, ss_error *err)
{
    return kst(err, "scale", ss_cpu_scale(POOL(ctx), y, x, alpha, n));
}

static ss_status cpu_channel_affine(void *ctx, float *y, const float *x, int batch, int ch, int64_t len,
                                    const float *scale, const float *bias, ss_error *err)
{
    return kst(err, "channel_affine", ss_cpu_channel_affine(POOL(ctx), y, x, batch, ch, len, scale, bias));
}

static ss_status cpu_row_affine(void *ctx, float *y, const float *x, int rows, int64_t len, const float *scale,
                                const float *shift, ss_error *err)
{
    return kst(err, "row_affine", ss_cpu_row_affine(POOL(ctx), y, x, rows, len, scale, shift));
}

static ss_status cpu_row_moments(void *ctx, float *mean, float *std, const float *x, int rows, int64_t len,
                                 ss_error *err)
{
    return kst(err, "row_moments", ss_cpu_row_moments(POOL(ctx), mean, std, x, rows, len));
}

static ss_status cpu_gelu(void *ctx, float *y, const float *x, size_t n, ss_error *err)
{
    return kst(err, "gelu", ss_cpu_gelu(POOL(ctx), y, x, n));
}

static ss_status cpu_glu(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, ss_error *err)
{
    return kst(err, "glu", ss_cpu_glu(POOL(ctx), y, x, batch, ch, len));
}

static ss_status cpu_softmax(void *ctx, float *y, const float *x, int rows, int len, float scale, ss_error *err)
{
    return kst(err, "softmax", ss_cpu_softmax(POOL(ctx), y, x, rows, len, scale));
}

static ss_status cpu_transpose(void *ctx, float *y, const float *x, int batch, int rows, int cols, ss_error *err)
{
    return kst(err, "transpose", ss_cpu_transpose(POOL(ctx), y, x, batch, rows, cols));
}

static ss_status cpu_group_norm(void *ctx, float *y, const float *x, int batch, int ch, int64_t len, int groups,
                                const float *gamma, const float *beta, float eps, ss_error *err)
{
    return kst(err, "group_norm", ss_cpu_group_norm(POOL(ctx), y, x, batch, ch, len, groups, gamma, beta, eps));
}

static ss_status cpu_layer_norm(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma,
                                const float *beta, float eps, ss_error *err)
{
    return kst(err, "layer_norm", ss_cpu_layer_norm(POOL(ctx), y, x, rows, dim, gamma, beta, eps));
}

static ss_status cpu_gemm(void *ctx, const ss_gemm_desc *d, const float *a, const float *b, float *c, ss_error *err)
{
    return kst(err, "gemm", ss_cpu_gemm(POOL(ctx), d, a, b, c));
}

static ss_status cpu_conv2d(void *ctx, const ss_conv2d_desc *d, const float *x, const float *w, const float *bias,
                            float *y, ss_error *err)
{
    return kst(err, "conv2d", ss_cpu_conv2d(POOL(ctx), d, x, w, bias, y));
}

static ss_status cpu_conv_transpose2d(void *ctx, const ss_convt2d_desc *d, const float *x, const float *w,
                                      const float *bias, float *y, ss_error *err)
{
    return kst(err, "conv_transpose2d", ss_cpu_conv_transpose2d(POOL(ctx), d, x, w, bias, y));
}

static ss_status cpu_stft(void *ctx, const ss_stft_desc *d, const float *x, float *spec, ss_error *err)
{
    return kst(err, "stft", ss_cpu_stft(POOL(ctx), d, x, spec));
}

static ss_status cpu_istft(void *ctx, const ss_stft_desc *d, const float *spec, float *x, ss_error *err)
{
    return kst(err, "istft", ss_cpu_istft(POOL(ctx), d, spec, x));
}

static ss_status cpu_copy4d(void *ctx, float *dst, const int64_t dstride[4], const float *src,
                            const int64_t sstride[4], const int64_t shape[4], ss_error *err)
{
    return kst(err, "copy4d", ss_cpu_copy4d(POOL(ctx), dst, dstride, src, sstride, shape));
}

static ss_status cpu_standardize_coef(void *ctx, float *scale, float *shift, const float *mean, const float *std,
                                      int n, float eps, ss_error *err)
{
    (void)ctx;
    (void)err;
    for (int i = 0; i < n; i++) {
        float sc = 1.0f / (eps + std[i]);
        scale[i] = sc;
        shift[i] = -mean[i] * sc;
    }
    return SS_OK;
}

/* the fused passes: one kernel each, bit-identical to composing the ops */
static ss_status cpu_group_norm_gelu(void *ctx, float *y, const float *x, const float *bias, int batch, int ch,
                                     int64_t len, int groups, const float *gamma, const float *beta, float eps,
                                     ss_error *err)
{
    ss_status st = SS_OK;
    if (bias) {
        st = ss_cpu_channel_affine(POOL(ctx), y, x, batch, ch, len, NULL, bias);
        x = y;
    }
    if (st == SS_OK)
        st = ss_cpu_group_norm_gelu(POOL(ctx), y, x, batch, ch, len, groups, gamma, beta, eps);
    return kst(err, "group_norm_gelu", st);
}

static ss_status cpu_bias_gelu(void *ctx, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                               ss_error *err)
{
    return kst(err, "bias_gelu", ss_cpu_bias_gelu(POOL(ctx), y, x, bias, batch, ch, len));
}

static ss_status cpu_bias_glu(void *ctx, float *y, float *x, const float *bias, int batch, int ch, int64_t len,
                              ss_error *err)
{
    return kst(err, "bias_glu", ss_cpu_bias_glu(POOL(ctx), y, x, bias, batch, ch, len));
}

static ss_status cpu_mul(void *ctx, float *y, const float *a, const float *b, size_t n, ss_error *err)
{
    return kst(err, "mul", ss_cpu_mul(POOL(ctx), y, a, b, n));
}

static ss_status cpu_activate(void *ctx, float *y, const float *x, size_t n, ss_act act, float alpha, ss_error *err)
{
    return kst(err, "activate", ss_cpu_activate(POOL(ctx), y, x, n, act, alpha));
}

static ss_status cpu_rms_norm(void *ctx, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                              ss_rms_form form, ss_error *err)
{
    return kst(err, "rms_norm", ss_cpu_rms_norm(POOL(ctx), y, x, rows, dim, gamma, eps, form));
}

static ss_status cpu_rope(void *ctx, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
                          const float *cs, ss_error *err)
{
    return kst(err, "rope", ss_cpu_rope(POOL(ctx), y, x, batch, seq, heads, hd, ld, cs));
}

static ss_status cpu_gru(void *ctx, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
                         const float *b_ih, const float *b_hh, float *h, float *y, float *scratch, ss_error *err)
{
    return kst(err, "gru", ss_cpu_gru(POOL(ctx), d, x, w_ih, w_hh, b_ih, b_hh, h, y, scratch));
}

/* every shape: the row-blocked kernel where the fused one does not apply */
static int cpu_attention_ok(void *ctx, const ss_attn_desc *d)
{
    (void)ctx;
    (void)d;
    return 1;
}

static ss_status cpu_attention(void *ctx, const ss_attn_desc *d, const float *q, const float *k, const float *v,
                               float *o, ss_error *err)
{
    cpu_ctx *c = ctx;
    size_t need = ss_cpu_attention_scratch(c->pool, d);
    if (need > c->scratch_cap) {
        float *p = malloc(need * sizeof *p);
        if (!p)
            return ss_fail(err, SS_E_NOMEM, "cpu: attention: out of memory for %zu MiB of scores",
                           (need * sizeof *p) >> 20);
        free(c->scratch);
        c->scratch = p;
        c->scratch_cap = need;
    }
    return kst(err, "attention", ss_cpu_attention(c->pool, d, q, k, v, o, c->scratch));
}

/* The models' fused kernels for the CPU (models/kernels.h), first match wins. */
#define SS_KERNELS_CPU(arch) const void *ss_kernels_cpu_##arch(const char *name);
#include "../models/kernels.h"
#undef SS_KERNELS_CPU

static const void *cpu_kernel(void *ctx, const char *name)
{
    (void)ctx;
    const void *k = NULL;
#define SS_KERNELS_CPU(arch)                 \
    if (!k)                                  \
        k = ss_kernels_cpu_##arch(name);
#include "../models/kernels.h"
#undef SS_KERNELS_CPU
    return k;
}

ss_pool *ss_cpu_backend_pool(void *ctx) { return POOL(ctx); }

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
    /* every primitive op: the reference kernels */
    .fill = cpu_fill, .copy2d = cpu_copy2d, .add = cpu_add, .scale = cpu_scale,
    .channel_affine = cpu_channel_affine, .row_affine = cpu_row_affine, .row_moments = cpu_row_moments,
    .gelu = cpu_gelu, .glu = cpu_glu, .softmax = cpu_softmax, .transpose = cpu_transpose,
    .group_norm = cpu_group_norm, .layer_norm = cpu_layer_norm, .gemm = cpu_gemm,
    .conv2d = cpu_conv2d, .conv_transpose2d = cpu_conv_transpose2d, .stft = cpu_stft, .istft = cpu_istft,
    .copy4d = cpu_copy4d, .standardize_coef = cpu_standardize_coef,
    /* fused passes the kernels have */
    .group_norm_gelu = cpu_group_norm_gelu,
    .bias_gelu = cpu_bias_gelu, .bias_glu = cpu_bias_glu,
    .attention_ok = cpu_attention_ok, .attention = cpu_attention, .attention_batched = 1,
    .mul = cpu_mul, .activate = cpu_activate, .rms_norm = cpu_rms_norm, .rope = cpu_rope,
    .gru = cpu_gru,
    /* HTDemucs's fusions and any other model's: by name (models/kernels.h) */
    .kernel = cpu_kernel,
    /* none: the dispatcher composes them from the ops above */
    .gemm_bias = NULL, .conv_transpose2d_crop = NULL,
    /* none: ops run when issued, in order, on host memory */
    .graph_begin = NULL, .graph_end = NULL, .graph_launch = NULL, .graph_free = NULL,
    .host_alloc = NULL, .host_free = NULL, .download_start = NULL, .download_wait = NULL,
    .generation = NULL, .lane = NULL,
};

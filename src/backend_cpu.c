/* backend_cpu.c - the CPU backend: host memory and the reference kernels.
 *
 * Every op slot is NULL on purpose: the dispatcher in backend.c then runs the
 * CPU reference kernels (kernels/cpu) directly on host memory with the
 * backend's thread pool (-j).  Matrix products go through CBLAS (OpenBLAS on
 * Linux, Accelerate on macOS), FFTs through FFTW3f. */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- the backend -------------------------------------------------------------------- */

typedef struct cpu_ctx {
    int threads;           /* worker threads of the kernels' pool */
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
#if defined(OPENBLAS_VERSION)
    /* the kernels spread single-threaded BLAS calls over our own pool (nn.c):
     * OpenBLAS's threads would only spin against it */
    openblas_set_num_threads(1);
#endif
    *ctx = c;
    return SS_OK;
}

static void cpu_free(void *ctx) { free(ctx); }
static int cpu_threads(void *ctx) { return ((cpu_ctx *)ctx)->threads; }

static void *cpu_alloc(void *ctx, size_t bytes)
{
    (void)ctx;
    void *p = NULL;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
}

static void cpu_release(void *ctx, void *ptr)
{
    (void)ctx;
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

/* backend.c - backend registry, device selection, buffers, and the one public
 * wrapper per op, which runs the backend's entry or, when the backend leaves
 * the slot NULL, the reference backend's entry on host mirrors (a primitive
 * op) or a composition of the backend's own ops (a fused op). */
#include "backend.h"
#include "clock.h"
#include "settings.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "threadpool.h"

extern const ss_backend_iface ss_backend_cpu;
#ifdef SS_WITH_CUDA
static const ss_backend_iface ss_backend_cuda;
#endif
#ifdef SS_WITH_METAL
extern const ss_backend_iface ss_backend_metal;
#endif

struct ss_backend {
    const ss_backend_iface *iface;  /* the vtable                              */
    void *ctx;                      /* the backend's own context               */
    ss_device_info dev;             /* the device it runs on                   */
    ss_error err;                   /* sticky error (code SS_OK when none)     */
    void *ref;                      /* the reference backend's context, for the
                                     * ops this one leaves NULL (made on first use) */
    int threads;                    /* CPU worker threads asked for            */
    struct ss_prof {                /* STEMSPLIT_PROFILE: time per op          */
        const char *op;
        long calls;
        double seconds;
    } *prof;
    int prof_calls;                 /* STEMSPLIT_PROFILE=calls: list slow calls */
    long prof_seq;                  /* ops timed so far                         */
    double kernel_t0;               /* the named kernel being timed's start     */
};

/* The reference implementation of every primitive op (backend_cpu.c). */
#define REF (&ss_backend_cpu)

#define SS_PROF_OPS 40

static const ss_backend_iface *const backends[] = {
#ifdef SS_WITH_CUDA
    &ss_backend_cuda,
#endif
#ifdef SS_WITH_METAL
    &ss_backend_metal,
#endif
    &ss_backend_cpu,
    NULL,
};

const ss_backend_iface *const *ss_backend_list(void) { return backends; }

/* ---- the CUDA backend: a module loaded at run time ------------------------------
 * A build with CUDA support (SS_WITH_CUDA) links no CUDA library.  The "cuda"
 * entry of the registry is a stub: the first time it is asked for devices it
 * probes the driver (libcuda.so.1: cuInit, cuDeviceGetCount) and only when a
 * GPU is there dlopen()s libstemsplit-cuda.so (which brings cuBLAS and cuFFT)
 * from beside the executable, ../lib, ../lib/stemsplit, the build directory or
 * PREFIX/lib/stemsplit ($STEMSPLIT_CUDA_MODULE overrides), and takes its vtable
 * from ss_cuda_module().  Any failure leaves 0 devices and the reason, which
 * ss_backend_unavailable() returns. */

static const ss_backend_iface *resolve(const ss_backend_iface *bi);

#ifdef SS_WITH_CUDA
#include <dlfcn.h>
#include <unistd.h>

#ifndef SS_CUDA_BUILD_DIR
#define SS_CUDA_BUILD_DIR "."
#endif
#ifndef SS_LIBDIR
#define SS_LIBDIR "/usr/local/lib/stemsplit"
#endif
#define SS_CUDA_MODULE "libstemsplit-cuda.so"

static const ss_backend_iface *cuda_real;     /* the module's vtable once loaded  */
static int cuda_tried;
static char cuda_why[600];

#ifdef SS_CUDA_EMU
/* The CUDA emulator's test build (kernels/cuda/cuda.mk): the module's code,
 * compiled for the CPU, is linked in; no driver to probe, nothing to load. */
const ss_backend_iface *ss_cuda_module(int api_version, const char **why);

static void cuda_load(void)
{
    if (cuda_tried)
        return;
    cuda_tried = 1;
    const char *why = NULL;
    cuda_real = ss_cuda_module(SS_BACKEND_API_VERSION, &why);
    if (!cuda_real)
        snprintf(cuda_why, sizeof cuda_why, "the emulated CUDA module: %.500s", why ? why : "?");
}
#else
/* Number of GPUs the driver sees, without loading any CUDA runtime library. */
static int cuda_driver_probe(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(cuda_why, sizeof cuda_why, "no NVIDIA driver: %.300s", e ? e : "libcuda.so.1 not found");
        return 0;
    }
    typedef int (*init_fn)(unsigned);
    typedef int (*count_fn)(int *);
    init_fn cu_init;
    count_fn cu_count;
    *(void **)&cu_init = dlsym(h, "cuInit");
    *(void **)&cu_count = dlsym(h, "cuDeviceGetCount");
    int n = 0, rc;
    if (!cu_init || !cu_count) {
        snprintf(cuda_why, sizeof cuda_why, "libcuda.so.1 lacks cuInit/cuDeviceGetCount");
        n = 0;
    } else if ((rc = cu_init(0)) != 0) {
        snprintf(cuda_why, sizeof cuda_why, "the NVIDIA driver failed to start (cuInit error %d%s)", rc,
                 rc == 100 ? ": no CUDA-capable device" : "");
        n = 0;
    } else if (cu_count(&n) != 0 || n <= 0) {
        snprintf(cuda_why, sizeof cuda_why, "the NVIDIA driver reports no GPU");
        n = 0;
    }
    /* libcuda stays loaded: the module uses it */
    return n;
}

static void cuda_load(void)
{
    if (cuda_tried)
        return;
    cuda_tried = 1;
    if (cuda_driver_probe() <= 0)
        return;
    char exe[PATH_MAX], dir[PATH_MAX] = ".";
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dir, sizeof dir, "%s", exe[0] ? exe : "/");
        }
    }
    const char *env = ss_settings_get()->cuda_module;
    char cand[7][PATH_MAX + 64];
    int nc = 0;
    if (env && *env)
        snprintf(cand[nc++], sizeof cand[0], "%s", env);
    snprintf(cand[nc++], sizeof cand[0], "%s/" SS_CUDA_MODULE, dir);
    snprintf(cand[nc++], sizeof cand[0], "%s/../lib/" SS_CUDA_MODULE, dir);
    snprintf(cand[nc++], sizeof cand[0], "%s/../lib/stemsplit/" SS_CUDA_MODULE, dir);
    snprintf(cand[nc++], sizeof cand[0], "%s/../" SS_CUDA_MODULE, dir);
    snprintf(cand[nc++], sizeof cand[0], "%s", SS_CUDA_BUILD_DIR "/" SS_CUDA_MODULE);
    snprintf(cand[nc++], sizeof cand[0], "%s", SS_LIBDIR "/" SS_CUDA_MODULE);
    snprintf(cuda_why, sizeof cuda_why, "%s not found beside the executable, in ../lib[/stemsplit] or %s",
             SS_CUDA_MODULE, SS_LIBDIR);
    for (int i = 0; i < nc; i++) {
        if (access(cand[i], R_OK) != 0)
            continue;
        void *h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(cuda_why, sizeof cuda_why, "cannot load %.200s: %.300s", cand[i], e ? e : "?");
            return;
        }
        typedef const ss_backend_iface *(*entry_fn)(int, const char **);
        entry_fn entry;
        *(void **)&entry = dlsym(h, "ss_cuda_module");
        const char *why = NULL;
        const ss_backend_iface *bi = entry ? entry(SS_BACKEND_API_VERSION, &why) : NULL;
        if (!bi || bi->api_version != SS_BACKEND_API_VERSION) {
            snprintf(cuda_why, sizeof cuda_why, "%.200s: %.300s", cand[i],
                     !entry ? "no ss_cuda_module symbol" : why ? why : "backend API version mismatch");
            dlclose(h);
            return;
        }
        cuda_real = bi;
        if (bi->device_count() <= 0)
            snprintf(cuda_why, sizeof cuda_why, "%.500s", why && *why ? why : "the CUDA runtime sees no GPU");
        else
            cuda_why[0] = '\0';
        return;
    }
}
#endif

static int cuda_stub_count(void)
{
    cuda_load();
    return cuda_real ? cuda_real->device_count() : 0;
}

static ss_status cuda_stub_info(int index, ss_device_info *out)
{
    cuda_load();
    return cuda_real ? cuda_real->device_info(index, out) : SS_E_DEVICE;
}

static ss_status cuda_stub_init(const ss_backend_params *p, void **ctx, ss_error *err)
{
    cuda_load();
    if (!cuda_real)
        return ss_fail(err, SS_E_DEVICE, "no CUDA device available (%s)", cuda_why);
    return cuda_real->init(p, ctx, err);
}

static void cuda_stub_free(void *ctx) { (void)ctx; }

static const ss_backend_iface ss_backend_cuda = {
    .api_version = SS_BACKEND_API_VERSION,
    .name = "cuda",
    .device_count = cuda_stub_count,
    .device_info = cuda_stub_info,
    .init = cuda_stub_init,
    .free = cuda_stub_free,
};

static const ss_backend_iface *resolve(const ss_backend_iface *bi)
{
    if (bi == &ss_backend_cuda) {
        cuda_load();
        return cuda_real ? cuda_real : bi;
    }
    return bi;
}

const char *ss_backend_unavailable(const ss_backend_iface *bi)
{
    if (bi == &ss_backend_cuda || (cuda_real && bi == cuda_real)) {
        cuda_load();
        if (!cuda_real || cuda_real->device_count() <= 0)
            return cuda_why[0] ? cuda_why : "no CUDA device";
    }
    return NULL;
}
#else
static const ss_backend_iface *resolve(const ss_backend_iface *bi) { return bi; }

const char *ss_backend_unavailable(const ss_backend_iface *bi)
{
    (void)bi;
    return NULL;
}
#endif

const ss_backend_iface *ss_backend_find(const char *name)
{
    for (int i = 0; backends[i]; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

const char *ss_precision_name(ss_precision p)
{
    switch (p) {
    case SS_PREC_FP32: return "fp32";
    case SS_PREC_TF32: return "tf32";
    case SS_PREC_BF16: return "bf16";
    case SS_PREC_FP16: return "fp16";
    case SS_PREC_MIXED: return "mixed";
    case SS_PREC_AUTO: return "auto";
    }
    return "?";
}

int ss_precision_parse(const char *s)
{
    for (int p = SS_PREC_FP32; p <= SS_PREC_AUTO; p++)
        if (strcmp(s, ss_precision_name((ss_precision)p)) == 0)
            return p;
    return -1;
}

/* ---- opening a device --------------------------------------------------------- */

static ss_status start(const ss_backend_iface *bi, int index, const ss_backend_params *p,
                       ss_backend **out, ss_error *err)
{
    bi = resolve(bi);
    ss_backend *be = calloc(1, sizeof *be);
    if (!be)
        return ss_fail(err, SS_E_NOMEM, "out of memory starting the %s backend", bi->name);
    be->iface = bi;
    ss_status st = bi->device_info(index, &be->dev);
    if (st != SS_OK) {
        free(be);
        return ss_fail(err, SS_E_DEVICE, "%s:%d: no such device", bi->name, index);
    }
    ss_backend_params bp = *p;
    bp.device = index;
    st = bi->init(&bp, &be->ctx, err);
    if (st != SS_OK) {
        free(be);
        return st;
    }
    be->threads = p->threads > 0 ? p->threads : ss_cpu_count();
    ss_profile_mode pm = ss_settings_get()->profile;
    if (pm == SS_PROFILE_OPS || pm == SS_PROFILE_CALLS) {
        be->prof = calloc(SS_PROF_OPS, sizeof *be->prof);
        be->prof_calls = pm == SS_PROFILE_CALLS;
    }
    *out = be;
    return SS_OK;
}

static int usable(const ss_backend_iface *bi, int index)
{
    ss_device_info info;
    return index < bi->device_count() && bi->device_info(index, &info) == SS_OK && info.usable;
}

ss_status ss_backend_open(const char *device, const ss_backend_params *p, ss_backend **out,
                          char *note, size_t note_size, ss_error *err)
{
    return ss_backend_open_for(device, p, 0, out, note, note_size, NULL, 0, err);
}

ss_status ss_backend_open_auto(const ss_backend_iface *const *list, const ss_backend_params *p, uint64_t mem_need,
                               ss_backend **out, char *note, size_t note_size, char *warn, size_t warn_size,
                               ss_error *err)
{
    char why[512] = "";
    if (note && note_size)
        note[0] = '\0';
    if (warn && warn_size)
        warn[0] = '\0';
    for (int i = 0; list[i]; i++) {
        const ss_backend_iface *bi = list[i];
        ss_device_info info;
        if (usable(bi, 0) && bi->device_info(0, &info) == SS_OK) {
            /* the CPU, the last resort, takes any model */
            if (strcmp(bi->name, "cpu") != 0 && mem_need > 0 && info.mem_free > 0 && info.mem_free < mem_need) {
                if (warn && warn_size && !warn[0])
                    snprintf(warn, warn_size, "auto: %s has too little free memory for this model (%.2f GiB "
                             "estimated, %.1f GiB free)", info.name, mem_need / 1073741824.0,
                             info.mem_free / 1073741824.0);
                snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s:0: too little free memory",
                         why[0] ? "; " : "", bi->name);
                continue;
            }
            ss_error e2 = {0};
            if (start(bi, 0, p, out, &e2) == SS_OK) {
                if (note)
                    snprintf(note, note_size, "auto: chose %s:0 (%s)%s%s", bi->name, (*out)->dev.name,
                             why[0] ? "; " : "", why);
                return SS_OK;
            }
            snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s failed: %.120s", why[0] ? "; " : "",
                     bi->name, e2.msg);
        } else if (strcmp(bi->name, "cpu") != 0) {
            const char *u = ss_backend_unavailable(bi);
            snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s: no usable device%s%.160s%s",
                     why[0] ? "; " : "", bi->name, u ? " (" : "", u ? u : "", u ? ")" : "");
        }
    }
    return ss_fail(err, SS_E_DEVICE, "--device auto: no usable device (%s)", why);
}

ss_status ss_backend_open_for(const char *device, const ss_backend_params *p, uint64_t mem_need, ss_backend **out,
                              char *note, size_t note_size, char *warn, size_t warn_size, ss_error *err)
{
    char name[32];
    int index = 0;
    const char *colon = strchr(device, ':');
    size_t nlen = colon ? (size_t)(colon - device) : strlen(device);
    if (nlen == 0 || nlen >= sizeof name)
        return ss_fail(err, SS_E_USAGE, "--device %s: expected auto, cpu, cuda, cuda:N or mps", device);
    memcpy(name, device, nlen);
    name[nlen] = '\0';
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || v < 0 || v > 1024)
            return ss_fail(err, SS_E_USAGE, "--device %s: bad device index '%s'", device, colon + 1);
        index = (int)v;
    }
    if (note && note_size)
        note[0] = '\0';
    if (warn && warn_size)
        warn[0] = '\0';

    if (strcmp(name, "auto") == 0) {
        if (colon)
            return ss_fail(err, SS_E_USAGE, "--device %s: auto takes no index", device);
        return ss_backend_open_auto(backends, p, mem_need, out, note, note_size, warn, warn_size, err);
    }

    if (strcmp(name, "cpu") != 0 && strcmp(name, "cuda") != 0 && strcmp(name, "mps") != 0)
        return ss_fail(err, SS_E_USAGE, "--device %s: unknown device (expected auto, cpu, cuda, cuda:N or mps)",
                       device);
    const ss_backend_iface *bi = ss_backend_find(name);
    if (!bi) {
        if (strcmp(name, "cuda") == 0)
            return ss_fail(err, SS_E_DEVICE, "--device %s: this stemsplit was built without CUDA support "
                           "(rebuild with `make CUDA=1` on a machine with nvcc)", device);
#ifdef __APPLE__
        return ss_fail(err, SS_E_DEVICE, "--device %s: this stemsplit was built without Metal support", device);
#else
        return ss_fail(err, SS_E_DEVICE, "--device %s: Metal (mps) is only available on Apple machines", device);
#endif
    }
    int count = bi->device_count();
    const char *unavail = ss_backend_unavailable(bi);
    if (count == 0 && unavail)
        return ss_fail(err, SS_E_DEVICE, "--device %s: no CUDA device available (%s)", device, unavail);
    if (index >= count)
        return ss_fail(err, SS_E_DEVICE, "--device %s: no such device (%d %s device%s found)", device,
                       count, bi->name, count == 1 ? "" : "s");
    ss_status st = start(bi, index, p, out, err);
    if (st == SS_OK && note)
        snprintf(note, note_size, "using %s:%d (%s)", bi->name, index, (*out)->dev.name);
    return st;
}

ss_status ss_backend_open_iface(const ss_backend_iface *bi, int index, const ss_backend_params *p, ss_backend **out,
                                ss_error *err)
{
    if (!bi || !p || !out)
        return ss_fail(err, SS_E_INTERNAL, "ss_backend_open_iface: NULL argument");
    if (bi->api_version != SS_BACKEND_API_VERSION)
        return ss_fail(err, SS_E_DEVICE, "backend %s: API version %d, this stemsplit has %d", bi->name,
                       bi->api_version, SS_BACKEND_API_VERSION);
    if (index < 0 || index >= bi->device_count())
        return ss_fail(err, SS_E_DEVICE, "%s:%d: no such device", bi->name, index);
    return start(bi, index, p, out, err);
}

void ss_backend_close(ss_backend *be)
{
    if (!be)
        return;
    if (be->prof) {
        double tot = 0;
        for (int i = 0; i < SS_PROF_OPS && be->prof[i].op; i++)
            tot += be->prof[i].seconds;
        fprintf(stderr, "profile (%s): %.3f s in ops\n", be->iface->name, tot);
        for (int i = 0; i < SS_PROF_OPS && be->prof[i].op; i++)
            fprintf(stderr, "  %-18s %8ld calls %9.3f s %5.1f%%\n", be->prof[i].op, be->prof[i].calls,
                    be->prof[i].seconds, tot > 0 ? 100.0 * be->prof[i].seconds / tot : 0.0);
        free(be->prof);
    }
    be->iface->free(be->ctx);
    if (be->ref)
        REF->free(be->ref);
    free(be);
}

const ss_backend_iface *ss_backend_iface_of(const ss_backend *be) { return be->iface; }
const ss_device_info *ss_backend_device(const ss_backend *be) { return &be->dev; }
int ss_backend_threads(const ss_backend *be) { return be->threads; }

int ss_graph_available(const ss_backend *be)
{
    return be->iface->graph_begin && be->iface->graph_end && be->iface->graph_launch && be->iface->graph_free &&
           !be->prof;
}

int ss_backend_generation(const ss_backend *be, unsigned long *gen)
{
    if (!be->iface->generation)
        return 0;
    *gen = be->iface->generation(be->ctx);
    return 1;
}

ss_status ss_graph_begin(ss_backend *be, ss_error *err)
{
    if (be->err.code != SS_OK)
        return ss_backend_status(be, err);
    return be->iface->graph_begin(be->ctx, err);
}

ss_status ss_graph_end(ss_backend *be, void **graph, ss_error *err)
{
    *graph = NULL;
    ss_status s = be->iface->graph_end(be->ctx, graph, err);
    if (s == SS_OK && be->err.code != SS_OK) {          /* an op failed while recording */
        s = ss_backend_status(be, err);
        be->iface->graph_free(be->ctx, *graph);
        *graph = NULL;
    }
    if (s != SS_OK)
        ss_error_clear(&be->err);
    return s;
}

ss_status ss_graph_launch(ss_backend *be, void *graph, ss_error *err)
{
    if (be->err.code != SS_OK)
        return ss_backend_status(be, err);
    return be->iface->graph_launch(be->ctx, graph, err);
}

void ss_graph_free(ss_backend *be, void *graph)
{
    if (graph)
        be->iface->graph_free(be->ctx, graph);
}

ss_precision ss_backend_precision(const ss_backend *be)
{
    return be->iface->precision ? be->iface->precision(be->ctx) : SS_PREC_FP32;
}

ss_status ss_backend_status(ss_backend *be, ss_error *err)
{
    if (be->err.code == SS_OK && be->iface->synchronize)
        be->iface->synchronize(be->ctx, &be->err);
    return ss_backend_check(be, err);
}

ss_status ss_backend_check(ss_backend *be, ss_error *err)
{
    ss_status st = be->err.code;
    if (st != SS_OK) {
        ss_fail(err, st, "%s", be->err.msg);
        ss_error_clear(&be->err);
    }
    return st;
}

/* ---- buffers -------------------------------------------------------------------- */

#define LIVE(be) ((be)->err.code == SS_OK)

float *ss_alloc(ss_backend *be, size_t n)
{
    if (!LIVE(be))
        return NULL;
    float *p = be->iface->alloc(be->ctx, (n ? n : 1) * sizeof(float));
    if (!p)
        ss_fail(&be->err, SS_E_DEVICE, "%s: out of device memory allocating %zu MiB",
                be->dev.name, (n * sizeof(float)) >> 20);
    return p;
}

void ss_free(ss_backend *be, float *p)
{
    if (p)
        be->iface->release(be->ctx, p);
}

ss_status ss_upload(ss_backend *be, float *dst, const float *src, size_t n)
{
    if (!LIVE(be))
        return be->err.code;
    return be->iface->upload(be->ctx, dst, src, n * sizeof(float), &be->err);
}

ss_status ss_download(ss_backend *be, float *dst, const float *src, size_t n)
{
    if (!LIVE(be))
        return be->err.code;
    return be->iface->download(be->ctx, dst, src, n * sizeof(float), &be->err);
}

float *ss_host_alloc(ss_backend *be, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / sizeof(float))
        return NULL;
    if (be->iface->host_alloc && be->iface->host_free)
        return be->iface->host_alloc(be->ctx, n * sizeof(float));
    return malloc(n * sizeof(float));
}

void ss_host_free(ss_backend *be, float *p)
{
    if (!p)
        return;
    if (be->iface->host_alloc && be->iface->host_free)
        be->iface->host_free(be->ctx, p);
    else
        free(p);
}

int ss_downloads_overlap(const ss_backend *be)
{
    return be->iface->download_start && be->iface->download_wait;
}

ss_status ss_download_start(ss_backend *be, float *dst, const float *src, size_t n)
{
    if (!ss_downloads_overlap(be))
        return ss_download(be, dst, src, n);
    if (!LIVE(be))
        return be->err.code;
    return be->iface->download_start(be->ctx, dst, src, n * sizeof(float), &be->err);
}

ss_status ss_download_wait(ss_backend *be)
{
    if (!ss_downloads_overlap(be) || !LIVE(be))
        return be->err.code;
    return be->iface->download_wait(be->ctx, &be->err);
}

/* ---- the reference fallback on host mirrors -----------------------------------------
 * An op a backend leaves NULL runs the reference backend's (the CPU's) entry.
 * A backend whose memory is host memory lets it run in place.  For any
 * other, inputs are downloaded into host mirrors, the reference op runs, and the
 * output is uploaded back.  mirrors[] are freed by fb_end(). */

typedef struct fallback {
    ss_backend *be;
    void *host[8];          /* host mirrors to free   */
    int n;
    int synced;             /* host memory: queued device work finished */
} fallback;

/* Host view of `n` floats of device memory `p`; copies them when `load`.
 * Memory that is the host's is used in place, once the backend's queued work
 * (which may still write it, or read what the reference op will overwrite) is done. */
static float *fb_view(fallback *fb, const float *p, size_t n, int load)
{
    ss_backend *be = fb->be;
    if (p && be->iface->host_memory && be->iface->synchronize && !fb->synced) {
        fb->synced = 1;
        if (be->iface->synchronize(be->ctx, &be->err) != SS_OK)
            return NULL;
    }
    if (!p || be->iface->host_memory)
        return (float *)p;
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (!h) {
        ss_fail(&be->err, SS_E_NOMEM, "out of host memory in the CPU fallback (%zu MiB)", (n * 4) >> 20);
        return NULL;
    }
    fb->host[fb->n++] = h;
    if (load && be->iface->download(be->ctx, h, p, n * sizeof *h, &be->err) != SS_OK)
        return NULL;
    return h;
}

/* The reference backend's context for this backend's fallbacks, started on
 * first use with the same threads; 0 (and the sticky error) when it cannot be. */
static int ref_ready(ss_backend *be)
{
    if (be->ref)
        return 1;
    ss_backend_params rp = {.device = 0, .threads = be->threads, .precision = SS_PREC_FP32};
    return REF->init(&rp, &be->ref, &be->err) == SS_OK;
}

/* Upload the result mirror `h` to device `p` (no-op on host memory) and free
 * mirrors; st is the reference op's status (its error already recorded). */
static void fb_end(fallback *fb, ss_status st, float *p, const float *h, size_t n)
{
    ss_backend *be = fb->be;
    if (st == SS_OK && p && h != p && LIVE(be))
        be->iface->upload(be->ctx, p, h, n * sizeof *h, &be->err);
    for (int i = 0; i < fb->n; i++)
        free(fb->host[i]);
}

static double prof_begin(ss_backend *be);
static void prof_end(ss_backend *be, const char *op, double t0);

/* Dispatch: the backend's op when present, else the block after the macro. */
#define DISPATCH(be, op, ...)                                                  \
    do {                                                                       \
        if (!LIVE(be))                                                         \
            return;                                                            \
        if ((be)->iface->op) {                                                 \
            double t0_ = (be)->prof ? prof_begin(be) : 0.0;                    \
            (be)->iface->op((be)->ctx, __VA_ARGS__, &(be)->err);               \
            if ((be)->prof)                                                    \
                prof_end(be, #op, t0_);                                        \
            return;                                                            \
        }                                                                      \
    } while (0)

/* The views are in place and the reference backend is started. */
#define FB_OK(be) (LIVE(be) && ref_ready(be))

/* STEMSPLIT_PROFILE=1: every op the backend runs itself is synchronised and
 * timed; ss_backend_close() prints the totals per op on stderr.
 * STEMSPLIT_PROFILE=calls also prints each call of 1 ms or more as it ends,
 * numbered in order (where a run's first pass spends its first-use costs). */
static double prof_begin(ss_backend *be)
{
    if (be->iface->synchronize)
        be->iface->synchronize(be->ctx, &be->err);
    return ss_seconds();
}

static void prof_end(ss_backend *be, const char *op, double t0)
{
    if (be->iface->synchronize)
        be->iface->synchronize(be->ctx, &be->err);
    double dt = ss_seconds() - t0;
    be->prof_seq++;
    if (be->prof_calls && dt >= 1e-3)       /* first uses: kernels loaded, plans made, buffers grown */
        fprintf(stderr, "profile (%s): op %ld, %s: %.1f ms\n", be->iface->name, be->prof_seq, op, 1e3 * dt);
    for (int i = 0; i < SS_PROF_OPS; i++) {
        if (!be->prof[i].op || strcmp(be->prof[i].op, op) == 0) {
            be->prof[i].op = op;
            be->prof[i].calls++;
            be->prof[i].seconds += dt;
            return;
        }
    }
}

void ss_fill(ss_backend *be, float *y, float v, size_t n)
{
    DISPATCH(be, fill, y, v, n);
    fallback fb = {be, {0}, 0, 0};
    float *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->fill(be->ref, hy, v, n, &be->err) : SS_OK, y, hy, n);
}

void ss_copy2d(ss_backend *be, float *dst, size_t dpitch, const float *src, size_t spitch,
               size_t rows, size_t cols)
{
    DISPATCH(be, copy2d, dst, dpitch, src, spitch, rows, cols);
    if (rows == 0 || cols == 0)
        return;
    size_t dn = (rows - 1) * dpitch + cols, sn = (rows - 1) * spitch + cols;
    fallback fb = {be, {0}, 0, 0};
    float *hd = fb_view(&fb, dst, dn, 1);   /* keep what lies between the rows */
    float *hs = fb_view(&fb, src, sn, 1);
    fb_end(&fb, FB_OK(be) ? REF->copy2d(be->ref, hd, dpitch, hs, spitch, rows, cols, &be->err) : SS_OK, dst, hd, dn);
}

void ss_add(ss_backend *be, float *y, const float *a, const float *b, size_t n)
{
    DISPATCH(be, add, y, a, b, n);
    fallback fb = {be, {0}, 0, 0};
    float *ha = fb_view(&fb, a, n, 1), *hb = fb_view(&fb, b, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->add(be->ref, hy, ha, hb, n, &be->err) : SS_OK, y, hy, n);
}

void ss_mul(ss_backend *be, float *y, const float *a, const float *b, size_t n)
{
    DISPATCH(be, mul, y, a, b, n);
    fallback fb = {be, {0}, 0, 0};
    float *ha = fb_view(&fb, a, n, 1), *hb = fb_view(&fb, b, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->mul(be->ref, hy, ha, hb, n, &be->err) : SS_OK, y, hy, n);
}

void ss_scale(ss_backend *be, float *y, const float *x, float alpha, size_t n)
{
    DISPATCH(be, scale, y, x, alpha, n);
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->scale(be->ref, hy, hx, alpha, n, &be->err) : SS_OK, y, hy, n);
}

void ss_channel_affine(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len,
                       const float *scale, const float *bias)
{
    DISPATCH(be, channel_affine, y, x, batch, ch, len, scale, bias);
    size_t n = (size_t)batch * (size_t)ch * (size_t)len;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    float *hs = fb_view(&fb, scale, (size_t)ch, 1), *hb = fb_view(&fb, bias, (size_t)ch, 1);
    fb_end(&fb, FB_OK(be) ? REF->channel_affine(be->ref, hy, hx, batch, ch, len, hs, hb, &be->err) : SS_OK, y, hy, n);
}

void ss_row_affine(ss_backend *be, float *y, const float *x, int rows, int64_t len,
                   const float *scale, const float *shift)
{
    DISPATCH(be, row_affine, y, x, rows, len, scale, shift);
    size_t n = (size_t)rows * (size_t)len;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hs = fb_view(&fb, scale, (size_t)rows, 1);
    float *ht = fb_view(&fb, shift, (size_t)rows, 1), *hy = n ? fb_view(&fb, y, n, 0) : y;
    fb_end(&fb, FB_OK(be) ? REF->row_affine(be->ref, hy, hx, rows, len, hs, ht, &be->err) : SS_OK, y, hy, n);
}

void ss_row_moments(ss_backend *be, float *mean, float *std, const float *x, int rows, int64_t len)
{
    DISPATCH(be, row_moments, mean, std, x, rows, len);
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, (size_t)rows * (size_t)len, 1);
    float *hm = fb_view(&fb, mean, (size_t)rows, 0), *hs = fb_view(&fb, std, (size_t)rows, 0);
    ss_status st = FB_OK(be) ? REF->row_moments(be->ref, hm, hs, hx, rows, len, &be->err) : SS_OK;
    if (st == SS_OK && hs != std && LIVE(be))
        be->iface->upload(be->ctx, std, hs, (size_t)rows * sizeof *hs, &be->err);
    fb_end(&fb, st, mean, hm, (size_t)rows);
}

void ss_standardize_coef(ss_backend *be, float *scale, float *shift, const float *mean, const float *std, int n,
                         float eps)
{
    DISPATCH(be, standardize_coef, scale, shift, mean, std, n, eps);
    size_t un = n > 0 ? (size_t)n : 0;
    fallback fb = {be, {0}, 0, 0};
    float *hm = fb_view(&fb, mean, un, 1), *hs = fb_view(&fb, std, un, 1);
    float *hsc = fb_view(&fb, scale, un, 0), *hsh = fb_view(&fb, shift, un, 0);
    ss_status st = FB_OK(be) ? REF->standardize_coef(be->ref, hsc, hsh, hm, hs, n, eps, &be->err) : SS_OK;
    if (st == SS_OK && hsh != shift && LIVE(be))
        be->iface->upload(be->ctx, shift, hsh, un * sizeof *hsh, &be->err);
    fb_end(&fb, st, scale, hsc, un);
}

void ss_gelu(ss_backend *be, float *y, const float *x, size_t n)
{
    DISPATCH(be, gelu, y, x, n);
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->gelu(be->ref, hy, hx, n, &be->err) : SS_OK, y, hy, n);
}

void ss_activate(ss_backend *be, float *y, const float *x, size_t n, ss_act act, float alpha)
{
    if (LIVE(be) && ((int)act < 0 || act >= SS_ACT_COUNT)) {
        ss_fail(&be->err, SS_E_INTERNAL, "activate: unknown activation %d", (int)act);
        return;
    }
    DISPATCH(be, activate, y, x, n, act, alpha);
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->activate(be->ref, hy, hx, n, act, alpha, &be->err) : SS_OK, y, hy, n);
}

void ss_relu(ss_backend *be, float *y, const float *x, size_t n) { ss_activate(be, y, x, n, SS_ACT_RELU, 0.0f); }
void ss_sigmoid(ss_backend *be, float *y, const float *x, size_t n) { ss_activate(be, y, x, n, SS_ACT_SIGMOID, 0.0f); }
void ss_tanh(ss_backend *be, float *y, const float *x, size_t n) { ss_activate(be, y, x, n, SS_ACT_TANH, 0.0f); }
void ss_silu(ss_backend *be, float *y, const float *x, size_t n) { ss_activate(be, y, x, n, SS_ACT_SILU, 0.0f); }

void ss_glu(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len)
{
    DISPATCH(be, glu, y, x, batch, ch, len);
    size_t n = (size_t)batch * (size_t)ch * (size_t)len;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, 2 * n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->glu(be->ref, hy, hx, batch, ch, len, &be->err) : SS_OK, y, hy, n);
}

void ss_softmax(ss_backend *be, float *y, const float *x, int rows, int len, float scale)
{
    DISPATCH(be, softmax, y, x, rows, len, scale);
    size_t n = (size_t)rows * (size_t)len;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->softmax(be->ref, hy, hx, rows, len, scale, &be->err) : SS_OK, y, hy, n);
}

int ss_attention_fused(const ss_backend *be, const ss_attn_desc *d)
{
    const ss_backend_iface *bi = be->iface;
    if (d->heads <= 0 || d->nq <= 0 || d->nk <= 0 || d->hd <= 0)
        return 0;
    ss_attn_desc one = *d;
    if (!bi->attention_batched)          /* the wrapper runs the items one by one */
        one.batch = 1;
    return bi->attention && bi->attention_ok && bi->attention_ok(be->ctx, &one);
}

void ss_attention(ss_backend *be, const ss_attn_desc *d, const float *q, const float *k, const float *v, float *o)
{
    if (!ss_attention_fused(be, d)) {
        if (LIVE(be))
            ss_fail(&be->err, SS_E_INTERNAL, "%s backend: no fused attention for %d heads of %d x %d (head size %d)",
                    be->iface->name, d->heads, d->nq, d->nk, d->hd);
        return;
    }
    if (d->batch > 1 && !be->iface->attention_batched) {
        ss_attn_desc one = *d;
        one.batch = 1;
        for (int i = 0; i < d->batch && LIVE(be); i++) {
            ss_attention(be, &one, q, k, v, o);
            q += d->stride_q, k += d->stride_k, v += d->stride_v, o += d->stride_o;
        }
        return;
    }
    DISPATCH(be, attention, d, q, k, v, o);
}

void ss_transpose(ss_backend *be, float *y, const float *x, int batch, int rows, int cols)
{
    DISPATCH(be, transpose, y, x, batch, rows, cols);
    size_t n = (size_t)batch * (size_t)rows * (size_t)cols;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    fb_end(&fb, FB_OK(be) ? REF->transpose(be->ref, hy, hx, batch, rows, cols, &be->err) : SS_OK, y, hy, n);
}

void ss_group_norm(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len,
                   int groups, const float *gamma, const float *beta, float eps)
{
    DISPATCH(be, group_norm, y, x, batch, ch, len, groups, gamma, beta, eps);
    size_t n = (size_t)batch * (size_t)ch * (size_t)len;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    float *hg = fb_view(&fb, gamma, (size_t)ch, 1), *hb = fb_view(&fb, beta, (size_t)ch, 1);
    fb_end(&fb, FB_OK(be) ? REF->group_norm(be->ref, hy, hx, batch, ch, len, groups, hg, hb, eps, &be->err) : SS_OK,
           y, hy, n);
}

void ss_group_norm_gelu(ss_backend *be, float *y, const float *x, const float *bias, int batch, int ch, int64_t len,
                        int groups, const float *gamma, const float *beta, float eps)
{
    DISPATCH(be, group_norm_gelu, y, x, bias, batch, ch, len, groups, gamma, beta, eps);
    if (bias) {
        ss_channel_affine(be, y, x, batch, ch, len, NULL, bias);
        x = y;
    }
    ss_group_norm(be, y, x, batch, ch, len, groups, gamma, beta, eps);
    ss_gelu(be, y, y, (size_t)batch * (size_t)ch * (size_t)len);
}

void ss_gru(ss_backend *be, const ss_gru_desc *d, const float *x, const float *w_ih, const float *w_hh,
            const float *b_ih, const float *b_hh, float *h, float *y, float *scratch)
{
    if (LIVE(be) && (d->batch < 1 || d->seq < 0 || d->in < 1 || d->hidden < 1)) {
        ss_fail(&be->err, SS_E_INTERNAL, "gru: batch %d, %d steps of %d inputs, hidden size %d", d->batch,
                d->seq, d->in, d->hidden);
        return;
    }
    if (d->seq == 0)
        return;
    DISPATCH(be, gru, d, x, w_ih, w_hh, b_ih, b_hh, h, y, scratch);
    size_t g3 = 3 * (size_t)d->hidden, nh = (size_t)d->batch * (size_t)d->hidden, ny = nh * (size_t)d->seq;
    size_t nx = (size_t)d->batch * (size_t)d->seq * (size_t)d->in;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, nx, 1), *hwi = fb_view(&fb, w_ih, g3 * (size_t)d->in, 1);
    float *hwh = fb_view(&fb, w_hh, g3 * (size_t)d->hidden, 1);
    float *hbi = fb_view(&fb, b_ih, g3, 1), *hbh = fb_view(&fb, b_hh, g3, 1);
    float *hh = fb_view(&fb, h, nh, 1), *hy = y == x ? hx : fb_view(&fb, y, ny, 0);
    float *hs = fb_view(&fb, scratch, ss_gru_scratch(d), 0);
    ss_status st = FB_OK(be) ? REF->gru(be->ref, d, hx, hwi, hwh, hbi, hbh, hh, hy, hs, &be->err) : SS_OK;
    if (st == SS_OK && hh != h && LIVE(be))
        be->iface->upload(be->ctx, h, hh, nh * sizeof *hh, &be->err);
    fb_end(&fb, st, y, hy, ny);
}

/* ---- named kernels (a model's fusions) ------------------------------------------ */

const void *ss_backend_kernel(const ss_backend *be, const char *name)
{
    return be->iface->kernel && name ? be->iface->kernel(be->ctx, name) : NULL;
}

void *ss_backend_kernel_ctx(const ss_backend *be) { return be->ctx; }

ss_error *ss_kernel_begin(ss_backend *be)
{
    if (!LIVE(be))
        return NULL;
    be->kernel_t0 = be->prof ? prof_begin(be) : 0.0;
    return &be->err;
}

void ss_kernel_end(ss_backend *be, const char *name)
{
    if (be->prof)
        prof_end(be, name, be->kernel_t0);
}

void ss_lane(ss_backend *be, ss_lane_op op)
{
    /* back to lane 0 even after a failure, so that later work is queued in order */
    if (be->iface->lane && (op != SS_LANE_FORK || LIVE(be)))
        be->iface->lane(be->ctx, op, &be->err);
}

void ss_bias_gelu(ss_backend *be, float *y, const float *x, const float *bias, int batch, int ch, int64_t len)
{
    size_t n = (size_t)batch * (size_t)ch * (size_t)len;
    if (bias) {
        DISPATCH(be, bias_gelu, y, x, bias, batch, ch, len);
        ss_channel_affine(be, y, x, batch, ch, len, NULL, bias);
        x = y;
    }
    ss_gelu(be, y, x, n);
}

void ss_bias_glu(ss_backend *be, float *y, float *x, const float *bias, int batch, int ch, int64_t len)
{
    if (bias) {
        DISPATCH(be, bias_glu, y, x, bias, batch, ch, len);
        ss_channel_affine(be, x, x, batch, 2 * ch, len, NULL, bias);
    }
    ss_glu(be, y, x, batch, ch, len);
}

void ss_instance_norm(ss_backend *be, float *y, const float *x, int batch, int ch, int64_t len, const float *gamma,
                      const float *beta, float eps)
{
    ss_group_norm(be, y, x, batch, ch, len, ch, gamma, beta, eps);
}

void ss_rms_norm(ss_backend *be, float *y, const float *x, int rows, int dim, const float *gamma, float eps,
                 ss_rms_form form)
{
    DISPATCH(be, rms_norm, y, x, rows, dim, gamma, eps, form);
    size_t n = (size_t)rows * (size_t)dim;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    float *hg = fb_view(&fb, gamma, (size_t)dim, 1);
    fb_end(&fb, FB_OK(be) ? REF->rms_norm(be->ref, hy, hx, rows, dim, hg, eps, form, &be->err) : SS_OK, y, hy, n);
}

void ss_rope(ss_backend *be, float *y, const float *x, int batch, int seq, int heads, int hd, int ld,
             const float *cs)
{
    if (LIVE(be) && (hd % 2 != 0 || (int64_t)heads * hd > ld)) {
        ss_fail(&be->err, SS_E_INTERNAL, "rope: %d heads of size %d in rows of %d (the size must be even)", heads,
                hd, ld);
        return;
    }
    DISPATCH(be, rope, y, x, batch, seq, heads, hd, ld, cs);
    size_t n = (size_t)batch * (size_t)seq * (size_t)ld;
    fallback fb = {be, {0}, 0, 0};
    /* y is loaded: the columns past heads * hd are kept */
    float *hx = fb_view(&fb, x, n, 1), *hy = y == x ? hx : fb_view(&fb, y, n, 1);
    float *hc = fb_view(&fb, cs, (size_t)seq * (size_t)hd, 1);
    fb_end(&fb, FB_OK(be) ? REF->rope(be->ref, hy, hx, batch, seq, heads, hd, ld, hc, &be->err) : SS_OK, y, hy, n);
}

void ss_layer_norm(ss_backend *be, float *y, const float *x, int rows, int dim,
                   const float *gamma, const float *beta, float eps)
{
    DISPATCH(be, layer_norm, y, x, rows, dim, gamma, beta, eps);
    size_t n = (size_t)rows * (size_t)dim;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, n, 1), *hy = fb_view(&fb, y, n, 0);
    float *hg = fb_view(&fb, gamma, (size_t)dim, 1), *hb = fb_view(&fb, beta, (size_t)dim, 1);
    fb_end(&fb, FB_OK(be) ? REF->layer_norm(be->ref, hy, hx, rows, dim, hg, hb, eps, &be->err) : SS_OK, y, hy, n);
}

/* Elements a strided matrix operand spans. */
static size_t span(int batch, int64_t stride, int rows, int ld)
{
    return (size_t)(batch - 1) * (size_t)stride + (size_t)rows * (size_t)ld;
}

void ss_gemm(ss_backend *be, const ss_gemm_desc *d, const float *a, const float *b, float *c)
{
    DISPATCH(be, gemm, d, a, b, c);
    size_t na = span(d->batch, d->stride_a, d->trans_a ? d->k : d->m, d->lda);
    size_t nb = span(d->batch, d->stride_b, d->trans_b ? d->n : d->k, d->ldb);
    size_t nc = span(d->batch, d->stride_c, d->m, d->ldc);
    fallback fb = {be, {0}, 0, 0};
    float *ha = fb_view(&fb, a, na, 1), *hb = fb_view(&fb, b, nb, 1);
    float *hc = fb_view(&fb, c, nc, d->beta != 0.0f);
    fb_end(&fb, FB_OK(be) ? REF->gemm(be->ref, d, ha, hb, hc, &be->err) : SS_OK, c, hc, nc);
}

void ss_gemm_bias(ss_backend *be, const ss_gemm_desc *d, const float *a, const float *b, const float *bias,
                  const float *ones, float *c)
{
    if (!LIVE(be))
        return;
    if (d->batch != 1) {
        ss_fail(&be->err, SS_E_INTERNAL, "gemm_bias: batch %d (1 expected)", d->batch);
        return;
    }
    DISPATCH(be, gemm_bias, d, a, b, bias, c);
    ss_gemm_desc r1 = {.m = d->m, .n = d->n, .k = 1, .alpha = 1.0f, .beta = d->beta, .lda = 1, .ldb = d->n,
                       .ldc = d->ldc, .batch = 1};
    ss_gemm(be, &r1, ones, bias, c);                                        /* C = beta C + 1 bias^T */
    ss_gemm_desc p = *d;
    p.beta = 1.0f;
    ss_gemm(be, &p, a, b, c);                                               /* C += alpha A B        */
}

void ss_conv2d(ss_backend *be, const ss_conv2d_desc *d, const float *x, const float *w,
               const float *bias, float *y)
{
    DISPATCH(be, conv2d, d, x, w, bias, y);
    int oh = ss_conv_out(d->h, d->kh, d->sh, d->ph, d->dh), ow = ss_conv_out(d->w, d->kw, d->sw, d->pw, d->dw);
    size_t nx = (size_t)d->batch * d->cin * d->h * d->w, nw = (size_t)d->cout * d->cin * d->kh * d->kw;
    size_t ny = (size_t)d->batch * d->cout * oh * ow;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, nx, 1), *hw = fb_view(&fb, w, nw, 1);
    float *hb = fb_view(&fb, bias, (size_t)d->cout, 1);
    float *hy = fb_view(&fb, y, ny, 0);
    fb_end(&fb, FB_OK(be) ? REF->conv2d(be->ref, d, hx, hw, hb, hy, &be->err) : SS_OK, y, hy, ny);
}

void ss_conv_transpose2d(ss_backend *be, const ss_convt2d_desc *d, const float *x, const float *w,
                         const float *bias, float *y)
{
    DISPATCH(be, conv_transpose2d, d, x, w, bias, y);
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    size_t nx = (size_t)d->batch * d->cin * d->h * d->w, nw = (size_t)d->cin * d->cout * d->kh * d->kw;
    size_t ny = (size_t)d->batch * d->cout * oh * ow;
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, nx, 1), *hw = fb_view(&fb, w, nw, 1);
    float *hb = fb_view(&fb, bias, (size_t)d->cout, 1), *hy = fb_view(&fb, y, ny, 0);
    fb_end(&fb, FB_OK(be) ? REF->conv_transpose2d(be->ref, d, hx, hw, hb, hy, &be->err) : SS_OK, y, hy, ny);
}

void ss_conv_transpose2d_crop(ss_backend *be, const ss_convt2d_desc *d, const ss_convt_crop *c, const float *x,
                              const float *w, const float *bias, float *tmp, float *y)
{
    if (!LIVE(be))
        return;
    int oh = ss_convt_out(d->h, d->kh, d->sh), ow = ss_convt_out(d->w, d->kw, d->sw);
    if (c->h0 < 0 || c->w0 < 0 || c->oh < 0 || c->ow < 0 || c->h0 > oh - c->oh || c->w0 > ow - c->ow) {
        ss_fail(&be->err, SS_E_INTERNAL, "conv_transpose2d_crop: window %dx%d at (%d, %d) of a %dx%d output", c->oh,
                c->ow, c->h0, c->w0, oh, ow);
        return;
    }
    if (d->batch <= 0 || d->cout <= 0 || c->oh == 0 || c->ow == 0)
        return;
    DISPATCH(be, conv_transpose2d_crop, d, c, x, w, bias, y);
    ss_conv_transpose2d(be, d, x, w, bias, tmp);
    /* rows of the window (c->ow contiguous floats) as the innermost extent, so
     * that a backend copies them a row at a time */
    const int64_t shape[4] = {1, (int64_t)d->batch * d->cout, c->oh, c->ow};
    const int64_t ss[4] = {0, (int64_t)oh * ow, ow, 1}, ds[4] = {0, (int64_t)c->oh * c->ow, c->ow, 1};
    ss_copy4d(be, y, ds, tmp + (size_t)c->h0 * ow + c->w0, ss, shape);
    if (c->gelu)
        ss_gelu(be, y, y, (size_t)d->batch * d->cout * c->oh * c->ow);
}

/* Elements a strided 4-D view spans (0 for an empty shape). */
/* Lowest and highest element offset a strided 4-D view reaches; 0 when empty. */
static int span4(const int64_t stride[4], const int64_t shape[4], int64_t *lo, int64_t *hi)
{
    *lo = *hi = 0;
    for (int i = 0; i < 4; i++) {
        if (shape[i] <= 0)
            return 0;
        int64_t e = (shape[i] - 1) * stride[i];
        *(e < 0 ? lo : hi) += e;
    }
    return 1;
}

void ss_copy4d(ss_backend *be, float *dst, const int64_t dstride[4], const float *src, const int64_t sstride[4],
               const int64_t shape[4])
{
    DISPATCH(be, copy4d, dst, dstride, src, sstride, shape);
    int64_t dlo, dhi, slo, shi;
    if (!span4(dstride, shape, &dlo, &dhi) || !span4(sstride, shape, &slo, &shi))
        return;
    size_t nd = (size_t)(dhi - dlo + 1), ns = (size_t)(shi - slo + 1);
    fallback fb = {be, {0}, 0, 0};
    /* views of [ptr + lo, ptr + hi]; the kernel gets the element at offset 0 */
    float *hd = fb_view(&fb, dst + dlo, nd, 1), *hs = fb_view(&fb, src + slo, ns, 1);
    fb_end(&fb, FB_OK(be) && hd && hs ? REF->copy4d(be->ref, hd - dlo, dstride, hs - slo, sstride, shape, &be->err) : SS_OK,
           dst + dlo, hd, nd);
}

void ss_stft(ss_backend *be, const ss_stft_desc *d, const float *x, float *spec)
{
    DISPATCH(be, stft, d, x, spec);
    size_t nx = (size_t)d->batch * (size_t)d->length;
    size_t ns = (size_t)d->batch * 2 * (size_t)(d->n_fft / 2 + 1) * (size_t)ss_stft_frames(d);
    fallback fb = {be, {0}, 0, 0};
    float *hx = fb_view(&fb, x, nx, 1), *hs = fb_view(&fb, spec, ns, 0);
    fb_end(&fb, FB_OK(be) ? REF->stft(be->ref, d, hx, hs, &be->err) : SS_OK, spec, hs, ns);
}

void ss_istft(ss_backend *be, const ss_stft_desc *d, const float *spec, float *x)
{
    DISPATCH(be, istft, d, spec, x);
    size_t nx = (size_t)d->batch * (size_t)d->length;
    size_t ns = (size_t)d->batch * 2 * (size_t)(d->n_fft / 2 + 1) * (size_t)ss_stft_frames(d);
    fallback fb = {be, {0}, 0, 0};
    float *hs = fb_view(&fb, spec, ns, 1), *hx = fb_view(&fb, x, nx, 0);
    fb_end(&fb, FB_OK(be) ? REF->istft(be->ref, d, hs, hx, &be->err) : SS_OK, x, hx, nx);
}

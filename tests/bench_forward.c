/* bench_forward - time the model's forward pass alone (no decoding, no
 * overlap-add, no encoding): N calls on one batch of segments, after three
 * warm-up calls (on CUDA: the direct pass, the recorded one, a replay), then
 * one small download so that every call has finished; each warm-up call is
 * timed on its own (the first one's wall time is the process's first-use costs:
 * kernels loaded, plans made, buffers allocated).  Built with the tests,
 * not run by `make check`; docs/performance.md quotes it.
 *
 *   bench_forward MODEL.safetensors [N=50] [BATCH=1] [COPY=0] [DEVICE=cuda] [THREADS=0]
 *
 * THREADS: the CPU backend's threads (0: one per core).
 * COPY=1 also uploads the input and starts the download of the output around
 * each call, as the engine queues them (page-locked host buffers where the
 * backend has them). */
#include "backend.h"
#include "clock.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.safetensors [N=50] [BATCH=1] [COPY=0] [DEVICE=cuda] [THREADS=0]\n", argv[0]);
        return 64;
    }
    int n = argc > 2 ? atoi(argv[2]) : 50, batch = argc > 3 ? atoi(argv[3]) : 1, copy = argc > 4 && atoi(argv[4]);
    const char *device = argc > 5 ? argv[5] : "cuda";
    int threads = argc > 6 ? atoi(argv[6]) : 0;
    if (n < 1 || batch < 1 || batch > 64 || threads < 0) {
        fprintf(stderr, "%s: N >= 1, BATCH in 1..64 and THREADS >= 0 expected\n", argv[0]);
        return 64;
    }
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_backend_params bp = {.device = 0, .threads = threads, .precision = SS_PREC_AUTO};
    if (ss_backend_open(device, &bp, &be, NULL, 0, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        return 69;
    }
    if (ss_model_load(argv[1], be, &m, &err) != SS_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        ss_backend_close(be);
        return 65;
    }
    const ss_model_info *info = ss_model_get_info(m);
    int64_t len = info->segment_length;
    size_t nx = (size_t)batch * (size_t)info->channels * (size_t)len, ny = nx * (size_t)info->n_sources;
    float *x = ss_alloc(be, nx), *y = ss_alloc(be, ny);
    float *hx = ss_host_alloc(be, nx), *hy = ss_host_alloc(be, ny);
    int rc = 0;
    if (!x || !y || !hx || !hy) {
        fprintf(stderr, "%s: out of memory for a batch of %d\n", argv[0], batch);
        rc = 70;
        goto out;
    }
    for (size_t i = 0; i < nx; i++)              /* any audio-like values in [-0.5, 0.5) */
        hx[i] = (float)((i * 2654435761u) % 1000u) / 1000.0f - 0.5f;
    ss_upload(be, x, hx, nx);
    double t0 = 0.0, warm[3];
    ss_download(be, hy, x, 1);                       /* the upload done */
    for (int i = -3; i < n && rc == 0; i++) {
        if (i <= 0) {
            double t = ss_seconds();
            if (i > -3) {
                ss_download(be, hy, y, 1);           /* the warm-up call before done */
                warm[i + 2] = ss_seconds() - t0;
                t = ss_seconds();
            }
            t0 = t;
        }
        if (copy && i >= 0)
            ss_upload(be, x, hx, nx);
        if (ss_model_forward(m, x, y, batch, len, &err) != SS_OK)
            rc = 70;
        else if (copy && i >= 0)
            ss_download_start(be, hy, y, ny);
    }
    if (rc == 0 && ss_download_wait(be) == SS_OK && ss_download(be, hy, y, 1) == SS_OK &&
        ss_backend_check(be, &err) == SS_OK) {
        double t = ss_seconds() - t0;
        printf("%s, batch %d%s: %.3f ms per call, %.3f ms per segment (%d calls); warm-up calls %.1f, %.1f, "
               "%.1f ms\n", device, batch, copy ? ", with the copies" : "", 1e3 * t / n, 1e3 * t / n / batch, n,
               1e3 * warm[0], 1e3 * warm[1], 1e3 * warm[2]);
    } else {
        if (!err.msg[0])
            ss_backend_check(be, &err);
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        rc = 70;
    }
out:
    ss_host_free(be, hx);
    ss_host_free(be, hy);
    ss_free(be, x);
    ss_free(be, y);
    ss_model_free(m);
    ss_backend_close(be);
    return rc;
}

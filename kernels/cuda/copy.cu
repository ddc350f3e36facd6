/* copy.cu - transfers between host and device memory for the CUDA backend.
 *
 * upload and download run on the compute stream (download waits for it); download_start queues a
 * download that download_wait waits for.  host_alloc gives page-locked buffers (up to PINNED_MAX
 * each, plain memory beyond).  A transfer from or to one of those goes through a copy queue when the
 * context has them: a stream of its own (up, down) and a device buffer of its own (xq, yq), so that
 * the next batch's upload and this batch's download run beside the forward passes, the compute
 * stream only copying between those buffers and the op buffers.  Other transfers (and every
 * transfer while a graph is being recorded) run on the compute stream.
 */

#include "cuda_internal.h"

/* The compute stream and the copy queues have finished what was queued on them. */
static void transfers_idle(cuda_ctx *c)
{
    cudaStreamSynchronize(c->stream);
    if (c->copyq) {
        cudaStreamSynchronize(c->up);
        cudaStreamSynchronize(c->down);
    }
}

/* Whether [p, p + n) lies in one of cu_host_alloc's page-locked buffers. */
static int is_pinned(const cuda_ctx *c, const void *p, size_t n)
{
    for (int i = 0; i < (int)(sizeof c->pinned / sizeof *c->pinned); i++)
        if (c->pinned[i].p && (const char *)p >= (const char *)c->pinned[i].p &&
            (const char *)p + n <= (const char *)c->pinned[i].p + c->pinned[i].n)
            return 1;
    return 0;
}

/* A copy queue's device buffer *q of at least `bytes` (grown with both
 * queues idle), or NULL (the caller then copies on the compute stream). */
static float *queue_buffer(cuda_ctx *c, float **q, size_t *size, size_t bytes)
{
    if (*size >= bytes)
        return *q;
    transfers_idle(c);
    cudaFree(*q);
    *q = NULL;
    *size = 0;
    if (cudaMalloc((void **)q, bytes) != cudaSuccess) {
        cudaGetLastError();
        *q = NULL;
        return NULL;
    }
    *size = bytes;
    return *q;
}

ss_status cu_upload(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    if (c->copyq && !c->capturing && bytes && is_pinned(c, src, bytes) &&
        queue_buffer(c, &c->xq, &c->xq_size, bytes)) {
        /* up: wait until xq's last copy out is done, fill it, mark it landed;
         * compute: wait for that, copy it to dst (ops after it see dst) */
        cudaError_t e = cudaStreamWaitEvent(c->up, c->ev_xq_free, 0);
        int t = e == cudaSuccess ? tm_begin_on(c, c->up) : -1;
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->xq, src, bytes, cudaMemcpyHostToDevice, c->up);
        tm_end_on(c, t, TM_UPLOAD, bytes, c->up);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->ev_up, c->up);
        if (e == cudaSuccess)
            e = cudaStreamWaitEvent(c->stream, c->ev_up, 0);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(dst, c->xq, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->ev_xq_free, c->stream);
        return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "upload");
    }
    int t = tm_begin(c);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream);
    tm_end(c, t, TM_UPLOAD, bytes);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "upload");
}

ss_status cu_download(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    sample_memory(c);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
}

/* Page-locked host memory (copies to and from it need no staging and do not
 * block the host); plain memory above PINNED_MAX (a large --batch: locking
 * gigabytes would take them from the rest of the machine) or when the driver
 * will not lock that much. */
#define PINNED_MAX ((size_t)512 << 20)

void *cu_host_alloc(void *vctx, size_t bytes)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    void *p = NULL;
    cudaSetDevice(c->device);
    if (bytes <= PINNED_MAX && cudaHostAlloc(&p, bytes, cudaHostAllocDefault) == cudaSuccess) {
        for (int i = 0; i < (int)(sizeof c->pinned / sizeof *c->pinned); i++)
            if (!c->pinned[i].p) {
                c->pinned[i].p = p;
                c->pinned[i].n = bytes;
                break;
            }
        return p;
    }
    cudaGetLastError();
    return malloc(bytes);
}

void cu_host_free(void *vctx, void *ptr)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    transfers_idle(c);                           /* no copy of it still in flight */
    for (int i = 0; i < (int)(sizeof c->pinned / sizeof *c->pinned); i++)
        if (c->pinned[i].p == ptr)
            c->pinned[i].p = NULL;
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, ptr) == cudaSuccess && a.type == cudaMemoryTypeHost) {
        cudaFreeHost(ptr);
    } else {
        cudaGetLastError();
        free(ptr);
    }
}

ss_status cu_download_start(void *vctx, void *dst, const void *src, size_t bytes, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = cudaSuccess;
    if (c->copyq && !c->capturing && bytes && is_pinned(c, dst, bytes) &&
        queue_buffer(c, &c->yq, &c->yq_size, bytes)) {
        /* compute: wait until the last download out of yq landed, copy src into
         * it; down: wait for that, download it (the next forward pass may
         * overwrite src meanwhile) */
        e = cudaStreamWaitEvent(c->stream, c->dl_event, 0);
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(c->yq, src, bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->ev_yq_full, c->stream);
        if (e == cudaSuccess)
            e = cudaStreamWaitEvent(c->down, c->ev_yq_full, 0);
        int t = e == cudaSuccess ? tm_begin_on(c, c->down) : -1;
        if (e == cudaSuccess)
            e = cudaMemcpyAsync(dst, c->yq, bytes, cudaMemcpyDeviceToHost, c->down);
        tm_end_on(c, t, TM_DOWNLOAD, bytes, c->down);
        if (e == cudaSuccess)
            e = cudaEventRecord(c->dl_event, c->down);
        return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
    }
    if (!c->dl_event)
        e = cudaEventCreateWithFlags(&c->dl_event, cudaEventDisableTiming);
    int t = e == cudaSuccess ? tm_begin(c) : -1;
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream);
    tm_end(c, t, TM_DOWNLOAD, bytes);
    if (e == cudaSuccess)
        e = cudaEventRecord(c->dl_event, c->stream);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
}

ss_status cu_download_wait(void *vctx, ss_error *err)
{
    cuda_ctx *c = (cuda_ctx *)vctx;
    cudaError_t e = c->dl_event ? cudaEventSynchronize(c->dl_event) : cudaSuccess;
    sample_memory(c);
    return e == cudaSuccess ? SS_OK : cuda_fail(err, e, "download");
}

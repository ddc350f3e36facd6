/* strided.c - CPU reference kernel for ss_copy4d (backend.h): a copy between
 * two 4-D strided views, one task per (i0, i1) plane of rows, or per piece of
 * about COPY4D_PIECE values of a large plane (a few planes of a whole
 * spectrogram would leave most threads idle). */
#include "cpu_ops.h"

#include <string.h>

#define COPY4D_PIECE ((int64_t)1 << 16)

typedef struct copy4d_job {
    float *dst;
    const float *src;
    const int64_t *ds, *ss, *shape;
    int64_t pieces, rows;      /* pieces per plane, rows (i2) per piece */
} copy4d_job;

static void copy4d_plane(void *arg, int64_t t)
{
    const copy4d_job *j = arg;
    int64_t pl = t / j->pieces, r0 = t % j->pieces * j->rows;
    int64_t r1 = r0 + j->rows < j->shape[2] ? r0 + j->rows : j->shape[2];
    int64_t i0 = pl / j->shape[1], i1 = pl % j->shape[1];
    float *d = j->dst + i0 * j->ds[0] + i1 * j->ds[1];
    const float *s = j->src + i0 * j->ss[0] + i1 * j->ss[1];
    for (int64_t i2 = r0; i2 < r1; i2++) {
        float *dr = d + i2 * j->ds[2];
        const float *sr = s + i2 * j->ss[2];
        if (j->ds[3] == 1 && j->ss[3] == 1) {
            memmove(dr, sr, (size_t)j->shape[3] * sizeof *dr);
        } else {
            for (int64_t i3 = 0; i3 < j->shape[3]; i3++)
                dr[i3 * j->ds[3]] = sr[i3 * j->ss[3]];
        }
    }
}

ss_status ss_cpu_copy4d(ss_pool *p, float *dst, const int64_t dstride[4], const float *src,
                        const int64_t sstride[4], const int64_t shape[4])
{
    for (int i = 0; i < 4; i++)
        if (shape[i] <= 0)
            return SS_OK;
    copy4d_job j = {dst, src, dstride, sstride, shape, 1, shape[2]};
    int64_t planes = shape[0] * shape[1];
    if (shape[2] * shape[3] > COPY4D_PIECE) {
        j.rows = (COPY4D_PIECE + shape[3] - 1) / shape[3];
        j.pieces = (shape[2] + j.rows - 1) / j.rows;
    }
    ss_pool_for(shape[2] * shape[3] * planes >= 65536 ? p : NULL, planes * j.pieces, copy4d_plane, &j);
    return SS_OK;
}

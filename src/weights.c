/* weights.c - tensors of a model file to host fp32 and to the device; the
 * model's list of device buffers (see weights.h). */
#include "weights.h"

#include <stdlib.h>

float *ss_wload_host(ss_wload *l, const char *name, int ndim, const int64_t *shape)
{
    float *h = NULL;
    size_t cap = 0;
    if (l->s == SS_OK)
        l->s = ss_st_get_f32(l->st, name, ndim, shape, &h, &cap, NULL, l->err);
    return h;
}

float *ss_wload_upload(ss_wload *l, const float *h, size_t n)
{
    if (l->s != SS_OK || !h)
        return NULL;
    float *d = ss_alloc(l->be, n);
    if (!d || ss_upload(l->be, d, h, n) != SS_OK) {
        l->s = ss_backend_status(l->be, l->err);
        if (l->s == SS_OK)
            l->s = ss_fail(l->err, SS_E_NOMEM, "%s: out of device memory", l->path);
        if (d)
            ss_free(l->be, d);
        return NULL;
    }
    return d;
}

float *ss_wload_dev(ss_wload *l, const char *name, int ndim, const int64_t *shape)
{
    float *h = ss_wload_host(l, name, ndim, shape);
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    float *d = ss_wload_upload(l, h, n);
    free(h);
    return d;
}

float *ss_dev_list_alloc(ss_dev_list *l, ss_backend *be, size_t n)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        float **p = realloc(l->p, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        l->p = p;
        l->cap = cap;
    }
    float *d = ss_alloc(be, n ? n : 1);
    if (d)
        l->p[l->n++] = d;
    return d;
}

void ss_dev_list_free(ss_dev_list *l, ss_backend *be)
{
    for (int i = 0; i < l->n; i++)
        ss_free(be, l->p[i]);
    free(l->p);
    l->p = NULL;
    l->n = l->cap = 0;
}

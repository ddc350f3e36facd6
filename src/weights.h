/* weights.h - a model's load(): checked tensors of its file, as fp32 on the
 * host or uploaded to the device, under one sticky status; and a list of
 * device buffers freed together.
 *
 * After the first failure l->s holds it and every call does nothing and
 * returns NULL, so a load function makes its calls in sequence and checks
 * l->s once at the end.  Shapes are checked by ss_st_get (every tensor
 * fetched is marked used: call ss_st_check_all_used after the last).
 */
#ifndef SS_WEIGHTS_H
#define SS_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "safetensors.h"

typedef struct ss_wload {
    ss_st *st;                 /* the model file                                 */
    ss_backend *be;            /* where ss_wload_upload / ss_wload_dev put it    */
    ss_error *err;
    ss_status s;               /* SS_OK until the first failure                  */
    const char *path;          /* the file's name for messages: ss_st_path(st)   */
} ss_wload;

/* Tensor `name` of exactly `shape` as fp32 in a new malloc'd buffer (the
 * caller frees it), or NULL with l->s set. */
float *ss_wload_host(ss_wload *l, const char *name, int ndim, const int64_t *shape);
/* A new device buffer holding h[0 .. n) (the caller ss_frees it), or NULL
 * with l->s set; h NULL (a failed ss_wload_host) gives NULL. */
float *ss_wload_upload(ss_wload *l, const float *h, size_t n);
/* Both: tensor `name` of exactly `shape` (no -1 entries) on the device, or
 * NULL with l->s set. */
float *ss_wload_dev(ss_wload *l, const char *name, int ndim, const int64_t *shape);

/* Device buffers kept as long as the model (its weights and tables) and
 * freed together.  Zero-initialised: empty. */
typedef struct ss_dev_list {
    float **p;
    int n, cap;
} ss_dev_list;

/* A new device buffer of n floats (at least one) on the list, or NULL when
 * out of memory: device memory (the backend's sticky error says so) or host
 * memory for the list (then nothing was allocated on the device). */
float *ss_dev_list_alloc(ss_dev_list *l, ss_backend *be, size_t n);
/* ss_free every buffer on the list; the list is empty again. */
void ss_dev_list_free(ss_dev_list *l, ss_backend *be);

#endif

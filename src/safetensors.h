/* safetensors.h - read-only, validated access to a .safetensors weight file.
 *
 * The file is mmap'd; the JSON header is parsed with cJSON and every entry is
 * checked before ss_st_open() returns: header length sane and inside the file,
 * known dtype (F32, F16, BF16), shape x dtype size == byte length, offsets
 * inside the data area, no two tensors overlapping, names unique.  Tensor data
 * pointers stay valid until ss_st_close().
 *
 * Format and the metadata stemsplit needs: docs/model-format.md.
 */
#ifndef SS_SAFETENSORS_H
#define SS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define SS_ST_MAX_DIMS 8

typedef struct ss_st ss_st;                /* opaque open file */

typedef enum ss_dtype { SS_DT_F32 = 0, SS_DT_F16, SS_DT_BF16 } ss_dtype;

typedef struct ss_st_tensor {
    const char *name;                      /* NUL-terminated, owned by ss_st   */
    ss_dtype dtype;
    int ndim;                              /* 0 .. SS_ST_MAX_DIMS              */
    int64_t shape[SS_ST_MAX_DIMS];
    int64_t numel;                         /* product of shape (1 for ndim 0)  */
    const void *data;                      /* inside the mapping               */
    size_t nbytes;                         /* numel * dtype size               */
} ss_st_tensor;

/* Open and validate.  Errors (SS_E_NOINPUT for a missing file, SS_E_DATA for
 * anything malformed) name the file and, where relevant, the tensor. */
ss_status ss_st_open(const char *path, ss_st **out, ss_error *err);
void ss_st_close(ss_st *st);
/* Hint that tensor t's bytes will not be read again soon (its weights are on
 * the device or converted): the whole pages inside it leave this process's
 * resident memory (the file is mapped read-only, so a later read maps them
 * in again).  Keeps a large model's load from holding the file and its
 * device copy at once.  No effect on correctness. */
void ss_st_release(const ss_st *st, const ss_st_tensor *t);

const char *ss_st_path(const ss_st *st);
int ss_st_count(const ss_st *st);
const ss_st_tensor *ss_st_tensor_at(const ss_st *st, int i);
/* NULL when absent.  Does not mark the tensor used. */
const ss_st_tensor *ss_st_find(const ss_st *st, const char *name);

/* __metadata__ (all values are strings); NULL when absent. */
const char *ss_st_meta(const ss_st *st, const char *key);
int ss_st_meta_count(const ss_st *st);
void ss_st_meta_at(const ss_st *st, int i, const char **key, const char **value);

/* Typed metadata: SS_E_DATA naming the file and key when missing or malformed. */
ss_status ss_st_meta_int(const ss_st *st, const char *key, int64_t *out, ss_error *err);
ss_status ss_st_meta_double(const ss_st *st, const char *key, double *out, ss_error *err);
/* An integer in [lo, hi] (as an int: the range must fit one); SS_E_DATA
 * naming the file, key, value and range otherwise. */
ss_status ss_st_meta_int_in(const ss_st *st, const char *key, int64_t lo, int64_t hi, int *out, ss_error *err);
/* "39/5", "7.8" or "10" -> num/den in lowest terms, den > 0 */
ss_status ss_st_meta_fraction(const ss_st *st, const char *key, int64_t *num, int64_t *den, ss_error *err);
/* "true"/"false"/"1"/"0" */
ss_status ss_st_meta_bool(const ss_st *st, const char *key, int *out, ss_error *err);

/* Weight-table loading: look up `name`, require exactly `ndim` dims equal to
 * `shape` (a -1 entry matches anything), mark it used.  SS_E_DATA naming the
 * file, tensor, expected and actual shape on mismatch or absence. */
ss_status ss_st_get(ss_st *st, const char *name, int ndim, const int64_t *shape,
                    const ss_st_tensor **out, ss_error *err);
/* ss_st_get, then the tensor as fp32 in *buf (ss_st_to_f32) and its pages
 * released (ss_st_release).  *buf holds *cap floats; it is grown with realloc
 * when the tensor has more (*buf NULL and *cap 0: a new buffer of its size),
 * so one buffer can serve a whole load.  *numel (may be NULL) gets the
 * tensor's element count.  SS_E_NOMEM naming the file and tensor; on any
 * error *buf and *cap are as they were. */
ss_status ss_st_get_f32(ss_st *st, const char *name, int ndim, const int64_t *shape, float **buf, size_t *cap,
                        int64_t *numel, ss_error *err);
/* After loading: SS_E_DATA naming the first tensor never fetched with
 * ss_st_get() (extra tensors are refused, not silently ignored). */
ss_status ss_st_check_all_used(const ss_st *st, ss_error *err);

/* Convert a tensor's data to fp32 (dst holds t->numel floats). */
void ss_st_to_f32(const ss_st_tensor *t, float *dst);

const char *ss_dtype_name(ss_dtype dt);
size_t ss_dtype_size(ss_dtype dt);

#endif

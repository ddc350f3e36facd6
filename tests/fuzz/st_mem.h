/* st_mem.h - fuzz-only: the safetensors reader on a buffer in memory.
 *
 * ss_st_open() mmaps a file, and ASan cannot see past the end of a mapping.
 * The harnesses include src/safetensors.c itself and run its parse_header()
 * on the fuzzer's own heap buffer instead, so any read outside the file is an
 * ASan report.  Everything after the mmap is exactly the production code.
 */
#ifndef SS_FUZZ_ST_MEM_H
#define SS_FUZZ_ST_MEM_H

#include "../../src/safetensors.c"

/* Parse `size` bytes at `data` as a whole .safetensors file. */
static ss_status st_open_mem(const uint8_t *data, size_t size, ss_st **out, ss_error *err)
{
    *out = NULL;
    ss_st *st = calloc(1, sizeof *st);
    if (!st)
        return ss_fail(err, SS_E_NOMEM, "out of memory");
    st->path = strdup("fuzz.safetensors");
    if (!st->path) {
        free(st);
        return ss_fail(err, SS_E_NOMEM, "out of memory");
    }
    if (size < 8) {
        ss_st_close(st);
        return ss_fail(err, SS_E_DATA, "fuzz.safetensors: too short");
    }
    st->map = (void *)(uintptr_t)data; /* only read; never unmapped (see st_close_mem) */
    st->map_size = size;
    ss_status s = parse_header(st, err);
    if (s != SS_OK) {
        st->map = NULL;
        ss_st_close(st);
        return s;
    }
    *out = st;
    return SS_OK;
}

static void st_close_mem(ss_st *st)
{
    if (st) {
        st->map = NULL;
        ss_st_close(st);
    }
}

/* Check what ss_st_open promises about an accepted file: every tensor inside
 * the data area, consistent sizes, names unique, byte ranges disjoint.  Aborts
 * (a fuzzer crash) when a promise is broken. */
static void st_check_invariants(const ss_st *st, const uint8_t *data, size_t size)
{
    int n = ss_st_count(st);
    for (int i = 0; i < n; i++) {
        const ss_st_tensor *t = ss_st_tensor_at(st, i);
        const uint8_t *p = t->data;
        if (!t->name || t->ndim < 0 || t->ndim > SS_ST_MAX_DIMS || t->numel < 0)
            abort();
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        if (numel != t->numel || t->nbytes != (size_t)t->numel * ss_dtype_size(t->dtype))
            abort();
        if (p < data + 8 || p > data + size || t->nbytes > (size_t)(data + size - p))
            abort();
        if (ss_st_find(st, t->name) != t)
            abort();
        for (int j = 0; j < i; j++) {
            const ss_st_tensor *u = ss_st_tensor_at(st, j);
            const uint8_t *q = u->data;
            if (strcmp(t->name, u->name) == 0)
                abort();
            if (t->nbytes && u->nbytes && p < q + u->nbytes && q < p + t->nbytes)
                abort();
        }
    }
}

/* Read every tensor as fp32 (ASan checks the reads stay in the buffer). */
static void st_touch_tensors(const ss_st *st)
{
    for (int i = 0; i < ss_st_count(st); i++) {
        const ss_st_tensor *t = ss_st_tensor_at(st, i);
        float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *buf);
        if (!buf)
            abort();
        ss_st_to_f32(t, buf);
        free(buf);
    }
}

/* Every metadata value through every typed accessor. */
static void st_touch_meta(const ss_st *st)
{
    for (int i = 0; i < ss_st_meta_count(st); i++) {
        const char *k, *v;
        ss_st_meta_at(st, i, &k, &v);
        if (!k || !v || ss_st_meta(st, k) == NULL)
            abort();
        ss_error e = {0};
        int64_t a, b;
        double d;
        int flag;
        (void)ss_st_meta_int(st, k, &a, &e);
        ss_error_clear(&e);
        (void)ss_st_meta_double(st, k, &d, &e);
        ss_error_clear(&e);
        if (ss_st_meta_fraction(st, k, &a, &b, &e) == SS_OK && b <= 0)
            abort();
        ss_error_clear(&e);
        (void)ss_st_meta_bool(st, k, &flag, &e);
    }
}

#endif

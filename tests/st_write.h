/* st_write.h - test-only writer of .safetensors files (header-only).
 *
 * Every function returns 0 on success and -1 on failure (errno set by stdio
 * or malloc).  Data is written in host byte order; the tests assume a
 * little-endian host, as safetensors does.
 *
 *   st_write_file(path, hdr_len_field, hdr, hdr_size, data, data_size)
 *       Fully raw: the 8-byte length field says `hdr_len_field` whatever
 *       `hdr_size` really is, so tests can forge lying headers.
 *
 *   st_write_raw(path, header_json, data, data_size)
 *       A well-formed layout around a header JSON string the caller wrote
 *       (valid or not); the header is padded with spaces to a multiple of 8.
 *
 *   st_write_f32(path, metadata_json, n, names, shapes, ndims, data)
 *       n F32 tensors laid out one after another.  metadata_json is the text
 *       of a JSON object of strings (e.g. "{\"stemsplit.architecture\":
 *       \"identity\"}") or NULL for none; names[i] must not need JSON
 *       escaping; shapes[i][0 .. ndims[i]-1] is tensor i's shape; data[i]
 *       holds its product-of-shape floats (declare the pointer arrays as
 *       `const char *names[]` and `const float *data[]`: C will not convert
 *       `float *[]` to `const float *const *` silently).  Example:
 *
 *           const char *names[] = {"gain"};
 *           const int64_t shapes[][ST_WRITE_MAX_DIMS] = {{4}};
 *           const int ndims[] = {1};
 *           const float gain[] = {1, 1, 1, 1};
 *           const float *data[] = {gain};
 *           st_write_f32(path, "{\"stemsplit.architecture\":\"identity\"}",
 *                        1, names, shapes, ndims, data);
 */
#ifndef SS_TEST_ST_WRITE_H
#define SS_TEST_ST_WRITE_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_WRITE_MAX_DIMS 8

static inline int st_write_file(const char *path, uint64_t hdr_len_field, const void *hdr, size_t hdr_size,
                                const void *data, size_t data_size)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(hdr_len_field >> (8 * i));
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(len, 1, 8, f) == 8;
    if (ok && hdr_size)
        ok = fwrite(hdr, 1, hdr_size, f) == hdr_size;
    if (ok && data_size)
        ok = fwrite(data, 1, data_size, f) == data_size;
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static inline int st_write_raw(const char *path, const char *header_json, const void *data, size_t data_size)
{
    size_t n = strlen(header_json), padded = (n + 7) / 8 * 8;
    char *hdr = malloc(padded ? padded : 1);
    if (!hdr)
        return -1;
    memcpy(hdr, header_json, n);
    memset(hdr + n, ' ', padded - n);
    int r = st_write_file(path, padded, hdr, padded, data, data_size);
    free(hdr);
    return r;
}

#if defined(__GNUC__)
#define ST_WRITE_PRINTF_ __attribute__((format(printf, 4, 5)))
#else
#define ST_WRITE_PRINTF_
#endif

/* Append printf-style text to the growing string *buf (*len used, *cap
 * allocated); -1 when out of memory. */
ST_WRITE_PRINTF_
static inline int st_write_append_(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if (*buf && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return 0;
        }
        size_t ncap = (*cap ? *cap * 2 : 256) + (size_t)n;
        char *nb = realloc(*buf, ncap);
        if (!nb)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
}

static inline int st_write_f32(const char *path, const char *metadata_json, int n, const char *const names[],
                               const int64_t shapes[][ST_WRITE_MAX_DIMS], const int ndims[],
                               const float *const data[])
{
    char *hdr = NULL;
    size_t len = 0, cap = 0, total = 0;
    int ok = st_write_append_(&hdr, &len, &cap, "{") == 0;
    if (ok && metadata_json)
        ok = st_write_append_(&hdr, &len, &cap, "\"__metadata__\":%s", metadata_json) == 0;
    size_t *bytes = calloc((size_t)(n > 0 ? n : 1), sizeof *bytes);
    ok = ok && bytes;
    for (int i = 0; ok && i < n; i++) {
        size_t numel = 1;
        ok = st_write_append_(&hdr, &len, &cap, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                              (i || metadata_json) ? "," : "", names[i]) == 0;
        for (int d = 0; ok && d < ndims[i]; d++) {
            numel *= (size_t)shapes[i][d];
            ok = st_write_append_(&hdr, &len, &cap, "%s%lld", d ? "," : "", (long long)shapes[i][d]) == 0;
        }
        bytes[i] = numel * sizeof(float);
        ok = ok && st_write_append_(&hdr, &len, &cap, "],\"data_offsets\":[%zu,%zu]}", total,
                                    total + bytes[i]) == 0;
        total += bytes[i];
    }
    ok = ok && st_write_append_(&hdr, &len, &cap, "}") == 0;
    unsigned char *blob = ok ? malloc(total ? total : 1) : NULL;
    ok = ok && blob;
    size_t at = 0;
    for (int i = 0; ok && i < n; at += bytes[i], i++)
        if (bytes[i])
            memcpy(blob + at, data[i], bytes[i]);
    int r = ok ? st_write_raw(path, hdr, blob, total) : -1;
    free(blob);
    free(bytes);
    free(hdr);
    return r;
}

#endif

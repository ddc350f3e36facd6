/* error.c - status codes and messages (see error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shorten msg (len bytes) in place until it fits `size` bytes with its NUL:
 * the longest run of characters without a space (a path, mostly) loses its
 * middle to "...", keeping its head and its tail, so that what follows a long
 * path (the reason) survives; what is still too long loses its own middle. */
static size_t shorten(char *msg, size_t len, size_t size)
{
    while (len + 1 > size) {
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < len;) {
            size_t j = i;
            while (j < len && msg[j] != ' ')
                j++;
            if (j - i > best_len)
                best = i, best_len = j - i;
            i = j + 1;
        }
        size_t excess = len + 1 - size, keep_min = 64;
        size_t start, cut;
        if (best_len >= keep_min + 3 + excess) {
            cut = excess + 3;                           /* "..." replaces cut bytes */
            start = best + (best_len - cut) / 3;        /* keep more of the tail than of the head */
        } else {
            cut = excess + 3;
            start = (len - cut) / 3;
        }
        memcpy(msg + start, "...", 3);
        memmove(msg + start + 3, msg + start + cut, len - start - cut + 1);
        len -= cut - 3;
    }
    return len;
}

ss_status ss_fail(ss_error *err, ss_status code, const char *fmt, ...)
{
    if (!err || err->code != SS_OK)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    char *full = NULL;
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof err->msg && (full = malloc((size_t)n + 1))) {
        va_start(ap, fmt);
        vsnprintf(full, (size_t)n + 1, fmt, ap);
        va_end(ap);
        size_t len = shorten(full, (size_t)n, sizeof err->msg);
        memcpy(err->msg, full, len + 1);
        free(full);
    }
    return code;
}

void ss_error_clear(ss_error *err)
{
    if (!err)
        return;
    err->code = SS_OK;
    err->msg[0] = '\0';
}

int ss_exit_code(ss_status code)
{
    switch (code) {
    case SS_OK:          return 0;
    case SS_E_USAGE:     return 64;
    case SS_E_DATA:      return 65;
    case SS_E_NOINPUT:   return 66;
    case SS_E_DEVICE:    return 69;
    case SS_E_INTERNAL:  return 70;
    case SS_E_NOMEM:     return 70;
    case SS_E_CANTCREAT: return 73;
    case SS_E_IO:        return 74;
    case SS_E_INTERRUPT: return 130;
    }
    return 70;
}

const char *ss_status_name(ss_status code)
{
    switch (code) {
    case SS_OK:          return "ok";
    case SS_E_USAGE:     return "usage error";
    case SS_E_DATA:      return "bad data";
    case SS_E_NOINPUT:   return "no input";
    case SS_E_DEVICE:    return "device unavailable";
    case SS_E_INTERNAL:  return "internal error";
    case SS_E_NOMEM:     return "out of memory";
    case SS_E_CANTCREAT: return "cannot create output";
    case SS_E_IO:        return "I/O error";
    case SS_E_INTERRUPT: return "interrupted";
    }
    return "unknown error";
}

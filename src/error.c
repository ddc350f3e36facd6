/* error.c - status codes and messages (see error.h). */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

ss_status ss_fail(ss_error *err, ss_status code, const char *fmt, ...)
{
    if (!err || err->code != SS_OK)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
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

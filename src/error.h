/* error.h - status codes and error messages shared by every stemsplit module.
 *
 * Library code never exits: each fallible function returns an ss_status and,
 * when it fails, fills an ss_error with a message that names the file and what
 * was wrong.  The CLI maps statuses to sysexits(3) codes with ss_exit_code().
 */
#ifndef SS_ERROR_H
#define SS_ERROR_H

#include <stddef.h>

typedef enum ss_status {
    SS_OK = 0,
    SS_E_USAGE,      /* bad option or argument             -> 64 EX_USAGE       */
    SS_E_DATA,       /* malformed model or audio data      -> 65 EX_DATAERR     */
    SS_E_NOINPUT,    /* input file missing or unreadable   -> 66 EX_NOINPUT     */
    SS_E_DEVICE,     /* device unavailable / out of memory -> 69 EX_UNAVAILABLE */
    SS_E_INTERNAL,   /* a bug or an impossible state       -> 70 EX_SOFTWARE    */
    SS_E_NOMEM,      /* host allocation failed             -> 70 EX_SOFTWARE    */
    SS_E_CANTCREAT,  /* output cannot be created           -> 73 EX_CANTCREAT   */
    SS_E_IO,         /* read/write error on an open file   -> 74 EX_IOERR       */
    SS_E_INTERRUPT   /* stopped by a signal                -> 130               */
} ss_status;

typedef struct ss_error {
    ss_status code;     /* SS_OK when nothing failed                         */
    char msg[1024];     /* "FILE: what was wrong", NUL-terminated            */
} ss_error;

/* Record a failure (printf-style) and return `code`, so callers can write
 * `return ss_fail(err, SS_E_DATA, "%s: bad header", path);`.  `err` may be NULL.
 * An error already recorded is kept (the first cause wins). */
ss_status ss_fail(ss_error *err, ss_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Forget a recorded error. */
void ss_error_clear(ss_error *err);

/* sysexits(3) code for a status (0 for SS_OK). */
int ss_exit_code(ss_status code);

/* Short human name of a status ("bad data", "I/O error", ...). */
const char *ss_status_name(ss_status code);

#endif

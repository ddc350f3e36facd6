/* test.h - the smallest test harness that reports what make check counts.
 *
 * Each test binary prints one line per case: "PASS name", "FAIL name: why"
 * or "SKIP name: why"; tests/run.sh adds them up.  Usage:
 *
 *   static void test_roundtrip(void) { ... CHECK(x == y, "x=%d", x); ... }
 *   int main(void) { RUN(test_roundtrip); return test_summary(); }
 *
 * CHECK records the first failure of the running case and returns from it.
 */
#ifndef SS_TEST_H
#define SS_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int test_failed_now;      /* the running case has failed        */
static int test_skipped_now;     /* the running case asked to be skipped */
static int test_n_fail;
static char test_why[2048];

/* Record why the running case failed (printf-style reason). */
static void test_fail_(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void test_fail_(const char *file, int line, const char *cond, const char *fmt, ...)
{
    int n = snprintf(test_why, sizeof test_why, "%s:%d: %s: ", file, line, cond);
    if (n > 0 && (size_t)n < sizeof test_why) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(test_why + n, sizeof test_why - (size_t)n, fmt, ap);
        va_end(ap);
    }
    test_failed_now = 1;
}

#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (!(cond)) {                                                  \
            test_fail_(__FILE__, __LINE__, #cond, __VA_ARGS__);         \
            return;                                                     \
        }                                                               \
    } while (0)

#define SKIP(...)                                                 \
    do {                                                          \
        snprintf(test_why, sizeof test_why, __VA_ARGS__);         \
        test_skipped_now = 1;                                     \
        return;                                                   \
    } while (0)

#define RUN(fn)                                                               \
    do {                                                                      \
        test_failed_now = test_skipped_now = 0;                               \
        test_why[0] = '\0';                                                   \
        fn();                                                                 \
        if (test_failed_now) {                                                \
            printf("FAIL %s: %s\n", #fn, test_why);                           \
            test_n_fail++;                                                    \
        } else if (test_skipped_now) {                                        \
            printf("SKIP %s: %s\n", #fn, test_why);                           \
        } else {                                                              \
            printf("PASS %s\n", #fn);                                         \
        }                                                                     \
        fflush(stdout);                                                       \
    } while (0)

static inline int test_summary(void) { return test_n_fail ? 1 : 0; }

#endif

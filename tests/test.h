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

#include <stdio.h>
#include <string.h>

static int test_failed_now;      /* the running case has failed        */
static int test_skipped_now;     /* the running case asked to be skipped */
static int test_n_fail;
static char test_why[2048];

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            int test_len_ = snprintf(test_why, sizeof test_why, "%s:%d: %s: ",     \
                                     __FILE__, __LINE__, #cond);                   \
            if (test_len_ > 0 && (size_t)test_len_ < sizeof test_why)              \
                snprintf(test_why + test_len_, sizeof test_why - (size_t)test_len_, \
                         __VA_ARGS__);                                             \
            test_failed_now = 1;                                                   \
            return;                                                                \
        }                                                                          \
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

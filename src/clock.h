/* clock.h - the monotonic clock behind every time stemsplit reports (stage
 * times, real-time factors, STEMSPLIT_PROFILE). */
#ifndef SS_CLOCK_H
#define SS_CLOCK_H

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin: use differences). */
static inline double ss_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


#endif

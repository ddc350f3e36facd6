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

/* STEMSPLIT_PROFILE=1 or =engine: the engine's split and each file's stages
 * are printed on stderr (=1 also times every backend op). */
static inline int ss_profile_stages(void)
{
    const char *pe = getenv("STEMSPLIT_PROFILE");
    return pe && (*pe == '1' || strcmp(pe, "engine") == 0 || strcmp(pe, "calls") == 0);
}

#endif

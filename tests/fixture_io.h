/* fixture_io.h - what the model tests do with reference fixtures: read a
 * tensor or a WAV as floats, and compare by relative L2.  Shared by
 * htdemucs_fixtures.h, msst_fixtures.h and test_larsnet.c (static inline: an
 * includer need not use all of them). */
#ifndef SS_TESTS_FIXTURE_IO_H
#define SS_TESTS_FIXTURE_IO_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sndfile.h>

#include "../src/safetensors.h"

/* Relative L2 ||y - r|| / ||r|| (the plain ||y - r|| where r is all zeros) */
static inline double rel_l2(const float *y, const float *r, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* tensor t as fp32 (malloc'd), or NULL */
static inline float *tensor_f32(const ss_st_tensor *t)
{
    float *p = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *p);
    if (p)
        ss_st_to_f32(t, p);
    return p;
}

/* a WAV as planar [C, L] floats (malloc'd), or NULL */
static inline float *read_planar(const char *path, int *C, int64_t *L)
{
    SF_INFO si = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &si);
    if (!sf)
        return NULL;
    float *inter = malloc((size_t)si.channels * (size_t)si.frames * sizeof *inter);
    float *planar = malloc((size_t)si.channels * (size_t)si.frames * sizeof *planar);
    if (!inter || !planar || sf_readf_float(sf, inter, si.frames) != si.frames) {
        free(inter), free(planar), sf_close(sf);
        return NULL;
    }
    for (int c = 0; c < si.channels; c++)
        for (sf_count_t i = 0; i < si.frames; i++)
            planar[(size_t)c * (size_t)si.frames + (size_t)i] = inter[(size_t)i * si.channels + c];
    free(inter);
    sf_close(sf);
    *C = si.channels, *L = si.frames;
    return planar;
}

/* A fixture test's scratch folder removed: the logs the conversion and the CLI runs leave in it
 * (convert.log, cli.log), then the folder itself. */
static inline void fixture_dir_remove(const char *dir)
{
    char log[1200];
    snprintf(log, sizeof log, "%s/convert.log", dir);
    unlink(log);
    snprintf(log, sizeof log, "%s/cli.log", dir);
    unlink(log);
    rmdir(dir);
}

#endif

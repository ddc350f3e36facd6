/* model_mem.h - fuzz-only: a model's metadata and weights from memory.
 *
 * Includes src/model.c (after st_mem.h) for its read_info(), then runs the
 * architecture's own load() on the parsed file, as ss_model_load() does. */
#ifndef SS_FUZZ_MODEL_MEM_H
#define SS_FUZZ_MODEL_MEM_H

#include "st_mem.h"
#include "../../src/model.c"

static ss_backend *fuzz_backend(void)
{
    static ss_backend *be;
    if (!be) {
        ss_backend_params bp = {.device = 0, .threads = 1, .precision = SS_PREC_FP32};
        ss_error err = {0};
        if (ss_backend_open("cpu", &bp, &be, NULL, 0, &err) != SS_OK)
            abort();
    }
    return be;
}

/* ss_model_load()'s checks on an already parsed file; st stays open. */
static void model_load_mem(ss_st *st)
{
    ss_model_info info;
    ss_error err = {0};
    if (read_info(st, "fuzz.safetensors", &info, &err) != SS_OK)
        return;
    if (info.n_sources < 1 || info.n_sources > SS_MAX_SOURCES || info.channels < 1 || info.samplerate < 1 ||
        info.segment_length < 1)
        abort(); /* read_info accepted what the engine cannot run */
    const ss_arch *arch = NULL;
    for (int i = 0; arches[i]; i++)
        if (strcmp(arches[i]->name, info.architecture) == 0)
            arch = arches[i];
    if (!arch)
        return;
    ss_backend *be = fuzz_backend();
    void *state = NULL;
    ss_status s = arch->load(st, &info, be, &state, &err);
    if (s == SS_OK)
        s = ss_backend_status(be, &err);
    else
        (void)ss_backend_status(be, NULL); /* clear a sticky error for the next input */
    if (state)
        arch->free(state, be);
}

#endif

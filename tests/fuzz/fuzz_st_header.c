/* fuzz_st_header.c - libFuzzer harness: a whole .safetensors file as bytes.
 *
 * Exercises the 8-byte length, the header pre-scan, cJSON, the __metadata__
 * table and every typed metadata accessor, the tensor entries, and the model
 * metadata and architecture loaders on whatever parses.  Seeds:
 * tests/fuzz/corpus/st_header/.  Build and run: make fuzz (see Makefile). */
#include "model_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ss_st *st = NULL;
    ss_error err = {0};
    if (st_open_mem(data, size, &st, &err) != SS_OK) {
        if (err.code == SS_OK || !err.msg[0])
            abort(); /* a refusal must say why */
        return 0;
    }
    st_check_invariants(st, data, size);
    st_touch_meta(st);
    st_touch_tensors(st);
    model_load_mem(st);
    st_close_mem(st);
    return 0;
}

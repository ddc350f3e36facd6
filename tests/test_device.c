/* test_device - where --device is decided: once, before the weights are
 * loaded, from the model file's header (ss_model_peek) and its memory
 * estimate (ss_backend_open_for / ss_backend_open_auto).
 *
 * "gpu" below is the CPU backend under another name whose device reports
 * 64 MiB free, ahead of the CPU in the list --device auto walks. */
#include "backend.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

extern const ss_backend_iface ss_backend_cpu;
static ss_backend_iface gpu_iface;

static ss_status gpu_info(int index, ss_device_info *out)
{
    ss_status s = ss_backend_cpu.device_info(index, out);
    if (s == SS_OK) {
        snprintf(out->backend, sizeof out->backend, "gpu");
        snprintf(out->name, sizeof out->name, "small GPU");
        out->mem_total = (uint64_t)128 << 20;
        out->mem_free = (uint64_t)64 << 20;
    }
    return s;
}

static const ss_backend_iface *const *list(void)
{
    static const ss_backend_iface *l[3];
    gpu_iface = ss_backend_cpu;
    gpu_iface.name = "gpu";
    gpu_iface.device_info = gpu_info;
    l[0] = &gpu_iface;
    l[1] = &ss_backend_cpu;
    l[2] = NULL;
    return l;
}

/* auto with a model needing mem bytes: the backend chosen, and the warning */
static const char *choose(uint64_t mem, char *warn, size_t wsize, char *note, size_t nsize, ss_error *err)
{
    ss_backend *be = NULL;
    ss_backend_params bp = {.threads = 1};
    if (ss_backend_open_auto(list(), &bp, mem, &be, note, nsize, warn, wsize, err) != SS_OK)
        return NULL;
    const char *name = ss_backend_iface_of(be)->name;
    ss_backend_close(be);
    return name;
}

static void test_auto_takes_the_gpu_when_the_model_fits(void)
{
    char warn[256], note[512];
    ss_error err = {0};
    const char *got = choose((uint64_t)32 << 20, warn, sizeof warn, note, sizeof note, &err);
    CHECK(got && strcmp(got, "gpu") == 0, "chose %s (%s)", got ? got : "nothing", err.msg);
    CHECK(warn[0] == '\0', "warned: %s", warn);
    got = choose(0, warn, sizeof warn, note, sizeof note, &err);
    CHECK(got && strcmp(got, "gpu") == 0, "unknown need: chose %s (%s)", got ? got : "nothing", err.msg);
}

static void test_auto_passes_over_a_gpu_too_small_for_the_model(void)
{
    char warn[256], note[512];
    ss_error err = {0};
    const char *got = choose((uint64_t)1 << 30, warn, sizeof warn, note, sizeof note, &err);
    CHECK(got && strcmp(got, "cpu") == 0, "chose %s (%s)", got ? got : "nothing", err.msg);
    CHECK(strstr(warn, "small GPU has too little free memory"), "warning: '%s'", warn);
    CHECK(strstr(note, "auto: chose cpu:0") && strstr(note, "gpu:0: too little free memory"), "note: '%s'", note);
}

static void test_a_named_device_is_opened_whatever_the_need(void)
{
    char warn[256] = "x", note[512];
    ss_error err = {0};
    ss_backend *be = NULL;
    ss_backend_params bp = {.threads = 1};
    CHECK(ss_backend_open_for("cpu", &bp, UINT64_MAX / 2, &be, note, sizeof note, warn, sizeof warn, &err) == SS_OK,
          "%s", err.msg);
    ss_backend_close(be);
    CHECK(warn[0] == '\0', "warned: %s", warn);
}

/* the header gives what loading gives: the info and the same estimate */
static void test_peek_reads_what_load_reads(void)
{
    const char *root = getenv("SS_ROOT");
    if (!root) {
        SKIP("SS_ROOT is set by make check");
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/models/bandsplit/bandsplit4.safetensors", root);
    ss_model_info info;
    ss_mem_estimate mem;
    ss_error err = {0};
    CHECK(ss_model_peek(path, &info, &mem, &err) == SS_OK, "%s", err.msg);
    ss_backend *be = NULL;
    ss_backend_params bp = {.threads = 1};
    CHECK(ss_backend_open("cpu", &bp, &be, NULL, 0, &err) == SS_OK, "%s", err.msg);
    ss_model *m = NULL;
    ss_status s = ss_model_load(path, be, &m, &err);
    int same = 0;
    const ss_mem_estimate *lm = NULL;
    if (s == SS_OK) {
        same = memcmp(ss_model_get_info(m), &info, sizeof info) == 0;
        lm = ss_model_memory(m);
    }
    int mem_same = lm && lm->fixed == mem.fixed && lm->per_item == mem.per_item;
    ss_input_norm norm = s == SS_OK ? ss_model_input_norm(m) : SS_NORM_NONE;
    ss_model_free(m);
    ss_backend_close(be);
    CHECK(s == SS_OK, "%s", err.msg);
    CHECK(same, "ss_model_peek's info differs from ss_model_load's");
    CHECK(mem_same, "the estimates differ");
    CHECK(strcmp(info.architecture, "bandsplit") == 0 && info.n_sources == 4, "%s, %d sources", info.architecture,
          info.n_sources);
    /* bandsplit's STFT buffers: far more than one segment's transfers */
    uint64_t io = (uint64_t)info.segment_length * (uint64_t)info.channels * 4u * (1u + (uint64_t)info.n_sources);
    CHECK(mem.fixed >= info.parameters * 4u && mem.per_item > io, "fixed %llu, per item %llu",
          (unsigned long long)mem.fixed, (unsigned long long)mem.per_item);
    CHECK(norm == SS_NORM_MIX_MEAN_STD, "bandsplit asks for normalisation %d", (int)norm);
}

static void test_peek_refuses_what_load_refuses(void)
{
    ss_model_info info;
    ss_error err = {0};
    CHECK(ss_model_peek("/nonexistent/model.safetensors", &info, NULL, &err) == SS_E_NOINPUT, "status %d: %s",
          (int)err.code, err.msg);
}

int main(void)
{
    RUN(test_auto_takes_the_gpu_when_the_model_fits);
    RUN(test_auto_passes_over_a_gpu_too_small_for_the_model);
    RUN(test_a_named_device_is_opened_whatever_the_need);
    RUN(test_peek_reads_what_load_reads);
    RUN(test_peek_refuses_what_load_refuses);
    return test_summary();
}

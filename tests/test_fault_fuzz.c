/* test_fault_fuzz.c - replay the fuzz seeds and every regression input through
 * the libFuzzer harnesses, built here without libFuzzer (gcc or clang), so
 * `make check` and `make asan` keep every input the fuzzers ever crashed on.
 *
 *   tests/fuzz/corpus/NAME/   seeds (tests/fuzz/make-seeds.py, make-audio-seeds.c)
 *   tests/fuzz/regress/NAME/  inputs that once crashed or misbehaved, one per fix
 *
 * A harness abort()s when a promise is broken, so a regression shows up as
 * this program dying; each directory is one PASS line otherwise.  The sizes
 * and names of the files replayed are printed on failure by run.sh's log. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

#define LLVMFuzzerTestOneInput fuzz_st_header_one
#include "fuzz/fuzz_st_header.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_st_tensors_one
#include "fuzz/fuzz_st_tensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_template_one
#include "fuzz/fuzz_template.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_audio_one
#include "fuzz/fuzz_audio.c"
#undef LLVMFuzzerTestOneInput

typedef int (*harness_fn)(const uint8_t *, size_t);

static char fuzz_dir[4096];
static int n_replayed;

/* Feed every regular file of dir to fn; -1 when the directory is missing. */
static int replay_dir(const char *dir, harness_fn fn, int *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        uint8_t *buf = malloc((size_t)sb.st_size + 1); /* exact size, as libFuzzer passes it */
        size_t got = buf ? fread(buf, 1, (size_t)sb.st_size, f) : 0;
        fclose(f);
        if (buf && got == (size_t)sb.st_size) {
            fprintf(stderr, "replay %s (%zu bytes)\n", path, got);
            fn(buf, got);
            (*count)++;
        }
        free(buf);
    }
    closedir(d);
    return 0;
}

static void replay(const char *name, harness_fn fn)
{
    char dir[4200];
    int count = 0;
    snprintf(dir, sizeof dir, "%s/corpus/%s", fuzz_dir, name);
    if (replay_dir(dir, fn, &count) != 0)
        test_fail_(__FILE__, __LINE__, "seeds", "%s: missing", dir);
    snprintf(dir, sizeof dir, "%s/regress/%s", fuzz_dir, name);
    (void)replay_dir(dir, fn, &count); /* optional */
    n_replayed += count;
}

static void test_replay_st_header(void) { replay("st_header", fuzz_st_header_one); }
static void test_replay_st_tensors(void) { replay("st_tensors", fuzz_st_tensors_one); }
static void test_replay_template(void) { replay("template", fuzz_template_one); }
static void test_replay_audio(void) { replay("audio", fuzz_audio_one); }

int main(void)
{
    const char *t = getenv("SS_TESTS_DIR");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/fuzz", t && *t ? t : "tests");
    RUN(test_replay_st_header);
    RUN(test_replay_st_tensors);
    RUN(test_replay_template);
    RUN(test_replay_audio);
    fprintf(stderr, "%d inputs replayed\n", n_replayed);
    return test_summary();
}

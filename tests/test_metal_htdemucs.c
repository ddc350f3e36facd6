/* test_metal_htdemucs.c - the full HTDemucs forward pass run through the Metal
 * kernels on the grid emulator: the model code opens "mps", which in this test
 * build is the emulated Metal backend (kernels/metal/emu/backend_metal_emu.c:
 * every op a Metal kernel compiled as C++17, STFT/iSTFT on the CPU as on a
 * Mac), and is compared with the PyTorch forward_out of every fixture case in
 * tests/fixtures/htdemucs/ that has one: relative L2 per source <= 1e-4.
 * Conversion as in test_htdemucs.c (scripts/convert-demucs.py; SKIP without
 * python3). */
#include <time.h>

#include "../kernels/metal/emu/emu.h"
#include "htdemucs_fixtures.h"

/* Under the sanitizers (make asan) one case (t1_base; test_cuda_emu_htdemucs keeps the other):
 * the emulator is slow there, and the plain build runs all. */
#if defined(__SANITIZE_ADDRESS__)
#define ONLY_CASE "t1_base"
#else
#define ONLY_CASE ""
#endif

static void test_forward(void)
{
#if defined(__SANITIZE_ADDRESS__) && !defined(__x86_64__)
    /* there ASan makes every fiber switch of the emulator a swapcontext(): the
     * forward pass takes ~8 minutes (on x86-64 the emulator's own switch: 10 s) */
    const char *force = getenv("STEMSPLIT_METAL_ASAN_FORWARD");
    if (!force || strcmp(force, "1") != 0)
        SKIP("under AddressSanitizer off x86-64 (set STEMSPLIT_METAL_ASAN_FORWARD=1 to run it, ~8 min)");
#endif
    if (!have_python())
        SKIP("python3 not found (needed by scripts/convert-demucs.py)");
    CHECK(n_cases > 0, "no fixture cases under %s/tests/fixtures/htdemucs", root);
    for (int i = 0; i < n_cases; i++)
        if (!ONLY_CASE[0] || strcmp(cases[i], ONLY_CASE) == 0)
            fixture_forward_case(cases[i], "mps", "metal_forward", 2);
}

int main(void)
{
    if (fixture_setup("ss-metal-htdemucs", "ref.safetensors") != 0)
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    RUN(test_forward);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ss_emu_stats st;
    ss_emu_get_stats(&st);
    printf("# %.1f s; emulator: %lld dispatches, %lld threadgroups, %lld threads, %lld barriers, "
           "%lld simdgroup reductions\n",
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec), st.dispatches,
           st.threadgroups, st.threads, st.barriers, st.simd_ops);
    fixture_cleanup();
    return test_summary();
}

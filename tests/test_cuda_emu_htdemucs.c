/* test_cuda_emu_htdemucs.c - the full HTDemucs forward pass run through the
 * CUDA backend's code on the CUDA emulator (kernels/cuda/emu: every kernel of
 * the .cu files in kernels/cuda compiled as C++17 and run on the grid emulator, products
 * through CBLAS, FFTs through FFTW), in fp32, against the PyTorch forward_out
 * of every fixture case in tests/fixtures/htdemucs/ that has one: relative L2
 * per source <= 1e-4, the tolerance of the real GPU's parity check.  The
 * passes per case: the first runs directly, the second is recorded as a CUDA
 * graph and launched, the third replays it; each is compared.
 * Conversion as in test_htdemucs.c (scripts/convert-demucs.py; SKIP without
 * python3). */
#include "htdemucs_fixtures.h"
#include "../kernels/cuda/emu/cuda_emu_stats.h"

/* Under the sanitizers (make asan) the case with the richest bottom (bottom_dconv3) only:
 * the emulator is slow there (74 s for both on two cores), and the plain build runs all. */
#if defined(__SANITIZE_ADDRESS__)
#define ONLY_CASE "bottom_dconv3"
#else
#define ONLY_CASE ""
#endif

static void test_forward(void)
{
    if (!have_python())
        SKIP("python3 not found (needed by scripts/convert-demucs.py)");
    CHECK(n_cases > 0, "no fixture cases under %s/tests/fixtures/htdemucs", root);
    fixture_passes = 3;
    ss_cuda_emu_stats a, b;
    ss_cuda_emu_get_stats(&a);
    for (int i = 0; i < n_cases; i++)
        if (!ONLY_CASE[0] || strcmp(cases[i], ONLY_CASE) == 0)
            fixture_forward_case(cases[i], "cuda", "cuda_emu_forward", 2);
    ss_cuda_emu_get_stats(&b);
    printf("# %lld kernel grids, %lld graphs recorded, %lld graph launches\n", b.kernels - a.kernels,
           b.graphs_recorded - a.graphs_recorded, b.graph_launches - a.graph_launches);
    CHECK(b.kernel_faults == a.kernel_faults, "the emulator reported %lld kernel errors (stderr)",
          b.kernel_faults - a.kernel_faults);
    CHECK(b.captures_refused == a.captures_refused, "%lld waiting calls while recording a graph",
          b.captures_refused - a.captures_refused);
    CHECK(b.graphs_recorded > a.graphs_recorded && b.graph_launches >= 2 * (b.graphs_recorded - a.graphs_recorded),
          "passes 2 and 3 were not a recording and a replay (%lld recorded, %lld launched)",
          b.graphs_recorded - a.graphs_recorded, b.graph_launches - a.graph_launches);
}

int main(void)
{
    if (fixture_setup("ss-cuda-emu-htdemucs", "ref.safetensors") != 0)
        return 1;
    RUN(test_forward);
    fixture_cleanup();
    return test_summary();
}

/* test_cuda_emu_deepfilternet.c - tests/test_deepfilternet.c (DeepFilterNet3's
 * forward parity, block-size independence and the engine's stream) run
 * through the CUDA backend's code on the CUDA emulator (kernels/cuda/emu), in
 * fp32: the same tolerance, relative L2 <= 1e-4 against the reference. */
#define DFN_DEVICE "cuda"
#define DFN_NO_CLI   /* the binary runs on the CPU: tests/test_deepfilternet.c covers it */
#if defined(__SANITIZE_ADDRESS__)
/* under the sanitizers (make asan) one block size in each of the parity and engine tests: the
 * emulator is slow there (51 s for all on two cores), and the plain build runs all */
#define DFN_LIGHT
#endif
#include "test_deepfilternet.c"

/* test_cuda_emu_larsnet.c - tests/test_larsnet.c (LarsNet's engine parity over
 * whole-track STFT blocks, plain and Wiener, --batch 1 to 3, and the
 * refusals) run through the CUDA backend's code on the CUDA emulator
 * (kernels/cuda/emu), in fp32: the same tolerance, relative L2 per stem
 * <= 1e-4 against the PyTorch reference. */
#define LN_DEVICE "cuda"
#define LN_PREFIX "cuda_emu_larsnet"
#define LN_NO_CLI   /* the binary runs on the CPU: tests/test_larsnet.c covers it */
#if defined(__SANITIZE_ADDRESS__)
/* under the sanitizers (make asan) the batched runs only (plain and Wiener): the emulator is
 * slow there, and the plain build runs all */
#define LN_LIGHT
#endif
#include "test_larsnet.c"

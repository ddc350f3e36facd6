/* test_cuda_emu_mdx23c.c - tests/test_mdx23c.c (the MDX23C parity cases, batch
 * consistency, every norm and activation, refusals) run through the CUDA
 * backend's code on the CUDA emulator (kernels/cuda/emu), in fp32: the same
 * tolerance, relative L2 per stem <= 1e-4 against the PyTorch forward_out; the
 * forward pass recorded as a CUDA graph and replayed gives the direct passes' bits. */
#define RF_DEVICE "cuda"
#define RF_PREFIX "cuda_emu_mdx23c"
#define RF_NO_CLI   /* the binary runs on the CPU: tests/test_mdx23c.c covers it */
#define RF_GRAPH_STATS  /* passes 3 and 4 of test_graph_replay: a recording and its replay */
#include "../kernels/cuda/emu/cuda_emu_stats.h"
#if defined(__SANITIZE_ADDRESS__)
/* under the sanitizers (make asan) one case: the emulator is slow there, and the
 * plain build runs all of them */
#define RF_CASE_FILTER "gn_target_elu"
#endif
#include "test_mdx23c.c"

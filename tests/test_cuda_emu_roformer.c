/* test_cuda_emu_roformer.c - tests/test_roformer.c (the RoFormer parity cases,
 * batch consistency and refusals) run through the CUDA backend's code on the
 * CUDA emulator (kernels/cuda/emu), in fp32: the same tolerance, relative L2
 * per stem <= 1e-4 against the PyTorch forward_out; the forward pass recorded
 * as a CUDA graph and replayed gives the direct passes' bits. */
#define RF_DEVICE "cuda"
#define RF_PREFIX "cuda_emu_roformer"
#define RF_NO_CLI   /* the binary runs on the CPU: tests/test_roformer.c covers it */
#define RF_GRAPH_STATS  /* passes 3 and 4 of test_graph_replay_*: a recording and its replay */
#include "../kernels/cuda/emu/cuda_emu_stats.h"
#if defined(__SANITIZE_ADDRESS__)
/* under the sanitizers (make asan) one BS and one Mel case: the emulator is slow there, and
 * the plain build runs all of them */
#define RF_CASE_FILTER "_stereo_"
#endif
#include "test_roformer.c"

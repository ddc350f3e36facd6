/* cuda_emu_stats.h - what the CUDA emulator ran (for the tests linked with it). */
#ifndef SS_CUDA_EMU_STATS_H
#define SS_CUDA_EMU_STATS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ss_cuda_emu_stats {
    long long kernels;             /* kernel grids run                          */
    long long graphs_recorded;     /* stream captures ended with a graph        */
    long long graph_launches;      /* graph replays                             */
    long long captures_refused;    /* waiting calls made while capturing        */
    long long kernel_faults;       /* grids the grid emulator reported an error in */
} ss_cuda_emu_stats;

void ss_cuda_emu_get_stats(ss_cuda_emu_stats *out);

#ifdef __cplusplus
}
#endif

#endif

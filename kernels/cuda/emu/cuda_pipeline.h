/* cuda_pipeline.h - cp.async for the CUDA emulator: the copy is made at once
 * (zfill trailing bytes zeroed), commit and wait are no-ops. */
#ifndef SS_CUDA_EMU_PIPELINE_H
#define SS_CUDA_EMU_PIPELINE_H
#include <string.h>
static inline void __pipeline_memcpy_async(void *dst, const void *src, size_t size, size_t zfill = 0)
{
    memcpy(dst, src, size - zfill);
    if (zfill)
        memset((char *)dst + (size - zfill), 0, zfill);
}
static inline void __pipeline_commit() {}
static inline void __pipeline_wait_prior(size_t n) { (void)n; }
#endif

/* engine.h - the chunked engine: runs a model over a stream in the chunking
 * scheme the model asks for (ss_model_chunking, model.h).  One scheme so far:
 *
 * SS_CHUNK_DEMUCS, demucs's apply_model(split=True).  The mixture is cut into model-length segments that overlap by `overlap`,
 * each segment is padded to the model's valid length with its real
 * neighbours (zeros beyond the ends), run through the model (`batch` segments
 * per call), trimmed back, weighted by a triangular window and overlap-added;
 * the sum is divided by the summed weights.  With `shifts` > 0 this is done
 * `shifts` times on the mixture offset by a random 0..0.5 s and the results
 * are averaged, exactly as apply_model(shifts=N) does.
 *
 * Input is pulled and output pushed in blocks, in order, so memory is a few
 * segments whatever the track length.  Samples are planar per block:
 * input [C, n], output [S, C, n].
 */
#ifndef SS_ENGINE_H
#define SS_ENGINE_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "model.h"

typedef struct ss_engine_params {
    double segment;          /* seconds per chunk; 0 = the model's segment                */
    double overlap;          /* fraction of a chunk shared with the next, [0, 1)          */
    int shifts;              /* random-shift passes averaged; 0 = none                    */
    uint64_t seed;           /* seeds the shift offsets (Python random.seed compatible)   */
    int batch;               /* chunks per forward call (>= 1)                            */
    /* optional: called after every forward call with chunks done / total */
    void (*progress)(void *arg, int64_t done, int64_t total);
    void *progress_arg;
    /* optional: when *cancel becomes non-zero the run stops with SS_E_INTERRUPT */
    volatile sig_atomic_t *cancel;
} ss_engine_params;

/* Fill buf [C, cap] (planar, channel pitch `cap`) with up to `n` <= cap frames of the
 * (normalised, model-rate) mixture; *got = frames written (0 only at the end). */
typedef ss_status (*ss_engine_pull)(void *arg, float *buf, int64_t cap, int64_t n, int64_t *got, ss_error *err);
/* Receive the next `n` finished frames as [S, C, n] planar with pitch `pitch`
 * between consecutive channel rows (row (s, c) starts at (s*C + c) * pitch). */
typedef ss_status (*ss_engine_push)(void *arg, const float *stems, int64_t pitch, int64_t n, ss_error *err);

/* Separate `length` frames pulled from `pull` into stems pushed to `push`, in
 * the model's chunking scheme. */
ss_status ss_engine_run(ss_model *m, ss_backend *be, const ss_engine_params *p, int64_t length,
                        ss_engine_pull pull, void *pull_arg, ss_engine_push push, void *push_arg,
                        ss_error *err);

/* Python's random.seed(seed) followed by random.randint(0, hi) `n` times. */
void ss_py_randint(uint64_t seed, int64_t hi, int n, int64_t *out);

#endif

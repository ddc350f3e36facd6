/* engine.h - the chunked engine: runs a model over a stream in the chunking
 * scheme the model asks for (ss_model_chunking, model.h).  Two schemes:
 *
 * SS_CHUNK_DEMUCS, demucs's apply_model(split=True).  The mixture is cut into
 * model-length segments that overlap by `overlap`, each segment is padded to
 * the model's valid length with its real neighbours (zeros beyond the ends),
 * run through the model (`batch` segments per call), trimmed back, weighted by
 * a triangular window and overlap-added; the sum is divided by the summed
 * weights.  With `shifts` > 0 this is done `shifts` times on the mixture
 * offset by a random 0..0.5 s and the results are averaged, exactly as
 * apply_model(shifts=N) does.
 *
 * SS_CHUNK_MSST, MSST's demix() in its generic mode as it runs with batch
 * size 1 (ZFTurbo/Music-Source-Separation-Training, utils/model_utils.py).
 * Chunk C = the model's segment (or `segment`), step = C // num_overlap,
 * border = C - step, fade = C // 10.  A track longer than 2 border (border >
 * 0) is reflect-padded by border at both ends; chunks start at 0, step, ...
 * while inside the padded track; a chunk shorter than C is padded to C by
 * reflection when longer than C // 2, else with zeros.  Each output is
 * weighted by a window with linear fades of `fade` samples (none at the start
 * of the first chunk, none at the end of the last), overlap-added, divided by
 * the summed windows (0 where they sum to 0) and cropped back.  `batch`
 * chunks go to each forward call without changing the result (MSST itself
 * fades its windows per batch when its batch_size > 1).  No shifts.
 *
 * Input is pulled and output pushed in blocks, in order, so memory is a few
 * segments whatever the track length (MSST's end reflection needs only the
 * last border + 1 frames, and the length is known up front).  Samples are
 * planar per block: input [C, n], output [S, C, n], S the stems the network
 * gives (ss_model_net_sources: a residual stem is the pipeline's).
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
    int num_overlap;         /* SS_CHUNK_MSST: step = chunk // num_overlap; 0 = the
                                model's (ss_model_info.overlap_default); ignores overlap */
    int shifts;              /* random-shift passes averaged; 0 = none (SS_CHUNK_MSST: must be 0) */
    uint64_t seed;           /* seeds the shift offsets (Python random.seed compatible)   */
    int batch;               /* chunks per forward call (>= 1)                            */
    int channels;            /* the track's channels C (ss_model_track_channels); 0 = the
                                model's stemsplit.channels                                */
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
 * the model's chunking scheme.  length SS_ENGINE_LIVE: a live stream of
 * unknown length (SS_CHUNK_STREAM models with ss_model_stream_live only, else
 * SS_E_USAGE): every pull's frames (at least 1; the call may block until
 * some come) go to the model at once and what they make final is pushed
 * before the next pull, until a pull gives 0; then the rest is pushed, as
 * many frames in all as were pulled. */
#define SS_ENGINE_LIVE ((int64_t)-1)
ss_status ss_engine_run(ss_model *m, ss_backend *be, const ss_engine_params *p, int64_t length,
                        ss_engine_pull pull, void *pull_arg, ss_engine_push push, void *push_arg,
                        ss_error *err);

/* Python's random.seed(seed) followed by random.randint(0, hi) `n` times. */
void ss_py_randint(uint64_t seed, int64_t hi, int n, int64_t *out);

#endif

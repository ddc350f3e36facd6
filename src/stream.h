/* stream.h - --stream: raw PCM read from a descriptor (standard input), one
 * stem of a live-stream model written to another (standard output) as soon
 * as its samples are final:
 *
 *   read() whatever has come -> whole frames to float -> resample to the
 *   model's rate (a live ss_resampler) -> the engine's live stream
 *   (SS_ENGINE_LIVE: each piece through the model at once) -> the stem ->
 *   resample back -> PCM -> write() -> ... until end of file, then the
 *   model's and the resamplers' tails: exactly as many frames out as in.
 *
 * Each channel is its own stream where the model runs channels on their own
 * (channels_independent).  The samples are those the file path gives for the
 * same input with --sample-format f32 --clip none (no normalisation: a model
 * that normalises the track needs all of it and is refused).  Nothing of
 * the stream is kept beyond the model's state and a few pieces.
 */
#ifndef SS_STREAM_H
#define SS_STREAM_H

#include <signal.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "model.h"

/* Raw PCM sample formats: interleaved, little-endian. */
typedef enum ss_pcm_format {
    SS_PCM_S16 = 0,           /* 16-bit signed; read as x / 32768, written as
                                 floor(x * 32768) clipped, as the file path's
                                 16-bit WAV (libsndfile here) has them         */
    SS_PCM_F32                /* 32-bit IEEE float, as is                      */
} ss_pcm_format;

const char *ss_pcm_format_name(ss_pcm_format f);
int ss_pcm_format_parse(const char *s);          /* -1 when unknown */
int ss_pcm_format_bytes(ss_pcm_format f);        /* bytes per sample */

typedef struct ss_stream_params {
    ss_pcm_format format;     /* of both the input and the output              */
    int rate;                 /* Hz, of both                                   */
    int channels;             /* of both                                       */
    int in_fd, out_fd;        /* read until end of file; written              */
    const char *in_name, *out_name; /* for messages ("standard input")        */
    int source;               /* the stem written: a source of the network's   */
    int verbose;              /* -v: the set-up and the latency on stderr      */
    volatile sig_atomic_t *cancel; /* non-zero: stop with SS_E_INTERRUPT      */
} ss_stream_params;

/* Whether model m can run --stream with p's rate and channels; SS_E_USAGE
 * naming the model and why not (not a live-stream model, a normalising one,
 * a channel count it cannot take, a rate too far from its own). */
ss_status ss_stream_check(const ss_model *m, const ss_stream_params *p, ss_error *err);

/* Run the stream to its end.  *frames (NULL allowed): the frames read (and
 * written).  Errors: SS_E_IO for a read or write error (EPIPE when the
 * reader of out_fd has gone: SIGPIPE must be ignored by the caller),
 * SS_E_DATA for input that ends inside a frame, SS_E_INTERRUPT. */
ss_status ss_stream_run(ss_model *m, ss_backend *be, const ss_stream_params *p, int64_t *frames, ss_error *err);

#endif

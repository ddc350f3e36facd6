/* model.h - loading a separation model and running its forward pass.
 *
 * Each architecture lives in its own folder models/<name>/ and is listed by
 * one line in models/registry.h: an ss_arch (load, forward, valid_length,
 * free, and its pipeline policy: input normalisation, chunking scheme, device
 * memory estimate).  Architectures are written against the backend interface
 * only (backend.h).  docs/adding-a-model.md walks through adding one.
 * The architecture is chosen by the safetensors metadata key
 * "stemsplit.architecture"; see docs/model-format.md.
 */
#ifndef SS_MODEL_H
#define SS_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "safetensors.h"

#define SS_MAX_SOURCES 16
#define SS_MAX_NAME 64

/* How the pipeline normalises a model's input, and so de-normalises its stems. */
typedef enum ss_input_norm {
    SS_NORM_NONE = 0,         /* the mixture as decoded (at the model's rate)      */
    SS_NORM_MIX_MEAN_STD,     /* demucs's CLI: x' = (x - mean) / std with mean and
                               * unbiased std of the whole track's mono mix (std 1
                               * for digital silence); stems * std + mean         */
    SS_NORM_MIX_MEAN_STD_POP  /* MSST's normalize_audio: the same with numpy's
                               * std (ddof 0) of the mono mix                     */
} ss_input_norm;

/* How the pipeline cuts a track into the chunks forward() sees. */
typedef enum ss_chunking {
    SS_CHUNK_DEMUCS = 0,      /* demucs's apply_model(split=True): overlapping
                               * segments of the model's length, triangular
                               * weights, random shifts (src/engine.c)          */
    SS_CHUNK_MSST,  /* MSST's demix: ... */
    /* SS_CHUNK_MSST: MSST's demix() in its generic mode (batch size 1):
     * reflect-padded track, chunks of chunk_size every chunk_size //
     * num_overlap, linear fades of chunk_size // 10 (src/engine.c) */
    SS_CHUNK_STFT_BLOCKS,
    /* SS_CHUNK_STFT_BLOCKS: a model on one STFT of the whole track, whose
     * frames it processes in independent blocks (LarsNet; any model that
     * is an STFT, a per-frame computation and an iSTFT).  The geometry is
     * the model's (ss_arch.stft_blocks, ss_stft_blocks below): the track,
     * zero-padded at its end to a multiple of hop where pad_end says so,
     * reflect-padded by n_fft/2 at both ends (torch.stft(center=True)), has
     * frames t = 0 .. N-1 at t*hop; block g is frames [g*block, (g+1)*block)
     * (the last may be shorter).  forward() gets, per batch item, the
     * (G-1)*hop + n_fft samples those G frames cover (the padding applied
     * only at the track's ends) and returns per stem their windowed
     * overlap-add, NOT divided by the window envelope; the engine adds the
     * neighbours' overlapping contributions and divides by the envelope of
     * all frames, so that the result is the whole-track iSTFT exactly,
     * while memory is a few blocks whatever the track's length.  No
     * shifts; --segment and --overlap do not apply. */
    SS_CHUNK_STREAM
    /* SS_CHUNK_STREAM: a stateful model fed the whole track in order
     * (DeepFilterNet: GRU states, running norms, causal look-back).  The
     * engine calls stream_begin once per track with its length, then
     * stream_run on consecutive pieces of at most ss_stream_geom.block
     * samples (x [C, n]) until `length` samples have gone in.  Each call
     * writes to y [S, C, block + extra] (channel pitch block + extra) the
     * next *n_out samples of the stems, in order: the model holds back what
     * its look-ahead does not allow yet, and the call that takes the last
     * sample returns all the rest, so that the outputs total `length`.
     * Memory is the model's state and one piece whatever the track's length;
     * the result does not depend on the piece size.  forward() is not used.
     * No shifts; --segment, --overlap and --batch do not apply.
     * A live stream (--stream: no known end) begins with length -1 instead:
     * stream_run then never treats a call as the last, and after the last
     * piece (of any size, empty ones too) stream_end returns all the rest, so
     * that the outputs total the samples that went in, the same samples as
     * for a track of that length given up front.  Only for a model with a
     * stream_end (ss_model_stream_live). */
} ss_chunking;

/* SS_CHUNK_STREAM: a model's piece sizes (ss_arch.stream_geom). */
typedef struct ss_stream_geom {
    int64_t block;              /* input samples per stream_run call at most            */
    int64_t extra;              /* output samples a call may give beyond its input      */
    int64_t latency;            /* algorithmic latency, samples: the longest a sample
                                   waits for its output to be final (window and
                                   look-ahead; fed sample by sample); 0 = not known    */
} ss_stream_geom;

/* SS_CHUNK_STFT_BLOCKS: a model's STFT geometry (ss_arch.stft_blocks). */
typedef struct ss_stft_blocks {
    int n_fft, hop;             /* frame length and step; hop divides n_fft / 2           */
    int block;                  /* frames per forward() item at most                      */
    int pad_end;                /* 1: zero-pad the track's end to a multiple of hop first
                                   (LarsNet's pad_stft_input); 0: frames of the track as is */
    const float *window_sq;     /* [n_fft] host: analysis x synthesis window (hann^2); the
                                   envelope is its sum over every frame's position        */
} ss_stft_blocks;

typedef struct ss_model_info {
    char name[SS_MAX_NAME];                   /* file name without .safetensors      */
    char architecture[SS_MAX_NAME];           /* "htdemucs", "bandsplit", ...         */
    int n_sources;
    char sources[SS_MAX_SOURCES][SS_MAX_NAME];/* e.g. drums, bass, other, vocals      */
    int samplerate;                           /* Hz                                   */
    int channels;                             /* audio channels the model takes       */
    int64_t segment_num, segment_den;         /* training segment, seconds, num/den   */
    int64_t segment_length;                   /* floor(samplerate * segment) samples  */
    uint64_t parameters;                      /* number of weights                    */
    /* The last of sources[] is a residual when `residual` is 1 (metadata
     * stemsplit.residual): the pipeline makes it, mixture minus the sum of
     * the others; the network gives n_sources - residual stems.  An
     * architecture's load() and memory_estimate() see n_sources without it. */
    int residual;
    ss_chunking chunking;                     /* the arch's, or stemsplit.chunking     */
    int overlap_default;                      /* SS_CHUNK_MSST: num_overlap when no
                                                 --overlap is given (msst.num_overlap,
                                                 else 2)                               */
    int msst_normalize;                       /* metadata msst.normalize: MSST's
                                                 normalize_audio, whatever the arch's
                                                 own input_norm (ss_model_input_norm) */
    int channels_independent;                 /* the arch's ss_arch.channels_independent:
                                                 `channels` (1) is one stream's, and a
                                                 file of any channel count runs as that
                                                 many independent streams              */
} ss_model_info;

/* The channels the pipeline gives a model for a file of `file_channels`: the
 * file's own where the model runs each channel on its own, else the model's
 * (the file is then mapped to them: mono duplicated, mixed down). */
static inline int ss_model_track_channels(const ss_model_info *info, int file_channels)
{
    return info->channels_independent ? file_channels : info->channels;
}

/* Stems the network itself gives (the pipeline adds a residual after them). */
static inline int ss_model_net_sources(const ss_model_info *info) { return info->n_sources - info->residual; }

/* A statistic a model reports on the track it ran last (ss_arch.track_stats):
 * DeepFilterNet's local SNR estimate, say.  Strings of static storage. */
typedef struct ss_track_stat {
    const char *key;          /* JSON key, snake_case, its unit last: "lsnr_median_db" */
    const char *what;         /* a few words for -v: "local SNR median"                 */
    const char *unit;         /* what -v prints after the value: "dB", "%"              */
    double value;
} ss_track_stat;
#define SS_MAX_TRACK_STATS 8

/* Device memory a run needs: fixed + batch * per_item bytes (see ss_mem_need). */
typedef struct ss_mem_estimate {
    uint64_t fixed;           /* weights, the backend's scratch, plans           */
    uint64_t per_item;        /* activations and transfer buffers per segment    */
} ss_mem_estimate;

static inline uint64_t ss_mem_need(const ss_mem_estimate *m, int batch)
{
    return m->fixed + (uint64_t)(batch > 0 ? batch : 1) * m->per_item;
}

typedef struct ss_arch {
    const char *name;
    /* Check and load the weights of `st` (info already filled from the
     * stemsplit.* metadata), upload them to `be`, return a private state. */
    ss_status (*load)(ss_st *st, const ss_model_info *info, ss_backend *be, void **state, ss_error *err);
    /* x [batch, channels, length] -> y [batch, n_sources, channels, length],
     * both device memory of `be`; `length` is a value valid_length returned. */
    ss_status (*forward)(void *state, ss_backend *be, const float *x, float *y, int batch,
                         int64_t length, ss_error *err);
    /* The input length the model wants for a chunk of `length` samples
     * (demucs's valid_length); NULL means `length` itself. */
    int64_t (*valid_length)(void *state, int64_t length);
    void (*free)(void *state, ss_backend *be);
    /* Optional: 1 when forward() with these arguments, after one ordinary
     * call with the same arguments, only queues device ops (no host round
     * trip, no allocation, same pointers every time), so that a backend with
     * op recording (CUDA graphs) may record it once and replay it.  NULL = never. */
    int (*graph_ok)(void *state, int batch, int64_t length);

    /* ---- pipeline policy: what the generic pipeline asks the model ---- */
    /* Optional: the input normalisation of a loaded model.  NULL = SS_NORM_NONE. */
    ss_input_norm (*input_norm)(const void *state);
    /* The chunking scheme (0 = SS_CHUNK_DEMUCS); a model file may choose
     * another with metadata stemsplit.chunking (docs/model-format.md). */
    ss_chunking chunking;
    /* Optional: device memory for one run of this model file, from its header
     * alone (metadata and tensor shapes; no weights read): called before the
     * device is chosen.  NULL = the weights plus the transfer buffers of a
     * segment, a floor rather than an estimate. */
    ss_status (*memory_estimate)(ss_st *st, const ss_model_info *info, ss_mem_estimate *out, ss_error *err);
    /* SS_CHUNK_STFT_BLOCKS (required there): the loaded model's STFT geometry. */
    void (*stft_blocks)(const void *state, ss_stft_blocks *out);
    /* Optional: set a model option by name (e.g. "wiener" = LarsNet's
     * alpha-Wiener exponent) before forward() runs.  SS_E_USAGE for an option
     * or value the model does not take; NULL = no options. */
    ss_status (*option)(void *state, const char *key, double value, ss_error *err);
    /* SS_CHUNK_STREAM (all three required there): the piece sizes, the start
     * of a track of `length` samples and C = `channels` (every carried state
     * reset; C is stemsplit.channels unless channels_independent), and one
     * piece: x [C, n] -> y [S, C, block + extra], *n_out samples per row
     * (device memory; see SS_CHUNK_STREAM above). */
    void (*stream_geom)(const void *state, ss_stream_geom *out);
    ss_status (*stream_begin)(void *state, ss_backend *be, int64_t length, int channels, ss_error *err);
    ss_status (*stream_run)(void *state, ss_backend *be, const float *x, float *y, int64_t n, int64_t *n_out,
                            ss_error *err);
    /* SS_CHUNK_STREAM, optional: the end of a stream begun with length -1
     * (a live stream, its length unknown until it ends): y [S, C, block +
     * extra] gets the rest of the stems, *n_out samples per row, so that the
     * outputs total the samples that went in.  NULL = the model needs the
     * length up front: stream_begin never gets -1 (--stream refuses it). */
    ss_status (*stream_end)(void *state, ss_backend *be, float *y, int64_t *n_out, ss_error *err);
    /* 1: the network treats every audio channel on its own (DeepFilterNet:
     * one stream per channel, its own GRU states and norms), so the pipeline
     * gives it a file's channels as they are, whatever their count: no
     * mixdown, no upmix; stems have the file's channels, channel c the model
     * run on channel c alone (a residual stem: mixture - the others, per
     * channel).  The model file's stemsplit.channels must then be 1 (one
     * stream's).  A property of the architecture, not of a file: no metadata
     * can give it to a network that mixes its channels.  SS_CHUNK_STREAM only
     * (stream_begin gets the track's channel count).  0 = the file is mapped
     * to stemsplit.channels (mono duplicated, 3..8 channels downmixed). */
    int channels_independent;
    /* Optional: statistics of the track the model ran last (since the last
     * stream_begin), at most `cap` into out; returns how many (0: none for
     * this track).  The pipeline prints them under -v and writes them to the
     * report's model_stats per file.  NULL = none. */
    int (*track_stats)(const void *state, ss_track_stat *out, int cap);
} ss_arch;

typedef struct ss_model ss_model;

/* Find a model by path or NAME: an existing path is used as is; a NAME is
 * looked up as NAME.safetensors in $STEMSPLIT_MODEL_PATH (colon list),
 * ~/.local/share/stemsplit/models and SS_DATADIR/models.  SS_E_NOINPUT
 * listing the places searched when not found. */
ss_status ss_model_resolve(const char *name_or_path, char *out, size_t out_size, ss_error *err);
/* The folders a NAME is looked up in, in ss_model_resolve's order: each entry
 * of $STEMSPLIT_MODEL_PATH, $XDG_DATA_HOME/stemsplit/models (else
 * ~/.local/share/stemsplit/models), SS_DATADIR/models, then beside the
 * executable ./models and ../share/stemsplit/models.  fn is called for each,
 * whether it exists or not. */
void ss_model_search_dirs(void (*fn)(void *arg, const char *dir), void *arg);

/* Read a model file's header only (metadata and tensor table; no weights are
 * read or uploaded): its info and its architecture's device memory estimate
 * (mem may be NULL).  The checks of ss_model_load that need no weights. */
ss_status ss_model_peek(const char *path, ss_model_info *info, ss_mem_estimate *mem, ss_error *err);

ss_status ss_model_load(const char *path, ss_backend *be, ss_model **out, ss_error *err);
const ss_model_info *ss_model_get_info(const ss_model *m);
/* The model's pipeline policy (its architecture's, see ss_arch). */
ss_input_norm ss_model_input_norm(const ss_model *m);
ss_chunking ss_model_chunking(const ss_model *m);
/* SS_CHUNK_STFT_BLOCKS: the model's geometry; SS_E_INTERNAL for a model without one. */
ss_status ss_model_stft_blocks(const ss_model *m, ss_stft_blocks *out, ss_error *err);
/* SS_CHUNK_STREAM: the model's piece sizes, a track's start, one piece
 * (ss_arch.stream_*); SS_E_INTERNAL for a model without them. */
ss_status ss_model_stream_geom(const ss_model *m, ss_stream_geom *out, ss_error *err);
ss_status ss_model_stream_begin(ss_model *m, int64_t length, int channels, ss_error *err);
ss_status ss_model_stream_run(ss_model *m, const float *x, float *y, int64_t n, int64_t *n_out, ss_error *err);
/* 1 when the model can run a stream of unknown length (SS_CHUNK_STREAM with
 * ss_arch.stream_end): stream_begin with length -1, pieces, stream_end. */
int ss_model_stream_live(const ss_model *m);
/* The end of a stream begun with length -1 (ss_arch.stream_end). */
ss_status ss_model_stream_end(ss_model *m, float *y, int64_t *n_out, ss_error *err);
/* The model's statistics of the track it ran last (ss_arch.track_stats), at
 * most cap; how many (0 for a model without them). */
int ss_model_track_stats(const ss_model *m, ss_track_stat *out, int cap);
/* A model option (ss_arch.option); SS_E_USAGE naming the model where it has none. */
ss_status ss_model_option(ss_model *m, const char *key, double value, ss_error *err);
const ss_mem_estimate *ss_model_memory(const ss_model *m);
ss_status ss_model_forward(ss_model *m, const float *x, float *y, int batch, int64_t length, ss_error *err);
int64_t ss_model_valid_length(ss_model *m, int64_t length);
void ss_model_free(ss_model *m);

/* The engine's transfer buffers, kept with the model from one file to the
 * next: the same device pointers every run (a recorded forward pass replays
 * instead of being recorded again) and host staging buffers allocated (on a
 * GPU: page-locked) once.  x [n_x] and y [n_y] floats on the device, two host
 * buffers of each size.  Grown when a run needs more; freed with the model.
 * Reuse after a failed run is safe: the device runs its queued copies and
 * passes in order, so anything still in flight lands before the next run's. */
typedef struct ss_model_io {
    float *dev_x, *dev_y;
    float *host_x[2], *host_y[2];
    size_t n_x, n_y;
} ss_model_io;
ss_status ss_model_io_get(ss_model *m, size_t n_x, size_t n_y, ss_model_io **out, ss_error *err);

/* Architectures compiled in (NULL-terminated). */
const ss_arch *const *ss_arch_list(void);

#endif

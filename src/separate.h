/* separate.h - one input file through the whole pipeline:
 *
 *   decode (libsndfile, libmpg123) -> channels to the model's (mono duplicated,
 *   3..8 channels downmixed to stereo; the file's as they are for a model
 *   that runs each channel on its own) -> pass 1: statistics of the
 *   mono mix -> pass 2: resample to the model rate -> normalise -> chunked
 *   engine -> de-normalise -> choose/sum stems -> resample back (to the input's
 *   rate, or 48 kHz for Opus) -> clip policy -> encode to temporary files (WAV,
 *   FLAC, MP3, Opus, Vorbis) -> rename all into place.
 *
 * Nothing is renamed into place until every stem of the file is complete; on
 * any failure every temporary file is removed.
 *
 * With p->chain (--then), stage 2 also runs each chained model on its stem
 * after the first model (ss_chain), and stage 3 encodes every model's stems
 * before renaming any into place.
 */
#ifndef SS_SEPARATE_H
#define SS_SEPARATE_H

#include <stdint.h>

#include "audio.h"
#include "engine.h"
#include "model.h"
#include "report.h"

typedef enum ss_clip { SS_CLIP_RESCALE = 0, SS_CLIP_CLAMP, SS_CLIP_NONE } ss_clip;

/* When --clip rescale encodes stems that can be written at offsets (WAV):
 * by default at the running scale where the network runs beside the host (a
 * backend whose downloads overlap its work), else after the last block.  The
 * bytes are the same either way; tests force each to compare them. */
typedef enum ss_rescale_when {
    SS_RESCALE_BY_DEVICE = 0,   /* the default                              */
    SS_RESCALE_RUNNING,         /* always at the running scale (tests)      */
    SS_RESCALE_AFTER            /* always after the last block (tests)      */
} ss_rescale_when;

/* --then STEM=MODEL: a model run on one stem of the first model's output (a
 * chained stage).  The stem is taken at the first model's rate and channels,
 * de-normalised and before any clip policy, staged as 32-bit float in an
 * unlinked temporary file beside the track's stems (memory-mapped: the page
 * cache holds it, not the heap), and read back as an input file would be:
 * the second model's statistics pass, channel mapping and resampling to its
 * rate.  Its stems are written as STEM/NAME through the --filename template
 * ({stem} = "drums/kick", {model} = the first model's name), encoded and
 * committed with the first model's. */
typedef struct ss_chain {
    int source;                 /* the first model's stem fed to it (may be its residual) */
    ss_model *model;            /* loaded once for the batch, on the same backend         */
    ss_engine_params engine;    /* its chunking (progress and cancel: the first stage's)  */
} ss_chain;

typedef struct ss_sep_params {
    const char *out_dir;             /* -o: output root                                   */
    const char *filename;            /* --filename template, relative to out_dir          */
    ss_file_format format;           /* --format                                          */
    ss_sample_format sample_format;  /* --sample-format (WAV, FLAC)                       */
    int bitrate;                     /* --bitrate kbit/s of a lossy format; 0: its default */
    ss_clip clip;                    /* --clip                                            */
    uint32_t stems;                  /* --stems: bit i = write source i; 0 = all          */
    int two_stems;                   /* --two-stems: source index, -1 when not used       */
    ss_engine_params engine;         /* chunking, shifts, batch, progress, cancel         */
    int threads;                     /* -j: threads of the statistics and rescale passes (0: all cores) */
    int verbose;                     /* -v: say on stderr how a file's channels are mapped */
    ss_rescale_when rescale_when;    /* 0; tests force one way (ss_rescale_when)          */
    const ss_chain *chain;           /* --then: n_chain stages on this model's stems, or NULL */
    int n_chain;
    const char *stem_prefix;         /* a chained stage's "STEM/" before its stem names, else NULL */
    const char *model_name;          /* a chained stage's {model} (the first model's), else NULL */
} ss_sep_params;

/* Separate `input` ("-" = stdin); `reldir` is the {dir} template field.
 * Fills rep (outputs, durations, stage times).  The same as the three stages
 * below run one after the other. */
ss_status ss_separate(ss_model *m, ss_backend *be, const ss_sep_params *p, const char *input,
                      const char *reldir, ss_file_report *rep, ss_error *err);

/* ---- the same in three stages, for a pipeline over many files ---------------------------
 *
 *   ss_sep_prepare  plan the outputs, open the input, check it, statistics pass
 *                   (pass 1); no backend work, so it may run on another thread
 *   ss_sep_infer    temporary outputs, engine (pass 2: decode, infer, stems);
 *                   the thread that owns the backend
 *   ss_sep_commit   rescale pass (--clip rescale), encode, rename every stem into
 *                   place; any thread
 *
 * A job is used by one thread at a time; hand it over with a lock (a queue).
 * `input`, `p` and `rep` must stay valid until ss_sep_job_free().  After a
 * failed stage the job must only be freed; freeing a job that has not been
 * committed removes all its temporary files. */
typedef struct ss_sep_job ss_sep_job;

ss_status ss_sep_prepare(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                         ss_file_report *rep, ss_sep_job **out, ss_error *err);
ss_status ss_sep_infer(ss_sep_job *j, ss_backend *be, ss_error *err);
ss_status ss_sep_commit(ss_sep_job *j, ss_error *err);
void ss_sep_job_free(ss_sep_job *j);       /* NULL is allowed */

/* Output paths `input` would get (for collision checks), the chained stages'
 * included: calls fn for each. */
ss_status ss_separate_outputs(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                              void (*fn)(void *arg, const char *path), void *arg, ss_error *err);

const char *ss_clip_name(ss_clip c);
int ss_clip_parse(const char *s);   /* -1 when unknown */

/* Mean and unbiased std of the mono mix (the mean over cm model channels of
 * the cin-channel file) of `frames` frames of rd from frame 0 (-1: every frame
 * to the end of the stream, for a length that was an estimate), as the demucs
 * CLI computes them; a NaN or infinite sample is SS_E_DATA naming its frame.
 * With threads > 1 (0: all cores, at most 8) and a seekable reader, blocks are
 * read by clones of rd on that many threads and merged in file order: the
 * same result bit for bit as one thread.  rd is left at frame 0.  *count (NULL
 * allowed): the frames read. */
ss_status ss_mix_stats(ss_audio_reader *rd, const char *input, int cin, int cm, int64_t frames, int threads,
                       double *mean, double *std, int64_t *count, ss_error *err);

#endif

/* separate.h - one input file through the whole pipeline:
 *
 *   decode (libsndfile) -> channels to the model's -> pass 1: statistics of the
 *   mono mix -> pass 2: resample to the model rate -> normalise -> chunked
 *   engine -> de-normalise -> choose/sum stems -> resample back -> clip policy
 *   -> encode to temporary files -> rename all into place.
 *
 * Nothing is renamed into place until every stem of the file is complete; on
 * any failure every temporary file is removed.
 */
#ifndef SS_SEPARATE_H
#define SS_SEPARATE_H

#include <stdint.h>

#include "audio.h"
#include "engine.h"
#include "model.h"
#include "report.h"

typedef enum ss_clip { SS_CLIP_RESCALE = 0, SS_CLIP_CLAMP, SS_CLIP_NONE } ss_clip;

typedef struct ss_sep_params {
    const char *out_dir;             /* -o: output root                                   */
    const char *filename;            /* --filename template, relative to out_dir          */
    ss_file_format format;           /* --format                                          */
    ss_sample_format sample_format;  /* --sample-format                                   */
    ss_clip clip;                    /* --clip                                            */
    uint32_t stems;                  /* --stems: bit i = write source i; 0 = all          */
    int two_stems;                   /* --two-stems: source index, -1 when not used       */
    ss_engine_params engine;         /* chunking, shifts, batch, progress, cancel         */
} ss_sep_params;

/* Separate `input` ("-" = stdin); `reldir` is the {dir} template field.
 * Fills rep (outputs, durations, stage times). */
ss_status ss_separate(ss_model *m, ss_backend *be, const ss_sep_params *p, const char *input,
                      const char *reldir, ss_file_report *rep, ss_error *err);

/* Output paths `input` would get (for collision checks): calls fn for each. */
ss_status ss_separate_outputs(ss_model *m, const ss_sep_params *p, const char *input, const char *reldir,
                              void (*fn)(void *arg, const char *path), void *arg, ss_error *err);

const char *ss_clip_name(ss_clip c);
int ss_clip_parse(const char *s);   /* -1 when unknown */

#endif

/* eval.h - separation quality metrics: BSSEval v4 (museval) and the MDX SDR.
 *
 * Pure computation on float arrays, no I/O.  ss_eval_bss() reproduces
 * museval.metrics.bss_eval(references, estimates, window, hop,
 * compute_permutation=False, filters_len=512, framewise_filters=False,
 * bsseval_sources_version=False) (sigsep-mus-eval 0.4, "v4", images mode), as
 * museval.eval_mus_track calls it with 1 s frames:
 *   - the Gram matrix of the references delayed by 0..511 samples and their
 *     cross-correlations with each estimate, over the whole track;
 *   - the distortion filters solved once per track (G + eps I) C = D, with
 *     the same solve for each source's own references alone;
 *   - per frame, the references cut to the frame and filtered, and SDR, ISR,
 *     SIR, SAR from the energies of the decomposition; a frame where any
 *     reference or any estimate is silent (its channels sum to 0 at every
 *     sample, museval's test) gives NaN for every source;
 *   - infinite values (a zero denominator or numerator) become NaN as museval
 *     stores them, and the per-source score is the median over frames
 *     ignoring NaN (np.nanmedian), NaN when every frame is NaN.
 * An estimate shorter than the references counts as zero-padded, a longer
 * one as cut to their length (museval.pad_or_truncate).
 */
#ifndef SS_EVAL_H
#define SS_EVAL_H

#include <stdint.h>

#include "error.h"

enum { SS_EVAL_SDR = 0, SS_EVAL_ISR, SS_EVAL_SIR, SS_EVAL_SAR, SS_EVAL_NMETRICS };

#define SS_EVAL_FILTER_LEN 512

typedef struct ss_eval_scores {
    int nsrc;
    int nframes;
    int64_t window, hop;        /* samples                                           */
    double *frames;             /* [metric][src][frame], dB, NaN where undefined      */
    double median[SS_EVAL_NMETRICS][64]; /* nanmedian over frames, NaN when none       */
    double nsdr[64];            /* MDX SDR over the whole track                       */
    int bss_defined;            /* 0: a whole reference or estimate is silent, museval
                                   refuses such tracks; frames and medians are NaN    */
    int solve_fallback;         /* number of filter solves that needed pivoted LU     */
} ss_eval_scores;

#define SS_EVAL_MAX_SOURCES 64

/* Score `nsrc` estimates against their references, `nchan` channels each.
 * ref[j * nchan + c] is channel c of reference j, `length` samples (planar);
 * est[j * nchan + c] the same for estimate j, est_length[j] samples (padded
 * or cut to `length`).  `window` and `hop` in samples (museval: 1 s each).
 * SS_E_DATA for non-finite samples or nothing to score; SS_E_NOMEM. */
ss_status ss_eval_bss(const float *const *ref, const float *const *est, int nsrc, int nchan, int64_t length,
                      const int64_t *est_length, int64_t window, int64_t hop, ss_eval_scores **out,
                      ss_error *err);
void ss_eval_scores_free(ss_eval_scores *s);

static inline double ss_eval_frame(const ss_eval_scores *s, int metric, int src, int frame)
{
    return s->frames[((int64_t)metric * s->nsrc + src) * s->nframes + frame];
}

/* MDX challenge SDR of one source (demucs evaluate.py new_sdr):
 * 10 log10((sum ref^2 + 1e-7) / (sum (ref - est)^2 + 1e-7)) over all channels
 * and samples, est zero-padded or cut to `length`. */
double ss_eval_mdx_sdr(const float *const *ref, const float *const *est, int nchan, int64_t length,
                       int64_t est_length);

/* Median of the non-NaN values of v[0..n) (np.nanmedian); NaN when there are
 * none.  Reorders nothing: works on a copy (NaN when out of memory). */
double ss_eval_nanmedian(const double *v, int n);
/* Mean of the non-NaN values; NaN when there are none. */
double ss_eval_nanmean(const double *v, int n);

#endif

/* eval_cmd.h - `stemsplit eval`: score estimated stems against reference
 * stems (BSSEval v4 as museval, and the MDX SDR; src/eval.h).
 *
 *   stemsplit eval [--report-json FILE] [-q] REF_DIR EST_DIR
 *
 * REF_DIR and EST_DIR hold NAME.wav / NAME.flac stems of one track, or are
 * MUSDB18-style trees (REF_DIR/TRACK/NAME.wav, EST_DIR/TRACK/NAME.wav; a
 * "mixture" stem is not scored).  The table goes to standard output (to
 * standard error when the report goes there), the JSON report to FILE,
 * --plot the SDR of every frame as SVG.  With -m, each track's mixture is
 * first separated into EST_DIR by running this program on it.
 */
#ifndef SS_EVAL_CMD_H
#define SS_EVAL_CMD_H

/* argv[0] is "eval".  Returns the process exit status (sysexits). */
int ss_eval_main(int argc, char **argv);

#endif

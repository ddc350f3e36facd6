/* batch.h - many inputs in one process.
 *
 *   inputs     files, folders (audio files directly in them, or the whole tree
 *              with `recursive`) and lists of paths, expanded into one list of
 *              (path, {dir}) entries
 *   checks     two inputs that would write the same output file are refused
 *              before any work starts
 *   shards     --shard I/N keeps the I-th of N balanced parts of the list,
 *              chosen from the list's sorted order, so N processes given the
 *              same inputs split them without coordination
 *   pipeline   three stages on three threads, joined by bounded queues:
 *                prepare (open, checks, statistics pass) -> infer (the engine,
 *                on the calling thread, which owns the backend) -> commit
 *                (rescale pass, encode, rename into place, report)
 *              so the next file is decoded and the previous one encoded while
 *              the current one is in inference.
 */
#ifndef SS_BATCH_H
#define SS_BATCH_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"
#include "model.h"
#include "report.h"
#include "separate.h"

typedef struct ss_batch_input {
    char *path;          /* as given or found; "-" = standard input                   */
    char *reldir;        /* {dir}: its folder relative to the folder argument, or ""  */
    ss_status status;    /* SS_OK, or a failure found while listing (unreadable dir)  */
    char *error;         /* message for that failure (or skip), else NULL             */
    int skip;            /* found in a folder but no reader opens it: reported as     */
                         /* skipped with `error` as the reason, never opened again    */
} ss_batch_input;

typedef struct ss_batch_list {
    ss_batch_input *v;
    size_t n, cap;
    size_t dirs;         /* folders searched                                          */
} ss_batch_list;

typedef struct ss_batch_scan {
    int recursive;       /* -r: descend into sub-folders                              */
    int n_skip;          /* never descend into these folders (the output directory    */
    dev_t skip_dev[2];   /* and the fixed first part of the output template in it),   */
    ino_t skip_ino[2];   /* compared by device and inode, whatever their spelling     */
} ss_batch_scan;

/* Add folder `path` to sc's folders never descended into, when it exists. */
void ss_batch_scan_skip(ss_batch_scan *sc, const char *path);

/* Add one argument: "-", a file (any name; a missing one fails when its turn
 * comes), or a folder, whose audio files are added in name order.  A file in
 * a folder is audio if its extension is a known audio one or a reader can
 * open it (ss_audio_probe); a file whose extension names an audio format no
 * reader here opens (.m4a, .wma, ...) is added with `skip` set and the
 * reason; other files and hidden names (".*") are ignored.  Fails only when
 * out of memory. */
ss_status ss_batch_add(ss_batch_list *l, const char *arg, const ss_batch_scan *sc, ss_error *err);
/* Add every line of the file `list` ("-" = standard input) as an argument;
 * empty lines are ignored and a trailing CR is dropped. */
ss_status ss_batch_add_from(ss_batch_list *l, const char *list, const ss_batch_scan *sc, ss_error *err);
void ss_batch_list_free(ss_batch_list *l);

/* Before any work: SS_E_USAGE, naming both inputs and the file, when two
 * inputs would write the same output path, or when an output path is one of
 * the inputs (the same file by device and inode where it exists, else the
 * same path once made absolute and normalised): a stem must never replace an
 * input.  Inputs whose names cannot be planned are left to fail on their own. */
ss_status ss_batch_check_collisions(ss_model *m, const ss_sep_params *p, const ss_batch_list *l, ss_error *err);

/* The entry of l that `path` names (the same file, or the same normalised
 * path where it does not exist), or NULL. */
const ss_batch_input *ss_batch_find_input(const ss_batch_list *l, const char *path);

/* Keep part `index` (1-based) of `count`: sort the entries by path (bytes),
 * then entry r of the sorted order goes to part r % count + 1.  The kept
 * entries stay in the order given. */
ss_status ss_batch_shard(ss_batch_list *l, int index, int count, ss_error *err);

typedef struct ss_batch_params {
    const ss_sep_params *sep;       /* per-file parameters (engine.cancel is used)      */
    int skip_existing;              /* a track whose outputs all exist is skipped       */
    int no_clobber;                 /* an existing output is an error for that track    */
    int pipeline;                   /* 0: the three stages one after the other          */
    int quiet;                      /* no per-file lines (failures are still printed)   */
    int progress;                   /* draw a progress bar on stderr                    */
    const char *prog;               /* prefix for error lines                           */
    volatile sig_atomic_t *cancel;  /* non-zero: stop (finished tracks are kept)        */
} ss_batch_params;

/* Separate every entry of l.  rep must hold one entry per input of l, in
 * order (ss_report_add), and is filled in: ok, failed with the error, or
 * skipped with the reason (existing stems, no reader for the format, or not
 * started because of *cancel or because an earlier file found the output's
 * disk full (ENOSPC, EDQUOT): the batch stops there).  *first_failure is the status of the first failed file
 * (SS_OK when none).  Returns non-OK only when the batch itself could not
 * run. */
ss_status ss_batch_run(ss_model *m, ss_backend *be, const ss_batch_params *bp, const ss_batch_list *l,
                       ss_report *rep, ss_status *first_failure, ss_error *err);

#endif

/* report.h - what a run did: the per-file lines on stderr, the totals, and
 * the --report-json document (schema in man/stemsplit.1, REPORT JSON). */
#ifndef SS_REPORT_H
#define SS_REPORT_H

#include <stdio.h>

#include "backend.h"
#include "error.h"
#include "model.h"

typedef enum ss_file_status { SS_FILE_OK = 0, SS_FILE_FAILED, SS_FILE_SKIPPED } ss_file_status;

/* One model's share of a file's work when models are chained (--then). */
typedef struct ss_stage_report {
    char model[SS_MAX_NAME];  /* the model's name                                   */
    char stem[SS_MAX_NAME];   /* the first model's stem it separated; "" for the first model */
    double audio_seconds;     /* the audio it separated                             */
    double wall_seconds;      /* its stages' own time                               */
    double decode, infer, encode;
    ss_track_stat stats[SS_MAX_TRACK_STATS]; /* the model's statistics of the track */
    int n_stats;
} ss_stage_report;

typedef struct ss_file_report {
    char *input;              /* input path as given                         */
    char **outputs;           /* stems written (final paths)                 */
    int n_outputs;
    double audio_seconds;     /* input duration                              */
    double wall_seconds;      /* whole file, decode to last rename           */
    double decode, infer, encode; /* seconds per stage                       */
    double gain;              /* factor --clip rescale scaled the stems by (1: none) */
    ss_file_status status;
    char *error;              /* message when failed or skipped, else NULL   */
    char **warnings;          /* "FILE: what is wrong" (e.g. truncated input) */
    int n_warnings;
    /* --then: every model's own times, the first model's first (the fields
     * above are then the sums over them, wall_seconds included); else NULL */
    ss_stage_report *chain;
    int n_chain;
    /* what the (first) model reports on the track (ss_model_track_stats):
     * the JSON's model_stats; n_stats 0 when it reports nothing */
    ss_track_stat stats[SS_MAX_TRACK_STATS];
    int n_stats;
} ss_file_report;

typedef struct ss_report ss_report;

ss_report *ss_report_new(void);
void ss_report_free(ss_report *r);
void ss_report_set_device(ss_report *r, const ss_device_info *dev, ss_precision prec, int threads);
void ss_report_set_model(ss_report *r, const ss_model_info *info);
/* A new entry for `input` (NULL when out of memory).  Valid until the next add. */
ss_file_report *ss_report_add(ss_report *r, const char *input);
ss_status ss_report_add_output(ss_file_report *f, const char *path);
/* Append one model's times to f->chain (SS_E_NOMEM). */
ss_status ss_report_add_stage(ss_file_report *f, const ss_stage_report *st);
/* Free what a file report holds (not f itself) and zero it: for a report
 * that belongs to no ss_report (a chained stage's own). */
void ss_file_report_clear(ss_file_report *f);
/* --then STEM=MODEL: the chained model `info`, run on stem `stem` (the JSON's
 * model.chain); at most SS_MAX_SOURCES, more are ignored. */
void ss_report_add_chain_model(ss_report *r, const char *stem, const ss_model_info *info);
/* A warning about the file (it was processed, but not as a user would expect). */
ss_status ss_report_add_warning(ss_file_report *f, const char *msg);
/* Entry i (in order added), NULL when out of range.  Stable once no more are added. */
ss_file_report *ss_report_file(ss_report *r, int i);
/* This run was part `index` of `count` (--shard) of a list of `inputs` files:
 * the JSON gets "shard": {"index", "count", "inputs"}. */
void ss_report_set_shard(ss_report *r, int index, int count, long long inputs);
void ss_report_set_error(ss_file_report *f, ss_file_status st, const char *msg);
int ss_report_count(const ss_report *r, ss_file_status st);

/* -v: "stemsplit: song.wav: model dfn3: local SNR min -3.10 dB, ..." (nothing
 * when n is 0) */
void ss_report_print_stats(const char *input, const char *model, const ss_track_stat *st, int n, FILE *out);
/* "song.flac: 212.4 s of audio in 9.1 s, 23.4x realtime (cpu, htdemucs)" */
void ss_report_print_file(const ss_report *r, const ss_file_report *f, FILE *out);
void ss_report_print_total(const ss_report *r, double wall_seconds, FILE *out);
/* The JSON document's destination, opened before the work: its temporary
 * file is created at once ("-": standard output), so that a report that
 * cannot be written is known before anything is separated (SS_E_CANTCREAT:
 * missing or unwritable folder, a folder as FILE).  ss_report_out_write
 * writes the document and renames it into place; both it and
 * ss_report_out_abort (removes the temporary file; NULL allowed) free o. */
typedef struct ss_report_out ss_report_out;
ss_status ss_report_out_open(const char *path, ss_report_out **out, ss_error *err);
ss_status ss_report_out_write(ss_report_out *o, const ss_report *r, double wall_seconds, ss_error *err);
void ss_report_out_abort(ss_report_out *o);

/* Write the JSON document (temporary file + rename). */
ss_status ss_report_write_json(const ss_report *r, const char *path, double wall_seconds, ss_error *err);

#endif

/* ffmpeg.h - decoding the formats libsndfile and libmpg123 do not read
 * (MP4/M4A, WMA, Matroska/WebM, ...) through an `ffmpeg` found on PATH.
 *
 * ffmpeg runs as a child process (posix_spawnp, arguments, no shell) that
 * writes the file's first audio stream as a 32-bit float WAV to a pipe; the
 * caller reads the pipe (audio.c spools it to an unlinked temporary file, so
 * the two passes read it like any WAV) and then reaps the child. */
#ifndef SS_FFMPEG_H
#define SS_FFMPEG_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* The name of the container or codec whose first bytes these are, when it is
 * one that ffmpeg reads and libsndfile/libmpg123 do not ("MP4/M4A", "ASF
 * (WMA)", "Matroska/WebM", "AAC (ADTS)", ...); NULL otherwise.  16 bytes are
 * enough. */
const char *ss_ffmpeg_format(const unsigned char *b, size_t n);

/* 1 when an executable `ffmpeg` is on PATH. */
int ss_ffmpeg_available(void);

/* A running decode of `path` (`name` in messages, `format` the name from
 * ss_ffmpeg_format). */
typedef struct ss_ffmpeg {
    pid_t pid;          /* the child                                            */
    int out;            /* read end of the pipe carrying the WAV (close-on-exec) */
    int err;            /* unlinked temporary file holding ffmpeg's stderr       */
} ss_ffmpeg;

/* Start ffmpeg on path.  SS_E_DATA naming the format and saying that
 * installing ffmpeg reads it when there is no ffmpeg on PATH; SS_E_IO when
 * no pipe or process can be had. */
ss_status ss_ffmpeg_start(const char *path, const char *name, const char *format, ss_ffmpeg *f, ss_error *err);

/* Close f->out, reap the child and drop its stderr.  give_up 0: the reader
 * read to the end; SS_OK when ffmpeg exited with 0, else SS_E_DATA with its
 * first error line (or the signal that ended it).  give_up 1: the pipe ended
 * but the reader failed (e.g. nothing came); a child that ends within a
 * second with an error of its own reports it as above (the cause), one still
 * running is ended with SIGTERM and SS_OK is returned (the reader's error
 * stands).  give_up 2: the reader stopped reading (the spool limit, a signal,
 * an error): SIGTERM at once, SS_OK. */
ss_status ss_ffmpeg_finish(ss_ffmpeg *f, const char *name, int give_up, ss_error *err);

#endif

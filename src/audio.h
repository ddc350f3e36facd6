/* audio.h - decoding and encoding audio files (libsndfile) and resampling
 * (libsamplerate), streamed in blocks so memory never grows with track length.
 *
 * Samples are float, interleaved by frame (frame = one sample per channel).
 * Writers never leave a half-written file: they write to a temporary file in
 * the target directory and rename it into place on ss_audio_commit().
 */
#ifndef SS_AUDIO_H
#define SS_AUDIO_H

#include <signal.h>
#include <stdint.h>
#include <stddef.h>

#include "error.h"

/* ---- reading ---------------------------------------------------------------- */

typedef struct ss_audio_reader ss_audio_reader;

typedef struct ss_audio_info {
    int64_t frames;        /* length in frames (an estimate when `estimated`)  */
    int estimated;         /* 1: frames is an estimate (MPEG audio; 0 when a
                              format does not say its length): the stream
                              is read to its end, which may come before or after
                              it; count the frames read (ss_mix_stats does)     */
    int64_t declared;      /* the length the header announces when it is more
                              than the file holds (a truncated WAV or AIFF;
                              frames is what it holds), else -1                 */
    int samplerate;        /* Hz                                               */
    int channels;          /* as stored in the file                            */
    char format[64];       /* e.g. "WAV PCM 16", "FLAC PCM 24"                 */
} ss_audio_info;

/* While set, a read of standard input, a FIFO or a device (and the wait for
 * a FIFO's writer) ends with SS_E_INTERRUPT within about 0.1 s (NULL: never).
 * The CLI passes the flag its SIGINT/SIGTERM handler sets. */
void ss_audio_set_cancel(const volatile sig_atomic_t *flag);
/* The most bytes a pipe, FIFO or device is spooled to: STEMSPLIT_SPOOL_MAX
 * (bytes, or with a K/M/G/T suffix), 4 GiB by default; SS_E_USAGE when the
 * variable is not a size. */
ss_status ss_spool_limit(uint64_t *bytes, ss_error *err);

/* Open `path` ("-" = standard input).  Standard input that is not a regular
 * file, and a named FIFO or device, is spooled to an unlinked temporary file
 * (removed on close, on failure and if the process is killed): its first
 * bytes must be those of an audio format (else SS_E_DATA before anything is
 * spooled), at most ss_spool_limit() bytes (else SS_E_DATA), interruptible
 * (ss_audio_set_cancel).  SS_E_NOINPUT when missing or unreadable, SS_E_DATA when
 * not audio libsndfile or (MPEG audio) libmpg123 can decode, or when it has 0
 * channels.  Neither library prints anything.  A named regular file in a
 * format they do not read but ffmpeg does (MP4/M4A, WMA, Matroska/WebM, ADTS
 * AAC, ...: ss_ffmpeg_format) is decoded by an `ffmpeg` on PATH into a float
 * WAV spooled as above (limit and cancel included; SIGINT/SIGTERM end the
 * child too); without ffmpeg, SS_E_DATA naming the format and saying that
 * installing ffmpeg reads it.  Its info.format ends in " via ffmpeg". */
ss_status ss_audio_open(const char *path, ss_audio_reader **out, ss_audio_info *info, ss_error *err);
/* The same for `size` bytes of an audio file in memory (libsndfile virtual
 * I/O; the bytes are not copied and must outlive the reader).  `name` (NULL:
 * "(memory)") is used in messages.  Reading, rewinding and closing are those
 * of ss_audio_open(). */
ss_status ss_audio_open_memory(const void *data, size_t size, const char *name, ss_audio_reader **out,
                               ss_audio_info *info, ss_error *err);
/* The same for an open, seekable descriptor of a file libsndfile reads (read
 * from its start; no spooling, no ffmpeg).  The reader owns fd from the
 * call on: it is closed with the reader, and on failure.  `name` is used in
 * messages. */
ss_status ss_audio_open_fd(int fd, const char *name, ss_audio_reader **out, ss_audio_info *info, ss_error *err);
/* Read up to `n` frames into buf (n * channels floats); *got = frames read,
 * 0 at end of file.  SS_E_IO on a read error (e.g. file truncated meanwhile). */
ss_status ss_audio_read(ss_audio_reader *r, float *buf, int64_t n, int64_t *got, ss_error *err);
/* Back to the first frame (for the second pass). */
ss_status ss_audio_rewind(ss_audio_reader *r, ss_error *err);
/* 1 when the length is known and the format seeks to an exact frame (WAV,
 * RF64, W64, AIFF, AU, CAF, FLAC): such a reader can be sought and cloned. */
int ss_audio_seekable(const ss_audio_reader *r);
/* Go to `frame` (0 .. frames) of a seekable reader. */
ss_status ss_audio_seek(ss_audio_reader *r, int64_t frame, ss_error *err);
/* A second reader of the same file (or memory) with its own position, for
 * reading parts of it on other threads; seekable readers only.  It borrows
 * r's descriptor or bytes: close it before r. */
ss_status ss_audio_clone(const ss_audio_reader *r, ss_audio_reader **out, ss_error *err);
void ss_audio_close(ss_audio_reader *r);

/* Is this regular file audio stemsplit can read?  (Opens and closes it; a
 * format only ffmpeg reads is recognised by its first bytes and is audio
 * when ffmpeg is on PATH, without decoding it.) */
int ss_audio_probe(const char *path);

/* ---- writing ---------------------------------------------------------------- */

/* Lossless: WAV, FLAC.  Lossy (libsndfile 1.1 or later): MP3 (LAME, CBR),
 * Opus in Ogg (VBR), Vorbis in Ogg (VBR, by quality). */
typedef enum ss_file_format { SS_FILE_WAV = 0, SS_FILE_FLAC, SS_FILE_MP3, SS_FILE_OPUS, SS_FILE_OGG } ss_file_format;
typedef enum ss_sample_format { SS_SAMPLE_S16 = 0, SS_SAMPLE_S24, SS_SAMPLE_F32 } ss_sample_format;

const char *ss_file_format_ext(ss_file_format f);      /* "wav", "flac", "mp3", "opus", "ogg" */
const char *ss_file_format_name(ss_file_format f);     /* "WAV", "FLAC", "MP3", "Opus", "Ogg Vorbis" */
int ss_file_format_parse(const char *s);                /* -1 if unknown  */
int ss_sample_format_parse(const char *s);              /* "s16|s24|f32", -1 if unknown */
/* 1 for MP3, Opus and Vorbis (they take a bitrate; the sample format is not theirs). */
int ss_file_format_lossy(ss_file_format f);
/* The bitrate a lossy format is written at without ss_audio_set_bitrate, in
 * kbit/s: MP3 320 (CBR), Opus 160 (VBR target), Vorbis 192 (VBR, quality 6,
 * nominal); 0 for the lossless formats. */
int ss_file_format_bitrate(ss_file_format f);
/* The sample rate a file of format f is written at for audio at `rate` Hz:
 * `rate`, except for Opus, which stores 8, 12, 16, 24 or 48 kHz only: any
 * other rate gives 48000 (the caller resamples). */
int ss_file_format_rate(ss_file_format f, int rate);
/* SS_E_USAGE, saying the range, when `kbps` is no bitrate format f takes for
 * `channels` channels (MP3 32..320, Opus 6..256 per channel, Vorbis 64..500;
 * lossless formats take none). */
ss_status ss_bitrate_check(ss_file_format f, int kbps, int channels, ss_error *err);

typedef struct ss_audio_writer ss_audio_writer;

/* Create a hidden temporary file beside `path` (same directory, so the final
 * rename is atomic).  Nothing appears at `path` until ss_audio_commit().
 * SS_E_CANTCREAT when the directory is missing or not writable; SS_E_USAGE
 * for an impossible combination (FLAC with f32 samples, Opus at a rate
 * ss_file_format_rate changes).  Lossy formats ignore sfmt. */
ss_status ss_audio_create(const char *path, ss_file_format fmt, ss_sample_format sfmt,
                          int samplerate, int channels, ss_audio_writer **out, ss_error *err);
/* The bitrate (kbit/s, ss_bitrate_check) of a lossy writer, before its first
 * frame; without it, ss_file_format_bitrate's.  MP3: constant bitrate (LAME
 * rounds to the nearest MPEG bitrate); Opus: the encoder's VBR target;
 * Vorbis: the VBR quality whose nominal rate for 44.1 kHz stereo this is. */
ss_status ss_audio_set_bitrate(ss_audio_writer *w, int kbps, ss_error *err);
/* Samples beyond [-1, 1] are clipped by integer formats.  SS_E_IO on a write
 * error (disk full, file-size limit, directory removed). */
ss_status ss_audio_write(ss_audio_writer *w, const float *buf, int64_t frames, ss_error *err);
/* Writing at frame offsets, several threads at once, when the file's length
 * is known before its first frame: possible for WAV with s16/s24 samples on a
 * writer that has had nothing written in order yet (ss_audio_can_write_at).
 * Each call writes `frames` frames at frame `at` of a file of `length` frames;
 * calls for disjoint ranges may run concurrently, and the ranges must cover
 * [0, length) before ss_audio_commit().  The file's bytes are those
 * ss_audio_write would have written (same conversion and clipping). */
int ss_audio_can_write_at(const ss_audio_writer *w);
ss_status ss_audio_write_at(ss_audio_writer *w, int64_t length, int64_t at, const float *buf, int64_t frames,
                            ss_error *err);
/* Finish the file, flush it to disk and rename it to its final path.  On
 * failure the temporary file is removed.  Frees w in every case. */
ss_status ss_audio_commit(ss_audio_writer *w, ss_error *err);
/* Drop the temporary file.  Frees w.  NULL is allowed. */
void ss_audio_abort(ss_audio_writer *w);

/* ---- resampling --------------------------------------------------------------- */

typedef struct ss_resampler ss_resampler;

/* A streaming converter from in_rate to out_rate for `channels` interleaved
 * channels that will receive exactly `in_frames` input frames in total and
 * produce exactly ss_resampled_length(in_frames, in_rate, out_rate) output
 * frames: a polyphase FIR (passband to 0.4535 of the lower rate, 100 dB
 * stopband, linear phase, no delay; see audio.c and man/stemsplit.1) where the
 * ratio needs at most 1024 phases, else libsamplerate's SRC_SINC_BEST_QUALITY,
 * delay compensated.  Frames before the first and after the last are zeros.
 * in_frames SS_RESAMPLE_LIVE: a live stream whose length is known only at
 * its end: output frames are given as soon as they are final (never more
 * than ss_resampled_length of the frames pushed so far) and
 * ss_resampler_end() gives the tail; the frames are the same as with the
 * length announced up front. */
#define SS_RESAMPLE_LIVE ((int64_t)-1)
ss_status ss_resampler_new(int channels, int in_rate, int out_rate, int64_t in_frames,
                           ss_resampler **out, ss_error *err);
/* Push n input frames; output frames are appended to out (capacity out_cap
 * frames; ss_resampler_max_out(rs, n) is always enough) and *got is set.  The
 * call that pushes the last input frame also flushes the tail. */
ss_status ss_resampler_push(ss_resampler *rs, const float *in, int64_t n, float *out,
                            int64_t out_cap, int64_t *got, ss_error *err);
int64_t ss_resampler_max_out(const ss_resampler *rs, int64_t n);
/* A live stream (SS_RESAMPLE_LIVE) has ended: its length is the frames
 * pushed; the tail is appended to out (ss_resampler_end_max(rs) frames are
 * always enough) and *got is set; output frames total ss_resampled_length
 * of the input.  SS_E_INTERNAL for a resampler given its length up front. */
ss_status ss_resampler_end(ss_resampler *rs, float *out, int64_t out_cap, int64_t *got, ss_error *err);
int64_t ss_resampler_end_max(const ss_resampler *rs);
void ss_resampler_free(ss_resampler *rs);

/* 1 when ss_resampler_new can convert in_rate to out_rate (equal rates, or a
 * ratio libsamplerate takes: 1/256 .. 256). */
int ss_resample_possible(int in_rate, int out_rate);

/* round(frames * out_rate / in_rate) */
int64_t ss_resampled_length(int64_t frames, int in_rate, int out_rate);

#endif

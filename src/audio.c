/* audio.c - reading and writing audio files with libsndfile, resampling with
 * libsamplerate (see audio.h).
 *
 * Every file handed to libsndfile is opened by us, so the reader can report
 * open(2) errors precisely and the writer can fsync(2) the file after
 * sf_close() has written the final header (WAV sizes, FLAC STREAMINFO).
 * libsndfile gets a duplicate of our descriptor that it owns (close_desc = 1):
 * since 1.0.31 it closes the descriptor when an open fails whatever close_desc
 * says (libsndfile issues 948, 949), and closing ours again afterwards could
 * close a number another thread had just been given (a stem being written).
 * While a file is written, writeback is started every WRITEBACK_BYTES
 * (sync_file_range on Linux) so that the fsync(2) at commit has little left to
 * flush instead of the whole file at once.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE             /* sync_file_range */
#endif
#include "audio.h"
#include "ffmpeg.h"
#include "settings.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpg123.h>
#include <pthread.h>
#include <samplerate.h>
#include <sndfile.h>

/* How "-" is named in messages. */
#define SS_STDIN_NAME "standard input"

/* ---- small helpers -------------------------------------------------------------- */

/* Copy a libsndfile message into buf without its trailing period/blanks. */
static const char *tidy_sf_message(const char *msg, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", msg ? msg : "unknown error");
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '.' || buf[len - 1] == ' ' || buf[len - 1] == '\n'))
        buf[--len] = '\0';
    return buf;
}

/* write(2) all of buf, retrying on EINTR and partial writes; 0 or -1 (errno). */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* "WAV PCM 16"-style description of a libsndfile format. */
static void describe_format(int format, char *out, size_t cap)
{
    SF_FORMAT_INFO fi;
    char major[48] = "unknown";
    memset(&fi, 0, sizeof fi);
    fi.format = format & SF_FORMAT_TYPEMASK;
    if (sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, (int)sizeof fi) == 0 && fi.name) {
        snprintf(major, sizeof major, "%s", fi.name);
        char *paren = strstr(major, " (");
        if (paren)
            *paren = '\0';
    }
    const char *sub = NULL;
    switch (format & SF_FORMAT_SUBMASK) {
    case SF_FORMAT_PCM_S8: sub = "PCM S8"; break;
    case SF_FORMAT_PCM_U8: sub = "PCM U8"; break;
    case SF_FORMAT_PCM_16: sub = "PCM 16"; break;
    case SF_FORMAT_PCM_24: sub = "PCM 24"; break;
    case SF_FORMAT_PCM_32: sub = "PCM 32"; break;
    case SF_FORMAT_FLOAT:  sub = "FLOAT"; break;
    case SF_FORMAT_DOUBLE: sub = "DOUBLE"; break;
    default: break;
    }
    if (!sub) {
        memset(&fi, 0, sizeof fi);
        fi.format = format & SF_FORMAT_SUBMASK;
        if (sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, (int)sizeof fi) == 0 && fi.name)
            sub = fi.name;
    }
    if (sub)
        snprintf(out, cap, "%s %s", major, sub);
    else
        snprintf(out, cap, "%s", major);
}

/* ---- reading ---------------------------------------------------------------------- */

/* A read-only file in memory behind libsndfile's virtual I/O. */
typedef struct mem_file {
    const unsigned char *data;  /* the caller's bytes (not copied)                   */
    sf_count_t size;            /* bytes at data                                     */
    sf_count_t pos;             /* current offset, 0 .. size (seeks are clamped)     */
} mem_file;

/* A clone's view of its original's descriptor: pread(2) at its own offset, so
 * readers of one file never move each other's position. */
typedef struct pread_file {
    int fd;
    sf_count_t size, pos;
    int err;            /* errno of a failed pread, 0 when none                      */
} pread_file;

struct ss_audio_reader {
    SNDFILE *sf;        /* libsndfile handle reading fd, mem or pf; NULL for MPEG    */
    mpg123_handle *mh;  /* MPEG audio (MP1/2/3): libmpg123 reading pf or mem, else NULL */
    int rate;           /* MPEG: the stream's rate (a change midway is an error)     */
    int eof;            /* MPEG: the decoder reported the end of the stream          */
    int estimate;       /* frames is an estimate: read to the end of the stream      */
    int64_t declared;   /* frames the header announces, when more than the file holds; else -1 */
    int fd;             /* our descriptor (for "-": a spooled, already unlinked copy);
                           -1 for audio in memory and for clones                     */
    mem_file mem;       /* audio in memory (ss_audio_open_memory), else unused       */
    pread_file pf;      /* a clone of a reader on a descriptor, else unused           */
    int major;          /* libsndfile major format (SF_FORMAT_WAV, ...)               */
    char *name;         /* path used in messages ("standard input" for "-")          */
    int channels;       /* channels per frame                                        */
    int64_t frames;     /* length announced at open (an estimate with `estimate`); -1 when unknown */
    int64_t pos;        /* frames delivered since open or the last rewind            */
};

static int looks_like_mpeg(const unsigned char *b, size_t n);
static ss_status mpeg_open(ss_audio_reader *r, const char *name, ss_audio_reader **out, ss_audio_info *info,
                           ss_error *err);
static int64_t declared_frames(const ss_audio_reader *r, int channels);
static int bytes_at(const ss_audio_reader *r, int64_t off, unsigned char *b, size_t n);
static uint32_t le32(const unsigned char *b);

/* The first bytes of the reader's file or memory (for recognising MPEG). */
static size_t first_bytes(const ss_audio_reader *r, unsigned char *b, size_t cap)
{
    if (r->fd < 0) {
        size_t n = r->mem.size < (sf_count_t)cap ? (size_t)r->mem.size : cap;
        if (n)
            memcpy(b, r->mem.data, n);
        return n;
    }
    size_t have = 0;
    while (have < cap) {
        ssize_t n = pread(r->fd, b + have, cap - have, (off_t)have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    return have;
}

/* libsndfile on its own duplicate of fd (see the top of this file); NULL with
 * *dup_failed set when no descriptor could be had. */
static SNDFILE *sf_open_dup(int fd, int mode, SF_INFO *sfi, int *dup_failed)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    *dup_failed = d < 0;
    return d < 0 ? NULL : sf_open_fd(d, mode, sfi, SF_TRUE);
}

/* ---- opening: regular files directly, anything else spooled ----
 *
 * A pipe, a FIFO or a device is copied into an unlinked temporary file first
 * (libsndfile and libmpg123 seek).  Its first bytes must look like audio
 * (refused before anything is spooled), at most ss_spool_limit() bytes are
 * kept, and the copy waits in poll(2) with a short timeout, so that SIGINT and
 * SIGTERM (the flag given to ss_audio_set_cancel) end it promptly whatever
 * thread it runs on: a FIFO without a writer, a stalled pipe, an endless
 * device. */

static const volatile sig_atomic_t *g_cancel;   /* ss_audio_set_cancel */

void ss_audio_set_cancel(const volatile sig_atomic_t *flag) { g_cancel = flag; }

static int cancelled(void) { return g_cancel && *g_cancel; }

static ss_status interrupted(const char *name, ss_error *err)
{
    return ss_fail(err, SS_E_INTERRUPT, "%s: interrupted by %s while reading it", name,
                   *g_cancel == SIGTERM ? "SIGTERM" : *g_cancel == SIGINT ? "SIGINT" : "a signal");
}

/* One read of `in` (a pipe, FIFO or device, opened O_NONBLOCK) that stays
 * interruptible: it waits in poll, 100 ms at a time, checking the cancel
 * flag, until bytes come or the writer closes.  *got: bytes read, 0 at the
 * end of the stream. */
static ss_status read_wait(int in, const char *name, unsigned char *buf, size_t size, size_t *got, ss_error *err)
{
    for (;;) {
        if (cancelled())
            return interrupted(name, err);
        struct pollfd p = {.fd = in, .events = POLLIN};
        int k = poll(&p, 1, 100);
        if (k < 0 && errno != EINTR)
            return ss_fail(err, SS_E_IO, "%s: read error: %s", name, strerror(errno));
        if (k <= 0)
            continue;
        ssize_t n = read(in, buf, size);
        if (n >= 0) {
            *got = (size_t)n;
            return SS_OK;
        }
        if (errno != EINTR && errno != EAGAIN)
            return ss_fail(err, SS_E_IO, "%s: read error: %s", name, strerror(errno));
    }
}

#define SPOOL_DEFAULT ((uint64_t)4 << 30)       /* 4 GiB */

ss_status ss_spool_limit(uint64_t *bytes, ss_error *err)
{
    const char *env = ss_settings_get()->spool_max;
    *bytes = SPOOL_DEFAULT;
    if (!env)
        return SS_OK;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(env, &end, 10);
    unsigned shift = 0;
    if (end && *end) {
        switch (*end == 'k' ? 'K' : *end) {
        case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        case 'T': shift = 40; break;
        default: shift = 99; break;
        }
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B')
            end++;
    }
    if (errno || end == env || *end || env[0] == '-' || shift == 99 || v == 0 || (shift && v > (UINT64_MAX >> shift)))
        return ss_fail(err, SS_E_USAGE, "STEMSPLIT_SPOOL_MAX=%s: not a size (bytes, or a number with K, M, G or T)",
                       env);
    *bytes = (uint64_t)v << shift;
    return SS_OK;
}

/* Formats recognised from their first bytes (16 are enough for every one). */
static const char *audio_magic(const unsigned char *b, size_t n)
{
    if (n >= 12 && (!memcmp(b, "RIFF", 4) || !memcmp(b, "RIFX", 4) || !memcmp(b, "RF64", 4) ||
                    !memcmp(b, "BW64", 4)) && !memcmp(b + 8, "WAVE", 4))
        return "WAV";
    if (n >= 12 && !memcmp(b, "FORM", 4) && (!memcmp(b + 8, "AIFF", 4) || !memcmp(b + 8, "AIFC", 4) ||
                                             !memcmp(b + 8, "8SVX", 4)))
        return "AIFF";
    if (n >= 16 && !memcmp(b, "riff", 4) && b[4] == 0x2E && b[5] == 0x91 && b[6] == 0xCF && b[7] == 0x11)
        return "W64";
    static const struct { const char *magic; const char *name; } m[] = {
        {".snd", "AU"}, {"dns.", "AU"}, {"fLaC", "FLAC"}, {"OggS", "Ogg"}, {"caff", "CAF"},
        {"NIST_1A", "NIST"}, {"Creative Voice File", "VOC"}, {"2BIT", "AVR"}, {"wvpk", NULL},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (m[i].name && n >= strlen(m[i].magic) && !memcmp(b, m[i].magic, strlen(m[i].magic)))
            return m[i].name;
    if (looks_like_mpeg(b, n))
        return "MPEG";
    return NULL;
}

/* Copy all of `in` (a pipe, FIFO or device; `name` in messages) into an
 * unlinked temporary file in $TMPDIR (or /tmp) and return it rewound. */
static ss_status spool_eof(int in, const char *name, int *fdp, int *at_eof, ss_error *err)
{
    *at_eof = 0;
    uint64_t cap = 0;
    ss_status st = ss_spool_limit(&cap, err);
    if (st != SS_OK)
        return st;
    enum { CHUNK = 1 << 16, HEAD = 16 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    /* the first bytes, before any file is made */
    size_t head = 0;
    int eof = 0;
    while (st == SS_OK && head < HEAD && !eof) {
        size_t n = 0;
        if ((st = read_wait(in, name, buf + head, HEAD - head, &n, err)) == SS_OK) {
            eof = n == 0;
            head += n;
        }
    }
    if (st == SS_OK && head == 0)
        st = ss_fail(err, SS_E_DATA, "%s: empty (no audio data)", name);
    if (st == SS_OK && !audio_magic(buf, head))
        st = ss_fail(err, SS_E_DATA, "%s: not audio (its first bytes are not those of WAV, RF64, W64, AIFF, AU, CAF, "
                     "FLAC, Ogg or MPEG audio; other formats must be given as a file)", name);
    if (st != SS_OK) {
        free(buf);
        return *at_eof = eof, st;
    }

    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    size_t len = strlen(dir) + sizeof "/stemsplit-stdin-XXXXXX";
    char *tmpl = malloc(len);
    if (!tmpl) {
        free(buf);
        return *at_eof = eof, ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    }
    snprintf(tmpl, len, "%s/stemsplit-stdin-XXXXXX", dir);
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        st = ss_fail(err, SS_E_IO, "%s: cannot create a temporary file in %s to hold it: %s", name, dir,
                     strerror(errno));
        free(tmpl);
        free(buf);
        return *at_eof = eof, st;
    }
    /* Unlink at once: the data lives only as long as the descriptor, even if
     * we are killed. */
    if (unlink(tmpl) != 0) {
        st = ss_fail(err, SS_E_IO, "%s: cannot remove temporary file %s: %s", name, tmpl, strerror(errno));
        close(fd);
        free(tmpl);
        free(buf);
        return *at_eof = eof, st;
    }
    free(tmpl);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);

    uint64_t total = head;
    if (write_all(fd, buf, head) != 0)
        st = ss_fail(err, SS_E_IO, "%s: cannot copy it to a temporary file in %s: %s", name, dir, strerror(errno));
    while (st == SS_OK && !eof) {
        size_t n = 0;
        if ((st = read_wait(in, name, buf, CHUNK, &n, err)) != SS_OK || n == 0)
            break;
        if (total + (uint64_t)n > cap) {
            st = ss_fail(err, SS_E_DATA, "%s: more than %llu bytes, the most stemsplit holds of a pipe or device "
                         "(STEMSPLIT_SPOOL_MAX raises it; or give the audio as a file)", name,
                         (unsigned long long)cap);
            break;
        }
        if (write_all(fd, buf, (size_t)n) != 0) {
            st = ss_fail(err, SS_E_IO, "%s: cannot copy it to a temporary file in %s: %s", name, dir,
                         strerror(errno));
            break;
        }
        total += (uint64_t)n;
    }
    free(buf);
    if (st == SS_OK && lseek(fd, 0, SEEK_SET) != 0)
        st = ss_fail(err, SS_E_IO, "%s: cannot rewind temporary copy: %s", name, strerror(errno));
    if (st != SS_OK) {
        close(fd);
        return *at_eof = eof, st;
    }
    *fdp = fd;
    return *at_eof = eof, SS_OK;
}

static ss_status spool(int in, const char *name, int *fdp, ss_error *err)
{
    int eof;
    return spool_eof(in, name, fdp, &eof, err);
}

/* Open a named input read-only: a regular file as it is, a FIFO or device
 * spooled.  O_NONBLOCK so that opening a FIFO without a writer does not wait
 * (spool() waits, interruptibly).  SS_E_NOINPUT with strerror on failure. */
static ss_status open_input_file(const char *path, int *fdp, ss_error *err)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return ss_fail(err, SS_E_NOINPUT, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ss_fail(err, SS_E_NOINPUT, "%s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return ss_fail(err, SS_E_NOINPUT, "%s: %s", path, strerror(EISDIR));
    }
    if (!S_ISREG(st.st_mode)) {
        ss_status s = spool(fd, path, fdp, err);
        close(fd);
        return s;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fdp = fd;
    return SS_OK;
}

/* Standard input: use it directly when it is a regular (seekable) file,
 * otherwise spool it. */
static ss_status open_stdin(int *fdp, ss_error *err)
{
    struct stat st;
    if (fstat(STDIN_FILENO, &st) != 0)
        return ss_fail(err, SS_E_NOINPUT, "%s: %s", SS_STDIN_NAME, strerror(errno));
    if (S_ISREG(st.st_mode) && lseek(STDIN_FILENO, 0, SEEK_CUR) >= 0) {
        int fd = fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
            return ss_fail(err, SS_E_NOINPUT, "%s: %s", SS_STDIN_NAME, strerror(errno));
        *fdp = fd;
        return SS_OK;
    }
    if (isatty(STDIN_FILENO))
        return ss_fail(err, SS_E_NOINPUT, "%s: is a terminal; pipe audio into it or name a file",
                       SS_STDIN_NAME);
    return spool(STDIN_FILENO, SS_STDIN_NAME, fdp, err);
}

/* The second half of every open: check what libsndfile found, fill info.
 * r already holds sf and fd (or mem); on failure r is closed (sf, fd and all). */
static ss_status reader_finish(ss_audio_reader *r, SNDFILE *sf, const SF_INFO *sfi, const char *name,
                               ss_audio_reader **out, ss_audio_info *info, ss_error *err)
{
    ss_status st = SS_OK;
    unsigned char h[12], c[8], d[8];
    if (!sf && bytes_at(r, 0, h, sizeof h) && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WAVE", 4) &&
        bytes_at(r, 12, c, sizeof c) && !memcmp(c, "fmt ", 4) && bytes_at(r, 20, d, sizeof d) && le32(d + 4) == 0) {
        st = ss_fail(err, SS_E_DATA, "%s: its header gives a sample rate of 0 Hz", name);
    } else if (!sf) {
        char why[256];
        tidy_sf_message(sf_strerror(NULL), why, sizeof why);
        st = ss_fail(err, SS_E_DATA, "%s: not an audio file libsndfile can read (%s)", name, why);
    } else if (sfi->channels < 1 || sfi->samplerate < 1) {
        st = ss_fail(err, SS_E_DATA, "%s: audio file has %d channels at %d Hz", name, sfi->channels,
                     sfi->samplerate);
    } else if (!(r->name = strdup(name))) {
        st = ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    }
    r->sf = sf;
    if (st != SS_OK) {
        ss_audio_close(r);
        return st;
    }
    r->channels = sfi->channels;
    r->major = sfi->format & SF_FORMAT_TYPEMASK;
    r->frames = (sfi->frames < 0 || sfi->frames == SF_COUNT_MAX) ? -1 : (int64_t)sfi->frames;
    r->pos = 0;
    r->declared = r->frames >= 0 ? declared_frames(r, sfi->channels) : -1;
    if (r->declared <= r->frames)
        r->declared = -1;
    r->estimate = r->frames < 0;        /* unknown length: read to the end, count (as MPEG) */
    if (info) {
        memset(info, 0, sizeof *info);
        info->frames = r->frames < 0 ? 0 : r->frames;
        info->estimated = r->estimate;
        info->declared = r->declared;
        info->samplerate = sfi->samplerate;
        info->channels = sfi->channels;
        describe_format(sfi->format, info->format, sizeof info->format);
    }
    *out = r;
    return SS_OK;
}

/* libsndfile on a duplicate of fd (sf_open_dup) for reader r; *sf is NULL when
 * libsndfile does not take the data (not an error here).  A failed dup closes
 * r and is the error. */
static ss_status sf_open_reader(ss_audio_reader *r, int fd, const char *name, SF_INFO *sfi, SNDFILE **sf,
                                ss_error *err)
{
    memset(sfi, 0, sizeof *sfi);
    int dup_failed;
    *sf = sf_open_dup(fd, SFM_READ, sfi, &dup_failed);
    if (!dup_failed)
        return SS_OK;
    ss_status st = ss_fail(err, SS_E_IO, "%s: %s", name, strerror(errno));
    ss_audio_close(r);
    return st;
}

/* A file libsndfile and libmpg123 do not read, in a format ffmpeg does: its
 * first audio stream decoded by ffmpeg into a float WAV through a pipe,
 * spooled like standard input (the spool limit, the cancel flag), and read
 * from the spooled copy.  r holds the original file's descriptor (closed
 * here); on failure r is closed. */
static ss_status ffmpeg_open(ss_audio_reader *r, const char *path, const char *name, const char *format,
                             ss_audio_reader **out, ss_audio_info *info, ss_error *err)
{
    ss_ffmpeg f;
    ss_status st = ss_ffmpeg_start(path, name, format, &f, err);
    if (st != SS_OK) {
        ss_audio_close(r);
        return st;
    }
    int fd = -1;
    ss_error spool_err = {0};
    int eof = 0;
    ss_status ss = spool_eof(f.out, name, &fd, &eof, &spool_err);
    /* ffmpeg's own failure first, where the pipe ended; where the reader
     * stopped (the spool limit, an error, a signal), the reader's */
    st = ss_ffmpeg_finish(&f, name, ss == SS_OK ? 0 : eof ? 1 : 2, err);
    if (cancelled()) {
        ss_error_clear(err);
        st = interrupted(name, err);
    } else if (st == SS_OK && ss != SS_OK) {
        st = ss_fail(err, spool_err.code, "%s", spool_err.msg);
    }
    close(r->fd);
    r->fd = fd;
    if (st != SS_OK) {
        ss_audio_close(r);
        return st;
    }
    SF_INFO sfi;
    SNDFILE *sf = NULL;
    if ((st = sf_open_reader(r, fd, name, &sfi, &sf, err)) != SS_OK)
        return st;
    if ((st = reader_finish(r, sf, &sfi, name, out, info, err)) == SS_OK && info)
        snprintf(info->format, sizeof info->format, "%s via ffmpeg", format);
    return st;
}

ss_status ss_audio_open(const char *path, ss_audio_reader **out, ss_audio_info *info, ss_error *err)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_open: NULL argument");
    int from_stdin = strcmp(path, "-") == 0;
    const char *name = from_stdin ? SS_STDIN_NAME : path;

    int fd = -1;
    ss_status st = from_stdin ? open_stdin(&fd, err) : open_input_file(path, &fd, err);
    if (st != SS_OK)
        return st;
    ss_audio_reader *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    }
    r->fd = fd;
    unsigned char head[4];
    if (looks_like_mpeg(head, first_bytes(r, head, sizeof head))) {
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            st = ss_fail(err, SS_E_IO, "%s: %s", name, strerror(errno));
            ss_audio_close(r);
            return st;
        }
        r->pf = (pread_file){fd, (sf_count_t)sb.st_size, 0, 0};
        return mpeg_open(r, name, out, info, err);
    }
    SF_INFO sfi;
    SNDFILE *sf = NULL;
    if ((st = sf_open_reader(r, fd, name, &sfi, &sf, err)) != SS_OK)
        return st;
    unsigned char magic[16];
    const char *foreign = sf || from_stdin ? NULL : ss_ffmpeg_format(magic, first_bytes(r, magic, sizeof magic));
    if (foreign)
        return ffmpeg_open(r, path, name, foreign, out, info, err);
    return reader_finish(r, sf, &sfi, name, out, info, err);
}

ss_status ss_audio_open_fd(int fd, const char *name, ss_audio_reader **out, ss_audio_info *info, ss_error *err)
{
    if (out)
        *out = NULL;
    if (fd < 0 || !name || !out) {
        if (fd >= 0)
            close(fd);
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_open_fd: bad argument");
    }
    ss_audio_reader *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    }
    r->fd = fd;
    if (lseek(fd, 0, SEEK_SET) != 0) {            /* libsndfile takes the position as the file's start */
        ss_status st = ss_fail(err, SS_E_IO, "%s: %s", name, strerror(errno));
        ss_audio_close(r);
        return st;
    }
    SF_INFO sfi;
    SNDFILE *sf = NULL;
    ss_status st = sf_open_reader(r, fd, name, &sfi, &sf, err);
    if (st != SS_OK)
        return st;
    return reader_finish(r, sf, &sfi, name, out, info, err);
}

/* ---- virtual I/O on memory ---- */

static sf_count_t mem_get_filelen(void *user) { return ((mem_file *)user)->size; }

/* lseek(2) for virtual I/O over `size` bytes: *pos moves, clamped to [0, size]
 * without overflowing on a hostile offset. */
static sf_count_t clamped_seek(sf_count_t *pos, sf_count_t size, sf_count_t offset, int whence)
{
    sf_count_t base = whence == SEEK_CUR ? *pos : whence == SEEK_END ? size : 0;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)
        return -1;
    if (offset < 0)
        *pos = offset < -base ? 0 : base + offset;
    else
        *pos = offset > size - base ? size : base + offset;
    return *pos;
}

static sf_count_t mem_seek(sf_count_t offset, int whence, void *user)
{
    mem_file *m = user;
    return clamped_seek(&m->pos, m->size, offset, whence);
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user)
{
    mem_file *m = user;
    if (count <= 0)
        return 0;
    sf_count_t left = m->size - m->pos;
    if (count > left)
        count = left;
    memcpy(ptr, m->data + m->pos, (size_t)count);
    m->pos += count;
    return count;
}

/* Readers' virtual files are read-only (memory and clones alike). */
static sf_count_t no_write(const void *ptr, sf_count_t count, void *user)
{
    (void)ptr, (void)count, (void)user;
    return 0;
}

static sf_count_t mem_tell(void *user) { return ((mem_file *)user)->pos; }

static SF_VIRTUAL_IO mem_io = {mem_get_filelen, mem_seek, mem_read, no_write, mem_tell};

ss_status ss_audio_open_memory(const void *data, size_t size, const char *name, ss_audio_reader **out,
                               ss_audio_info *info, ss_error *err)
{
    if (out)
        *out = NULL;
    if (!out || (!data && size > 0))
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_open_memory: NULL argument");
    if (!name)
        name = "(memory)";
    if ((uint64_t)size > (uint64_t)INT64_MAX)
        return ss_fail(err, SS_E_DATA, "%s: too large", name);
    ss_audio_reader *r = calloc(1, sizeof *r);
    if (!r)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    r->fd = -1;
    r->mem.data = data;
    r->mem.size = (sf_count_t)size;
    unsigned char head[4];
    if (looks_like_mpeg(head, first_bytes(r, head, sizeof head)))
        return mpeg_open(r, name, out, info, err);
    SF_INFO sfi;
    memset(&sfi, 0, sizeof sfi);
    return reader_finish(r, sf_open_virtual(&mem_io, SFM_READ, &sfi, &r->mem), &sfi, name, out, info, err);
}

/* ---- clones: more readers of one file, each at its own position ---- */

static sf_count_t pf_get_filelen(void *user) { return ((pread_file *)user)->size; }

static sf_count_t pf_seek(sf_count_t offset, int whence, void *user)
{
    pread_file *f = user;
    return clamped_seek(&f->pos, f->size, offset, whence);
}

static sf_count_t pf_read(void *ptr, sf_count_t count, void *user)
{
    pread_file *f = user;
    sf_count_t done = 0;
    while (done < count && f->pos < f->size) {
        sf_count_t want = count - done < f->size - f->pos ? count - done : f->size - f->pos;
        ssize_t n = pread(f->fd, (char *)ptr + done, (size_t)want, (off_t)f->pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            f->err = errno;
        if (n <= 0)
            break;
        done += n;
        f->pos += n;
    }
    return done;
}

static sf_count_t pf_tell(void *user) { return ((pread_file *)user)->pos; }


/* n bytes at offset off of the reader's file or memory; 1 when all were there. */
static int bytes_at(const ss_audio_reader *r, int64_t off, unsigned char *b, size_t n)
{
    if (off < 0)
        return 0;
    if (r->fd < 0) {
        if (off > (int64_t)r->mem.size || (int64_t)n > (int64_t)r->mem.size - off)
            return 0;
        memcpy(b, r->mem.data + off, n);
        return 1;
    }
    size_t have = 0;
    while (have < n) {
        ssize_t k = pread(r->fd, b + have, n - have, (off_t)(off + (int64_t)have));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 0;
        have += (size_t)k;
    }
    return 1;
}

static uint32_t le32(const unsigned char *b) { return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24; }
static uint32_t be32(const unsigned char *b) { return b[3] | (uint32_t)b[2] << 8 | (uint32_t)b[1] << 16 | (uint32_t)b[0] << 24; }

/* The length in frames the header of a RIFF WAV or an AIFF file announces
 * (WAV: the data chunk's size over the block size; AIFF: the COMM chunk's
 * frame count); -1 for other formats or when it cannot be found.  libsndfile
 * shortens such a length to what the file holds, silently: this is how a
 * truncated file is noticed. */
static int64_t declared_frames(const ss_audio_reader *r, int channels)
{
    unsigned char h[12], c[8], d[14];
    if (!bytes_at(r, 0, h, sizeof h))
        return -1;
    int wav = memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WAVE", 4) == 0;
    int aiff = memcmp(h, "FORM", 4) == 0 && (memcmp(h + 8, "AIFF", 4) == 0 || memcmp(h + 8, "AIFC", 4) == 0);
    if (!wav && !aiff)
        return -1;
    int64_t off = 12, align = 0;
    for (int k = 0; k < 4096 && bytes_at(r, off, c, sizeof c); k++) {
        int64_t size = wav ? le32(c + 4) : be32(c + 4);
        if (wav && memcmp(c, "fmt ", 4) == 0 && bytes_at(r, off + 8, d, 14))
            align = d[12] | d[13] << 8;                /* nBlockAlign */
        if (wav && memcmp(c, "data", 4) == 0)
            return align > 0 && size != 0xFFFFFFFF ? size / align : -1;
        if (aiff && memcmp(c, "COMM", 4) == 0 && bytes_at(r, off + 8, d, 6))
            return channels > 0 ? (int64_t)be32(d + 2) : -1;
        off += 8 + size + (size & 1);
    }
    return -1;
}

/* ---- MPEG audio (MP1/2/3) through libmpg123 ----
 *
 * libsndfile decodes MPEG too, but stops at the length it estimated at open
 * (from the first frame's bitrate when there is no Xing/Info header: a VBR
 * file is cut short, a CBR one "ends early"), and libmpg123 prints its
 * warnings on stderr.  So MPEG streams are decoded here, quietly, to the end
 * of the stream: their length is an estimate (ss_audio_info.estimated) that the
 * first pass replaces with the frames it counted. */

static pthread_once_t mpg_once = PTHREAD_ONCE_INIT;
static int mpg_ok;
static void mpg_init(void) { mpg_ok = mpg123_init() == MPG123_OK; }

/* Does this look like an MPEG audio stream: an ID3v2 tag, or a frame sync
 * with a valid layer (a superset of what libsndfile takes for MPEG, so that
 * libmpg123 never runs under libsndfile with its messages on)? */
static int looks_like_mpeg(const unsigned char *b, size_t n)
{
    if (n >= 3 && memcmp(b, "ID3", 3) == 0)
        return 1;
    return n >= 2 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0 && ((b[1] >> 1) & 3) != 0;
}

static ssize_t mpg_read_cb(void *h, void *buf, size_t n)
{
    ss_audio_reader *r = h;
    return (ssize_t)(r->fd >= 0 ? pf_read(buf, (sf_count_t)n, &r->pf) : mem_read(buf, (sf_count_t)n, &r->mem));
}

static off_t mpg_seek_cb(void *h, off_t off, int whence)
{
    ss_audio_reader *r = h;
    return (off_t)(r->fd >= 0 ? pf_seek((sf_count_t)off, whence, &r->pf) : mem_seek((sf_count_t)off, whence, &r->mem));
}

/* (Re)start decoding from the first byte; *rate and *channels of the stream. */
static ss_status mpeg_start(ss_audio_reader *r, const char *name, long *rate, int *channels, ss_error *err)
{
    r->pf.pos = 0;
    r->pf.err = 0;
    r->mem.pos = 0;
    r->eof = 0;
    int enc = 0;
    if (mpg123_open_handle(r->mh, r) != MPG123_OK || mpg123_getformat(r->mh, rate, channels, &enc) != MPG123_OK) {
        if (r->pf.err)
            return ss_fail(err, SS_E_IO, "%s: read error: %s", name, strerror(r->pf.err));
        return ss_fail(err, SS_E_DATA, "%s: not an audio file stemsplit can read (looks like MPEG audio, "
                       "but libmpg123 finds no frame: %s)", name, mpg123_strerror(r->mh));
    }
    if (enc != MPG123_ENC_FLOAT_32)
        return ss_fail(err, SS_E_INTERNAL, "%s: libmpg123 does not decode to float here", name);
    return SS_OK;
}

/* The MPEG half of an open: r has fd (with pf) or mem set. */
static ss_status mpeg_open(ss_audio_reader *r, const char *name, ss_audio_reader **out, ss_audio_info *info,
                           ss_error *err)
{
    ss_status st = SS_OK;
    int e = MPG123_OK;
    long rate = 0;
    int ch = 0;
    pthread_once(&mpg_once, mpg_init);
    if (!mpg_ok || !(r->mh = mpg123_new(NULL, &e)))
        st = ss_fail(err, e == MPG123_OUT_OF_MEM ? SS_E_NOMEM : SS_E_INTERNAL, "%s: cannot start libmpg123: %s",
                     name, mpg123_plain_strerror(e));
    if (st == SS_OK) {
        const long *rates;
        size_t n_rates;
        mpg123_param(r->mh, MPG123_ADD_FLAGS, MPG123_QUIET | MPG123_GAPLESS | MPG123_FORCE_FLOAT, 0.0);
#ifdef MPG123_NO_FRANKENSTEIN
        mpg123_param(r->mh, MPG123_ADD_FLAGS, MPG123_NO_FRANKENSTEIN, 0.0);
#endif
        mpg123_format_none(r->mh);
        mpg123_rates(&rates, &n_rates);
        for (size_t i = 0; i < n_rates; i++)
            mpg123_format(r->mh, rates[i], MPG123_MONO | MPG123_STEREO, MPG123_ENC_FLOAT_32);
        if (mpg123_replace_reader_handle(r->mh, mpg_read_cb, mpg_seek_cb, NULL) != MPG123_OK)
            st = ss_fail(err, SS_E_INTERNAL, "%s: libmpg123: %s", name, mpg123_strerror(r->mh));
    }
    if (st == SS_OK)
        st = mpeg_start(r, name, &rate, &ch, err);
    if (st == SS_OK && (ch < 1 || rate < 1 || rate > INT32_MAX))
        st = ss_fail(err, SS_E_DATA, "%s: MPEG audio with %d channels at %ld Hz", name, ch, rate);
    if (st == SS_OK && !(r->name = strdup(name)))
        st = ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    if (st != SS_OK) {
        ss_audio_close(r);
        return st;
    }
    off_t len = mpg123_length(r->mh);
    struct mpg123_frameinfo fi;
    memset(&fi, 0, sizeof fi);
    mpg123_info(r->mh, &fi);
    r->channels = ch;
    r->rate = (int)rate;
    r->major = SF_FORMAT_MPEG;
    r->frames = len > 0 ? (int64_t)len : 0;
    r->estimate = 1;
    r->declared = -1;
    r->pos = 0;
    if (info) {
        memset(info, 0, sizeof *info);
        info->frames = r->frames;
        info->estimated = 1;
        info->declared = -1;
        info->samplerate = (int)rate;
        info->channels = ch;
        snprintf(info->format, sizeof info->format, "MPEG-%s Layer %s", fi.version == MPG123_1_0 ? "1" :
                 fi.version == MPG123_2_0 ? "2" : "2.5", fi.layer == 1 ? "I" : fi.layer == 2 ? "II" : "III");
    }
    *out = r;
    return SS_OK;
}

static ss_status mpeg_read(ss_audio_reader *r, float *buf, int64_t n, int64_t *got, ss_error *err)
{
    size_t frame = sizeof(float) * (size_t)r->channels, want = frame * (size_t)n, have = 0;
    int idle = 0;
    while (have < want && !r->eof) {
        size_t done = 0;
        int e = mpg123_read(r->mh, (unsigned char *)buf + have, want - have, &done);
        have += done;
        if (r->pf.err)
            return ss_fail(err, SS_E_IO, "%s: read error after %" PRId64 " frames: %s", r->name,
                           r->pos + (int64_t)(have / frame), strerror(r->pf.err));
        if (e == MPG123_DONE) {
            r->eof = 1;
        } else if (e == MPG123_NEW_FORMAT) {
            long rate;
            int ch, enc;
            if (mpg123_getformat(r->mh, &rate, &ch, &enc) != MPG123_OK || rate != r->rate || ch != r->channels)
                return ss_fail(err, SS_E_DATA, "%s: the stream changes to %d channels at %ld Hz after %" PRId64
                               " frames (stemsplit reads one format per file)", r->name, ch, rate,
                               r->pos + (int64_t)(have / frame));
        } else if (e != MPG123_OK) {
            return ss_fail(err, SS_E_DATA, "%s: cannot decode after %" PRId64 " frames: %s", r->name,
                           r->pos + (int64_t)(have / frame), mpg123_strerror(r->mh));
        } else if (done == 0 && ++idle > 64) {
            r->eof = 1;                          /* no progress: treat as the end */
        }
    }
    int64_t k = (int64_t)(have / frame);         /* whole frames (always, with float output) */
    r->pos += k;
    *got = k;
    return SS_OK;
}

int ss_audio_seekable(const ss_audio_reader *r)
{
    if (!r || r->frames < 0)
        return 0;
    switch (r->major) {
    case SF_FORMAT_WAV: case SF_FORMAT_WAVEX: case SF_FORMAT_RF64: case SF_FORMAT_W64:
    case SF_FORMAT_AIFF: case SF_FORMAT_AU: case SF_FORMAT_CAF: case SF_FORMAT_FLAC:
        return 1;
    default:
        return 0;
    }
}

ss_status ss_audio_seek(ss_audio_reader *r, int64_t frame, ss_error *err)
{
    if (!r)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_seek: NULL reader");
    if (!ss_audio_seekable(r) || frame < 0 || frame > r->frames)
        return ss_fail(err, SS_E_INTERNAL, "%s: cannot seek to frame %" PRId64, r->name, frame);
    if (sf_seek(r->sf, (sf_count_t)frame, SEEK_SET) != (sf_count_t)frame) {
        char why[256];
        tidy_sf_message(sf_strerror(r->sf), why, sizeof why);
        return ss_fail(err, SS_E_IO, "%s: cannot seek to frame %" PRId64 ": %s", r->name, frame, why);
    }
    r->pos = frame;
    return SS_OK;
}

ss_status ss_audio_clone(const ss_audio_reader *r, ss_audio_reader **out, ss_error *err)
{
    if (out)
        *out = NULL;
    if (!r || !out)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_clone: NULL argument");
    if (!ss_audio_seekable(r))
        return ss_fail(err, SS_E_INTERNAL, "%s: not a format stemsplit reads in parallel", r->name);
    ss_audio_reader *c = calloc(1, sizeof *c);
    if (!c)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it again", r->name);
    c->fd = -1;
    SF_INFO sfi;
    memset(&sfi, 0, sizeof sfi);
    SNDFILE *sf;
    if (r->fd >= 0) {
        struct stat sb;
        if (fstat(r->fd, &sb) != 0) {
            ss_status st = ss_fail(err, SS_E_IO, "%s: %s", r->name, strerror(errno));
            free(c);
            return st;
        }
        c->pf = (pread_file){r->fd, (sf_count_t)sb.st_size, 0, 0};
        static SF_VIRTUAL_IO pio = {pf_get_filelen, pf_seek, pf_read, no_write, pf_tell};
        sf = sf_open_virtual(&pio, SFM_READ, &sfi, &c->pf);
    } else {
        c->mem = (mem_file){r->mem.data, r->mem.size, 0};
        sf = sf_open_virtual(&mem_io, SFM_READ, &sfi, &c->mem);
    }
    ss_status st = reader_finish(c, sf, &sfi, r->name, out, NULL, err);
    if (st == SS_OK && (c->channels != r->channels || c->frames != r->frames || c->major != r->major)) {
        ss_audio_close(c);
        *out = NULL;
        return ss_fail(err, SS_E_IO, "%s: changed while being read", r->name);
    }
    return st;
}

ss_status ss_audio_read(ss_audio_reader *r, float *buf, int64_t n, int64_t *got, ss_error *err)
{
    if (got)
        *got = 0;
    if (!r || !got || (n > 0 && !buf))
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_read: NULL argument");
    if (n <= 0)
        return SS_OK;
    if (r->mh)
        return mpeg_read(r, buf, n, got, err);
    sf_count_t k = sf_readf_float(r->sf, buf, (sf_count_t)n);
    if (k < 0)
        k = 0;
    r->pos += k;
    *got = k;
    if (k < n) {
        /* Short read: the end of the file, unless it came before the length
         * announced at open (the file shrank) or libsndfile saw an error. */
        int truncated = r->frames >= 0 && r->pos < r->frames;
        if (truncated || (r->frames < 0 && sf_error(r->sf) != SF_ERR_NO_ERROR)) {
            if (sf_error(r->sf) != SF_ERR_NO_ERROR) {
                char why[256];
                tidy_sf_message(sf_strerror(r->sf), why, sizeof why);
                return ss_fail(err, SS_E_IO, "%s: read error after %" PRId64 " frames: %s",
                               r->name, r->pos, why);
            }
            return ss_fail(err, SS_E_IO, "%s: read error: file ended after %" PRId64 " of %" PRId64
                           " frames", r->name, r->pos, r->frames);
        }
    }
    return SS_OK;
}

ss_status ss_audio_rewind(ss_audio_reader *r, ss_error *err)
{
    if (!r)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_rewind: NULL reader");
    if (r->mh) {
        /* decode again from the first byte: the same frames as the first time */
        long rate;
        int ch;
        mpg123_close(r->mh);
        ss_status st = mpeg_start(r, r->name, &rate, &ch, err);
        if (st == SS_OK && (rate != r->rate || ch != r->channels))
            st = ss_fail(err, SS_E_IO, "%s: changed while being read", r->name);
        r->pos = 0;
        return st;
    }
    if (sf_seek(r->sf, 0, SEEK_SET) < 0) {
        char why[256];
        tidy_sf_message(sf_strerror(r->sf), why, sizeof why);
        return ss_fail(err, SS_E_IO, "%s: cannot rewind: %s", r->name, why);
    }
    r->pos = 0;
    return SS_OK;
}

void ss_audio_close(ss_audio_reader *r)
{
    if (!r)
        return;
    if (r->sf)
        sf_close(r->sf);
    if (r->mh) {
        mpg123_close(r->mh);
        mpg123_delete(r->mh);
    }
    if (r->fd >= 0)
        close(r->fd);
    free(r->name);
    free(r);
}

int ss_audio_probe(const char *path)
{
    struct stat sb;
    if (!path || strcmp(path, "-") == 0 || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return 0;
    /* a format only ffmpeg reads: not decoded here (that is a whole decode) */
    unsigned char b[16];
    ssize_t n = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        do
            n = pread(fd, b, sizeof b, 0);
        while (n < 0 && errno == EINTR);
        close(fd);
    }
    if (n > 0 && ss_ffmpeg_format(b, (size_t)n))
        return ss_ffmpeg_available();
    ss_audio_reader *r = NULL;
    if (ss_audio_open(path, &r, NULL, NULL) != SS_OK)
        return 0;
    ss_audio_close(r);
    return 1;
}

/* ---- formats --------------------------------------------------------------------- */

static const struct {
    const char *ext, *name;
    int bitrate;                     /* default kbit/s (lossy), else 0 */
} formats[] = {
    [SS_FILE_WAV] = {"wav", "WAV", 0},
    [SS_FILE_FLAC] = {"flac", "FLAC", 0},
    [SS_FILE_MP3] = {"mp3", "MP3", 320},
    [SS_FILE_OPUS] = {"opus", "Opus", 160},
    [SS_FILE_OGG] = {"ogg", "Ogg Vorbis", 192},
};
#define N_FORMATS ((int)(sizeof formats / sizeof formats[0]))

static int format_known(ss_file_format f) { return (int)f >= 0 && (int)f < N_FORMATS; }

const char *ss_file_format_ext(ss_file_format f) { return formats[format_known(f) ? f : SS_FILE_WAV].ext; }

const char *ss_file_format_name(ss_file_format f) { return formats[format_known(f) ? f : SS_FILE_WAV].name; }

int ss_file_format_parse(const char *s)
{
    for (int i = 0; s && i < N_FORMATS; i++)
        if (strcasecmp(s, formats[i].ext) == 0)
            return i;
    if (s && strcasecmp(s, "vorbis") == 0)
        return SS_FILE_OGG;
    return -1;
}

int ss_file_format_lossy(ss_file_format f) { return format_known(f) && formats[f].bitrate > 0; }

int ss_file_format_bitrate(ss_file_format f) { return format_known(f) ? formats[f].bitrate : 0; }

int ss_file_format_rate(ss_file_format f, int rate)
{
    if (f != SS_FILE_OPUS)
        return rate;
    return rate == 8000 || rate == 12000 || rate == 16000 || rate == 24000 || rate == 48000 ? rate : 48000;
}

/* Vorbis: libvorbis's nominal bitrates (kbit/s, 44.1 kHz stereo) of the
 * qualities 0, 1, .. 10, for turning a bitrate into a quality. */
static const double vorbis_nominal[11] = {64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 500};

ss_status ss_bitrate_check(ss_file_format f, int kbps, int channels, ss_error *err)
{
    int lo, hi;
    switch (f) {
    case SS_FILE_MP3: lo = 32, hi = 320; break;
    case SS_FILE_OPUS: lo = 6 * channels, hi = 256 * channels; break;
    case SS_FILE_OGG: lo = 64, hi = 500; break;
    default:
        return ss_fail(err, SS_E_USAGE, "--bitrate %d: %s is lossless and takes no bitrate", kbps,
                       ss_file_format_name(f));
    }
    if (kbps < lo || kbps > hi)
        return ss_fail(err, SS_E_USAGE, "--bitrate %d: %s takes %d to %d kbit/s%s", kbps, ss_file_format_name(f), lo,
                       hi, f == SS_FILE_OPUS ? " (6 to 256 per channel)" : "");
    return SS_OK;
}

int ss_sample_format_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcasecmp(s, "s16") == 0)
        return SS_SAMPLE_S16;
    if (strcasecmp(s, "s24") == 0)
        return SS_SAMPLE_S24;
    if (strcasecmp(s, "f32") == 0)
        return SS_SAMPLE_F32;
    return -1;
}

/* ---- writing ---------------------------------------------------------------------- */

struct ss_audio_writer {
    SNDFILE *sf;        /* libsndfile handle writing fd (NULL once closed)           */
    int fd;             /* descriptor of the temporary file (-1 once closed)         */
    char *path;         /* final path, target of the rename in ss_audio_commit()     */
    char *tmp;          /* hidden temporary file beside path                         */
    int channels;       /* channels per frame                                        */
    int64_t unsynced;   /* samples written since writeback was last started          */
    int samplerate;
    int sub;            /* SF_FORMAT_PCM_16/24 when frames can go at offsets, else 0 */
    int float_wav;      /* WAV with float samples: fmt chunk completed at commit     */
    int64_t data_off;   /* byte offset of frame 0 in the file (with sub)             */
    int frame_bytes;    /* bytes per frame in the file (with sub)                    */
    int64_t seq;        /* frames written in order (ss_audio_write)                  */
    ss_file_format fmt; /* what is written                                           */
};

#define WRITEBACK_BYTES (32 << 20)

/* 64-bit mixer (splitmix64 finaliser). */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

/* Create tmp (whose name ends in "XXXXXX") exclusively, like mkstemp(3) but
 * with mode 0666 so the kernel applies the umask (and default ACLs) exactly
 * as for any new file; this avoids a racy umask() query to fchmod later.
 * Returns the descriptor or -1 with errno set. */
static int create_exclusive(char *tmp)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static atomic_uint_fast64_t counter;
    size_t len = strlen(tmp);
    if (len < 6) {
        errno = EINVAL;
        return -1;
    }
    char *x = tmp + len - 6;
    for (int attempt = 0; attempt < 100; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                        ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&ts ^
                        mix64(atomic_fetch_add(&counter, 1));
        uint64_t v = mix64(seed);
        for (int i = 0; i < 6; i++) {
            x[i] = alphabet[v % (sizeof alphabet - 1)];
            v /= sizeof alphabet - 1;
        }
        int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST && errno != EINTR)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

/* "dir/.base.tmp-XXXXXX" for path "dir/base" (".base.tmp-XXXXXX" without a
 * directory).  NULL when out of memory. */
static char *temp_name_for(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = path + dirlen;
    size_t len = dirlen + 1 + strlen(base) + sizeof ".tmp-XXXXXX";
    char *tmp = malloc(len);
    if (!tmp)
        return NULL;
    snprintf(tmp, len, "%.*s.%s.tmp-XXXXXX", (int)dirlen, path, base);
    return tmp;
}

ss_status ss_audio_create(const char *path, ss_file_format fmt, ss_sample_format sfmt,
                          int samplerate, int channels, ss_audio_writer **out, ss_error *err)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_create: NULL argument");
    if (samplerate < 1 || channels < 1)
        return ss_fail(err, SS_E_USAGE, "%s: cannot write audio with %d channels at %d Hz", path,
                       channels, samplerate);

    int major, sub = 0;
    switch (fmt) {
    case SS_FILE_WAV:  major = SF_FORMAT_WAV; break;
    case SS_FILE_FLAC: major = SF_FORMAT_FLAC; break;
    case SS_FILE_MP3:  major = SF_FORMAT_MPEG, sub = SF_FORMAT_MPEG_LAYER_III; break;
    case SS_FILE_OPUS: major = SF_FORMAT_OGG, sub = SF_FORMAT_OPUS; break;
    case SS_FILE_OGG:  major = SF_FORMAT_OGG, sub = SF_FORMAT_VORBIS; break;
    default:
        return ss_fail(err, SS_E_USAGE, "%s: unknown output file format %d", path, (int)fmt);
    }
    if (!sub) {
        switch (sfmt) {
        case SS_SAMPLE_S16: sub = SF_FORMAT_PCM_16; break;
        case SS_SAMPLE_S24: sub = SF_FORMAT_PCM_24; break;
        case SS_SAMPLE_F32: sub = SF_FORMAT_FLOAT; break;
        default:
            return ss_fail(err, SS_E_USAGE, "%s: unknown sample format %d", path, (int)sfmt);
        }
    }
    if (fmt == SS_FILE_FLAC && sfmt == SS_SAMPLE_F32)
        return ss_fail(err, SS_E_USAGE,
                       "FLAC cannot store 32-bit float samples; use --sample-format s16 or s24");
    if (ss_file_format_rate(fmt, samplerate) != samplerate)
        return ss_fail(err, SS_E_USAGE, "%s: Opus stores 8, 12, 16, 24 or 48 kHz only, not %d Hz", path, samplerate);

    SF_INFO sfi;
    memset(&sfi, 0, sizeof sfi);
    sfi.samplerate = samplerate;
    sfi.channels = channels;
    sfi.format = major | sub;
    if (!sf_format_check(&sfi))
        return ss_fail(err, SS_E_USAGE, "%s: %s cannot store %d channels at %d Hz%s", path, ss_file_format_name(fmt),
                       channels, samplerate, ss_file_format_lossy(fmt) ? " (or this libsndfile cannot write it)" : "");

    struct stat st;
    if (path[0] == '\0')
        return ss_fail(err, SS_E_CANTCREAT, "(empty output path): %s", strerror(ENOENT));
    if (path[strlen(path) - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))
        return ss_fail(err, SS_E_CANTCREAT, "%s: %s", path, strerror(EISDIR));

    ss_audio_writer *w = calloc(1, sizeof *w);
    char *pcopy = strdup(path);
    char *tmp = temp_name_for(path);
    if (!w || !pcopy || !tmp) {
        free(w);
        free(pcopy);
        free(tmp);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while creating it", path);
    }
    int fd = create_exclusive(tmp);
    if (fd < 0) {
        ss_status s = ss_fail(err, SS_E_CANTCREAT, "%s: cannot create file: %s", path, strerror(errno));
        free(w);
        free(pcopy);
        free(tmp);
        return s;
    }
    /* The temporary file is ours while this lock is held (until the rename and
     * close in ss_audio_commit, or the process ends, even by SIGKILL): another
     * run that finds it removes it only when it can take the lock. */
    (void)flock(fd, LOCK_EX | LOCK_NB);
    int dup_failed;
    SNDFILE *sf = sf_open_dup(fd, SFM_WRITE, &sfi, &dup_failed);
    if (!sf) {
        char why[256];
        if (dup_failed)
            snprintf(why, sizeof why, "%s", strerror(errno));
        else
            tidy_sf_message(sf_strerror(NULL), why, sizeof why);
        ss_status s = ss_fail(err, SS_E_CANTCREAT, "%s: cannot start writing %s: %s", path,
                              ss_file_format_name(fmt), why);
        close(fd);
        unlink(tmp);
        free(w);
        free(pcopy);
        free(tmp);
        return s;
    }
    if (sub != SF_FORMAT_FLOAT && !ss_file_format_lossy(fmt))
        sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    w->float_wav = major == SF_FORMAT_WAV && sub == SF_FORMAT_FLOAT;
    w->fmt = fmt;

    w->sf = sf;
    w->fd = fd;
    w->path = pcopy;
    w->tmp = tmp;
    w->channels = channels;
    w->samplerate = samplerate;
    /* WAV with integer samples: the data chunk is plain little-endian PCM that
     * starts where libsndfile left the (shared) file offset after the header, so
     * frames can also be written at their offsets (ss_audio_write_at).  Not
     * float: its PEAK chunk is filled from the samples libsndfile itself saw. */
    off_t off = major == SF_FORMAT_WAV && sub != SF_FORMAT_FLOAT ? lseek(fd, 0, SEEK_CUR) : -1;
    if (off > 0) {
        w->sub = sub;
        w->data_off = (int64_t)off;
        w->frame_bytes = channels * (sub == SF_FORMAT_PCM_16 ? 2 : 3);
    }
    *out = w;
    if (ss_file_format_lossy(fmt)) {
        ss_status bs = ss_audio_set_bitrate(w, ss_file_format_bitrate(fmt), err);
        if (bs != SS_OK) {
            ss_audio_abort(w);
            *out = NULL;
            return bs;
        }
    }
    return SS_OK;
}

/* libsndfile's compression level (0 best .. 1 smallest) for kbps:
 *   MP3 (CBR, MPEG-1 rates): kbps = 320 - level * 288, truncated;
 *   Opus: bits/s = (int)((1 - level) * 250000 + 6000) per channel, truncated;
 *   Vorbis: quality = 1 - level, libvorbis's 0..1 scale (q0..q10).
 * Half a unit is added before the truncation so that it lands on kbps. */
static double compression_level(ss_file_format f, int kbps, int channels, int samplerate)
{
    double level = 0.0;
    switch (f) {
    case SS_FILE_MP3:
        /* MPEG-2 (16..24 kHz) spans 8..160 kbit/s, MPEG-2.5 (< 16 kHz) 8..64 */
        if (samplerate >= 32000)
            level = (320.0 - (kbps + 0.5)) / 288.0;
        else if (samplerate >= 16000)
            level = (160.0 - (kbps + 0.5)) / 152.0;
        else
            level = (64.0 - (kbps + 0.5)) / 56.0;
        break;
    case SS_FILE_OPUS:
        level = 1.0 - ((double)kbps * 1000.0 / channels + 0.5 - 6000.0) / 250000.0;
        break;
    case SS_FILE_OGG:
        for (int q = 0; q < 10; q++)
            if (kbps <= vorbis_nominal[q + 1] || q == 9) {
                double t = (kbps - vorbis_nominal[q]) / (vorbis_nominal[q + 1] - vorbis_nominal[q]);
                level = 1.0 - (q + t) / 10.0;
                break;
            }
        break;
    default:
        break;
    }
    return level < 0.0 ? 0.0 : level > 1.0 ? 1.0 : level;
}

ss_status ss_audio_set_bitrate(ss_audio_writer *w, int kbps, ss_error *err)
{
    if (!w || !w->sf)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_set_bitrate: no open writer");
    if (w->seq > 0)
        return ss_fail(err, SS_E_INTERNAL, "%s: bitrate set after the first frame", w->path);
    ss_status st = ss_bitrate_check(w->fmt, kbps, w->channels, err);
    if (st != SS_OK)
        return st;
    if (w->fmt == SS_FILE_MP3) {
        int mode = SF_BITRATE_MODE_CONSTANT;
        /* libsndfile 1.2 answers 0 here, success or not: ask it back */
        sf_command(w->sf, SFC_SET_BITRATE_MODE, &mode, (int)sizeof mode);
        if (sf_command(w->sf, SFC_GET_BITRATE_MODE, NULL, 0) != mode)
            return ss_fail(err, SS_E_INTERNAL, "%s: libsndfile refuses a constant bitrate for MP3", w->path);
    }
    double level = compression_level(w->fmt, kbps, w->channels, w->samplerate);
    if (sf_command(w->sf, SFC_SET_COMPRESSION_LEVEL, &level, (int)sizeof level) != SF_TRUE)
        return ss_fail(err, SS_E_INTERNAL, "%s: libsndfile refuses the bitrate %d kbit/s for %s", w->path, kbps,
                       ss_file_format_name(w->fmt));
    return SS_OK;
}

ss_status ss_audio_write(ss_audio_writer *w, const float *buf, int64_t frames, ss_error *err)
{
    if (!w || (frames > 0 && !buf))
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_write: NULL argument");
    if (!w->sf)
        return ss_fail(err, SS_E_INTERNAL, "%s: write after the file was closed", w->path);
    if (frames <= 0)
        return SS_OK;
    errno = 0;
    sf_count_t n = sf_writef_float(w->sf, buf, (sf_count_t)frames);
    int e = errno;
    if (n != frames) {
        char why[256];
        if (e != 0)
            snprintf(why, sizeof why, "%s", strerror(e));
        else if (sf_error(w->sf) != SF_ERR_NO_ERROR)
            tidy_sf_message(sf_strerror(w->sf), why, sizeof why);
        else
            snprintf(why, sizeof why, "only %lld of %" PRId64 " frames written", (long long)n, frames);
        return ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path, why);
    }
    w->seq += frames;
    w->unsynced += frames * w->channels;
    if (w->unsynced * (int64_t)sizeof(float) >= WRITEBACK_BYTES) {
        w->unsynced = 0;
#if defined(__linux__)
        (void)sync_file_range(w->fd, 0, 0, SYNC_FILE_RANGE_WRITE);   /* start, don't wait; errors: fsync */
#endif
    }
    return SS_OK;
}

/* ---- writing at frame offsets ---- */

/* Virtual file for a headerless (RAW) libsndfile encoder: bytes go through
 * pwrite() to the writer's file at `base` onwards, so several encoders can
 * fill disjoint parts of one file at once. */
typedef struct at_file {
    int fd;
    int64_t base;          /* file offset of the virtual file's byte 0      */
    sf_count_t pos, size;
    char *buf;             /* bytes [pos - fill, pos) not yet written, or NULL */
    size_t fill, cap;
    int err;               /* errno of a failed pwrite, 0 when none         */
} at_file;

/* pwrite() all of [p, p + n) at file offset off; 0, or the errno. */
static int pwrite_all(int fd, const char *p, size_t n, int64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : ENOSPC;
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Write out what the buffer holds (one large write instead of libsndfile's
 * small ones: fewer calls, fewer partly written pages to zero). */
static int at_flush(at_file *f)
{
    if (f->fill && !f->err)
        f->err = pwrite_all(f->fd, f->buf, f->fill, f->base + f->pos - (sf_count_t)f->fill);
    f->fill = 0;
    return f->err;
}

static sf_count_t at_get_filelen(void *user) { return ((at_file *)user)->size; }

static sf_count_t at_seek(sf_count_t offset, int whence, void *user)
{
    at_file *f = user;
    at_flush(f);
    return clamped_seek(&f->pos, f->size, offset, whence);
}

static sf_count_t at_read(void *ptr, sf_count_t count, void *user)
{
    (void)ptr, (void)count, (void)user;
    return 0;
}

static sf_count_t at_write(const void *ptr, sf_count_t count, void *user)
{
    at_file *f = user;
    if (count <= 0 || f->err)
        return 0;
    if (f->buf && (size_t)count <= f->cap) {
        if (f->fill + (size_t)count > f->cap && at_flush(f))
            return 0;
        memcpy(f->buf + f->fill, ptr, (size_t)count);
        f->fill += (size_t)count;
    } else if (at_flush(f) || (f->err = pwrite_all(f->fd, ptr, (size_t)count, f->base + f->pos)) != 0) {
        return 0;
    }
    f->pos += count;
    if (f->pos > f->size)
        f->size = f->pos;
    return count;
}

static sf_count_t at_tell(void *user) { return ((at_file *)user)->pos; }

#define AT_BUF ((size_t)4 << 20)       /* largest write buffer of one ss_audio_write_at */

int ss_audio_can_write_at(const ss_audio_writer *w)
{
    return w && w->sf && w->sub && w->seq == 0;
}

ss_status ss_audio_write_at(ss_audio_writer *w, int64_t length, int64_t at, const float *buf, int64_t frames,
                            ss_error *err)
{
    if (!w || (frames > 0 && !buf))
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_write_at: NULL argument");
    if (!ss_audio_can_write_at(w) || at < 0 || frames < 0 || at > length - frames)
        return ss_fail(err, SS_E_INTERNAL, "%s: frames [%" PRId64 ", %" PRId64 ") of %" PRId64
                       " cannot be written at their offset", w->path, at, at + frames, length);
    int last = frames > 0 && at + frames == length;
    int64_t body = frames - last;
    if (body > 0) {
        /* the same libsndfile conversion (clipping, rounding) as the writer's own */
        size_t bytes = (size_t)body * (size_t)w->frame_bytes;
        at_file f = {.fd = w->fd, .base = w->data_off + at * w->frame_bytes, .cap = bytes < AT_BUF ? bytes : AT_BUF};
        f.buf = malloc(f.cap);      /* without it, libsndfile's own small writes go straight out */
        SF_VIRTUAL_IO io = {at_get_filelen, at_seek, at_read, at_write, at_tell};
        SF_INFO sfi = {.samplerate = w->samplerate, .channels = w->channels,
                       .format = SF_FORMAT_RAW | w->sub | SF_ENDIAN_LITTLE};
        SNDFILE *sf = sf_open_virtual(&io, SFM_WRITE, &sfi, &f);
        if (!sf) {
            char why[256];
            free(f.buf);
            return ss_fail(err, SS_E_IO, "%s: cannot start encoding: %s", w->path,
                           tidy_sf_message(sf_strerror(NULL), why, sizeof why));
        }
        sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
        sf_count_t n = sf_writef_float(sf, buf, (sf_count_t)body);
        sf_close(sf);
        at_flush(&f);
        free(f.buf);
        if (n != body || f.err)
            return ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path,
                           f.err ? strerror(f.err) : "short write");
#if defined(__linux__)
        (void)sync_file_range(w->fd, (off_t)f.base, (off_t)(body * w->frame_bytes), SYNC_FILE_RANGE_WRITE);
#endif
    }
    if (last) {
        /* the file's last frame goes through the writer itself, moved there:
         * its frame count, and so the header it writes at commit, is then the
         * whole length */
        errno = 0;
        if (sf_seek(w->sf, (sf_count_t)(length - 1), SEEK_SET) != (sf_count_t)(length - 1) ||
            sf_writef_float(w->sf, buf + body * w->channels, 1) != 1) {
            char why[256];
            int e = errno;
            return ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path,
                           e ? strerror(e) : tidy_sf_message(sf_strerror(w->sf), why, sizeof why));
        }
    }
    return SS_OK;
}

/* Release everything w holds; with drop, also remove the temporary file. */
static void writer_free(ss_audio_writer *w, int drop)
{
    if (w->sf)
        sf_close(w->sf);
    if (drop && w->tmp)
        unlink(w->tmp);         /* before the close gives up the lock */
    if (w->fd >= 0)
        close(w->fd);
    free(w->path);
    free(w->tmp);
    free(w);
}

/* Best effort: make the rename durable by syncing the directory. */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) {
        dir = strdup(".");
    } else {
        size_t len = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(len + 1);
        if (dir) {
            memcpy(dir, path, len);
            dir[len] = '\0';
        }
    }
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* A float WAV's fmt chunk as libsndfile writes it is 16 bytes, without the
 * cbSize field every non-PCM format has (sox: "wave header missing extended
 * part of fmt chunk").  After sf_close has written the final header
 * (RIFF, fmt 16, fact, PEAK, data), rewrite it in place, same length: fmt with
 * cbSize = 0 (18 bytes), the fact chunk, and a JUNK chunk where the PEAK chunk
 * was, 2 bytes shorter (PEAK is optional and is dropped).  0, or an errno;
 * a header of any other layout is left as it is. */
static int complete_float_fmt(int fd)
{
    unsigned char h[256], o[256];
    ssize_t n;
    do
        n = pread(fd, h, sizeof h, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno;
    size_t len = (size_t)n, off = 12, fmt = 0, fact = 0, peak = 0;
    if (len < 12 || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4))
        return 0;
    while (off + 8 <= len && memcmp(h + off, "data", 4)) {
        uint32_t size = le32(h + off + 4);
        if (!memcmp(h + off, "fmt ", 4) && size == 16 && (h[off + 8] | h[off + 9] << 8) == 3 && off == 12)
            fmt = off;
        else if (!memcmp(h + off, "fact", 4) && size == 4)
            fact = off;
        else if (!memcmp(h + off, "PEAK", 4) && size >= 4)
            peak = off;
        else
            return 0;
        off += 8 + size;
    }
    if (!fmt || !fact || !peak || fact != fmt + 24 || peak != fact + 12 || off + 8 > len)
        return 0;
    uint32_t junk = le32(h + peak + 4) - 2;
    memcpy(o, h, 12);
    memcpy(o + 12, "fmt \x12\0\0\0", 8);
    memcpy(o + 20, h + 20, 16);
    o[36] = o[37] = 0;                                   /* cbSize */
    memcpy(o + 38, h + fact, 12);
    memcpy(o + 50, "JUNK", 4);
    o[54] = (unsigned char)junk, o[55] = (unsigned char)(junk >> 8), o[56] = (unsigned char)(junk >> 16),
    o[57] = (unsigned char)(junk >> 24);
    if (58 + (size_t)junk != off)
        return 0;
    memset(o + 58, 0, junk);
    return pwrite_all(fd, (const char *)o, off, 0);
}

ss_status ss_audio_commit(ss_audio_writer *w, ss_error *err)
{
    if (!w)
        return ss_fail(err, SS_E_INTERNAL, "ss_audio_commit: NULL writer");
    ss_status st = SS_OK;

    /* sf_close writes the final header (and, for FLAC, the last block). */
    int had_error = w->sf ? sf_error(w->sf) : SF_ERR_NO_ERROR;
    char why[256] = "";
    if (had_error != SF_ERR_NO_ERROR)
        tidy_sf_message(sf_strerror(w->sf), why, sizeof why);
    errno = 0;
    int ce = w->sf ? sf_close(w->sf) : 0;
    int e = errno;
    w->sf = NULL;
    if (had_error != SF_ERR_NO_ERROR)
        st = ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path, why);
    else if (ce != 0)
        st = ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path,
                     e ? strerror(e) : tidy_sf_message(sf_error_number(ce), why, sizeof why));

    int fe;
    if (st == SS_OK && w->float_wav && (fe = complete_float_fmt(w->fd)) != 0)
        st = ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path, strerror(fe));
    if (st == SS_OK && fsync(w->fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        st = ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path, strerror(errno));
    /* renamed before the descriptor (and with it the lock, see ss_audio_create)
     * is closed, so the temporary name is never unlocked while it exists */
    int renamed = st == SS_OK && rename(w->tmp, w->path) == 0;
    if (st == SS_OK && !renamed)
        st = ss_fail(err, SS_E_IO, "%s: cannot move finished file %s into place: %s", w->path,
                     w->tmp, strerror(errno));
    if (w->fd >= 0) {
        if (close(w->fd) != 0 && st == SS_OK && errno != EINTR) {
            st = ss_fail(err, SS_E_IO, "%s: write failed: %s", w->path, strerror(errno));
            unlink(w->path);           /* its last bytes may be lost */
        }
        w->fd = -1;
    }
    if (st == SS_OK)
        sync_parent_dir(w->path);
    writer_free(w, st != SS_OK);
    return st;
}

void ss_audio_abort(ss_audio_writer *w)
{
    if (w)
        writer_free(w, 1);
}

/* ---- resampling ------------------------------------------------------------------- */

/* ---- polyphase FIR: the converter for rates whose ratio reduces to at most
 * POLY_MAX_PHASES phases (every common pair: 48000 <-> 44100 is 160/147,
 * 32000 -> 44100 441/320, 96000 -> 44100 147/320, ...).
 *
 * A Kaiser-windowed sinc designed at the rate L * in_rate (L = out / gcd, the
 * number of phases), cut off at half the lower of the two rates, transition
 * band from POLY_PASS (20 kHz at 44.1 kHz) of the lower rate to its mirror
 * image (24.1 kHz at 44.1 kHz: what aliases lands above 20 kHz), stopband
 * POLY_ATTEN_DB; each phase's taps are normalised to a DC gain of exactly 1.
 * Output frame j is the dot product of phase (j*M + c) mod L with the T input
 * frames ending at (j*M + c) / L, c the filter's centre: linear phase, no
 * delay, zeros before the first and after the last input frame.  Measured
 * (test_resampler_passband_error_bound): a sine sweep 20 Hz .. 20 kHz through
 * 48000 -> 44100 -> 48000 comes back within the bound stated there. */

#define POLY_MAX_PHASES 1024
#define POLY_MAX_TAPS 512          /* taps per phase; more falls back to libsamplerate */
#define POLY_PASS (20000.0 / 44100.0)
#define POLY_ATTEN_DB 100.0

typedef struct poly {
    int L, M;               /* phases (up), step (down): out/in = L/M            */
    int T;                  /* taps per phase, a multiple of 8                   */
    int64_t c;              /* filter centre, in samples at L * in_rate          */
    float *taps;            /* [L][T], each phase reversed (oldest input first)  */
    float *hist;            /* [C][cap] planar input, frame hist0 at index 0     */
    int64_t cap, hist0, hist_n;
} poly;

static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0, q = x * x / 4.0;
    for (int k = 1; k < 200 && term > 1e-17 * sum; k++) {
        term *= q / ((double)k * k);
        sum += term;
    }
    return sum;
}

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The filter for in_rate -> out_rate, or NULL (no memory, or a ratio beyond
 * POLY_MAX_PHASES / POLY_MAX_TAPS: libsamplerate takes those). */
static poly *poly_new(int in_rate, int out_rate, int *nomem)
{
    int64_t g = gcd64(in_rate, out_rate), L = out_rate / g, M = in_rate / g;
    double lo = in_rate < out_rate ? in_rate : out_rate, up = (double)L * in_rate;
    double fc = lo / 2, df = lo * (1.0 - 2.0 * POLY_PASS);             /* Hz */
    double beta = 0.1102 * (POLY_ATTEN_DB - 8.7);
    int64_t n = (int64_t)ceil((POLY_ATTEN_DB - 8.0) / (2.285 * 2.0 * M_PI * df / up)) + 1;
    *nomem = 0;
    if (L > POLY_MAX_PHASES || n / L + 1 > POLY_MAX_TAPS)
        return NULL;
    n |= 1;                                                  /* odd: an integer centre */
    int T = (int)((n + L - 1) / L + 7) / 8 * 8;
    poly *f = calloc(1, sizeof *f);
    double *h = malloc(sizeof(double) * (size_t)n);
    if (f)
        f->taps = calloc((size_t)L * (size_t)T, sizeof(float));
    if (!f || !h || !f->taps) {
        if (f)
            free(f->taps);
        free(f);
        free(h);
        *nomem = 1;
        return NULL;
    }
    f->L = (int)L;
    f->M = (int)M;
    f->T = T;
    f->c = (n - 1) / 2;
    double i0b = bessel_i0(beta);
    for (int64_t k = 0; k < n; k++) {
        double t = (double)(k - f->c), r = t / (double)f->c;
        double x = 2.0 * fc / up * t;
        double sinc = t == 0 ? 1.0 : sin(M_PI * x) / (M_PI * x);
        h[k] = sinc * bessel_i0(beta * sqrt(fmax(0.0, 1.0 - r * r))) / i0b;
    }
    /* phase q holds h[q + t*L], t = 0..T-1, reversed; normalised to sum 1 */
    for (int q = 0; q < L; q++) {
        double sum = 0.0;
        for (int t = 0; t < T && q + (int64_t)t * L < n; t++)
            sum += h[q + (int64_t)t * L];
        for (int t = 0; t < T && q + (int64_t)t * L < n; t++)
            f->taps[(size_t)q * T + (size_t)(T - 1 - t)] = (float)(h[q + (int64_t)t * L] / sum);
    }
    free(h);
    f->hist0 = -(int64_t)(T - 1);                            /* T-1 zeros before frame 0 */
    f->hist_n = T - 1;
    f->cap = 0;
    return f;
}

static void poly_free(poly *f)
{
    if (f) {
        free(f->taps);
        free(f->hist);
        free(f);
    }
}

/* Room for `need` frames of history per channel (keeping what is held). */
static int poly_reserve(poly *f, int channels, int64_t need)
{
    if (need <= f->cap)
        return 0;
    int64_t cap = need + need / 2 + 1024;
    float *nh = calloc((size_t)cap * (size_t)channels, sizeof(float));
    if (!nh)
        return -1;
    for (int ch = 0; ch < channels && f->hist; ch++)
        memcpy(nh + (size_t)ch * (size_t)cap, f->hist + (size_t)ch * (size_t)f->cap,
               sizeof(float) * (size_t)f->hist_n);
    free(f->hist);
    f->hist = nh;
    f->cap = cap;
    return 0;
}

/* Append n interleaved frames (NULL: zeros). */
static int poly_append(poly *f, int channels, const float *in, int64_t n)
{
    if (poly_reserve(f, channels, f->hist_n + n) != 0)
        return -1;
    for (int ch = 0; ch < channels; ch++) {
        float *d = f->hist + (size_t)ch * (size_t)f->cap + f->hist_n;
        if (!in)
            memset(d, 0, sizeof(float) * (size_t)n);
        else
            for (int64_t i = 0; i < n; i++)
                d[i] = in[(size_t)i * (size_t)channels + (size_t)ch];
    }
    f->hist_n += n;
    return 0;
}

/* One output frame of one channel: taps tp[0..T) against x[0..T), T a
 * multiple of 8, in eight lanes (sixteen: two vectors of eight) that the
 * compiler keeps in vector registers. */
static inline float poly_dot(const float *tp, const float *x, int T)
{
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= T; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += tp[i + k] * x[i + k];
    for (; i < T; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += tp[i + k] * x[i + k];
    for (int k = 0; k < 8; k++)
        acc[k] += acc[k + 8];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define POLY_AVX2 1
/* The same with AVX2 and FMA (chosen at run time where the CPU has them). */
__attribute__((target("avx2,fma"))) static inline float poly_dot_avx2(const float *tp, const float *x, int T)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= T; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(tp + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(tp + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    if (i < T)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(tp + i), _mm256_loadu_ps(x + i), a0);
    __m256 a = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
#endif

typedef float (*poly_dot_fn)(const float *tp, const float *x, int T);

/* Output frames out_done .. while their input window is held (and room is
 * left); returns the number made.  Inlined into one function per dot product
 * (below), so that the dot product is inlined too. */
static inline __attribute__((always_inline)) int64_t
poly_run_with(poly *f, int channels, int64_t out_done, int64_t out_total, float *out, int64_t room, poly_dot_fn dot)
{
    int64_t made = 0, held_end = f->hist0 + f->hist_n;    /* one past the last input frame held */
    int64_t p = out_done * f->M + f->c, b = p / f->L, q = p % f->L;
    const int64_t step_b = f->M / f->L, step_q = f->M % f->L;
    const int T = f->T;
    for (int64_t j = out_done; j < out_total && made < room && b < held_end; j++, made++) {
        const float *tp = f->taps + (size_t)q * (size_t)T;
        int64_t start = b - T + 1 - f->hist0;
        for (int ch = 0; ch < channels; ch++)
            out[(size_t)made * (size_t)channels + (size_t)ch] =
                dot(tp, f->hist + (size_t)ch * (size_t)f->cap + start, T);
        b += step_b;
        q += step_q;
        if (q >= f->L) {
            q -= f->L;
            b++;
        }
    }
    /* drop what no later output needs */
    int64_t keep = b - T + 1 - f->hist0;
    if (keep > 0 && keep > f->hist_n / 2 && keep <= f->hist_n) {
        for (int ch = 0; ch < channels; ch++) {
            float *d = f->hist + (size_t)ch * (size_t)f->cap;
            memmove(d, d + keep, sizeof(float) * (size_t)(f->hist_n - keep));
        }
        f->hist0 += keep;
        f->hist_n -= keep;
    }
    return made;
}

static int64_t poly_run_generic(poly *f, int channels, int64_t out_done, int64_t out_total, float *out, int64_t room)
{
    return poly_run_with(f, channels, out_done, out_total, out, room, poly_dot);
}

#ifdef POLY_AVX2
__attribute__((target("avx2,fma"))) static int64_t
poly_run_avx2(poly *f, int channels, int64_t out_done, int64_t out_total, float *out, int64_t room)
{
    return poly_run_with(f, channels, out_done, out_total, out, room, poly_dot_avx2);
}
#endif

static int64_t poly_run(poly *f, int channels, int64_t out_done, int64_t out_total, float *out, int64_t room)
{
#ifdef POLY_AVX2
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return poly_run_avx2(f, channels, out_done, out_total, out, room);
#endif
    return poly_run_generic(f, channels, out_done, out_total, out, room);
}

struct ss_resampler {
    SRC_STATE *src;     /* libsamplerate state (rates poly cannot take), else NULL   */
    poly *pf;           /* the polyphase filter, else NULL (NULL and NULL: equal rates) */
    int channels;       /* interleaved channels per frame                            */
    double ratio;       /* out_rate / in_rate                                        */
    int64_t in_total;   /* input frames announced to ss_resampler_new(), or
                           SS_RESAMPLE_LIVE until ss_resampler_end()               */
    int64_t in_done;    /* input frames pushed so far                                */
    int64_t out_total;  /* output frames to produce in all (live: not known yet)     */
    int64_t out_done;   /* output frames delivered so far                            */
    int flushed;        /* the tail has been flushed and padded                      */
    int in_rate, out_rate;
};

/* The output frames of the frames pushed so far (a live stream's limit). */
static int64_t live_total(const ss_resampler *rs, int64_t in_done)
{
    return rs->in_rate == rs->out_rate ? in_done : ss_resampled_length(in_done, rs->in_rate, rs->out_rate);
}

/* Slack added to ceil(n * ratio) in ss_resampler_max_out(): libsamplerate
 * emits at most one or two frames more than n * ratio for n pushed frames. */
#define SS_RESAMPLE_SLACK 16

/* Largest chunk handed to one src_process() call (keeps long conversions safe). */
#define SS_RESAMPLE_CHUNK ((int64_t)1 << 20)

int ss_resample_possible(int in_rate, int out_rate)
{
    return in_rate > 0 && out_rate > 0 &&
           (in_rate == out_rate || src_is_valid_ratio((double)out_rate / (double)in_rate));
}

int64_t ss_resampled_length(int64_t frames, int in_rate, int out_rate)
{
    if (frames <= 0 || in_rate <= 0 || out_rate <= 0)
        return 0;
    /* frames * out / in, rounded half up, exactly: with frames = q*in + r,
     * the result is q*out + floor((2*r*out + in) / (2*in)); r < in < 2^31 and
     * out < 2^31, so 2*r*out + in < 2^63 fits an unsigned 64-bit integer. */
    uint64_t in = (uint64_t)in_rate, outr = (uint64_t)out_rate;
    uint64_t q = (uint64_t)frames / in, r = (uint64_t)frames % in;
    uint64_t frac = (2 * r * outr + in) / (2 * in);
    if (q > (uint64_t)(INT64_MAX - (int64_t)frac) / outr)
        return INT64_MAX;
    return (int64_t)(q * outr + frac);
}

ss_status ss_resampler_new(int channels, int in_rate, int out_rate, int64_t in_frames,
                           ss_resampler **out, ss_error *err)
{
    if (out)
        *out = NULL;
    if (!out)
        return ss_fail(err, SS_E_INTERNAL, "ss_resampler_new: NULL argument");
    if (channels < 1 || in_rate < 1 || out_rate < 1 || (in_frames < 0 && in_frames != SS_RESAMPLE_LIVE))
        return ss_fail(err, SS_E_INTERNAL, "resampler: invalid setup (%d channels, %d -> %d Hz, %"
                       PRId64 " frames)", channels, in_rate, out_rate, in_frames);
    double ratio = (double)out_rate / (double)in_rate;
    if (in_rate != out_rate && !src_is_valid_ratio(ratio))
        return ss_fail(err, SS_E_DATA, "cannot resample from %d Hz to %d Hz (ratio out of range)",
                       in_rate, out_rate);
    ss_resampler *rs = calloc(1, sizeof *rs);
    if (!rs)
        return ss_fail(err, SS_E_NOMEM, "resampler: out of memory");
    rs->channels = channels;
    rs->ratio = ratio;
    rs->in_total = in_frames;
    rs->in_rate = in_rate;
    rs->out_rate = out_rate;
    rs->out_total = in_frames < 0 ? INT64_MAX : in_rate == out_rate ? in_frames
                                                                     : ss_resampled_length(in_frames, in_rate, out_rate);
    if (in_rate != out_rate) {
        int e = 0, nomem = 0;
        rs->pf = poly_new(in_rate, out_rate, &nomem);
        if (nomem) {
            free(rs);
            return ss_fail(err, SS_E_NOMEM, "resampler: out of memory (%d -> %d Hz)", in_rate, out_rate);
        }
        if (!rs->pf)
            rs->src = src_new(SRC_SINC_BEST_QUALITY, channels, &e);
        if (!rs->pf && !rs->src) {
            free(rs);
            return ss_fail(err, e == 1 /* SRC_ERR_MALLOC_FAILED */ ? SS_E_NOMEM : SS_E_INTERNAL,
                           "resampler: cannot start libsamplerate (%d -> %d Hz, %d channels): %s",
                           in_rate, out_rate, channels, src_strerror(e));
        }
    }
    *out = rs;
    return SS_OK;
}

int64_t ss_resampler_max_out(const ss_resampler *rs, int64_t n)
{
    if (!rs || n < 0)
        return 0;
    if (rs->in_total == SS_RESAMPLE_LIVE) {
        int64_t lim = live_total(rs, rs->in_done + n) - rs->out_done;
        return lim > 0 ? lim : 0;
    }
    int64_t left = rs->out_total - rs->out_done;
    if (!rs->src && !rs->pf)
        return n < left ? n : left;
    /* The push that completes the input delivers everything that is left. */
    if (rs->in_done + n >= rs->in_total)
        return left;
    double bound = (double)n * rs->ratio + 1.0 + SS_RESAMPLE_SLACK;
    if (bound >= (double)left)
        return left;
    return (int64_t)bound;
}

ss_status ss_resampler_push(ss_resampler *rs, const float *in, int64_t n, float *out,
                            int64_t out_cap, int64_t *got, ss_error *err)
{
    if (got)
        *got = 0;
    if (!rs || !got || n < 0 || out_cap < 0 || (n > 0 && !in))
        return ss_fail(err, SS_E_INTERNAL, "ss_resampler_push: invalid argument");
    int live = rs->in_total == SS_RESAMPLE_LIVE;
    if (!live && n > rs->in_total - rs->in_done)
        return ss_fail(err, SS_E_INTERNAL, "resampler: %" PRId64 " frames pushed beyond the %"
                       PRId64 " announced", n - (rs->in_total - rs->in_done), rs->in_total);
    size_t ch = (size_t)rs->channels;
    int last = !live && rs->in_done + n == rs->in_total;
    /* a live stream: no output beyond what the input so far gives in all
     * (the same frames: a later output waits for more input) */
    int64_t limit = live ? live_total(rs, rs->in_done + n) : rs->out_total;

    if (rs->pf) {
        if (rs->flushed)
            return SS_OK;
        if (poly_append(rs->pf, rs->channels, in, n) != 0)
            return ss_fail(err, SS_E_NOMEM, "resampler: out of memory");
        if (last) {
            /* zeros after the last frame, as far as the last output's window reaches */
            int64_t need = ((rs->out_total - 1) * rs->pf->M + rs->pf->c) / rs->pf->L + 1;
            int64_t more = need - (rs->pf->hist0 + rs->pf->hist_n);
            if (more > 0 && poly_append(rs->pf, rs->channels, NULL, more) != 0)
                return ss_fail(err, SS_E_NOMEM, "resampler: out of memory");
        }
        int64_t made = poly_run(rs->pf, rs->channels, rs->out_done, limit, out, out_cap);
        rs->in_done += n;
        rs->out_done += made;
        *got = made;
        if (last && rs->out_done < rs->out_total)
            return ss_fail(err, SS_E_INTERNAL, "resampler: output buffer of %" PRId64 " frames too small for the tail",
                           out_cap);
        rs->flushed = last;
        return SS_OK;
    }
    if (!rs->src) {
        if (n > out_cap)
            return ss_fail(err, SS_E_INTERNAL, "resampler: output buffer of %" PRId64
                           " frames too small for %" PRId64, out_cap, n);
        if (n > 0)
            memcpy(out, in, (size_t)n * ch * sizeof *out);
        rs->in_done += n;
        rs->out_done += n;
        rs->flushed = last;
        *got = n;
        return SS_OK;
    }
    if (rs->flushed)
        return SS_OK; /* n is 0 here: everything was pushed before */

    int64_t used = 0, made = 0;
    for (;;) {
        /* live: libsamplerate's own delay keeps its output below the limit;
         * ss_resampler_end checks that it did */
        int64_t want = (live ? INT64_MAX / 2 : rs->out_total) - rs->out_done - made;
        if (want <= 0)
            break; /* all output produced: the rest of the input only adds excess */
        int64_t room = out_cap - made;
        if (room <= 0) {
            if (used >= n && !last)
                break;
            return ss_fail(err, SS_E_INTERNAL, "resampler: output buffer of %" PRId64
                           " frames too small", out_cap);
        }
        int64_t chunk = n - used < SS_RESAMPLE_CHUNK ? n - used : SS_RESAMPLE_CHUNK;
        if (chunk == 0 && !last)
            break;
        int64_t space = room < want ? room : want;
        if (space > SS_RESAMPLE_CHUNK)
            space = SS_RESAMPLE_CHUNK;

        SRC_DATA d;
        memset(&d, 0, sizeof d);
        /* never NULL: libsamplerate skips its end-of-input flush for a NULL
         * data_in (prepare_data returns first), which a live stream's end,
         * a push of 0 frames, would otherwise hit */
        static const float no_input[1];
        d.data_in = chunk > 0 ? in + (size_t)used * ch : no_input;
        d.input_frames = (long)chunk;
        d.data_out = out + (size_t)made * ch;
        d.output_frames = (long)space;
        d.end_of_input = last && used + chunk == n;
        d.src_ratio = rs->ratio;
        int e = src_process(rs->src, &d);
        if (e != 0)
            return ss_fail(err, SS_E_INTERNAL, "resampler: libsamplerate failed: %s", src_strerror(e));
        used += d.input_frames_used;
        made += d.output_frames_gen;
        if (d.input_frames_used == 0 && d.output_frames_gen == 0) {
            if (d.end_of_input)
                break; /* tail fully flushed */
            if (chunk > 0)
                return ss_fail(err, SS_E_INTERNAL, "resampler: libsamplerate made no progress");
            break;
        }
    }
    rs->in_done += n; /* input beyond the output target is dropped on purpose */
    if (last) {
        int64_t pad = rs->out_total - rs->out_done - made;
        if (pad > out_cap - made)
            return ss_fail(err, SS_E_INTERNAL, "resampler: output buffer of %" PRId64
                           " frames too small for the tail", out_cap);
        if (pad > 0) {
            memset(out + (size_t)made * ch, 0, (size_t)pad * ch * sizeof *out);
            made += pad;
        }
        rs->flushed = 1;
    }
    rs->out_done += made;
    *got = made;
    return SS_OK;
}

int64_t ss_resampler_end_max(const ss_resampler *rs)
{
    if (!rs || rs->in_total != SS_RESAMPLE_LIVE)
        return 0;
    int64_t left = live_total(rs, rs->in_done) - rs->out_done;
    return left > 0 ? left : 0;
}

ss_status ss_resampler_end(ss_resampler *rs, float *out, int64_t out_cap, int64_t *got, ss_error *err)
{
    if (got)
        *got = 0;
    if (!rs || !got || rs->in_total != SS_RESAMPLE_LIVE)
        return ss_fail(err, SS_E_INTERNAL, "ss_resampler_end: not a live stream");
    rs->in_total = rs->in_done;
    rs->out_total = live_total(rs, rs->in_done);
    if (rs->out_done > rs->out_total)
        return ss_fail(err, SS_E_INTERNAL, "resampler: %" PRId64 " frames given for %" PRId64 " in, %" PRId64
                       " in all", rs->out_done, rs->in_done, rs->out_total);
    if (rs->in_done == 0) {                 /* nothing went in: nothing comes out */
        rs->flushed = 1;
        return SS_OK;
    }
    /* the push that completes the input: the tail, as with the length up front */
    return ss_resampler_push(rs, NULL, 0, out, out_cap, got, err);
}

void ss_resampler_free(ss_resampler *rs)
{
    if (!rs)
        return;
    if (rs->src)
        src_delete(rs->src);
    poly_free(rs->pf);
    free(rs);
}

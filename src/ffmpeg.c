/* ffmpeg.c - decoding through an ffmpeg child process (see ffmpeg.h). */
#include "ffmpeg.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *ss_ffmpeg_format(const unsigned char *b, size_t n)
{
    static const unsigned char asf[8] = {0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11};
    static const unsigned char ebml[4] = {0x1A, 0x45, 0xDF, 0xA3};
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0)
        return "MP4/M4A";
    if (n >= 8 && memcmp(b, asf, 8) == 0)
        return "ASF (WMA)";
    if (n >= 4 && memcmp(b, ebml, 4) == 0)
        return "Matroska/WebM";
    if (n >= 2 && b[0] == 0xFF && (b[1] & 0xF6) == 0xF0)    /* sync, layer 0: not MPEG audio */
        return "AAC (ADTS)";
    if (n >= 4 && memcmp(b, "ADIF", 4) == 0)
        return "AAC (ADIF)";
    if (n >= 2 && b[0] == 0x0B && b[1] == 0x77)
        return "AC-3";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "AVI ", 4) == 0)
        return "AVI";
    static const struct { const char *magic; const char *name; } m[] = {
        {"MAC ", "Monkey's Audio (APE)"}, {"wvpk", "WavPack"}, {"TTA1", "TTA"}, {"#!AMR", "AMR"},
        {".RMF", "RealMedia"}, {".ra\xfd", "RealAudio"}, {"MPCK", "Musepack"}, {"MP+", "Musepack"},
        {"FLV", "FLV"}, {"DSD ", "DSF"}, {"FRM8", "DSDIFF"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (n >= strlen(m[i].magic) && memcmp(b, m[i].magic, strlen(m[i].magic)) == 0)
            return m[i].name;
    return NULL;
}

int ss_ffmpeg_available(void)
{
    const char *path = getenv("PATH");
    char buf[4096];
    for (const char *p = path ? path : ""; *p;) {
        size_t len = strcspn(p, ":");
        struct stat sb;
        if (len == 0)
            snprintf(buf, sizeof buf, "./ffmpeg");        /* an empty entry is the current folder */
        else
            snprintf(buf, sizeof buf, "%.*s/ffmpeg", (int)(len < 4000 ? len : 4000), p);
        if (stat(buf, &sb) == 0 && S_ISREG(sb.st_mode) && access(buf, X_OK) == 0)
            return 1;
        p += len + (p[len] == ':');
    }
    return 0;
}

/* An unlinked temporary file for ffmpeg's stderr; -1 on failure. */
static int stderr_file(void)
{
    const char *dir = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/stemsplit-ffmpeg-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(tmpl);
    if (fd < 0)
        return -1;
    unlink(tmpl);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

ss_status ss_ffmpeg_start(const char *path, const char *name, const char *format, ss_ffmpeg *f, ss_error *err)
{
    f->pid = -1;
    f->out = f->err = -1;
    if (!ss_ffmpeg_available())
        return ss_fail(err, SS_E_DATA, "%s: %s audio, which libsndfile cannot read: installing ffmpeg reads it "
                       "(stemsplit decodes such files through ffmpeg when it is on PATH), or convert it to FLAC or "
                       "WAV", name, format);
    /* "file:" keeps ffmpeg from taking a name like "http:..." or "concat:..." as a protocol */
    size_t len = strlen(path) + sizeof "file:";
    char *input = malloc(len);
    if (!input)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory while opening it", name);
    snprintf(input, len, "file:%s", path);
    int p[2] = {-1, -1};
    if (pipe(p) != 0 || (f->err = stderr_file()) < 0) {
        ss_status s = ss_fail(err, SS_E_IO, "%s: cannot start ffmpeg: %s", name, strerror(errno));
        if (p[0] >= 0)
            close(p[0]), close(p[1]);
        free(input);
        return s;
    }
    (void)fcntl(p[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(p[1], F_SETFD, FD_CLOEXEC);
    char *argv[] = {"ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", input, "-map", "0:a:0", "-vn",
                    "-c:a", "pcm_f32le", "-f", "wav", "-", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);        /* stemsplit's dispositions are not ffmpeg's */
    sigaddset(&dfl, SIGXFSZ);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    int e = posix_spawn_file_actions_init(&fa);
    if (!e && !(e = posix_spawnattr_init(&at))) {
        if (!(e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) &&
            !(e = posix_spawn_file_actions_adddup2(&fa, p[1], 1)) &&
            !(e = posix_spawn_file_actions_adddup2(&fa, f->err, 2)) &&
            !(e = posix_spawnattr_setsigmask(&at, &none)) && !(e = posix_spawnattr_setsigdefault(&at, &dfl)) &&
            !(e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)))
            e = posix_spawnp(&f->pid, "ffmpeg", &fa, &at, argv, environ);
        posix_spawnattr_destroy(&at);
    }
    posix_spawn_file_actions_destroy(&fa);
    free(input);
    close(p[1]);
    if (e != 0) {
        close(p[0]);
        close(f->err);
        f->err = -1;
        f->pid = -1;
        if (e == ENOENT)
            return ss_fail(err, SS_E_DATA, "%s: %s audio, which libsndfile cannot read: installing ffmpeg reads "
                           "it (stemsplit decodes such files through ffmpeg when it is on PATH)", name, format);
        return ss_fail(err, SS_E_IO, "%s: cannot start ffmpeg: %s", name, strerror(e));
    }
    f->out = p[0];
    return SS_OK;
}

ss_status ss_ffmpeg_finish(ss_ffmpeg *f, const char *name, int give_up, ss_error *err)
{
    if (f->out >= 0)
        close(f->out);                   /* a child still writing gets EPIPE or SIGPIPE and ends */
    f->out = -1;
    int status = 0, ended_by_us = 0;
    if (f->pid > 0) {
        /* giving up: a child that ends within a second is judged by how it
         * ended (an exit status of its own is the cause of the reader's
         * failure, e.g. a pipe that ended empty); one still running is ended */
        pid_t got = 0;
        for (int tries = 0; give_up == 1 && tries < 100 && got == 0; tries++) {
            got = waitpid(f->pid, &status, WNOHANG);
            if (got == 0)
                nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
            else if (got < 0 && errno == EINTR)
                got = 0;
        }
        if (got <= 0 && give_up) {
            kill(f->pid, SIGTERM);
            ended_by_us = 1;
        }
        if (got <= 0)
            while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR)
                ;
    }
    f->pid = -1;
    char msg[512] = "";
    if (f->err >= 0) {
        ssize_t n = pread(f->err, msg, sizeof msg - 1, 0);
        msg[n > 0 ? n : 0] = '\0';
        msg[strcspn(msg, "\n")] = '\0';
        close(f->err);
        f->err = -1;
    }
    if (ended_by_us || (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
        (give_up && WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE))
        return SS_OK;
    if (WIFSIGNALED(status))
        return ss_fail(err, SS_E_DATA, "%s: ffmpeg ended by signal %d while decoding it%s%s", name, WTERMSIG(status),
                       msg[0] ? ": " : "", msg);
    return ss_fail(err, SS_E_DATA, "%s: ffmpeg cannot decode it (exit status %d)%s%s", name, WEXITSTATUS(status),
                   msg[0] ? ": " : "", msg);
}

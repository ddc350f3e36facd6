/* test_audio.c - audio file reading/writing and resampling (src/audio.c).
 *
 * Every file lives in one mkdtemp(3) directory that is removed at the end;
 * each case works in its own subdirectory so "directory is empty" checks are
 * exact.  Cases that need a different stdin or resource limits run in a
 * forked child that reports through its exit status.
 */
#include "test.h"

#include "audio.h"
#include "separate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_root[256];   /* the mkdtemp directory holding everything */

#if defined(__linux__)
#include <sys/syscall.h>
/* Every close(2) of this program comes here, libsndfile's included (the
 * executable's definition interposes): a descriptor closed twice shows up as
 * EBADF.  In a threaded program the second close can hit a number another
 * thread has been given meanwhile, e.g. a stem being written. */
static int g_close_ebadf;
int close(int fd)
{
    long r = syscall(SYS_close, fd);
    if (r != 0 && errno == EBADF)
        g_close_ebadf++;
    return (int)r;
}
#endif

/* ---- helpers ----------------------------------------------------------------------- */

/* A fresh empty directory g_root/name; returns its path in a static buffer. */
static const char *subdir(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", g_root, name);
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        fprintf(stderr, "mkdir %s: %s\n", buf, strerror(errno));
    return buf;
}

/* Number of entries in dir other than "." and ".."; first name into first. */
static int count_entries(const char *dir, char *first, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    if (first && cap)
        first[0] = '\0';
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == 0 && first)
            snprintf(first, cap, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                    continue;
                char child[1024];
                snprintf(child, sizeof child, "%s/%s", path, e->d_name);
                remove_tree(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Deterministic test signal in [-0.9, 0.9]: two sines per channel + noise. */
static float *make_signal(int64_t frames, int channels, uint32_t seed)
{
    float *x = malloc((size_t)frames * (size_t)channels * sizeof *x);
    if (!x)
        return NULL;
    uint32_t s = seed * 2654435761u + 1u;
    for (int64_t i = 0; i < frames; i++) {
        for (int c = 0; c < channels; c++) {
            s = s * 1664525u + 1013904223u;
            double noise = ((double)(s >> 8) / (double)(1u << 24)) * 2.0 - 1.0;
            double t = (double)i / 44100.0;
            double v = 0.45 * sin(2 * M_PI * (220.0 + 110.0 * c) * t) +
                       0.3 * sin(2 * M_PI * 3520.0 * t + c) + 0.15 * noise;
            x[i * channels + c] = (float)v;
        }
    }
    return x;
}

/* Write frames of x to path in one go and commit. */
static ss_status write_file(const char *path, ss_file_format ff, ss_sample_format sf, int rate,
                            int channels, const float *x, int64_t frames, ss_error *err)
{
    ss_audio_writer *w = NULL;
    ss_status st = ss_audio_create(path, ff, sf, rate, channels, &w, err);
    if (st != SS_OK)
        return st;
    st = ss_audio_write(w, x, frames, err);
    if (st != SS_OK) {
        ss_audio_abort(w);
        return st;
    }
    return ss_audio_commit(w, err);
}

/* A test file in its own subdirectory: `frames` of make_signal(seed) with
 * `ch` channels, written as ff/sf at 44.1 kHz; its path into path. */
static ss_status make_test_file(const char *name, const char *leaf, ss_file_format ff, ss_sample_format sf, int ch,
                                int64_t frames, uint32_t seed, char *path, size_t cap, ss_error *err)
{
    snprintf(path, cap, "%s/%s.%s", subdir(name), leaf, ss_file_format_ext(ff));
    float *x = make_signal(frames, ch, seed);
    if (!x)
        return ss_fail(err, SS_E_NOMEM, "test: out of memory");
    ss_status st = write_file(path, ff, sf, 44100, ch, x, frames, err);
    free(x);
    return st;
}

/* Read all of r (in blocks of `block` frames) into a new buffer. */
static ss_status read_all(ss_audio_reader *r, int channels, int64_t cap, int64_t block,
                          float **out, int64_t *frames, ss_error *err)
{
    float *buf = malloc((size_t)(cap + block) * (size_t)channels * sizeof *buf);
    *out = buf;
    *frames = 0;
    if (!buf)
        return ss_fail(err, SS_E_NOMEM, "test: out of memory");
    for (;;) {
        int64_t got = 0;
        ss_status st = ss_audio_read(r, buf + *frames * channels, block, &got, err);
        *frames += got;
        if (st != SS_OK)
            return st;
        if (got == 0 || *frames > cap)
            return SS_OK;
    }
}

/* ---- round trips ---------------------------------------------------------------------- */

/* Write a known stereo signal, read it back, return max abs error (or -1). */
static void roundtrip(ss_file_format ff, ss_sample_format sfm, const char *name, double tol,
                      const char *want_format)
{
    const char *dir = subdir(name);
    char path[600];
    snprintf(path, sizeof path, "%s/out.%s", dir, ss_file_format_ext(ff));
    const int64_t n = 30000;
    float *x = make_signal(n, 2, 7);
    CHECK(x != NULL, "out of memory");
    ss_error err = {0};
    ss_status st = write_file(path, ff, sfm, 44100, 2, x, n, &err);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "write: %s", err.msg);

    ss_audio_reader *r = NULL;
    ss_audio_info info;
    st = ss_audio_open(path, &r, &info, &err);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "open: %s", err.msg);
    float *y = NULL;
    int64_t got = 0;
    st = read_all(r, 2, n, 1000, &y, &got, &err);
    ss_audio_close(r);
    double maxerr = 0;
    if (st == SS_OK && got == n)
        for (int64_t i = 0; i < n * 2; i++)
            maxerr = fmax(maxerr, fabs((double)x[i] - (double)y[i]));
    free(x);
    free(y);
    CHECK(st == SS_OK, "read: %s", err.msg);
    CHECK(info.frames == n && info.channels == 2 && info.samplerate == 44100,
          "info %lld frames %d ch %d Hz", (long long)info.frames, info.channels, info.samplerate);
    CHECK(strcmp(info.format, want_format) == 0, "format \"%s\", want \"%s\"", info.format, want_format);
    CHECK(got == n, "read %lld of %lld frames", (long long)got, (long long)n);
    CHECK(maxerr <= tol, "max error %.3g > %.3g", maxerr, tol);
}

/* One quantisation step of a b-bit format is 2^-(b-1).  libsndfile scales
 * by 2^(b-1)-1 when writing and by 2^-(b-1) when reading, so a sample x can
 * come back off by half a step plus |x| * 2^-(b-1) <= 0.9 step: allow one
 * step plus the scale mismatch, i.e. 1.5 steps at most. */
static void test_wav_s16_roundtrip_within_quantisation_step(void)
{
    roundtrip(SS_FILE_WAV, SS_SAMPLE_S16, "wav16", 1.5 / 32768.0, "WAV PCM 16");
}
static void test_wav_s24_roundtrip_within_quantisation_step(void)
{
    roundtrip(SS_FILE_WAV, SS_SAMPLE_S24, "wav24", 1.5 / 8388608.0, "WAV PCM 24");
}
static void test_wav_f32_roundtrip_is_exact(void)
{
    roundtrip(SS_FILE_WAV, SS_SAMPLE_F32, "wavf32", 0.0, "WAV FLOAT");
}
static void test_flac_s16_roundtrip_within_quantisation_step(void)
{
    roundtrip(SS_FILE_FLAC, SS_SAMPLE_S16, "flac16", 1.5 / 32768.0, "FLAC PCM 16");
}
static void test_flac_s24_roundtrip_within_quantisation_step(void)
{
    roundtrip(SS_FILE_FLAC, SS_SAMPLE_S24, "flac24", 1.5 / 8388608.0, "FLAC PCM 24");
}

/* Integer formats clip out-of-range samples instead of wrapping around. */
/* A 32-bit float WAV has the complete fmt chunk of a non-PCM format (18
 * bytes: WAVE_FORMAT_IEEE_FLOAT with cbSize = 0, as sox and ffmpeg write it;
 * libsndfile's own is 16 bytes, and sox warns "wave header missing extended
 * part of fmt chunk") and a fact chunk with the frame count; the file reads
 * back exactly (test_wav_f32_roundtrip_is_exact). */
static void test_wav_f32_has_complete_fmt_chunk(void)
{
    const char *dir = subdir("f32hdr");
    const int channels[] = {1, 2, 6};
    for (int c = 0; c < 3; c++) {
        char path[600];
        snprintf(path, sizeof path, "%s/f%d.wav", dir, channels[c]);
        const int64_t n = 1234;
        float *x = make_signal(n, channels[c], 5);
        CHECK(x, "out of memory");
        ss_error err = {0};
        ss_status st = write_file(path, SS_FILE_WAV, SS_SAMPLE_F32, 48000, channels[c], x, n, &err);
        free(x);
        CHECK(st == SS_OK, "%s", err.msg);
        unsigned char h[4096];
        FILE *f = fopen(path, "rb");
        CHECK(f, "%s: %s", path, strerror(errno));
        size_t len = fread(h, 1, sizeof h, f);
        fclose(f);
        CHECK(len > 12 + 8 + 18 && !memcmp(h, "RIFF", 4) && !memcmp(h + 8, "WAVE", 4), "not a RIFF WAVE file");
        int fmt_ok = 0, fact_ok = 0, data_ok = 0;
        for (size_t off = 12; off + 8 <= len;) {
            uint32_t size = h[off + 4] | (uint32_t)h[off + 5] << 8 | (uint32_t)h[off + 6] << 16 |
                            (uint32_t)h[off + 7] << 24;
            const unsigned char *d = h + off + 8;
            if (!memcmp(h + off, "fmt ", 4)) {
                CHECK(size == 18, "%d channels: fmt chunk of %u bytes, want 18", channels[c], size);
                CHECK((d[0] | d[1] << 8) == 3, "format tag %#x, want 3", d[0] | d[1] << 8);
                CHECK((d[14] | d[15] << 8) == 32, "%d bits", d[14] | d[15] << 8);
                CHECK((d[16] | d[17] << 8) == 0, "cbSize %d, want 0", d[16] | d[17] << 8);
                fmt_ok = 1;
            }
            if (!memcmp(h + off, "fact", 4) && size >= 4)
                fact_ok = (d[0] | d[1] << 8 | d[2] << 16 | (uint32_t)d[3] << 24) == (uint32_t)n;
            if (!memcmp(h + off, "data", 4)) {
                data_ok = size == (uint32_t)(n * channels[c] * 4);
                break;
            }
            off += 8 + size + (size & 1);
        }
        CHECK(fmt_ok, "%d channels: no fmt chunk before the data", channels[c]);
        CHECK(fact_ok, "%d channels: no fact chunk with %lld frames before the data", channels[c], (long long)n);
        CHECK(data_ok, "%d channels: no data chunk of the right size", channels[c]);
    }
}

static void test_s16_clips_out_of_range_samples(void)
{
    const char *dir = subdir("clip");
    char path[600];
    snprintf(path, sizeof path, "%s/clip.wav", dir);
    float x[4] = {1.5f, -1.5f, 1.0f, -1.0f};
    ss_error err = {0};
    CHECK(write_file(path, SS_FILE_WAV, SS_SAMPLE_S16, 8000, 1, x, 4, &err) == SS_OK, "%s", err.msg);
    ss_audio_reader *r = NULL;
    CHECK(ss_audio_open(path, &r, NULL, &err) == SS_OK, "%s", err.msg);
    float y[8] = {0};
    int64_t got = 0;
    ss_status st = ss_audio_read(r, y, 8, &got, &err);
    ss_audio_close(r);
    CHECK(st == SS_OK && got == 4, "read %lld: %s", (long long)got, err.msg);
    CHECK(y[0] > 0.999f && y[1] < -0.999f && y[2] > 0.999f && y[3] < -0.999f,
          "got %g %g %g %g", y[0], y[1], y[2], y[3]);
}

/* ---- writing at frame offsets --------------------------------------------------------- */

/* The whole of a file, its size into *size; NULL when it cannot be read. */
static unsigned char *slurp(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0 && (*size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)*size + 1)) && fread(b, 1, (size_t)*size, f) != (size_t)*size) {
        free(b);
        b = NULL;
    }
    if (f)
        fclose(f);
    return b;
}

typedef struct at_job {
    ss_audio_writer *w;
    const float *x;
    int channels;
    int64_t length, at, n;
    ss_status st;
    ss_error err;
} at_job;

static void *at_job_run(void *arg)
{
    at_job *j = arg;
    j->st = ss_audio_write_at(j->w, j->length, j->at, j->x + j->at * j->channels, j->n, &j->err);
    return NULL;
}

/* One file written in order, the same frames written as ranges at their offsets
 * (out of order, two of them on threads at once): byte-identical files.  The
 * signal goes beyond full scale so that clipping is compared too; an odd length
 * (s24 mono: odd data size, a pad byte). */
static void write_at_case(ss_sample_format sfm, int ch, const char *name)
{
    const char *dir = subdir(name);
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/in-order.wav", dir);
    snprintf(pb, sizeof pb, "%s/at-offsets.wav", dir);
    const int64_t len = 100003;
    float *x = make_signal(len, ch, 7);
    CHECK(x, "out of memory");
    for (int64_t i = 0; i < len * ch; i++)
        x[i] *= 1.6f;
    ss_error err = {0};
    ss_audio_writer *w = NULL;
    ss_status st = ss_audio_create(pa, SS_FILE_WAV, sfm, 44100, ch, &w, &err);
    for (int64_t at = 0; st == SS_OK && at < len; at += 7777)
        st = ss_audio_write(w, x + at * ch, len - at < 7777 ? len - at : 7777, &err);
    st = st == SS_OK ? ss_audio_commit(w, &err) : (ss_audio_abort(w), st);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "in order: %s", err.msg);

    st = ss_audio_create(pb, SS_FILE_WAV, sfm, 44100, ch, &w, &err);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "%s", err.msg);
    int can = ss_audio_can_write_at(w);
    /* [60000, len) with the last frame first, [0, 1), then [1, 30001) and
     * [30001, 60000) on two threads at once */
    at_job jobs[4] = {{w, x, ch, len, 60000, len - 60000, SS_OK, {0}}, {w, x, ch, len, 0, 1, SS_OK, {0}},
                      {w, x, ch, len, 1, 30000, SS_OK, {0}}, {w, x, ch, len, 30001, 29999, SS_OK, {0}}};
    pthread_t tid;
    int started = 0;
    if (can) {
        at_job_run(&jobs[0]);
        at_job_run(&jobs[1]);
        started = pthread_create(&tid, NULL, at_job_run, &jobs[2]) == 0;
        if (!started)
            at_job_run(&jobs[2]);
        at_job_run(&jobs[3]);
        if (started)
            pthread_join(tid, NULL);
    }
    free(x);
    for (int k = 0; k < 4; k++)
        if (jobs[k].st != SS_OK) {
            ss_audio_abort(w);
            CHECK(0, "range %d: %s", k, jobs[k].err.msg);
        }
    if (!can)
        ss_audio_abort(w);
    CHECK(can, "a fresh WAV writer cannot write at offsets");
    CHECK(ss_audio_commit(w, &err) == SS_OK, "%s", err.msg);

    long na = 0, nb = 0;
    unsigned char *a = slurp(pa, &na), *b = slurp(pb, &nb);
    int same = a && b && na == nb && memcmp(a, b, (size_t)na) == 0;
    long first = -1;
    for (long i = 0; a && b && !same && i < (na < nb ? na : nb) && first < 0; i++)
        first = a[i] != b[i] ? i : -1;
    free(a);
    free(b);
    CHECK(same, "files differ: %ld vs %ld bytes, first difference at byte %ld", na, nb, first);
}

static void test_write_at_s16_stereo_same_bytes_as_in_order(void) { write_at_case(SS_SAMPLE_S16, 2, "at-s16-2"); }
static void test_write_at_s16_mono_same_bytes_as_in_order(void) { write_at_case(SS_SAMPLE_S16, 1, "at-s16-1"); }
static void test_write_at_s24_stereo_same_bytes_as_in_order(void) { write_at_case(SS_SAMPLE_S24, 2, "at-s24-2"); }
static void test_write_at_s24_mono_same_bytes_as_in_order(void) { write_at_case(SS_SAMPLE_S24, 1, "at-s24-1"); }

/* Offsets are refused where the bytes would not be what the in-order writer
 * makes: FLAC, float WAV (its PEAK chunk), a writer already written in order,
 * a range past the end. */
static void test_write_at_refused_where_it_cannot_hold(void)
{
    const char *dir = subdir("at-refused");
    char path[600];
    struct { ss_file_format ff; ss_sample_format sf; int write_first; } cases[3] = {
        {SS_FILE_FLAC, SS_SAMPLE_S16, 0}, {SS_FILE_WAV, SS_SAMPLE_F32, 0}, {SS_FILE_WAV, SS_SAMPLE_S16, 1}};
    float x[8] = {0.25f, -0.25f, 0.5f, -0.5f, 0.1f, 0.2f, 0.3f, 0.4f};
    ss_error err = {0};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/r%d.%s", dir, k, ss_file_format_ext(cases[k].ff));
        ss_audio_writer *w = NULL;
        CHECK(ss_audio_create(path, cases[k].ff, cases[k].sf, 44100, 2, &w, &err) == SS_OK, "%s", err.msg);
        ss_status st = cases[k].write_first ? ss_audio_write(w, x, 1, &err) : SS_OK;
        int can = ss_audio_can_write_at(w);
        ss_error e2 = {0};
        ss_status at = ss_audio_write_at(w, 4, 0, x, 4, &e2);
        ss_audio_abort(w);
        CHECK(st == SS_OK, "%s", err.msg);
        CHECK(!can && at == SS_E_INTERNAL && strstr(e2.msg, path), "case %d: can %d, write_at status %d '%s'", k,
              can, (int)at, e2.msg);
    }
    snprintf(path, sizeof path, "%s/past.wav", dir);
    ss_audio_writer *w = NULL;
    CHECK(ss_audio_create(path, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, &w, &err) == SS_OK, "%s", err.msg);
    ss_status st = ss_audio_write_at(w, 4, 2, x, 3, &err);
    ss_audio_abort(w);
    CHECK(st == SS_E_INTERNAL, "frames [2, 5) of 4: status %d", (int)st);
}

/* ---- writer atomicity ---------------------------------------------------------------- */

static void test_writer_final_path_appears_only_on_commit(void)
{
    const char *dir = subdir("atomic");
    char path[600], name[256];
    snprintf(path, sizeof path, "%s/song.wav", dir);
    mode_t old_mask = umask(022);
    ss_audio_writer *w = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_create(path, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, &w, &err);
    umask(old_mask);
    CHECK(st == SS_OK, "%s", err.msg);
    float x[200] = {0};
    st = ss_audio_write(w, x, 100, &err);
    int n = count_entries(dir, name, sizeof name);
    int final_exists = access(path, F_OK) == 0;
    if (st != SS_OK || n != 1 || final_exists || strncmp(name, ".song.wav.tmp-", 14) != 0) {
        ss_audio_abort(w);
        CHECK(st == SS_OK, "%s", err.msg);
        CHECK(!final_exists, "%s exists before commit", path);
        CHECK(n == 1, "%d entries before commit", n);
        CHECK(0, "temporary file is \"%s\", want .song.wav.tmp-XXXXXX", name);
    }
    CHECK(ss_audio_commit(w, &err) == SS_OK, "%s", err.msg);
    n = count_entries(dir, name, sizeof name);
    CHECK(n == 1 && strcmp(name, "song.wav") == 0, "%d entries after commit, first \"%s\"", n, name);
    struct stat sb;
    CHECK(stat(path, &sb) == 0, "stat: %s", strerror(errno));
    CHECK((sb.st_mode & 0777) == 0644, "mode %o with umask 022, want 644", (unsigned)(sb.st_mode & 0777));
}

static void test_commit_replaces_existing_file_only_at_commit(void)
{
    const char *dir = subdir("replace");
    char path[600];
    snprintf(path, sizeof path, "%s/old.wav", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "fopen: %s", strerror(errno));
    fputs("old", f);
    fclose(f);
    ss_audio_writer *w = NULL;
    ss_error err = {0};
    CHECK(ss_audio_create(path, SS_FILE_WAV, SS_SAMPLE_S16, 8000, 1, &w, &err) == SS_OK, "%s", err.msg);
    struct stat sb;
    int before = stat(path, &sb) == 0 ? (int)sb.st_size : -1;
    float x[10] = {0};
    ss_status st = ss_audio_write(w, x, 10, &err);
    if (st != SS_OK)
        ss_audio_abort(w);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(ss_audio_commit(w, &err) == SS_OK, "%s", err.msg);
    CHECK(before == 3, "old file had %d bytes while writing, want 3", before);
    CHECK(ss_audio_probe(path) == 1, "committed file is not audio");
}

static void test_writer_abort_leaves_directory_empty(void)
{
    const char *dir = subdir("abort");
    char path[600];
    snprintf(path, sizeof path, "%s/gone.flac", dir);
    ss_audio_writer *w = NULL;
    ss_error err = {0};
    CHECK(ss_audio_create(path, SS_FILE_FLAC, SS_SAMPLE_S24, 48000, 2, &w, &err) == SS_OK, "%s", err.msg);
    float *x = make_signal(5000, 2, 3);
    ss_status st = x ? ss_audio_write(w, x, 5000, &err) : SS_E_NOMEM;
    free(x);
    ss_audio_abort(w);
    ss_audio_abort(NULL);
    CHECK(st == SS_OK, "%s", err.msg);
    int n = count_entries(dir, NULL, 0);
    CHECK(n == 0, "%d entries left after abort", n);
}

static void test_create_in_missing_directory_is_cantcreat(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/no/such/dir/out.wav", g_root);
    ss_audio_writer *w = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_create(path, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, &w, &err);
    if (w)
        ss_audio_abort(w);
    CHECK(st == SS_E_CANTCREAT, "status %d (%s)", (int)st, err.msg);
    CHECK(w == NULL, "writer returned on failure");
    CHECK(strstr(err.msg, path) != NULL, "message \"%s\" does not name the path", err.msg);
    CHECK(strstr(err.msg, "No such file or directory") != NULL, "message \"%s\" lacks the reason", err.msg);
}

static void test_create_over_directory_is_cantcreat(void)
{
    const char *dir = subdir("isdir");
    ss_audio_writer *w = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_create(dir, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, &w, &err);
    if (w)
        ss_audio_abort(w);
    CHECK(st == SS_E_CANTCREAT, "status %d (%s)", (int)st, err.msg);
    CHECK(strstr(err.msg, dir) != NULL, "message \"%s\" does not name the path", err.msg);
}

static void test_flac_with_f32_is_usage_error(void)
{
    const char *dir = subdir("flacf32");
    char path[600];
    snprintf(path, sizeof path, "%s/x.flac", dir);
    ss_audio_writer *w = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_create(path, SS_FILE_FLAC, SS_SAMPLE_F32, 44100, 2, &w, &err);
    if (w)
        ss_audio_abort(w);
    CHECK(st == SS_E_USAGE, "status %d (%s)", (int)st, err.msg);
    CHECK(strstr(err.msg, "FLAC cannot store 32-bit float") != NULL, "message \"%s\"", err.msg);
    CHECK(count_entries(dir, NULL, 0) == 0, "file left behind");
}

/* With RLIMIT_FSIZE low (and SIGXFSZ ignored, as the CLI does), a write
 * that crosses the limit fails with SS_E_IO naming the file. */
static void test_write_past_file_size_limit_is_io_error(void)
{
    const char *dir = subdir("fsize");
    char path[600];
    snprintf(path, sizeof path, "%s/big.wav", dir);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        getrlimit(RLIMIT_FSIZE, &rl);
        rl.rlim_cur = 65536;
        setrlimit(RLIMIT_FSIZE, &rl);
        float *x = make_signal(44100, 2, 1);
        ss_audio_writer *w = NULL;
        ss_error err = {0};
        int rc = 0;
        if (!x || ss_audio_create(path, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, &w, &err) != SS_OK) {
            fprintf(stderr, "create: %s\n", err.msg);
            rc = 10;
        } else {
            ss_status st = ss_audio_write(w, x, 44100, &err);
            if (st != SS_E_IO) {
                fprintf(stderr, "write status %d: %s\n", (int)st, err.msg);
                rc = 11;
            } else if (!strstr(err.msg, path) || !strstr(err.msg, "write failed")) {
                fprintf(stderr, "message: %s\n", err.msg);
                rc = 12;
            }
            ss_audio_abort(w);
        }
        free(x);
        exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    CHECK(count_entries(dir, NULL, 0) == 0, "temporary file left after abort");
}

/* ---- reading -------------------------------------------------------------------------- */

static void test_mono_file_reads_as_one_channel(void)
{
    const char *dir = subdir("mono");
    char path[600];
    snprintf(path, sizeof path, "%s/mono.wav", dir);
    float *x = make_signal(1000, 1, 5);
    CHECK(x != NULL, "out of memory");
    ss_error err = {0};
    ss_status st = write_file(path, SS_FILE_WAV, SS_SAMPLE_F32, 22050, 1, x, 1000, &err);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "%s", err.msg);
    ss_audio_reader *r = NULL;
    ss_audio_info info;
    st = ss_audio_open(path, &r, &info, &err);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "%s", err.msg);
    float *y = NULL;
    int64_t got = 0;
    st = read_all(r, 1, 1000, 333, &y, &got, &err);
    ss_audio_close(r);
    int same = st == SS_OK && got == 1000 && memcmp(x, y, 1000 * sizeof *x) == 0;
    free(x);
    free(y);
    CHECK(info.channels == 1 && info.samplerate == 22050 && info.frames == 1000,
          "info %d ch %d Hz %lld frames", info.channels, info.samplerate, (long long)info.frames);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(same, "samples differ (read %lld)", (long long)got);
}

static void test_text_file_named_wav_is_data_error(void)
{
    const char *dir = subdir("text");
    char path[600];
    snprintf(path, sizeof path, "%s/notes.wav", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "fopen: %s", strerror(errno));
    fputs("this is not audio, just some text that happens to be called .wav\n", f);
    fclose(f);
    ss_audio_reader *r = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_open(path, &r, NULL, &err);
    if (r)
        ss_audio_close(r);
    CHECK(st == SS_E_DATA, "status %d (%s)", (int)st, err.msg);
    CHECK(r == NULL, "reader returned on failure");
    CHECK(strstr(err.msg, path) != NULL, "message \"%s\" does not name the path", err.msg);
    CHECK(strstr(err.msg, "not an audio file") != NULL, "message \"%s\"", err.msg);
    CHECK(ss_audio_probe(path) == 0, "probe accepted a text file");
}

/* Opening a file libsndfile refuses, and a good one, and writing one: no
 * descriptor is closed twice (libsndfile >= 1.0.31 closes a descriptor handed
 * to a failing sf_open_fd whatever close_desc says). */
static void test_each_descriptor_closed_once(void)
{
#if defined(__linux__)
    const char *dir = subdir("close_once");
    char bad[600], good[600];
    snprintf(bad, sizeof bad, "%s/text.wav", dir);
    snprintf(good, sizeof good, "%s/good.wav", dir);
    FILE *f = fopen(bad, "w");
    CHECK(f != NULL, "fopen: %s", strerror(errno));
    fputs("not audio\n", f);
    fclose(f);
    float x[2 * 441] = {0};
    ss_error err = {0};
    CHECK(write_file(good, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, x, 441, &err) == SS_OK, "%s", err.msg);
    int before = g_close_ebadf;
    ss_audio_reader *r = NULL;
    CHECK(ss_audio_open(bad, &r, NULL, &err) == SS_E_DATA, "text file opened: %s", err.msg);
    CHECK(g_close_ebadf == before, "refused open: a descriptor was closed twice");
    CHECK(ss_audio_open(good, &r, NULL, &err) == SS_OK, "%s", err.msg);
    ss_audio_close(r);
    ss_audio_writer *w = NULL;
    snprintf(good, sizeof good, "%s/out.wav", dir);
    CHECK(ss_audio_create(good, SS_FILE_WAV, SS_SAMPLE_S16, 44100, 2, &w, &err) == SS_OK, "%s", err.msg);
    ss_audio_abort(w);
    CHECK(g_close_ebadf == before, "open/close, create/abort: a descriptor was closed twice");
#else
    SKIP("close(2) interposition is set up for Linux only");
#endif
}

/* ss_audio_open_fd: reads a file from its start whatever the descriptor's
 * position, owns the descriptor (closed with the reader, and on failure,
 * once), and names `name` in its messages. */
static void test_open_fd_reads_from_start_and_owns_descriptor(void)
{
#if defined(__linux__)
    const char *dir = subdir("open_fd");
    char good[600], bad[600];
    snprintf(good, sizeof good, "%s/good.wav", dir);
    snprintf(bad, sizeof bad, "%s/text.wav", dir);
    float x[2 * 300];
    for (int i = 0; i < 2 * 300; i++)
        x[i] = (float)(i % 37) / 64.0f - 0.25f;
    ss_error err = {0};
    CHECK(write_file(good, SS_FILE_WAV, SS_SAMPLE_F32, 16000, 2, x, 300, &err) == SS_OK, "%s", err.msg);
    int fd = open(good, O_RDONLY);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    CHECK(lseek(fd, 0, SEEK_END) > 0, "lseek");              /* at its end: must still read from the start */
    int before = g_close_ebadf;
    ss_audio_reader *r = NULL;
    ss_audio_info ai;
    CHECK(ss_audio_open_fd(fd, "the stem", &r, &ai, &err) == SS_OK, "%s", err.msg);
    CHECK(ai.frames == 300 && ai.channels == 2 && ai.samplerate == 16000, "%lld frames, %d ch, %d Hz",
          (long long)ai.frames, ai.channels, ai.samplerate);
    float y[2 * 300];
    int64_t got = 0;
    CHECK(ss_audio_read(r, y, 300, &got, &err) == SS_OK && got == 300, "read %lld: %s", (long long)got, err.msg);
    ss_audio_close(r);
    CHECK(memcmp(x, y, sizeof x) == 0, "samples differ");
    CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "the descriptor is still open after ss_audio_close");
    FILE *f = fopen(bad, "w");
    CHECK(f != NULL, "fopen: %s", strerror(errno));
    fputs("not audio\n", f);
    fclose(f);
    fd = open(bad, O_RDONLY);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    r = NULL;
    CHECK(ss_audio_open_fd(fd, "the stem", &r, NULL, &err) == SS_E_DATA && r == NULL, "text opened: %s", err.msg);
    CHECK(strstr(err.msg, "the stem") != NULL, "message \"%s\" does not name it", err.msg);
    CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF, "the descriptor is still open after a failed open");
    CHECK(g_close_ebadf == before, "a descriptor was closed twice");
#else
    SKIP("close(2) interposition is set up for Linux only");
#endif
}

static void test_missing_file_is_noinput(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/does-not-exist.wav", g_root);
    ss_audio_reader *r = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_open(path, &r, NULL, &err);
    if (r)
        ss_audio_close(r);
    CHECK(st == SS_E_NOINPUT, "status %d (%s)", (int)st, err.msg);
    char want[700];
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    CHECK(strcmp(err.msg, want) == 0, "message \"%s\"", err.msg);
    CHECK(ss_audio_probe(path) == 0, "probe accepted a missing file");
}

static void test_directory_as_input_is_noinput(void)
{
    const char *dir = subdir("dirinput");
    ss_audio_reader *r = NULL;
    ss_error err = {0};
    ss_status st = ss_audio_open(dir, &r, NULL, &err);
    if (r)
        ss_audio_close(r);
    CHECK(st == SS_E_NOINPUT, "status %d (%s)", (int)st, err.msg);
    CHECK(strstr(err.msg, dir) != NULL, "message \"%s\"", err.msg);
}

static void test_rewind_then_reread_gives_identical_samples(void)
{
    const char *dir = subdir("rewind");
    char path[600];
    snprintf(path, sizeof path, "%s/r.flac", dir);
    const int64_t n = 20000;
    float *x = make_signal(n, 2, 11);
    CHECK(x != NULL, "out of memory");
    ss_error err = {0};
    ss_status st = write_file(path, SS_FILE_FLAC, SS_SAMPLE_S16, 44100, 2, x, n, &err);
    free(x);
    CHECK(st == SS_OK, "%s", err.msg);
    ss_audio_reader *r = NULL;
    CHECK(ss_audio_open(path, &r, NULL, &err) == SS_OK, "%s", err.msg);
    float *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    st = read_all(r, 2, n, 4096, &a, &na, &err);
    if (st == SS_OK)
        st = ss_audio_rewind(r, &err);
    if (st == SS_OK)
        st = read_all(r, 2, n, 1000, &b, &nb, &err);
    ss_audio_close(r);
    int same = st == SS_OK && na == n && nb == n && memcmp(a, b, (size_t)n * 2 * sizeof *a) == 0;
    free(a);
    free(b);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(same, "second pass differs (%lld vs %lld frames)", (long long)na, (long long)nb);
}

/* A WAV or FLAC file that shrinks on disk after it was opened: reading
 * must fail with SS_E_IO naming the file, not end quietly. */
static void truncated_after_open(ss_file_format ff, const char *name)
{
    char path[600];
    const int64_t n = 44100;
    ss_error err = {0};
    ss_status st = make_test_file(name, "t", ff, SS_SAMPLE_S16, 2, n, 13, path, sizeof path, &err);
    CHECK(st == SS_OK, "%s", err.msg);
    ss_audio_reader *r = NULL;
    CHECK(ss_audio_open(path, &r, NULL, &err) == SS_OK, "%s", err.msg);
    struct stat sb;
    int tr = stat(path, &sb) == 0 ? truncate(path, sb.st_size / 2) : -1;
    if (tr != 0)
        ss_audio_close(r);
    CHECK(tr == 0, "truncate: %s", strerror(errno));
    float *y = NULL;
    int64_t got = 0;
    st = read_all(r, 2, n, 4096, &y, &got, &err);
    ss_audio_close(r);
    free(y);
    CHECK(st == SS_E_IO, "status %d after %lld frames (%s)", (int)st, (long long)got, err.msg);
    CHECK(got < n, "read %lld frames", (long long)got);
    CHECK(strstr(err.msg, path) != NULL, "message \"%s\" does not name the file", err.msg);
}
static void test_wav_truncated_after_open_is_io_error(void)
{
    truncated_after_open(SS_FILE_WAV, "truncwav");
}
static void test_flac_truncated_after_open_is_io_error(void)
{
    truncated_after_open(SS_FILE_FLAC, "truncflac");
}

/* Child side of the stdin tests: open "-", check nothing is left in the
 * spool directory, read everything and compare with the signal. */
static int child_read_stdin(const char *spool_dir, const float *x, int64_t n)
{
    setenv("TMPDIR", spool_dir, 1);
    ss_audio_reader *r = NULL;
    ss_audio_info info;
    ss_error err = {0};
    if (ss_audio_open("-", &r, &info, &err) != SS_OK) {
        fprintf(stderr, "open -: %s\n", err.msg);
        return 20;
    }
    int rc = 0;
    int left = count_entries(spool_dir, NULL, 0);
    float *y = NULL;
    int64_t got = 0;
    ss_status st = read_all(r, 2, n, 777, &y, &got, &err);
    if (left != 0) {
        fprintf(stderr, "%d files visible in TMPDIR while reading stdin\n", left);
        rc = 21;
    } else if (info.frames != n || info.channels != 2) {
        fprintf(stderr, "info %lld frames %d channels\n", (long long)info.frames, info.channels);
        rc = 22;
    } else if (st != SS_OK || got != n) {
        fprintf(stderr, "read %lld frames: %s\n", (long long)got, err.msg);
        rc = 23;
    } else if (memcmp(x, y, (size_t)n * 2 * sizeof *x) != 0) {
        fprintf(stderr, "samples differ\n");
        rc = 24;
    } else if (ss_audio_rewind(r, &err) != SS_OK) {
        fprintf(stderr, "rewind: %s\n", err.msg);
        rc = 25;
    }
    free(y);
    ss_audio_close(r);
    return rc;
}

/* Make a WAV of the signal; returns 0 or the failing status. */
static int make_stdin_source(const char *dir, char *path, size_t cap, float **x, int64_t n)
{
    snprintf(path, cap, "%s/in.wav", dir);
    *x = make_signal(n, 2, 17);
    if (!*x)
        return SS_E_NOMEM;
    ss_error err = {0};
    return (int)write_file(path, SS_FILE_WAV, SS_SAMPLE_F32, 44100, 2, *x, n, &err);
}

static void test_stdin_pipe_is_spooled_and_read(void)
{
    const char *dir = subdir("stdinpipe");
    char spool[600], path[600];
    snprintf(spool, sizeof spool, "%s/spool", dir);
    CHECK(mkdir(spool, 0777) == 0, "mkdir: %s", strerror(errno));
    const int64_t n = 50000;   /* 400 KB: more than a pipe buffer */
    float *x = NULL;
    int st = make_stdin_source(dir, path, sizeof path, &x, n);
    if (st != 0)
        free(x);
    CHECK(st == 0, "cannot make source file (%d)", st);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        free(x);
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int p[2];
        if (pipe(p) != 0)
            _exit(30);
        pid_t feeder = fork();
        if (feeder == 0) {
            /* Feed the file through the pipe, then exit without cleanup. */
            close(p[0]);
            int fd = open(path, O_RDONLY);
            char buf[8192];
            ssize_t k;
            while (fd >= 0 && (k = read(fd, buf, sizeof buf)) > 0)
                if (write(p[1], buf, (size_t)k) != k)
                    _exit(1);
            _exit(0);
        }
        close(p[1]);
        dup2(p[0], STDIN_FILENO);
        close(p[0]);
        int rc = feeder < 0 ? 31 : child_read_stdin(spool, x, n);
        int fst = 0;
        if (feeder > 0)
            waitpid(feeder, &fst, 0);
        free(x);
        exit(rc);
    }
    free(x);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    CHECK(count_entries(spool, NULL, 0) == 0, "spool file left behind");
}

static void test_stdin_regular_file_is_read_directly(void)
{
    const char *dir = subdir("stdinfile");
    char spool[600], path[600];
    snprintf(spool, sizeof spool, "%s/spool", dir);
    CHECK(mkdir(spool, 0777) == 0, "mkdir: %s", strerror(errno));
    const int64_t n = 3000;
    float *x = NULL;
    int st = make_stdin_source(dir, path, sizeof path, &x, n);
    if (st != 0)
        free(x);
    CHECK(st == 0, "cannot make source file (%d)", st);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        free(x);
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(path, O_RDONLY);
        if (fd < 0 || dup2(fd, STDIN_FILENO) < 0)
            _exit(40);
        close(fd);
        int rc = child_read_stdin(spool, x, n);
        free(x);
        exit(rc);
    }
    free(x);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

static void test_stdin_garbage_or_empty_is_data_error(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int p[2];
        if (pipe(p) != 0)
            _exit(50);
        if (write(p[1], "garbage, not audio\n", 19) != 19)
            _exit(51);
        close(p[1]);
        dup2(p[0], STDIN_FILENO);
        close(p[0]);
        setenv("TMPDIR", g_root, 1);
        ss_audio_reader *r = NULL;
        ss_error err = {0};
        ss_status st = ss_audio_open("-", &r, NULL, &err);
        ss_audio_close(r);
        if (st != SS_E_DATA || !strstr(err.msg, "standard input")) {
            fprintf(stderr, "status %d: %s\n", (int)st, err.msg);
            exit(52);
        }
        /* and an empty stdin */
        if (pipe(p) != 0)
            _exit(53);
        close(p[1]);
        dup2(p[0], STDIN_FILENO);
        close(p[0]);
        ss_error_clear(&err);
        r = NULL;
        st = ss_audio_open("-", &r, NULL, &err);
        ss_audio_close(r);
        if (st != SS_E_DATA || !strstr(err.msg, "standard input: empty")) {
            fprintf(stderr, "empty: status %d: %s\n", (int)st, err.msg);
            exit(54);
        }
        exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/* ---- MPEG: the length is an estimate, the stream is read to its end ------------------ */

/* tests/fixtures/audio/NAME */
static void fixture(const char *name, char *out, size_t cap)
{
    const char *dir = getenv("SS_TESTS_DIR");
    snprintf(out, cap, "%s/fixtures/audio/%s", dir && *dir ? dir : "tests", name);
}

/* Open, count with ss_mix_stats(-1), then read it all again after the rewind:
 * the same frames both times, 89856 of them (what mpg123 and ffmpeg decode). */
static void mpeg_case(const char *name)
{
    char path[600];
    fixture(name, path, sizeof path);
    ss_audio_reader *r = NULL;
    ss_audio_info ai;
    ss_error err = {0};
    ss_status st = ss_audio_open(path, &r, &ai, &err);
    CHECK(st == SS_OK, "%s", err.msg);
    int est = ai.estimated;
    double mean = 0, sd = 0;
    int64_t count = -1, got = 0, total = 0;
    st = ss_mix_stats(r, path, ai.channels, 2, -1, 2, &mean, &sd, &count, &err);
    float *buf = malloc(sizeof(float) * 4096 * (size_t)ai.channels);
    for (; st == SS_OK && buf; total += got)
        if ((st = ss_audio_read(r, buf, 4096, &got, &err)) != SS_OK || got == 0)
            break;
    int had_buf = buf != NULL;
    free(buf);
    ss_audio_close(r);
    CHECK(est == 1, "MPEG length not marked as an estimate");
    CHECK(st == SS_OK && had_buf, "%s", err.msg);
    CHECK(count == 89856, "first pass counted %lld frames", (long long)count);
    CHECK(total == count, "second pass read %lld frames, first %lld", (long long)total, (long long)count);
    CHECK(ai.samplerate == 44100 && ai.channels == 2, "%d Hz %d channels", ai.samplerate, ai.channels);
}
static void test_mpeg_vbr_without_xing_counted_to_its_end(void) { mpeg_case("vbr-noxing.mp3"); }
static void test_mpeg_cbr_without_xing_counted_to_its_end(void) { mpeg_case("cbr-noxing.mp3"); }

/* ---- formats -------------------------------------------------------------------------- */

static void test_format_names_parse_and_print(void)
{
    CHECK(strcmp(ss_file_format_ext(SS_FILE_WAV), "wav") == 0, "wav ext");
    CHECK(strcmp(ss_file_format_ext(SS_FILE_FLAC), "flac") == 0, "flac ext");
    CHECK(ss_file_format_parse("wav") == SS_FILE_WAV, "parse wav");
    CHECK(ss_file_format_parse("FLAC") == SS_FILE_FLAC, "parse FLAC");
    CHECK(ss_file_format_parse("mp3") == SS_FILE_MP3 && ss_file_format_parse("Opus") == SS_FILE_OPUS &&
          ss_file_format_parse("ogg") == SS_FILE_OGG && ss_file_format_parse("vorbis") == SS_FILE_OGG, "parse lossy");
    CHECK(strcmp(ss_file_format_ext(SS_FILE_MP3), "mp3") == 0 && strcmp(ss_file_format_ext(SS_FILE_OPUS), "opus") == 0 &&
          strcmp(ss_file_format_ext(SS_FILE_OGG), "ogg") == 0, "lossy ext");
    CHECK(ss_file_format_parse("aac") == -1 && ss_file_format_parse(NULL) == -1, "parse bad");
    CHECK(ss_sample_format_parse("s16") == SS_SAMPLE_S16, "s16");
    CHECK(ss_sample_format_parse("s24") == SS_SAMPLE_S24, "s24");
    CHECK(ss_sample_format_parse("f32") == SS_SAMPLE_F32, "f32");
    CHECK(ss_sample_format_parse("s32") == -1 && ss_sample_format_parse("") == -1, "bad sample format");
}

/* ---- lossy formats ---------------------------------------------------------------------- */

/* Write 2 s + 123 frames of two sines (1 kHz left, 2 kHz right, 0.5) as ff
 * at `rate` (kbps 0: the default bitrate), read it back with ss_audio_open
 * and check: the same rate and channels, exactly the frames written (MP3:
 * LAME's header carries the encoder delay and padding, and libmpg123 decodes
 * gaplessly; Ogg Vorbis and Opus: the last page's granule position), and
 * each channel correlating with what was written (no delay either).  *kbit:
 * the file's size over its duration. */
static void lossy_round_trip(const char *dir, ss_file_format ff, int rate, int kbps, double *kbit)
{
    ss_error err = {0};
    const int64_t n = 2 * (int64_t)rate + 123;
    float *x = malloc(sizeof(float) * (size_t)n * 2);
    CHECK(x != NULL, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        x[2 * i] = (float)(0.5 * sin(2 * M_PI * 1000.0 * (double)i / rate));
        x[2 * i + 1] = (float)(0.5 * sin(2 * M_PI * 2000.0 * (double)i / rate));
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%d.%s", dir, kbps, ss_file_format_ext(ff));
    ss_audio_writer *w = NULL;
    ss_status st = ss_audio_create(path, ff, SS_SAMPLE_S16, rate, 2, &w, &err);
    if (st == SS_OK && kbps)
        st = ss_audio_set_bitrate(w, kbps, &err);
    if (st == SS_OK)
        st = ss_audio_write(w, x, n, &err);
    if (st == SS_OK)
        st = ss_audio_commit(w, &err);
    else
        ss_audio_abort(w);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "%s: %s", path, err.msg);
    struct stat sb;
    CHECK(stat(path, &sb) == 0, "%s missing", path);
    *kbit = (double)sb.st_size * 8.0 / 1000.0 / ((double)n / rate);
    ss_audio_reader *r = NULL;
    ss_audio_info ai;
    st = ss_audio_open(path, &r, &ai, &err);
    if (st != SS_OK)
        free(x);
    CHECK(st == SS_OK, "%s: %s", path, err.msg);
    float *y = NULL;
    int64_t got = 0;
    st = read_all(r, 2, n + 100000, 4096, &y, &got, &err);
    ss_audio_close(r);
    double sxy[2] = {0}, sxx[2] = {0}, syy[2] = {0};
    for (int64_t i = 0; st == SS_OK && i < (got < n ? got : n); i++)
        for (int c = 0; c < 2; c++) {
            sxy[c] += (double)x[2 * i + c] * y[2 * i + c];
            sxx[c] += (double)x[2 * i + c] * x[2 * i + c];
            syy[c] += (double)y[2 * i + c] * y[2 * i + c];
        }
    free(x);
    free(y);
    CHECK(st == SS_OK, "%s: %s", path, err.msg);
    CHECK(ai.samplerate == rate && ai.channels == 2, "%s: %d Hz, %d channels", path, ai.samplerate, ai.channels);
    CHECK(got == n, "%s: %lld frames written, %lld read back", path, (long long)n, (long long)got);
    for (int c = 0; c < 2; c++) {
        double corr = sxy[c] / sqrt(sxx[c] * syy[c] + 1e-30);
        CHECK(corr > 0.99, "%s: channel %d correlates %.4f with what was written", path, c, corr);
    }
}

static void test_mp3_decodes_back_exact_length_at_its_bitrate(void)
{
    const char *dir = subdir("lossy_mp3");
    double k320 = 0, k128 = 0;
    lossy_round_trip(dir, SS_FILE_MP3, 44100, 0, &k320);
    if (test_failed_now)
        return;
    lossy_round_trip(dir, SS_FILE_MP3, 44100, 128, &k128);
    if (test_failed_now)
        return;
    /* constant bitrate: the size is the bitrate, plus the ID3 tags and the
     * LAME header frame (about 1% of 2 s at 320 kbit/s) */
    CHECK(k320 > 318 && k320 < 335, "default (320 kbit/s CBR) gave %.1f kbit/s", k320);
    CHECK(k128 > 127 && k128 < 136, "--bitrate 128 gave %.1f kbit/s", k128);
}

static void test_ogg_vorbis_decodes_back_exact_length(void)
{
    double k = 0;
    lossy_round_trip(subdir("lossy_ogg"), SS_FILE_OGG, 44100, 0, &k);
    if (test_failed_now)
        return;
    lossy_round_trip(subdir("lossy_ogg"), SS_FILE_OGG, 22050, 96, &k);
}

static void test_opus_decodes_back_exact_length_at_its_bitrate(void)
{
    const char *dir = subdir("lossy_opus");
    double k160 = 0, k64 = 0;
    lossy_round_trip(dir, SS_FILE_OPUS, 48000, 0, &k160);
    if (test_failed_now)
        return;
    lossy_round_trip(dir, SS_FILE_OPUS, 48000, 64, &k64);
    if (test_failed_now)
        return;
    /* VBR around its target (Ogg pages add a little) */
    CHECK(k160 > 140 && k160 < 180, "default (160 kbit/s) gave %.1f kbit/s", k160);
    CHECK(k64 > 56 && k64 < 76, "--bitrate 64 gave %.1f kbit/s", k64);
}

static void test_opus_rates_and_bitrate_ranges(void)
{
    ss_error err = {0};
    CHECK(ss_file_format_rate(SS_FILE_OPUS, 44100) == 48000 && ss_file_format_rate(SS_FILE_OPUS, 24000) == 24000 &&
          ss_file_format_rate(SS_FILE_MP3, 44100) == 44100 && ss_file_format_rate(SS_FILE_WAV, 96000) == 96000,
          "output rates");
    char path[512];
    snprintf(path, sizeof path, "%s/x.opus", subdir("opus_rate"));
    ss_audio_writer *w = NULL;
    CHECK(ss_audio_create(path, SS_FILE_OPUS, SS_SAMPLE_S16, 44100, 2, &w, &err) == SS_E_USAGE && !w,
          "Opus at 44.1 kHz accepted");
    CHECK(strstr(err.msg, "48") != NULL, "message: %s", err.msg);
    CHECK(count_entries(subdir("opus_rate"), NULL, 0) == 0, "a file was left behind");
    ss_error_clear(&err);
    CHECK(ss_bitrate_check(SS_FILE_MP3, 320, 2, &err) == SS_OK && ss_bitrate_check(SS_FILE_MP3, 321, 2, &err) ==
          SS_E_USAGE && ss_bitrate_check(SS_FILE_MP3, 31, 2, &err) == SS_E_USAGE, "mp3 range");
    CHECK(ss_bitrate_check(SS_FILE_OPUS, 512, 2, &err) == SS_OK && ss_bitrate_check(SS_FILE_OPUS, 257, 1, &err) ==
          SS_E_USAGE, "opus range");
    ss_error_clear(&err);
    CHECK(ss_bitrate_check(SS_FILE_WAV, 320, 2, &err) == SS_E_USAGE && strstr(err.msg, "lossless"), "wav: %s",
          err.msg);
    CHECK(ss_file_format_bitrate(SS_FILE_MP3) == 320 && ss_file_format_bitrate(SS_FILE_OPUS) == 160 &&
          ss_file_format_bitrate(SS_FILE_FLAC) == 0, "defaults");
}

/* ---- resampling ----------------------------------------------------------------------- */

/* Resample x (n frames, ch channels) pushing `block` frames at a time with
 * output buffers of exactly ss_resampler_max_out(); *y gets the output. */
static ss_status resample_blocks(const float *x, int64_t n, int ch, int in_rate, int out_rate,
                                 int64_t block, float **y, int64_t *ny, ss_error *err)
{
    *y = NULL;
    *ny = 0;
    ss_resampler *rs = NULL;
    ss_status st = ss_resampler_new(ch, in_rate, out_rate, n, &rs, err);
    if (st != SS_OK)
        return st;
    int64_t want = ss_resampled_length(n, in_rate, out_rate);
    float *outbuf = malloc((size_t)(want + 1) * (size_t)ch * sizeof *outbuf);
    float *tmp = NULL;
    if (!outbuf) {
        ss_resampler_free(rs);
        return ss_fail(err, SS_E_NOMEM, "test: out of memory");
    }
    int64_t done = 0, pos = 0;
    do {
        int64_t k = n - pos < block ? n - pos : block;
        int64_t cap = ss_resampler_max_out(rs, k);
        free(tmp);
        tmp = malloc((size_t)(cap + 1) * (size_t)ch * sizeof *tmp);
        if (!tmp) {
            st = ss_fail(err, SS_E_NOMEM, "test: out of memory");
            break;
        }
        int64_t got = 0;
        st = ss_resampler_push(rs, x + pos * ch, k, tmp, cap, &got, err);
        if (st != SS_OK)
            break;
        if (done + got > want) {
            st = ss_fail(err, SS_E_INTERNAL, "test: %lld frames, more than %lld",
                         (long long)(done + got), (long long)want);
            break;
        }
        memcpy(outbuf + done * ch, tmp, (size_t)got * (size_t)ch * sizeof *tmp);
        done += got;
        pos += k;
    } while (pos < n);
    free(tmp);
    ss_resampler_free(rs);
    *y = outbuf;
    *ny = done;
    return st;
}

static void test_resampler_exact_length_identical_for_any_block_size(void)
{
    static const int rates[][2] = {{48000, 44100}, {44100, 48000}, {22050, 44100}};
    static const int64_t blocks[] = {1, 7, 4096, 1 << 30};
    const int64_t n = 12345;
    float *x = make_signal(n, 2, 19);
    CHECK(x != NULL, "out of memory");
    for (size_t ri = 0; ri < sizeof rates / sizeof rates[0]; ri++) {
        int64_t want = ss_resampled_length(n, rates[ri][0], rates[ri][1]);
        float *ref = NULL;
        int64_t nref = 0;
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
            float *y = NULL;
            int64_t ny = 0;
            ss_error err = {0};
            ss_status st = resample_blocks(x, n, 2, rates[ri][0], rates[ri][1], blocks[bi], &y, &ny, &err);
            int same = 1;
            if (st == SS_OK && ny == want && ref)
                same = memcmp(ref, y, (size_t)ny * 2 * sizeof *y) == 0;
            if (!ref) {
                ref = y;
                nref = ny;
            } else {
                free(y);
            }
            if (st != SS_OK || ny != want || !same) {
                free(ref);
                free(x);
            }
            CHECK(st == SS_OK, "%d->%d block %lld: %s", rates[ri][0], rates[ri][1],
                  (long long)blocks[bi], err.msg);
            CHECK(ny == want, "%d->%d block %lld: %lld frames, want %lld", rates[ri][0],
                  rates[ri][1], (long long)blocks[bi], (long long)ny, (long long)want);
            CHECK(same, "%d->%d block %lld: output differs from block %lld", rates[ri][0],
                  rates[ri][1], (long long)blocks[bi], (long long)blocks[0]);
        }
        (void)nref;
        free(ref);
    }
    free(x);
}

/* x [n, ch] through a live resampler (SS_RESAMPLE_LIVE) in pushes of 1, 7,
 * 480, 4096, ... frames, then ss_resampler_end; never more out than the input
 * so far gives (ss_resampled_length of it) */
static ss_status resample_live(const float *x, int64_t n, int ch, int in_rate, int out_rate, float **y, int64_t *ny,
                               ss_error *err)
{
    static const int64_t sizes[] = {1, 7, 480, 4096, 3};
    ss_resampler *rs = NULL;
    *y = NULL;
    *ny = 0;
    ss_status st = ss_resampler_new(ch, in_rate, out_rate, SS_RESAMPLE_LIVE, &rs, err);
    if (st != SS_OK)
        return st;
    int64_t cap = ss_resampled_length(n, in_rate, out_rate) + 64, done = 0, pos = 0;
    float *out = malloc((size_t)cap * (size_t)ch * sizeof *out);
    if (!out) {
        ss_resampler_free(rs);
        return ss_fail(err, SS_E_NOMEM, "test: out of memory");
    }
    for (int turn = 0; st == SS_OK && pos < n; turn++) {
        int64_t k = n - pos < sizes[turn % 5] ? n - pos : sizes[turn % 5], got = 0;
        int64_t room = ss_resampler_max_out(rs, k);
        if (done + room > cap) {
            st = ss_fail(err, SS_E_INTERNAL, "test: max_out %lld beyond the output", (long long)room);
            break;
        }
        st = ss_resampler_push(rs, x + pos * ch, k, out + done * ch, room, &got, err);
        pos += k;
        done += got;
        if (st == SS_OK && done > ss_resampled_length(pos, in_rate, out_rate))
            st = ss_fail(err, SS_E_INTERNAL, "test: %lld frames out after %lld in", (long long)done, (long long)pos);
    }
    if (st == SS_OK) {
        int64_t got = 0, room = ss_resampler_end_max(rs);
        if (done + room > cap)
            st = ss_fail(err, SS_E_INTERNAL, "test: end_max %lld beyond the output", (long long)room);
        else
            st = ss_resampler_end(rs, out + done * ch, room, &got, err);
        done += got;
    }
    ss_resampler_free(rs);
    *y = out;
    *ny = done;
    return st;
}

/* A live resampler (length unknown until ss_resampler_end) gives the same
 * frames bit for bit as one told the length up front: the polyphase filter
 * (48000 <-> 44100, 22050 -> 44100), libsamplerate (44101 -> 48000: its tail
 * flushed by an end of 0 frames) and equal rates; nothing in, nothing out. */
static void test_resampler_live_equals_known_length(void)
{
    static const int rates[][2] = {{48000, 44100}, {44100, 48000}, {22050, 44100}, {44101, 48000}, {44100, 44100}};
    const int64_t n = 12345;
    float *x = make_signal(n, 2, 29);
    CHECK(x != NULL, "out of memory");
    for (size_t ri = 0; ri < sizeof rates / sizeof rates[0]; ri++) {
        float *ref = NULL, *y = NULL;
        int64_t nref = 0, ny = 0;
        ss_error err = {0};
        ss_status s1 = resample_blocks(x, n, 2, rates[ri][0], rates[ri][1], 1 << 30, &ref, &nref, &err);
        ss_status s2 = s1 == SS_OK ? resample_live(x, n, 2, rates[ri][0], rates[ri][1], &y, &ny, &err) : s1;
        int same = s2 == SS_OK && ny == nref && memcmp(ref, y, (size_t)ny * 2 * sizeof *y) == 0;
        free(ref);
        free(y);
        if (s2 != SS_OK || !same)
            free(x);
        CHECK(s2 == SS_OK, "%d->%d: %s", rates[ri][0], rates[ri][1], err.msg);
        CHECK(same, "%d->%d: the live resampler's %lld frames differ from the %lld of the length up front",
              rates[ri][0], rates[ri][1], (long long)ny, (long long)nref);
    }
    free(x);
    ss_resampler *rs = NULL;
    ss_error err = {0};
    int64_t got = -1;
    float dummy[4];
    CHECK(ss_resampler_new(2, 44100, 48000, SS_RESAMPLE_LIVE, &rs, &err) == SS_OK, "%s", err.msg);
    ss_status st = ss_resampler_end(rs, dummy, 0, &got, &err);
    ss_resampler_free(rs);
    CHECK(st == SS_OK && got == 0, "an empty live stream: status %d, %lld frames", (int)st, (long long)got);
    /* a resampler told its length has no end to announce */
    CHECK(ss_resampler_new(2, 44100, 48000, 10, &rs, &err) == SS_OK, "%s", err.msg);
    st = ss_resampler_end(rs, dummy, 2, &got, &err);
    ss_resampler_free(rs);
    CHECK(st == SS_E_INTERNAL, "ss_resampler_end of a known length: status %d", (int)st);
}

static void test_resampler_equal_rates_is_exact_copy(void)
{
    const int64_t n = 10007;
    float *x = make_signal(n, 3, 23);
    CHECK(x != NULL, "out of memory");
    float *y = NULL;
    int64_t ny = 0;
    ss_error err = {0};
    ss_status st = resample_blocks(x, n, 3, 44100, 44100, 1000, &y, &ny, &err);
    int same = st == SS_OK && ny == n && memcmp(x, y, (size_t)n * 3 * sizeof *x) == 0;
    free(x);
    free(y);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(same, "passthrough changed the samples (%lld frames)", (long long)ny);
}

/* A 48 kHz sine resampled to 44.1 kHz lines up in phase with a 44.1 kHz
 * sine generated directly: libsamplerate compensates its filter delay. */
static void test_resampler_48k_sine_matches_analytic_44k_sine(void)
{
    const int64_t n = 48000;
    const double f[2] = {997.0, 5000.0};
    float *x = malloc((size_t)n * 2 * sizeof *x);
    CHECK(x != NULL, "out of memory");
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < 2; c++)
            x[i * 2 + c] = (float)(0.5 * sin(2 * M_PI * f[c] * (double)i / 48000.0));
    float *y = NULL;
    int64_t ny = 0;
    ss_error err = {0};
    ss_status st = resample_blocks(x, n, 2, 48000, 44100, 4096, &y, &ny, &err);
    free(x);
    double maxerr = 0;
    if (st == SS_OK)
        for (int64_t i = 200; i < ny - 200; i++)
            for (int c = 0; c < 2; c++) {
                double ref = 0.5 * sin(2 * M_PI * f[c] * (double)i / 44100.0);
                maxerr = fmax(maxerr, fabs(ref - (double)y[i * 2 + c]));
            }
    /* The flushed tail carries signal too (it is not zero padding). */
    double tailpeak = 0;
    for (int64_t i = ny - 60; st == SS_OK && i < ny; i++)
        tailpeak = fmax(tailpeak, fabs((double)y[i * 2]));
    free(y);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(ny == 44100, "%lld frames", (long long)ny);
    CHECK(maxerr < 1e-3, "max error %.3g away from the edges", maxerr);
    CHECK(tailpeak > 0.3, "last 60 frames peak at %.3g: tail not flushed", tailpeak);
}

/* The converter's passband, as the man page states it: sines from 20 Hz to
 * 20 kHz (third octaves, and 20 kHz itself) through 48000 -> 44100 -> 48000
 * come back with an error at most -90 dB relative to the sine and a gain
 * within 0.001 dB (measured: -93.4 dB and 0.00016 dB, both at 20 kHz); the
 * band ends there (21 kHz: -0.85 dB after the round trip). */
static void test_resampler_passband_error_bound(void)
{
    const int64_t n = 24000, edge = 3000;
    double worst_err = -1000, worst_gain = 0, at_err = 0, at_gain = 0, g21 = 0;
    float *x = malloc(sizeof(float) * (size_t)n);
    CHECK(x != NULL, "out of memory");
    for (int k = 0; k <= 31; k++) {
        double f = k < 31 ? 20.0 * pow(2.0, k / 3.0) : 21000.0;
        if (f > 20000.0 && k < 31)
            f = 20000.0;
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)(0.5 * sin(2 * M_PI * f * (double)i / 48000.0));
        float *a = NULL, *b = NULL;
        int64_t na = 0, nb = 0;
        ss_error err = {0};
        ss_status st = resample_blocks(x, n, 1, 48000, 44100, 5000, &a, &na, &err);
        if (st == SS_OK)
            st = resample_blocks(a, na, 1, 44100, 48000, 3000, &b, &nb, &err);
        free(a);
        double e2 = 0, s2 = 0, o2 = 0;
        for (int64_t i = edge; st == SS_OK && nb == n && i < n - edge; i++) {
            double d = (double)b[i] - x[i];
            e2 += d * d;
            s2 += (double)x[i] * x[i];
            o2 += (double)b[i] * b[i];
        }
        free(b);
        if (st != SS_OK || nb != n)
            free(x);
        CHECK(st == SS_OK, "%s", err.msg);
        CHECK(nb == n, "round trip gave %lld frames of %lld", (long long)nb, (long long)n);
        double edb = 10 * log10(e2 / s2), gdb = 10 * log10(o2 / s2);
        if (k == 31) {
            g21 = gdb;
            continue;
        }
        if (edb > worst_err)
            worst_err = edb, at_err = f;
        if (fabs(gdb) > fabs(worst_gain))
            worst_gain = gdb, at_gain = f;
    }
    free(x);
    CHECK(worst_err <= -90.0, "error %.1f dB at %.0f Hz (bound -90 dB)", worst_err, at_err);
    CHECK(fabs(worst_gain) <= 0.001, "gain %.5f dB at %.0f Hz (bound 0.001 dB)", worst_gain, at_gain);
    CHECK(g21 < -0.1, "21 kHz passes at %.3f dB: the filter is not the one documented", g21);
}

/* Resampling costs a small share of a run: 10 s of stereo from 48 kHz to
 * 44.1 kHz in less than 0.2 s of CPU time (0.013 s measured on the x86 core
 * of the development machine, AVX2; libsamplerate's best sinc, used before,
 * took 0.53 s there). */
static void test_resampler_zero_frames_gives_zero_frames(void)
{
    ss_resampler *rs = NULL;
    ss_error err = {0};
    CHECK(ss_resampler_new(2, 48000, 44100, 0, &rs, &err) == SS_OK, "%s", err.msg);
    float out[16];
    int64_t got = -1;
    ss_status st = ss_resampler_push(rs, NULL, 0, out, ss_resampler_max_out(rs, 0), &got, &err);
    int64_t max0 = ss_resampler_max_out(rs, 0);
    ss_resampler_free(rs);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(got == 0, "got %lld frames", (long long)got);
    CHECK(max0 == 0, "max_out %lld", (long long)max0);
}

static void test_resampler_rejects_push_beyond_announced_length(void)
{
    ss_resampler *rs = NULL;
    ss_error err = {0};
    CHECK(ss_resampler_new(1, 48000, 44100, 4, &rs, &err) == SS_OK, "%s", err.msg);
    float in[8] = {0}, out[64];
    int64_t got = 0;
    ss_status st = ss_resampler_push(rs, in, 8, out, 64, &got, &err);
    ss_resampler_free(rs);
    CHECK(st == SS_E_INTERNAL, "status %d", (int)st);
}

static void test_resampled_length_rounds_half_up_exactly(void)
{
    CHECK(ss_resampled_length(48000, 48000, 44100) == 44100, "1 s");
    CHECK(ss_resampled_length(12345, 48000, 44100) == 11342, "%lld", (long long)ss_resampled_length(12345, 48000, 44100));
    CHECK(ss_resampled_length(1, 44100, 22050) == 1, "0.5 rounds up");
    CHECK(ss_resampled_length(3, 44100, 22050) == 2, "1.5 rounds up");
    CHECK(ss_resampled_length(48123, 48000, 44100) == 44213, "48123");
    CHECK(ss_resampled_length(0, 48000, 44100) == 0, "zero");
    CHECK(ss_resampled_length(1000000000000LL, 44100, 384000) == 8707482993197LL, "%lld",
          (long long)ss_resampled_length(1000000000000LL, 44100, 384000));
    CHECK(ss_resampled_length(1000000000000LL, 48000, 44100) == 918750000000LL, "10^12 down");
    CHECK(ss_resampled_length(1000000000000LL, 384000, 1) == 2604167, "10^12 to 1 Hz");
    CHECK(ss_resampled_length(999999999999LL, 7, 384000) == 54857142857088000LL, "%lld",
          (long long)ss_resampled_length(999999999999LL, 7, 384000));
}

/* ---- clones and the parallel statistics pass -------------------------------------------- */

/* A clone sought anywhere reads exactly the original's frames there, for a
 * file (pread at its own offset: the original's position is untouched) and
 * for audio in memory. */
static void clone_case(ss_file_format ff, int in_memory, const char *name)
{
    char path[600];
    const int64_t n = 100000;
    ss_error err = {0};
    ss_status st = make_test_file(name, "c", ff, SS_SAMPLE_S16, 2, n, 5, path, sizeof path, &err);
    CHECK(st == SS_OK, "%s", err.msg);
    ss_audio_reader *r = NULL, *c = NULL;
    char *bytes = NULL;                             /* in_memory: the file's bytes */
    if (in_memory) {
        FILE *f = fopen(path, "rb");
        long size = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
        bytes = size > 0 ? malloc((size_t)size) : NULL;
        int ok = bytes && fseek(f, 0, SEEK_SET) == 0 && fread(bytes, 1, (size_t)size, f) == (size_t)size;
        if (f)
            fclose(f);
        if (!ok)
            free(bytes);
        CHECK(ok, "%s: cannot read %s into memory", name, path);
        st = ss_audio_open_memory(bytes, (size_t)size, path, &r, NULL, &err);
    } else {
        st = ss_audio_open(path, &r, NULL, &err);
    }
    if (st != SS_OK)
        free(bytes);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(ss_audio_seekable(r), "%s not seekable", name);
    float *all = NULL, *part = malloc(5000 * 2 * sizeof *part), *head = malloc(100 * 2 * sizeof *head);
    int64_t na = 0, got = 0, gh = 0;
    st = ss_audio_read(r, head, 100, &gh, &err);                  /* the original moves on... */
    if (st == SS_OK)
        st = ss_audio_clone(r, &c, &err);
    if (st == SS_OK)
        st = ss_audio_seek(c, 33333, &err);
    if (st == SS_OK)
        st = ss_audio_read(c, part, 5000, &got, &err);
    if (st == SS_OK)
        st = ss_audio_rewind(r, &err);                             /* ...and is read whole */
    if (st == SS_OK)
        st = read_all(r, 2, n, 7000, &all, &na, &err);
    int64_t at_end = -1;
    if (st == SS_OK && (st = ss_audio_seek(c, n, &err)) == SS_OK)
        st = ss_audio_read(c, head, 10, &at_end, &err);
    ss_audio_close(c);
    ss_audio_close(r);
    free(bytes);
    int same = st == SS_OK && na == n && got == 5000 && part && all &&
               memcmp(part, all + 33333 * 2, 5000 * 2 * sizeof *part) == 0;
    free(all);
    free(part);
    free(head);
    CHECK(st == SS_OK, "%s", err.msg);
    CHECK(same, "%s: clone at 33333 read %lld frames, not the original's", name, (long long)got);
    CHECK(at_end == 0, "%s: reading at the end gave %lld frames", name, (long long)at_end);
}

static void test_clone_of_wav_reads_original_frames(void) { clone_case(SS_FILE_WAV, 0, "clone-wav"); }
static void test_clone_of_flac_reads_original_frames(void) { clone_case(SS_FILE_FLAC, 0, "clone-flac"); }
static void test_clone_of_audio_in_memory_reads_original_frames(void) { clone_case(SS_FILE_WAV, 1, "clone-mem"); }

/* Mix statistics of a file for thread counts 1, 2, 3, 8 and 0 (all cores):
 * the same bits every time, and the double-precision two-pass values of the
 * decoded samples (mono mix = mean of the model's channels). */
static void stats_case(ss_file_format ff, int cin, int cm, const char *name)
{
    char path[600];
    const int64_t n = 300001;                       /* 9 blocks and a bit */
    ss_error err = {0};
    ss_status st = make_test_file(name, "s", ff, SS_SAMPLE_S16, cin, n, 17, path, sizeof path, &err);
    CHECK(st == SS_OK, "%s", err.msg);
    double mean[5], sd[5];
    const int threads[5] = {1, 2, 3, 8, 0};
    float *dec = NULL;
    int64_t nd = 0;
    for (int t = 0; t < 5 && st == SS_OK; t++) {
        ss_audio_reader *r = NULL;
        ss_audio_info ai;
        if ((st = ss_audio_open(path, &r, &ai, &err)) != SS_OK)
            break;
        st = ss_mix_stats(r, path, cin, cm, ai.frames, threads[t], &mean[t], &sd[t], NULL, &err);
        if (st == SS_OK && t == 0)                  /* left at frame 0: read it all */
            st = read_all(r, cin, n, 65536, &dec, &nd, &err);
        ss_audio_close(r);
    }
    CHECK(st == SS_OK, "%s", err.msg);
    double s = 0.0, q = 0.0;
    for (int64_t i = 0; i < nd; i++) {
        double v = 0.0;
        for (int c = 0; c < cin; c++)
            v += dec[i * cin + c];
        s += v / cin;                               /* mono of the mapped channels */
    }
    double m = s / (double)nd;
    for (int64_t i = 0; i < nd; i++) {
        double v = 0.0;
        for (int c = 0; c < cin; c++)
            v += dec[i * cin + c];
        q += (v / cin - m) * (v / cin - m);
    }
    free(dec);
    double want_sd = sqrt(q / (double)(nd - 1));
    CHECK(nd == n, "read %lld of %lld frames", (long long)nd, (long long)n);
    for (int t = 1; t < 5; t++)
        CHECK(memcmp(&mean[t], &mean[0], sizeof mean[0]) == 0 && memcmp(&sd[t], &sd[0], sizeof sd[0]) == 0,
              "%s: %d threads gave mean %.17g std %.17g, 1 thread %.17g %.17g", name, threads[t], mean[t], sd[t],
              mean[0], sd[0]);
    CHECK(fabs(mean[0] - m) <= 1e-12 && fabs(sd[0] - want_sd) <= 1e-12 * want_sd,
          "%s: mean %.17g std %.17g, two-pass %.17g %.17g", name, mean[0], sd[0], m, want_sd);
}

static void test_mix_stats_same_for_any_thread_count_wav(void) { stats_case(SS_FILE_WAV, 2, 2, "stats-wav"); }
static void test_mix_stats_same_for_any_thread_count_flac(void) { stats_case(SS_FILE_FLAC, 2, 2, "stats-flac"); }
static void test_mix_stats_mono_file_stereo_model(void) { stats_case(SS_FILE_WAV, 1, 2, "stats-mono"); }

/* A NaN and an infinity in a float WAV: every thread count names the first. */
static void test_mix_stats_names_first_nonfinite_frame(void)
{
    const char *dir = subdir("stats-nan");
    char path[600];
    snprintf(path, sizeof path, "%s/n.wav", dir);
    const int64_t n = 400000;
    float *x = make_signal(n, 2, 23);
    CHECK(x != NULL, "out of memory");
    x[250000 * 2 + 1] = INFINITY;                   /* in a later thread's part */
    x[200001 * 2] = NAN;
    ss_error err = {0};
    ss_status st = write_file(path, SS_FILE_WAV, SS_SAMPLE_F32, 44100, 2, x, n, &err);
    free(x);
    CHECK(st == SS_OK, "%s", err.msg);
    const int threads[3] = {1, 2, 5};
    for (int t = 0; t < 3; t++) {
        ss_audio_reader *r = NULL;
        ss_audio_info ai;
        CHECK(ss_audio_open(path, &r, &ai, &err) == SS_OK, "%s", err.msg);
        double m, sd;
        ss_error e2 = {0};
        st = ss_mix_stats(r, path, 2, 2, ai.frames, threads[t], &m, &sd, NULL, &e2);
        ss_audio_close(r);
        CHECK(st == SS_E_DATA && strstr(e2.msg, "frame 200001") && strstr(e2.msg, path),
              "%d threads: status %d, message '%s'", threads[t], (int)st, e2.msg);
    }
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_root, sizeof g_root, "%s/ss-test-audio.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_root)) {
        printf("FAIL mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_wav_s16_roundtrip_within_quantisation_step);
    RUN(test_wav_s24_roundtrip_within_quantisation_step);
    RUN(test_wav_f32_roundtrip_is_exact);
    RUN(test_flac_s16_roundtrip_within_quantisation_step);
    RUN(test_flac_s24_roundtrip_within_quantisation_step);
    RUN(test_s16_clips_out_of_range_samples);
    RUN(test_wav_f32_has_complete_fmt_chunk);
    RUN(test_write_at_s16_stereo_same_bytes_as_in_order);
    RUN(test_write_at_s16_mono_same_bytes_as_in_order);
    RUN(test_write_at_s24_stereo_same_bytes_as_in_order);
    RUN(test_write_at_s24_mono_same_bytes_as_in_order);
    RUN(test_write_at_refused_where_it_cannot_hold);
    RUN(test_writer_final_path_appears_only_on_commit);
    RUN(test_commit_replaces_existing_file_only_at_commit);
    RUN(test_writer_abort_leaves_directory_empty);
    RUN(test_create_in_missing_directory_is_cantcreat);
    RUN(test_create_over_directory_is_cantcreat);
    RUN(test_flac_with_f32_is_usage_error);
    RUN(test_write_past_file_size_limit_is_io_error);
    RUN(test_mono_file_reads_as_one_channel);
    RUN(test_text_file_named_wav_is_data_error);
    RUN(test_open_fd_reads_from_start_and_owns_descriptor);
    RUN(test_missing_file_is_noinput);
    RUN(test_each_descriptor_closed_once);
    RUN(test_directory_as_input_is_noinput);
    RUN(test_rewind_then_reread_gives_identical_samples);
    RUN(test_wav_truncated_after_open_is_io_error);
    RUN(test_flac_truncated_after_open_is_io_error);
    RUN(test_stdin_pipe_is_spooled_and_read);
    RUN(test_stdin_regular_file_is_read_directly);
    RUN(test_stdin_garbage_or_empty_is_data_error);
    RUN(test_format_names_parse_and_print);
    RUN(test_mp3_decodes_back_exact_length_at_its_bitrate);
    RUN(test_ogg_vorbis_decodes_back_exact_length);
    RUN(test_opus_decodes_back_exact_length_at_its_bitrate);
    RUN(test_opus_rates_and_bitrate_ranges);
    RUN(test_mpeg_vbr_without_xing_counted_to_its_end);
    RUN(test_mpeg_cbr_without_xing_counted_to_its_end);
    RUN(test_resampler_exact_length_identical_for_any_block_size);
    RUN(test_resampler_equal_rates_is_exact_copy);
    RUN(test_resampler_live_equals_known_length);
    RUN(test_resampler_48k_sine_matches_analytic_44k_sine);
    RUN(test_resampler_passband_error_bound);
    RUN(test_resampler_zero_frames_gives_zero_frames);
    RUN(test_resampler_rejects_push_beyond_announced_length);
    RUN(test_resampled_length_rounds_half_up_exactly);
    RUN(test_clone_of_wav_reads_original_frames);
    RUN(test_clone_of_flac_reads_original_frames);
    RUN(test_clone_of_audio_in_memory_reads_original_frames);
    RUN(test_mix_stats_same_for_any_thread_count_wav);
    RUN(test_mix_stats_same_for_any_thread_count_flac);
    RUN(test_mix_stats_mono_file_stereo_model);
    RUN(test_mix_stats_names_first_nonfinite_frame);
    remove_tree(g_root);
    return test_summary();
}

/* test_cli_e2e.c - the real stemsplit binary ($STEMSPLIT) end to end with the
 * shipped bandsplit4 model: stems sum back to the mixture, names follow the
 * template, the JSON report is consistent, resampling keeps the input rate,
 * mono, stdin, --stems, --two-stems, formats, silence and clip rescaling. */
#include <cJSON.h>
#include <math.h>
#include <sndfile.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "separate.h"
#include "st_write.h"
#include "test.h"

static char dir[] = "/tmp/ss-e2e-XXXXXX";
static const char *bin, *root;
static char model[1024];

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The stems of the bandsplit test model, and where one of a track's lands:
 * DIR/<sub>/bandsplit4/<track>/<stem>.wav (the default --filename). */
static const char *const bands[4] = {"low", "lowmid", "highmid", "high"};

static void stem_path(char *buf, size_t size, const char *sub, const char *track, int k)
{
    snprintf(buf, size, "%s/%s/bandsplit4/%s/%s.wav", dir, sub, track, bands[k]);
}

/* Write n frames of a test mixture (sines + noise, peak about `amp`). */
static int write_mix(const char *path, int rate, int channels, int64_t n, double amp, int format)
{
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    if (!f)
        return -1;
    float *buf = malloc(sizeof(float) * (size_t)(n * channels));
    srand(3);
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < channels; c++) {
            double t = (double)i / rate;
            double v = 0.4 * sin(2 * M_PI * 110 * t + c) + 0.3 * sin(2 * M_PI * 700 * t) +
                       0.2 * sin(2 * M_PI * 3100 * t + 0.5 * c) + 0.1 * sin(2 * M_PI * 9000 * t);
            v += 0.05 * ((double)rand() / RAND_MAX - 0.5) * (rate <= 44100);   /* noise only below 44.1k */
            buf[i * channels + c] = (float)(amp * v);
        }
    int ok = sf_writef_float(f, buf, n) == n;
    free(buf);
    sf_close(f);
    return ok ? 0 : -1;
}

/* Read a whole file; returns frames, fills *data (malloc'd) and info. */
static int64_t read_all(const char *path, float **data, SF_INFO *info)
{
    memset(info, 0, sizeof *info);
    SNDFILE *f = sf_open(path, SFM_READ, info);
    if (!f)
        return -1;
    *data = malloc(sizeof(float) * (size_t)(info->frames * info->channels + 1));
    int64_t got = sf_readf_float(f, *data, info->frames);
    sf_close(f);
    return got;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Mean of the mono mix (mean over channels) of a whole file: demucs adds it
 * back to every source when it de-normalises, so S stems sum to the mixture
 * plus (S - 1) times this. */
static double mix_mean(const float *m, int64_t n, int channels)
{
    double sum = 0;
    for (int64_t i = 0; i < n * channels; i++)
        sum += m[i];
    return sum / (double)(n * channels);
}

/* max |sum of stems - (mix + 3 mean)| over frames [skip, n - skip) for the given
 * stem files of the 4-source model (see mix_mean). */
static double sum_error(const char *mix, const char *const *stems, int n_stems, int64_t skip, int *frames_ok)
{
    float *m = NULL, *s = NULL;
    SF_INFO mi, si;
    int64_t n = read_all(mix, &m, &mi);
    double *acc = calloc((size_t)(n * 2 > 0 ? n * 2 : 1), sizeof *acc);
    *frames_ok = n > 0;
    for (int k = 0; k < n_stems; k++) {
        int64_t sn = read_all(stems[k], &s, &si);
        if (sn != n || si.samplerate != mi.samplerate || si.channels != 2) {
            fprintf(stderr, "%s: %lld frames at %d Hz, %d ch; mix %lld at %d Hz\n", stems[k], (long long)sn,
                    si.samplerate, si.channels, (long long)n, mi.samplerate);
            *frames_ok = 0;
        }
        for (int64_t i = 0; sn == n && i < n * 2; i++)
            acc[i] += s[i];
        free(s);
    }
    double e = 0, extra = n > 0 ? 3 * mix_mean(m, n, mi.channels) : 0;
    for (int64_t i = skip; *frames_ok && i < n - skip; i++)
        for (int c = 0; c < 2; c++) {
            float mv = mi.channels == 1 ? m[i] : m[i * 2 + c];
            e = fmax(e, fabs(acc[i * 2 + c] - mv - extra));
        }
    free(m);
    free(acc);
    return e;
}

static void test_stems_sum_to_mixture_f32(void)
{
    char mix[1200];
    snprintf(mix, sizeof mix, "%s/mix.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 44100 * 23 / 2, 0.5, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    int rc = run("%s -q -d cpu -m %s --sample-format f32 -o %s/out %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    char paths[4][1300];
    const char *p[4];
    for (int k = 0; k < 4; k++) {
        stem_path(paths[k], sizeof paths[k], "out", "mix", k);
        p[k] = paths[k];
        CHECK(exists(p[k]), "%s missing", p[k]);
    }
    int ok;
    double e = sum_error(mix, p, 4, 0, &ok);
    CHECK(ok, "frame counts differ");
    CHECK(e <= 1e-5, "stems sum to the mixture within %g (want <= 1e-5)", e);
}

static void test_template_and_json_report(void)
{
    char mix[1200], rep[1200];
    snprintf(mix, sizeof mix, "%s/song two.wav", dir);
    snprintf(rep, sizeof rep, "%s/report.json", dir);
    CHECK(write_mix(mix, 44100, 2, 44100 * 3, 0.5, SF_FORMAT_WAV | SF_FORMAT_PCM_16) == 0, "write");
    int rc = run("%s -q -m %s -o %s/tpl --filename '{model}/{track}-{stem}.{ext}' --report-json %s '%s'", bin,
                 model, dir, rep, mix);
    CHECK(rc == 0, "exit %d", rc);
    char path[1400];
    snprintf(path, sizeof path, "%s/tpl/bandsplit4/song two-vocals.wav", dir);
    CHECK(!exists(path), "a stem that the model does not have was written");
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/tpl/bandsplit4/song two-%s.wav", dir, bands[k]);
        CHECK(exists(path), "%s missing", path);
    }
    FILE *f = fopen(rep, "r");
    CHECK(f, "no report");
    char *text = calloc(1, 1 << 20);
    size_t len = fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    cJSON *doc = cJSON_Parse(text);
    free(text);
    CHECK(len > 0 && doc, "report does not parse as JSON");
    cJSON *files = cJSON_GetObjectItem(doc, "files"), *total = cJSON_GetObjectItem(doc, "total");
    cJSON *dev = cJSON_GetObjectItem(doc, "device"), *mod = cJSON_GetObjectItem(doc, "model");
    int ok = cJSON_IsArray(files) && cJSON_GetArraySize(files) == 1 && total && dev && mod;
    cJSON *f0 = ok ? cJSON_GetArrayItem(files, 0) : NULL;
    double audio = f0 ? cJSON_GetNumberValue(cJSON_GetObjectItem(f0, "audio_seconds")) : -1;
    double wall = f0 ? cJSON_GetNumberValue(cJSON_GetObjectItem(f0, "wall_seconds")) : -1;
    double rtf = f0 ? cJSON_GetNumberValue(cJSON_GetObjectItem(f0, "rtf")) : -1;
    cJSON *st = f0 ? cJSON_GetObjectItem(f0, "stages") : NULL;
    double stages = st ? cJSON_GetNumberValue(cJSON_GetObjectItem(st, "decode")) +
                         cJSON_GetNumberValue(cJSON_GetObjectItem(st, "infer")) +
                         cJSON_GetNumberValue(cJSON_GetObjectItem(st, "encode")) : -1;
    const char *in_json = f0 ? cJSON_GetStringValue(cJSON_GetObjectItem(f0, "input")) : NULL;
    char in[1200];
    snprintf(in, sizeof in, "%s", in_json ? in_json : "(none)");
    cJSON *outs = f0 ? cJSON_GetObjectItem(f0, "outputs") : NULL;
    const char *bj = cJSON_GetStringValue(cJSON_GetObjectItem(dev, "backend"));
    const char *aj = cJSON_GetStringValue(cJSON_GetObjectItem(mod, "architecture"));
    char backend[32], arch[32];
    snprintf(backend, sizeof backend, "%s", bj ? bj : "");
    snprintf(arch, sizeof arch, "%s", aj ? aj : "");
    double params = cJSON_GetNumberValue(cJSON_GetObjectItem(mod, "parameters"));
    double tfiles = cJSON_GetNumberValue(cJSON_GetObjectItem(total, "files"));
    double taudio = cJSON_GetNumberValue(cJSON_GetObjectItem(total, "audio_seconds"));
    double twall = cJSON_GetNumberValue(cJSON_GetObjectItem(total, "wall_seconds"));
    double trtf = cJSON_GetNumberValue(cJSON_GetObjectItem(total, "rtf"));
    int outs_ok = cJSON_GetArraySize(outs) == 4;
    for (int k = 0; outs_ok && k < 4; k++)
        outs_ok = exists(cJSON_GetStringValue(cJSON_GetArrayItem(outs, k)));
    int git_ok = cJSON_IsString(cJSON_GetObjectItem(doc, "git_commit")) && cJSON_IsString(cJSON_GetObjectItem(doc, "version"));
    cJSON_Delete(doc);
    CHECK(ok && git_ok, "report lacks files/total/device/model/version/git_commit");
    CHECK(strcmp(in, mix) == 0, "input is '%s'", in);
    CHECK(outs_ok, "outputs do not list the 4 files written");
    CHECK(fabs(audio - 3.0) < 1e-6, "audio_seconds %g, want 3", audio);
    CHECK(wall > 0 && fabs(rtf - audio / wall) <= 1e-6 * rtf, "rtf %g != audio/wall %g", rtf, audio / wall);
    CHECK(stages >= 0 && stages <= wall * 1.05 + 0.01, "stages sum %g > wall %g", stages, wall);
    CHECK(strcmp(backend, "cpu") == 0 && strcmp(arch, "bandsplit") == 0, "device %s, model %s", backend, arch);
    CHECK(params == 4 * 2049, "parameters %g", params);
    CHECK(tfiles == 1 && fabs(taudio - audio) < 1e-9 && twall >= wall && fabs(trtf - taudio / twall) <= 1e-6 * trtf,
          "totals inconsistent: files %g audio %g wall %g rtf %g", tfiles, taudio, twall, trtf);
}

static void test_48k_input_comes_back_at_48k(void)
{
    char mix[1200], paths[4][1300];
    const char *p[4];
    snprintf(mix, sizeof mix, "%s/m48.wav", dir);
    CHECK(write_mix(mix, 48000, 2, 48000 * 4 + 17, 0.5, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    int rc = run("%s -q -m %s --sample-format f32 -o %s/o48 %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    for (int k = 0; k < 4; k++) {
        stem_path(paths[k], sizeof paths[k], "o48", "m48", k);
        p[k] = paths[k];
    }
    int ok;
    double e = sum_error(mix, p, 4, 2000, &ok);   /* sum_error checks rate and length too */
    CHECK(ok, "outputs are not 48 kHz stereo of the input's length");
    CHECK(e <= 2e-3, "48k -> 44.1k -> 48k stems sum to the mixture within %g (want <= 2e-3)", e);
}

static void test_mono_input_two_stems_and_stems_subset(void)
{
    char mix[1200], a[1300], b[1300];
    snprintf(mix, sizeof mix, "%s/mono.flac", dir);
    CHECK(write_mix(mix, 44100, 1, 44100 * 2, 0.5, SF_FORMAT_FLAC | SF_FORMAT_PCM_24) == 0, "write");
    int rc = run("%s -q -m %s --two-stems lowmid --sample-format f32 -o %s/two %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    snprintf(a, sizeof a, "%s/two/bandsplit4/mono/lowmid.wav", dir);
    snprintf(b, sizeof b, "%s/two/bandsplit4/mono/no_lowmid.wav", dir);
    const char *p[2] = {a, b};
    int ok;
    double e = sum_error(mix, p, 2, 0, &ok);
    CHECK(ok, "two-stems outputs missing or wrong length");
    CHECK(e <= 1e-5, "lowmid + no_lowmid differs from the mono mixture by %g", e);
    rc = run("%s -q -m %s --stems high,low --format flac --sample-format s24 -o %s/sub %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    snprintf(a, sizeof a, "%s/sub/bandsplit4/mono/high.flac", dir);
    snprintf(b, sizeof b, "%s/sub/bandsplit4/mono/low.flac", dir);
    CHECK(exists(a) && exists(b), "--stems outputs missing");
    snprintf(a, sizeof a, "%s/sub/bandsplit4/mono/lowmid.flac", dir);
    CHECK(!exists(a), "--stems wrote a stem not asked for");
    float *d = NULL;
    SF_INFO info;
    snprintf(a, sizeof a, "%s/sub/bandsplit4/mono/high.flac", dir);
    int64_t n = read_all(a, &d, &info);
    free(d);
    CHECK(n == 44100 * 2 && (info.format & SF_FORMAT_TYPEMASK) == SF_FORMAT_FLAC &&
          (info.format & SF_FORMAT_SUBMASK) == SF_FORMAT_PCM_24, "flac s24 output has format %x", info.format);
}

static void test_stdin_input(void)
{
    char mix[1200], a[1300];
    snprintf(mix, sizeof mix, "%s/pipe.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 44100, 0.5, SF_FORMAT_WAV | SF_FORMAT_PCM_16) == 0, "write");
    int rc = run("cat %s | %s -q -m %s -o %s/stdin -", mix, bin, model, dir);
    CHECK(rc == 0, "exit %d", rc);
    snprintf(a, sizeof a, "%s/stdin/bandsplit4/stdin/low.wav", dir);
    CHECK(exists(a), "%s missing", a);
}

static void test_silence_gives_silence_not_nan(void)
{
    char mix[1200], a[1300];
    snprintf(mix, sizeof mix, "%s/silence.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 44100, 0.0, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    int rc = run("%s -q -m %s --sample-format f32 -o %s/sil %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    snprintf(a, sizeof a, "%s/sil/bandsplit4/silence/low.wav", dir);
    float *d = NULL;
    SF_INFO info;
    int64_t n = read_all(a, &d, &info);
    int bad = n != 44100;
    for (int64_t i = 0; !bad && i < n * 2; i++)
        bad = !isfinite(d[i]) || fabsf(d[i]) > 1e-6f;
    free(d);
    CHECK(!bad, "silence did not give finite silence");
}

/* The four stems of `mix` separated into DIR/<sub>/<track>/: their sum must be
 * (mixture + 3 mean) times one common factor < 1, and no sample past 1/1.01. */
static void check_rescaled(const char *mix, const char *sub, const char *track)
{
    char path[1300];
    float *m = NULL, *s = NULL;
    SF_INFO mi, si;
    int64_t n = read_all(mix, &m, &mi);
    double *acc = calloc((size_t)n * 2, sizeof *acc), peak = 0;
    int bad = !acc;
    for (int k = 0; k < 4 && !bad; k++) {
        stem_path(path, sizeof path, sub, track, k);
        int64_t sn = read_all(path, &s, &si);
        bad = sn != n;
        for (int64_t i = 0; !bad && i < n * 2; i++) {
            acc[i] += s[i];
            peak = fmax(peak, fabs(s[i]));
        }
        free(s);
    }
    double num = 0, den = 0, extra = 3 * mix_mean(m, n, 2), g = 0, e = 0;
    for (int64_t i = 0; !bad && i < n * 2; i++) {
        num += acc[i] * (m[i] + extra);
        den += (m[i] + extra) * (m[i] + extra);
    }
    g = bad ? 0 : num / den;
    for (int64_t i = 0; !bad && i < n * 2; i++)
        e = fmax(e, fabs(acc[i] - g * (m[i] + extra)));
    free(m);
    free(acc);
    CHECK(!bad, "%s: stems missing or of the wrong length", sub);
    CHECK(peak <= 1.0 / 1.01 + 1e-6, "%s: peak after rescale %g", sub, peak);
    CHECK(g < 0.99 && e < 1e-5, "%s: stems not scaled together: gain %g, residual %g", sub, g, e);
}

static void test_clip_rescale_scales_all_stems_together(void)
{
    char mix[1200];
    snprintf(mix, sizeof mix, "%s/loud.wav", dir);
    /* peak ~3: the low band alone (110 Hz at 1.2) goes past full scale */
    CHECK(write_mix(mix, 44100, 2, 44100 * 2, 3.0, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    int rc = run("%s -q -m %s --sample-format f32 -o %s/loud %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    check_rescaled(mix, "loud", "loud");
}

/* Loud only in its last second, separated in 1 s segments: the first blocks
 * fit, so the stems are first encoded as they come; the late peak must still
 * rescale every stem, all of it. */
static void test_clip_rescale_late_peak(void)
{
    char mix[1200];
    snprintf(mix, sizeof mix, "%s/late.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 44100 * 5, 1.0, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    float *m = NULL;
    SF_INFO mi;
    int64_t n = read_all(mix, &m, &mi);
    CHECK(n == 44100 * 5, "read back %lld frames", (long long)n);
    for (int64_t i = 0; i < n * 2; i++)
        m[i] *= i < (n - 44100) * 2 ? 0.2f : 3.0f;
    SF_INFO wi = {.samplerate = 44100, .channels = 2, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(mix, SFM_WRITE, &wi);
    CHECK(f && sf_writef_float(f, m, n) == n, "rewrite");
    sf_close(f);
    free(m);
    int rc = run("%s -m %s --segment 1 --sample-format f32 -o %s/late %s > %s/late.txt 2>&1", bin, model, dir, mix, dir);
    CHECK(rc == 0, "exit %d", rc);
    check_rescaled(mix, "late", "late");
    CHECK(run("grep -q 'late.wav: .*stems scaled by 0\\.' %s/late.txt", dir) == 0,
          "the report does not say the stems were scaled");
}

/* 16-bit WAV stems are encoded as they are separated, at the scale of the peak
 * so far, and re-encoded when a later block raises it (the running scale).  A
 * mixture whose level rises in four steps, in 1 s segments, raises the peak
 * three times after the first blocks were written: every 16-bit stem must
 * still be the 32-bit float stem (checked above against the mixture) to within
 * one step of the 16-bit scale, and byte for byte what one pass after the last
 * block writes (ss_sep_params.rescale_when forces the running scale here, on
 * the CPU backend, or the pass: both through the library). */
/* What `stemsplit -q -m MODEL --segment 1 -o DIR/sub MIX` writes (16-bit WAV
 * stems, --clip rescale), as DIR/sub/TRACK/STEM.wav, through the library on
 * the CPU backend, with the rescale pass forced to run `when`. */
static ss_status separate_s16(const char *mix, const char *sub, ss_rescale_when when, ss_error *err)
{
    char out[1200];
    snprintf(out, sizeof out, "%s/%s", dir, sub);
    ss_backend_params bp = {.threads = 2};
    ss_backend *be = NULL;
    ss_model *m = NULL;
    ss_report *rep = NULL;
    ss_file_report *f = NULL;
    ss_sep_params p = {.out_dir = out, .filename = "{track}/{stem}.{ext}", .format = SS_FILE_WAV,
                       .sample_format = SS_SAMPLE_S16, .clip = SS_CLIP_RESCALE, .two_stems = -1,
                       .engine = {.segment = 1, .overlap = 0.25, .batch = 1}, .rescale_when = when};
    ss_status s = ss_backend_open("cpu", &bp, &be, NULL, 0, err);
    if (s == SS_OK)
        s = ss_model_load(model, be, &m, err);
    if (s == SS_OK && (!(rep = ss_report_new()) || !(f = ss_report_add(rep, mix))))
        s = ss_fail(err, SS_E_NOMEM, "out of memory");
    if (s == SS_OK && mkdir(out, 0755) != 0)
        s = ss_fail(err, SS_E_CANTCREAT, "%s: cannot create", out);
    if (s == SS_OK)
        s = ss_separate(m, be, &p, mix, "", f, err);
    ss_report_free(rep);
    ss_model_free(m);
    ss_backend_close(be);
    return s;
}

static void test_clip_rescale_running_scale(void)
{
    char mix[1200], a[1300], b[1300];
    snprintf(mix, sizeof mix, "%s/steps.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 44100 * 8, 1.0, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    float *m = NULL, *x = NULL, *y = NULL;
    SF_INFO mi, xi, yi;
    int64_t n = read_all(mix, &m, &mi);
    CHECK(n == 44100 * 8, "read back %lld frames", (long long)n);
    const float level[4] = {0.2f, 1.5f, 2.5f, 4.0f};
    for (int64_t i = 0; i < n * 2; i++)
        m[i] *= level[i / (2 * 2 * 44100)];
    SF_INFO wi = {.samplerate = 44100, .channels = 2, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(mix, SFM_WRITE, &wi);
    CHECK(f && sf_writef_float(f, m, n) == n, "rewrite");
    sf_close(f);
    free(m);
    int rc = run("%s -q -m %s --segment 1 --sample-format f32 -o %s/stf %s", bin, model, dir, mix);
    CHECK(rc == 0, "f32: exit %d", rc);
    check_rescaled(mix, "stf", "steps");
    ss_error err = {0};
    CHECK(separate_s16(mix, "sts", SS_RESCALE_RUNNING, &err) == SS_OK, "s16: %s", err.msg);
    CHECK(separate_s16(mix, "sto", SS_RESCALE_AFTER, &err) == SS_OK, "s16, one pass after the last block: %s",
          err.msg);
    for (int k = 0; k < 4; k++) {
        stem_path(a, sizeof a, "stf", "steps", k);
        snprintf(b, sizeof b, "%s/sts/steps/%s.wav", dir, bands[k]);      /* separate_s16's layout */
        int64_t nx = read_all(a, &x, &xi), ny = read_all(b, &y, &yi);
        double worst = nx == n && ny == n ? 0 : INFINITY;
        for (int64_t i = 0; i < n * 2 && isfinite(worst); i++)
            worst = fmax(worst, fabs((double)x[i] - y[i]));
        free(x);
        free(y);
        CHECK(worst <= 1.5 / 32768, "%s: 16-bit stem off the float one by %g (frames %lld, %lld)", bands[k], worst,
              (long long)nx, (long long)ny);
        snprintf(a, sizeof a, "%s/sto/steps/%s.wav", dir, bands[k]);
        CHECK(run("cmp -s %s %s", a, b) == 0, "%s: running scale and one pass differ", bands[k]);
    }
}

/* Nothing near full scale: rescale must leave the stems exactly as --clip none writes them. */
static void test_clip_rescale_quiet_is_untouched(void)
{
    char mix[1200], a[1300], b[1300];
    snprintf(mix, sizeof mix, "%s/quiet.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 44100 * 3, 0.3, SF_FORMAT_WAV | SF_FORMAT_PCM_16) == 0, "write");
    int rc = run("%s -m %s --segment 1 -o %s/qr --report-json %s/qr.json %s 2>/dev/null", bin, model, dir, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    CHECK(run("grep -q '\"gain\":[[:space:]]*1[,}]' %s/qr.json", dir) == 0, "report gain is not 1");
    rc = run("%s -q -m %s --segment 1 --clip none -o %s/qn %s", bin, model, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    for (int k = 0; k < 4; k++) {
        stem_path(a, sizeof a, "qr", "quiet", k);
        stem_path(b, sizeof b, "qn", "quiet", k);
        CHECK(run("cmp -s %s %s", a, b) == 0, "%s differs between --clip rescale and none", bands[k]);
    }
}

/* A model asks for its input normalisation (ss_arch.input_norm): an identity
 * model with identity.norm = none gets the samples as decoded and, with unit
 * gain, gives them back bit for bit in a float stem; with demucs's
 * normalisation (the default, "mix") they would pass through (x - mean) / std
 * and back, which rounds. */
static void test_model_without_normalisation_gets_samples_unchanged(void)
{
    char mix[1200], idn[1200], stem[1300];
    snprintf(mix, sizeof mix, "%s/plain.wav", dir);
    snprintf(idn, sizeof idn, "%s/identity-none.safetensors", dir);
    /* samples that are powers of two, which the engine's overlap-add weights
     * (w x / w, one chunk) give back exactly */
    float *m = malloc(sizeof(float) * 2 * 30000);
    CHECK(m != NULL, "out of memory");
    for (int i = 0; i < 2 * 30000; i++)
        m[i] = ((int64_t)i * 7919 % 13 < 6 ? -1.0f : 1.0f) * ldexpf(1.0f, -1 - (int)((int64_t)i * 104729 % 11));
    SF_INFO wi = {.samplerate = 44100, .channels = 2, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(mix, SFM_WRITE, &wi);
    CHECK(f && sf_writef_float(f, m, 30000) == 30000, "write the mixture");
    sf_close(f);
    free(m);
    const char *names[] = {"gain"};
    const int64_t shapes[][ST_WRITE_MAX_DIMS] = {{1}};
    const int ndims[] = {1};
    const float gain[] = {1.0f};
    const float *data[] = {gain};
    CHECK(st_write_f32(idn, "{\"stemsplit.architecture\":\"identity\",\"stemsplit.sources\":\"all\","
                       "\"stemsplit.samplerate\":\"44100\",\"stemsplit.channels\":\"2\","
                       "\"stemsplit.segment\":\"1\",\"identity.norm\":\"none\"}",
                       1, names, shapes, ndims, data) == 0, "write the model");
    int rc = run("%s -q -m %s --clip none --sample-format f32 --overlap 0 --filename '{track}/{stem}.{ext}' "
                 "-o %s/idn %s", bin, idn, dir, mix);
    CHECK(rc == 0, "exit %d", rc);
    float *x = NULL, *y = NULL;
    SF_INFO xi, yi;
    snprintf(stem, sizeof stem, "%s/idn/plain/all.wav", dir);
    int64_t nx = read_all(mix, &x, &xi), ny = read_all(stem, &y, &yi);
    CHECK(nx == 30000 && ny == nx, "frames: mixture %lld, stem %lld", (long long)nx, (long long)ny);
    int64_t differ = 0;
    for (int64_t i = 0; i < 2 * nx; i++)
        differ += x[i] != y[i];
    free(x);
    free(y);
    CHECK(differ == 0, "%lld of %lld samples differ from the mixture", (long long)differ, (long long)(2 * nx));
}

/* ---- lossy output formats ---------------------------------------------------------------- */

/* Read a whole file with stemsplit's own reader (MP3 through libmpg123,
 * Ogg through libsndfile); returns frames (-1 on error), *data malloc'd. */
static int64_t read_ss(const char *path, float **data, int *rate)
{
    ss_error err = {0};
    ss_audio_reader *r = NULL;
    ss_audio_info ai;
    *data = NULL;
    if (ss_audio_open(path, &r, &ai, &err) != SS_OK || ai.channels != 2) {
        ss_audio_close(r);
        return -1;
    }
    *rate = ai.samplerate;
    int64_t cap = ai.frames + 65536, n = 0, got = 0;
    float *buf = malloc(sizeof(float) * 2 * (size_t)cap);
    while (buf && n < cap && ss_audio_read(r, buf + 2 * n, cap - n, &got, &err) == SS_OK && got > 0)
        n += got;
    ss_audio_close(r);
    if (!buf)
        return -1;
    *data = buf;
    return n;
}

/* Correlation of channel c of x and y over n frames (interleaved stereo). */
static double correlation(const float *x, const float *y, int64_t n, int c)
{
    double xy = 0, xx = 0, yy = 0;
    for (int64_t i = 0; i < n; i++) {
        xy += (double)x[2 * i + c] * y[2 * i + c];
        xx += (double)x[2 * i + c] * x[2 * i + c];
        yy += (double)y[2 * i + c] * y[2 * i + c];
    }
    return xy / sqrt(xx * yy + 1e-30);
}

/* --format mp3|ogg|opus: every stem decodes back (stemsplit's reader) to the
 * input's length and rate (Opus: 48 kHz, the length resampled, said under
 * -v), and follows the float WAV stem of the same run (the stems with
 * content; Opus's compared with that stem resampled to 48 kHz). */
static void test_lossy_formats_decode_back_to_input_length(void)
{
    char mix[1200], path[1400], log[1300];
    const int64_t n = 2 * 44100 + 77;
    snprintf(mix, sizeof mix, "%s/lossy.wav", dir);
    CHECK(write_mix(mix, 44100, 2, n, 0.8, SF_FORMAT_WAV | SF_FORMAT_PCM_16) == 0, "write");
    int rc = run("%s -q -m %s --segment 1 --sample-format f32 -o %s/lw %s", bin, model, dir, mix);
    CHECK(rc == 0, "wav: exit %d", rc);
    static const char *const fmts[] = {"mp3", "ogg", "opus"};
    for (int f = 0; f < 3; f++) {
        snprintf(log, sizeof log, "%s/lossy-%s.log", dir, fmts[f]);
        rc = run("%s -v -m %s --segment 1 --format %s -o %s/l%s %s 2>%s", bin, model, fmts[f], dir, fmts[f], mix,
                 log);
        CHECK(rc == 0, "--format %s: exit %d", fmts[f], rc);
        int opus = f == 2;
        if (opus)
            CHECK(run("grep -q 'stems resampled from 44100 Hz to 48000 Hz: Opus stores' %s", log) == 0,
                  "-v does not say Opus is resampled to 48 kHz");
        for (int k = 0; k < 4; k++) {
            float *ref = NULL, *y = NULL;
            SF_INFO ri;
            stem_path(path, sizeof path, "lw", "lossy", k);
            int64_t nr = read_all(path, &ref, &ri);
            snprintf(path, sizeof path, "%s/l%s/bandsplit4/lossy/%s.%s", dir, fmts[f], bands[k], fmts[f]);
            int rate = 0;
            int64_t ny = read_ss(path, &y, &rate);
            int64_t want = opus ? ss_resampled_length(n, 44100, 48000) : n, have = nr;
            if (nr == n && ny == want && opus) {
                /* the reference at 48 kHz, through the project's resampler */
                ss_resampler *rs = NULL;
                ss_error err = {0};
                int64_t cap = want + 64, got = 0;
                float *r48 = malloc(sizeof(float) * 2 * (size_t)cap);
                if (r48 && ss_resampler_new(2, 44100, 48000, n, &rs, &err) == SS_OK &&
                    ss_resampler_push(rs, ref, n, r48, cap, &got, &err) == SS_OK && got == want) {
                    free(ref);
                    ref = r48;
                    r48 = NULL;
                    have = got;
                }
                free(r48);
                ss_resampler_free(rs);
            }
            double energy = 0;
            for (int64_t i = 0; ref && i < 2 * (have < want ? have : want); i++)
                energy += (double)ref[i] * ref[i];
            double c0 = have == want && ny == want ? correlation(ref, y, want, 0) : 0;
            double c1 = have == want && ny == want ? correlation(ref, y, want, 1) : 0;
            free(ref);
            free(y);
            CHECK(rate == (opus ? 48000 : 44100), "%s: %d Hz", path, rate);
            CHECK(ny == want, "%s: %lld frames, the input has %lld (want %lld)", path, (long long)ny, (long long)n,
                  (long long)want);
            /* stems with content (RMS above -40 dBFS) follow the float stem */
            if (energy / (2.0 * (double)want) > 1e-4)
                CHECK(c0 > 0.98 && c1 > 0.98, "%s: correlation with the float stem %.4f, %.4f", path, c0, c1);
        }
    }
}

/* --clip applies before a lossy encoder: a mixture at about 3.5 gives stems
 * beyond full scale; with rescale the decoded MP3 stems stay within it (the
 * codec's own overshoot aside: measured 0.991), with none they do not
 * (measured 1.447). */
static void test_clip_rescale_applies_before_mp3(void)
{
    char mix[1200], path[1400];
    snprintf(mix, sizeof mix, "%s/loud.wav", dir);
    CHECK(write_mix(mix, 44100, 2, 2 * 44100, 3.5, SF_FORMAT_WAV | SF_FORMAT_FLOAT) == 0, "write");
    static const char *const clip[] = {"rescale", "none"};
    float peak[2] = {0, 0};
    for (int c = 0; c < 2; c++) {
        int rc = run("%s -q -m %s --segment 1 --format mp3 --clip %s -o %s/cl%s %s", bin, model, clip[c], dir,
                     clip[c], mix);
        CHECK(rc == 0, "--clip %s: exit %d", clip[c], rc);
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof path, "%s/cl%s/bandsplit4/loud/%s.mp3", dir, clip[c], bands[k]);
            float *y = NULL;
            int rate = 0;
            int64_t ny = read_ss(path, &y, &rate);
            for (int64_t i = 0; i < 2 * ny; i++)
                peak[c] = fmaxf(peak[c], fabsf(y[i]));
            free(y);
            CHECK(ny == 2 * 44100, "%s: %lld frames", path, (long long)ny);
        }
    }
    printf("# decoded MP3 stem peaks: --clip rescale %.3f, --clip none %.3f\n", peak[0], peak[1]);
    CHECK(peak[0] <= 1.02f, "--clip rescale: decoded MP3 stems peak at %.3f", peak[0]);
    CHECK(peak[1] >= 1.1f, "--clip none: decoded MP3 stems peak at %.3f only (the mixture is too quiet)", peak[1]);
}

/* --bitrate: usage errors for a lossless format or a rate out of range (64). */
static void test_bitrate_usage_errors(void)
{
    char mix[1200];
    snprintf(mix, sizeof mix, "%s/lossy.wav", dir);
    CHECK(run("%s -q -m %s --bitrate 128 -o %s/bw %s 2>/dev/null", bin, model, dir, mix) == 64, "wav + --bitrate");
    CHECK(run("%s -q -m %s --format mp3 --bitrate 500 -o %s/bw %s 2>/dev/null", bin, model, dir, mix) == 64,
          "mp3 at 500 kbit/s");
    CHECK(run("%s -q -m %s --format opus --bitrate 600 -o %s/bw %s 2>/dev/null", bin, model, dir, mix) == 64,
          "opus stereo at 600 kbit/s");
    CHECK(run("%s -q -m %s --format aac -o %s/bw %s 2>/dev/null", bin, model, dir, mix) == 64, "--format aac");
    struct stat sb;
    CHECK(stat(mix, &sb) == 0 && run("test -d %s/bw", dir) != 0, "an output folder was made");
}

int main(void)
{
    bin = getenv("STEMSPLIT");
    root = getenv("SS_ROOT");
    if (!bin || !root) {
        printf("SKIP e2e: STEMSPLIT and SS_ROOT are set by make check\n");
        return 0;
    }
    snprintf(model, sizeof model, "%s/models/bandsplit/bandsplit4.safetensors", root);
    if (!mkdtemp(dir)) {
        printf("FAIL setup: mkdtemp\n");
        return 1;
    }
    RUN(test_stems_sum_to_mixture_f32);
    RUN(test_template_and_json_report);
    RUN(test_48k_input_comes_back_at_48k);
    RUN(test_mono_input_two_stems_and_stems_subset);
    RUN(test_stdin_input);
    RUN(test_silence_gives_silence_not_nan);
    RUN(test_clip_rescale_scales_all_stems_together);
    RUN(test_clip_rescale_late_peak);
    RUN(test_clip_rescale_running_scale);
    RUN(test_clip_rescale_quiet_is_untouched);
    RUN(test_model_without_normalisation_gets_samples_unchanged);
    RUN(test_lossy_formats_decode_back_to_input_length);
    RUN(test_clip_rescale_applies_before_mp3);
    RUN(test_bitrate_usage_errors);
    run("rm -rf %s", dir);
    return test_summary();
}

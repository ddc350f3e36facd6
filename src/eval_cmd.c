/* eval_cmd.c - `stemsplit eval` (see eval_cmd.h and stemsplit(1), EVALUATION). */
#include "eval_cmd.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audio.h"
#include "clock.h"
#include "error.h"
#include "eval.h"

#define MAX_STEMS SS_EVAL_MAX_SOURCES

typedef struct stem_file {
    char *name;   /* "vocals" */
    char *path;   /* "REF/vocals.wav" */
} stem_file;

typedef struct stem_list {
    stem_file *v;
    int n;
} stem_list;

typedef struct track {
    char *name;
    char *ref_dir, *est_dir;
    stem_list ref, est;
    int rate, channels;
    int64_t length;
    ss_eval_scores *scores;
    double seconds;           /* time spent scoring */
    double sep_audio, sep_wall; /* -m: the separation's audio and wall seconds (0: none) */
} track;

static void stems_free(stem_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].path);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cmp_stem(const void *a, const void *b)
{
    return strcmp(((const stem_file *)a)->name, ((const stem_file *)b)->name);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The NAME.wav / NAME.flac files of dir (not "mixture"), sorted by name.
 * A name present twice (NAME.wav and NAME.flac) is an error. */
static ss_status list_stems(const char *dir, stem_list *out, ss_error *err)
{
    out->v = NULL;
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return ss_fail(err, SS_E_NOINPUT, "%s: cannot open the folder: %s", dir, strerror(errno));
    ss_status st = SS_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (nm[0] == '.')
            continue;
        const char *dot = strrchr(nm, '.');
        if (!dot || dot == nm || (strcasecmp(dot, ".wav") != 0 && strcasecmp(dot, ".flac") != 0))
            continue;
        size_t len = (size_t)(dot - nm);
        if (len == 7 && strncmp(nm, "mixture", 7) == 0)
            continue;
        char *path = join(dir, nm);
        if (!path) {
            st = ss_fail(err, SS_E_NOMEM, "%s: out of memory", dir);
            break;
        }
        if (is_dir(path)) {
            free(path);
            continue;
        }
        for (int i = 0; i < out->n; i++)
            if (strlen(out->v[i].name) == len && strncmp(out->v[i].name, nm, len) == 0) {
                st = ss_fail(err, SS_E_DATA, "%s: stem '%s' is there twice (%s and %s)", dir, out->v[i].name,
                             out->v[i].path, path);
                break;
            }
        if (st == SS_OK && out->n >= MAX_STEMS)
            st = ss_fail(err, SS_E_DATA, "%s: more than %d stems", dir, MAX_STEMS);
        stem_file *nv = st == SS_OK ? realloc(out->v, sizeof *nv * (size_t)(out->n + 1)) : NULL;
        char *name = st == SS_OK ? strndup(nm, len) : NULL;
        if (st == SS_OK && (!nv || !name))
            st = ss_fail(err, SS_E_NOMEM, "%s: out of memory", dir);
        if (nv)
            out->v = nv;
        if (st != SS_OK) {
            free(path);
            free(name);
            break;
        }
        out->v[out->n].name = name;
        out->v[out->n].path = path;
        out->n++;
    }
    closedir(d);
    if (st != SS_OK) {
        stems_free(out);
        return st;
    }
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_stem);
    return SS_OK;
}

/* Open every stem's header: same rate and channels across references and
 * estimates, every reference stem estimated and no estimate without one. */
static ss_status check_track(track *t, ss_error *err)
{
    ss_status st = list_stems(t->ref_dir, &t->ref, err);
    if (st == SS_OK)
        st = list_stems(t->est_dir, &t->est, err);
    if (st != SS_OK)
        return st;
    if (t->ref.n == 0)
        return ss_fail(err, SS_E_NOINPUT, "%s: no reference stems (NAME.wav or NAME.flac)", t->ref_dir);
    for (int i = 0; i < t->ref.n; i++) {
        int found = 0;
        for (int j = 0; j < t->est.n; j++)
            found |= strcmp(t->ref.v[i].name, t->est.v[j].name) == 0;
        if (!found)
            return ss_fail(err, SS_E_DATA, "%s: no estimate of stem '%s' (%s.wav or %s.flac) for %s", t->est_dir,
                           t->ref.v[i].name, t->ref.v[i].name, t->ref.v[i].name, t->ref.v[i].path);
    }
    for (int j = 0; j < t->est.n; j++) {
        int found = 0;
        for (int i = 0; i < t->ref.n; i++)
            found |= strcmp(t->ref.v[i].name, t->est.v[j].name) == 0;
        if (!found)
            return ss_fail(err, SS_E_DATA, "%s: stem '%s' has no reference in %s", t->est.v[j].path,
                           t->est.v[j].name, t->ref_dir);
    }
    for (int side = 0; side < 2; side++) {
        const stem_list *l = side ? &t->est : &t->ref;
        for (int i = 0; i < l->n; i++) {
            ss_audio_reader *r = NULL;
            ss_audio_info info;
            st = ss_audio_open(l->v[i].path, &r, &info, err);
            if (st != SS_OK)
                return st;
            ss_audio_close(r);
            if (side == 0 && i == 0) {
                t->rate = info.samplerate;
                t->channels = info.channels;
                continue;
            }
            if (info.samplerate != t->rate)
                return ss_fail(err, SS_E_DATA, "%s: sample rate %d Hz, but %s has %d Hz", l->v[i].path,
                               info.samplerate, t->ref.v[0].path, t->rate);
            if (info.channels != t->channels)
                return ss_fail(err, SS_E_DATA, "%s: %d channel(s), but %s has %d", l->v[i].path, info.channels,
                               t->ref.v[0].path, t->channels);
        }
    }
    return SS_OK;
}

/* The whole file, planar: ch[c] gets *frames samples (malloc'd). */
static ss_status read_planar(const char *path, int channels, float **ch, int64_t *frames, ss_error *err)
{
    ss_audio_reader *r = NULL;
    ss_audio_info info;
    ss_status st = ss_audio_open(path, &r, &info, err);
    if (st != SS_OK)
        return st;
    const int64_t block = 65536;
    int64_t cap = info.frames > 0 ? info.frames : block, n = 0;
    float *buf = malloc(sizeof(float) * (size_t)(block * channels));
    for (int c = 0; c < channels; c++)
        ch[c] = malloc(sizeof(float) * (size_t)(cap > 0 ? cap : 1));
    for (int c = 0; c < channels; c++)
        if (!ch[c])
            st = ss_fail(err, SS_E_NOMEM, "%s: out of memory for %lld frames", path, (long long)cap);
    if (!buf && st == SS_OK)
        st = ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    while (st == SS_OK) {
        int64_t got = 0;
        st = ss_audio_read(r, buf, block, &got, err);
        if (st != SS_OK || got == 0)
            break;
        if (n + got > cap) {
            int64_t ncap = (n + got) * 2;
            for (int c = 0; c < channels && st == SS_OK; c++) {
                float *p = realloc(ch[c], sizeof(float) * (size_t)ncap);
                if (!p)
                    st = ss_fail(err, SS_E_NOMEM, "%s: out of memory for %lld frames", path, (long long)ncap);
                else
                    ch[c] = p;
            }
            cap = ncap;
        }
        for (int64_t i = 0; i < got && st == SS_OK; i++)
            for (int c = 0; c < channels; c++)
                ch[c][n + i] = buf[i * channels + c];
        n += got;
    }
    free(buf);
    ss_audio_close(r);
    if (st != SS_OK) {
        for (int c = 0; c < channels; c++) {
            free(ch[c]);
            ch[c] = NULL;
        }
        return st;
    }
    *frames = n;
    return SS_OK;
}

static ss_status score_track(track *t, ss_error *err)
{
    const int nsrc = t->ref.n, nch = t->channels;
    float **ref = calloc((size_t)(nsrc * nch), sizeof *ref), **est = calloc((size_t)(nsrc * nch), sizeof *est);
    int64_t est_len[MAX_STEMS];
    ss_status st = (ref && est) ? SS_OK : ss_fail(err, SS_E_NOMEM, "%s: out of memory", t->name);
    t->length = -1;
    for (int i = 0; i < nsrc && st == SS_OK; i++) {
        int64_t n = 0;
        st = read_planar(t->ref.v[i].path, nch, ref + i * nch, &n, err);
        if (st != SS_OK)
            break;
        if (t->length < 0)
            t->length = n;
        else if (n != t->length)
            st = ss_fail(err, SS_E_DATA, "%s: %lld frames, but %s has %lld", t->ref.v[i].path, (long long)n,
                         t->ref.v[0].path, (long long)t->length);
        int j = 0;
        while (strcmp(t->est.v[j].name, t->ref.v[i].name) != 0)
            j++;
        if (st == SS_OK)
            st = read_planar(t->est.v[j].path, nch, est + i * nch, &est_len[i], err);
    }
    if (st == SS_OK && t->length == 0)
        st = ss_fail(err, SS_E_DATA, "%s: the reference stems are empty", t->ref.v[0].path);
    if (st == SS_OK) {
        double t0 = ss_seconds();
        st = ss_eval_bss((const float *const *)ref, (const float *const *)est, nsrc, nch, t->length, est_len,
                         t->rate, t->rate, &t->scores, err);
        t->seconds = ss_seconds() - t0;
        if (st != SS_OK && err) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            ss_error_clear(err);
            st = ss_fail(err, st, "%s: %s", t->ref_dir, msg);
        }
    }
    for (int i = 0; ref && est && i < nsrc * nch; i++) {
        free(ref[i]);
        free(est[i]);
    }
    free(ref);
    free(est);
    return st;
}

/* ---- output ---------------------------------------------------------------------------- */

static const char *metric_names[SS_EVAL_NMETRICS] = {"SDR", "ISR", "SIR", "SAR"};
#define NCOLS (SS_EVAL_NMETRICS + 1) /* + nSDR */

static double track_value(const track *t, int stem, int col)
{
    return col < SS_EVAL_NMETRICS ? t->scores->median[col][stem] : t->scores->nsdr[stem];
}

static void print_value(FILE *f, double v)
{
    if (isnan(v))
        fprintf(f, " %8s", "-");
    else
        fprintf(f, " %8.3f", v);
}

/* names of all stems over all tracks, sorted */
static int all_stems(const track *tr, int ntr, char ***out)
{
    char **names = NULL;
    int n = 0;
    for (int t = 0; t < ntr; t++)
        for (int i = 0; i < tr[t].ref.n; i++) {
            int have = 0;
            for (int k = 0; k < n; k++)
                have |= strcmp(names[k], tr[t].ref.v[i].name) == 0;
            if (have)
                continue;
            char **nv = realloc(names, sizeof *nv * (size_t)(n + 1));
            if (!nv) {
                free(names);
                return -1;
            }
            names = nv;
            names[n++] = tr[t].ref.v[i].name;
        }
    if (n)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
}

/* agg[kind][stem][col], kind 0: SiSEC median over tracks, 1: demucs mean over
 * tracks (of the per-track medians; undefined tracks left out); stem nstem:
 * the mean over stems. */
static int aggregate(const track *tr, int ntr, char **names, int nstem, double *agg)
{
    double *v = malloc(sizeof(double) * (size_t)(ntr > 0 ? ntr : 1));
    if (!v)
        return -1;
    for (int kind = 0; kind < 2; kind++) {
        for (int col = 0; col < NCOLS; col++) {
            double sum = 0;
            int cnt = 0;
            for (int s = 0; s < nstem; s++) {
                int m = 0;
                for (int t = 0; t < ntr; t++)
                    for (int i = 0; i < tr[t].ref.n; i++)
                        if (strcmp(tr[t].ref.v[i].name, names[s]) == 0)
                            v[m++] = track_value(&tr[t], i, col);
                double a = kind == 0 ? ss_eval_nanmedian(v, m) : ss_eval_nanmean(v, m);
                agg[((int64_t)kind * (nstem + 1) + s) * NCOLS + col] = a;
                if (!isnan(a)) {
                    sum += a;
                    cnt++;
                }
            }
            agg[((int64_t)kind * (nstem + 1) + nstem) * NCOLS + col] = cnt ? sum / cnt : NAN;
        }
    }
    free(v);
    return 0;
}

static void print_table(FILE *f, const track *tr, int ntr, char **names, int nstem, const double *agg)
{
    int w = 5;
    for (int t = 0; t < ntr; t++)
        if ((int)strlen(tr[t].name) > w)
            w = (int)strlen(tr[t].name);
    if (w > 40)
        w = 40;
    int sw = 4;
    for (int s = 0; s < nstem; s++)
        if ((int)strlen(names[s]) > sw)
            sw = (int)strlen(names[s]);
    fprintf(f, "%-*s  %-*s %8s %8s %8s %8s %8s\n", w, "track", sw, "stem", "SDR", "ISR", "SIR", "SAR", "nSDR");
    for (int t = 0; t < ntr; t++)
        for (int i = 0; i < tr[t].ref.n; i++) {
            fprintf(f, "%-*.*s  %-*s", w, w, tr[t].name, sw, tr[t].ref.v[i].name);
            for (int col = 0; col < NCOLS; col++)
                print_value(f, track_value(&tr[t], i, col));
            fputc('\n', f);
        }
    static const char *kinds[2] = {"median over tracks (SiSEC)", "mean over tracks (demucs)"};
    for (int kind = 0; kind < 2; kind++) {
        fprintf(f, "\n%s, of per-track medians over 1 s frames:\n", kinds[kind]);
        for (int s = 0; s <= nstem; s++) {
            fprintf(f, "%-*s  %-*s", w, "", sw, s < nstem ? names[s] : "all");
            for (int col = 0; col < NCOLS; col++)
                print_value(f, agg[((int64_t)kind * (nstem + 1) + s) * NCOLS + col]);
            fputc('\n', f);
        }
    }
}

static cJSON *num_or_null(double v) { return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v); }

static cJSON *build_json(const track *tr, int ntr, char **names, int nstem, const double *agg, double wall)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "version", "stemsplit " SS_VERSION);
    cJSON_AddStringToObject(root, "metrics",
                            "BSSEval v4 as museval (images mode, 512-tap filters once per track, "
                            "median over 1 s frames) and the MDX SDR (nSDR, demucs new_sdr)");
    cJSON_AddNumberToObject(root, "window_seconds", 1.0);
    cJSON_AddNumberToObject(root, "hop_seconds", 1.0);
    cJSON_AddNumberToObject(root, "filter_length", SS_EVAL_FILTER_LEN);
    cJSON *tracks = cJSON_AddArrayToObject(root, "tracks");
    for (int t = 0; t < ntr && tracks; t++) {
        const track *k = &tr[t];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(tracks, o);
        cJSON_AddStringToObject(o, "name", k->name);
        cJSON_AddStringToObject(o, "reference", k->ref_dir);
        cJSON_AddStringToObject(o, "estimate", k->est_dir);
        cJSON_AddNumberToObject(o, "samplerate", k->rate);
        cJSON_AddNumberToObject(o, "channels", k->channels);
        cJSON_AddNumberToObject(o, "seconds", (double)k->length / k->rate);
        cJSON_AddNumberToObject(o, "frames", k->scores->nframes);
        cJSON_AddBoolToObject(o, "bsseval_defined", k->scores->bss_defined);
        cJSON_AddNumberToObject(o, "eval_seconds", k->seconds);
        if (k->sep_wall > 0) {
            cJSON *sp = cJSON_AddObjectToObject(o, "separation");
            if (sp) {
                cJSON_AddNumberToObject(sp, "audio_seconds", k->sep_audio);
                cJSON_AddNumberToObject(sp, "wall_seconds", k->sep_wall);
                cJSON_AddNumberToObject(sp, "rtf", k->sep_audio / k->sep_wall);
            }
        }
        cJSON *stems = cJSON_AddObjectToObject(o, "stems");
        for (int i = 0; i < k->ref.n && stems; i++) {
            cJSON *so = cJSON_AddObjectToObject(stems, k->ref.v[i].name);
            if (!so)
                break;
            for (int col = 0; col < NCOLS; col++)
                cJSON_AddItemToObject(so, col < SS_EVAL_NMETRICS ? metric_names[col] : "nSDR",
                                      num_or_null(track_value(k, i, col)));
            cJSON *fr = cJSON_AddObjectToObject(so, "frames");
            for (int m = 0; m < SS_EVAL_NMETRICS && fr; m++) {
                cJSON *a = cJSON_AddArrayToObject(fr, metric_names[m]);
                for (int w = 0; w < k->scores->nframes && a; w++)
                    cJSON_AddItemToArray(a, num_or_null(ss_eval_frame(k->scores, m, i, w)));
            }
        }
    }
    cJSON *ag = cJSON_AddObjectToObject(root, "aggregate");
    static const char *kinds[2] = {"sisec", "demucs"};
    for (int kind = 0; kind < 2 && ag; kind++) {
        cJSON *ko = cJSON_AddObjectToObject(ag, kinds[kind]);
        for (int s = 0; s <= nstem && ko; s++) {
            cJSON *so = cJSON_AddObjectToObject(ko, s < nstem ? names[s] : "all");
            for (int col = 0; col < NCOLS && so; col++)
                cJSON_AddItemToObject(so, col < SS_EVAL_NMETRICS ? metric_names[col] : "nSDR",
                                      num_or_null(agg[((int64_t)kind * (nstem + 1) + s) * NCOLS + col]));
        }
    }
    cJSON_AddNumberToObject(root, "wall_seconds", wall);
    return root;
}

static ss_status write_json(cJSON *doc, const char *path, ss_error *err)
{
    char *text = doc ? cJSON_Print(doc) : NULL;
    if (!text)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory building the report", path);
    ss_status s = SS_OK;
    if (strcmp(path, "-") == 0) {
        if (fputs(text, stdout) < 0 || fputc('\n', stdout) < 0 || fflush(stdout) != 0)
            s = ss_fail(err, SS_E_IO, "standard output: cannot write the report: %s", strerror(errno));
        free(text);
        return s;
    }
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= sizeof tmp) {
        free(text);
        return ss_fail(err, SS_E_CANTCREAT, "%s: path too long", path);
    }
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        s = ss_fail(err, SS_E_CANTCREAT, "%s: cannot create the report: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(text);
        return s;
    }
    int bad = fputs(text, f) < 0 || fputc('\n', f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        s = ss_fail(err, SS_E_IO, "%s: cannot write the report: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(text);
    return s;
}


/* ---- --plot: SDR per frame, one panel per track, one line per stem (plain SVG) ------------ */

static const char *plot_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static void plot_svg(FILE *f, const track *tr, int ntr)
{
    const int W = 900, PH = 260, L = 60, R = 130, TOP = 30, B = 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, ntr * (PH + TOP + B));
    for (int t = 0; t < ntr; t++) {
        const track *k = &tr[t];
        const ss_eval_scores *sc = k->scores;
        int y0 = t * (PH + TOP + B) + TOP, pw = W - L - R;
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < k->ref.n; i++)
            for (int w = 0; w < sc->nframes; w++) {
                double v = ss_eval_frame(sc, SS_EVAL_SDR, i, w);
                if (!isnan(v)) {
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
            }
        if (!(lo <= hi)) {
            lo = 0;
            hi = 1;
        }
        lo = floor(lo / 5) * 5;
        hi = ceil(hi / 5) * 5;
        if (hi <= lo)
            hi = lo + 5;
        double secs = (double)sc->hop * (sc->nframes > 1 ? sc->nframes - 1 : 1) / k->rate;
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">", L, y0 - 10);
        xml_text(f, k->name);
        fprintf(f, " \xe2\x80\x94 SDR per %g s frame (dB)</text>\n", (double)sc->window / k->rate);
        for (double g = lo; g <= hi + 1e-9; g += 5) {
            double y = y0 + PH - (g - lo) / (hi - lo) * PH;
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                       "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    L, L + pw, y, y, L - 6, y + 4, g);
        }
        for (int m = 0; m <= 4; m++) {
            double x = L + pw * m / 4.0;
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f s</text>\n", x, y0 + PH + 16,
                    secs * m / 4.0 + (double)sc->window / (2.0 * k->rate));
        }
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", L, y0, pw,
                PH);
        for (int i = 0; i < k->ref.n; i++) {
            const char *col = plot_colors[i % 10];
            int open = 0; /* points in the polyline being written */
            double lx = 0, ly = 0;
            for (int w = 0; w <= sc->nframes; w++) {
                double v = w < sc->nframes ? ss_eval_frame(sc, SS_EVAL_SDR, i, w) : NAN;
                if (isnan(v)) {
                    if (open)
                        fputs("\"/>\n", f);
                    if (open == 1) /* a lone frame: a dot */
                        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n", lx, ly, col);
                    open = 0;
                    continue;
                }
                lx = L + (sc->nframes > 1 ? pw * (double)w / (sc->nframes - 1) : pw / 2.0);
                ly = y0 + PH - (v - lo) / (hi - lo) * PH;
                if (!open)
                    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", col);
                fprintf(f, "%.1f,%.1f ", lx, ly);
                open++;
            }
            fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>"
                       "<text x=\"%d\" y=\"%d\">",
                    L + pw + 12, L + pw + 32, y0 + 12 + 18 * i, y0 + 12 + 18 * i, col, L + pw + 38,
                    y0 + 16 + 18 * i);
            xml_text(f, k->ref.v[i].name);
            fputs("</text>\n", f);
        }
    }
    fputs("</svg>\n", f);
}

static ss_status write_plot(const track *tr, int ntr, const char *path, ss_error *err)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= sizeof tmp)
        return ss_fail(err, SS_E_CANTCREAT, "%s: path too long", path);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        ss_status s = ss_fail(err, SS_E_CANTCREAT, "%s: cannot create the plot: %s", path, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return s;
    }
    plot_svg(f, tr, ntr);
    int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        ss_status s = ss_fail(err, SS_E_IO, "%s: cannot write the plot: %s", path, strerror(errno));
        unlink(tmp);
        return s;
    }
    return SS_OK;
}


/* ---- -m MODEL: separate each track's mixture first ----------------------------------------- */

typedef struct sep_opts {
    const char *model, *device, *threads;
} sep_opts;

/* REF/TRACK/mixture.wav or .flac */
static char *find_mixture(const char *dir)
{
    static const char *names[] = {"mixture.wav", "mixture.flac", "mixture.WAV", "mixture.FLAC"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = join(dir, names[i]);
        if (!p)
            return NULL;
        if (access(p, R_OK) == 0)
            return p;
        free(p);
    }
    return NULL;
}

/* Run this program on the track's mixture (-q -m MODEL -o EST_DIR/TRACK
 * --filename {stem}.{ext} --sample-format f32 --report-json TMP) and take the
 * audio and wall seconds from its report. */
static ss_status separate_track(track *t, const sep_opts *so, ss_error *err)
{
    char *mix = find_mixture(t->ref_dir);
    if (!mix)
        return ss_fail(err, SS_E_NOINPUT, "%s: no mixture.wav or mixture.flac to separate", t->ref_dir);
    char rep[] = "/tmp/stemsplit-eval-XXXXXX";
    int fd = mkstemp(rep);
    if (fd < 0) {
        free(mix);
        return ss_fail(err, SS_E_CANTCREAT, "%s: cannot create a temporary file: %s", rep, strerror(errno));
    }
    close(fd);
    const char *args[24];
    int n = 0;
    args[n++] = "stemsplit";
    args[n++] = "-q";
    args[n++] = "-m";
    args[n++] = so->model;
    if (so->device) {
        args[n++] = "-d";
        args[n++] = so->device;
    }
    if (so->threads) {
        args[n++] = "-j";
        args[n++] = so->threads;
    }
    args[n++] = "-o";
    args[n++] = t->est_dir;
    args[n++] = "--filename";
    args[n++] = "{stem}.{ext}";
    args[n++] = "--sample-format";
    args[n++] = "f32";
    args[n++] = "--report-json";
    args[n++] = rep;
    args[n++] = "--";
    args[n++] = mix;
    args[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", (char *const *)args);
        execvp("stemsplit", (char *const *)args);
        _exit(127);
    }
    ss_status st = SS_OK;
    int status = 0;
    if (pid < 0)
        st = ss_fail(err, SS_E_INTERNAL, "%s: cannot start the separation: %s", mix, strerror(errno));
    else if (waitpid(pid, &status, 0) < 0)
        st = ss_fail(err, SS_E_INTERNAL, "%s: waiting for the separation: %s", mix, strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 70;
        st = ss_fail(err, code == 65 ? SS_E_DATA : code == 66 ? SS_E_NOINPUT : code == 69 ? SS_E_DEVICE
                                                                 : code == 64 ? SS_E_USAGE : SS_E_INTERNAL,
                     "%s: separating with %s failed (status %d)", mix, so->model, code);
    }
    if (st == SS_OK) {
        FILE *f = fopen(rep, "rb");
        char *text = NULL;
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
            (text = malloc((size_t)len + 1)) && fread(text, 1, (size_t)len, f) == (size_t)len) {
            text[len] = '\0';
            cJSON *doc = cJSON_Parse(text);
            const cJSON *tot = cJSON_GetObjectItem(doc, "total");
            const cJSON *a = cJSON_GetObjectItem(tot, "audio_seconds"), *w = cJSON_GetObjectItem(tot, "wall_seconds");
            if (cJSON_IsNumber(a) && cJSON_IsNumber(w)) {
                t->sep_audio = a->valuedouble;
                t->sep_wall = w->valuedouble;
            }
            cJSON_Delete(doc);
        }
        free(text);
        if (f)
            fclose(f);
    }
    unlink(rep);
    free(mix);
    return st;
}

/* ---- the subcommand -------------------------------------------------------------------- */

static void eval_usage(FILE *f)
{
    fprintf(f,
            "Usage: stemsplit eval [--report-json FILE] [--plot FILE.svg] [-q] [-m MODEL] REF_DIR EST_DIR\n"
            "Score estimated stems against reference stems: BSSEval v4 SDR, ISR, SIR, SAR as museval\n"
            "computes them (median over 1 s frames) and the MDX challenge SDR (nSDR).\n"
            "REF_DIR and EST_DIR hold NAME.wav / NAME.flac stems of one track, matched by NAME, or\n"
            "one folder per track (MUSDB18 layout: REF_DIR/TRACK/{mixture,drums,...}.wav with the\n"
            "estimates in EST_DIR/TRACK/); a mixture stem is not scored.\n"
            "\n"
            "      --report-json FILE   everything, per frame too, as JSON (- for standard output;\n"
            "                           the table then goes to standard error)\n"
            "      --plot FILE.svg      SDR per frame over time, one line per stem (plain SVG)\n"
            "  -m, --model MODEL        first separate each track's mixture.wav with MODEL into\n"
            "                           EST_DIR/TRACK/ (EST_DIR alone for one track), then score it;\n"
            "                           the real-time factor of the separation is reported too\n"
            "  -d, --device DEV, -j, --threads N   for the separation (as stemsplit's)\n"
            "  -q, --quiet              no table\n"
            "  -h, --help               print this help and exit\n"
            "\n"
            "Exit status: 0 ok, 64 usage, 65 stems missing, extra or not matching, 66 input missing,\n"
            "70 internal error, 73 cannot create the report, 74 I/O error.  See stemsplit(1).\n");
}

static int eval_usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "stemsplit eval: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    fprintf(stderr, "Try 'stemsplit eval --help' for more information.\n");
    return 64;
}

static int has_stems(const char *dir)
{
    stem_list l;
    ss_error e = {0};
    if (list_stems(dir, &l, &e) != SS_OK)
        return 0;
    int n = l.n;
    stems_free(&l);
    return n > 0;
}

static void tracks_free(track *tr, int n)
{
    for (int i = 0; i < n; i++) {
        free(tr[i].name);
        free(tr[i].ref_dir);
        free(tr[i].est_dir);
        stems_free(&tr[i].ref);
        stems_free(&tr[i].est);
        ss_eval_scores_free(tr[i].scores);
    }
    free(tr);
}

/* The tracks: REF_DIR itself when it holds stems, else each sub-folder that does. */
static ss_status find_tracks(const char *ref_dir, const char *est_dir, int separate, track **out, int *nout,
                             ss_error *err)
{
    *out = NULL;
    *nout = 0;
    if (!is_dir(ref_dir))
        return ss_fail(err, SS_E_NOINPUT, "%s: not a folder", ref_dir);
    if (!is_dir(est_dir))
        return ss_fail(err, SS_E_NOINPUT, "%s: not a folder", est_dir);
    track *tr = NULL;
    int n = 0;
    if (has_stems(ref_dir)) {
        tr = calloc(1, sizeof *tr);
        if (!tr)
            return ss_fail(err, SS_E_NOMEM, "out of memory");
        const char *base = strrchr(ref_dir, '/');
        char *nm = strdup(base && base[1] ? base + 1 : ref_dir);
        tr->name = nm;
        tr->ref_dir = strdup(ref_dir);
        tr->est_dir = strdup(est_dir);
        n = 1;
        if (!tr->name || !tr->ref_dir || !tr->est_dir) {
            tracks_free(tr, n);
            return ss_fail(err, SS_E_NOMEM, "out of memory");
        }
        *out = tr;
        *nout = n;
        return SS_OK;
    }
    DIR *d = opendir(ref_dir);
    if (!d)
        return ss_fail(err, SS_E_NOINPUT, "%s: cannot open the folder: %s", ref_dir, strerror(errno));
    char **subs = NULL;
    int ns = 0;
    ss_status st = SS_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && st == SS_OK) {
        if (e->d_name[0] == '.')
            continue;
        char *p = join(ref_dir, e->d_name);
        if (!p) {
            st = ss_fail(err, SS_E_NOMEM, "out of memory");
            break;
        }
        if (is_dir(p) && has_stems(p)) {
            char **nv = realloc(subs, sizeof *nv * (size_t)(ns + 1));
            char *nm = strdup(e->d_name);
            if (!nv || !nm) {
                free(nm);
                if (nv)
                    subs = nv;
                st = ss_fail(err, SS_E_NOMEM, "out of memory");
            } else {
                subs = nv;
                subs[ns++] = nm;
            }
        }
        free(p);
    }
    closedir(d);
    if (st == SS_OK && ns == 0)
        st = ss_fail(err, SS_E_NOINPUT,
                     "%s: no stems (NAME.wav or NAME.flac), and no track folders holding stems", ref_dir);
    if (st == SS_OK) {
        qsort(subs, (size_t)ns, sizeof *subs, cmp_str);
        tr = calloc((size_t)ns, sizeof *tr);
        if (!tr)
            st = ss_fail(err, SS_E_NOMEM, "out of memory");
        for (int i = 0; i < ns && st == SS_OK; i++) {
            tr[i].name = strdup(subs[i]);
            tr[i].ref_dir = join(ref_dir, subs[i]);
            tr[i].est_dir = join(est_dir, subs[i]);
            n = i + 1;
            if (!tr[i].name || !tr[i].ref_dir || !tr[i].est_dir)
                st = ss_fail(err, SS_E_NOMEM, "out of memory");
            else if (!separate && !is_dir(tr[i].est_dir))
                st = ss_fail(err, SS_E_DATA, "%s: no estimates for track '%s' (%s has its references)",
                             tr[i].est_dir, subs[i], tr[i].ref_dir);
        }
    }
    for (int i = 0; i < ns; i++)
        free(subs[i]);
    free(subs);
    if (st != SS_OK) {
        tracks_free(tr, n);
        return st;
    }
    *out = tr;
    *nout = n;
    return SS_OK;
}

int ss_eval_main(int argc, char **argv)
{
    const char *report = NULL, *plot = NULL, *dirs[2] = {NULL, NULL};
    sep_opts so = {NULL, NULL, NULL};
    int quiet = 0, ndirs = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            opts_done = 1;
        } else if (!opts_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            eval_usage(stdout);
            return 0;
        } else if (!opts_done && (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)) {
            quiet = 1;
        } else if (!opts_done && strcmp(a, "--report-json") == 0) {
            if (i + 1 >= argc)
                return eval_usage_error("option '--report-json' needs an argument", NULL);
            report = argv[++i];
        } else if (!opts_done && (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0 || strcmp(a, "-d") == 0 ||
                                  strcmp(a, "--device") == 0 || strcmp(a, "-j") == 0 ||
                                  strcmp(a, "--threads") == 0)) {
            if (i + 1 >= argc)
                return eval_usage_error("an option needs an argument:", a);
            const char *v = argv[++i];
            if (a[1] == 'm' || a[2] == 'm')
                so.model = v;
            else if (a[1] == 'd' || a[2] == 'd')
                so.device = v;
            else
                so.threads = v;
        } else if (!opts_done && strcmp(a, "--plot") == 0) {
            if (i + 1 >= argc)
                return eval_usage_error("option '--plot' needs an argument", NULL);
            plot = argv[++i];
        } else if (!opts_done && strncmp(a, "--plot=", 7) == 0) {
            plot = a + 7;
        } else if (!opts_done && strncmp(a, "--report-json=", 14) == 0) {
            report = a + 14;
        } else if (!opts_done && a[0] == '-' && a[1] != '\0') {
            return eval_usage_error("unknown option", a);
        } else if (ndirs < 2) {
            dirs[ndirs++] = a;
        } else {
            return eval_usage_error("too many arguments: expected REF_DIR EST_DIR, got also", a);
        }
    }
    if (ndirs != 2)
        return eval_usage_error("expected two folders: REF_DIR EST_DIR", NULL);
    if (report && !*report)
        return eval_usage_error("--report-json: empty file name", NULL);
    if (plot && !*plot)
        return eval_usage_error("--plot: empty file name", NULL);

    double t0 = ss_seconds();
    ss_error err = {0};
    track *tr = NULL;
    int ntr = 0;
    if (so.model && !is_dir(dirs[1]) && mkdir(dirs[1], 0777) != 0) {
        fprintf(stderr, "stemsplit eval: %s: cannot create the folder: %s\n", dirs[1], strerror(errno));
        return 73;
    }
    ss_status st = find_tracks(dirs[0], dirs[1], so.model != NULL, &tr, &ntr, &err);
    for (int i = 0; i < ntr && st == SS_OK && so.model; i++) {
        st = separate_track(&tr[i], &so, &err);
        if (st == SS_OK && !quiet && tr[i].sep_wall > 0)
            fprintf(stderr, "stemsplit eval: %s: separated %.1f s of audio in %.1f s, %.1fx realtime\n", tr[i].name,
                    tr[i].sep_audio, tr[i].sep_wall, tr[i].sep_audio / tr[i].sep_wall);
    }
    for (int i = 0; i < ntr && st == SS_OK; i++)
        st = check_track(&tr[i], &err);
    FILE *table = report && strcmp(report, "-") == 0 ? stderr : stdout;
    for (int i = 0; i < ntr && st == SS_OK; i++) {
        st = score_track(&tr[i], &err);
        if (st == SS_OK && !tr[i].scores->bss_defined)
            fprintf(stderr,
                    "stemsplit eval: %s: a reference or estimate stem is silent throughout; BSSEval is "
                    "undefined for this track (museval refuses it), only nSDR is given\n",
                    tr[i].name);
        if (st == SS_OK && tr[i].scores->solve_fallback)
            fprintf(stderr, "stemsplit eval: %s: ill-conditioned references (Cholesky failed, pivoted LU used)\n",
                    tr[i].name);
    }
    char **names = NULL;
    int nstem = 0;
    double *agg = NULL;
    if (st == SS_OK) {
        nstem = all_stems(tr, ntr, &names);
        agg = nstem >= 0 ? malloc(sizeof(double) * 2 * (size_t)(nstem + 1) * NCOLS) : NULL;
        if (!agg || aggregate(tr, ntr, names, nstem, agg) != 0)
            st = ss_fail(&err, SS_E_NOMEM, "out of memory for the aggregates");
    }
    if (st == SS_OK && !quiet) {
        print_table(table, tr, ntr, names, nstem, agg);
        fflush(table);
    }
    double wall = ss_seconds() - t0;
    if (st == SS_OK && report) {
        cJSON *doc = build_json(tr, ntr, names, nstem, agg, wall);
        st = write_json(doc, report, &err);
        cJSON_Delete(doc);
    }
    if (st == SS_OK && plot)
        st = write_plot(tr, ntr, plot, &err);
    if (st == SS_OK && !quiet)
        fprintf(stderr, "stemsplit eval: %d track%s scored in %.1f s\n", ntr, ntr == 1 ? "" : "s", wall);
    if (st != SS_OK)
        fprintf(stderr, "stemsplit eval: %s\n", err.msg);
    free(agg);
    free(names);
    tracks_free(tr, ntr);
    return st == SS_OK ? 0 : ss_exit_code(st);
}

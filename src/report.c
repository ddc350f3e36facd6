/* report.c - per-file and total real-time-factor reports, text and JSON. */
#include "report.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ss_report {
    ss_file_report *files;     /* entries in order added           */
    int n, cap;
    char backend[16];          /* device facts                     */
    char device[128];
    char precision[8];
    int threads;
    char model[SS_MAX_NAME];   /* model facts                      */
    char arch[SS_MAX_NAME];
    char sources[SS_MAX_SOURCES * SS_MAX_NAME];
    unsigned long long parameters;
    int shard_index, shard_count;   /* --shard, 0 when not used    */
    long long shard_inputs;
    struct {                        /* --then: the chained models  */
        char stem[SS_MAX_NAME], name[SS_MAX_NAME], arch[SS_MAX_NAME];
        char sources[SS_MAX_SOURCES * SS_MAX_NAME];
    } chain[SS_MAX_SOURCES];
    int n_chain;
};

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

ss_report *ss_report_new(void) { return calloc(1, sizeof(ss_report)); }

void ss_report_free(ss_report *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        ss_file_report_clear(&r->files[i]);
    free(r->files);
    free(r);
}

void ss_file_report_clear(ss_file_report *f)
{
    free(f->input);
    for (int k = 0; k < f->n_outputs; k++)
        free(f->outputs[k]);
    free(f->outputs);
    for (int k = 0; k < f->n_warnings; k++)
        free(f->warnings[k]);
    free(f->warnings);
    free(f->error);
    free(f->chain);
    memset(f, 0, sizeof *f);
}

ss_status ss_report_add_stage(ss_file_report *f, const ss_stage_report *st)
{
    ss_stage_report *v = realloc(f->chain, sizeof *v * (size_t)(f->n_chain + 1));
    if (!v)
        return SS_E_NOMEM;
    f->chain = v;
    v[f->n_chain++] = *st;
    return SS_OK;
}

static void join_sources(const ss_model_info *info, char *out, size_t size)
{
    out[0] = '\0';
    for (int i = 0; i < info->n_sources; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "", info->sources[i]);
}

void ss_report_add_chain_model(ss_report *r, const char *stem, const ss_model_info *info)
{
    if (r->n_chain >= SS_MAX_SOURCES)
        return;
    snprintf(r->chain[r->n_chain].stem, sizeof r->chain[0].stem, "%s", stem);
    snprintf(r->chain[r->n_chain].name, sizeof r->chain[0].name, "%s", info->name);
    snprintf(r->chain[r->n_chain].arch, sizeof r->chain[0].arch, "%s", info->architecture);
    join_sources(info, r->chain[r->n_chain].sources, sizeof r->chain[0].sources);
    r->n_chain++;
}

void ss_report_set_device(ss_report *r, const ss_device_info *dev, ss_precision prec, int threads)
{
    snprintf(r->backend, sizeof r->backend, "%s", dev->backend);
    snprintf(r->device, sizeof r->device, "%s", dev->name);
    snprintf(r->precision, sizeof r->precision, "%s", ss_precision_name(prec));
    r->threads = threads;
}

void ss_report_set_model(ss_report *r, const ss_model_info *info)
{
    snprintf(r->model, sizeof r->model, "%s", info->name);
    snprintf(r->arch, sizeof r->arch, "%s", info->architecture);
    join_sources(info, r->sources, sizeof r->sources);
    r->parameters = info->parameters;
}

ss_file_report *ss_report_add(ss_report *r, const char *input)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        ss_file_report *f = realloc(r->files, sizeof *f * (size_t)cap);
        if (!f)
            return NULL;
        r->files = f;
        r->cap = cap;
    }
    ss_file_report *f = &r->files[r->n];
    memset(f, 0, sizeof *f);
    f->gain = 1.0;
    if (!(f->input = dupstr(input)))
        return NULL;
    r->n++;
    return f;
}

ss_status ss_report_add_output(ss_file_report *f, const char *path)
{
    char **o = realloc(f->outputs, sizeof *o * (size_t)(f->n_outputs + 1));
    if (!o)
        return SS_E_NOMEM;
    f->outputs = o;
    if (!(o[f->n_outputs] = dupstr(path)))
        return SS_E_NOMEM;
    f->n_outputs++;
    return SS_OK;
}

ss_status ss_report_add_warning(ss_file_report *f, const char *msg)
{
    char **w = realloc(f->warnings, sizeof *w * (size_t)(f->n_warnings + 1));
    if (!w)
        return SS_E_NOMEM;
    f->warnings = w;
    if (!(w[f->n_warnings] = dupstr(msg)))
        return SS_E_NOMEM;
    f->n_warnings++;
    return SS_OK;
}

ss_file_report *ss_report_file(ss_report *r, int i)
{
    return i >= 0 && i < r->n ? &r->files[i] : NULL;
}

void ss_report_set_shard(ss_report *r, int index, int count, long long inputs)
{
    r->shard_index = index;
    r->shard_count = count;
    r->shard_inputs = inputs;
}

void ss_report_set_error(ss_file_report *f, ss_file_status st, const char *msg)
{
    f->status = st;
    free(f->error);
    f->error = msg ? dupstr(msg) : NULL;
}

int ss_report_count(const ss_report *r, ss_file_status st)
{
    int n = 0;
    for (int i = 0; i < r->n; i++)
        n += r->files[i].status == st;
    return n;
}

static double rtf(double audio, double wall) { return wall > 0 ? audio / wall : 0.0; }

void ss_report_print_stats(const char *input, const char *model, const ss_track_stat *st, int n, FILE *out)
{
    if (n <= 0)
        return;
    fprintf(out, "stemsplit: %s: model %s:", input, model);
    for (int k = 0; k < n; k++)
        fprintf(out, "%s %s %.2f%s%s", k ? "," : "", st[k].what, st[k].value, st[k].unit[0] == '%' ? "" : " ",
                st[k].unit);
    fputc('\n', out);
}

void ss_report_print_file(const ss_report *r, const ss_file_report *f, FILE *out)
{
    if (f->status == SS_FILE_SKIPPED) {
        fprintf(out, "%s: skipped (%s)\n", f->input, f->error ? f->error : "");
        return;
    }
    if (f->status == SS_FILE_FAILED) {
        fprintf(out, "%s: failed: %s\n", f->input, f->error ? f->error : "");
        return;
    }
    fprintf(out, "%s: %.1f s of audio in %.2f s, %.1fx realtime (%s %s, %s; decode %.2f s, infer %.2f s, "
            "encode %.2f s)", f->input, f->audio_seconds, f->wall_seconds, rtf(f->audio_seconds, f->wall_seconds),
            r->backend, r->precision, r->model, f->decode, f->infer, f->encode);
    if (f->gain < 1.0)
        fprintf(out, "; stems scaled by %.3g to stay below full scale", f->gain);
    for (int k = 0; k < f->n_chain; k++) {
        const ss_stage_report *st = &f->chain[k];
        fprintf(out, "%s%s%s%s %.2f s, %.1fx realtime", k ? ", " : "; models: ", st->stem, st->stem[0] ? "=" : "",
                st->model, st->wall_seconds, rtf(st->audio_seconds, st->wall_seconds));
    }
    fputc('\n', out);
}

static double total_audio(const ss_report *r)
{
    double a = 0;
    for (int i = 0; i < r->n; i++)
        if (r->files[i].status == SS_FILE_OK)
            a += r->files[i].audio_seconds;
    return a;
}

void ss_report_print_total(const ss_report *r, double wall, FILE *out)
{
    double audio = total_audio(r);
    int ok = ss_report_count(r, SS_FILE_OK), failed = ss_report_count(r, SS_FILE_FAILED),
        skipped = ss_report_count(r, SS_FILE_SKIPPED);
    fprintf(out, "total: %d file%s separated, %d failed, %d skipped; %.1f s of audio in %.2f s, %.1fx realtime "
            "(%s: %s, %s, %d thread%s; model %s)\n", ok, ok == 1 ? "" : "s", failed, skipped, audio, wall,
            rtf(audio, wall), r->backend, r->device, r->precision, r->threads, r->threads == 1 ? "" : "s", r->model);
    if (failed) {
        fprintf(out, "failed:\n");
        for (int i = 0; i < r->n; i++)
            if (r->files[i].status == SS_FILE_FAILED) {
                const char *in = r->files[i].input, *e = r->files[i].error ? r->files[i].error : "";
                if (strncmp(e, in, strlen(in)) == 0 && e[strlen(in)] == ':')    /* the message names it */
                    fprintf(out, "  %s\n", e);
                else
                    fprintf(out, "  %s: %s\n", in, e);
            }
    }
}

static const char *status_word(ss_file_status s)
{
    return s == SS_FILE_OK ? "ok" : s == SS_FILE_FAILED ? "failed" : "skipped";
}

/* Build the document; NULL when out of memory. */
/* o.model_stats = {key: value, ...}; 0 when out of memory */
static int add_stats(cJSON *o, const ss_track_stat *st, int n)
{
    cJSON *m = cJSON_AddObjectToObject(o, "model_stats");
    for (int k = 0; m && k < n; k++)
        if (!cJSON_AddNumberToObject(m, st[k].key, st[k].value))
            return 0;
    return m != NULL;
}

static cJSON *build_json(const ss_report *r, double wall)
{
    cJSON *root = cJSON_CreateObject(), *dev = cJSON_CreateObject(), *model = cJSON_CreateObject();
    cJSON *files = cJSON_CreateArray(), *total = cJSON_CreateObject(), *srcs = cJSON_CreateArray();
    if (!root || !dev || !model || !files || !total || !srcs) {
        cJSON_Delete(root); cJSON_Delete(dev); cJSON_Delete(model);
        cJSON_Delete(files); cJSON_Delete(total); cJSON_Delete(srcs);
        return NULL;
    }
    cJSON_AddItemToObject(root, "version", cJSON_CreateString(SS_VERSION));
    cJSON_AddItemToObject(root, "git_commit", cJSON_CreateString(SS_GIT_COMMIT));
    cJSON_AddItemToObject(root, "device", dev);
    cJSON_AddItemToObject(dev, "backend", cJSON_CreateString(r->backend));
    cJSON_AddItemToObject(dev, "name", cJSON_CreateString(r->device));
    cJSON_AddItemToObject(dev, "precision", cJSON_CreateString(r->precision));
    cJSON_AddItemToObject(dev, "threads", cJSON_CreateNumber(r->threads));
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddItemToObject(model, "name", cJSON_CreateString(r->model));
    cJSON_AddItemToObject(model, "architecture", cJSON_CreateString(r->arch));
    for (const char *p = r->sources; *p;) {
        size_t len = strcspn(p, ",");
        char name[SS_MAX_NAME];
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        cJSON_AddItemToArray(srcs, cJSON_CreateString(name));
        p += len + (p[len] == ',');
    }
    cJSON_AddItemToObject(model, "sources", srcs);
    cJSON_AddItemToObject(model, "parameters", cJSON_CreateNumber((double)r->parameters));
    if (r->n_chain > 0) {
        cJSON *ch = cJSON_AddArrayToObject(model, "chain");
        for (int k = 0; ch && k < r->n_chain; k++) {
            cJSON *c = cJSON_CreateObject(), *cs = cJSON_CreateArray();
            if (!c || !cs || !cJSON_AddItemToArray(ch, c)) {
                cJSON_Delete(c);
                cJSON_Delete(cs);
                cJSON_Delete(root); cJSON_Delete(files); cJSON_Delete(total);
                return NULL;
            }
            cJSON_AddItemToObject(c, "stem", cJSON_CreateString(r->chain[k].stem));
            cJSON_AddItemToObject(c, "name", cJSON_CreateString(r->chain[k].name));
            cJSON_AddItemToObject(c, "architecture", cJSON_CreateString(r->chain[k].arch));
            for (const char *p = r->chain[k].sources; *p;) {
                size_t len = strcspn(p, ",");
                char name[SS_MAX_NAME];
                snprintf(name, sizeof name, "%.*s", (int)len, p);
                cJSON_AddItemToArray(cs, cJSON_CreateString(name));
                p += len + (p[len] == ',');
            }
            cJSON_AddItemToObject(c, "sources", cs);
        }
    }
    if (r->shard_count > 0) {
        cJSON *sh = cJSON_CreateObject();
        if (!sh) {
            cJSON_Delete(root); cJSON_Delete(files); cJSON_Delete(total);
            return NULL;
        }
        cJSON_AddItemToObject(root, "shard", sh);
        cJSON_AddItemToObject(sh, "index", cJSON_CreateNumber(r->shard_index));
        cJSON_AddItemToObject(sh, "count", cJSON_CreateNumber(r->shard_count));
        cJSON_AddItemToObject(sh, "inputs", cJSON_CreateNumber((double)r->shard_inputs));
    }
    cJSON_AddItemToObject(root, "files", files);
    for (int i = 0; i < r->n; i++) {
        const ss_file_report *f = &r->files[i];
        cJSON *o = cJSON_CreateObject(), *outs = cJSON_CreateArray(), *st = cJSON_CreateObject();
        cJSON *warns = cJSON_CreateArray();
        if (!o || !outs || !st || !warns) {
            cJSON_Delete(o); cJSON_Delete(outs); cJSON_Delete(st); cJSON_Delete(warns); cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddItemToArray(files, o);
        cJSON_AddItemToObject(o, "input", cJSON_CreateString(f->input));
        cJSON_AddItemToObject(o, "status", cJSON_CreateString(status_word(f->status)));
        if (f->error)
            cJSON_AddItemToObject(o, "error", cJSON_CreateString(f->error));
        for (int k = 0; k < f->n_outputs; k++)
            cJSON_AddItemToArray(outs, cJSON_CreateString(f->outputs[k]));
        cJSON_AddItemToObject(o, "outputs", outs);
        for (int k = 0; k < f->n_warnings; k++)
            cJSON_AddItemToArray(warns, cJSON_CreateString(f->warnings[k]));
        cJSON_AddItemToObject(o, "warnings", warns);
        cJSON_AddItemToObject(o, "audio_seconds", cJSON_CreateNumber(f->audio_seconds));
        cJSON_AddItemToObject(o, "wall_seconds", cJSON_CreateNumber(f->wall_seconds));
        cJSON_AddItemToObject(o, "rtf", cJSON_CreateNumber(rtf(f->audio_seconds, f->wall_seconds)));
        if (f->status == SS_FILE_OK)
            cJSON_AddItemToObject(o, "gain", cJSON_CreateNumber(f->gain));
        cJSON_AddItemToObject(o, "stages", st);
        cJSON_AddItemToObject(st, "decode", cJSON_CreateNumber(f->decode));
        cJSON_AddItemToObject(st, "infer", cJSON_CreateNumber(f->infer));
        cJSON_AddItemToObject(st, "encode", cJSON_CreateNumber(f->encode));
        if (f->n_stats > 0 && !add_stats(o, f->stats, f->n_stats)) {
            cJSON_Delete(root);
            return NULL;
        }
        cJSON *ch = f->n_chain > 0 ? cJSON_AddArrayToObject(o, "chain") : NULL;
        for (int k = 0; ch && k < f->n_chain; k++) {
            const ss_stage_report *sr = &f->chain[k];
            cJSON *c = cJSON_CreateObject(), *cst = cJSON_CreateObject();
            if (!c || !cst || !cJSON_AddItemToArray(ch, c)) {
                cJSON_Delete(c);
                cJSON_Delete(cst);
                cJSON_Delete(root);
                return NULL;
            }
            cJSON_AddItemToObject(c, "model", cJSON_CreateString(sr->model));
            cJSON_AddItemToObject(c, "stem", sr->stem[0] ? cJSON_CreateString(sr->stem) : cJSON_CreateNull());
            cJSON_AddItemToObject(c, "audio_seconds", cJSON_CreateNumber(sr->audio_seconds));
            cJSON_AddItemToObject(c, "wall_seconds", cJSON_CreateNumber(sr->wall_seconds));
            cJSON_AddItemToObject(c, "rtf", cJSON_CreateNumber(rtf(sr->audio_seconds, sr->wall_seconds)));
            cJSON_AddItemToObject(c, "stages", cst);
            cJSON_AddItemToObject(cst, "decode", cJSON_CreateNumber(sr->decode));
            cJSON_AddItemToObject(cst, "infer", cJSON_CreateNumber(sr->infer));
            cJSON_AddItemToObject(cst, "encode", cJSON_CreateNumber(sr->encode));
            if (sr->n_stats > 0 && !add_stats(c, sr->stats, sr->n_stats)) {
                cJSON_Delete(root);
                return NULL;
            }
        }
    }
    double audio = total_audio(r);
    cJSON_AddItemToObject(root, "total", total);
    cJSON_AddItemToObject(total, "files", cJSON_CreateNumber(ss_report_count(r, SS_FILE_OK)));
    cJSON_AddItemToObject(total, "failed", cJSON_CreateNumber(ss_report_count(r, SS_FILE_FAILED)));
    cJSON_AddItemToObject(total, "skipped", cJSON_CreateNumber(ss_report_count(r, SS_FILE_SKIPPED)));
    cJSON_AddItemToObject(total, "audio_seconds", cJSON_CreateNumber(audio));
    cJSON_AddItemToObject(total, "wall_seconds", cJSON_CreateNumber(wall));
    cJSON_AddItemToObject(total, "rtf", cJSON_CreateNumber(rtf(audio, wall)));
    return root;
}

struct ss_report_out {
    char *path;            /* final path; NULL for standard output     */
    char *tmp;             /* temporary file beside it                 */
    int fd;
};

ss_status ss_report_out_open(const char *path, ss_report_out **out, ss_error *err)
{
    *out = NULL;
    ss_report_out *o = calloc(1, sizeof *o);
    if (!o)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    o->fd = -1;
    if (strcmp(path, "-") == 0) {
        *out = o;
        return SS_OK;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        free(o);
        return ss_fail(err, SS_E_CANTCREAT, "--report-json %s: is a %s, not a file; nothing was separated", path,
                       S_ISDIR(st.st_mode) ? "folder" : "special file");
    }
    size_t len = strlen(path) + sizeof ".tmp-XXXXXX";
    o->path = strdup(path);
    o->tmp = malloc(len);
    if (!o->path || !o->tmp) {
        ss_report_out_abort(o);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    }
    snprintf(o->tmp, len, "%s.tmp-XXXXXX", path);
    if ((o->fd = mkstemp(o->tmp)) < 0) {
        ss_status s = ss_fail(err, SS_E_CANTCREAT, "--report-json %s: cannot create the report: %s; nothing was "
                              "separated", path, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        ss_report_out_abort(o);
        return s;
    }
    *out = o;
    return SS_OK;
}

void ss_report_out_abort(ss_report_out *o)
{
    if (!o)
        return;
    if (o->fd >= 0) {
        unlink(o->tmp);
        close(o->fd);
    }
    free(o->path);
    free(o->tmp);
    free(o);
}

ss_status ss_report_out_write(ss_report_out *o, const ss_report *r, double wall, ss_error *err)
{
    const char *path = o->path ? o->path : "-";
    cJSON *doc = build_json(r, wall);
    char *text = doc ? cJSON_Print(doc) : NULL;
    cJSON_Delete(doc);
    ss_status s = SS_OK;
    if (!text) {
        s = ss_fail(err, SS_E_NOMEM, "%s: out of memory building the report", path);
    } else if (!o->path) {
        if (fputs(text, stdout) < 0 || fputc('\n', stdout) < 0 || fflush(stdout) != 0)
            s = ss_fail(err, SS_E_IO, "standard output: cannot write the report: %s", strerror(errno));
    } else {
        FILE *f = fdopen(o->fd, "w");
        if (!f) {
            s = ss_fail(err, SS_E_IO, "%s: cannot write the report: %s", path, strerror(errno));
        } else {
            o->fd = -1;                  /* fclose closes it */
            int bad = fputs(text, f) < 0 || fputc('\n', f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
            bad |= fclose(f) != 0;
            if (bad || rename(o->tmp, path) != 0) {
                s = ss_fail(err, SS_E_IO, "%s: cannot write the report: %s", path, strerror(errno));
                unlink(o->tmp);
            }
        }
    }
    free(text);
    ss_report_out_abort(o);
    return s;
}

ss_status ss_report_write_json(const ss_report *r, const char *path, double wall, ss_error *err)
{
    ss_report_out *o;
    ss_status s = ss_report_out_open(path, &o, err);
    return s == SS_OK ? ss_report_out_write(o, r, wall, err) : s;
}

/* batch.c - input lists, collisions, shards and the three-stage pipeline (see batch.h). */
#include "batch.h"
#include "ffmpeg.h"
#include "clock.h"
#include "template.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the input list ------------------------------------------------------------------------ */

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static ss_status add_entry(ss_batch_list *l, const char *path, const char *reldir, ss_status st, const char *msg,
                           ss_error *err);

static ss_status add_skipped(ss_batch_list *l, const char *path, const char *reldir, const char *msg, ss_error *err)
{
    ss_status s = add_entry(l, path, reldir, SS_OK, msg, err);
    if (s == SS_OK)
        l->v[l->n - 1].skip = 1;
    return s;
}

static ss_status add_entry(ss_batch_list *l, const char *path, const char *reldir, ss_status st, const char *msg,
                           ss_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        ss_batch_input *v = realloc(l->v, sizeof *v * cap);
        if (!v)
            return ss_fail(err, SS_E_NOMEM, "out of memory listing the inputs");
        l->v = v;
        l->cap = cap;
    }
    ss_batch_input *e = &l->v[l->n];
    memset(e, 0, sizeof *e);
    e->status = st;
    e->path = dupstr(path);
    e->reldir = dupstr(reldir);
    e->error = msg ? dupstr(msg) : NULL;
    if (!e->path || !e->reldir || (msg && !e->error)) {
        free(e->path);
        free(e->reldir);
        free(e->error);
        return ss_fail(err, SS_E_NOMEM, "out of memory listing the inputs");
    }
    l->n++;
    return SS_OK;
}

void ss_batch_list_free(ss_batch_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].reldir);
        free(l->v[i].error);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Is NAME's extension (after the last dot, not a leading one) in the NULL-ended list? */
static int extension_in(const char *name, const char *const *ext)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return 0;
    for (int i = 0; ext[i]; i++)
        if (strcasecmp(dot + 1, ext[i]) == 0)
            return 1;
    return 0;
}

/* Extensions taken as audio without opening the file, so that a damaged
 * song is reported rather than silently left out. */
static int audio_extension(const char *name)
{
    static const char *const ext[] = {"wav", "wave", "bwf", "w64", "rf64", "flac", "ogg", "oga", "opus", "mp3",
                                      "mp2", "aif", "aiff", "aifc", "au", "snd", "caf", NULL};
    return extension_in(name, ext);
}

/* Extensions of audio formats that no reader here opens (when the file also
 * fails ss_audio_probe): such a file is listed as skipped, with the reason,
 * rather than left out without a word. */
static int foreign_audio_extension(const char *name)
{
    static const char *const ext[] = {"m4a", "m4b", "m4p", "mp4", "aac", "alac", "wma", "asf", "ape", "wv", "mka",
                                      "webm", "ac3", "eac3", "dts", "mpc", "tta", "amr", "awb", "dsf", "dff", "ra",
                                      "ram", "3gp", "3ga", "mid", "midi", "mod", "xm", "it", "s3m", NULL};
    return extension_in(name, ext);
}

void ss_batch_scan_skip(ss_batch_scan *sc, const char *path)
{
    struct stat st;
    if (sc->n_skip < 2 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        sc->skip_dev[sc->n_skip] = st.st_dev;
        sc->skip_ino[sc->n_skip++] = st.st_ino;
    }
}

static int skipped_dir(const ss_batch_scan *sc, const struct stat *st)
{
    for (int i = 0; i < sc->n_skip; i++)
        if (st->st_dev == sc->skip_dev[i] && st->st_ino == sc->skip_ino[i])
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct ancestor {       /* folders on the way down, against symlink loops */
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
} ancestor;

static ss_status walk(ss_batch_list *l, const ss_batch_scan *sc, const char *dir, const char *rel,
                      const ancestor *up, ss_error *err)
{
    char msg[PATH_MAX + 128];
    l->dirs++;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(msg, sizeof msg, "%s: cannot read the folder: %s", dir, strerror(errno));
        return add_entry(l, dir, rel, SS_E_NOINPUT, msg, err);
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    ss_status s = SS_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')          /* ".", "..", hidden files and our own temporaries */
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, sizeof *nn * cap);
            if (!nn) {
                s = ss_fail(err, SS_E_NOMEM, "out of memory listing %s", dir);
                break;
            }
            names = nn;
        }
        if (!(names[n] = dupstr(de->d_name))) {
            s = ss_fail(err, SS_E_NOMEM, "out of memory listing %s", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (s == SS_OK && n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    size_t dlen = strlen(dir);
    while (dlen > 1 && dir[dlen - 1] == '/')
        dlen--;
    for (size_t i = 0; i < n && s == SS_OK; i++) {
        char path[PATH_MAX], sub[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%.*s%s%s", (int)dlen, dir, dir[dlen - 1] == '/' ? "" : "/",
                             names[i]) >= sizeof path ||
            (size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", names[i]) >= sizeof sub) {
            snprintf(msg, sizeof msg, "%.*s/%.200s...: path too long", (int)dlen, dir, names[i]);
            s = add_entry(l, dir, rel, SS_E_NOINPUT, msg, err);
            continue;
        }
        struct stat st;
        if (stat(path, &st) != 0) {          /* e.g. a dangling link: report it if it looks like audio */
            if (audio_extension(names[i])) {
                snprintf(msg, sizeof msg, "%s: %s", path, strerror(errno));
                s = add_entry(l, path, rel, SS_E_NOINPUT, msg, err);
            }
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (!sc->recursive || skipped_dir(sc, &st))
                continue;
            int loop = 0;
            for (const ancestor *a = up; a && !loop; a = a->up)
                loop = a->dev == st.st_dev && a->ino == st.st_ino;
            if (loop)
                continue;
            ancestor me = {st.st_dev, st.st_ino, up};
            s = walk(l, sc, path, sub, &me, err);
        } else if (S_ISREG(st.st_mode) && (audio_extension(names[i]) || ss_audio_probe(path))) {
            s = add_entry(l, path, rel, SS_OK, NULL, err);
        } else if (S_ISREG(st.st_mode) && foreign_audio_extension(names[i])) {
            /* with ffmpeg on PATH, what is left here is a format it does not read either */
            const char *ext = strrchr(names[i], '.') + 1;
            int midi = strcasecmp(ext, "mid") == 0 || strcasecmp(ext, "midi") == 0;
            if (midi || ss_ffmpeg_available())
                snprintf(msg, sizeof msg, "no reader here opens .%s files; convert it (e.g. to FLAC or WAV) to "
                         "separate it", ext);
            else
                snprintf(msg, sizeof msg, "no reader here opens .%s files: installing ffmpeg reads them (stemsplit "
                         "decodes such files through ffmpeg when it is on PATH), or convert it to FLAC or WAV", ext);
            s = add_skipped(l, path, rel, msg, err);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return s;
}

ss_status ss_batch_add(ss_batch_list *l, const char *arg, const ss_batch_scan *sc, ss_error *err)
{
    struct stat st;
    if (strcmp(arg, "-") != 0 && stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        ancestor top = {st.st_dev, st.st_ino, NULL};
        return walk(l, sc, arg, "", &top, err);
    }
    return add_entry(l, arg, "", SS_OK, NULL, err);
}

ss_status ss_batch_add_from(ss_batch_list *l, const char *list, const ss_batch_scan *sc, ss_error *err)
{
    int use_stdin = strcmp(list, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(list, "r");
    if (!f)
        return ss_fail(err, SS_E_NOINPUT, "%s: cannot open the file list: %s", list, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    ss_status s = SS_OK;
    while (s == SS_OK && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len > 0)
            s = ss_batch_add(l, line, sc, err);
    }
    if (s == SS_OK && ferror(f))
        s = ss_fail(err, SS_E_IO, "%s: cannot read the file list: %s", use_stdin ? "standard input" : list,
                    strerror(errno));
    free(line);
    if (!use_stdin)
        fclose(f);
    return s;
}

/* ---- collisions and shards ----------------------------------------------------------------- */

typedef struct planned {
    char *path;
    size_t input;
} planned;

typedef struct plan_ctx {
    planned *v;
    size_t n, cap, input;
    int nomem;
} plan_ctx;

static void plan_add(void *arg, const char *path)
{
    plan_ctx *c = arg;
    if (c->nomem)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        planned *v = realloc(c->v, sizeof *v * cap);
        if (!v) {
            c->nomem = 1;
            return;
        }
        c->v = v;
        c->cap = cap;
    }
    if (!(c->v[c->n].path = dupstr(path))) {
        c->nomem = 1;
        return;
    }
    c->v[c->n++].input = c->input;
}

static int cmp_planned(const void *a, const void *b)
{
    const planned *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : (x->input > y->input) - (x->input < y->input);
}

/* path made absolute (with cwd) and normalised without looking at the disk:
 * no empty or "." parts, ".." removes the part before it.  NULL when out of memory. */
static char *normalise(const char *path, const char *cwd)
{
    size_t len = strlen(path) + (path[0] == '/' ? 0 : strlen(cwd) + 1) + 2;
    char *in = malloc(len), *out = malloc(len);
    if (!in || !out) {
        free(in);
        free(out);
        return NULL;
    }
    snprintf(in, len, "%s%s%s", path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/", path);
    size_t n = 0;
    for (const char *p = in; *p;) {
        size_t c = strcspn(p, "/");
        if (c == 0 || (c == 1 && p[0] == '.')) {
            /* nothing */
        } else if (c == 2 && p[0] == '.' && p[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
        } else {
            out[n++] = '/';
            memcpy(out + n, p, c);
            n += c;
        }
        p += c + (p[c] == '/');
    }
    if (n == 0)
        out[n++] = '/';
    out[n] = '\0';
    free(in);
    return out;
}

typedef struct input_id {
    dev_t dev;
    ino_t ino;
    char *norm;           /* normalised path when the input does not exist, else NULL */
    size_t input;
} input_id;

static int cmp_id(const void *a, const void *b)
{
    const input_id *x = a, *y = b;
    if (x->norm || y->norm) {
        if (!x->norm || !y->norm)
            return x->norm ? 1 : -1;
        return strcmp(x->norm, y->norm);
    }
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return (x->ino > y->ino) - (x->ino < y->ino);
}

/* The inputs of l (not "-", not skipped), sorted for bsearch; NULL when out of memory. */
static input_id *input_ids(const ss_batch_list *l, size_t *n_out)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    input_id *v = calloc(l->n ? l->n : 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; v && i < l->n; i++) {
        const ss_batch_input *in = &l->v[i];
        if (in->skip || strcmp(in->path, "-") == 0)
            continue;
        struct stat st;
        v[n].input = i;
        if (stat(in->path, &st) == 0) {
            v[n].dev = st.st_dev;
            v[n].ino = st.st_ino;
        } else if (!(v[n].norm = normalise(in->path, cwd))) {
            for (size_t k = 0; k < n; k++)
                free(v[k].norm);
            free(v);
            return NULL;
        }
        n++;
    }
    if (v && n > 1)
        qsort(v, n, sizeof *v, cmp_id);
    *n_out = n;
    return v;
}

static void free_ids(input_id *v, size_t n)
{
    for (size_t k = 0; v && k < n; k++)
        free(v[k].norm);
    free(v);
}

/* The input that `path` is (same file, or same normalised path when it does
 * not exist), or NULL.  *nomem set when out of memory. */
static const input_id *find_input(const input_id *v, size_t n, const char *path, const char *cwd, int *nomem)
{
    input_id key = {0};
    struct stat st;
    if (stat(path, &st) == 0) {
        key.dev = st.st_dev;
        key.ino = st.st_ino;
    } else if (!(key.norm = normalise(path, cwd))) {
        *nomem = 1;
        return NULL;
    }
    const input_id *hit = n ? bsearch(&key, v, n, sizeof *v, cmp_id) : NULL;
    free(key.norm);
    return hit;
}

const ss_batch_input *ss_batch_find_input(const ss_batch_list *l, const char *path)
{
    size_t n = 0;
    int nomem = 0;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, ".");
    input_id *v = input_ids(l, &n);
    const input_id *hit = v ? find_input(v, n, path, cwd, &nomem) : NULL;
    const ss_batch_input *r = hit ? &l->v[hit->input] : NULL;
    free_ids(v, n);
    return r;
}

/* What helps when inputs a and b clash: the field that tells them apart. */
static const char *clash_advice(const char *tmpl, const char *a, const char *b)
{
    const char *ba = strrchr(a, '/'), *bb = strrchr(b, '/');
    ba = ba ? ba + 1 : a;
    bb = bb ? bb + 1 : b;
    const char *da = strrchr(ba, '.'), *db = strrchr(bb, '.');
    size_t ta = da && da != ba ? (size_t)(da - ba) : strlen(ba), tb = db && db != bb ? (size_t)(db - bb) : strlen(bb);
    if (strcmp(a, b) != 0 && ta == tb && memcmp(ba, bb, ta) == 0 && strcmp(ba + ta, bb + tb) != 0 &&
        !ss_template_uses(tmpl, "inext"))
        return "they differ only in their extension: put {inext} (the input's extension) in --filename, e.g. "
               "--filename '{model}/{dir}/{track}-{inext}/{stem}.{ext}'";
    return "use {dir} in --filename, or separate them into different -o folders";
}

ss_status ss_batch_check_collisions(ss_model *m, const ss_sep_params *p, const ss_batch_list *l, ss_error *err)
{
    plan_ctx c = {0};
    ss_status s = SS_OK;
    for (size_t i = 0; i < l->n && !c.nomem; i++) {
        if (l->v[i].status != SS_OK || l->v[i].skip)
            continue;
        ss_error e = {0};
        c.input = i;
        (void)ss_separate_outputs(m, p, l->v[i].path, l->v[i].reldir, plan_add, &c, &e);
    }
    if (c.nomem) {
        s = ss_fail(err, SS_E_NOMEM, "out of memory checking the output names");
    } else {
        if (c.n > 1)
            qsort(c.v, c.n, sizeof *c.v, cmp_planned);
        size_t clashes = 0, first = 0;
        for (size_t i = 1; i < c.n; i++)
            if (strcmp(c.v[i].path, c.v[i - 1].path) == 0 && c.v[i].input != c.v[i - 1].input && !clashes++)
                first = i;
        if (clashes) {
            const ss_batch_input *a = &l->v[c.v[first - 1].input], *b = &l->v[c.v[first].input];
            s = ss_fail(err, SS_E_USAGE, "%s and %s would both write %s%s; nothing was separated (%zu output%s "
                        "clash; %s)", a->path, b->path, c.v[first].path,
                        strcmp(a->path, b->path) ? "" : " (given twice)", clashes, clashes == 1 ? "" : "s",
                        clash_advice(p->filename, a->path, b->path));
        }
    }
    if (s == SS_OK && !c.nomem) {          /* no stem may replace an input */
        size_t n_ids = 0;
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            snprintf(cwd, sizeof cwd, ".");
        input_id *ids = input_ids(l, &n_ids);
        if (!ids)
            c.nomem = 1;
        for (size_t i = 0; ids && i < c.n && !c.nomem; i++) {
            const input_id *hit = find_input(ids, n_ids, c.v[i].path, cwd, &c.nomem);
            if (hit) {
                s = ss_fail(err, SS_E_USAGE, "%s: a stem of %s would be written over this input; nothing was "
                            "separated (choose -o and --filename so that no stem lands on an input; with -o "
                            "inside the input folders, an earlier run's stems are inputs now)",
                            l->v[hit->input].path, l->v[c.v[i].input].path);
                break;
            }
        }
        free_ids(ids, n_ids);
        if (c.nomem)
            s = ss_fail(err, SS_E_NOMEM, "out of memory checking the output names");
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].path);
    free(c.v);
    return s;
}

static const ss_batch_list *sort_list;       /* qsort has no context argument */

static int cmp_index(const void *a, const void *b)
{
    const ss_batch_input *x = &sort_list->v[*(const size_t *)a], *y = &sort_list->v[*(const size_t *)b];
    int c = strcmp(x->path, y->path);
    if (!c)
        c = strcmp(x->reldir, y->reldir);
    return c ? c : (*(const size_t *)a > *(const size_t *)b) - (*(const size_t *)a < *(const size_t *)b);
}

ss_status ss_batch_shard(ss_batch_list *l, int index, int count, ss_error *err)
{
    if (count < 1 || index < 1 || index > count)
        return ss_fail(err, SS_E_USAGE, "--shard %d/%d: expected I/N with 1 <= I <= N", index, count);
    if (l->n == 0)
        return SS_OK;
    size_t *order = malloc(sizeof *order * l->n);
    unsigned char *keep = calloc(l->n, 1);
    if (!order || !keep) {
        free(order);
        free(keep);
        return ss_fail(err, SS_E_NOMEM, "out of memory sharding the inputs");
    }
    for (size_t i = 0; i < l->n; i++)
        order[i] = i;
    sort_list = l;
    qsort(order, l->n, sizeof *order, cmp_index);
    sort_list = NULL;
    for (size_t r = 0; r < l->n; r++)
        keep[order[r]] = r % (size_t)count == (size_t)(index - 1);
    size_t w = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (keep[i]) {
            l->v[w++] = l->v[i];
        } else {
            free(l->v[i].path);
            free(l->v[i].reldir);
            free(l->v[i].error);
        }
    }
    l->n = w;
    free(order);
    free(keep);
    return SS_OK;
}

/* ---- existing outputs ------------------------------------------------------------------------ */

/* Every output of a track, chained models' included. */
typedef struct out_list {
    char **path;
    int n, cap;
    int nomem;           /* a path could not be kept */
} out_list;

static void out_add(void *arg, const char *path)
{
    out_list *o = arg;
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : SS_MAX_SOURCES + 1;
        char **v = realloc(o->path, sizeof *v * (size_t)cap);
        if (!v) {
            o->nomem = 1;
            return;
        }
        o->path = v;
        o->cap = cap;
    }
    if (!(o->path[o->n] = dupstr(path)))
        o->nomem = 1;
    else
        o->n++;
}

static void out_list_free(out_list *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->path[i]);
    free(o->path);
    free(o);
}

/* Remove ".NAME.tmp-XXXXXX" beside each output NAME: what ss_audio_create
 * leaves behind when a process is killed with SIGKILL.  A temporary file is
 * removed only when its lock can be taken: one that another running process
 * is writing (two runs on one output folder) is locked, and left alone. */
static void remove_if_unlocked(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        (void)unlinkat(dfd, name, 0);
    close(fd);
}

static void remove_stale_temporaries(const out_list *o)
{
    for (int i = 0; i < o->n; i++) {
        const char *slash = strrchr(o->path[i], '/');
        if (!slash)
            continue;
        int done = 0;                        /* this folder was scanned for an earlier output */
        for (int k = 0; k < i && !done; k++) {
            const char *s2 = strrchr(o->path[k], '/');
            done = s2 && s2 - o->path[k] == slash - o->path[i] &&
                   memcmp(o->path[k], o->path[i], (size_t)(slash - o->path[i])) == 0;
        }
        if (done)
            continue;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - o->path[i]), o->path[i]);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            const char *name = de->d_name;
            if (name[0] != '.')
                continue;
            for (int k = 0; k < o->n; k++) {
                const char *s2 = strrchr(o->path[k], '/');
                if (!s2 || s2 - o->path[k] != slash - o->path[i] ||
                    memcmp(o->path[k], o->path[i], (size_t)(slash - o->path[i])) != 0)
                    continue;
                const char *base = s2 + 1;
                size_t bl = strlen(base);
                if (strlen(name) == 1 + bl + 5 + 6 && memcmp(name + 1, base, bl) == 0 &&
                    memcmp(name + 1 + bl, ".tmp-", 5) == 0) {
                    remove_if_unlocked(dirfd(d), name);
                    break;
                }
            }
        }
        closedir(d);
    }
}

/* ---- the pipeline ---------------------------------------------------------------------------- */

enum { IT_NEW, IT_READY, IT_INFERRED, IT_FAILED, IT_SKIPPED, IT_DONE };

typedef struct item {
    const ss_batch_input *in;
    ss_file_report *rep;
    ss_sep_job *job;
    int state;
    ss_status st;
    ss_error err;
} item;

typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t buf[4];
    int head, n, cap;
    int closed;           /* no more pushes                           */
    int stop;             /* pushers give up (cancel)                 */
} queue;

typedef struct batch {
    const ss_batch_params *bp;
    ss_model *m;
    ss_sep_params sep;            /* bp->sep with our progress callback */
    const ss_report *report;
    item *items;
    size_t n;
    queue q1, q2;                 /* prepare -> infer, infer -> commit  */
    pthread_mutex_t print_mu;
    ss_status first_failure;
    char stop_when[256];           /* non-empty: start no more files (disk full); print_mu */
    const char *cur_name;         /* progress bar                       */
    size_t cur_index;
    double cur_t0;
    int bar_shown;
} batch;

static void q_init(queue *q, int cap)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->cap = cap;
}

static void q_destroy(queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* 0 when queued, -1 when the queue was stopped. */
static int q_push(queue *q, size_t k)
{
    pthread_mutex_lock(&q->mu);
    while (q->n == q->cap && !q->stop)
        pthread_cond_wait(&q->cv, &q->mu);
    int r = -1;
    if (!q->stop) {
        q->buf[(q->head + q->n) % q->cap] = k;
        q->n++;
        r = 0;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

/* 1 with *k, 0 when closed and empty, -1 when *cancel became non-zero. */
static int q_pop(queue *q, size_t *k, volatile sig_atomic_t *cancel)
{
    int r = 0;
    pthread_mutex_lock(&q->mu);
    while (q->n == 0 && !q->closed) {
        if (cancel && *cancel) {
            pthread_mutex_unlock(&q->mu);
            return -1;
        }
        if (cancel) {        /* the signal goes to this thread: look at the flag every 50 ms */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        } else {
            pthread_cond_wait(&q->cv, &q->mu);
        }
    }
    if (q->n > 0) {
        *k = q->buf[q->head];
        q->head = (q->head + 1) % q->cap;
        q->n--;
        r = 1;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void q_close(queue *q, int stop)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    if (stop)
        q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static int q_stopped(queue *q)
{
    pthread_mutex_lock(&q->mu);
    int s = q->stop;
    pthread_mutex_unlock(&q->mu);
    return s;
}

static void clear_bar(batch *b)
{
    if (b->bar_shown) {
        fprintf(stderr, "\r%*s\r", 110, "");
        b->bar_shown = 0;
    }
}

static void show_progress(void *arg, int64_t done, int64_t total)
{
    batch *b = arg;
    if (total <= 0)
        return;
    pthread_mutex_lock(&b->print_mu);
    int width = 30, fill = (int)(width * done / total);
    double el = ss_seconds() - b->cur_t0, eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    char count[48] = "";
    if (b->n > 1)
        snprintf(count, sizeof count, "%zu/%zu ", b->cur_index + 1, b->n);
    fprintf(stderr, "\r%s%.40s [%.*s%*s] %lld/%lld chunks, ETA %d:%02d ", count, b->cur_name, fill,
            "##############################", width - fill, "", (long long)done, (long long)total,
            (int)eta / 60, (int)eta % 60);
    b->bar_shown = 1;
    if (done == total)
        clear_bar(b);
    fflush(stderr);
    pthread_mutex_unlock(&b->print_mu);
}

static void set_failed(item *it, ss_status st)
{
    ss_sep_job_free(it->job);
    it->job = NULL;
    it->st = st;
    it->state = IT_FAILED;
}

/* Stage 1: existing outputs, then open and the statistics pass. */
static void prepare_item(batch *b, item *it)
{
    const ss_batch_params *bp = b->bp;
    const ss_batch_input *in = it->in;
    if (in->skip) {
        snprintf(it->err.msg, sizeof it->err.msg, "%s", in->error ? in->error : "no reader for this format");
        it->state = IT_SKIPPED;
        return;
    }
    if (in->status != SS_OK) {
        ss_fail(&it->err, in->status, "%s", in->error ? in->error : in->path);
        set_failed(it, in->status);
        return;
    }
    out_list *o = calloc(1, sizeof *o);
    if (!o) {
        set_failed(it, ss_fail(&it->err, SS_E_NOMEM, "%s: out of memory", in->path));
        return;
    }
    ss_status s = ss_separate_outputs(b->m, &b->sep, in->path, in->reldir, out_add, o, &it->err);
    if (s == SS_OK && o->nomem)
        s = ss_fail(&it->err, SS_E_NOMEM, "%s: out of memory", in->path);
    if (s != SS_OK) {
        out_list_free(o);
        set_failed(it, s);
        return;
    }
    remove_stale_temporaries(o);
    int exist = 0, first = -1;
    for (int i = 0; i < o->n; i++) {
        struct stat st;
        if (lstat(o->path[i], &st) == 0) {
            if (first < 0)
                first = i;
            exist += S_ISREG(st.st_mode);
        }
    }
    if (bp->skip_existing && o->n > 0 && exist == o->n) {
        snprintf(it->err.msg, sizeof it->err.msg, "all %d stems exist already", o->n);
        it->state = IT_SKIPPED;
    } else if (bp->no_clobber && first >= 0) {
        set_failed(it, ss_fail(&it->err, SS_E_CANTCREAT, "%s: %s already exists (--no-clobber)", in->path,
                               o->path[first]));
    } else if ((s = ss_sep_prepare(b->m, &b->sep, in->path, in->reldir, it->rep, &it->job, &it->err)) != SS_OK) {
        set_failed(it, s);
    } else {
        it->state = IT_READY;
    }
    out_list_free(o);
}

/* Stage 3: commit, then the report entry and its line, in input order. */
static void finish_item(batch *b, item *it)
{
    const ss_batch_params *bp = b->bp;
    if (it->state == IT_INFERRED) {
        ss_status s = ss_sep_commit(it->job, &it->err);
        ss_sep_job_free(it->job);
        it->job = NULL;
        if (s != SS_OK)
            set_failed(it, s);
    }
    pthread_mutex_lock(&b->print_mu);
    clear_bar(b);
    for (int k = 0; k < it->rep->n_warnings && !bp->quiet; k++)
        fprintf(stderr, "%s: warning: %s\n", bp->prog, it->rep->warnings[k]);
    if (it->state == IT_FAILED) {
        ss_report_set_error(it->rep, SS_FILE_FAILED, it->err.msg);
        fprintf(stderr, "%s: %s\n", bp->prog, it->err.msg);
        if (b->first_failure == SS_OK)
            b->first_failure = it->st;
        /* a full disk fails every file after this one too: stop here (the
         * messages carry the system's reason: strerror of the errno) */
        const char *why = strstr(it->err.msg, strerror(ENOSPC)) ? strerror(ENOSPC)
                          : strstr(it->err.msg, strerror(EDQUOT)) ? strerror(EDQUOT) : NULL;
        if (why && (it->st == SS_E_IO || it->st == SS_E_CANTCREAT) && !b->stop_when[0]) {
            snprintf(b->stop_when, sizeof b->stop_when, "not attempted: the output's disk is full (%s, "
                     "writing the stems of %.120s)", why, it->in->path);
            fprintf(stderr, "%s: %s: stopping; the files left are not attempted\n", bp->prog, why);
        }
    } else if (it->state == IT_SKIPPED) {
        ss_report_set_error(it->rep, SS_FILE_SKIPPED, it->err.msg);
        if (!bp->quiet)
            ss_report_print_file(b->report, it->rep, stderr);
    } else if (!bp->quiet) {
        ss_report_print_file(b->report, it->rep, stderr);
    }
    fflush(stderr);
    pthread_mutex_unlock(&b->print_mu);
    it->state = IT_DONE;
}

/* An earlier file found the disk full: start no more. */
static int stopped(batch *b)
{
    pthread_mutex_lock(&b->print_mu);
    int r = b->stop_when[0] != '\0';
    pthread_mutex_unlock(&b->print_mu);
    return r;
}

static void *producer_main(void *arg)
{
    batch *b = arg;
    for (size_t k = 0; k < b->n; k++) {
        if (q_stopped(&b->q1))
            break;
        if (strcmp(b->items[k].in->path, "-") != 0)    /* standard input is read on the main thread */
            prepare_item(b, &b->items[k]);
        if (q_push(&b->q1, k) != 0)
            break;
    }
    q_close(&b->q1, 0);
    return NULL;
}

static void *committer_main(void *arg)
{
    batch *b = arg;
    size_t k;
    while (q_pop(&b->q2, &k, NULL) == 1)
        finish_item(b, &b->items[k]);
    return NULL;
}

ss_status ss_batch_run(ss_model *m, ss_backend *be, const ss_batch_params *bp, const ss_batch_list *l,
                       ss_report *rep, ss_status *first_failure, ss_error *err)
{
    *first_failure = SS_OK;
    batch *b = calloc(1, sizeof *b);
    item *items = calloc(l->n ? l->n : 1, sizeof *items);
    if (!b || !items) {
        free(b);
        free(items);
        return ss_fail(err, SS_E_NOMEM, "out of memory starting the batch");
    }
    b->bp = bp;
    b->m = m;
    b->sep = *bp->sep;
    b->sep.engine.cancel = bp->cancel;
    if (bp->progress) {
        b->sep.engine.progress = show_progress;
        b->sep.engine.progress_arg = b;
    } else {
        b->sep.engine.progress = NULL;
    }
    b->report = rep;
    b->items = items;
    b->n = l->n;
    for (size_t k = 0; k < l->n; k++) {
        items[k].in = &l->v[k];
        items[k].rep = ss_report_file(rep, (int)k);
        if (!items[k].rep) {
            free(items);
            free(b);
            return ss_fail(err, SS_E_INTERNAL, "the report has no entry for input %zu", k);
        }
    }
    pthread_mutex_init(&b->print_mu, NULL);
    q_init(&b->q1, 1);
    q_init(&b->q2, 2);

    /* The workers never see SIGINT/SIGTERM: the handler runs on this thread,
     * which looks at the flag between chunks and while waiting for work. */
    int pipeline = bp->pipeline && l->n > 1;
    pthread_t producer, committer;
    int have_producer = 0, have_committer = 0;
    if (pipeline) {
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        have_committer = pthread_create(&committer, NULL, committer_main, b) == 0;
        have_producer = have_committer && pthread_create(&producer, NULL, producer_main, b) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!have_producer) {           /* no threads: run the stages one after the other */
            if (have_committer) {
                q_close(&b->q2, 0);
                pthread_join(committer, NULL);
                have_committer = 0;
            }
            pipeline = 0;
        }
    }

    for (size_t next = 0;;) {
        size_t k;
        if (pipeline) {
            if (q_pop(&b->q1, &k, bp->cancel) != 1)
                break;
        } else {
            if (next == l->n || *bp->cancel)
                break;
            k = next++;
        }
        if (*bp->cancel || stopped(b))          /* not started: reported as such below */
            break;
        item *it = &items[k];
        if (it->state == IT_NEW)
            prepare_item(b, it);
        if (it->state == IT_READY) {
            b->cur_name = it->in->path;
            b->cur_index = k;
            b->cur_t0 = ss_seconds();
            ss_status s = ss_sep_infer(it->job, be, &it->err);
            if (s == SS_E_INTERRUPT) {
                ss_error_clear(&it->err);
                ss_fail(&it->err, s, "%s: interrupted by %s; its temporary files were removed", it->in->path,
                        *bp->cancel == SIGTERM ? "SIGTERM" : "SIGINT");
            }
            if (s != SS_OK)
                set_failed(it, s);
            else
                it->state = IT_INFERRED;
        }
        if (pipeline) {
            if (q_push(&b->q2, k) != 0)          /* cannot happen: q2 is never stopped */
                finish_item(b, it);
        } else {
            finish_item(b, it);
        }
        if (*bp->cancel || stopped(b))
            break;
    }
    if (have_producer) {
        q_close(&b->q1, 1);
        pthread_join(producer, NULL);
    }
    if (have_committer) {
        q_close(&b->q2, 0);
        pthread_join(committer, NULL);
    }
    /* what was never finished: not started (interrupted) */
    for (size_t k = 0; k < l->n; k++) {
        if (items[k].state == IT_DONE)
            continue;
        ss_sep_job_free(items[k].job);
        items[k].job = NULL;
        ss_report_set_error(items[k].rep, SS_FILE_SKIPPED,
                            b->stop_when[0] && !*bp->cancel ? b->stop_when : "not started: the run was interrupted");
    }
    *first_failure = b->first_failure;
    q_destroy(&b->q1);
    q_destroy(&b->q2);
    pthread_mutex_destroy(&b->print_mu);
    free(items);
    free(b);
    return SS_OK;
}

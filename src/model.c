/* model.c - model lookup, the architecture table, and the stemsplit.* metadata
 * every model file carries (docs/model-format.md). */
#include "model.h"
#include "settings.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* the registry: one line per architecture in models/registry.h */
#define SS_ARCH(name) extern const ss_arch ss_arch_##name;
#include "../models/registry.h"
#undef SS_ARCH

static const ss_arch *const arches[] = {
#define SS_ARCH(name) &ss_arch_##name,
#include "../models/registry.h"
#undef SS_ARCH
    NULL,
};

const ss_arch *const *ss_arch_list(void) { return arches; }

/* Recordings kept per model: one per set of arguments (e.g. a file's full
 * batches and its last, shorter one), the least recently used dropped. */
#define N_GRAPHS 4

/* The arguments of a forward pass that ran directly, and its recording when it
 * has one. */
typedef struct graph_entry {
    const float *x;
    float *y;
    int batch;
    int64_t length;
    void *graph;               /* NULL: not recorded                          */
    unsigned long gen;         /* memory generation it was recorded in        */
    unsigned long direct_gen;  /* generation after its last direct pass        */
    unsigned long used;        /* when last run (least recently used: dropped) */
} graph_entry;

struct ss_model {
    ss_model_info info;        /* public facts                       */
    const ss_arch *arch;       /* the architecture's vtable          */
    void *state;               /* the architecture's loaded weights  */
    ss_backend *be;            /* where the weights live             */
    graph_entry graphs[N_GRAPHS]; /* passes run directly, recorded or not */
    int n_graphs;
    unsigned long clock;       /* forward passes run (graphs' `used`) */
    unsigned long directs;     /* direct passes run                   */
    int graphs_off;            /* a recording failed: run directly   */
    ss_model_io io;            /* the engine's transfer buffers      */
    ss_mem_estimate mem;       /* device memory estimate (arch's)    */
};

/* ---- finding a model file -------------------------------------------------------- */

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Try dir/NAME.safetensors; append dir to `tried`. */
static int try_dir(const char *dir, const char *name, char *out, size_t out_size, char *tried, size_t tsize)
{
    if (!dir || !*dir)
        return 0;
    int n = snprintf(out, out_size, "%s/%s.safetensors", dir, name);
    if (n > 0 && (size_t)n < out_size && is_file(out))
        return 1;
    size_t used = strlen(tried);
    snprintf(tried + used, tsize - used, "%s%s", used ? ", " : "", dir);
    return 0;
}

void ss_model_search_dirs(void (*fn)(void *arg, const char *dir), void *arg)
{
    char dir[PATH_MAX];
    const char *mp = ss_settings_get()->model_path;
    for (const char *p = mp ? mp : ""; *p;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && len < sizeof dir) {
            memcpy(dir, p, len);
            dir[len] = '\0';
            fn(arg, dir);
        }
        p += len + (p[len] == ':');
    }
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/stemsplit/models", xdg);
    else if (home)
        snprintf(dir, sizeof dir, "%s/.local/share/stemsplit/models", home);
    else
        dir[0] = '\0';
    if (dir[0])
        fn(arg, dir);
    fn(arg, SS_DATADIR "/models");
    /* beside the executable: ./models (source tree) and ../share/stemsplit/models (bundle) */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(dir, sizeof dir, "%.*s/models", PATH_MAX - 16, exe);
            fn(arg, dir);
            /* a source tree keeps each architecture's shipped models in its folder */
            for (size_t i = 0; arches[i]; i++) {
                snprintf(dir, sizeof dir, "%.*s/models/%s", PATH_MAX - 64, exe, arches[i]->name);
                fn(arg, dir);
            }
            snprintf(dir, sizeof dir, "%.*s/../share/stemsplit/models", PATH_MAX - 32, exe);
            fn(arg, dir);
        }
    }
}

/* ss_model_search_dirs's callback for ss_model_resolve: the first folder
 * holding NAME.safetensors wins; the others are listed in `tried`. */
typedef struct lookup {
    const char *name;
    char *out;
    size_t out_size;
    int found;
    char tried[2048];
} lookup;

static void lookup_in(void *arg, const char *dir)
{
    lookup *l = arg;
    if (!l->found)
        l->found = try_dir(dir, l->name, l->out, l->out_size, l->tried, sizeof l->tried);
}

ss_status ss_model_resolve(const char *name, char *out, size_t out_size, ss_error *err)
{
    if (!name || !*name)
        return ss_fail(err, SS_E_USAGE, "no model given: use -m MODEL or set STEMSPLIT_MODEL");
    struct stat sb;
    int exists = stat(name, &sb) == 0, saved = errno;
    const char *kind = !exists || S_ISREG(sb.st_mode) ? NULL : S_ISDIR(sb.st_mode) ? "folder"
                       : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "device"
                       : S_ISFIFO(sb.st_mode) ? "pipe (FIFO)" : "special file";
    if (kind && strchr(name, '/'))
        return ss_fail(err, SS_E_NOINPUT, "%s: is a %s, not a model file (give a .safetensors file%s)", name, kind,
                       S_ISDIR(sb.st_mode) ? " in it, or -m NAME with STEMSPLIT_MODEL_PATH set to the folder" : "");
    if (strchr(name, '/') || (exists && !kind)) {
        if (!exists)
            return ss_fail(err, SS_E_NOINPUT, "%s: model file not found: %s", name, strerror(saved));
        if ((size_t)snprintf(out, out_size, "%s", name) >= out_size)
            return ss_fail(err, SS_E_USAGE, "%s: path too long", name);
        return SS_OK;
    }
    lookup l = {.name = name, .out = out, .out_size = out_size};
    ss_model_search_dirs(lookup_in, &l);
    if (l.found)
        return SS_OK;
    const char *tried = l.tried;
    if (kind)
        return ss_fail(err, SS_E_NOINPUT, "model '%s' not found: %s is a %s, not a model file, and there is no "
                       "%s.safetensors in %s", name, name, kind, name, tried);
    return ss_fail(err, SS_E_NOINPUT, "model '%s' not found: no file of that name, and no %s.safetensors in %s. "
                   "To install a released demucs model (names in scripts/models.txt): scripts/download-model.sh %s "
                   "(offline: put its .th files in a folder and set STEMSPLIT_DOWNLOAD_BASE=file:///that/folder/); "
                   "or convert a checkpoint you have: scripts/convert-demucs.py -o %s.safetensors CHECKPOINT.th "
                   "and give -m with that file", name, name, tried, name, name);
}

/* ---- metadata --------------------------------------------------------------------- */

static int valid_source_name(const char *s, size_t len)
{
    if (len == 0 || len >= SS_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static ss_status read_info(const ss_st *st, const char *path, ss_model_info *info, ss_error *err)
{
    memset(info, 0, sizeof *info);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t blen = strlen(base);
    if (blen > 12 && strcmp(base + blen - 12, ".safetensors") == 0)
        blen -= 12;
    snprintf(info->name, sizeof info->name, "%.*s", (int)(blen < SS_MAX_NAME - 1 ? blen : SS_MAX_NAME - 1), base);

    const char *arch = ss_st_meta(st, "stemsplit.architecture");
    if (!arch)
        return ss_fail(err, SS_E_DATA, "%s: not a stemsplit model: metadata 'stemsplit.architecture' is missing "
                       "(convert demucs checkpoints with scripts/convert-demucs.py)", path);
    if (strlen(arch) >= SS_MAX_NAME)
        return ss_fail(err, SS_E_DATA, "%s: architecture name too long", path);
    snprintf(info->architecture, sizeof info->architecture, "%s", arch);

    const char *src = ss_st_meta(st, "stemsplit.sources");
    if (!src)
        return ss_fail(err, SS_E_DATA, "%s: metadata 'stemsplit.sources' is missing", path);
    for (const char *p = src;;) {
        size_t len = strcspn(p, ",");
        if (info->n_sources == SS_MAX_SOURCES)
            return ss_fail(err, SS_E_DATA, "%s: more than %d sources", path, SS_MAX_SOURCES);
        if (!valid_source_name(p, len))
            return ss_fail(err, SS_E_DATA, "%s: bad source name '%.*s' in stemsplit.sources "
                           "(letters, digits, '_' and '-' only)", path, (int)(len < 80 ? len : 80), p);
        memcpy(info->sources[info->n_sources], p, len);
        info->sources[info->n_sources++][len] = '\0';
        for (int i = 0; i < info->n_sources - 1; i++)
            if (strcmp(info->sources[i], info->sources[info->n_sources - 1]) == 0)
                return ss_fail(err, SS_E_DATA, "%s: source '%s' listed twice", path, info->sources[i]);
        if (!p[len])
            break;
        p += len + 1;
    }

    int64_t v;
    ss_status s = ss_st_meta_int(st, "stemsplit.samplerate", &v, err);
    if (s != SS_OK)
        return s;
    if (v < 1000 || v > 768000)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.samplerate %lld Hz is out of range", path, (long long)v);
    info->samplerate = (int)v;
    if ((s = ss_st_meta_int(st, "stemsplit.channels", &v, err)) != SS_OK)
        return s;
    if (v < 1 || v > 8)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.channels %lld is out of range (1..8)", path, (long long)v);
    info->channels = (int)v;
    if ((s = ss_st_meta_fraction(st, "stemsplit.segment", &info->segment_num, &info->segment_den, err)) != SS_OK)
        return s;
    if (info->segment_num <= 0 || info->segment_num / info->segment_den > 3600)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.segment must be between 0 and 3600 seconds", path);
    info->segment_length = (int64_t)info->samplerate * info->segment_num / info->segment_den;
    if (info->segment_length < 1)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.segment is shorter than one sample", path);
    for (int i = 0; i < ss_st_count(st); i++)
        info->parameters += (uint64_t)ss_st_tensor_at(st, i)->numel;
    return SS_OK;
}

/* ---- loading and running ------------------------------------------------------------ */

/* The architecture named in info, or SS_E_DATA naming those this build knows. */
static ss_status find_arch(const char *path, const ss_model_info *info, const ss_arch **out, ss_error *err)
{
    for (int i = 0; arches[i]; i++)
        if (strcmp(arches[i]->name, info->architecture) == 0) {
            *out = arches[i];
            return SS_OK;
        }
    char known[256] = "";
    for (int i = 0; arches[i]; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", arches[i]->name);
    return ss_fail(err, SS_E_DATA, "%s: unknown architecture '%s' (this build knows: %s)", path,
                   info->architecture, known);
}

/* The pipeline policy a model file may set (docs/model-format.md), after its
 * architecture is known: the chunking scheme (stemsplit.chunking, else the
 * architecture's), MSST's chunk_size and num_overlap, and a residual stem. */
static ss_status read_policy(const ss_st *st, const char *path, const ss_arch *arch, ss_model_info *info,
                             ss_error *err)
{
    info->chunking = arch->chunking;
    const char *ch = ss_st_meta(st, "stemsplit.chunking");
    if (ch && strcmp(ch, "demucs") == 0)
        info->chunking = SS_CHUNK_DEMUCS;
    else if (ch && strcmp(ch, "msst") == 0)
        info->chunking = SS_CHUNK_MSST;
    else if (ch && strcmp(ch, "stft_blocks") == 0 && arch->stft_blocks)
        info->chunking = SS_CHUNK_STFT_BLOCKS;
    else if (ch && strcmp(ch, "stream") == 0 && arch->stream_run)
        info->chunking = SS_CHUNK_STREAM;
    else if (ch)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.chunking '%.64s': expected demucs or msst%s", path, ch,
                       arch->stft_blocks ? " or stft_blocks" : "");
    if (arch->chunking == SS_CHUNK_STREAM && info->chunking != SS_CHUNK_STREAM)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.chunking '%.64s': a %s model runs as one stream only", path,
                       ch, arch->name);
    if (arch->chunking == SS_CHUNK_STFT_BLOCKS && info->chunking != SS_CHUNK_STFT_BLOCKS)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.chunking '%.64s': a %s model runs on whole-track STFT blocks "
                       "only", path, ch, arch->name);
    int64_t v;
    ss_status s;
    if (ss_st_meta(st, "msst.chunk_size")) {
        if ((s = ss_st_meta_int(st, "msst.chunk_size", &v, err)) != SS_OK)
            return s;
        if (v < 10 || v > (int64_t)info->samplerate * 3600)
            return ss_fail(err, SS_E_DATA, "%s: msst.chunk_size %lld is out of range (10 samples to an hour)", path,
                           (long long)v);
        info->segment_length = v;              /* the chunk is the model's segment */
        info->segment_num = v;
        info->segment_den = info->samplerate;
    }
    info->overlap_default = 2;
    if (ss_st_meta(st, "msst.num_overlap")) {
        if ((s = ss_st_meta_int(st, "msst.num_overlap", &v, err)) != SS_OK)
            return s;
        if (v < 1 || v > 1000)
            return ss_fail(err, SS_E_DATA, "%s: msst.num_overlap %lld is out of range (1..1000)", path,
                           (long long)v);
        info->overlap_default = (int)v;
    }
    info->channels_independent = arch->channels_independent;
    if (arch->channels_independent && arch->chunking != SS_CHUNK_STREAM)
        return ss_fail(err, SS_E_INTERNAL, "%s: architecture %s runs channels on their own but not as a stream", path,
                       arch->name);
    if (arch->channels_independent && info->channels != 1)
        return ss_fail(err, SS_E_DATA, "%s: stemsplit.channels %d: a %s model runs each channel of a file on its own "
                       "(any count), so its file must say 1", path, info->channels, arch->name);
    info->msst_normalize = 0;
    if (ss_st_meta(st, "msst.normalize") &&
        (s = ss_st_meta_bool(st, "msst.normalize", &info->msst_normalize, err)) != SS_OK)
        return s;
    const char *res = ss_st_meta(st, "stemsplit.residual");
    if (res) {
        size_t len = strlen(res);
        if (!valid_source_name(res, len))
            return ss_fail(err, SS_E_DATA, "%s: bad stem name '%.80s' in stemsplit.residual (letters, digits, '_' "
                           "and '-' only)", path, res);
        if (info->n_sources == SS_MAX_SOURCES)
            return ss_fail(err, SS_E_DATA, "%s: more than %d sources with the residual '%s'", path,
                           SS_MAX_SOURCES, res);
        for (int i = 0; i < info->n_sources; i++)
            if (strcmp(info->sources[i], res) == 0)
                return ss_fail(err, SS_E_DATA, "%s: stemsplit.residual '%s' is also one of stemsplit.sources", path,
                               res);
        memcpy(info->sources[info->n_sources++], res, len + 1);
        info->residual = 1;
    }
    return SS_OK;
}

/* What an architecture sees: the stems its network gives (no residual). */
static ss_model_info arch_view(const ss_model_info *info)
{
    ss_model_info v = *info;
    v.n_sources = ss_model_net_sources(info);
    if (info->residual)
        v.sources[v.n_sources][0] = '\0';
    v.residual = 0;
    return v;
}

/* The architecture's estimate, or the floor: weights and one segment's input
 * and output (x [C, L], y [S, C, L] floats). */
static ss_status estimate(const ss_arch *arch, ss_st *st, const ss_model_info *info, ss_mem_estimate *out,
                          ss_error *err)
{
    if (arch->memory_estimate) {
        ss_model_info view = arch_view(info);
        return arch->memory_estimate(st, &view, out, err);
    }
    uint64_t seg = (uint64_t)info->segment_length * (uint64_t)info->channels;
    *out = (ss_mem_estimate){.fixed = info->parameters * 4u, .per_item = seg * 4u * (1u + (uint64_t)info->n_sources)};
    return SS_OK;
}

ss_status ss_model_peek(const char *path, ss_model_info *info, ss_mem_estimate *mem, ss_error *err)
{
    ss_st *st = NULL;
    ss_status s = ss_st_open(path, &st, err);
    if (s != SS_OK)
        return s;
    const ss_arch *arch = NULL;
    ss_mem_estimate m;
    if ((s = read_info(st, path, info, err)) == SS_OK && (s = find_arch(path, info, &arch, err)) == SS_OK &&
        (s = read_policy(st, path, arch, info, err)) == SS_OK && (s = estimate(arch, st, info, &m, err)) == SS_OK && mem)
        *mem = m;
    ss_st_close(st);
    return s;
}

ss_status ss_model_load(const char *path, ss_backend *be, ss_model **out, ss_error *err)
{
    ss_st *st = NULL;
    ss_status s = ss_st_open(path, &st, err);
    if (s != SS_OK)
        return s;
    ss_model *m = calloc(1, sizeof *m);
    if (!m) {
        ss_st_close(st);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    }
    m->be = be;
    if ((s = read_info(st, path, &m->info, err)) != SS_OK || (s = find_arch(path, &m->info, &m->arch, err)) != SS_OK ||
        (s = read_policy(st, path, m->arch, &m->info, err)) != SS_OK ||
        (s = estimate(m->arch, st, &m->info, &m->mem, err)) != SS_OK)
        goto fail;
    ss_model_info view = arch_view(&m->info);
    if ((s = m->arch->load(st, &view, be, &m->state, err)) != SS_OK)
        goto fail;
    if ((s = ss_backend_status(be, err)) != SS_OK)
        goto fail;
    ss_st_close(st);
    *out = m;
    return SS_OK;
fail:
    if (m->state)
        m->arch->free(m->state, be);
    ss_st_close(st);
    free(m);
    return s;
}

ss_input_norm ss_model_input_norm(const ss_model *m)
{
    if (m->info.msst_normalize)              /* MSST's inference.normalize, for any architecture */
        return SS_NORM_MIX_MEAN_STD_POP;
    return m->arch->input_norm ? m->arch->input_norm(m->state) : SS_NORM_NONE;
}

ss_chunking ss_model_chunking(const ss_model *m) { return m->info.chunking; }

static ss_status no_stream(const ss_model *m, ss_error *err)
{
    return ss_fail(err, SS_E_INTERNAL, "%s: architecture %s does not run as a stream", m->info.name, m->arch->name);
}

ss_status ss_model_stream_geom(const ss_model *m, ss_stream_geom *out, ss_error *err)
{
    if (!m->arch->stream_geom || !m->arch->stream_begin || !m->arch->stream_run)
        return no_stream(m, err);
    memset(out, 0, sizeof *out);
    m->arch->stream_geom(m->state, out);
    if (out->block < 1 || out->extra < 0)
        return ss_fail(err, SS_E_INTERNAL, "%s: bad stream geometry (block %lld, extra %lld)", m->info.name,
                       (long long)out->block, (long long)out->extra);
    return SS_OK;
}

ss_status ss_model_stream_begin(ss_model *m, int64_t length, int channels, ss_error *err)
{
    if (!m->arch->stream_begin)
        return no_stream(m, err);
    if (channels < 1 || (channels != m->info.channels && !m->info.channels_independent))
        return ss_fail(err, SS_E_INTERNAL, "%s: a stream of %d channels for a model of %d", m->info.name, channels,
                       m->info.channels);
    if (length < 0 && (length != -1 || !ss_model_stream_live(m)))
        return ss_fail(err, SS_E_INTERNAL, "%s: architecture %s cannot run a stream of unknown length (%lld)",
                       m->info.name, m->arch->name, (long long)length);
    return m->arch->stream_begin(m->state, m->be, length, channels, err);
}

int ss_model_stream_live(const ss_model *m)
{
    return m->info.chunking == SS_CHUNK_STREAM && m->arch->stream_run && m->arch->stream_end;
}

ss_status ss_model_stream_end(ss_model *m, float *y, int64_t *n_out, ss_error *err)
{
    if (!ss_model_stream_live(m))
        return ss_fail(err, SS_E_INTERNAL, "%s: architecture %s cannot run a stream of unknown length", m->info.name,
                       m->arch->name);
    return m->arch->stream_end(m->state, m->be, y, n_out, err);
}

int ss_model_track_stats(const ss_model *m, ss_track_stat *out, int cap)
{
    if (!m->arch->track_stats || cap <= 0)
        return 0;
    int n = m->arch->track_stats(m->state, out, cap);
    return n < 0 ? 0 : n > cap ? cap : n;
}

ss_status ss_model_stream_run(ss_model *m, const float *x, float *y, int64_t n, int64_t *n_out, ss_error *err)
{
    if (!m->arch->stream_run)
        return no_stream(m, err);
    return m->arch->stream_run(m->state, m->be, x, y, n, n_out, err);
}

ss_status ss_model_stft_blocks(const ss_model *m, ss_stft_blocks *out, ss_error *err)
{
    if (!m->arch->stft_blocks)
        return ss_fail(err, SS_E_INTERNAL, "%s: architecture %s has no STFT block geometry", m->info.name,
                       m->arch->name);
    memset(out, 0, sizeof *out);
    m->arch->stft_blocks(m->state, out);
    if (out->n_fft < 2 || out->n_fft % 2 || out->hop < 1 || (out->n_fft / 2) % out->hop || out->block < 1 ||
        !out->window_sq)
        return ss_fail(err, SS_E_INTERNAL, "%s: bad STFT block geometry (n_fft %d, hop %d, block %d)", m->info.name,
                       out->n_fft, out->hop, out->block);
    return SS_OK;
}

ss_status ss_model_option(ss_model *m, const char *key, double value, ss_error *err)
{
    if (!m->arch->option)
        return ss_fail(err, SS_E_USAGE, "model %s (%s) has no option '%s'", m->info.name, m->arch->name, key);
    return m->arch->option(m->state, key, value, err);
}
const ss_mem_estimate *ss_model_memory(const ss_model *m) { return &m->mem; }

const ss_model_info *ss_model_get_info(const ss_model *m) { return &m->info; }

static graph_entry *find_args(ss_model *m, const float *x, const float *y, int batch, int64_t length)
{
    for (int i = 0; i < m->n_graphs; i++) {
        graph_entry *g = &m->graphs[i];
        if (g->x == x && g->y == y && g->batch == batch && g->length == length)
            return g;
    }
    return NULL;
}

static void drop_graphs(ss_model *m)
{
    for (int i = 0; i < m->n_graphs; i++)
        ss_graph_free(m->be, m->graphs[i].graph);
    m->n_graphs = 0;
}

/* The backend's memory generation; without one, the number of direct passes
 * (any of which may have moved memory a recording uses). */
static unsigned long generation(const ss_model *m)
{
    unsigned long g;
    return ss_backend_generation(m->be, &g) ? g : m->directs;
}

/* With op recording (CUDA graphs): the first pass with new arguments runs
 * directly (it may allocate and grow buffers); the next one with the same
 * arguments is recorded and launched, later ones replay the recording.  A
 * recording is kept per set of arguments (N_GRAPHS at most) while the
 * backend's memory generation stays the one it was made in (nothing it uses
 * was released or moved); a stale one is recorded again, without a direct
 * pass first (buffers only grow: these arguments fit).  A recording that fails
 * although nothing moved since its direct pass (the model did a host round
 * trip after all) turns recording off for the model: same results, slower. */
ss_status ss_model_forward(ss_model *m, const float *x, float *y, int batch, int64_t length, ss_error *err)
{
    ss_backend *be = m->be;
    int rec = !m->graphs_off && m->arch->graph_ok && ss_graph_available(be) &&
              m->arch->graph_ok(m->state, batch, length);
    graph_entry *e = rec ? find_args(m, x, y, batch, length) : NULL;
    m->clock++;
    if (e) {
        unsigned long gen = generation(m);
        e->used = m->clock;
        if (e->graph && e->gen == gen)
            return ss_graph_launch(be, e->graph, err);
        if (e->graph) {                                       /* stale */
            ss_graph_free(be, e->graph);
            e->graph = NULL;
        }
        ss_error rerr = {0};
        void *g = NULL;
        ss_status s = ss_graph_begin(be, &rerr);
        if (s == SS_OK) {
            ss_status fs = m->arch->forward(m->state, be, x, y, batch, length, &rerr);
            s = ss_graph_end(be, &g, &rerr);
            if (s == SS_OK && fs != SS_OK) {
                ss_graph_free(be, g);
                s = fs;
            }
        }
        if (s == SS_OK) {
            e->graph = g;
            e->gen = gen;
            return ss_graph_launch(be, g, err);
        }
        if (e->direct_gen == gen) {
            m->graphs_off = 1;                              /* run directly from now on */
            drop_graphs(m);
            e = NULL;
        }
    }
    ss_status s = m->arch->forward(m->state, be, x, y, batch, length, err);
    m->directs++;
    if (s != SS_OK)
        return s;
    if (rec && !e && !m->graphs_off) {               /* a slot: a free one or the least recently used */
        if (m->n_graphs < N_GRAPHS) {
            e = &m->graphs[m->n_graphs++];
        } else {
            e = &m->graphs[0];
            for (int i = 1; i < N_GRAPHS; i++)
                if (m->graphs[i].used < e->used)
                    e = &m->graphs[i];
            ss_graph_free(be, e->graph);
        }
        *e = (graph_entry){.x = x, .y = y, .batch = batch, .length = length, .used = m->clock};
    }
    if (e)
        e->direct_gen = generation(m);
    return ss_backend_check(be, err);          /* no wait: the caller's download does */
}

int64_t ss_model_valid_length(ss_model *m, int64_t length)
{
    return m->arch->valid_length ? m->arch->valid_length(m->state, length) : length;
}

static void io_free(ss_model *m)
{
    ss_model_io *io = &m->io;
    for (int k = 0; k < 2; k++) {
        ss_host_free(m->be, io->host_x[k]);
        ss_host_free(m->be, io->host_y[k]);
    }
    ss_free(m->be, io->dev_x);
    ss_free(m->be, io->dev_y);
    memset(io, 0, sizeof *io);
}

ss_status ss_model_io_get(ss_model *m, size_t n_x, size_t n_y, ss_model_io **out, ss_error *err)
{
    ss_model_io *io = &m->io;
    *out = NULL;
    if (io->dev_x && io->n_x >= n_x && io->n_y >= n_y) {
        *out = io;
        return SS_OK;
    }
    io_free(m);
    for (int k = 0; k < 2; k++) {
        io->host_x[k] = ss_host_alloc(m->be, n_x);
        io->host_y[k] = ss_host_alloc(m->be, n_y);
    }
    if (!io->host_x[0] || !io->host_x[1] || !io->host_y[0] || !io->host_y[1]) {
        io_free(m);
        return ss_fail(err, SS_E_NOMEM, "out of memory for the engine's buffers (%zu MiB)",
                       (2 * (n_x + n_y) * sizeof(float)) >> 20);
    }
    io->dev_x = ss_alloc(m->be, n_x);
    io->dev_y = ss_alloc(m->be, n_y);
    ss_status s = ss_backend_status(m->be, err);
    if (s == SS_OK && (!io->dev_x || !io->dev_y))
        s = ss_fail(err, SS_E_DEVICE, "%s: cannot allocate the engine's device buffers",
                    ss_backend_device(m->be)->name);
    if (s != SS_OK) {
        io_free(m);
        return s;
    }
    io->n_x = n_x;
    io->n_y = n_y;
    *out = io;
    return SS_OK;
}

void ss_model_free(ss_model *m)
{
    if (!m)
        return;
    io_free(m);
    drop_graphs(m);
    m->arch->free(m->state, m->be);
    free(m);
}

/* safetensors.c - read-only, validated access to a .safetensors file (see
 * safetensors.h and docs/model-format.md).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, data area.
 * The file is mmap'd; the header is checked by a cheap pre-scan (sizes and
 * counts, so a hostile header cannot make cJSON allocate gigabytes) and then
 * parsed with cJSON.  Every tensor entry is validated before ss_st_open()
 * returns; names and metadata strings point into the kept cJSON tree.
 */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real models are far below these (an HTDemucs bag of 4: ~2,400 tensors,
 * ~30,000 JSON values, a 250 KB header).  They bound what a hostile header
 * can make cJSON allocate: about 100 bytes per value, so ~100 MB at most. */
#define ST_MAX_HEADER   (16u * 1024u * 1024u)   /* largest header accepted, bytes */
#define ST_MAX_ENTRIES  100000                  /* top-level header entries      */
#define ST_MAX_VALUES   1000000L                /* JSON values in the header     */
#define ST_MAX_DEPTH    3                       /* root > entry > shape array    */
#define ST_MAX_ARRAY    64                      /* elements in an inner array    */
#define ST_MAX_NUMEL    ((int64_t)1 << 40)      /* elements in one tensor        */
#define ST_MAX_OFFSET   9007199254740992.0      /* 2^53: exact in a double       */
#define ST_META_KEY     "__metadata__"

struct ss_st {
    char *path;               /* copy of the path given to ss_st_open()       */
    void *map;                /* the whole file, mmap'd read-only             */
    size_t map_size;          /* file size in bytes                           */
    cJSON *root;              /* parsed header; owns names and metadata text  */
    ss_st_tensor *tensors;    /* n_tensors entries, in header order           */
    int n_tensors;            /* number of tensors                            */
    int *by_name;             /* tensor indices sorted by name (for lookup)   */
    unsigned char *used;      /* used[i] != 0 once fetched with ss_st_get()   */
    const char **meta_keys;   /* n_meta metadata keys, in header order        */
    const char **meta_vals;   /* n_meta metadata values                       */
    int n_meta;               /* number of metadata entries                   */
};

/* ---- small helpers ------------------------------------------------------ */

const char *ss_dtype_name(ss_dtype dt)
{
    switch (dt) {
    case SS_DT_F32:  return "F32";
    case SS_DT_F16:  return "F16";
    case SS_DT_BF16: return "BF16";
    }
    return "?";
}

size_t ss_dtype_size(ss_dtype dt)
{
    switch (dt) {
    case SS_DT_F32:  return 4;
    case SS_DT_F16:  return 2;
    case SS_DT_BF16: return 2;
    }
    return 0;
}

/* dtype from its safetensors name; 0 on success, -1 when unsupported. */
static int dtype_parse(const char *s, ss_dtype *out)
{
    if (strcmp(s, "F32") == 0)
        *out = SS_DT_F32;
    else if (strcmp(s, "F16") == 0)
        *out = SS_DT_F16;
    else if (strcmp(s, "BF16") == 0)
        *out = SS_DT_BF16;
    else
        return -1;
    return 0;
}

/* "[2, 3]" into buf (truncated to fit). */
static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t len = 0;
    int n = snprintf(buf, size, "[");
    for (int i = 0; n >= 0 && i < ndim; i++) {
        len += (size_t)n;
        if (len >= size)
            return;
        n = snprintf(buf + len, size - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (n >= 0 && len + (size_t)n < size)
        snprintf(buf + len + (size_t)n, size - len - (size_t)n, "]");
}

/* ---- header pre-scan ---------------------------------------------------- */

/* Bound the header's size before cJSON sees it: nesting depth, number of
 * top-level entries, number of values overall and elements of inner arrays;
 * refuse raw control characters and \u0000 inside strings.  Not a parser:
 * anything it lets through still has to be valid JSON for cJSON. */
static ss_status header_prescan(const char *h, size_t n, const char *path, ss_error *err)
{
    int depth = 0, in_str = 0;
    long commas = 0, values = 1, inner = 0; /* commas at depth 1 = entries - 1 */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (in_str) {
            if (c == '"') {
                in_str = 0;
            } else if (c < 0x20) {
                return ss_fail(err, SS_E_DATA, "%s: header: control character 0x%02x in a string at byte %zu",
                               path, c, i);
            } else if (c == '\\') {
                if (n - i > 5 && memcmp(h + i + 1, "u0000", 5) == 0)
                    return ss_fail(err, SS_E_DATA, "%s: header: \\u0000 in a string at byte %zu", path, i);
                i++; /* skip the escaped character */
            }
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > ST_MAX_DEPTH)
                return ss_fail(err, SS_E_DATA, "%s: header: nested deeper than %d levels at byte %zu",
                               path, ST_MAX_DEPTH, i);
            values++;
            inner = 0;
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            values++;
            if (depth == 1 && ++commas >= ST_MAX_ENTRIES)
                return ss_fail(err, SS_E_DATA, "%s: header: more than %d entries", path, ST_MAX_ENTRIES);
            if (depth == ST_MAX_DEPTH && ++inner >= ST_MAX_ARRAY)
                return ss_fail(err, SS_E_DATA, "%s: header: an array has more than %d elements at byte %zu",
                               path, ST_MAX_ARRAY, i);
        }
        if (values > ST_MAX_VALUES)
            return ss_fail(err, SS_E_DATA, "%s: header: more than %ld JSON values", path, ST_MAX_VALUES);
    }
    return SS_OK;
}

/* ---- entry validation --------------------------------------------------- */

/* A JSON number that is a whole number in [0, max]; 0 on success. */
static int json_uint(const cJSON *v, double max, int64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= max) || d != floor(d))
        return -1;
    *out = (int64_t)d;
    return 0;
}

/* Check the "shape" array of tensor `name` and fill t->ndim/shape/numel. */
static ss_status parse_shape(const cJSON *shape, ss_st_tensor *t, const char *path, const char *name,
                             ss_error *err)
{
    if (!cJSON_IsArray(shape))
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': \"shape\" missing or not an array", path, name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > SS_ST_MAX_DIMS)
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': %d dimensions, at most %d supported", path, name,
                       ndim, SS_ST_MAX_DIMS);
    int64_t numel = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        int64_t dim;
        if (json_uint(d, (double)ST_MAX_NUMEL, &dim) != 0)
            return ss_fail(err, SS_E_DATA,
                           "%s: tensor '%s': shape dimension %d is not an integer in 0..2^40", path, name, i);
        if (dim != 0 && numel > ST_MAX_NUMEL / dim)
            return ss_fail(err, SS_E_DATA, "%s: tensor '%s': shape has more than 2^40 elements", path,
                           name);
        numel *= dim;
        t->shape[i] = dim;
    }
    t->ndim = ndim;
    t->numel = numel;
    return SS_OK;
}

/* Check one tensor entry `e` named `name`; data area is `data`, `data_size`
 * bytes.  Fills *t; name points into the cJSON tree. */
static ss_status parse_tensor(const cJSON *e, const char *name, const unsigned char *data, size_t data_size,
                              ss_st_tensor *t, const char *path, ss_error *err)
{
    if (!cJSON_IsObject(e))
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': entry is not a JSON object", path, name);
    memset(t, 0, sizeof *t);
    t->name = name;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': \"dtype\" missing or not a string", path, name);
    if (dtype_parse(dt->valuestring, &t->dtype) != 0)
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': unsupported dtype '%s' (F32, F16, BF16 supported)",
                       path, name, dt->valuestring);
    ss_status s = parse_shape(cJSON_GetObjectItemCaseSensitive(e, "shape"), t, path, name, err);
    if (s != SS_OK)
        return s;
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child, ST_MAX_OFFSET, &begin) != 0
        || json_uint(off->child->next, ST_MAX_OFFSET, &end) != 0)
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': \"data_offsets\" must be [begin, end] non-negative integers",
                       path, name);
    if (begin > end)
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': data_offsets [%lld, %lld] begin after end", path, name,
                       (long long)begin, (long long)end);
    if ((uint64_t)end > (uint64_t)data_size)
        return ss_fail(err, SS_E_DATA,
                       "%s: tensor '%s': data_offsets [%lld, %lld] outside the data area of %zu bytes", path,
                       name, (long long)begin, (long long)end, data_size);
    /* numel <= 2^40 and dtype size <= 4: no overflow */
    uint64_t want = (uint64_t)t->numel * ss_dtype_size(t->dtype);
    if ((uint64_t)(end - begin) != want)
        return ss_fail(err, SS_E_DATA,
                       "%s: tensor '%s': data_offsets span %lld bytes but %s shape needs %llu", path, name,
                       (long long)(end - begin), ss_dtype_name(t->dtype), (unsigned long long)want);
    t->data = data + begin;
    t->nbytes = (size_t)want;
    return SS_OK;
}

/* One tensor's sort key: name and byte range, with its header index. */
typedef struct st_key {
    const char *name;             /* tensor name                      */
    const unsigned char *begin;   /* first byte inside the mapping    */
    size_t nbytes;                /* length of the byte range         */
    int idx;                      /* index into ss_st.tensors         */
} st_key;

static int cmp_key_name(const void *a, const void *b)
{
    return strcmp(((const st_key *)a)->name, ((const st_key *)b)->name);
}

static int cmp_key_begin(const void *a, const void *b)
{
    const unsigned char *pa = ((const st_key *)a)->begin, *pb = ((const st_key *)b)->begin;
    return pa < pb ? -1 : pa > pb;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* First name occurring twice in `names` (n entries, sorted in place), or NULL. */
static const char *find_duplicate(const char **names, int n)
{
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    return NULL;
}

/* Refuse duplicate metadata keys. */
static ss_status check_meta_unique(const ss_st *st, ss_error *err)
{
    if (st->n_meta < 2)
        return SS_OK;
    const char **keys = malloc((size_t)st->n_meta * sizeof *keys);
    if (!keys)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory checking %d metadata keys", st->path, st->n_meta);
    memcpy(keys, st->meta_keys, (size_t)st->n_meta * sizeof *keys);
    const char *dup = find_duplicate(keys, st->n_meta);
    ss_status s = dup ? ss_fail(err, SS_E_DATA, "%s: metadata '%s': key appears twice", st->path, dup) : SS_OK;
    free(keys);
    return s;
}

/* Sorted-by-name index; refuse duplicate names and overlapping byte ranges. */
static ss_status index_tensors(ss_st *st, ss_error *err)
{
    int n = st->n_tensors;
    size_t cap = (size_t)(n ? n : 1);
    st_key *keys = malloc(cap * sizeof *keys);
    st->by_name = malloc(cap * sizeof *st->by_name);
    st->used = calloc(cap, 1);
    if (!keys || !st->by_name || !st->used) {
        free(keys);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory indexing %d tensors", st->path, n);
    }
    for (int i = 0; i < n; i++)
        keys[i] = (st_key){st->tensors[i].name, st->tensors[i].data, st->tensors[i].nbytes, i};
    ss_status s = SS_OK;
    qsort(keys, (size_t)n, sizeof *keys, cmp_key_name);
    for (int i = 0; i < n; i++) {
        st->by_name[i] = keys[i].idx;
        if (i > 0 && s == SS_OK && strcmp(keys[i - 1].name, keys[i].name) == 0)
            s = ss_fail(err, SS_E_DATA, "%s: tensor '%s': name appears twice in the header", st->path,
                        keys[i].name);
    }
    qsort(keys, (size_t)n, sizeof *keys, cmp_key_begin);
    const st_key *last = NULL; /* the non-empty range reaching furthest so far */
    for (int i = 0; i < n && s == SS_OK; i++) {
        if (keys[i].nbytes == 0)
            continue;
        if (last && keys[i].begin < last->begin + last->nbytes)
            s = ss_fail(err, SS_E_DATA, "%s: tensor '%s': bytes overlap tensor '%s'", st->path, keys[i].name,
                        last->name);
        if (!last || keys[i].begin + keys[i].nbytes > last->begin + last->nbytes)
            last = &keys[i];
    }
    free(keys);
    return s;
}

/* Check __metadata__ (object of strings) and record its entries. */
static ss_status parse_meta(ss_st *st, const cJSON *m, ss_error *err)
{
    if (!cJSON_IsObject(m))
        return ss_fail(err, SS_E_DATA, "%s: header: %s is not a JSON object", st->path, ST_META_KEY);
    int n = cJSON_GetArraySize(m);
    if (n == 0)
        return SS_OK;
    st->meta_keys = calloc((size_t)n, sizeof *st->meta_keys);
    st->meta_vals = calloc((size_t)n, sizeof *st->meta_vals);
    if (!st->meta_keys || !st->meta_vals)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory for %d metadata entries", st->path, n);
    for (const cJSON *v = m->child; v; v = v->next) {
        if (!cJSON_IsString(v))
            return ss_fail(err, SS_E_DATA, "%s: metadata '%s': value is not a string", st->path, v->string);
        st->meta_keys[st->n_meta] = v->string;
        st->meta_vals[st->n_meta] = v->valuestring;
        st->n_meta++;
    }
    return check_meta_unique(st, err);
}

/* Parse and validate the header of the mapped file. */
static ss_status parse_header(ss_st *st, ss_error *err)
{
    const unsigned char *base = st->map;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | base[i];
    if (n < 2 || n > ST_MAX_HEADER)
        return ss_fail(err, SS_E_DATA, "%s: header length %llu is out of range (2 .. %u bytes)", st->path,
                       (unsigned long long)n, ST_MAX_HEADER);
    if (n > st->map_size - 8)
        return ss_fail(err, SS_E_DATA, "%s: header length %llu runs past the end of the %zu-byte file",
                       st->path, (unsigned long long)n, st->map_size);
    const char *hdr = (const char *)base + 8;
    ss_status s = header_prescan(hdr, (size_t)n, st->path, err);
    if (s != SS_OK)
        return s;
    /* A NUL-terminated copy, so cJSON can never read past the header. */
    char *copy = malloc((size_t)n + 1);
    if (!copy)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory for a %llu-byte header", st->path,
                       (unsigned long long)n);
    memcpy(copy, hdr, (size_t)n);
    copy[n] = '\0';
    const char *end = NULL;
    st->root = cJSON_ParseWithLengthOpts(copy, (size_t)n, &end, 0);
    size_t stop = end ? (size_t)(end - copy) : 0;
    free(copy);
    if (!st->root)
        return ss_fail(err, SS_E_DATA, "%s: header is not valid JSON (near byte %zu)", st->path, stop);
    for (size_t i = stop; i < n; i++)
        if (!strchr(" \t\r\n", hdr[i]))
            return ss_fail(err, SS_E_DATA, "%s: header: unexpected bytes after the JSON at byte %zu", st->path, i);
    if (!cJSON_IsObject(st->root))
        return ss_fail(err, SS_E_DATA, "%s: header is not a JSON object", st->path);

    const unsigned char *data = base + 8 + n;
    size_t data_size = st->map_size - 8 - (size_t)n;
    int n_entries = cJSON_GetArraySize(st->root);
    st->tensors = calloc((size_t)(n_entries ? n_entries : 1), sizeof *st->tensors);
    if (!st->tensors)
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory for %d tensors", st->path, n_entries);
    int seen_meta = 0;
    for (const cJSON *e = st->root->child; e; e = e->next) {
        if (strcmp(e->string, ST_META_KEY) == 0) {
            if (seen_meta++)
                return ss_fail(err, SS_E_DATA, "%s: header: %s appears twice", st->path, ST_META_KEY);
            s = parse_meta(st, e, err);
        } else {
            s = parse_tensor(e, e->string, data, data_size, &st->tensors[st->n_tensors], st->path, err);
            st->n_tensors++;
        }
        if (s != SS_OK)
            return s;
    }
    return index_tensors(st, err);
}

/* ---- open / close ------------------------------------------------------- */

ss_status ss_st_open(const char *path, ss_st **out, ss_error *err)
{
    *out = NULL;
    ss_st *st = calloc(1, sizeof *st);
    char *p = strdup(path);
    if (!st || !p) {
        free(st);
        free(p);
        return ss_fail(err, SS_E_NOMEM, "%s: out of memory", path);
    }
    st->path = p;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        ss_st_close(st);
        return ss_fail(err, SS_E_NOINPUT, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    ss_status s = SS_OK;
    if (fstat(fd, &sb) != 0)
        s = ss_fail(err, SS_E_NOINPUT, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        s = ss_fail(err, SS_E_NOINPUT, "%s: not a regular file", path);
    else if (sb.st_size < 8)
        s = ss_fail(err, SS_E_DATA, "%s: file is %lld bytes, too short for a safetensors header", path,
                    (long long)sb.st_size);
    else if ((uintmax_t)sb.st_size > (uintmax_t)SIZE_MAX)
        s = ss_fail(err, SS_E_DATA, "%s: file too large to map", path);
    if (s == SS_OK) {
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            s = ss_fail(err, SS_E_IO, "%s: cannot map: %s", path, strerror(errno));
        else {
            st->map = m;
            st->map_size = (size_t)sb.st_size;
        }
    }
    close(fd);
    if (s == SS_OK)
        s = parse_header(st, err);
    if (s != SS_OK) {
        ss_st_close(st);
        return s;
    }
    *out = st;
    return SS_OK;
}

void ss_st_release(const ss_st *st, const ss_st_tensor *t)
{
    long page = sysconf(_SC_PAGESIZE);
    if (!st || !st->map || !t || !t->data || page <= 0)
        return;
    uintptr_t lo = (uintptr_t)t->data, hi = lo + t->nbytes, ps = (uintptr_t)page;
    lo = (lo + ps - 1) / ps * ps;                   /* whole pages inside the tensor only */
    hi = hi / ps * ps;
    if (hi > lo)                                    /* a clean file page: dropped, read again on use */
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void ss_st_close(ss_st *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_size);
    cJSON_Delete(st->root);
    free(st->tensors);
    free(st->by_name);
    free(st->used);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->path);
    free(st);
}

/* ---- lookup ------------------------------------------------------------- */

const char *ss_st_path(const ss_st *st) { return st->path; }

int ss_st_count(const ss_st *st) { return st->n_tensors; }

const ss_st_tensor *ss_st_tensor_at(const ss_st *st, int i)
{
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

/* Index of tensor `name`, or -1. */
static int find_index(const ss_st *st, const char *name)
{
    int lo = 0, hi = st->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[st->by_name[mid]].name);
        if (c == 0)
            return st->by_name[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

const ss_st_tensor *ss_st_find(const ss_st *st, const char *name)
{
    int i = find_index(st, name);
    return i < 0 ? NULL : &st->tensors[i];
}

const char *ss_st_meta(const ss_st *st, const char *key)
{
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0)
            return st->meta_vals[i];
    return NULL;
}

int ss_st_meta_count(const ss_st *st) { return st->n_meta; }

void ss_st_meta_at(const ss_st *st, int i, const char **key, const char **value)
{
    int ok = i >= 0 && i < st->n_meta;
    if (key)
        *key = ok ? st->meta_keys[i] : NULL;
    if (value)
        *value = ok ? st->meta_vals[i] : NULL;
}

/* ---- typed metadata ----------------------------------------------------- */

/* The value of `key`, or SS_E_DATA when missing. */
static ss_status meta_need(const ss_st *st, const char *key, const char **v, ss_error *err)
{
    *v = ss_st_meta(st, key);
    if (!*v)
        return ss_fail(err, SS_E_DATA, "%s: metadata key '%s' is missing", st->path, key);
    return SS_OK;
}

/* Whole-string decimal integer (optional sign, digits only); 0 on success. */
static int parse_int(const char *s, int64_t *out)
{
    const char *d = (*s == '+' || *s == '-') ? s + 1 : s;
    if (*d < '0' || *d > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

ss_status ss_st_meta_int(const ss_st *st, const char *key, int64_t *out, ss_error *err)
{
    const char *v;
    ss_status s = meta_need(st, key, &v, err);
    if (s != SS_OK)
        return s;
    if (parse_int(v, out) != 0)
        return ss_fail(err, SS_E_DATA, "%s: metadata '%s' = '%s' is not an integer", st->path, key, v);
    return SS_OK;
}

ss_status ss_st_meta_int_in(const ss_st *st, const char *key, int64_t lo, int64_t hi, int *out, ss_error *err)
{
    int64_t v;
    ss_status s = ss_st_meta_int(st, key, &v, err);
    if (s != SS_OK)
        return s;
    if (v < lo || v > hi)
        return ss_fail(err, SS_E_DATA, "%s: metadata '%s' = %lld is out of range [%lld, %lld]", st->path, key,
                       (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return SS_OK;
}

ss_status ss_st_meta_double(const ss_st *st, const char *key, double *out, ss_error *err)
{
    const char *v;
    ss_status s = meta_need(st, key, &v, err);
    if (s != SS_OK)
        return s;
    const char *d = (*v == '+' || *v == '-') ? v + 1 : v;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!((*d >= '0' && *d <= '9') || *d == '.') || *end != '\0' || errno == ERANGE || !isfinite(x))
        return ss_fail(err, SS_E_DATA, "%s: metadata '%s' = '%s' is not a finite number", st->path, key, v);
    *out = x;
    return SS_OK;
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

/* "I/J", "I.F" or "I" -> num/den (not reduced, den > 0); 0 on success. */
static int parse_fraction(const char *s, int64_t *num, int64_t *den)
{
    const char *slash = strchr(s, '/'), *dot = strchr(s, '.');
    char buf[64];
    if (slash) {
        size_t len = (size_t)(slash - s);
        if (len >= sizeof buf)
            return -1;
        memcpy(buf, s, len);
        buf[len] = '\0';
        if (parse_int(buf, num) != 0 || parse_int(slash + 1, den) != 0 || *den == 0)
            return -1;
        if (*num == INT64_MIN || *den == INT64_MIN)
            return -1;
        if (*den < 0) {
            *num = -*num;
            *den = -*den;
        }
        return 0;
    }
    if (!dot)
        return parse_int(s, num) == 0 && *num != INT64_MIN ? (*den = 1, 0) : -1;
    /* decimal: integer part, then 1..18 fraction digits, exactly */
    size_t len = (size_t)(dot - s), k = strlen(dot + 1);
    if (len >= sizeof buf || k == 0 || k > 18 || strspn(dot + 1, "0123456789") != k)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    int neg = buf[0] == '-';
    int64_t ip, fp;
    if (parse_int(buf, &ip) != 0 || ip == INT64_MIN || parse_int(dot + 1, &fp) != 0)
        return -1;
    int64_t scale = 1;
    for (size_t i = 0; i < k; i++)
        scale *= 10;
    int64_t mag = ip < 0 ? -ip : ip;
    if (mag > (INT64_MAX - fp) / scale)
        return -1;
    *num = mag * scale + fp;
    if (neg)
        *num = -*num;
    *den = scale;
    return 0;
}

ss_status ss_st_meta_fraction(const ss_st *st, const char *key, int64_t *num, int64_t *den, ss_error *err)
{
    const char *v;
    ss_status s = meta_need(st, key, &v, err);
    if (s != SS_OK)
        return s;
    int64_t n, d;
    if (parse_fraction(v, &n, &d) != 0)
        return ss_fail(err, SS_E_DATA, "%s: metadata '%s' = '%s' is not a number or fraction like 39/5",
                       st->path, key, v);
    int64_t g = gcd64(n < 0 ? -n : n, d);
    *num = n / g;
    *den = d / g;
    return SS_OK;
}

ss_status ss_st_meta_bool(const ss_st *st, const char *key, int *out, ss_error *err)
{
    const char *v;
    ss_status s = meta_need(st, key, &v, err);
    if (s != SS_OK)
        return s;
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *out = 1;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *out = 0;
    else
        return ss_fail(err, SS_E_DATA, "%s: metadata '%s' = '%s' is not true/false/1/0", st->path, key, v);
    return SS_OK;
}

/* ---- weight loading ----------------------------------------------------- */

ss_status ss_st_get(ss_st *st, const char *name, int ndim, const int64_t *shape, const ss_st_tensor **out,
                    ss_error *err)
{
    char want[256], got[256];
    *out = NULL;
    if (ndim < 0 || ndim > SS_ST_MAX_DIMS)
        return ss_fail(err, SS_E_INTERNAL, "%s: tensor '%s': asked for %d dimensions", st->path, name, ndim);
    shape_str(want, sizeof want, ndim, shape);
    int i = find_index(st, name);
    if (i < 0)
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s' not found (expected shape %s)", st->path, name, want);
    const ss_st_tensor *t = &st->tensors[i];
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = shape[d] == -1 || shape[d] == t->shape[d];
    if (!ok) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        return ss_fail(err, SS_E_DATA, "%s: tensor '%s': expected shape %s, got %s", st->path, name, want, got);
    }
    st->used[i] = 1;
    *out = t;
    return SS_OK;
}

ss_status ss_st_get_f32(ss_st *st, const char *name, int ndim, const int64_t *shape, float **buf, size_t *cap,
                        int64_t *numel, ss_error *err)
{
    const ss_st_tensor *t;
    ss_status s = ss_st_get(st, name, ndim, shape, &t, err);
    if (s != SS_OK)
        return s;
    size_t n = (size_t)t->numel;
    if (!*buf || n > *cap) {
        float *p = realloc(*buf, (n ? n : 1) * sizeof *p);
        if (!p)
            return ss_fail(err, SS_E_NOMEM, "%s: out of memory for tensor '%s'", st->path, name);
        *buf = p;
        *cap = n;
    }
    ss_st_to_f32(t, *buf);
    ss_st_release(st, t);
    if (numel)
        *numel = t->numel;
    return SS_OK;
}

ss_status ss_st_check_all_used(const ss_st *st, ss_error *err)
{
    for (int i = 0; i < st->n_tensors; i++)
        if (!st->used[i])
            return ss_fail(err, SS_E_DATA, "%s: tensor '%s': not used by the model (unexpected extra tensor)",
                           st->path, st->tensors[i].name);
    return SS_OK;
}

/* ---- conversion --------------------------------------------------------- */

static float f32_from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* IEEE binary16 -> binary32, exact (subnormals, inf and NaN payloads kept). */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float v = (float)mant * 0x1p-24f; /* zero or subnormal: exact */
        return sign ? -v : v;
    }
    if (exp == 31)
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((exp + 112u) << 23) | (mant << 13));
}

void ss_st_to_f32(const ss_st_tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case SS_DT_F32:
        for (size_t i = 0; i < n; i++, p += 4)
            dst[i] = f32_from_bits((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
                                   | (uint32_t)p[3] << 24);
        break;
    case SS_DT_F16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    case SS_DT_BF16:
        for (size_t i = 0; i < n; i++, p += 2)
            dst[i] = f32_from_bits(((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16);
        break;
    }
}

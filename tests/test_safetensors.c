/* test_safetensors.c - the safetensors reader: valid files read back exactly,
 * every kind of malformed file refused with SS_E_DATA (or SS_E_NOINPUT) and a
 * message naming the file and the tensor. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "safetensors.h"
#include "st_write.h"
#include "test.h"

static char tmp_dir[256];     /* mkdtemp scratch directory, removed at exit */
static char why_buf[2048];    /* explanation returned by the helpers below  */

/* tmp_dir/name, in a static buffer per call site use. */
static const char *tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmp_dir, name);
    return buf;
}

/* Seconds of monotonic time. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* NULL when `msg` contains each non-NULL needle, else an explanation. */
static const char *msg_lacks(const char *msg, const char *a, const char *b, const char *c)
{
    const char *needles[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (needles[i] && !strstr(msg, needles[i])) {
            snprintf(why_buf, sizeof why_buf, "message lacks '%s': %s", needles[i], msg);
            return why_buf;
        }
    return NULL;
}

/* Open `path` expecting failure `want` with a message holding the path and
 * the needles; NULL when so, else an explanation. */
static const char *open_fails(const char *path, ss_status want, const char *n1, const char *n2)
{
    ss_st *st = NULL;
    ss_error err = {0};
    ss_status s = ss_st_open(path, &st, &err);
    if (s == SS_OK) {
        ss_st_close(st);
        snprintf(why_buf, sizeof why_buf, "opened a file that should be refused");
        return why_buf;
    }
    if (st) {
        snprintf(why_buf, sizeof why_buf, "failed open left *out non-NULL");
        return why_buf;
    }
    if (s != want || err.code != want) {
        snprintf(why_buf, sizeof why_buf, "status %d (%s), want %d: %s", (int)s, ss_status_name(s), (int)want,
                 err.msg);
        return why_buf;
    }
    return msg_lacks(err.msg, path, n1, n2);
}

/* Write header_json + data as `name` in tmp_dir and expect SS_E_DATA naming
 * the file and the needles. */
static const char *raw_fails(const char *name, const char *header_json, const void *data, size_t size,
                             const char *n1, const char *n2)
{
    char path[512];
    tmp_path(path, sizeof path, name);
    if (st_write_raw(path, header_json, data, size) != 0) {
        snprintf(why_buf, sizeof why_buf, "cannot write %s", path);
        return why_buf;
    }
    return open_fails(path, SS_E_DATA, n1, n2);
}

static uint32_t f32_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static const char *const META = "{\"stemsplit.architecture\":\"identity\",\"stemsplit.sources\":\"a,b\","
                                "\"stemsplit.samplerate\":\"44100\",\"stemsplit.segment\":\"39/5\","
                                "\"x.double\":\"2.5\",\"x.bool\":\"true\",\"x.bad\":\"12abc\"}";

/* Two F32 tensors: "w" [2,3] = 0..5, "b" [3] = {-1, 0.5, 1e-3}. */
static int write_model(const char *path)
{
    static const float w[6] = {0, 1, 2, 3, 4, 5}, b[3] = {-1.0f, 0.5f, 1e-3f};
    const char *names[] = {"w", "b"};
    const int64_t shapes[][ST_WRITE_MAX_DIMS] = {{2, 3}, {3}};
    const int ndims[] = {2, 1};
    const float *data[] = {w, b};
    return st_write_f32(path, META, 2, names, shapes, ndims, data);
}

/* Open tmp_dir/model.safetensors written by write_model(); NULL on failure. */
static ss_st *open_model(char *path, size_t size)
{
    tmp_path(path, size, "model.safetensors");
    ss_st *st = NULL;
    ss_error err = {0};
    if (write_model(path) != 0 || ss_st_open(path, &st, &err) != SS_OK) {
        fprintf(stderr, "open_model: %s\n", err.msg);
        return NULL;
    }
    return st;
}

/* ---- valid files -------------------------------------------------------- */

static void test_valid_file_reads_tensors_and_metadata(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    int ok = ss_st_count(st) == 2 && strcmp(ss_st_path(st), path) == 0;
    const ss_st_tensor *w = ss_st_find(st, "w"), *b = ss_st_find(st, "b");
    ok = ok && w && b && ss_st_tensor_at(st, 0) == w && ss_st_tensor_at(st, 1) == b && !ss_st_tensor_at(st, 2);
    ok = ok && w->dtype == SS_DT_F32 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3 && w->numel == 6
         && w->nbytes == 24 && strcmp(w->name, "w") == 0;
    ok = ok && b->ndim == 1 && b->shape[0] == 3 && b->numel == 3 && b->nbytes == 12;
    float wf[6] = {0}, bf[3] = {0};
    if (ok) {
        ss_st_to_f32(w, wf);
        ss_st_to_f32(b, bf);
    }
    for (int i = 0; ok && i < 6; i++)
        ok = wf[i] == (float)i;
    ok = ok && bf[0] == -1.0f && bf[1] == 0.5f && bf[2] == 1e-3f;
    ok = ok && !ss_st_find(st, "nope");
    ok = ok && ss_st_meta_count(st) == 7 && strcmp(ss_st_meta(st, "stemsplit.sources"), "a,b") == 0
         && !ss_st_meta(st, "absent");
    const char *k = NULL, *v = NULL;
    ss_st_meta_at(st, 0, &k, &v);
    ok = ok && k && v && strcmp(k, "stemsplit.architecture") == 0 && strcmp(v, "identity") == 0;
    ss_st_meta_at(st, 7, &k, &v);
    ok = ok && !k && !v;
    ss_st_close(st);
    CHECK(ok, "tensors or metadata did not read back as written");
}

static void test_typed_metadata_int_double_bool(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error err = {0};
    int64_t sr = 0;
    double d = 0;
    int bl = 0;
    ss_status s1 = ss_st_meta_int(st, "stemsplit.samplerate", &sr, &err);
    ss_status s2 = ss_st_meta_double(st, "x.double", &d, &err);
    ss_status s3 = ss_st_meta_bool(st, "x.bool", &bl, &err);
    ss_st_close(st);
    CHECK(s1 == SS_OK && s2 == SS_OK && s3 == SS_OK, "%.400s", err.msg);
    CHECK(sr == 44100 && d == 2.5 && bl == 1, "sr=%lld d=%g bool=%d", (long long)sr, d, bl);
}

static void test_meta_int_missing_key_names_file_and_key(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error err = {0};
    int64_t v = 0;
    ss_status s = ss_st_meta_int(st, "stemsplit.channels", &v, &err);
    ss_st_close(st);
    CHECK(s == SS_E_DATA && err.code == SS_E_DATA, "status %d", (int)s);
    const char *why = msg_lacks(err.msg, path, "stemsplit.channels", "missing");
    CHECK(!why, "%s", why);
}

static void test_meta_malformed_values_refused(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error e1 = {0}, e2 = {0}, e3 = {0};
    int64_t i = 0;
    double d = 0;
    int b = 0;
    ss_status s1 = ss_st_meta_int(st, "x.bad", &i, &e1);
    ss_status s2 = ss_st_meta_double(st, "x.bad", &d, &e2);
    ss_status s3 = ss_st_meta_bool(st, "x.double", &b, &e3);
    ss_st_close(st);
    CHECK(s1 == SS_E_DATA && s2 == SS_E_DATA && s3 == SS_E_DATA, "statuses %d %d %d", (int)s1, (int)s2, (int)s3);
    const char *why = msg_lacks(e1.msg, path, "x.bad", "12abc");
    why = why ? why : msg_lacks(e2.msg, path, "x.bad", NULL);
    why = why ? why : msg_lacks(e3.msg, path, "x.double", NULL);
    CHECK(!why, "%s", why);
}

/* Fraction parsing of `value`: expect num/den, or failure when den == 0. */
static const char *fraction_is(const char *value, int64_t num, int64_t den)
{
    char path[512], header[256];
    tmp_path(path, sizeof path, "fraction.safetensors");
    snprintf(header, sizeof header, "{\"__metadata__\":{\"seg\":\"%s\"}}", value);
    if (st_write_raw(path, header, NULL, 0) != 0)
        return "cannot write";
    ss_st *st = NULL;
    ss_error err = {0};
    if (ss_st_open(path, &st, &err) != SS_OK) {
        snprintf(why_buf, sizeof why_buf, "open: %s", err.msg);
        return why_buf;
    }
    int64_t n = 0, d = 0;
    ss_status s = ss_st_meta_fraction(st, "seg", &n, &d, &err);
    ss_st_close(st);
    if (den == 0) {
        if (s == SS_E_DATA && strstr(err.msg, path) && strstr(err.msg, "seg"))
            return NULL;
        snprintf(why_buf, sizeof why_buf, "'%s' accepted as %lld/%lld or bad message: %s", value, (long long)n,
                 (long long)d, err.msg);
        return why_buf;
    }
    if (s == SS_OK && n == num && d == den)
        return NULL;
    snprintf(why_buf, sizeof why_buf, "'%s' -> %lld/%lld (status %d %s), want %lld/%lld", value, (long long)n,
             (long long)d, (int)s, err.msg, (long long)num, (long long)den);
    return why_buf;
}

static void test_meta_fraction_parses_and_reduces(void)
{
    static const struct { const char *v; int64_t num, den; } cases[] = {
        {"39/5", 39, 5},   {"7.8", 39, 5},   {"10", 10, 1},     {"78/10", 39, 5}, {"0", 0, 1},
        {"0.25", 1, 4},    {"-6/4", -3, 2},  {"6/-4", -3, 2},   {"7.80", 39, 5},  {"+3", 3, 1},
        {"1/0", 0, 0},     {"abc", 0, 0},    {"", 0, 0},        {"1.", 0, 0},     {".5", 0, 0},
        {"7.8e1", 0, 0},   {"1/2/3", 0, 0},  {" 5", 0, 0},      {"5 ", 0, 0},     {"1.5/2", 0, 0},
        {"99999999999999999999", 0, 0},      {"0.1234567890123456789", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = fraction_is(cases[i].v, cases[i].num, cases[i].den);
        CHECK(!why, "%s", why);
    }
}

static void test_f16_bf16_conversion_exact_for_known_bits(void)
{
    static const uint16_t f16[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff,
                                   0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555, 0x8001};
    static const uint32_t f16_want[] = {0x3f800000, 0xc0000000, 0x33800000, 0x387fc000, 0x38800000, 0x477fe000,
                                        0x7f800000, 0xff800000, 0x7fc00000, 0x80000000, 0x3eaaa000, 0xb3800000};
    static const uint16_t bf16[] = {0x3f80, 0xc040, 0x7f80, 0x0001, 0x7fc0, 0x8000};
    static const uint32_t bf16_want[] = {0x3f800000, 0xc0400000, 0x7f800000, 0x00010000, 0x7fc00000, 0x80000000};
    unsigned char data[36];
    memcpy(data, f16, sizeof f16);
    memcpy(data + 24, bf16, sizeof bf16);
    char path[512];
    tmp_path(path, sizeof path, "half.safetensors");
    CHECK(st_write_raw(path,
                       "{\"h\":{\"dtype\":\"F16\",\"shape\":[12],\"data_offsets\":[0,24]},"
                       "\"bh\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[24,36]}}",
                       data, sizeof data) == 0, "cannot write");
    ss_st *st = NULL;
    ss_error err = {0};
    CHECK(ss_st_open(path, &st, &err) == SS_OK, "%.400s", err.msg);
    const ss_st_tensor *h = ss_st_find(st, "h"), *bh = ss_st_find(st, "bh");
    float out[12];
    int bad = -1;
    uint32_t got = 0;
    if (h && bh && h->dtype == SS_DT_F16 && bh->dtype == SS_DT_BF16) {
        ss_st_to_f32(h, out);
        for (int i = 0; i < 12 && bad < 0; i++)
            if ((got = f32_bits(out[i])) != f16_want[i])
                bad = i;
        ss_st_to_f32(bh, out);
        for (int i = 0; i < 6 && bad < 0; i++)
            if ((got = f32_bits(out[i])) != bf16_want[i])
                bad = 100 + i;
    } else {
        bad = 999;
    }
    ss_st_close(st);
    CHECK(bad < 0, "element %d (100+ = BF16) converted to bits 0x%08x", bad, (unsigned)got);
}

static void test_unaligned_f32_tensor_converts(void)
{
    /* one F16 element first, so the F32 tensor starts 2 bytes into the data */
    unsigned char data[2 + 8];
    uint16_t one = 0x3c00;
    float vals[2] = {3.25f, -7.5f};
    memcpy(data, &one, 2);
    memcpy(data + 2, vals, 8);
    char path[512];
    tmp_path(path, sizeof path, "unaligned.safetensors");
    CHECK(st_write_raw(path,
                       "{\"a\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[0,2]},"
                       "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[2,10]}}",
                       data, sizeof data) == 0, "cannot write");
    ss_st *st = NULL;
    ss_error err = {0};
    CHECK(ss_st_open(path, &st, &err) == SS_OK, "%.400s", err.msg);
    float a = 0, f[2] = {0};
    const ss_st_tensor *ta = ss_st_find(st, "a"), *tf = ss_st_find(st, "f");
    int ok = ta && tf && ta->ndim == 0 && ta->numel == 1;
    if (ok) {
        ss_st_to_f32(ta, &a);
        ss_st_to_f32(tf, f);
    }
    ss_st_close(st);
    CHECK(ok && a == 1.0f && f[0] == 3.25f && f[1] == -7.5f, "a=%g f=%g,%g", a, f[0], f[1]);
}

static void test_empty_header_and_empty_tensor_accepted(void)
{
    char path[512];
    tmp_path(path, sizeof path, "empty.safetensors");
    CHECK(st_write_raw(path, "{}", NULL, 0) == 0, "cannot write");
    ss_st *st = NULL;
    ss_error err = {0};
    CHECK(ss_st_open(path, &st, &err) == SS_OK, "%.400s", err.msg);
    int n = ss_st_count(st), m = ss_st_meta_count(st);
    ss_status s = ss_st_check_all_used(st, &err);
    ss_st_close(st);
    CHECK(n == 0 && m == 0 && s == SS_OK, "count %d meta %d", n, m);
    /* zero-element tensors may share an offset with anything */
    float x = 2.0f;
    CHECK(st_write_raw(path,
                       "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                       "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                       &x, sizeof x) == 0, "cannot write");
    CHECK(ss_st_open(path, &st, &err) == SS_OK, "%.400s", err.msg);
    const ss_st_tensor *z = ss_st_find(st, "z");
    int ok = z && z->numel == 0 && z->nbytes == 0;
    ss_st_close(st);
    CHECK(ok, "empty tensor not read back");
}

static void test_st_write_f32_without_metadata(void)
{
    char path[512];
    tmp_path(path, sizeof path, "nometa.safetensors");
    const float g[4] = {1.0f, 0.5f, 0.25f, 0.0f};
    const char *names[] = {"gain"};
    const int64_t shapes[][ST_WRITE_MAX_DIMS] = {{4}};
    const int ndims[] = {1};
    const float *data[] = {g};
    CHECK(st_write_f32(path, NULL, 1, names, shapes, ndims, data) == 0, "cannot write");
    ss_st *st = NULL;
    ss_error err = {0};
    CHECK(ss_st_open(path, &st, &err) == SS_OK, "%.400s", err.msg);
    const ss_st_tensor *t = ss_st_find(st, "gain");
    float out[4] = {0};
    int ok = t && t->numel == 4 && ss_st_meta_count(st) == 0 && ((uintptr_t)t->data % 4) == 0;
    if (ok)
        ss_st_to_f32(t, out);
    ss_st_close(st);
    CHECK(ok && memcmp(out, g, sizeof g) == 0, "gain did not read back (or data not 4-byte aligned)");
}

/* ---- ss_st_get / ss_st_check_all_used ----------------------------------- */

static void test_get_accepts_exact_and_wildcard_shape(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error err = {0};
    const ss_st_tensor *w = NULL, *b = NULL;
    const int64_t ws[] = {-1, 3}, bs[] = {3};
    ss_status s1 = ss_st_get(st, "w", 2, ws, &w, &err);
    ss_status s2 = ss_st_get(st, "b", 1, bs, &b, &err);
    ss_status s3 = ss_st_check_all_used(st, &err);
    ss_st_close(st);
    CHECK(s1 == SS_OK && s2 == SS_OK && s3 == SS_OK && w && b, "%.400s", err.msg);
}

static void test_get_shape_mismatch_names_tensor_and_shapes(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error e1 = {0}, e2 = {0};
    static const ss_st_tensor dummy;
    const ss_st_tensor *t = &dummy; /* must be reset to NULL */
    const int64_t want[] = {3, 2}, want1[] = {6};
    ss_status s1 = ss_st_get(st, "w", 2, want, &t, &e1);
    ss_status s2 = ss_st_get(st, "w", 1, want1, &t, &e2);
    ss_st_close(st);
    CHECK(s1 == SS_E_DATA && s2 == SS_E_DATA && !t, "statuses %d %d", (int)s1, (int)s2);
    const char *why = msg_lacks(e1.msg, path, "'w'", "[3, 2]");
    why = why ? why : msg_lacks(e1.msg, "[2, 3]", NULL, NULL);
    why = why ? why : msg_lacks(e2.msg, path, "[6]", "[2, 3]");
    CHECK(!why, "%s", why);
}

static void test_get_absent_tensor_names_it(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error err = {0};
    const ss_st_tensor *t = NULL;
    const int64_t shape[] = {4};
    ss_status s = ss_st_get(st, "encoder.0.weight", 1, shape, &t, &err);
    ss_st_close(st);
    CHECK(s == SS_E_DATA && !t, "status %d", (int)s);
    const char *why = msg_lacks(err.msg, path, "encoder.0.weight", "not found");
    CHECK(!why, "%s", why);
}

static void test_check_all_used_finds_extra_tensor(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error err = {0};
    const ss_st_tensor *w = NULL;
    const int64_t shape[] = {2, 3};
    ss_status s1 = ss_st_get(st, "w", 2, shape, &w, &err);
    ss_status s2 = ss_st_check_all_used(st, &err);
    ss_st_close(st);
    CHECK(s1 == SS_OK && s2 == SS_E_DATA, "statuses %d %d: %.400s", (int)s1, (int)s2, err.msg);
    const char *why = msg_lacks(err.msg, path, "'b'", NULL);
    CHECK(!why, "%s", why);
}

/* ---- ss_st_get_f32 / ss_st_meta_int_in ----------------------------------- */

static void test_get_f32_grows_one_buffer(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error err = {0};
    float *buf = NULL;
    size_t cap = 0;
    int64_t n1 = 0, n2 = 0, n3 = 0;
    const int64_t bs[] = {3}, ws[] = {2, -1};
    ss_status s1 = ss_st_get_f32(st, "b", 1, bs, &buf, &cap, &n1, &err);
    int ok1 = s1 == SS_OK && buf && cap == 3 && n1 == 3 && buf[0] == -1.0f && buf[1] == 0.5f && buf[2] == 1e-3f;
    ss_status s2 = ss_st_get_f32(st, "w", 2, ws, &buf, &cap, &n2, &err);
    int ok2 = s2 == SS_OK && buf && cap == 6 && n2 == 6;
    for (int i = 0; ok2 && i < 6; i++)
        ok2 = buf[i] == (float)i;
    float *kept = buf;
    ss_status s3 = ss_st_get_f32(st, "b", 1, bs, &buf, &cap, &n3, &err);
    int ok3 = s3 == SS_OK && buf == kept && cap == 6 && n3 == 3 && buf[0] == -1.0f;
    ss_status s4 = ss_st_check_all_used(st, &err);
    free(buf);
    ss_st_close(st);
    CHECK(ok1, "status %d: [3] into a NULL buffer: cap %zu numel %lld: %.300s", (int)s1, cap, (long long)n1, err.msg);
    CHECK(ok2, "status %d: [2, 3] did not grow the buffer to 6 with 0..5 (cap %zu)", (int)s2, cap);
    CHECK(ok3, "status %d: [3] again: the buffer of 6 was not reused", (int)s3);
    CHECK(s4 == SS_OK, "the tensors fetched were not marked used: %.300s", err.msg);
}

static void test_get_f32_error_leaves_buffer(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error e1 = {0}, e2 = {0}, e3 = {0};
    float *buf = NULL;
    size_t cap = 0;
    int64_t n = 7;
    const int64_t bad[] = {3, 2}, bs[] = {3};
    ss_status s1 = ss_st_get_f32(st, "w", 2, bad, &buf, &cap, &n, &e1);
    int fresh = !buf && cap == 0 && n == 7;
    ss_status s2 = ss_st_get_f32(st, "b", 1, bs, &buf, &cap, NULL, &e2);
    float *kept = buf;
    ss_status s3 = ss_st_get_f32(st, "absent", 1, bs, &buf, &cap, NULL, &e3);
    int same = buf == kept && cap == 3 && buf && buf[1] == 0.5f;
    free(buf);
    ss_st_close(st);
    CHECK(s1 == SS_E_DATA && fresh, "status %d: a shape mismatch touched the buffer or numel", (int)s1);
    CHECK(s2 == SS_OK, "status %d: %.300s", (int)s2, e2.msg);
    CHECK(s3 == SS_E_DATA && same, "status %d: an absent tensor touched the buffer", (int)s3);
    const char *why = msg_lacks(e1.msg, path, "'w'", "[3, 2]");
    why = why ? why : msg_lacks(e3.msg, path, "absent", NULL);
    CHECK(!why, "%s", why);
}

static void test_meta_int_in_checks_range(void)
{
    char path[512];
    ss_st *st = open_model(path, sizeof path);
    CHECK(st, "cannot open the model");
    ss_error e1 = {0}, e2 = {0}, e3 = {0};
    int v1 = 0, v2 = -5, v3 = -5;
    ss_status s1 = ss_st_meta_int_in(st, "stemsplit.samplerate", 44100, 44100, &v1, &e1);
    ss_status s2 = ss_st_meta_int_in(st, "stemsplit.samplerate", 1, 48000 - 3901, &v2, &e2);
    ss_status s3 = ss_st_meta_int_in(st, "x.bad", 0, 10, &v3, &e3);
    ss_st_close(st);
    CHECK(s1 == SS_OK && v1 == 44100, "status %d, value %d: %.300s", (int)s1, v1, e1.msg);
    CHECK(s2 == SS_E_DATA && v2 == -5, "status %d, value %d: out of range accepted", (int)s2, v2);
    CHECK(s3 == SS_E_DATA && v3 == -5, "status %d: a malformed integer accepted", (int)s3);
    const char *why = msg_lacks(e2.msg, path, "stemsplit.samplerate", "44100");
    why = why ? why : msg_lacks(e2.msg, "[1, 44099]", NULL, NULL);
    why = why ? why : msg_lacks(e3.msg, path, "x.bad", NULL);
    CHECK(!why, "%s", why);
}

/* ---- files refused ------------------------------------------------------ */

static void test_missing_file_is_noinput(void)
{
    char path[512];
    tmp_path(path, sizeof path, "does-not-exist.safetensors");
    const char *why = open_fails(path, SS_E_NOINPUT, NULL, NULL);
    CHECK(!why, "%s", why);
}

static void test_directory_is_noinput(void)
{
    const char *why = open_fails(tmp_dir, SS_E_NOINPUT, "regular", NULL);
    CHECK(!why, "%s", why);
}

static void test_truncated_file_shorter_than_length_field(void)
{
    char path[512];
    tmp_path(path, sizeof path, "short.safetensors");
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write");
    fwrite("\x02\0\0", 1, 3, f);
    fclose(f);
    const char *why = open_fails(path, SS_E_DATA, "too short", NULL);
    CHECK(!why, "%s", why);
}

static void test_truncated_data_area(void)
{
    /* header promises 8 bytes of data, file has 4 */
    float x = 1.0f;
    const char *why = raw_fails("truncdata.safetensors",
                                "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", &x, sizeof x,
                                "'t'", "outside the data area");
    CHECK(!why, "%s", why);
}

static void test_header_longer_than_file(void)
{
    char path[512];
    tmp_path(path, sizeof path, "longhdr.safetensors");
    const char hdr[] = "{}      ";
    CHECK(st_write_file(path, 64, hdr, 8, NULL, 0) == 0, "cannot write");
    const char *why = open_fails(path, SS_E_DATA, "header length 64", "past the end");
    CHECK(!why, "%s", why);
}

static void test_header_claiming_100gb_refused_quickly(void)
{
    char path[512];
    tmp_path(path, sizeof path, "huge.safetensors");
    const char hdr[] = "{}      ";
    CHECK(st_write_file(path, 100ull * 1000 * 1000 * 1000, hdr, 8, NULL, 0) == 0, "cannot write");
    double t0 = now_s();
    const char *why = open_fails(path, SS_E_DATA, "header length 100000000000", "out of range");
    double dt = now_s() - t0;
    CHECK(!why, "%s", why);
    CHECK(dt < 0.5, "took %.3f s", dt);
}

static void test_header_length_below_two_refused(void)
{
    char path[512];
    tmp_path(path, sizeof path, "tiny.safetensors");
    CHECK(st_write_file(path, 1, "{", 1, NULL, 0) == 0, "cannot write");
    const char *why = open_fails(path, SS_E_DATA, "header length 1", NULL);
    CHECK(!why, "%s", why);
}

static void test_header_not_json(void)
{
    const char *why = raw_fails("notjson.safetensors", "{\"t\":", NULL, 0, "not valid JSON", NULL);
    CHECK(!why, "%s", why);
}

static void test_header_not_object(void)
{
    const char *why = raw_fails("array.safetensors", "[1, 2, 3]", NULL, 0, "not a JSON object", NULL);
    CHECK(!why, "%s", why);
}

static void test_header_trailing_garbage_refused(void)
{
    const char *why = raw_fails("trailing.safetensors", "{} x", NULL, 0, "after the JSON", NULL);
    CHECK(!why, "%s", why);
}

static void test_header_nul_in_name_refused(void)
{
    const char *why = raw_fails("nul.safetensors",
                                "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", NULL, 0,
                                "\\u0000", NULL);
    CHECK(!why, "%s", why);
}

static void test_header_too_deep_refused(void)
{
    const char *why = raw_fails("deep.safetensors", "{\"t\":{\"shape\":[[[1]]]}}", NULL, 0, "nested", NULL);
    CHECK(!why, "%s", why);
}

static void test_tensor_entry_not_object(void)
{
    const char *why = raw_fails("entry.safetensors", "{\"t\":[1,2]}", NULL, 0, "'t'", "not a JSON object");
    CHECK(!why, "%s", why);
}

static void test_offsets_out_of_range(void)
{
    float x[2] = {1, 2};
    const char *why = raw_fails("offsets.safetensors",
                                "{\"ok\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                "\"far\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[100,104]}}",
                                x, sizeof x, "'far'", "[100, 104]");
    CHECK(!why, "%s", why);
}

static void test_offsets_begin_after_end(void)
{
    float x[2] = {1, 2};
    const char *why = raw_fails("backwards.safetensors",
                                "{\"back\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", x, sizeof x,
                                "'back'", "begin after end");
    CHECK(!why, "%s", why);
}

static void test_offsets_not_integers(void)
{
    float x[2] = {1, 2};
    const char *why = raw_fails("offsetfmt.safetensors",
                                "{\"frac\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", x,
                                sizeof x, "'frac'", "data_offsets");
    CHECK(!why, "%s", why);
    why = raw_fails("offsetneg.safetensors",
                    "{\"neg\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", x, sizeof x, "'neg'",
                    "data_offsets");
    CHECK(!why, "%s", why);
    why = raw_fails("offsetthree.safetensors",
                    "{\"three\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", x, sizeof x,
                    "'three'", "data_offsets");
    CHECK(!why, "%s", why);
}

static void test_overlapping_tensors(void)
{
    float x[4] = {1, 2, 3, 4};
    const char *why = raw_fails("overlap.safetensors",
                                "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                                x, sizeof x, "'b'", "'a'");
    CHECK(!why, "%s", why);
}

static void test_overlap_hidden_behind_empty_tensor(void)
{
    float x[4] = {1, 2, 3, 4};
    const char *why = raw_fails("overlap2.safetensors",
                                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                                "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                                x, sizeof x, "'b'", "overlap");
    CHECK(!why, "%s", why);
}

static void test_unknown_dtype_named(void)
{
    unsigned char x[8] = {0};
    const char *why = raw_fails("i8.safetensors",
                                "{\"q\":{\"dtype\":\"I8\",\"shape\":[8],\"data_offsets\":[0,8]}}", x, sizeof x,
                                "'q'", "'I8'");
    CHECK(!why, "%s", why);
    why = raw_fails("f64.safetensors", "{\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", x,
                    sizeof x, "'d'", "'F64'");
    CHECK(!why, "%s", why);
    why = raw_fails("nodtype.safetensors", "{\"n\":{\"shape\":[1],\"data_offsets\":[0,4]}}", x, sizeof x, "'n'",
                    "dtype");
    CHECK(!why, "%s", why);
}

static void test_shape_size_mismatch(void)
{
    float x[4] = {0};
    const char *why = raw_fails("mismatch.safetensors",
                                "{\"m\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", x, sizeof x,
                                "'m'", "needs 12");
    CHECK(!why, "%s", why);
}

static void test_shape_with_2p62_elements_refused(void)
{
    float x[1] = {0};
    const char *why = raw_fails("big2.safetensors",
                                "{\"big\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                                "\"data_offsets\":[0,4]}}",
                                x, sizeof x, "'big'", "2^40");
    CHECK(!why, "%s", why);
    why = raw_fails("big1.safetensors",
                    "{\"big1\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", x,
                    sizeof x, "'big1'", "2^40");
    CHECK(!why, "%s", why);
    /* eight dims of 256 = 2^64: would wrap to 0 in uint64 arithmetic */
    why = raw_fails("wrap.safetensors",
                    "{\"wrap\":{\"dtype\":\"F32\",\"shape\":[256,256,256,256,256,256,256,256],"
                    "\"data_offsets\":[0,0]}}",
                    NULL, 0, "'wrap'", "2^40");
    CHECK(!why, "%s", why);
}

static void test_shape_bad_dimensions_refused(void)
{
    const char *why = raw_fails("negdim.safetensors",
                                "{\"neg\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", NULL, 0,
                                "'neg'", "dimension 0");
    CHECK(!why, "%s", why);
    why = raw_fails("fracdim.safetensors",
                    "{\"frac\":{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,0]}}", NULL, 0, "'frac'",
                    "dimension 1");
    CHECK(!why, "%s", why);
    why = raw_fails("strdim.safetensors",
                    "{\"str\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}", NULL, 0, "'str'",
                    "shape");
    CHECK(!why, "%s", why);
    why = raw_fails("ninedim.safetensors",
                    "{\"nine\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", NULL,
                    0, "'nine'", "9 dimensions");
    CHECK(!why, "%s", why);
}

static void test_duplicate_tensor_names(void)
{
    float x[2] = {1, 2};
    const char *why = raw_fails("dup.safetensors",
                                "{\"same\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                "\"same\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                                x, sizeof x, "'same'", "twice");
    CHECK(!why, "%s", why);
}

static void test_duplicate_metadata_refused(void)
{
    const char *why = raw_fails("dupmeta.safetensors", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", NULL, 0,
                                "'k'", "twice");
    CHECK(!why, "%s", why);
    why = raw_fails("dupmeta2.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", NULL, 0, "__metadata__",
                    "twice");
    CHECK(!why, "%s", why);
}

static void test_metadata_bad_types_refused(void)
{
    const char *why = raw_fails("metanum.safetensors", "{\"__metadata__\":{\"stemsplit.samplerate\":44100}}",
                                NULL, 0, "'stemsplit.samplerate'", "not a string");
    CHECK(!why, "%s", why);
    why = raw_fails("metaarr.safetensors", "{\"__metadata__\":[\"a\"]}", NULL, 0, "__metadata__",
                    "not a JSON object");
    CHECK(!why, "%s", why);
    why = raw_fails("metanull.safetensors", "{\"__metadata__\":{\"k\":null}}", NULL, 0, "'k'", "not a string");
    CHECK(!why, "%s", why);
}

static void test_too_many_entries_refused_quickly(void)
{
    /* 1,000,001 entries "a":0 - refused (at the 100,000th) before cJSON builds a node */
    size_t n = 1000001, size = n * 6 + 2;
    char *h = malloc(size + 1);
    CHECK(h, "out of memory");
    h[0] = '{';
    for (size_t i = 0; i < n; i++)
        memcpy(h + 1 + 6 * i, "\"a\":0,", 6);
    h[size - 2] = '}'; /* replaces the last comma */
    h[size - 1] = ' ';
    h[size] = '\0';
    char path[512];
    tmp_path(path, sizeof path, "many.safetensors");
    int w = st_write_raw(path, h, NULL, 0);
    free(h);
    CHECK(w == 0, "cannot write");
    double t0 = now_s();
    const char *why = open_fails(path, SS_E_DATA, "more than 100000 entries", NULL);
    double dt = now_s() - t0;
    CHECK(!why, "%s", why);
    CHECK(dt < 2.0, "took %.3f s", dt);
}

/* ---- main --------------------------------------------------------------- */

/* Remove tmp_dir and the files the tests left in it. */
static void remove_tmp_dir(void)
{
    DIR *d = opendir(tmp_dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlink(tmp_path(p, sizeof p, e->d_name));
        closedir(d);
    }
    rmdir(tmp_dir);
}

/* resident memory of this process in KiB, from /proc (-1 where there is none) */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

/* ss_st_release: a 48 MiB tensor read through the mapping leaves resident memory, and its
 * values are still there when read again */
static void test_release_drops_resident_pages(void)
{
    if (rss_kib() < 0)
        SKIP("no /proc/self/status");
    const int64_t n = 12 << 20;                       /* 48 MiB of floats */
    float *big = malloc((size_t)n * sizeof *big);
    CHECK(big, "oom");
    for (int64_t i = 0; i < n; i++)
        big[i] = (float)(i % 1000);
    char path[] = "/tmp/ss-st-release-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    const char *names[] = {"w"};
    int64_t shapes[1][ST_WRITE_MAX_DIMS] = {{n}};
    int ndims[] = {1};
    const float *data[] = {big};
    CHECK(st_write_f32(path, "{}", 1, names, (const int64_t(*)[ST_WRITE_MAX_DIMS])shapes, ndims, data) == 0, "write");
    free(big);
    ss_st *st = NULL;
    ss_error err = {0};
    CHECK(ss_st_open(path, &st, &err) == SS_OK, "%s", err.msg);
    const ss_st_tensor *t = ss_st_find(st, "w");
    CHECK(t, "tensor w");
    volatile float sum = 0;
    const float *p = t->data;
    for (int64_t i = 0; i < n; i += 1024)              /* touch every page */
        sum += p[i];
    long touched = rss_kib();
    ss_st_release(st, t);
    long released = rss_kib();
    int same = p[123457] == (float)(123457 % 1000) && p[n - 1] == (float)((n - 1) % 1000);
    ss_st_close(st);
    unlink(path);
    CHECK(touched - released > 40 * 1024, "resident memory %ld KiB before the release, %ld after", touched, released);
    CHECK(same, "the values read again after the release differ");
    (void)sum;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/ss-st-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        printf("FAIL mkdtemp: cannot create %s\n", tmp_dir);
        return 1;
    }
    RUN(test_valid_file_reads_tensors_and_metadata);
    RUN(test_typed_metadata_int_double_bool);
    RUN(test_meta_int_missing_key_names_file_and_key);
    RUN(test_meta_malformed_values_refused);
    RUN(test_meta_fraction_parses_and_reduces);
    RUN(test_f16_bf16_conversion_exact_for_known_bits);
    RUN(test_unaligned_f32_tensor_converts);
    RUN(test_empty_header_and_empty_tensor_accepted);
    RUN(test_st_write_f32_without_metadata);
    RUN(test_get_accepts_exact_and_wildcard_shape);
    RUN(test_get_shape_mismatch_names_tensor_and_shapes);
    RUN(test_get_absent_tensor_names_it);
    RUN(test_check_all_used_finds_extra_tensor);
    RUN(test_get_f32_grows_one_buffer);
    RUN(test_get_f32_error_leaves_buffer);
    RUN(test_meta_int_in_checks_range);
    RUN(test_missing_file_is_noinput);
    RUN(test_directory_is_noinput);
    RUN(test_truncated_file_shorter_than_length_field);
    RUN(test_truncated_data_area);
    RUN(test_header_longer_than_file);
    RUN(test_header_claiming_100gb_refused_quickly);
    RUN(test_header_length_below_two_refused);
    RUN(test_header_not_json);
    RUN(test_header_not_object);
    RUN(test_header_trailing_garbage_refused);
    RUN(test_header_nul_in_name_refused);
    RUN(test_header_too_deep_refused);
    RUN(test_tensor_entry_not_object);
    RUN(test_offsets_out_of_range);
    RUN(test_offsets_begin_after_end);
    RUN(test_offsets_not_integers);
    RUN(test_overlapping_tensors);
    RUN(test_overlap_hidden_behind_empty_tensor);
    RUN(test_unknown_dtype_named);
    RUN(test_shape_size_mismatch);
    RUN(test_shape_with_2p62_elements_refused);
    RUN(test_shape_bad_dimensions_refused);
    RUN(test_duplicate_tensor_names);
    RUN(test_duplicate_metadata_refused);
    RUN(test_metadata_bad_types_refused);
    RUN(test_too_many_entries_refused_quickly);
    RUN(test_release_drops_resident_pages);
    remove_tmp_dir();
    return test_summary();
}

/* test_fault_limits.c - weight files that claim enormous sizes are refused
 * quickly and without allocating what they claim: a 100 GB header, a tensor
 * of 2^62 elements, a header of 10^6 entries (as real tensor entries and as
 * minimal ones), a header of millions of JSON values.  Each case must fail
 * with SS_E_DATA in well under a second and raise the process's peak memory
 * (getrusage ru_maxrss) by less than 64 MB. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "safetensors.h"
#include "st_write.h"
#include "test.h"

static char dir[256];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long peak_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Open path; NULL when refused with SS_E_DATA naming `needle` within `secs`
 * seconds and 64 MB of new peak memory, else why not. */
static const char *refused_cheaply(const char *path, const char *needle, double secs)
{
    static char why[1200];
    long kb0 = peak_kb();
    double t0 = now_s();
    ss_st *st = NULL;
    ss_error err = {0};
    ss_status s = ss_st_open(path, &st, &err);
    double dt = now_s() - t0;
    long grew = peak_kb() - kb0;
    if (s == SS_OK) {
        ss_st_close(st);
        return "accepted";
    }
    if (s != SS_E_DATA || !strstr(err.msg, needle))
        snprintf(why, sizeof why, "status %d, message: %s (want '%s')", (int)s, err.msg, needle);
    else if (dt > secs)
        snprintf(why, sizeof why, "took %.3f s (limit %.1f s): %s", dt, secs, err.msg);
    else if (grew > 64 * 1024)
        snprintf(why, sizeof why, "peak memory grew by %ld MB: %s", grew / 1024, err.msg);
    else
        return NULL;
    return why;
}

static const char *path_of(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

/* A header of n entries, as a file: real tensor entries, or minimal ones. */
static int write_entries(const char *path, long n, int real, size_t per)
{
    size_t cap = (size_t)n * per + 16, len = 1;
    char *h = malloc(cap);
    if (!h)
        return -1;
    h[0] = '{';
    for (long i = 0; i < n; i++) {
        int w = real ? snprintf(h + len, cap - len, "\"t%ld\":{\"dtype\":\"F32\",\"shape\":[0],"
                                "\"data_offsets\":[0,0]}", i)
                     : snprintf(h + len, cap - len, "\"%ld\":0", i);
        if (w < 0 || (size_t)w >= cap - len) {
            free(h);
            return -1;
        }
        len += (size_t)w;
        h[len++] = i + 1 < n ? ',' : '}';
    }
    h[len] = '\0';
    int r = st_write_raw(path, h, NULL, 0);
    free(h);
    return r;
}

static void test_header_claiming_100gb(void)
{
    const char *p = path_of("100gb.safetensors");
    CHECK(st_write_file(p, 100ull * 1000 * 1000 * 1000, "{}      ", 8, NULL, 0) == 0, "cannot write");
    const char *why = refused_cheaply(p, "out of range", 0.5);
    CHECK(!why, "%s", why);
}

static void test_header_length_just_over_the_limit(void)
{
    /* 16 MiB + 8: refused from the length field alone, nothing parsed */
    const char *p = path_of("17mb.safetensors");
    CHECK(st_write_file(p, 16ull * 1024 * 1024 + 8, "{}      ", 8, NULL, 0) == 0, "cannot write");
    const char *why = refused_cheaply(p, "out of range", 0.5);
    CHECK(!why, "%s", why);
}

static void test_tensor_of_2p62_elements(void)
{
    const char *p = path_of("2p62.safetensors");
    float x = 0;
    CHECK(st_write_raw(p, "{\"big\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,4]}}",
                       &x, sizeof x) == 0, "cannot write");
    const char *why = refused_cheaply(p, "2^40", 0.5);
    CHECK(!why, "%s", why);
    /* a consistent claim: 2^38 F32 elements = 2^40 bytes of data that is not there */
    CHECK(st_write_raw(p, "{\"big\":{\"dtype\":\"F32\",\"shape\":[262144,1048576],"
                          "\"data_offsets\":[0,1099511627776]}}", &x, sizeof x) == 0, "cannot write");
    why = refused_cheaply(p, "outside the data area", 0.5);
    CHECK(!why, "%s", why);
}

static void test_million_tensor_entries(void)
{
    /* 10^6 real tensor entries: ~50 MB of header, refused by its length */
    const char *p = path_of("million.safetensors");
    CHECK(write_entries(p, 1000000, 1, 64) == 0,
          "cannot write");
    const char *why = refused_cheaply(p, "out of range", 0.5);
    CHECK(!why, "%s", why);
    unlink(p);
}

static void test_million_small_entries(void)
{
    /* 10^6 minimal entries (7 MB, under the length limit): refused by the pre-scan */
    const char *p = path_of("million_small.safetensors");
    CHECK(write_entries(p, 1000000, 0, 12) == 0, "cannot write");
    const char *why = refused_cheaply(p, "more than 100000 entries", 0.5);
    CHECK(!why, "%s", why);
    unlink(p);
}

static void test_millions_of_values(void)
{
    /* {"a":[0,0,...]} with 5 million values in 10 MB */
    const char *p = path_of("values.safetensors");
    size_t n = 5000000, len = 0;
    char *h = malloc(2 * n + 16);
    CHECK(h, "out of memory");
    len += (size_t)sprintf(h, "{\"a\":[");
    for (size_t i = 0; i < n; i++) {
        h[len++] = '0';
        h[len++] = i + 1 < n ? ',' : ']';
    }
    strcpy(h + len, "}");
    int w = st_write_raw(p, h, NULL, 0);
    free(h);
    CHECK(w == 0, "cannot write");
    const char *why = refused_cheaply(p, "JSON values", 0.5);
    CHECK(!why, "%s", why);
    unlink(p);
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                unlink(path_of(e->d_name));
        closedir(d);
    }
    rmdir(dir);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/ss-limits.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        printf("FAIL setup: cannot create a temporary directory\n");
        return 1;
    }
    RUN(test_header_claiming_100gb);
    RUN(test_header_length_just_over_the_limit);
    RUN(test_tensor_of_2p62_elements);
    RUN(test_million_tensor_entries);
    RUN(test_million_small_entries);
    RUN(test_millions_of_values);
    remove_dir();
    return test_summary();
}

/* fuzz_st_tensors.c - libFuzzer harness for the tensor table validation.
 *
 * Random bytes rarely make valid JSON, so this harness turns its input into
 * a well-formed header: a table of tensors whose names, dtypes, shapes and
 * data offsets come from the input, plus metadata for the identity or
 * bandsplit architecture with fuzzed values, then a data area.  It checks
 * that an accepted table keeps every promise of safetensors.h (bounds,
 * sizes, unique names, disjoint ranges) and loads the model from it.
 *
 * Input layout (all optional; missing bytes read as 0):
 *   byte 0        number of tensors (mod 17)
 *   byte 1        architecture (0 none, 1 identity, 2 bandsplit), bits 2-7 flags
 *   bytes 2-9     metadata numbers (sources, channels, n_fft, hop, segment)
 *   per tensor:   name byte, dtype byte, ndim byte, ndim x 2-byte dims (small,
 *                 huge, or the n_fft/2+1 or source count of the metadata),
 *                 2 x 4-byte offsets (relative to a running cursor, or raw)
 *   the rest      the data area
 */
#include <stdarg.h>

#include "model_mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reader {
    const uint8_t *p;
    size_t n, at;
} reader;

static unsigned u8(reader *r) { return r->at < r->n ? r->p[r->at++] : 0; }
static unsigned u16(reader *r) { unsigned a = u8(r); return a | u8(r) << 8; }
static uint64_t u32(reader *r) { uint64_t a = u16(r); return a | (uint64_t)u16(r) << 16; }

typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n + 64;
        b->s = realloc(b->s, b->cap);
        if (!b->s)
            abort();
    }
}

static const char *const dtypes[] = {"F32", "F16", "BF16", "F64", "I8", "f32", ""};
static const char *const names[] = {"gain", "masks", "w", "b", "a.b", "gain", "__metadata__x", "x\\u00e9",
                                    "", "masks "};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    sbuf h = {0};
    int nt = (int)(u8(&r) % 17);
    unsigned arch = u8(&r);
    unsigned srcs = u8(&r) % 20, chans = u8(&r) % 10, nfft = u16(&r), hop = u16(&r), seg = u16(&r);
    put(&h, "{");
    if (arch & 3) {
        static const char *const srcnames[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
                                               "k", "l", "m", "n", "o", "p", "q", "r", "s", "a"};
        put(&h, "\"__metadata__\":{\"stemsplit.architecture\":\"%s\",\"stemsplit.sources\":\"",
            (arch & 3) == 1 ? "identity" : (arch & 3) == 2 ? "bandsplit" : "htdemucs");
        for (unsigned i = 0; i < (srcs ? srcs : 1); i++)
            put(&h, "%s%s", i ? "," : "", srcnames[i]);
        put(&h, "\",\"stemsplit.samplerate\":\"%u\",\"stemsplit.channels\":\"%u\","
                "\"stemsplit.segment\":\"%u/%u\",\"bandsplit.n_fft\":\"%u\",\"bandsplit.hop\":\"%u\"",
            arch & 4 ? 44100u : (unsigned)seg * 16u, chans, seg, (arch >> 3) + 1, nfft, hop);
        if (arch & 0x40)
            put(&h, ",\"identity.pad\":\"%s\"", arch & 0x80 ? "segment" : "bogus");
        put(&h, "}");
    }
    uint64_t cursor = 0;
    for (int i = 0; i < nt; i++) {
        unsigned nm = u8(&r), dt = u8(&r), nd = u8(&r) % 10;
        put(&h, "%s\"%s%s\":{\"dtype\":\"%s\",\"shape\":[", (i || (arch & 3)) ? "," : "",
            names[nm % 10], nm >= 128 ? "" : (const char[]){(char)('0' + i % 10), 0},
            dtypes[dt % 7]);
        uint64_t numel = 1;
        for (unsigned d = 0; d < nd; d++) {
            unsigned v = u16(&r);
            uint64_t dim = v & 0x8000   ? (uint64_t)(v & 0x7fff) << 28            /* huge */
                           : v & 0x4000 ? (uint64_t)(v & 1 ? nfft / 2 + 1 : srcs) /* what the model wants */
                                        : v % 64;
            numel = numel * (dim ? dim : 1);
            put(&h, "%s%llu", d ? "," : "", (unsigned long long)dim);
        }
        put(&h, "],\"data_offsets\":[");
        uint64_t b = u32(&r), e = u32(&r);
        if (dt & 0x80) { /* raw offsets */
            put(&h, "%llu,%llu]}", (unsigned long long)b, (unsigned long long)e);
        } else {         /* plausible: at the cursor, the size the shape needs, off by a little */
            uint64_t es = (dt % 7) == 0 ? 4 : 2;
            uint64_t begin = cursor + (b & 3) - (b & 4 ? 1 : 0);
            uint64_t end = begin + numel * es + (e & 3);
            if (begin > 1u << 30 || numel > 1u << 24)
                begin = cursor, end = cursor;
            put(&h, "%llu,%llu]}", (unsigned long long)begin, (unsigned long long)end);
            cursor = end;
        }
    }
    put(&h, "}");
    size_t dsize = r.at < size ? size - r.at : 0;
    size_t hlen = h.len, flen = 8 + hlen + dsize;
    uint8_t *file = malloc(flen);
    if (!file)
        abort();
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(file + 8, h.s, hlen);
    if (dsize)
        memcpy(file + 8 + hlen, data + r.at, dsize);
    free(h.s);

    ss_st *st = NULL;
    ss_error err = {0};
    if (st_open_mem(file, flen, &st, &err) == SS_OK) {
        st_check_invariants(st, file, flen);
        st_touch_meta(st);
        st_touch_tensors(st);
        model_load_mem(st);
        st_close_mem(st);
    } else if (err.code == SS_OK || !err.msg[0]) {
        abort();
    }
    free(file);
    return 0;
}

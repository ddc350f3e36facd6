/* template.c - --filename template expansion (see template.h). */
#include "template.h"

#include <string.h>

static const char *field_value(const ss_template_fields *f, const char *name, size_t len)
{
    static const ss_template_fields empty = {"track", "stem", "wav", "model", "", "wav"};
    if (!f)
        f = &empty;
    struct { const char *name; const char *value; } tab[] = {
        {"track", f->track}, {"stem", f->stem}, {"ext", f->ext}, {"model", f->model}, {"dir", f->dir},
        {"inext", f->inext},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strlen(tab[i].name) == len && memcmp(tab[i].name, name, len) == 0)
            return tab[i].value ? tab[i].value : "";
    return NULL;
}

/* Every '/'-separated component non-empty and not "." or "..", not absolute. */
static int safe_relative(const char *p)
{
    if (!*p || *p == '/')
        return 0;
    while (*p) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        p += len;
        if (*p == '/')
            p++;
        else
            break;
    }
    return p[-1] != '/';
}

ss_status ss_template_expand(const char *tmpl, const ss_template_fields *f, char *out, size_t size,
                             ss_error *err)
{
    size_t n = 0;
    if (size == 0)
        return ss_fail(err, SS_E_INTERNAL, "template: no room");
    for (const char *p = tmpl; *p;) {
        const char *piece;
        size_t plen;
        if (p[0] == '{' && p[1] == '{') {
            piece = "{", plen = 1, p += 2;
        } else if (p[0] == '}' && p[1] == '}') {
            piece = "}", plen = 1, p += 2;
        } else if (*p == '{') {
            const char *close = strchr(p, '}');
            if (!close)
                return ss_fail(err, SS_E_USAGE, "--filename '%.200s': unclosed '{'", tmpl);
            piece = field_value(f, p + 1, (size_t)(close - p - 1));
            if (!piece)
                return ss_fail(err, SS_E_USAGE, "--filename '%.200s': unknown field {%.*s} "
                               "(known: {track} {inext} {stem} {ext} {model} {dir})", tmpl,
                               (int)(close - p - 1 < 40 ? close - p - 1 : 40), p + 1);
            plen = strlen(piece);
            p = close + 1;
        } else if (*p == '}') {
            return ss_fail(err, SS_E_USAGE, "--filename '%.200s': stray '}' (write '}}' for a brace)", tmpl);
        } else {
            piece = p, plen = 1, p++;
        }
        if (n + plen >= size)
            return ss_fail(err, SS_E_USAGE, "--filename '%.200s': expanded name too long", tmpl);
        memcpy(out + n, piece, plen);
        n += plen;
    }
    out[n] = '\0';
    /* an empty field ({dir} for a file named directly) leaves "//" or a leading '/': squeeze them,
     * but a template that is itself absolute stays absolute and is refused below */
    if (tmpl[0] != '/') {
        size_t w = 0;
        for (size_t r = 0; r < n; r++)
            if (out[r] != '/' || (w > 0 && out[w - 1] != '/'))
                out[w++] = out[r];
        out[w] = '\0';
    }
    if (!safe_relative(out))
        return ss_fail(err, SS_E_USAGE, "--filename '%.200s' gives '%.200s', which is not a relative path "
                       "without '.', '..' or empty parts", tmpl, out);
    return SS_OK;
}

ss_status ss_template_check(const char *tmpl, ss_error *err)
{
    char buf[4096];
    return ss_template_expand(tmpl, NULL, buf, sizeof buf, err);
}

int ss_template_uses(const char *tmpl, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '{' && p[1] == '{') {
            p++;
        } else if (p[0] == '{') {
            const char *close = strchr(p, '}');
            if (!close)
                return 0;
            if ((size_t)(close - p - 1) == len && memcmp(p + 1, name, len) == 0)
                return 1;
            p = close;
        }
    }
    return 0;
}

size_t ss_template_fixed_prefix(const char *tmpl, const char *model, char *out, size_t size)
{
    size_t end = 0;                     /* tmpl[0, end) is the fixed part */
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '{' && p[1] == '{') {
            p++;
        } else if (p[0] == '{') {
            const char *close = strchr(p, '}');
            if (!close || close - p - 1 != 5 || memcmp(p + 1, "model", 5) != 0)
                break;
            p = close;
        } else if (*p == '/') {
            end = (size_t)(p - tmpl);
        }
    }
    char part[4096];
    if (end == 0 || end >= sizeof part || !model)
        return 0;
    memcpy(part, tmpl, end);
    part[end] = '\0';
    ss_template_fields f = {"", "", "", model, "", ""};
    ss_error e = {0};
    if (ss_template_expand(part, &f, out, size, &e) != SS_OK)
        return 0;
    return strlen(out);
}

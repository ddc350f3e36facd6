/* template.h - output file names from a --filename template.
 *
 * Fields: {track} input name without extension, {inext} the input's
 * extension without the dot ("" when it has none, and for standard input),
 * {stem}, {ext} ("wav", "flac"), {model} model name, {dir} the input's
 * directory relative to the folder given on the command line ("" for files
 * named directly).  "{{" and
 * "}}" are literal braces.  The result is a relative path: it may not be
 * empty, absolute, or contain "." or ".." components or empty components.
 */
#ifndef SS_TEMPLATE_H
#define SS_TEMPLATE_H

#include <stddef.h>

#include "error.h"

typedef struct ss_template_fields {
    const char *track;   /* input name without extension  */
    const char *stem;    /* stem name                     */
    const char *ext;     /* file extension without the dot */
    const char *model;   /* model name                    */
    const char *dir;     /* relative input directory      */
    const char *inext;   /* input's extension, no dot     */
} ss_template_fields;

/* Check a template's syntax and fields (SS_E_USAGE with the reason). */
ss_status ss_template_check(const char *tmpl, ss_error *err);

/* Expand into out (size bytes).  SS_E_USAGE when the template is malformed or
 * the result is not a safe relative path or does not fit. */
/* 1 when the template uses field `name` (e.g. "inext"). */
int ss_template_uses(const char *tmpl, const char *name);

/* The leading '/'-separated parts of tmpl that use no field but {model},
 * expanded with `model` into out ("htdemucs" for the template
 * "{model}/{dir}/{track}/{stem}.{ext}"): the folder under the output
 * directory that holds nothing but stems.  Returns its length; 0 when there
 * is none or it does not fit. */
size_t ss_template_fixed_prefix(const char *tmpl, const char *model, char *out, size_t size);

ss_status ss_template_expand(const char *tmpl, const ss_template_fields *f, char *out, size_t size,
                             ss_error *err);

#endif

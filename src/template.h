/* template.h - output file names from a --filename template.
 *
 * Fields: {track} input name without extension, {stem}, {ext} ("wav",
 * "flac"), {model} model name, {dir} the input's directory relative to the
 * folder given on the command line ("" for files named directly).  "{{" and
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
} ss_template_fields;

/* Check a template's syntax and fields (SS_E_USAGE with the reason). */
ss_status ss_template_check(const char *tmpl, ss_error *err);

/* Expand into out (size bytes).  SS_E_USAGE when the template is malformed or
 * the result is not a safe relative path or does not fit. */
ss_status ss_template_expand(const char *tmpl, const ss_template_fields *f, char *out, size_t size,
                             ss_error *err);

#endif

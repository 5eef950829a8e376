/*
 * ctpl_builtins.h - helpers shared by ctpl_builtins.c, ctpl_strings.c and
 * ctpl_filters.c (argument binding, Python string operations).  Private to
 * the chat-template interpreter.
 */
#ifndef KILN_TOKENIZER_CTPL_BUILTINS_H
#define KILN_TOKENIZER_CTPL_BUILTINS_H

#include "tokenizer/ctpl_impl.h"

/* Bind positional then keyword arguments to `names` (n of them) like a
 * Python signature; vals[i] is set where given[i].  `what` names the callee
 * in errors (too many arguments, unknown or repeated keyword). */
kiln_status ctpl_bind(ctpl_rs *r, const char *what, const ctpl_args *a, const char *const *names,
                      size_t n, ctpl_val *vals, bool *given);
/* KILN_ERR_FORMAT unless v is a string. */
kiln_status ctpl_need_str(ctpl_rs *r, const char *what, ctpl_val v);

/* Python str.strip/lstrip/rstrip: chars NULL strips whitespace. */
ctpl_val ctpl_str_strip(ctpl_val s, const ctpl_val *chars, bool left, bool right);
/* Case mappings of str.upper(), lower(), capitalize(), title() (Python's
 * word rule) and jinja2's title filter (words start after -, space, brackets). */
enum { CTPL_CASE_UPPER, CTPL_CASE_LOWER, CTPL_CASE_CAPITALIZE, CTPL_CASE_TITLE, CTPL_CASE_JTITLE };
kiln_status ctpl_str_case(ctpl_rs *r, ctpl_val s, int mode, ctpl_val *out);
/* str.replace(old, new, count); count < 0: all. */
kiln_status ctpl_str_replace(ctpl_rs *r, ctpl_val s, ctpl_val old, ctpl_val new_, int64_t count,
                             ctpl_val *out);
/* str.split(sep, maxsplit) / rsplit; sep NULL splits on whitespace runs. */
kiln_status ctpl_str_split(ctpl_rs *r, ctpl_val s, const ctpl_val *sep, int64_t maxsplit, bool from_right,
                           ctpl_val *out);
/* str.splitlines() without keepends. */
kiln_status ctpl_str_splitlines(ctpl_rs *r, ctpl_val s, ctpl_list **out);
/* Concatenate str(items) with sep between them. */
kiln_status ctpl_str_join(ctpl_rs *r, const ctpl_list *items, ctpl_val sep, ctpl_val *out);

#endif /* KILN_TOKENIZER_CTPL_BUILTINS_H */

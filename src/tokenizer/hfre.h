/*
 * hfre.h - the regular expressions of tokenizer.json, run with PCRE2.
 *
 * `tokenizers` compiles its Split/Replace patterns with Oniguruma.  Two
 * differences from PCRE2 matter for the patterns found in the wild and are
 * removed here:
 *   1. \s and \S: Oniguruma uses the Unicode White_Space property; PCRE2's
 *      UCP \s also takes U+180E.  \s is rewritten to the explicit
 *      White_Space set (outside and inside character classes, \S outside).
 *   2. Iteration over matches: an empty match right where the previous match
 *      ended is skipped and the search moves one character on (rust-onig's
 *      find_iter), not PCRE2's NOTEMPTY_ATSTART retry.
 * Patterns are compiled with PCRE2_UTF | PCRE2_UCP and JIT-compiled when the
 * platform allows; subjects must be valid UTF-8 (they are never checked
 * again).  A compiled hfre is immutable and may be shared between threads;
 * each matching thread brings its own hfre_iter / match data.
 */
#ifndef KILN_TOKENIZER_HFRE_H
#define KILN_TOKENIZER_HFRE_H

#include "kiln.h"

#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct hfre hfre;

/* Compile pat[0..len): a regex, or (literal) a plain string.  Errors:
 * KILN_ERR_FORMAT naming the pattern and PCRE2's message, KILN_ERR_OOM.
 * *out owned: hfre_free(). */
kiln_status hfre_compile(const char *pat, size_t len, bool literal, hfre **out);
void hfre_free(hfre *re);

/* Match data for hfre_next (one per thread / call); NULL on OOM. */
pcre2_match_data *hfre_md_create(void);
void hfre_md_free(pcre2_match_data *md);

typedef struct hfre_iter {
    const hfre *re;
    const char *s;
    size_t len;
    size_t pos;            /* where the next search starts               */
    size_t last_match_end; /* end of the previous match                  */
    bool has_last;
    pcre2_match_data *md;
} hfre_iter;

void hfre_iter_init(hfre_iter *it, const hfre *re, const char *s, size_t len,
                    pcre2_match_data *md);
/* Next match as [*ms, *me); *found false at the end.  Errors:
 * KILN_ERR_RANGE when PCRE2 gives up (match limit), naming the pattern. */
kiln_status hfre_next(hfre_iter *it, size_t *ms, size_t *me, bool *found);

#endif /* KILN_TOKENIZER_HFRE_H */

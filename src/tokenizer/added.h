/*
 * added.h - the added tokens of a tokenizer.json ("added_tokens"), found in
 * text before the model sees it.
 *
 * As `tokenizers`' AddedVocabulary: tokens with normalized=false are matched
 * in the raw text, the others (spelled as the normalizer writes them) in
 * each normalized stretch of text between raw matches.  Matching is
 * leftmost-longest and non-overlapping; a single_word token whose match
 * touches a word character (regex \w) on either side is skipped (and its
 * text is not searched again); lstrip / rstrip swallow the whitespace before
 * / after the match into the token.  Decoding spells a normalized token as
 * the normalizer writes it (added_spelling).  Immutable after added_index().
 */
#ifndef KILN_TOKENIZER_ADDED_H
#define KILN_TOKENIZER_ADDED_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct added_tok {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
    size_t norm_off, norm_len; /* normalized spelling in norm_text (normalized only) */
} added_tok;

typedef struct added_pat {
    const char *s; /* borrowed from content or owned in norm_text */
    size_t len;
    uint32_t tok;  /* index into toks */
} added_pat;

typedef struct added_trie {
    added_pat *p; /* sorted by bytes, then token index */
    size_t n;
    uint8_t first[32]; /* bitmap of first bytes */
} added_trie;

typedef struct added_set {
    added_tok *toks;
    size_t n, cap;
    added_trie raw, norm;
    kiln_buf norm_text; /* normalized spellings, back to back */
    size_t *norm_off;   /* (per norm pattern) offset in norm_text */
} added_set;

/* A piece of text after splitting: [s, e) and the matched token index, or
 * -1 for text between matches. */
typedef struct added_seg {
    size_t s, e;
    int64_t tok;
} added_seg;

typedef struct added_segs {
    added_seg *v;
    size_t n, cap;
} added_segs;

/* Add a token (content copied).  Empty contents are ignored, as are repeats
 * of a content already added (the first stays).  Errors: KILN_ERR_OOM. */
kiln_status added_add(added_set *a, const char *s, size_t len, int32_t id, bool special,
                      bool lstrip, bool rstrip, bool single_word, bool normalized);

/* Normalizes a normalized token's spelling for added_index: write the
 * normalized form of s into *out.  NULL: spelled as written. */
typedef kiln_status (*added_norm_fn)(void *ctx, const char *s, size_t len, kiln_buf *out);

/* Build the two matchers.  Errors: KILN_ERR_OOM, what nf returns. */
kiln_status added_index(added_set *a, added_norm_fn nf, void *ctx);

/* Split s[0..len) with the raw (normalized == false) or normalized
 * matcher into *segs (cleared first), covering all of s in order.  Errors:
 * KILN_ERR_OOM. */
kiln_status added_split(const added_set *a, bool normalized_tokens, const char *s, size_t len,
                        added_segs *segs);

/* The string decoding uses for token k: the normalized spelling of a
 * normalized token, else its content.  Borrowed. */
const char *added_spelling(const added_set *a, size_t k, size_t *len);

void added_free(added_set *a);

#endif /* KILN_TOKENIZER_ADDED_H */

/*
 * pretokenize.h - tokenizer.json pre-tokenizers.
 *
 * Split (String or Regex pattern, every SplitDelimiterBehavior, invert),
 * ByteLevel, Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit,
 * Digits, Punctuation, CharDelimiterSplit and Sequence (flattened into a list
 * of stages).  A text piece flows depth-first through the stages: stage i
 * cuts (and for ByteLevel/Metaspace rewrites) its piece and hands each
 * non-empty sub-piece to stage i+1; the last stage hands it to the caller's
 * emit function, in text order.  No offsets are kept; the one positional
 * fact a stage needs (Metaspace prepend_scheme "first": does this piece
 * start the input?) travels as a flag.
 *
 * A parsed pretok is immutable and shareable; each concurrent caller brings
 * its own pretok_state (scratch reused across calls).
 */
#ifndef KILN_TOKENIZER_PRETOKENIZE_H
#define KILN_TOKENIZER_PRETOKENIZE_H

#include "base/buf.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct pretok pretok;
typedef struct pretok_state pretok_state;
typedef kiln_status (*pretok_emit_fn)(void *ctx, const char *s, size_t len);

/* Parse the "pre_tokenizer" value of a tokenizer.json; NULL or JSON null
 * gives *out = NULL (the whole text is one piece).  Errors:
 * KILN_ERR_UNSUPPORTED naming an unknown type, KILN_ERR_FORMAT (bad fields,
 * bad regex), KILN_ERR_OOM.  *out owned: pretok_free(). */
kiln_status pretok_from_json(const json_t *j, pretok **out);

/* Built in code: Split(regex, Isolated) for each of regexes[0..n), then
 * ByteLevel(add_prefix_space=false, use_regex=false) when byte_level.
 * Errors as pretok_from_json. */
kiln_status pretok_new_regexes(const char *const *regexes, size_t n, bool byte_level,
                               pretok **out);
/* Built in code: BertPreTokenizer. */
kiln_status pretok_new_bert(pretok **out);

void pretok_free(pretok *p);

/* True when a stage is ByteLevel (the pipeline is byte-level). */
bool pretok_is_byte_level(const pretok *p);
/* True when a stage is Metaspace. */
bool pretok_has_metaspace(const pretok *p);

/* Scratch for pretok_run.  *out owned: pretok_state_free().  Errors:
 * KILN_ERR_OOM. */
kiln_status pretok_state_new(const pretok *p, pretok_state **out);
void pretok_state_free(pretok_state *st);

/* Pre-tokenize s[0..len) (valid UTF-8, non-empty pieces only reach emit).
 * first: the piece starts at offset 0 of the input.  Errors: what emit
 * returns, KILN_ERR_OOM, KILN_ERR_RANGE (regex limit). */
kiln_status pretok_run(const pretok *p, pretok_state *st, const char *s, size_t len, bool first,
                       pretok_emit_fn emit, void *ctx);

#endif /* KILN_TOKENIZER_PRETOKENIZE_H */

/*
 * wordpiece.h - the WordPiece model (BERT): greedy longest-match-first.
 *
 * A word longer than max_input_chars_per_word characters, or one that
 * cannot be covered by vocab pieces (continuation pieces spelled with the
 * prefix, "##" by default), becomes the single unk token.  Immutable after
 * building; lookups use a caller scratch buffer, so it is shareable.
 */
#ifndef KILN_TOKENIZER_WORDPIECE_H
#define KILN_TOKENIZER_WORDPIECE_H

#include "base/buf.h"
#include "tokenizer/vocab.h"

#include <jansson.h>

typedef struct wp wp;

/* Parse a tokenizer.json "model" of type WordPiece.  Errors:
 * KILN_ERR_FORMAT (bad vocab, unk token not in it), KILN_ERR_OOM.  *out
 * owned: wp_free(). */
kiln_status wp_from_json(const json_t *model, wp **out);

/* Build in code: wp_new, wp_add_token for each token, wp_finish. */
kiln_status wp_new(const char *unk, const char *prefix, size_t max_chars, wp **out);
kiln_status wp_add_token(wp *m, const char *s, size_t len, int32_t id);
kiln_status wp_finish(wp *m);
void wp_free(wp *m);

const vocab *wp_vocab(const wp *m);
const char *wp_prefix(const wp *m);

/* Append the ids of word s[0..len) to *out; tmp is caller scratch.
 * Errors: KILN_ERR_OOM. */
kiln_status wp_encode(const wp *m, kiln_buf *tmp, const char *s, size_t len, kiln_ids *out);

#endif /* KILN_TOKENIZER_WORDPIECE_H */

/*
 * decode.h - tokenizer.json decoders: token strings -> text.
 *
 * ByteLevel, Metaspace, WordPiece, ByteFallback, Fuse, Strip, Replace,
 * BPEDecoder and Sequence (flattened), each a map from a list of token
 * strings to a list of strings exactly as the `tokenizers` library's
 * decode_chain; the final list is concatenated.  Without a decoder the
 * tokens are joined with single spaces.  Immutable and shareable.
 */
#ifndef KILN_TOKENIZER_DECODE_H
#define KILN_TOKENIZER_DECODE_H

#include "base/buf.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct dec dec;

/* A list of strings: string k is text[off[k] .. off[k + 1]). */
typedef struct dec_list {
    kiln_buf text;
    size_t *off; /* n + 1 entries once n > 0 */
    size_t n, cap;
} dec_list;

kiln_status dec_list_push(dec_list *l, const char *s, size_t len);
void dec_list_clear(dec_list *l);
void dec_list_free(dec_list *l);

/* Parse the "decoder" value of a tokenizer.json; NULL/null -> *out NULL.
 * Errors: KILN_ERR_UNSUPPORTED naming an unknown type (CTC included),
 * KILN_ERR_FORMAT, KILN_ERR_OOM.  *out owned: dec_free(). */
kiln_status dec_from_json(const json_t *j, dec **out);
/* Built in code: ByteLevel, or WordPiece(prefix, cleanup). */
kiln_status dec_new_byte_level(dec **out);
kiln_status dec_new_wordpiece(const char *prefix, bool cleanup, dec **out);
void dec_free(dec *d);

/* Decode the token strings in *toks (consumed as scratch) and append the
 * text to *out.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE (regex limit). */
kiln_status dec_run(const dec *d, dec_list *toks, kiln_buf *out);

#endif /* KILN_TOKENIZER_DECODE_H */

/*
 * normalize.h - tokenizer.json normalizers.
 *
 * NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, BertNormalizer, Replace,
 * Prepend, Strip, ByteLevel and Sequence, each producing exactly the string
 * the `tokenizers` library produces (offsets are not tracked: nothing in
 * kiln reads them).  Nested Sequences are flattened when parsed.  A parsed
 * normalizer is immutable and may be used from several threads at once.
 */
#ifndef KILN_TOKENIZER_NORMALIZE_H
#define KILN_TOKENIZER_NORMALIZE_H

#include "base/buf.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>

typedef struct norm norm;

/* Parse the "normalizer" value of a tokenizer.json.  NULL or JSON null gives
 * *out = NULL (no normalizer).  Errors: KILN_ERR_UNSUPPORTED naming an
 * unknown type, KILN_ERR_FORMAT for malformed fields, KILN_ERR_OOM.  *out
 * owned: norm_free(). */
kiln_status norm_from_json(const json_t *j, norm **out);

/* A normalizer built in code: BertNormalizer with the given flags
 * (strip_accents < 0 means "follow lowercase"). */
kiln_status norm_new_bert(bool clean_text, bool chinese, int strip_accents, bool lowercase,
                          norm **out);

/* A normalizer built in code: NFC. */
kiln_status norm_new_nfc(norm **out);

/* Normalize s[0..len) (valid UTF-8) into *out (cleared first); s must not
 * point into out or scratch.  scratch holds two buffers the call may use
 * (their contents are lost); md is PCRE2 match data (hfre_md_create) for
 * Replace.  Errors: KILN_ERR_OOM, KILN_ERR_RANGE (regex limit). */
kiln_status norm_apply(const norm *n, const char *s, size_t len, kiln_buf *out,
                       kiln_buf scratch[2], pcre2_match_data *md);

void norm_free(norm *n);

/* Unicode normal form of s into *out (cleared first): form is one of
 * "NFC", "NFD", "NFKC", "NFKD".  Errors: KILN_ERR_OOM. */
kiln_status norm_unicode(const char *form, const char *s, size_t len, kiln_buf *out);

#endif /* KILN_TOKENIZER_NORMALIZE_H */

/*
 * hftok.h - Hugging Face tokenizer.json pipelines.
 *
 *   text -> added-token split -> normalizer -> pre-tokenizer -> model
 *        -> post-processor -> ids;   ids -> decoder -> text
 *
 * Models: BPE (byte-level as GPT-2/Llama 3/Qwen/DeepSeek, or with
 * byte_fallback and Metaspace as Llama 2/Mistral/Gemma tokenizer.json) and
 * WordPiece (BERT).  Output is identical to the `tokenizers` library for the
 * same file.  Also builds the same pipelines from GGUF "gpt2" and "bert"
 * vocabularies and from a BERT vocab.txt.
 *
 * Behaviour a caller can observe:
 *   - Invalid UTF-8 in the input is decoded as Python's
 *     bytes.decode("utf-8", errors="replace") does: each maximal invalid
 *     subsequence (Unicode's "maximal subpart" rule) becomes one U+FFFD, and
 *     the result is tokenized.  Encoding those bytes in kiln equals encoding
 *     that Python string with `tokenizers`.
 *   - Decoding yields valid UTF-8: byte-level pieces that do not form valid
 *     UTF-8 are repaired as the library does (one U+FFFD per maximal
 *     subpart for ByteLevel, one per byte for ByteFallback).
 *   - add_special = false is encode(text, add_special_tokens=False): the
 *     post-processor adds nothing.  Special tokens written in the text are
 *     matched either way.
 *   - A "truncation" setting in the file is applied (max_length counts the
 *     ids the post-processor adds; "Left" keeps the end).  "padding" is
 *     ignored: padding belongs to batching.
 *   - Added-token ids follow the library: a content found in the model vocab
 *     takes that id, others the next ids in file order (the file's "id"
 *     fields agree with this in every file the library writes).
 *   - BOS/EOS: the first special id the post-processor puts before / after
 *     the text; otherwise a special added token with a well-known name
 *     (<|begin_of_text|>, <s>, <bos>, [CLS], ... / <|end_of_text|>, </s>,
 *     <eos>, <|endoftext|>, [SEP], ...); -1 if none.  tokenizer.json does not
 *     record them, so callers with tokenizer_config.json should prefer it.
 * A loaded handle is immutable: encode/decode may run from several threads
 * at once (each call uses its own scratch).
 */
#ifndef KILN_TOKENIZER_HFTOK_H
#define KILN_TOKENIZER_HFTOK_H

#include "base/buf.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hftok hftok;
struct gguf_file;

/* Parse the bytes of a tokenizer.json.  Errors: KILN_ERR_FORMAT (bad JSON
 * with line/column, malformed fields, merges naming tokens not in the
 * vocab, bad regexes), KILN_ERR_UNSUPPORTED naming the component kiln does
 * not run (Unigram/WordLevel models, Precompiled normalizer, BPE dropout,
 * CTC decoder, ...), KILN_ERR_OOM.  *out owned: hftok_free(). */
kiln_status hftok_load(const char *json, size_t len, hftok **out);
/* A GGUF "gpt2" (byte-level BPE; regex from tokenizer.ggml.pre) or "bert"
 * (WordPiece) vocabulary, with llama.cpp's semantics (the details and the
 * two places kiln follows the model's tokenizer.json instead are in
 * hftok_build.c).  g must stay open only during the call.  Errors:
 * KILN_ERR_NOT_FOUND / KILN_ERR_FORMAT (missing or bad tokenizer keys),
 * KILN_ERR_UNSUPPORTED (another model kind, an unknown pre-tokenizer name),
 * KILN_ERR_OOM.  *out owned: hftok_free(). */
kiln_status hftok_from_gguf(const struct gguf_file *g, hftok **out);
/* A BERT vocab.txt (one token per line) with BERT's basic tokenizer
 * (do_lower_case also strips accents), [CLS] $A [SEP].  Errors:
 * KILN_ERR_IO, KILN_ERR_FORMAT ([UNK] missing), KILN_ERR_OOM.  *out owned:
 * hftok_free(). */
kiln_status hftok_from_vocab_txt(const char *path, bool do_lower_case, hftok **out);
void hftok_free(hftok *t); /* NULL is a no-op */

/* Append the ids of text[0..len) to *out (any bytes; see above for invalid
 * UTF-8).  Errors: KILN_ERR_OOM, KILN_ERR_RANGE (a regex gave up on
 * pathological input); *out is left as it was on error. */
kiln_status hftok_encode(const hftok *t, const char *text, size_t len, bool add_special,
                         kiln_ids *out);
/* Append the text of ids[0..n) to *out, as decode(ids, skip_special_tokens)
 * of the library.  Errors: KILN_ERR_RANGE (an id with no token), OOM. */
/* hftok_encode with the truncation chosen by the caller instead of the
 * file's: max_len < 0 as the file says, 0 none, > 0 at most max_len ids
 * (special tokens added by the post-processor included, as the reference
 * counts them). */
kiln_status hftok_encode_trunc(const hftok *t, const char *text, size_t len, bool add_special,
                               int64_t max_len, kiln_ids *out);
kiln_status hftok_decode(const hftok *t, const int32_t *ids, size_t n, bool skip_special,
                         kiln_buf *out);

/* One more than the largest id (model or added). */
int64_t hftok_vocab_size(const hftok *t);
/* The string of id as decoding sees it (added tokens as written, or as the
 * normalizer spells them when normalized), borrowed until hftok_free; NULL
 * if the id has none.  len may be NULL. */
const char *hftok_piece(const hftok *t, int32_t id, size_t *len);
/* Id of an added token's content, else of a model vocab entry; -1. */
int32_t hftok_piece_id(const hftok *t, const char *piece, size_t len);
bool hftok_is_special(const hftok *t, int32_t id);
int32_t hftok_bos_id(const hftok *t); /* -1 if none (see above) */
int32_t hftok_eos_id(const hftok *t); /* -1 if none */
/* "byte-level BPE", "BPE (byte fallback / Metaspace)", "BPE", "WordPiece". */
const char *hftok_kind_name(const hftok *t);

#endif /* KILN_TOKENIZER_HFTOK_H */

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

/* Parse the bytes of a tokenizer.json.  Unsupported components are rejected
 * naming them.  *out owned: hftok_free(). */
kiln_status hftok_load(const char *json, size_t len, hftok **out);
/* A GGUF "gpt2" (byte-level BPE; regex from tokenizer.ggml.pre) or "bert"
 * (WordPiece) vocabulary, with llama.cpp's semantics. */
kiln_status hftok_from_gguf(const struct gguf_file *g, hftok **out);
/* A BERT vocab.txt (one token per line) with BERT's basic tokenizer. */
kiln_status hftok_from_vocab_txt(const char *path, bool do_lower_case, hftok **out);
void hftok_free(hftok *t);

kiln_status hftok_encode(const hftok *t, const char *text, size_t len, bool add_special,
                         kiln_ids *out);
kiln_status hftok_decode(const hftok *t, const int32_t *ids, size_t n, bool skip_special,
                         kiln_buf *out);

int64_t hftok_vocab_size(const hftok *t);
const char *hftok_piece(const hftok *t, int32_t id, size_t *len);
int32_t hftok_piece_id(const hftok *t, const char *piece, size_t len);
bool hftok_is_special(const hftok *t, int32_t id);
int32_t hftok_bos_id(const hftok *t);
int32_t hftok_eos_id(const hftok *t);
const char *hftok_kind_name(const hftok *t);

#endif /* KILN_TOKENIZER_HFTOK_H */

/*
 * spm.h - SentencePiece-style BPE tokenizers.
 *
 * From a SentencePiece .model file (protobuf, read here in C; output
 * identical to the `sentencepiece` library) and from GGUF vocabularies with
 * tokenizer.ggml.model = "llama" (Llama 2, Mistral, Gemma: tokens, scores,
 * token types, byte fallback <0xNN>, add_bos/add_eos, space prefix; output
 * identical to llama.cpp's tokenizer with special-token parsing on).
 *
 * Invalid UTF-8 in input text is first replaced with U+FFFD by the
 * maximal-subpart rule (Python's bytes.decode(errors="replace")), then
 * tokenized; the references are compared on text decoded that way.
 * Handles are immutable after loading and may be shared between threads.
 * Implementation: spm.c (handle, .model flavour), spm_model.c (protobuf),
 * spm_gguf.c (GGUF, llama.cpp flavour), spm_bpe.c, spm_norm.c.
 */
#ifndef KILN_TOKENIZER_SPM_H
#define KILN_TOKENIZER_SPM_H

#include "base/buf.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct spm_tok spm_tok;
struct gguf_file;

/* Load a SentencePiece .model file (BPE models only).  *out is owned by
 * the caller: spm_free().  Errors: KILN_ERR_IO, KILN_ERR_FORMAT (malformed
 * protobuf or vocabulary), KILN_ERR_UNSUPPORTED (UNIGRAM, WORD, CHAR:
 * named in the message), KILN_ERR_OOM.  Messages name the file. */
kiln_status spm_load_model_file(const char *path, spm_tok **out);
/* The same from serialized bytes (borrowed; what is kept is copied). */
kiln_status spm_load_model_bytes(const void *data, size_t len, spm_tok **out); /* fuzzing */
/* The vocabulary of a GGUF file with tokenizer.ggml.model = "llama";
 * everything is copied, g may be closed afterwards.  *out: spm_free().
 * Errors: KILN_ERR_NOT_FOUND, KILN_ERR_UNSUPPORTED (another model),
 * KILN_ERR_FORMAT, KILN_ERR_OOM. */
kiln_status spm_from_gguf(const struct gguf_file *g, spm_tok **out);
void spm_free(spm_tok *t); /* NULL is a no-op */

/* Append the ids of text[0..len) to *out.  add_special: .model -> BOS
 * first (Llama 2 convention, as `sp.encode(text, add_bos=True)`); GGUF ->
 * BOS/EOS as tokenizer.ggml.add_bos_token/add_eos_token say.  GGUF
 * vocabularies always parse special tokens written in the text; .model
 * never does (as sentencepiece).  On error *out is unchanged.  Errors:
 * KILN_ERR_OOM, KILN_ERR_RANGE, KILN_ERR_INVALID_ARG. */
kiln_status spm_encode(const spm_tok *t, const char *text, size_t len, bool add_special,
                       kiln_ids *out);
/* Append the text of ids[0..n) to *out.  skip_special = the references'
 * default (sp.decode; llama_detokenize with remove_special and without
 * unparse_special); false writes control tokens' text (GGUF: also keeps a
 * leading BOS / trailing EOS).  On error *out is unchanged.  Errors:
 * KILN_ERR_RANGE (id out of range), KILN_ERR_OOM. */
kiln_status spm_decode(const spm_tok *t, const int32_t *ids, size_t n, bool skip_special,
                       kiln_buf *out);

int64_t spm_vocab_size(const spm_tok *t);
/* Stored piece of id (spaces appear as U+2581), borrowed until spm_free;
 * NULL when out of range.  *len may be NULL. */
const char *spm_piece(const spm_tok *t, int32_t id, size_t *len);
int32_t spm_piece_id(const spm_tok *t, const char *piece, size_t len); /* -1 if none */
/* Control or unknown token. */
bool spm_is_special(const spm_tok *t, int32_t id);
int32_t spm_bos_id(const spm_tok *t); /* -1 if none */
int32_t spm_eos_id(const spm_tok *t); /* -1 if none */

#endif /* KILN_TOKENIZER_SPM_H */

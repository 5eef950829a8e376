/*
 * spm.h - SentencePiece-style BPE tokenizers.
 *
 * From a SentencePiece .model file (protobuf, read here in C; output
 * identical to the `sentencepiece` library) and from GGUF vocabularies with
 * tokenizer.ggml.model = "llama" (Llama 2, Mistral, Gemma: tokens, scores,
 * token types, byte fallback <0xNN>, add_bos/add_eos, space prefix; output
 * identical to llama.cpp's tokenizer with special-token parsing on).
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

kiln_status spm_load_model_file(const char *path, spm_tok **out);
kiln_status spm_load_model_bytes(const void *data, size_t len, spm_tok **out); /* fuzzing */
kiln_status spm_from_gguf(const struct gguf_file *g, spm_tok **out);
void spm_free(spm_tok *t);

kiln_status spm_encode(const spm_tok *t, const char *text, size_t len, bool add_special,
                       kiln_ids *out);
kiln_status spm_decode(const spm_tok *t, const int32_t *ids, size_t n, bool skip_special,
                       kiln_buf *out);

int64_t spm_vocab_size(const spm_tok *t);
const char *spm_piece(const spm_tok *t, int32_t id, size_t *len);
int32_t spm_piece_id(const spm_tok *t, const char *piece, size_t len);
bool spm_is_special(const spm_tok *t, int32_t id);
int32_t spm_bos_id(const spm_tok *t);
int32_t spm_eos_id(const spm_tok *t);

#endif /* KILN_TOKENIZER_SPM_H */

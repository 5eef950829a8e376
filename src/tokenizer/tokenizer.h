/*
 * tokenizer.h - text <-> token ids, whatever the model's tokenizer kind.
 *
 * One handle for the three families kiln serves:
 *   - Hugging Face tokenizer.json pipelines (byte-level BPE, BPE with
 *     byte fallback / Metaspace, WordPiece): hftok.h
 *   - SentencePiece-style BPE from GGUF vocabularies (llama / gemma) and
 *     SentencePiece .model files: spm.h
 * tok_open() picks the implementation from what the source holds; the rest
 * of kiln sees only this interface.  Handles are immutable after opening and
 * may be used from several threads at once.
 */
#ifndef KILN_TOKENIZER_H
#define KILN_TOKENIZER_H

#include "base/buf.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;
struct gguf_file;

/* Open the tokenizer of `src`: a model directory (tokenizer.json, else
 * tokenizer.model, else vocab.txt), a GGUF file (its embedded vocabulary), a
 * tokenizer.json file, or a SentencePiece .model file.  *out is owned by the
 * caller: tok_free().  Errors name the file and the problem. */
kiln_status tok_open(const char *src, tokenizer **out);

/* The tokenizer embedded in an open GGUF file (which must outlive it). */
kiln_status tok_open_gguf(const struct gguf_file *g, tokenizer **out);

void tok_free(tokenizer *t); /* NULL is a no-op */

/* Append the ids of text[0..len) to *out.  Special tokens written in the
 * text are matched as the reference does; add_special adds BOS/EOS/CLS/SEP as
 * the model's post-processor or GGUF flags say.  Invalid UTF-8 is handled as
 * the reference handles it (documented per implementation). */
kiln_status tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
                       kiln_ids *out);

/* tok_encode with the caller's truncation instead of the tokenizer file's
 * (tokenizer.json "truncation", e.g. 128 in all-MiniLM-L6-v2 while
 * sentence-transformers uses 256): max_len < 0 as the file says, 0 none,
 * > 0 at most max_len ids, special tokens included (a sequence's closing
 * [SEP]/EOS is kept).  Tokenizers without a truncation setting (SentencePiece)
 * cut the ids before the closing special token themselves. */
kiln_status tok_encode_trunc(const tokenizer *t, const char *text, size_t len, bool add_special,
                             int64_t max_len, kiln_ids *out);

/* Append the text of ids[0..n) to *out (skip_special drops special tokens).
 * Ids out of range -> KILN_ERR_RANGE. */
kiln_status tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                       kiln_buf *out);

int64_t tok_vocab_size(const tokenizer *t);
/* The stored piece of `id` (e.g. "Ġthe", "▁the", "##ing"), borrowed; NULL if
 * out of range. */
const char *tok_piece(const tokenizer *t, int32_t id, size_t *len);
/* id of an exact piece, -1 if none. */
int32_t tok_piece_id(const tokenizer *t, const char *piece, size_t len);
bool tok_is_special(const tokenizer *t, int32_t id);
int32_t tok_bos_id(const tokenizer *t); /* -1 if none */
int32_t tok_eos_id(const tokenizer *t); /* -1 if none */
/* "byte-level BPE", "SentencePiece BPE", "WordPiece", ... */
const char *tok_kind_name(const tokenizer *t);

/* ---- incremental decoding for streaming ------------------------------
 * Feed ids one at a time; each call appends to *out only text that is final:
 * never a partial UTF-8 sequence, and with the same whitespace as decoding
 * the whole sequence at once (the concatenation of all outputs plus
 * tok_stream_flush equals tok_decode of all ids). */
typedef struct tok_stream tok_stream;
kiln_status tok_stream_open(const tokenizer *t, bool skip_special, tok_stream **out);
kiln_status tok_stream_push(tok_stream *s, int32_t id, kiln_buf *out);
kiln_status tok_stream_flush(tok_stream *s, kiln_buf *out);
void tok_stream_free(tok_stream *s);

#endif /* KILN_TOKENIZER_H */

/*
 * bpe.h - the BPE model of tokenizer.json (and of GGUF "gpt2" vocabularies).
 *
 * A word (one pre-token) starts as one symbol per character (with
 * continuing_subword_prefix / end_of_word_suffix where configured, byte
 * fallback <0xNN> pieces or the unk token for characters not in the vocab),
 * then the adjacent pair of lowest merge rank is merged, leftmost first,
 * until no pair has a merge: a binary heap of candidate pairs over a linked
 * list of symbols, O(n log n) per word.  ignore_merges takes a word found
 * whole in the vocab as one token.  Dropout is not supported (rejected at
 * load): results are deterministic.
 *
 * A built bpe is immutable and shareable; each concurrent caller brings its
 * own bpe_scratch.
 */
#ifndef KILN_TOKENIZER_BPE_H
#define KILN_TOKENIZER_BPE_H

#include "base/buf.h"
#include "tokenizer/vocab.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct bpe bpe;
typedef struct bpe_scratch bpe_scratch;

typedef struct bpe_opts {
    const char *unk_token;         /* NULL: characters not in the vocab are dropped */
    const char *prefix;            /* continuing_subword_prefix or NULL */
    const char *suffix;            /* end_of_word_suffix or NULL        */
    bool fuse_unk, byte_fallback, ignore_merges;
} bpe_opts;

/* Parse a tokenizer.json "model" of type BPE.  Errors: KILN_ERR_FORMAT
 * (bad vocab/merges, a merge naming a token not in the vocab),
 * KILN_ERR_UNSUPPORTED (dropout), KILN_ERR_OOM.  *out owned: bpe_free(). */
kiln_status bpe_from_json(const json_t *model, bpe **out);

/* Build in code: bpe_new, then bpe_add_token for every token and
 * bpe_add_merge for every merge in rank order, then bpe_finish.  Errors:
 * KILN_ERR_OOM, KILN_ERR_FORMAT (a merge token not in the vocab). */
kiln_status bpe_new(const bpe_opts *o, bpe **out);
kiln_status bpe_add_token(bpe *b, const char *s, size_t len, int32_t id);
kiln_status bpe_add_merge(bpe *b, const char *l, size_t ll, const char *r, size_t rl);
kiln_status bpe_finish(bpe *b);
void bpe_free(bpe *b);

const vocab *bpe_vocab(const bpe *b);
bool bpe_byte_fallback(const bpe *b);

kiln_status bpe_scratch_new(bpe_scratch **out);
void bpe_scratch_free(bpe_scratch *sc);

/* Append the ids of word s[0..len) (valid UTF-8) to *out.  Errors:
 * KILN_ERR_OOM. */
kiln_status bpe_encode(const bpe *b, bpe_scratch *sc, const char *s, size_t len, kiln_ids *out);

#endif /* KILN_TOKENIZER_BPE_H */

/*
 * kv_cache.h - bookkeeping of the paged KV cache: a fixed pool of blocks,
 * a free list, and one block table per sequence slot.
 *
 * The memory the blocks stand for (per layer K and V of n_blocks *
 * block_size tokens) is a bk_kv_cache allocated by the backend; this module
 * only decides which block holds which tokens.  A sequence slot is an index
 * in [0, max_seqs); its block table lists, in order, the blocks holding its
 * tokens 0 .. len-1, so token `pos` lives in slot
 * table[pos / block_size] * block_size + pos % block_size.  Tables are rows
 * of one (max_seqs, max_blocks_per_seq) array, the layout of
 * bk_batch.block_tables; entries past a sequence's blocks are -1.
 *
 * Nothing here allocates after kv_create(): the decode path only pops and
 * pushes block ids.  A kv_cache is used by one thread (the engine's).
 */
#ifndef KILN_ENGINE_KV_CACHE_H
#define KILN_ENGINE_KV_CACHE_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct kv_cache kv_cache;

/* Tokens per block unless the caller picks 8 or 32. */
#define KV_BLOCK_SIZE_DEFAULT 16

/* Make a pool of n_blocks blocks of block_size tokens (8, 16 or 32) for up
 * to max_seqs sequences of at most max_blocks_per_seq blocks each.
 * Errors: KILN_ERR_INVALID_ARG (a block size other than 8/16/32, a count
 * <= 0), KILN_ERR_RANGE (table sizes overflow), KILN_ERR_OOM.  *out owned:
 * kv_free(). */
kiln_status kv_create(int32_t n_blocks, int32_t block_size, int32_t max_seqs,
                      int32_t max_blocks_per_seq, kv_cache **out);

/* Release the pool; NULL is a no-op. */
void kv_free(kv_cache *kv);

int32_t kv_block_size(const kv_cache *kv);
int32_t kv_n_blocks(const kv_cache *kv);
int32_t kv_max_seqs(const kv_cache *kv);
int32_t kv_max_blocks_per_seq(const kv_cache *kv);
/* Blocks on the free list now. */
int32_t kv_free_blocks(const kv_cache *kv);
/* Blocks needed to hold n_tokens tokens (ceil(n_tokens / block_size)). */
int32_t kv_blocks_for(const kv_cache *kv, int64_t n_tokens);

/* Grow sequence `seq` by n_new tokens: its length becomes len + n_new and
 * blocks are taken from the free list as the new tokens need them.
 * Errors, with nothing changed: KILN_ERR_INVALID_ARG (seq out of range,
 * n_new < 0), KILN_ERR_RANGE when the sequence would pass
 * max_blocks_per_seq blocks (context full) or the pool has too few free
 * blocks (pool exhausted); the message says which and gives the counts. */
kiln_status kv_seq_append(kv_cache *kv, int32_t seq, int32_t n_new);

/* Return every block of `seq` to the free list and set its length to 0.
 * A sequence with no blocks is left as it is.  seq out of range is a bug
 * (KILN_ASSERT). */
void kv_seq_release(kv_cache *kv, int32_t seq);

/* Tokens in sequence `seq`. */
int32_t kv_seq_len(const kv_cache *kv, int32_t seq);
/* Blocks held by sequence `seq`. */
int32_t kv_seq_n_blocks(const kv_cache *kv, int32_t seq);
/* Block table row of `seq` (max_blocks_per_seq entries, -1 past the used
 * ones).  Borrowed: valid until kv_free(); changes with appends. */
const int32_t *kv_seq_table(const kv_cache *kv, int32_t seq);
/* The whole (max_seqs, max_blocks_per_seq) table array, borrowed. */
const int32_t *kv_tables(const kv_cache *kv);
/* Cache slot (block * block_size + offset) of token `pos` of `seq`;
 * pos must be < kv_seq_len (KILN_ASSERT). */
int32_t kv_slot(const kv_cache *kv, int32_t seq, int32_t pos);

/* Check every invariant listed in kv_cache.c (a block is either free or in
 * exactly one table, lengths match block counts, ...).  Returns true when
 * they hold; for tests and debug builds. */
bool kv_check(const kv_cache *kv);

#endif /* KILN_ENGINE_KV_CACHE_H */

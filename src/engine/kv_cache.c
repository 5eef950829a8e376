/*
 * kv_cache.c - the block pool behind the paged KV cache; see kv_cache.h.
 *
 * Life of a block:
 *
 *                 kv_create()
 *                      |
 *                      v
 *               +-------------+   kv_seq_append() pops it when a      +-------------+
 *               |    FREE     | ---- sequence's new token falls ----> |    OWNED    |
 *               | (free list) |      past its last block              |  (seq s,    |
 *               |             | <--- kv_seq_release(s) pushes every - |  table row) |
 *               +-------------+      block of s back                  +-------------+
 *                      |
 *                      v
 *                  kv_free()
 *
 * Invariants (checked by kv_check):
 *   1. Every block id in [0, n_blocks) is in exactly one place: on the free
 *      list (free[0 .. n_free)) or in one sequence's table row.
 *   2. owner[b] is -1 for a free block and the slot of the sequence whose
 *      table holds it otherwise.
 *   3. A sequence of len tokens holds exactly ceil(len / block_size) blocks,
 *      in table[0 .. n_blocks_of_seq), and -1 in the rest of its row.
 *   4. n_free + sum of blocks held == n_blocks.
 * Appends are all-or-nothing: a failed kv_seq_append changes nothing.
 * The free list is a stack, so a block released last is reused first
 * (its memory is the most likely to be warm in a cache).
 */
#include "engine/kv_cache.h"

#include "base/alloc.h"
#include "base/checked.h"
#include "base/error.h"

#include <inttypes.h>
#include <string.h>

struct kv_cache {
    int32_t n_blocks;
    int32_t block_size;
    int32_t max_seqs;
    int32_t max_blocks_per_seq;
    int32_t n_free;
    int32_t *free;        /* (n_blocks) stack of free block ids, top at n_free-1 */
    int32_t *owner;       /* (n_blocks) owning sequence slot, -1 when free        */
    int32_t *tables;      /* (max_seqs, max_blocks_per_seq) block ids, -1 unused  */
    int32_t *seq_len;     /* (max_seqs) tokens per sequence                       */
    int32_t *seq_blocks;  /* (max_seqs) blocks per sequence                       */
};

kiln_status kv_create(int32_t n_blocks, int32_t block_size, int32_t max_seqs,
                      int32_t max_blocks_per_seq, kv_cache **out)
{
    size_t n_tab;
    kv_cache *kv;

    *out = NULL;
    if (block_size != 8 && block_size != 16 && block_size != 32)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "kv cache: block size %d (8, 16 or 32 tokens)", block_size);
    if (n_blocks <= 0 || max_seqs <= 0 || max_blocks_per_seq <= 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "kv cache: %d blocks, %d sequences, %d blocks per sequence: "
                            "each must be positive", n_blocks, max_seqs, max_blocks_per_seq);
    if (!ck_mul_size((size_t)max_seqs, (size_t)max_blocks_per_seq, &n_tab) ||
        n_tab > (size_t)INT32_MAX)
        return kiln_err_set(KILN_ERR_RANGE, "kv cache: %d sequences x %d blocks overflows",
                            max_seqs, max_blocks_per_seq);
    if (!(kv = kiln_calloc(1, sizeof *kv)))
        return kiln_err_set(KILN_ERR_OOM, "kv cache: out of memory");
    kv->free = kiln_calloc((size_t)n_blocks, sizeof *kv->free);
    kv->owner = kiln_calloc((size_t)n_blocks, sizeof *kv->owner);
    kv->tables = kiln_calloc(n_tab, sizeof *kv->tables);
    kv->seq_len = kiln_calloc((size_t)max_seqs, sizeof *kv->seq_len);
    kv->seq_blocks = kiln_calloc((size_t)max_seqs, sizeof *kv->seq_blocks);
    if (!kv->free || !kv->owner || !kv->tables || !kv->seq_len || !kv->seq_blocks) {
        kv_free(kv);
        return kiln_err_set(KILN_ERR_OOM, "kv cache: out of memory for %d blocks", n_blocks);
    }
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->max_seqs = max_seqs;
    kv->max_blocks_per_seq = max_blocks_per_seq;
    /* Stack order: block 0 on top, so a fresh pool hands out 0, 1, 2, ... */
    for (int32_t i = 0; i < n_blocks; i++) {
        kv->free[i] = n_blocks - 1 - i;
        kv->owner[i] = -1;
    }
    kv->n_free = n_blocks;
    for (size_t i = 0; i < n_tab; i++)
        kv->tables[i] = -1;
    *out = kv;
    return KILN_OK;
}

void kv_free(kv_cache *kv)
{
    if (!kv)
        return;
    kiln_free(kv->free);
    kiln_free(kv->owner);
    kiln_free(kv->tables);
    kiln_free(kv->seq_len);
    kiln_free(kv->seq_blocks);
    kiln_free(kv);
}

int32_t kv_block_size(const kv_cache *kv) { return kv->block_size; }
int32_t kv_n_blocks(const kv_cache *kv) { return kv->n_blocks; }
int32_t kv_max_seqs(const kv_cache *kv) { return kv->max_seqs; }
int32_t kv_max_blocks_per_seq(const kv_cache *kv) { return kv->max_blocks_per_seq; }
int32_t kv_free_blocks(const kv_cache *kv) { return kv->n_free; }

int32_t kv_blocks_for(const kv_cache *kv, int64_t n_tokens)
{
    if (n_tokens <= 0)
        return 0;
    int64_t b = (n_tokens + kv->block_size - 1) / kv->block_size;
    return b > INT32_MAX ? INT32_MAX : (int32_t)b;
}

kiln_status kv_seq_append(kv_cache *kv, int32_t seq, int32_t n_new)
{
    if (seq < 0 || seq >= kv->max_seqs || n_new < 0)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "kv cache: append of %d tokens to sequence %d "
                            "(of %d)", n_new, seq, kv->max_seqs);
    int64_t len = (int64_t)kv->seq_len[seq] + n_new;
    int32_t need = kv_blocks_for(kv, len);
    int32_t more = need - kv->seq_blocks[seq];
    if (need > kv->max_blocks_per_seq)
        return kiln_err_set(KILN_ERR_RANGE, "kv cache: sequence %d would hold %" PRId64
                            " tokens, more than its %d blocks of %d (context full)", seq, len,
                            kv->max_blocks_per_seq, kv->block_size);
    if (more > kv->n_free)
        return kiln_err_set(KILN_ERR_RANGE, "kv cache: pool exhausted: sequence %d needs %d more "
                            "blocks, %d of %d are free", seq, more, kv->n_free, kv->n_blocks);
    int32_t *row = kv->tables + (size_t)seq * (size_t)kv->max_blocks_per_seq;
    for (int32_t i = 0; i < more; i++) {
        int32_t b = kv->free[--kv->n_free];
        KILN_ASSERT(kv->owner[b] == -1);
        kv->owner[b] = seq;
        row[kv->seq_blocks[seq]++] = b;
    }
    kv->seq_len[seq] = (int32_t)len;
    return KILN_OK;
}

void kv_seq_release(kv_cache *kv, int32_t seq)
{
    KILN_ASSERT(seq >= 0 && seq < kv->max_seqs);
    int32_t *row = kv->tables + (size_t)seq * (size_t)kv->max_blocks_per_seq;
    /* Push in reverse so the sequence's first block is reused first. */
    for (int32_t i = kv->seq_blocks[seq] - 1; i >= 0; i--) {
        int32_t b = row[i];
        KILN_ASSERT(kv->owner[b] == seq && kv->n_free < kv->n_blocks);
        kv->owner[b] = -1;
        kv->free[kv->n_free++] = b;
        row[i] = -1;
    }
    kv->seq_blocks[seq] = 0;
    kv->seq_len[seq] = 0;
}

int32_t kv_seq_len(const kv_cache *kv, int32_t seq)
{
    KILN_ASSERT(seq >= 0 && seq < kv->max_seqs);
    return kv->seq_len[seq];
}

int32_t kv_seq_n_blocks(const kv_cache *kv, int32_t seq)
{
    KILN_ASSERT(seq >= 0 && seq < kv->max_seqs);
    return kv->seq_blocks[seq];
}

const int32_t *kv_seq_table(const kv_cache *kv, int32_t seq)
{
    KILN_ASSERT(seq >= 0 && seq < kv->max_seqs);
    return kv->tables + (size_t)seq * (size_t)kv->max_blocks_per_seq;
}

const int32_t *kv_tables(const kv_cache *kv) { return kv->tables; }

int32_t kv_slot(const kv_cache *kv, int32_t seq, int32_t pos)
{
    KILN_ASSERT(seq >= 0 && seq < kv->max_seqs && pos >= 0 && pos < kv->seq_len[seq]);
    const int32_t *row = kv_seq_table(kv, seq);
    return row[pos / kv->block_size] * kv->block_size + pos % kv->block_size;
}

bool kv_check(const kv_cache *kv)
{
    int64_t held = 0;
    /* 1, 2: each free-list entry is a distinct free block. */
    for (int32_t i = 0; i < kv->n_free; i++) {
        int32_t b = kv->free[i];
        if (b < 0 || b >= kv->n_blocks || kv->owner[b] != -1)
            return false;
        for (int32_t j = i + 1; j < kv->n_free; j++)
            if (kv->free[j] == b)
                return false;
    }
    for (int32_t s = 0; s < kv->max_seqs; s++) {
        const int32_t *row = kv_seq_table(kv, s);
        /* 3: block count matches the length; unused entries are -1. */
        if (kv->seq_blocks[s] != kv_blocks_for(kv, kv->seq_len[s]))
            return false;
        for (int32_t i = 0; i < kv->max_blocks_per_seq; i++) {
            int32_t b = row[i];
            if (i >= kv->seq_blocks[s]) {
                if (b != -1)
                    return false;
            } else if (b < 0 || b >= kv->n_blocks || kv->owner[b] != s) {
                return false;
            }
        }
        held += kv->seq_blocks[s];
    }
    /* 4 */
    if (held + kv->n_free != kv->n_blocks)
        return false;
    /* 1: an owned block appears exactly once in its owner's row. */
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        int32_t s = kv->owner[b], seen = 0;
        if (s == -1)
            continue;
        if (s < 0 || s >= kv->max_seqs)
            return false;
        const int32_t *row = kv_seq_table(kv, s);
        for (int32_t i = 0; i < kv->seq_blocks[s]; i++)
            seen += row[i] == b;
        if (seen != 1)
            return false;
    }
    return true;
}

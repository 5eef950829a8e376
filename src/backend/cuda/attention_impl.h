/*
 * attention_impl.h - what attention.cu (the entry: checks, cache write,
 * dispatch) hands to the prefill and decode launchers in
 * attention_prefill.cu and attention_decode.cu.  Private to those files and
 * their tests and benchmarks; the backend uses attention.h only.
 *
 * Dispatch rule, shared by the launchers and their kernels:
 *   - a sequence with exactly one new token, with a cache, is a decode
 *     sequence (attn_decode_*);
 *   - every other sequence with new tokens goes to the prefill kernel, one
 *     CTA per (tile of attn_prefill_bm rows, query head);
 *   - without a cache every sequence is a prefill sequence.
 * Both kernels apply the same visibility rule per (query, key):
 *   key index j of sequence s is visible to the query at q_pos when
 *   j0 <= j < j1 with, in cache mode, j1 = causal ? min(seq_len, q_pos + 1)
 *   : seq_len and j0 = window > 0 ? max(0, q_pos - window + 1) : 0 (j is the
 *   key's position); without a cache, j runs over the sequence's batch rows
 *   and the key's position is positions[seq_start[s] + j].
 */
#ifndef KILN_BACKEND_CUDA_ATTENTION_IMPL_H
#define KILN_BACKEND_CUDA_ATTENTION_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "format/dtype.h"
#include "kiln.h"

/* Most query heads one decode CTA serves (heads sharing one KV head). */
#define ATTN_DECODE_GMAX 8
/* Most splits of one sequence's keys in the decode kernel. */
#define ATTN_DECODE_MAX_SPLIT 64
/* Fewest keys a decode split is given before splitting further stops, by
 * default (attn_decode_set_min_keys).  Measured on an H200 at the 1B heads
 * (32 q / 8 kv x 64, one sequence; bench/kernels/attention_bench.cu,
 * bench/results/attention-kernels-2026-12-02T15-19-28Z.jsonl): 128 is the
 * fastest of 32..1024 at 148, 512 and 2048 keys (10.6, 10.7, 12.6 us
 * against 10.7, 11.4, 14.4 at 32) and ties 32 at 8192. */
#define ATTN_DECODE_MIN_KEYS 128

/* Everything a kernel needs, passed by value.  Pointers are device memory. */
typedef struct attn_args {
    /* the batch */
    const int32_t *seq_start;     /* (n_seqs + 1)                               */
    const int32_t *seq_len;       /* (n_seqs)                                   */
    const int32_t *positions;     /* (n_tokens)                                 */
    const int32_t *block_tables;  /* (n_seqs, max_blocks)                       */
    int32_t n_tokens, n_seqs, max_blocks;
    /* heads */
    int32_t n_heads, n_kv_heads, head_dim;
    int32_t group;                /* n_heads / n_kv_heads                        */
    /* scores: s = dot * scale, or softcap * tanh(dot * scale / softcap);
     * kernels work in base 2, on s * log2(e) */
    float scale, softcap;
    bool causal, use_cache;
    int32_t window;
    /* tensors */
    const void *q;                /* (n_tokens, n_heads, head_dim), rows q_stride
                                     elements apart                              */
    const void *k, *v;            /* (n_tokens, n_kv_heads, head_dim), rows
                                     kv_stride elements apart                    */
    int64_t q_stride, kv_stride;  /* multiples of 8 (16-byte rows)               */
    const void *k_cache, *v_cache; /* (n_blocks, block_size, n_kv_heads, head_dim) */
    int32_t n_blocks, block_size;
    int32_t block_shift;          /* log2(block_size) when a power of two, else -1 */
    void *out;                    /* (n_tokens, n_heads, head_dim)               */
    /* rotary embedding inside the decode kernel (cuda_attention_rope): q
     * and the new k come unrotated, every sequence is a decode sequence,
     * and the kernel stores the new k (rotated) and v at slot_mapping[t]
     * itself.  rope_inv NULL: q and k are rotated and cached already. */
    const float *rope_inv;        /* (rot_dims / 2) inverse frequencies          */
    float rope_mscale;            /* cos/sin factor                              */
    int32_t rot_dims;             /* leading dims of a head that rotate (even)   */
    bool rope_neox;               /* pairs (i, i + rot/2); else (2i, 2i + 1)     */
    const int32_t *slot_mapping;  /* (n_tokens), with rope_inv                   */
} attn_args;

/* Flash-decoding scratch for one launch: n_split partial results per
 * (sequence, query head).  NULL pointers when n_split == 1. */
typedef struct attn_split_ws {
    float *acc;                   /* (n_seqs, n_heads, n_split, head_dim)        */
    float *ml;                    /* (n_seqs, n_heads, n_split, 2): m (base 2), l */
} attn_split_ws;

/* Query rows a prefill CTA takes at this head_dim with the kernel variant
 * in force (64, or 128 for the variants of 32 rows a warp). */
int32_t attn_prefill_bm(int32_t head_dim);

/* Prefill kernel over `n_tiles` (tile, sequence) pairs, the exact count of
 * ceil(rows / attn_prefill_bm(head_dim)) over prefill sequences.  Errors:
 * KILN_ERR_UNSUPPORTED (head_dim or dtype), KILN_ERR_DEVICE. */
kiln_status attn_prefill_launch(const attn_args *a, kiln_dtype dtype, int32_t n_tiles,
                                cudaStream_t stream);

/* Decode kernel over every sequence (non-decode ones exit at once), each
 * sequence's keys cut into n_split pieces; with n_split > 1 the partials go
 * to `ws` and a second kernel combines them into out.  Errors as above. */
kiln_status attn_decode_launch(const attn_args *a, kiln_dtype dtype, int32_t n_split,
                               const attn_split_ws *ws, cudaStream_t stream);

/* The split count for a launch: enough CTAs to fill the GPU twice over
 * (sm_count SMs) when the batch alone does not, never fewer than the
 * minimum keys per split in force (attn_decode_set_min_keys) of the
 * longest decode context `max_keys`.  With it, n_seqs * n_heads * n_split
 * never exceeds attn_decode_ws_rows(sm_count). */
int32_t attn_decode_splits(int32_t n_seqs, int32_t n_kv_heads, int32_t group, int32_t max_keys,
                           int32_t sm_count);

/* Bound on partial rows (sequence, head, split) any split choice needs. */
int64_t attn_decode_ws_rows(int32_t sm_count);

/* Free the per-device split workspaces cuda_attention allocates at its first
 * cached call (process-lifetime otherwise).  No attention may be in flight;
 * a later cuda_attention allocates again. */
void attn_workspace_release(void);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_ATTENTION_IMPL_H */

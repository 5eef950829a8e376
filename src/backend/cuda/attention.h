/*
 * attention.h - paged attention on the GPU: the contract between the CUDA
 * backend (cuda_backend.c, which implements bk_ops.attention by calling
 * cuda_attention) and the kernels (attention.cu).
 *
 * One call does, for one layer of one step, what bk_ops.attention says:
 *   1. with a->use_cache, store the batch's k and v rows into the layer's
 *      pools at b->slot_mapping[t] (before any token attends, so a prefill
 *      chunk sees itself);
 *   2. out(t, h, :) = softmax(q(t, h, :) . K^T * a->scale (soft-capped when
 *      a->softcap > 0) + mask) V over the keys token t sees: with a cache,
 *      positions 0 .. positions[t] of its sequence read through the block
 *      table (all seq_len[s] positions when !a->causal); without a cache,
 *      the batch rows of its own sequence (causal or not).  a->window > 0
 *      masks keys with pos <= q_pos - window.  GQA: query head h reads KV
 *      head h / (n_heads / n_kv_heads).  A token with no visible key gets
 *      zeros.  Softmax and accumulation in f32.
 *
 * Layouts (elements of `dtype`, row-major):
 *   q, out    (n_tokens, n_heads, head_dim)
 *   k, v      (n_tokens, n_kv_heads, head_dim)
 *   k_cache, v_cache  (n_blocks, block_size, n_kv_heads, head_dim)
 * Slot s of a pool is block s / block_size, offset s % block_size.
 *
 * Ordering.  Kernels are launched with programmatic dependent launch: the
 * decode kernel reads the batch arrays and starts copying a sequence's keys
 * before its new token's position while the kernel queued before it is
 * still running, and waits for that kernel only before it reads q, k, v and
 * the new token's slot.  So the cache rows of earlier positions must have
 * been written by work complete before the call's step began (an earlier
 * step, as the engine runs them), and the batch arrays uploaded before it.
 *
 * The bk_batch's arrays are device memory (one buffer filled by
 * bk_batch_upload); its scalars (n_tokens, n_seqs, max_blocks, n_out,
 * max_seq_len) are host values.  `hb` is the host copy of the same arrays,
 * valid for the duration of the call: use it for host-side checks (block
 * ids < n_blocks, slots < n_blocks * block_size) and launch planning, never
 * pass its pointers to a kernel.
 */
#ifndef KILN_BACKEND_CUDA_ATTENTION_H
#define KILN_BACKEND_CUDA_ATTENTION_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The prefill kernel variant for the process (attention_prefill.cu lists
 * them): `name`, or the default for NULL or "".  The CUDA backend passes
 * KILN_CUDA_PREFILL when it is created, and refuses to start on an error;
 * the kernel lab switches between calls.  Errors: KILN_ERR_INVALID_ARG (not
 * a variant's name; the variant in force is kept). */
kiln_status attn_prefill_set_variant(const char *name);

/* The name of prefill variant i (0, 1, ...; KILN_CUDA_PREFILL's values),
 * NULL past the last; borrowed, static. */
const char *attn_prefill_variant_name(int i);

/* Whether prefill calls of encoder shape (no cache, no causal mask, window
 * or softcap) at head_dims 16, 32 and 64 take the encoder form of the
 * variant's kernel, which reads no positions and masks only the keys past
 * a sequence's end (default on).  Same results either way; the CUDA
 * backend passes KILN_CUDA_PREFILL_ENCODER (0 turns it off) when it is
 * created, the kernel lab and the tests compare the two. */
void attn_prefill_set_encoder_form(bool on);

/* The fewest keys a split of the decode kernel gets, for the process:
 * `keys` in 1..65536, or the default (ATTN_DECODE_MIN_KEYS, 128) for 0.
 * Fewer splits of a short context mean fewer, longer CTAs and no combine
 * kernel at one split.  The CUDA backend passes KILN_CUDA_DECODE_MIN_KEYS
 * when it is created; the kernel lab sweeps it.  Errors:
 * KILN_ERR_INVALID_ARG (out of range; the value in force is kept). */
kiln_status attn_decode_set_min_keys(int32_t keys);
#define ATTN_DECODE_MAX_MIN_KEYS 65536

/* Queue attention for one layer on `stream` (see the file comment).
 * dtype is the activation and KV type: KILN_DT_BF16 or KILN_DT_F16.
 * k_cache and v_cache are the layer's pools (NULL, with n_blocks and
 * block_size 0, when !a->use_cache).  q, k, v and out are borrowed device
 * memory; out must not overlap q, k or v.  Work is finished when the stream
 * is.  Errors: KILN_ERR_INVALID_ARG (shapes, heads not a multiple of KV
 * heads, a block id or slot out of range, a missing cache with use_cache;
 * the message names "attention"), KILN_ERR_UNSUPPORTED (head_dim or dtype
 * without a kernel), KILN_ERR_DEVICE (a CUDA call or launch failed). */
kiln_status cuda_attention(const bk_batch *b, const bk_batch_host *hb, const bk_attn *a,
                           const void *q, const void *k, const void *v, void *k_cache,
                           void *v_cache, int32_t n_blocks, int32_t block_size,
                           kiln_dtype dtype, void *out, cudaStream_t stream);

/* cuda_attention for a decode batch whose q and k are not rotated yet:
 * every sequence has one new token and a->use_cache.  The decode kernel
 * rotates q and the new k rows as cuops_rope with `rope` would (its table
 * form: rope->dynamic false, inv_freq set, rope->head_dim a->head_dim),
 * stores the rotated k and v at the batch's slots and attends: the result
 * and the cache are those of cuops_rope followed by cuda_attention, with no
 * launch of either the rope or the cache-write kernel.  q and k are left
 * as they are.  Errors as cuda_attention, and KILN_ERR_INVALID_ARG for a
 * batch that is not all decode sequences or rotary parameters outside the
 * table form. */
kiln_status cuda_attention_rope(const bk_batch *b, const bk_batch_host *hb, const bk_attn *a,
                                const cuops_rope_args *rope, const void *q, const void *k,
                                const void *v, void *k_cache, void *v_cache, int32_t n_blocks,
                                int32_t block_size, kiln_dtype dtype, void *out,
                                cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_ATTENTION_H */

/*
 * model.h - a loaded model: weights on a backend and the forward pass of its
 * architecture.
 *
 * model_load opens a model source (GGUF file or Hugging Face directory,
 * format/model_source.h), finds the architecture in the registry (one C file
 * per family: llama.c covers llama/mistral/qwen2/qwen3, gemma3.c, bert.c),
 * maps the file's tensor names (HF "model.layers.3.self_attn.q_proj.weight"
 * or GGUF "blk.3.attn_q.weight") to the architecture's weight slots, and
 * hands each weight to the backend in its stored type.  The forward pass is
 * written once against backend.h and runs a bk_batch: any mix of prefill
 * and decode tokens of several sequences.
 *
 * Ownership: the model owns its weights and activation workspace (one
 * backend allocation sized from max_batch_tokens at load time; the model
 * code allocates nothing per step); the KV cache belongs to the caller
 * (engine/kv_cache.h) and is passed per step.
 * The source stays open for the model's life (the CPU backend reads weights
 * straight from the mapping).
 */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "backend/backend.h"
#include "format/model_config.h"
#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct kiln_model kiln_model;

typedef struct comm comm;

typedef struct model_load_opts {
    int32_t max_batch_tokens;   /* largest bk_batch n_tokens a step may carry (workspace) */
    /* Tensor parallelism (decoders): this model is rank tp_rank of tp_world
     * shards (0: 1, the whole model, and the fields below are unused).  A
     * shard holds its query heads and key/value heads (one replicated kv
     * head per rank when there are more ranks than kv heads), its FFN
     * columns and its vocabulary rows; a forward runs on every rank at
     * once, collectives through tp_comm (borrowed, required when
     * tp_world > 1, of rank tp_rank and world tp_world), and every rank
     * gets the whole logits. */
    int32_t tp_rank;
    int32_t tp_world;
    comm *tp_comm;
} model_load_opts;

/* Load `path` onto `be`.  Errors: those of msrc_open; KILN_ERR_UNSUPPORTED
 * for an architecture or tensor type kiln cannot run (named); KILN_ERR_FORMAT
 * for a missing or misshapen weight (named with its expected shape);
 * KILN_ERR_INVALID_ARG for tensor-parallel settings the model does not
 * allow (the message gives the numbers: a world size < 1, a rank outside
 * the world, heads, kv heads, intermediate size or vocabulary not dividing
 * among the ranks, a quantized weight whose split falls inside a block,
 * no communicator or one of another rank or world);
 * KILN_ERR_UNSUPPORTED for tensor parallelism of an encoder or on a
 * backend without embed_part; KILN_ERR_OOM.  Only the
 * rank's shard of each weight is read.  *out owned: model_free(). */
kiln_status model_load(const char *path, backend *be, const model_load_opts *opts,
                       kiln_model **out);
/* A model of config `cfg` (copied) whose weights are generated on `be`
 * from `seed` (--dummy-weights: benchmarks at a real model's shape with no
 * file; the same seed gives the same weights on every backend, up to the
 * backend's weight type).  With tensor-parallel options each rank's
 * weights are random values at its shard's shape (benchmarks: they are not
 * slices of the whole model's values).  Errors as model_load, without the
 * file ones.  *out owned: model_free(). */
kiln_status model_load_dummy(const model_config *cfg, uint64_t seed, backend *be,
                             const model_load_opts *opts, kiln_model **out);

/* Release the weights, the workspace and the source; NULL is a no-op.  The
 * backend is not destroyed (it was borrowed). */
void model_free(kiln_model *m);

/* Borrowed views, valid until model_free(). */
const model_config *model_config_of(const kiln_model *m);
backend *model_backend(const kiln_model *m);
/* True for encoders (bert): model_embed, no KV cache, no logits. */
bool model_is_encoder(const kiln_model *m);

/* Bytes of K and V one token takes in the cache, all layers, in the
 * backend's activation type (this shard's kv heads). */
size_t model_kv_bytes_per_token(const kiln_model *m);

/* The KV cache shape this model needs (layers, this shard's kv heads,
 * head_dim, dtype of the backend) with n_blocks blocks of block_size
 * tokens. */
void model_kv_shape(const kiln_model *m, int32_t n_blocks, int32_t block_size, bk_kv_cache *out);

/* What the loaded weights weigh, as held by the backend (bytes in the
 * backend's weight type). */
typedef struct model_stats {
    uint64_t weight_bytes;        /* every weight                                 */
    uint64_t embd_bytes;          /* token (+ position, type) embedding tables    */
    uint64_t step_bytes;          /* read by a decode step: all weights but the
                                     embedding tables, of which one row a token
                                     is read (the tied lm_head counted once)      */
    uint64_t layer_matmul_params; /* elements of the blocks' matrices            */
    uint64_t head_params;         /* elements of lm_head                          */
} model_stats;

void model_stats_of(const kiln_model *m, model_stats *out);

/* Decoder step: run batch b (its K/V go into kv), then write the logits of
 * the rows b->out_rows to logits (n_out, vocab_size) as host f32.
 * Errors: KILN_ERR_INVALID_ARG for a batch over max_batch_tokens, backend
 * failures. */
kiln_status model_forward(kiln_model *m, const bk_batch *b, bk_kv_cache *kv, float *logits);

/* Decoder step as model_forward, but each output row's logits are reduced
 * on the backend to a token id, written to ids (backend memory, n_out
 * int32): the greedy token (bk argmax: the host sampler's greedy choice),
 * or, when the batch has sample rows (b->sample), the token bk sample
 * draws, with the penalty counts `counts` (backend memory, or NULL).
 * Nothing is copied out and nothing waits for the device, so the call can
 * be captured (bk graph_begin/graph_end).  Errors as model_forward, and
 * KILN_ERR_UNSUPPORTED for a backend without argmax (sample). */
kiln_status model_forward_ids(kiln_model *m, const bk_batch *b, bk_kv_cache *kv,
                              uint16_t *counts, int32_t *ids);

/* Encoder: pooled (and, per the model's config, L2-normalised) embeddings
 * of every sequence of b into emb (n_seqs, hidden_size), host f32. */
kiln_status model_embed(kiln_model *m, const bk_batch *b, float *emb);

/* model_embed with its copy to the host left in flight where the backend
 * can (bk to_host_f32_start): the vectors of b land in host memory of
 * `slot` (0 or 1) that the backend owns, *emb pointing at them, valid once
 * model_embed_wait(m, slot) returns KILN_OK and until the slot's next
 * start; the next batch can be queued meanwhile.  Where the backend cannot,
 * they are copied into `host` (n_seqs, hidden_size; the caller's) before
 * this returns and *emb = host.  Errors as model_embed. */
kiln_status model_embed_start(kiln_model *m, const bk_batch *b, int slot, float *host,
                              const float **emb);
kiln_status model_embed_wait(kiln_model *m, int slot);

/* Encoder: the last hidden state of every token of b (before pooling) into
 * hidden (n_tokens, hidden_size), host f32.  Errors as model_embed. */
kiln_status model_encode_tokens(kiln_model *m, const bk_batch *b, float *hidden);

#endif /* KILN_MODEL_H */

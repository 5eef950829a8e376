/*
 * backend.h - the op set every model forward is written against.
 *
 * A model's forward pass (src/model/) is a fixed sequence of these ops;
 * each backend (cpu/, cuda/) implements all of them, fusing where it pays.
 * Model code never touches activation memory directly: it asks the backend
 * for buffers and passes them to ops, so the same forward runs on the CPU
 * (fp32 activations, weights in their stored type) and on the GPU (bf16/fp16
 * activations, cuBLASLt, CUDA graphs).
 *
 * Conventions
 *   - Activations are row-major (n_tokens, width) in the backend's activation
 *     type (bk_act_dtype: F32 on the CPU).  Sizes are in elements.
 *   - Weights are bk_tensor: a matrix of ne1 rows of ne0 elements in a
 *     stored type (CPU: as in the file, quantized or not; CUDA: bf16/fp16),
 *     used as y = x W^T (PyTorch's nn.Linear layout, GGUF's ne0 = in).
 *   - One step runs a bk_batch: the new tokens of several sequences packed
 *     back to back (prefill and decode mixed), each sequence with its own
 *     positions and a block table into the paged KV cache.
 *   - Ops are asynchronous on backends that can be (CUDA: the backend's
 *     stream); results are read back with bk_download / bk_sync.
 *   - Every op returns kiln_status; a failure names the op.
 */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include "format/dtype.h"
#include "format/model_config.h"
#include "kiln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct backend backend;
typedef struct bk_graph bk_graph;   /* a captured step (CUDA graph) */

/* A weight as a backend holds it.  Row r starts at data + r * row_bytes. */
typedef struct bk_tensor {
    kiln_dtype dtype;
    int64_t ne0;          /* elements per row (in_features; width of a vector) */
    int64_t ne1;          /* rows (out_features); 1 for a vector               */
    size_t row_bytes;
    const void *data;     /* backend memory; NULL = absent (optional bias)     */
    void *storage;        /* memory the backend made for it (weight_random on
                             the CPU); NULL for a view of the caller's bytes  */
} bk_tensor;

/* ---- sampling on the backend ----------------------------------------------
 * One output row's settings for bk sample (the host sampler's steps,
 * sampler.h, in the same order and with the same ties).  All fields are
 * 4 bytes so a row travels in the batch upload as 10 int32 words. */
typedef struct bk_sample_row {
    float temperature;          /* <= 0 (or top_k == 1): greedy             */
    float top_p;                /* >= 1: off                                */
    float min_p;                /* <= 0: off                                */
    float repetition_penalty;   /* 1: off                                   */
    float presence_penalty;     /* 0: off                                   */
    float frequency_penalty;    /* 0: off                                   */
    int32_t top_k;              /* <= 0: off                                */
    int32_t slot;               /* row of the penalty counts; -1: none      */
    uint32_t u_hi, u_lo;        /* the draw: u = (u_hi * 2^32 + u_lo) / 2^53,
                                   53 random bits (sampler_rand)             */
} bk_sample_row;

#define BK_SAMPLE_ROW_WORDS ((int32_t)(sizeof(bk_sample_row) / sizeof(int32_t)))

/* Penalty counts of one sequence (a row of vocab_size uint16): bit 15 set
 * for a token of the prompt, bits 0..14 how often it was generated
 * (saturating at 32767).  bk sample adds each chosen token to its row. */
#define BK_SAMPLE_PROMPT 0x8000u
#define BK_SAMPLE_COUNT_MAX 0x7fffu

/* ---- a step's batch ------------------------------------------------------
 * Tokens are grouped by sequence: sequence s owns batch rows
 * [seq_start[s], seq_start[s+1]).  Positions are absolute (0-based) within
 * the sequence; a sequence's new tokens have consecutive positions ending at
 * seq_len[s] - 1.  Pointers are backend memory (host memory on the CPU),
 * filled by the engine through bk_batch_upload. */
typedef struct bk_batch {
    int32_t n_tokens;
    int32_t n_seqs;
    const int32_t *tokens;        /* (n_tokens) token ids                        */
    const int32_t *token_types;   /* (n_tokens) BERT segment ids; NULL = all 0    */
    const int32_t *positions;     /* (n_tokens)                                   */
    const int32_t *seq_start;     /* (n_seqs + 1) first batch row of each seq     */
    const int32_t *seq_len;       /* (n_seqs) tokens in context after this step   */
    const int32_t *block_tables;  /* (n_seqs, max_blocks) KV block ids            */
    int32_t max_blocks;           /* row stride of block_tables                   */
    const int32_t *slot_mapping;  /* (n_tokens) KV slot = block * block_size + off */
    int32_t n_out;                /* rows that need outputs (logits / pooled)     */
    const int32_t *out_rows;      /* (n_out) batch rows, e.g. last token of a seq */
    const bk_sample_row *sample;  /* (n_out) sampling settings; NULL: greedy      */
    int32_t max_seq_len;          /* max over seq_len (kernel sizing)             */
} bk_batch;

/* Host-side description the engine builds; bk_batch_upload copies it into
 * backend memory and fills a bk_batch that points there (valid until the
 * next upload). */
typedef struct bk_batch_host {
    int32_t n_tokens, n_seqs, max_blocks, n_out;
    const int32_t *tokens, *token_types, *positions, *seq_start, *seq_len;
    const int32_t *block_tables, *slot_mapping, *out_rows;
    const bk_sample_row *sample;  /* (n_out) or NULL */
} bk_batch_host;

/* ---- paged KV cache ------------------------------------------------------ */
typedef struct bk_kv_cache {
    int32_t n_layers;
    int32_t n_blocks;       /* blocks in the pool                                */
    int32_t block_size;     /* tokens per block (8, 16, 32)                      */
    int32_t n_kv_heads;
    int32_t head_dim;
    kiln_dtype dtype;       /* F32 on the CPU; BF16/F16 on CUDA                  */
    void **k, **v;          /* per layer: (n_blocks, block_size, n_kv_heads, head_dim) */
} bk_kv_cache;

/* ---- rotary embedding ---------------------------------------------------- */
typedef enum bk_rope_style {
    BK_ROPE_NEOX = 0,   /* rotate the two halves of a head (HF checkpoints) */
    BK_ROPE_NORM,       /* rotate adjacent pairs (GGUF llama, permuted q/k)  */
} bk_rope_style;

typedef struct bk_rope {
    bk_rope_style style;
    int32_t head_dim;
    int32_t rot_dims;               /* leading dims of a head that rotate        */
    float theta;
    mcfg_rope_scaling scaling;
    float factor, low_freq_factor, high_freq_factor;
    int64_t original_max_pos;
    float yarn_beta_fast, yarn_beta_slow, attention_factor;
} bk_rope;

/* Fill a bk_rope from a model config for global (local = false) or
 * sliding-window (local = true, gemma3's local base) layers. */
void bk_rope_from_config(const model_config *c, bool local, bk_rope_style style, bk_rope *out);

/* ---- attention ----------------------------------------------------------- */
typedef struct bk_attn {
    int32_t n_heads, n_kv_heads, head_dim;
    float scale;            /* softmax scale, usually 1/sqrt(head_dim)               */
    bool causal;
    int32_t window;         /* keys with pos <= q_pos - window are masked; 0 = none  */
    float softcap;          /* tanh soft-capping of scores; 0 = none                 */
    bool use_cache;         /* false: encoders attend within the batch's own tokens  */
    int64_t qkv_stride;     /* elements from one token's row of q, k and v to the
                               next, the same for all three (q, k, v inside one
                               fused projection output); 0: each is packed,
                               n_heads * head_dim for q and n_kv_heads *
                               head_dim for k and v.  out is always packed.   */
} bk_attn;

typedef enum bk_act {
    BK_ACT_SILU = 0,
    BK_ACT_GELU,            /* erf GELU */
    BK_ACT_GELU_TANH,
    BK_ACT_RELU,
} bk_act;

typedef enum bk_pool {
    BK_POOL_MEAN = 0,
    BK_POOL_CLS,
    BK_POOL_LAST,
    BK_POOL_MAX,
} bk_pool;

/* An RMSNorm applied to a matmul's input (bk matmul_norm, matmul_glu):
 * x / rms(x) * (w + add_one) over rows of the matmul's k elements. */
typedef struct bk_norm {
    const bk_tensor *w;     /* (k) in the activation type */
    float eps;
    bool add_one;
} bk_norm;

/* ---- the op table -------------------------------------------------------- */
typedef struct bk_ops {
    const char *name;                    /* "cpu", "cuda"                          */
    kiln_dtype act_dtype;                /* activation and KV element type         */
    void (*destroy)(backend *be);

    /* memory */
    kiln_status (*alloc)(backend *be, size_t bytes, void **out);
    void (*free)(backend *be, void *p);
    kiln_status (*upload)(backend *be, void *dst, const void *src, size_t bytes);
    kiln_status (*download)(backend *be, void *dst, const void *src, size_t bytes);
    kiln_status (*sync)(backend *be);
    /* A weight from file bytes (host memory of `dtype`, ne1 rows of ne0):
     * the CPU keeps a pointer to the mapped bytes; CUDA copies and converts
     * to its weight type.  `src` must outlive the tensor on the CPU. */
    kiln_status (*weight)(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                          const void *src, size_t src_bytes, bk_tensor *out);
    void (*weight_free)(backend *be, bk_tensor *w);
    /* A weight of ne1 rows of ne0 elements filled on the backend with
     * hr_uniform(seed, i, lo, hi) for element i (base/hashrand.h), in the
     * backend's weight type (CPU: F32; CUDA: the activation type): the
     * --dummy-weights model of a config, no file needed. */
    kiln_status (*weight_random)(backend *be, int64_t ne0, int64_t ne1, uint64_t seed, float lo,
                                 float hi, bk_tensor *out);
    /* Fused weights (several file tensors as the rows of one, so one
     * matmul replaces several); NULL on backends that keep weights as views
     * of the file (the CPU).  weight_empty makes an unfilled weight of ne1
     * rows of ne0 in the backend's weight type; weight_rows converts file
     * bytes (as `weight` takes them, ne1 rows of ne0) into its rows
     * [row0, row0 + ne1). */
    kiln_status (*weight_empty)(backend *be, int64_t ne0, int64_t ne1, bk_tensor *out);
    kiln_status (*weight_rows)(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                               const void *src, size_t src_bytes, bk_tensor *dst, int64_t row0);
    kiln_status (*batch_upload)(backend *be, const bk_batch_host *h, bk_batch *out);
    kiln_status (*kv_alloc)(backend *be, const bk_kv_cache *shape, bk_kv_cache *out);
    void (*kv_free)(backend *be, bk_kv_cache *kv);

    /* y(n, d) = table[ids] * scale (+ pos_table[positions]) (+ type_table[types]) */
    kiln_status (*embed)(backend *be, const bk_tensor *table, const bk_batch *b, float scale,
                         const bk_tensor *pos_table, const bk_tensor *type_table, void *y);
    /* Vocabulary-parallel embedding: table holds rows [row0, row0 +
     * table->ne1) of the whole embedding; y(n, d) = table[id - row0] * scale
     * for the ids in that range and 0 for the others (other ranks' rows), so
     * a sum over the ranks is the whole lookup.  NULL on backends without
     * (no tensor parallelism there). */
    kiln_status (*embed_part)(backend *be, const bk_tensor *table, int64_t row0,
                              const bk_batch *b, float scale, void *y);
    /* y(n, w->ne1) = x(n, w->ne0) W^T (+ bias) */
    kiln_status (*matmul)(backend *be, const void *x, int64_t n, const bk_tensor *w,
                          const bk_tensor *bias, void *y);
    /* y(n, w->ne1) = act(x W^T + bias): a feed-forward's up projection and
     * its activation in one op (CUDA: in cuBLASLt's epilogue where it has
     * one for act - RELU and the tanh GELU, and the erf GELU in its tanh
     * form when the backend is told to, bk_cuda_opts.gelu_tanh).  NULL:
     * model_matmul_act runs matmul, then act. */
    kiln_status (*matmul_act)(backend *be, const void *x, int64_t n, const bk_tensor *w,
                              const bk_tensor *bias, bk_act act, void *y);
    /* y(n, ff) = act(x' Wg^T + bg) * (x' Wu^T + bu) from wg and wu (ff, k),
     * biases optional, x' = rmsnorm(x) by `norm` (NULL: x' = x): the gated
     * feed-forward's input side in one op, with the bits of matmul into
     * gate, matmul into up, then glu without a norm (with one, the normed
     * x may be used unrounded: within the type's precision of rmsnorm and
     * the three).  xn (n, k), gate and up (n, ff) are scratch the op may
     * write.  NULL on backends without fused forms (model_glu_in runs the
     * separate ops there). */
    kiln_status (*matmul_glu)(backend *be, const void *x, int64_t n, const bk_norm *norm,
                              const bk_tensor *wg, const bk_tensor *bg, const bk_tensor *wu,
                              const bk_tensor *bu, bk_act act, void *xn, void *gate, void *up,
                              void *y);
    /* y(n, w->ne1) = rmsnorm(x) W^T (+ bias), the norm `norm`: a pre-norm
     * block's input projection in one op where it can (xn (n, w->ne0) is
     * scratch the op may write for the normed x).  NULL with matmul_glu. */
    kiln_status (*matmul_norm)(backend *be, const void *x, int64_t n, const bk_norm *norm,
                               const bk_tensor *w, const bk_tensor *bias, void *xn, void *y);
    /* res(n, w->ne1) += x W^T (+ bias): an output projection into the
     * residual stream in one launch at any row count.  Up to fused_rows
     * rows with the bits of matmul then add; above, the sum is rounded
     * once (CUDA: cuBLASLt adds into res in place), within the type's
     * precision of matmul then add.  tmp (n, w->ne1) is scratch the op
     * may write (or NULL).  A forward with it needs no add before its
     * norm: rmsnorm/layernorm of res alone.  NULL with matmul_glu. */
    kiln_status (*matmul_res)(backend *be, const void *x, int64_t n, const bk_tensor *w,
                              const bk_tensor *bias, void *tmp, void *res);
    /* The most rows at which matmul_norm, matmul_res and matmul_glu are
     * single launches (decode steps), so that a forward should use them in
     * place of add_rmsnorm and separate matmuls; 0: never.  NULL with
     * matmul_glu. */
    int32_t (*fused_rows)(backend *be);
    /* y = x / rms(x) * (w + add_one) over rows of d; x and y may alias */
    kiln_status (*rmsnorm)(backend *be, const void *x, int64_t n, int64_t d,
                           const bk_tensor *w, float eps, bool add_one, void *y);
    /* res += x, then y = rmsnorm(res): the residual stream's fused step */
    kiln_status (*add_rmsnorm)(backend *be, void *res, const void *x, int64_t n, int64_t d,
                               const bk_tensor *w, float eps, bool add_one, void *y);
    /* y = layernorm(x (+ res)) * w + b; res may be NULL; x and y may alias */
    kiln_status (*layernorm)(backend *be, const void *x, const void *res, int64_t n, int64_t d,
                             const bk_tensor *w, const bk_tensor *b, float eps, void *y);
    /* y = a + b over n elements (y may alias a or b) */
    kiln_status (*add)(backend *be, const void *a, const void *b, int64_t n, void *y);
    /* q (n, n_heads, head_dim) and k (n, n_kv_heads, head_dim) rotated in place */
    kiln_status (*rope)(backend *be, void *q, void *k, const bk_batch *b, int32_t n_heads,
                        int32_t n_kv_heads, const bk_rope *r);
    /* Store k/v of the batch into the cache layer (slot_mapping), then
     * out(n, n_heads, head_dim) = softmax(q K^T * scale + mask) V per token
     * over its sequence's context.  q, k, v rows are a->qkv_stride apart
     * (0: packed). */
    kiln_status (*attention)(backend *be, const bk_batch *b, const bk_attn *a, const void *q,
                             const void *k, const void *v, bk_kv_cache *kv, int32_t layer,
                             void *out);
    /* rope (r) then attention as one op, with q and k as the projection
     * made them: out and the cache are those of rope followed by
     * attention; q and k may be left rotated or not.  A backend folds the
     * rotation and the cache write into its decode attention where it can,
     * and runs the two ops otherwise.  NULL: the model calls rope, then
     * attention. */
    kiln_status (*rope_attention)(backend *be, const bk_batch *b, const bk_attn *a,
                                  const bk_rope *r, void *q, void *k, const void *v,
                                  bk_kv_cache *kv, int32_t layer, void *out);
    /* y(n, ff) = act(gate) * up, from gate(n, ff) and up(n, ff) */
    kiln_status (*glu)(backend *be, const void *gate, const void *up, int64_t n, int64_t ff,
                       bk_act act, void *y);
    /* Each row t of x (n, w0 + w1 + w2) into y0 (n, w0), y1 (n, w1) and
     * y2 (n, w2): the q, k, v of a fused projection.  NULL where fused
     * weights are (weight_rows NULL). */
    kiln_status (*split3)(backend *be, const void *x, int64_t n, int64_t w0, int64_t w1,
                          int64_t w2, void *y0, void *y1, void *y2);
    /* x = act(x) over n elements */
    kiln_status (*act)(backend *be, void *x, int64_t n, bk_act act);
    /* y(n_out, d) = x[out_rows] */
    kiln_status (*gather_rows)(backend *be, const void *x, int64_t d, const bk_batch *b,
                               void *y);
    /* y(n_seqs, d) = pool over each sequence's rows, optionally L2-normalised */
    kiln_status (*pool)(backend *be, const void *x, int64_t d, const bk_batch *b, bk_pool mode,
                        bool normalize, void *y);
    /* x = cap * tanh(x / cap) over n elements (final-logit soft-capping) */
    kiln_status (*softcap)(backend *be, void *x, int64_t n, float cap);
    /* f32 host copy of n elements of activation memory */
    kiln_status (*to_host_f32)(backend *be, const void *x, int64_t n, float *dst);
    /* to_host_f32 left in flight: the f32 copy of n elements of x goes to
     * host memory of `slot` (0 or 1: two copies may be in flight), which the
     * backend owns; *out points at it (borrowed: valid until the slot's
     * next start or the backend's end) and holds the values once
     * to_host_wait(slot) has returned KILN_OK.  The work queued after a
     * start runs on while the copy completes.  NULL on backends whose
     * to_host_f32 is synchronous anyway (the CPU). */
    kiln_status (*to_host_f32_start)(backend *be, const void *x, int64_t n, int slot,
                                     const float **out);
    kiln_status (*to_host_wait)(backend *be, int slot);
    /* ids[r] = index of the largest element of row r of x (rows, cols): the
     * lowest index among equals, NaN never chosen (0 for a row of NaN), as
     * the host sampler's greedy choice.  ids is backend memory (rows). */
    kiln_status (*argmax)(backend *be, const void *x, int64_t rows, int64_t cols,
                          int32_t *ids);
    /* ids[r] = the token that row r of x (rows, cols) draws under p[r]
     * (backend memory, e.g. bk_batch.sample): penalties from counts row
     * p[r].slot, temperature, min_p, top_k, top_p, then the draw p[r].u,
     * as sampler_sample() with that u; the chosen token is then added to
     * the counts row.  counts (backend memory, slots x cols) may be NULL
     * when no row has penalties or a slot.  NULL on backends that sample
     * on the host. */
    kiln_status (*sample)(backend *be, const void *x, int64_t rows, int64_t cols,
                          const bk_sample_row *p, uint16_t *counts, int32_t *ids);
    /* Start penalty row `row` (cols uint16 of backend memory): zero it,
     * then mark the n ids (host memory) as prompt tokens; ids outside
     * [0, cols) are ignored.  NULL where sample is. */
    kiln_status (*sample_reset)(backend *be, uint16_t *row, int64_t cols, const int32_t *ids,
                                int32_t n);

    /* Step capture (CUDA graphs); NULL on backends without.  Between
     * graph_begin and graph_end every op is recorded, not run, and nothing
     * may wait for the device; graph_end returns the instantiated graph
     * (owned: graph_free) or an error when an op could not be captured.
     * graph_launch replays it on the backend's stream; KILN_ERR_RANGE when
     * memory it reads has moved since (the batch buffer grew): capture
     * again. */
    kiln_status (*graph_begin)(backend *be);
    kiln_status (*graph_end)(backend *be, bk_graph **out);
    kiln_status (*graph_launch)(backend *be, bk_graph *g);
    void (*graph_free)(backend *be, bk_graph *g);
} bk_ops;

/* Every backend struct starts with this header. */
struct backend {
    const bk_ops *ops;
    int32_t threads;        /* CPU worker threads (0 = all cores)        */
};

/* Bytes of n activation elements on `be`. */
static inline size_t bk_act_bytes(const backend *be, int64_t n)
{
    return (size_t)n * (be->ops->act_dtype == KILN_DT_F32 ? 4 : 2);
}

/* The CPU backend with `threads` workers (<= 0: all cores).  *out owned:
 * out->ops->destroy(out). */
kiln_status bk_cpu_create(int threads, backend **out);

#ifdef __cplusplus
}
#endif
#endif /* KILN_BACKEND_H */

/*
 * model_impl.h - the inside of a kiln_model, shared by the loader (model.c)
 * and the architecture files (llama.c, gemma3.c, bert.c) and their tests.
 *
 * Invariants of a loaded model:
 *   1. Every weight slot an architecture requires holds a tensor whose shape
 *      was checked against the config; optional slots (biases a checkpoint
 *      may or may not carry) have data == NULL when absent.
 *   2. lm_head either is a weight of its own or a copy of tok_embd's
 *      descriptor (tied); only tensors listed in `owned` are freed.
 *   3. The workspace is one backend allocation made at load time and carved
 *      into the activation buffers below, each sized for max_tokens rows;
 *      a forward pass allocates nothing.
 */
#ifndef KILN_MODEL_IMPL_H
#define KILN_MODEL_IMPL_H

#include "format/model_source.h"
#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

/* Rows of logits computed per lm_head matmul (the logits buffer holds this
 * many rows of vocab_size). */
#define MODEL_LOGIT_CHUNK 32

/* One transformer block.  Unused slots stay zero (data == NULL).
 * q = n_heads * head_dim, kv = n_kv_heads * head_dim, ff = intermediate. */
typedef struct model_layer {
    /* attention */
    bk_tensor attn_norm;      /* (hidden) pre-attention RMSNorm                      */
    bk_tensor wqkv;           /* (q + 2 kv, hidden) fused q, k, v rows, when the
                                 backend takes fused weights; wq, wk, wv are then
                                 views of it                                         */
    bk_tensor wq;             /* (q, hidden)                                         */
    bk_tensor wk;             /* (kv, hidden)                                        */
    bk_tensor wv;             /* (kv, hidden)                                        */
    bk_tensor wo;             /* (hidden, q)                                         */
    bk_tensor bq;             /* (q) optional bias                                   */
    bk_tensor bk;             /* (kv) optional bias                                  */
    bk_tensor bv;             /* (kv) optional bias                                  */
    bk_tensor bo;             /* (hidden) optional bias                              */
    bk_tensor bqkv;           /* (q + 2 kv) biases of wqkv, when it has them; bq, bk,
                                 bv are then views of it                             */
    bk_tensor q_norm;         /* (head_dim) per-head RMSNorm of q (qwen3, gemma3)    */
    bk_tensor k_norm;         /* (head_dim) per-head RMSNorm of k                    */
    bk_tensor post_attn_norm; /* (hidden) gemma3: RMSNorm of the attention output    */
    /* feed-forward */
    bk_tensor ffn_norm;       /* (hidden) pre-FFN RMSNorm                            */
    bk_tensor post_ffn_norm;  /* (hidden) gemma3: RMSNorm of the FFN output          */
    bk_tensor w_gate;         /* (ff, hidden)                                        */
    bk_tensor w_up;           /* (ff, hidden)  bert: intermediate.dense              */
    bk_tensor w_down;         /* (hidden, ff)  bert: output.dense                    */
    bk_tensor b_gate;         /* (ff) optional bias                                  */
    bk_tensor b_up;           /* (ff) optional bias                                  */
    bk_tensor b_down;         /* (hidden) optional bias                              */
    /* bert post-LN */
    bk_tensor attn_ln_w;      /* (hidden) attention.output.LayerNorm weight          */
    bk_tensor attn_ln_b;      /* (hidden)                                            */
    bk_tensor out_ln_w;       /* (hidden) output.LayerNorm weight                    */
    bk_tensor out_ln_b;       /* (hidden)                                            */
} model_layer;

/* Activation buffers in backend memory, carved from one allocation.
 * n = max_tokens rows; widths are this rank's (model_shard). */
typedef struct model_ws {
    void *base;               /* the allocation                                      */
    void *h;                  /* (n, hidden) residual stream                         */
    void *x;                  /* (n, hidden) normalised input of a sub-block         */
    void *qkv;                /* (n, q + 2 kv) output of a fused projection          */
    void *q;                  /* (n, n_heads, head_dim)                              */
    void *k;                  /* (n, n_kv_heads, head_dim)                           */
    void *v;                  /* (n, n_kv_heads, head_dim)                           */
    void *att;                /* (n, n_heads, head_dim) attention output             */
    void *o;                  /* (n, hidden) sub-block output                        */
    void *gate;               /* (n, ff)                                             */
    void *up;                 /* (n, ff)                                             */
    void *act;                /* (n, ff) act(gate) * up                              */
    void *logits;             /* (MODEL_LOGIT_CHUNK, vocab)                          */
    void *gathered;           /* (vocab of the config): one row of logits gathered
                                 from every rank's slice; world > 1 only             */
} model_ws;

/* This rank's part of a tensor-parallel model (Megatron-style): query
 * heads, key/value heads, FFN columns and vocabulary rows, as [first,
 * first + count) of the config's.  At world 1 every range is whole.
 * Widths in model_ws and the KV cache are these counts; the config keeps
 * the whole model's. */
typedef struct model_shard {
    int32_t rank, world;
    comm *comm;               /* borrowed; NULL at world 1                           */
    int64_t head0, n_heads;
    int64_t kv_head0, n_kv_heads; /* one replicated head when world > kv heads       */
    int64_t ff0, ff;
    int64_t vocab0, vocab;
} model_shard;

/* How a weight is split among the ranks: along its output features (rows
 * of a matrix, elements of a bias: column-parallel q/k/v/gate/up, the
 * vocabulary rows of the embedding and lm_head), along its input features
 * (columns: row-parallel o/down, whose partial outputs are summed), or held
 * by rank 0 alone (biases added once after a row-parallel matmul). */
typedef enum model_split {
    MODEL_SPLIT_NONE = 0,     /* every rank holds the whole weight                   */
    MODEL_SPLIT_OUT,
    MODEL_SPLIT_IN,
    MODEL_SPLIT_ROOT,
} model_split;

/* The sharded dimensions. */
typedef enum model_dim {
    MODEL_DIM_Q = 0,          /* n_heads * head_dim                                  */
    MODEL_DIM_KV,             /* n_kv_heads * head_dim                               */
    MODEL_DIM_FF,             /* intermediate_size                                   */
    MODEL_DIM_VOCAB,
} model_dim;

/* A rank's part of one weight: elements [off, off + len) of the split
 * dimension. */
typedef struct model_part {
    model_split split;
    int64_t off, len;
} model_part;

typedef struct model_loader model_loader;

/* Where a decoder step's outputs go: host f32 logits (n_out, vocab), or,
 * when ids is set, the greedy token of each output row into backend memory
 * (n_out int32), and no logits leave the backend. */
typedef struct model_out {
    float *logits;
    int32_t *ids;
    uint16_t *counts;   /* with ids and a batch's sample rows: the penalty
                           counts bk sample reads and updates (or NULL)     */
} model_out;

/* An architecture: how its weights are named and how it runs. */
typedef struct model_arch_ops {
    mcfg_arch arch;
    bool encoder;
    /* Prefixes tried before a Hugging Face name ("model.", "bert."); the
     * bare name is tried last.  NULL-terminated. */
    const char *const *hf_prefixes;
    /* Map every weight of the architecture (model_load_weight). */
    kiln_status (*load)(kiln_model *m, model_loader *ld);
    /* Decoders: model_forward. */
    kiln_status (*forward)(kiln_model *m, const bk_batch *b, bk_kv_cache *kv,
                           const model_out *out);
    /* Encoders: run b, leave the last hidden state in ws.h. */
    kiln_status (*encode)(kiln_model *m, const bk_batch *b);
} model_arch_ops;

struct kiln_model {
    model_source *src;            /* open for the model's life (weights are mapped);
                                     NULL for a dummy model                         */
    bool dummy;                   /* weights generated from dummy_seed, no file     */
    uint64_t dummy_seed;
    backend *be;                  /* borrowed                                       */
    model_config cfg;
    const model_arch_ops *arch;
    bool gguf;                    /* weights came from a GGUF file                  */
    bk_rope_style rope_style;     /* NORM for GGUF llama/mistral, NEOX otherwise     */
    bool norm_add_one;            /* gemma3 from HF: RMSNorm scales by (1 + w)      */
    float embed_scale;            /* token embeddings are multiplied by this        */

    /* global weights */
    bk_tensor tok_embd;           /* (vocab, hidden)                                */
    bk_tensor pos_embd;           /* (max_pos, hidden) bert                         */
    bk_tensor type_embd;          /* (type_vocab, hidden) bert                      */
    bk_tensor embd_ln_w;          /* (hidden) bert embeddings.LayerNorm             */
    bk_tensor embd_ln_b;          /* (hidden)                                       */
    bk_tensor out_norm;           /* (hidden) final RMSNorm                         */
    bk_tensor lm_head;            /* (vocab, hidden); tok_embd's descriptor if tied */
    model_layer *layers;          /* (n_layers)                                     */

    /* weights to release with weight_free */
    bk_tensor **owned;
    int64_t n_owned, cap_owned;
    /* host copies of column slices a backend weight points at (kiln_free) */
    void **host_parts;
    int64_t n_host_parts, cap_host_parts;

    model_shard shard;            /* this rank's part (the whole at world 1)     */

    int32_t max_tokens;           /* rows the workspace holds                       */
    model_ws ws;
};

/* ---- weight mapping (model.c) --------------------------------------------- */

/* Rows of a weight given as a vector (norm weights, biases). */
#define MODEL_VEC 0

/* Map one weight into *out.  `hf` and `gguf` are printf formats with at
 * most one %d (the layer, ignored when layer < 0); the name of the source's
 * format is looked up (HF: each of the architecture's prefixes, then bare).
 * Expected shape: (rows, cols), or (cols) when rows == MODEL_VEC.
 * Errors: KILN_ERR_FORMAT (absent while required: names the tensor and the
 * expected shape; or misshapen: expected and actual shape),
 * KILN_ERR_UNSUPPORTED (a stored type kiln cannot run), backend failures.
 * An absent optional weight leaves *out zeroed and returns KILN_OK. */
kiln_status model_load_weight(kiln_model *m, model_loader *ld, const char *hf,
                              const char *gguf, int layer, int64_t rows, int64_t cols,
                              bool required, bk_tensor *out);

/* model_load_weight of this rank's part of the weight: (rows, cols) is
 * the whole weight's shape (checked against the file), `split` along `dim`
 * picks the part (model_part_of).  Only the part's bytes are read: a row
 * range is a view of the file, a column range is copied row by row into a
 * host buffer the model keeps.  Errors as model_load_weight, and
 * KILN_ERR_INVALID_ARG when a column range of a block-quantized weight
 * does not fall on block boundaries. */
kiln_status model_load_part(kiln_model *m, model_loader *ld, const char *hf, const char *gguf,
                            int layer, int64_t rows, int64_t cols, bool required,
                            model_split split, model_dim dim, bk_tensor *out);

/* This rank's range of `dim` split as `split`. */
model_part model_part_of(const kiln_model *m, model_split split, model_dim dim);

/* True when the source holds the weight (same lookup as above). */
bool model_has_weight(kiln_model *m, model_loader *ld, const char *hf, const char *gguf,
                      int layer);

/* File names of a layer's q, k, v projections (%d: the layer), hf and
 * gguf, weights and biases; bias_always: the biases are required whatever
 * the config's attention_bias says. */
typedef struct model_qkv_names {
    const char *hf[3], *gguf[3];
    const char *hf_bias[3], *gguf_bias[3];
    bool bias_always;
} model_qkv_names;

/* llama.c's and gemma3.c's names ("layers.%d.self_attn.q_proj.weight",
 * "blk.%d.attn_q.weight", ...; biases as attention_bias says). */
extern const model_qkv_names model_qkv_decoder;

/* Layer i's q, k, v projections and their biases (required when
 * nm->bias_always or attention_bias, else loaded when the file has them).
 * Where the backend takes fused weights (bk weight_rows), the three are
 * one (q + 2 kv, hidden) weight L->wqkv - rows of q, then k, then v - and
 * wq, wk, wv are views of it (not owned); their biases likewise one
 * vector L->bqkv with bq, bk, bv views of it.  Errors as
 * model_load_weight. */
kiln_status model_load_qkv(kiln_model *m, model_loader *ld, int i, const model_qkv_names *nm);

/* q, k, v (n rows) of the input x (a workspace buffer) through layer L's
 * projections, x RMSNorm'ed first by `norm` when not NULL (into ws.x where
 * the ops are separate): one matmul with a fused weight (with the norm in
 * it: bk matmul_norm), else the norm and three matmuls.  With a fused
 * weight, a caller that passes `stride` takes q, k, v in place inside the
 * fused output, rows *stride elements apart (the bk_attn.qkv_stride of an
 * attention that reads them: no split); else they are split into ws.q,
 * ws.k, ws.v (at n == 1, parts of ws.qkv).  *stride is 0 when they are
 * packed. */
kiln_status model_qkv(kiln_model *m, const model_layer *L, const void *x, int64_t n,
                      const bk_norm *norm, void **q, void **k, void **v, int64_t *stride);

/* w->act (n rows, the rank's ff columns) = act(x W_gate^T + b_gate) *
 * (x W_up^T + b_up) of layer L, x RMSNorm'ed first by `norm` when not
 * NULL: the backend's fused matmul_glu where it has one, else the norm
 * into ws.x, the two matmuls into ws.gate and ws.up and glu. */
kiln_status model_glu_in(kiln_model *m, const model_layer *L, const void *x, int64_t n,
                         const bk_norm *norm);

/* y (n, w->ne1) = act(x W^T + bias): the backend's matmul_act where it has
 * one (an epilogue computes act), else matmul, then act. */
kiln_status model_matmul_act(kiln_model *m, const void *x, int64_t n, const bk_tensor *w,
                             const bk_tensor *bias, bk_act act, void *y);

/* Rotary embedding r of q and k, then attention of layer l into out: the
 * backend's rope_attention where it has one (which folds the rotation and
 * the cache write into decode attention), else rope, then attention. */
kiln_status model_rope_attention(kiln_model *m, const bk_batch *b, const bk_attn *a,
                                 const bk_rope *r, void *q, void *k, const void *v,
                                 bk_kv_cache *kv, int32_t l, void *out);

/* Whether output projections join the residual stream through bk
 * matmul_res at any row count (the backend has it, one rank: a
 * row-parallel output is summed over the ranks first), so that the norm
 * after one reads the residual alone. */
bool model_res_step(const kiln_model *m);

/* Whether a step of n rows runs the decoder's fused form: norms inside the
 * input projections and output projections added into the residual
 * (bk matmul_norm, matmul_res, matmul_glu) - a backend that has them, n at
 * most its fused_rows, one rank (a row-parallel output is summed over the
 * ranks before it may join the residual). */
bool model_fused_step(const kiln_model *m, int64_t n);

/* The final norm and the output head of a decoder: out_norm (hf "norm",
 * gguf "output_norm"), and lm_head ("lm_head" / "output"), which shares the
 * token embedding when the config ties them or the source has none.
 * Load tok_embd first.  Errors as model_load_weight. */
kiln_status model_load_output(kiln_model *m, model_loader *ld);

/* ---- helpers for forwards -------------------------------------------------- */

/* The backend activation of a config activation. */
static inline bk_act model_act(mcfg_act a)
{
    switch (a) {
    case MCFG_ACT_GELU: return BK_ACT_GELU;
    case MCFG_ACT_GELU_TANH: return BK_ACT_GELU_TANH;
    case MCFG_ACT_RELU: return BK_ACT_RELU;
    case MCFG_ACT_SILU:
    default: return BK_ACT_SILU;
    }
}

/* An optional weight as an op argument: NULL when absent. */
static inline const bk_tensor *model_opt(const bk_tensor *t)
{
    return t->data ? t : NULL;
}

/* Pointer `rows` rows of `width` activation elements past p. */
static inline void *model_row(const kiln_model *m, void *p, int64_t rows, int64_t width)
{
    return (char *)p + bk_act_bytes(m->be, rows * width);
}

/* h (n_tokens, hidden) = token embeddings * scale: the rank's vocabulary
 * rows, summed over the ranks when tensor-parallel. */
kiln_status model_embed_tokens(kiln_model *m, const bk_batch *b, float scale, void *h);

/* x (n elements) summed over the ranks in place: the partial outputs of a
 * row-parallel matmul.  Nothing at world 1. */
kiln_status model_reduce(kiln_model *m, void *x, int64_t n);

/* The final norm, lm_head and soft-capping of the rows b->out_rows of the
 * hidden state `h` (n_tokens, hidden), written to `out` (host logits or
 * device greedy ids).  The norm is RMSNorm (add_one per the model).
 * Tensor-parallel: each rank's vocabulary slice of the logits, gathered
 * into the whole on every rank. */
kiln_status model_logits(kiln_model *m, const bk_batch *b, void *h, const model_out *out);

/* The architectures (llama.c, gemma3.c, bert.c). */
extern const model_arch_ops llama_arch_ops;
extern const model_arch_ops mistral_arch_ops;
extern const model_arch_ops qwen2_arch_ops;
extern const model_arch_ops qwen3_arch_ops;
extern const model_arch_ops gemma3_arch_ops;
extern const model_arch_ops bert_arch_ops;

#endif /* KILN_MODEL_IMPL_H */

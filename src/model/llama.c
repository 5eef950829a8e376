/*
 * llama.c - the llama family: llama (2, 3, 3.1 rope scaling), mistral
 * (sliding-window attention), qwen2 (q/k/v biases) and qwen3 (per-head
 * RMSNorm of q and k).
 *
 * One pre-norm decoder block, repeated:
 *
 *     x = rmsnorm(h)                       input_layernorm / attn_norm
 *     h = h + Wo attention(rope(Wq x), rope(Wk x), Wv x)
 *     x = rmsnorm(h)                       post_attention_layernorm / ffn_norm
 *     h = h + Wdown (silu(Wgate x) * Wup x)
 *
 * The variants differ only in which optional weights exist (biases, q/k
 * norms) and in the config (window per layer, rope scaling); the forward
 * below tests the weights, not the family.
 *
 * A decode step on a backend with fused forms (model_fused_step) runs the
 * same block with each norm inside the projection that reads it (bk
 * matmul_norm, matmul_glu) and each output projection added into h by the
 * matmul itself (bk matmul_res): four launches a layer fewer.  Longer
 * steps (prefill, decode batches past fused_rows) on such a backend add the output projections into h in
 * the matmul too (model_res_step), and the norm after reads h alone.
 */
#include "model/model_impl.h"

#include "base/error.h"

#include <math.h>

static const char *const llama_hf_prefixes[] = {"model.", NULL};

/* ---- weights ----------------------------------------------------------------- */

/* One block's weights.  Biases are required when the config says the
 * family has them (qwen2, attention_bias) and taken when present otherwise. */
static kiln_status llama_load_layer(kiln_model *m, model_loader *ld, int i)
{
    const model_config *c = &m->cfg;
    model_layer *L = &m->layers[i];
    int64_t d = c->hidden_size, q = c->n_heads * c->head_dim;
    int64_t ff = c->intermediate_size, hd = c->head_dim;
    bool ob = c->attention_out_bias, mb = c->mlp_bias;
    kiln_status st;

    if ((st = model_load_weight(m, ld, "layers.%d.input_layernorm.weight",
                                "blk.%d.attn_norm.weight", i, MODEL_VEC, d, true,
                                &L->attn_norm)) ||
        (st = model_load_qkv(m, ld, i, &model_qkv_decoder)) ||
        (st = model_load_part(m, ld, "layers.%d.self_attn.o_proj.weight",
                              "blk.%d.attn_output.weight", i, d, q, true, MODEL_SPLIT_IN,
                              MODEL_DIM_Q, &L->wo)) ||
        (st = model_load_part(m, ld, "layers.%d.self_attn.o_proj.bias",
                              "blk.%d.attn_output.bias", i, MODEL_VEC, d, ob, MODEL_SPLIT_ROOT,
                              MODEL_DIM_Q, &L->bo)))
        return st;
    if ((st = model_load_weight(m, ld, "layers.%d.self_attn.q_norm.weight",
                                "blk.%d.attn_q_norm.weight", i, MODEL_VEC, hd, c->qk_norm,
                                &L->q_norm)) ||
        (st = model_load_weight(m, ld, "layers.%d.self_attn.k_norm.weight",
                                "blk.%d.attn_k_norm.weight", i, MODEL_VEC, hd, c->qk_norm,
                                &L->k_norm)))
        return st;
    if ((st = model_load_weight(m, ld, "layers.%d.post_attention_layernorm.weight",
                                "blk.%d.ffn_norm.weight", i, MODEL_VEC, d, true, &L->ffn_norm)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight",
                              i, ff, d, true, MODEL_SPLIT_OUT, MODEL_DIM_FF, &L->w_gate)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", i,
                              ff, d, true, MODEL_SPLIT_OUT, MODEL_DIM_FF, &L->w_up)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight",
                              i, d, ff, true, MODEL_SPLIT_IN, MODEL_DIM_FF, &L->w_down)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.gate_proj.bias", "blk.%d.ffn_gate.bias", i,
                              MODEL_VEC, ff, mb, MODEL_SPLIT_OUT, MODEL_DIM_FF, &L->b_gate)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.up_proj.bias", "blk.%d.ffn_up.bias", i,
                              MODEL_VEC, ff, mb, MODEL_SPLIT_OUT, MODEL_DIM_FF, &L->b_up)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.down_proj.bias", "blk.%d.ffn_down.bias", i,
                              MODEL_VEC, d, mb, MODEL_SPLIT_ROOT, MODEL_DIM_FF, &L->b_down)))
        return st;
    /* a q/k norm found without the config asking for it is used, but the
     * pair must be complete */
    if ((L->q_norm.data == NULL) != (L->k_norm.data == NULL))
        return kiln_err_set(KILN_ERR_FORMAT, "model: layer %d has only one of q_norm and k_norm",
                            i);
    return KILN_OK;
}

static kiln_status llama_load(kiln_model *m, model_loader *ld)
{
    const model_config *c = &m->cfg;
    kiln_status st;

    if ((st = model_load_part(m, ld, "embed_tokens.weight", "token_embd.weight", -1,
                              c->vocab_size, c->hidden_size, true, MODEL_SPLIT_OUT,
                              MODEL_DIM_VOCAB, &m->tok_embd)))
        return st;
    for (int i = 0; i < (int)c->n_layers; i++)
        if ((st = llama_load_layer(m, ld, i)))
            return st;
    return model_load_output(m, ld);
}

/* ---- forward ------------------------------------------------------------------ */

static kiln_status llama_forward(kiln_model *m, const bk_batch *b, bk_kv_cache *kv,
                                 const model_out *out)
{
    backend *be = m->be;
    const bk_ops *op = be->ops;
    const model_config *c = &m->cfg;
    const model_ws *w = &m->ws;
    int64_t n = b->n_tokens, d = c->hidden_size;
    /* this rank's heads and FFN columns (all of them at world 1) */
    int32_t nh = (int32_t)m->shard.n_heads, nkv = (int32_t)m->shard.n_kv_heads;
    int32_t hd = (int32_t)c->head_dim;
    float eps = c->norm_eps;
    bk_attn attn = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                    .scale = 1.0f / sqrtf((float)hd), .causal = true,
                    .softcap = c->attn_logit_softcap, .use_cache = true};
    bk_rope rope;
    const bool fused = model_fused_step(m, n), res = model_res_step(m);
    bk_norm nrm = {.w = NULL, .eps = eps, .add_one = false};
    kiln_status st;

    bk_rope_from_config(c, false, m->rope_style, &rope);

    /* 1. token embeddings start the residual stream h; x = norm(h) (fused:
     *    the q/k/v projection norms h itself) */
    if ((st = model_embed_tokens(m, b, 1.0f, w->h)) ||
        (!fused &&
         (st = op->rmsnorm(be, w->h, n, d, &m->layers[0].attn_norm, eps, false, w->x))))
        return st;

    for (int32_t l = 0; l < (int32_t)c->n_layers; l++) {
        const model_layer *L = &m->layers[l];

        /* 2. q, k, v projections (biases: qwen2) */
        void *q, *k, *v;
        nrm.w = &L->attn_norm;
        if ((st = model_qkv(m, L, fused ? w->h : w->x, n, fused ? &nrm : NULL, &q, &k, &v,
                            NULL)))
            return st;

        /* 3. per-head RMSNorm of q and k (qwen3) */
        if (L->q_norm.data &&
            ((st = op->rmsnorm(be, q, n * nh, hd, &L->q_norm, eps, false, q)) ||
             (st = op->rmsnorm(be, k, n * nkv, hd, &L->k_norm, eps, false, k))))
            return st;

        /* 4, 5. rotary position embedding of q and k, then attention over
         *    each sequence's cached context; the window applies on the
         *    layers the config marks (mistral: all) */
        attn.window = c->layer_sliding[l] ? (int32_t)c->sliding_window : 0;
        if ((st = model_rope_attention(m, b, &attn, &rope, q, k, v, kv, l, w->att)))
            return st;

        /* 6. output projection (row-parallel: partial sums over the ranks'
         *    heads, the bias on rank 0) into the residual; x = norm(h) */
        if (res) {
            if ((st = op->matmul_res(be, w->att, n, &L->wo, model_opt(&L->bo), w->o, w->h)) ||
                (!fused &&
                 (st = op->rmsnorm(be, w->h, n, d, &L->ffn_norm, eps, false, w->x))))
                return st;
        } else if ((st = op->matmul(be, w->att, n, &L->wo, model_opt(&L->bo), w->o)) ||
                   (st = model_reduce(m, w->o, n * d)) ||
                   (st = op->add_rmsnorm(be, w->h, w->o, n, d, &L->ffn_norm, eps, false,
                                         w->x))) {
            return st;
        }

        /* 7. gated feed-forward: down(act(gate x) * up x), gate/up
         *    column-parallel, down row-parallel (fused: into h at once) */
        nrm.w = &L->ffn_norm;
        if ((st = model_glu_in(m, L, fused ? w->h : w->x, n, fused ? &nrm : NULL)))
            return st;
        if (res) {
            if ((st = op->matmul_res(be, w->act, n, &L->w_down, model_opt(&L->b_down), w->o,
                                     w->h)) ||
                (!fused && l + 1 < (int32_t)c->n_layers &&
                 (st = op->rmsnorm(be, w->h, n, d, &m->layers[l + 1].attn_norm, eps, false,
                                   w->x))))
                return st;
            continue;
        }
        if ((st = op->matmul(be, w->act, n, &L->w_down, model_opt(&L->b_down), w->o)) ||
            (st = model_reduce(m, w->o, n * d)))
            return st;

        /* 8. FFN output into the residual; x = next layer's normed input */
        if (l + 1 < (int32_t)c->n_layers)
            st = op->add_rmsnorm(be, w->h, w->o, n, d, &m->layers[l + 1].attn_norm, eps, false,
                                 w->x);
        else
            st = op->add(be, w->h, w->o, n * d, w->h);
        if (st)
            return st;
    }

    /* 9. final norm and lm_head of the output rows */
    return model_logits(m, b, w->h, out);
}

/* ---- registry entries -------------------------------------------------------- */

#define LLAMA_OPS(a)                                                                        \
    {                                                                                       \
        .arch = (a), .encoder = false, .hf_prefixes = llama_hf_prefixes, .load = llama_load, \
        .forward = llama_forward, .encode = NULL                                            \
    }

const model_arch_ops llama_arch_ops = LLAMA_OPS(MCFG_ARCH_LLAMA);
const model_arch_ops mistral_arch_ops = LLAMA_OPS(MCFG_ARCH_MISTRAL);
const model_arch_ops qwen2_arch_ops = LLAMA_OPS(MCFG_ARCH_QWEN2);
const model_arch_ops qwen3_arch_ops = LLAMA_OPS(MCFG_ARCH_QWEN3);

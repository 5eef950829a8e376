/*
 * gemma3.c - Gemma 3 (text): a sandwich-norm decoder.
 *
 *     h = embed(tokens) * sqrt(hidden)
 *     per block:
 *         x = rmsnorm(h)                          input_layernorm / attn_norm
 *         a = Wo attention(rope(qnorm(Wq x)), rope(knorm(Wk x)), Wv x)
 *         h = h + rmsnorm(a)                      post_attention_layernorm
 *         x = rmsnorm(h)                          pre_feedforward_layernorm / ffn_norm
 *         f = Wdown (gelu_tanh(Wgate x) * Wup x)
 *         h = h + rmsnorm(f)                      post_feedforward_layernorm
 *     logits = softcap(lm_head(rmsnorm(h)))       lm_head tied to the embedding
 *
 * Every RMSNorm scales by (1 + w) in transformers; llama.cpp's converter
 * stores 1 + w in GGUF files, so m->norm_add_one is set for HF sources only.
 * Layers alternate between sliding-window attention with the local rope
 * base (rope_local_theta, 10000, unscaled) and global attention with
 * rope_theta and the config's scaling; config.layer_sliding says which.
 * Scores are scaled by query_pre_attn_scalar^-1/2 rather than head_dim's.
 */
#include "model/model_impl.h"

#include "base/error.h"

#include <math.h>

static const char *const gemma3_hf_prefixes[] = {"model.", "language_model.model.",
                                                 "model.language_model.", NULL};

/* ---- weights ----------------------------------------------------------------- */

static kiln_status gemma3_load_layer(kiln_model *m, model_loader *ld, int i)
{
    const model_config *c = &m->cfg;
    model_layer *L = &m->layers[i];
    int64_t d = c->hidden_size, q = c->n_heads * c->head_dim;
    int64_t ff = c->intermediate_size, hd = c->head_dim;
    kiln_status st;

    if ((st = model_load_weight(m, ld, "layers.%d.input_layernorm.weight",
                                "blk.%d.attn_norm.weight", i, MODEL_VEC, d, true,
                                &L->attn_norm)) ||
        (st = model_load_qkv(m, ld, i, &model_qkv_decoder)) ||
        (st = model_load_part(m, ld, "layers.%d.self_attn.o_proj.weight",
                              "blk.%d.attn_output.weight", i, d, q, true, MODEL_SPLIT_IN,
                              MODEL_DIM_Q, &L->wo)) ||
        (st = model_load_weight(m, ld, "layers.%d.self_attn.q_norm.weight",
                                "blk.%d.attn_q_norm.weight", i, MODEL_VEC, hd, true, &L->q_norm)) ||
        (st = model_load_weight(m, ld, "layers.%d.self_attn.k_norm.weight",
                                "blk.%d.attn_k_norm.weight", i, MODEL_VEC, hd, true, &L->k_norm)))
        return st;
    if ((st = model_load_weight(m, ld, "layers.%d.post_attention_layernorm.weight",
                                "blk.%d.post_attention_norm.weight", i, MODEL_VEC, d, true,
                                &L->post_attn_norm)) ||
        (st = model_load_weight(m, ld, "layers.%d.pre_feedforward_layernorm.weight",
                                "blk.%d.ffn_norm.weight", i, MODEL_VEC, d, true, &L->ffn_norm)) ||
        (st = model_load_weight(m, ld, "layers.%d.post_feedforward_layernorm.weight",
                                "blk.%d.post_ffw_norm.weight", i, MODEL_VEC, d, true,
                                &L->post_ffn_norm)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight",
                              i, ff, d, true, MODEL_SPLIT_OUT, MODEL_DIM_FF, &L->w_gate)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", i,
                              ff, d, true, MODEL_SPLIT_OUT, MODEL_DIM_FF, &L->w_up)) ||
        (st = model_load_part(m, ld, "layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight",
                              i, d, ff, true, MODEL_SPLIT_IN, MODEL_DIM_FF, &L->w_down)))
        return st;
    return KILN_OK;
}

static kiln_status gemma3_load(kiln_model *m, model_loader *ld)
{
    const model_config *c = &m->cfg;
    kiln_status st;

    if ((st = model_load_part(m, ld, "embed_tokens.weight", "token_embd.weight", -1,
                              c->vocab_size, c->hidden_size, true, MODEL_SPLIT_OUT,
                              MODEL_DIM_VOCAB, &m->tok_embd)))
        return st;
    for (int i = 0; i < (int)c->n_layers; i++)
        if ((st = gemma3_load_layer(m, ld, i)))
            return st;
    return model_load_output(m, ld);
}

/* ---- forward ------------------------------------------------------------------ */

static kiln_status gemma3_forward(kiln_model *m, const bk_batch *b, bk_kv_cache *kv,
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
    float eps = c->norm_eps, qpas = c->query_pre_attn_scalar > 0.0f ? c->query_pre_attn_scalar
                                                                    : (float)hd;
    bool one = m->norm_add_one;
    bk_attn attn = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                    .scale = 1.0f / sqrtf(qpas), .causal = true,
                    .softcap = c->attn_logit_softcap, .use_cache = true};
    bk_rope rope_global, rope_local;
    kiln_status st;

    bk_rope_from_config(c, false, m->rope_style, &rope_global);
    bk_rope_from_config(c, true, m->rope_style, &rope_local);

    /* 1. scaled token embeddings start the residual stream; x = norm(h) */
    if ((st = model_embed_tokens(m, b, m->embed_scale, w->h)) ||
        (st = op->rmsnorm(be, w->h, n, d, &m->layers[0].attn_norm, eps, one, w->x)))
        return st;

    for (int32_t l = 0; l < (int32_t)c->n_layers; l++) {
        const model_layer *L = &m->layers[l];
        bool local = c->layer_sliding[l] != 0;

        /* 2. q, k, v projections */
        void *q, *k, *v;
        if ((st = model_qkv(m, L, w->x, n, NULL, &q, &k, &v, NULL)))
            return st;

        /* 3. per-head RMSNorm of q and k */
        if ((st = op->rmsnorm(be, q, n * nh, hd, &L->q_norm, eps, one, q)) ||
            (st = op->rmsnorm(be, k, n * nkv, hd, &L->k_norm, eps, one, k)))
            return st;

        /* 4, 5. rotary embedding (local base on sliding layers, global
         *    otherwise), then attention; sliding layers see the last
         *    sliding_window tokens */
        attn.window = local ? (int32_t)c->sliding_window : 0;
        if ((st = model_rope_attention(m, b, &attn, local ? &rope_local : &rope_global, q, k, v,
                                       kv, l, w->att)))
            return st;

        /* 6. output projection (row-parallel: summed over the ranks), its
         *    post-norm, into the residual;
         *    x = pre-feed-forward norm of h */
        if ((st = op->matmul(be, w->att, n, &L->wo, NULL, w->o)) ||
            (st = model_reduce(m, w->o, n * d)) ||
            (st = op->rmsnorm(be, w->o, n, d, &L->post_attn_norm, eps, one, w->o)) ||
            (st = op->add_rmsnorm(be, w->h, w->o, n, d, &L->ffn_norm, eps, one, w->x)))
            return st;

        /* 7. GeGLU feed-forward and its post-norm */
        if ((st = model_glu_in(m, L, w->x, n, NULL)) ||
            (st = op->matmul(be, w->act, n, &L->w_down, NULL, w->o)) ||
            (st = model_reduce(m, w->o, n * d)) ||
            (st = op->rmsnorm(be, w->o, n, d, &L->post_ffn_norm, eps, one, w->o)))
            return st;

        /* 8. into the residual; x = next layer's normed input */
        if (l + 1 < (int32_t)c->n_layers)
            st = op->add_rmsnorm(be, w->h, w->o, n, d, &m->layers[l + 1].attn_norm, eps, one,
                                 w->x);
        else
            st = op->add(be, w->h, w->o, n * d, w->h);
        if (st)
            return st;
    }

    /* 9. final norm, tied lm_head and final-logit soft-capping */
    return model_logits(m, b, w->h, out);
}

const model_arch_ops gemma3_arch_ops = {
    .arch = MCFG_ARCH_GEMMA3,
    .encoder = false,
    .hf_prefixes = gemma3_hf_prefixes,
    .load = gemma3_load,
    .forward = gemma3_forward,
    .encode = NULL,
};

/*
 * bert.c - BERT encoders (MiniLM, bge, e5, gte): post-LN blocks,
 * bidirectional attention within each sequence, learned absolute positions
 * and token types.
 *
 *     h = layernorm(word[t] + pos[p] + type[s])
 *     per block:
 *         h = layernorm(h + Wo attention(Wq h, Wk h, Wv h))
 *         h = layernorm(h + Wdown gelu(Wup h))
 *
 * bert_encode leaves the last hidden state in ws.h; model.c pools and
 * normalises it per the config (model_embed) or copies it out
 * (model_encode_tokens).  No KV cache: a sequence's tokens all arrive in one
 * batch and attend to one another only.
 */
#include "model/model_impl.h"

#include "base/error.h"

#include <math.h>
#include <stdio.h>

static const char *const bert_hf_prefixes[] = {"", "bert.", NULL};

/* ---- weights ----------------------------------------------------------------- */

/* weight + bias of a dense layer or a LayerNorm; `hf`/`gguf` name the
 * module ("encoder.layer.%d.attention.self.query"), ".weight"/".bias" are
 * appended.  rows == MODEL_VEC for LayerNorms. */
static kiln_status bert_load_pair(kiln_model *m, model_loader *ld, const char *hf,
                                  const char *gguf, int layer, int64_t rows, int64_t cols,
                                  bk_tensor *w, bk_tensor *b)
{
    char hw[128], hb[128], gw[128], gb[128];
    kiln_status st;

    snprintf(hw, sizeof hw, "%s.weight", hf);
    snprintf(hb, sizeof hb, "%s.bias", hf);
    snprintf(gw, sizeof gw, "%s.weight", gguf);
    snprintf(gb, sizeof gb, "%s.bias", gguf);
    if ((st = model_load_weight(m, ld, hw, gw, layer, rows, cols, true, w)))
        return st;
    return model_load_weight(m, ld, hb, gb, layer, MODEL_VEC, rows == MODEL_VEC ? cols : rows,
                             true, b);
}

static const model_qkv_names bert_qkv_names = {
    .hf = {"encoder.layer.%d.attention.self.query.weight",
           "encoder.layer.%d.attention.self.key.weight",
           "encoder.layer.%d.attention.self.value.weight"},
    .gguf = {"blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.attn_v.weight"},
    .hf_bias = {"encoder.layer.%d.attention.self.query.bias",
                "encoder.layer.%d.attention.self.key.bias",
                "encoder.layer.%d.attention.self.value.bias"},
    .gguf_bias = {"blk.%d.attn_q.bias", "blk.%d.attn_k.bias", "blk.%d.attn_v.bias"},
    .bias_always = true,
};

static kiln_status bert_load_layer(kiln_model *m, model_loader *ld, int i)
{
    const model_config *c = &m->cfg;
    model_layer *L = &m->layers[i];
    int64_t d = c->hidden_size, q = c->n_heads * c->head_dim, ff = c->intermediate_size;
    kiln_status st;

    if ((st = model_load_qkv(m, ld, i, &bert_qkv_names)) ||
        (st = bert_load_pair(m, ld, "encoder.layer.%d.attention.output.dense",
                             "blk.%d.attn_output", i, d, q, &L->wo, &L->bo)) ||
        (st = bert_load_pair(m, ld, "encoder.layer.%d.attention.output.LayerNorm",
                             "blk.%d.attn_output_norm", i, MODEL_VEC, d, &L->attn_ln_w,
                             &L->attn_ln_b)) ||
        (st = bert_load_pair(m, ld, "encoder.layer.%d.intermediate.dense", "blk.%d.ffn_up", i, ff,
                             d, &L->w_up, &L->b_up)) ||
        (st = bert_load_pair(m, ld, "encoder.layer.%d.output.dense", "blk.%d.ffn_down", i, d, ff,
                             &L->w_down, &L->b_down)) ||
        (st = bert_load_pair(m, ld, "encoder.layer.%d.output.LayerNorm",
                             "blk.%d.layer_output_norm", i, MODEL_VEC, d, &L->out_ln_w,
                             &L->out_ln_b)))
        return st;
    return KILN_OK;
}

static kiln_status bert_load(kiln_model *m, model_loader *ld)
{
    const model_config *c = &m->cfg;
    int64_t d = c->hidden_size;
    kiln_status st;

    if ((st = model_load_weight(m, ld, "embeddings.word_embeddings.weight", "token_embd.weight",
                                -1, c->vocab_size, d, true, &m->tok_embd)) ||
        (st = model_load_weight(m, ld, "embeddings.position_embeddings.weight",
                                "position_embd.weight", -1, c->max_position_embeddings, d, true,
                                &m->pos_embd)) ||
        (st = model_load_weight(m, ld, "embeddings.token_type_embeddings.weight",
                                "token_types.weight", -1, c->type_vocab_size, d, false,
                                &m->type_embd)) ||
        (st = bert_load_pair(m, ld, "embeddings.LayerNorm", "token_embd_norm", -1, MODEL_VEC, d,
                             &m->embd_ln_w, &m->embd_ln_b)))
        return st;
    for (int i = 0; i < (int)c->n_layers; i++)
        if ((st = bert_load_layer(m, ld, i)))
            return st;
    return KILN_OK;
}

/* ---- forward ------------------------------------------------------------------ */

static kiln_status bert_encode(kiln_model *m, const bk_batch *b)
{
    backend *be = m->be;
    const bk_ops *op = be->ops;
    const model_config *c = &m->cfg;
    const model_ws *w = &m->ws;
    int64_t n = b->n_tokens, d = c->hidden_size;
    int32_t nh = (int32_t)c->n_heads, nkv = (int32_t)c->n_kv_heads, hd = (int32_t)c->head_dim;
    float eps = c->norm_eps;
    const bool res = model_res_step(m);
    bk_attn attn = {.n_heads = nh, .n_kv_heads = nkv, .head_dim = hd,
                    .scale = 1.0f / sqrtf((float)hd), .causal = false, .window = 0,
                    .softcap = 0.0f, .use_cache = false};
    kiln_status st;

    if (b->max_seq_len > c->max_position_embeddings)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "model: a sequence of %d tokens is longer than the %lld positions "
                            "of %s", b->max_seq_len, (long long)c->max_position_embeddings,
                            c->arch_name);

    /* 1. word + position + token-type embeddings, LayerNorm */
    if ((st = op->embed(be, &m->tok_embd, b, 1.0f, &m->pos_embd, model_opt(&m->type_embd),
                        w->h)) ||
        (st = op->layernorm(be, w->h, NULL, n, d, &m->embd_ln_w, &m->embd_ln_b, eps, w->h)))
        return st;

    for (int32_t l = 0; l < (int32_t)c->n_layers; l++) {
        const model_layer *L = &m->layers[l];

        /* 2. q, k, v projections (one fused matmul where the backend fuses:
         * the attention reads q, k, v inside its output) */
        void *q, *k, *v;
        if ((st = model_qkv(m, L, w->h, n, NULL, &q, &k, &v, &attn.qkv_stride)))
            return st;

        /* 3. bidirectional attention within each sequence of the batch */
        if ((st = op->attention(be, b, &attn, q, k, v, NULL, l, w->att)))
            return st;

        /* 4. output projection, residual, LayerNorm: the stream moves to x
         * (with matmul_res the matmul adds the product into h and the
         * LayerNorm reads h alone) */
        st = res ? op->matmul_res(be, w->att, n, &L->wo, &L->bo, w->o, w->h)
                 : op->matmul(be, w->att, n, &L->wo, &L->bo, w->o);
        if (st || (st = op->layernorm(be, res ? w->h : w->o, res ? NULL : w->h, n, d,
                                      &L->attn_ln_w, &L->attn_ln_b, eps, w->x)))
            return st;

        /* 5. feed-forward: down(act(up x)), into x with matmul_res */
        if ((st = model_matmul_act(m, w->x, n, &L->w_up, &L->b_up, model_act(c->act), w->up)))
            return st;
        st = res ? op->matmul_res(be, w->up, n, &L->w_down, &L->b_down, w->o, w->x)
                 : op->matmul(be, w->up, n, &L->w_down, &L->b_down, w->o);

        /* 6. residual and LayerNorm: the stream is back in h */
        if (st || (st = op->layernorm(be, res ? w->x : w->o, res ? NULL : w->x, n, d,
                                      &L->out_ln_w, &L->out_ln_b, eps, w->h)))
            return st;
    }
    return KILN_OK;
}

const model_arch_ops bert_arch_ops = {
    .arch = MCFG_ARCH_BERT,
    .encoder = true,
    .hf_prefixes = bert_hf_prefixes,
    .load = bert_load,
    .forward = NULL,
    .encode = bert_encode,
};

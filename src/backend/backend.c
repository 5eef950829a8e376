/*
 * backend.c - helpers shared by every backend: the rotary-embedding
 * description a model config implies.
 *
 * Invariants of a bk_rope from bk_rope_from_config():
 *   1. rot_dims is even, 2 <= rot_dims <= head_dim (head_dim >= 2).
 *   2. theta > 0: the layer's base (gemma3's local base on sliding layers).
 *   3. Sliding-window layers of gemma3 use the default (unscaled) rotary
 *      embedding, as transformers builds its local rotary module with
 *      rope_type "default"; every scaling field then holds its neutral value.
 *   4. original_max_pos is the config's original context, or the trained
 *      context when the config names none.
 */
#include "backend/backend.h"

#include <string.h>

void bk_rope_from_config(const model_config *c, bool local, bk_rope_style style, bk_rope *out)
{
    memset(out, 0, sizeof *out);
    out->style = style;
    out->head_dim = (int32_t)c->head_dim;

    /* partial rotary: transformers takes int(head_dim * factor) */
    int32_t rot = (int32_t)((double)c->head_dim * (double)c->partial_rotary_factor);
    rot &= ~1;
    if (rot < 2 || rot > out->head_dim)
        rot = out->head_dim & ~1;
    out->rot_dims = rot;

    bool use_local = local && c->rope_local_theta > 0.0f;
    out->theta = use_local ? c->rope_local_theta : c->rope_theta;
    if (!(out->theta > 0.0f))
        out->theta = 10000.0f;

    out->scaling = local && c->arch == MCFG_ARCH_GEMMA3 ? MCFG_ROPE_NONE : c->rope_scaling;
    out->factor = c->rope_factor > 0.0f ? c->rope_factor : 1.0f;
    out->low_freq_factor = c->rope_low_freq_factor;
    out->high_freq_factor = c->rope_high_freq_factor;
    out->original_max_pos = c->rope_original_max_pos > 0 ? c->rope_original_max_pos
                                                         : c->max_position_embeddings;
    out->yarn_beta_fast = c->rope_yarn_beta_fast;
    out->yarn_beta_slow = c->rope_yarn_beta_slow;
    out->attention_factor = c->rope_attention_factor;
    if (out->scaling == MCFG_ROPE_NONE) {
        out->factor = 1.0f;
        out->attention_factor = 0.0f;
    }
}

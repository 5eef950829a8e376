/*
 * model_config.c - defaults, architecture names and the final check of a
 * model_config; see model_config.h.
 *
 * Invariants after a successful mcfg_finalize():
 *   1. arch != MCFG_ARCH_UNKNOWN and arch_name is non-empty.
 *   2. vocab_size, hidden_size, intermediate_size, n_layers, n_heads,
 *      n_kv_heads and head_dim are positive and below the caps below;
 *      n_layers <= MCFG_MAX_LAYERS; n_heads % n_kv_heads == 0.
 *   3. layer_sliding[i] is 0 for every i >= n_layers and for every layer
 *      when sliding_window == 0.
 *   4. Special token ids are -1 or inside [0, vocab_size).
 * Readers (hf_config.c, gguf.c) fill the struct from mcfg_init() defaults and
 * call mcfg_finalize() last; model code may rely on the invariants.
 */
#include "format/model_config.h"

#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Sizes past these are not a real model; they are a corrupt or hostile file
 * and would only overflow buffer sizes further down. */
#define MCFG_CAP_VOCAB     (INT64_C(1) << 24)
#define MCFG_CAP_HIDDEN    (INT64_C(1) << 18)
#define MCFG_CAP_FFN       (INT64_C(1) << 20)
#define MCFG_CAP_HEADS     INT64_C(4096)
#define MCFG_CAP_HEAD_DIM  INT64_C(4096)
#define MCFG_CAP_POSITIONS (INT64_C(1) << 30)

/* model_type / general.architecture names; the first entry of an
 * architecture is the name mcfg_arch_name() gives it. */
static const struct {
    const char *name;
    mcfg_arch arch;
} mcfg_arch_names[] = {
    {"llama", MCFG_ARCH_LLAMA},   {"mistral", MCFG_ARCH_MISTRAL},
    {"qwen2", MCFG_ARCH_QWEN2},   {"qwen3", MCFG_ARCH_QWEN3},
    {"gemma3", MCFG_ARCH_GEMMA3}, {"gemma3_text", MCFG_ARCH_GEMMA3},
    {"bert", MCFG_ARCH_BERT},
};

void mcfg_init(model_config *c)
{
    memset(c, 0, sizeof *c);
    c->arch = MCFG_ARCH_UNKNOWN;
    c->norm_eps = 1e-6f;
    c->act = MCFG_ACT_SILU;
    c->rope_theta = 10000.0f;
    c->rope_scaling = MCFG_ROPE_NONE;
    c->rope_factor = 1.0f;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 1.0f;
    c->rope_yarn_beta_fast = 32.0f;
    c->rope_yarn_beta_slow = 1.0f;
    c->partial_rotary_factor = 1.0f;
    c->pooling = MCFG_POOL_NONE;
    c->bos_token_id = -1;
    c->eos_token_id = -1;
    c->pad_token_id = -1;
}

const char *mcfg_arch_name(mcfg_arch a)
{
    for (size_t i = 0; i < KILN_ARRAY_LEN(mcfg_arch_names); i++)
        if (mcfg_arch_names[i].arch == a)
            return mcfg_arch_names[i].name;
    return "unknown";
}

mcfg_arch mcfg_arch_from_name(const char *name)
{
    if (!name)
        return MCFG_ARCH_UNKNOWN;
    for (size_t i = 0; i < KILN_ARRAY_LEN(mcfg_arch_names); i++)
        if (!strcasecmp(name, mcfg_arch_names[i].name))
            return mcfg_arch_names[i].arch;
    return MCFG_ARCH_UNKNOWN;
}

/* KILN_ERR_FORMAT naming `field` unless lo <= v <= hi. */
static kiln_status mcfg_check_range(const char *field, int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi)
        return kiln_err_set(KILN_ERR_FORMAT,
                            "model config: %s = %lld is out of range [%lld, %lld]", field,
                            (long long)v, (long long)lo, (long long)hi);
    return KILN_OK;
}

/* KILN_ERR_FORMAT naming `field` unless v is finite and lo <= v <= hi. */
static kiln_status mcfg_check_float(const char *field, float v, double lo, double hi)
{
    if (!isfinite(v) || v < lo || v > hi)
        return kiln_err_set(KILN_ERR_FORMAT, "model config: %s = %g is out of range [%g, %g]",
                            field, (double)v, lo, hi);
    return KILN_OK;
}

/* Head counts: default n_kv_heads and head_dim, then check divisibility. */
static kiln_status mcfg_derive_heads(model_config *c)
{
    kiln_status st;
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    if ((st = mcfg_check_range("n_kv_heads", c->n_kv_heads, 1, c->n_heads)))
        return st;
    if (c->n_heads % c->n_kv_heads)
        return kiln_err_set(KILN_ERR_FORMAT,
                            "model config: n_heads = %lld is not a multiple of "
                            "n_kv_heads = %lld", (long long)c->n_heads,
                            (long long)c->n_kv_heads);
    if (c->head_dim == 0) {
        if (c->hidden_size % c->n_heads)
            return kiln_err_set(KILN_ERR_FORMAT,
                                "model config: hidden_size = %lld is not a multiple of "
                                "n_heads = %lld and head_dim is not given",
                                (long long)c->hidden_size, (long long)c->n_heads);
        c->head_dim = c->hidden_size / c->n_heads;
    }
    return mcfg_check_range("head_dim", c->head_dim, 1, MCFG_CAP_HEAD_DIM);
}

/* Per-layer window flags.  With a pattern P (gemma3) layer i is global when
 * (i + 1) % P == 0; without one, flags a reader set explicitly (layer_types,
 * qwen2 max_window_layers) are kept, and if there are none every layer uses
 * the window (mistral). */
static void mcfg_derive_sliding(model_config *c)
{
    bool any = false;
    for (int64_t i = c->n_layers; i < MCFG_MAX_LAYERS; i++)
        c->layer_sliding[i] = 0;
    if (c->sliding_window == 0) {
        memset(c->layer_sliding, 0, sizeof c->layer_sliding);
        return;
    }
    if (c->sliding_window_pattern > 0) {
        for (int64_t i = 0; i < c->n_layers; i++)
            c->layer_sliding[i] = (i + 1) % c->sliding_window_pattern != 0;
        return;
    }
    for (int64_t i = 0; i < c->n_layers; i++)
        any |= c->layer_sliding[i] != 0;
    for (int64_t i = 0; i < c->n_layers; i++)
        c->layer_sliding[i] = any ? (c->layer_sliding[i] != 0) : 1;
}

static kiln_status mcfg_check_sizes(const model_config *c)
{
    kiln_status st;
    if ((st = mcfg_check_range("vocab_size", c->vocab_size, 1, MCFG_CAP_VOCAB)) ||
        (st = mcfg_check_range("hidden_size", c->hidden_size, 1, MCFG_CAP_HIDDEN)) ||
        (st = mcfg_check_range("intermediate_size", c->intermediate_size, 1, MCFG_CAP_FFN)) ||
        (st = mcfg_check_range("n_layers", c->n_layers, 1, MCFG_MAX_LAYERS)) ||
        (st = mcfg_check_range("n_heads", c->n_heads, 1, MCFG_CAP_HEADS)) ||
        (st = mcfg_check_range("n_kv_heads", c->n_kv_heads, 0, MCFG_CAP_HEADS)) ||
        (st = mcfg_check_range("head_dim", c->head_dim, 0, MCFG_CAP_HEAD_DIM)) ||
        (st = mcfg_check_range("max_position_embeddings", c->max_position_embeddings, 0,
                               MCFG_CAP_POSITIONS)) ||
        (st = mcfg_check_range("sliding_window", c->sliding_window, 0, MCFG_CAP_POSITIONS)) ||
        (st = mcfg_check_range("sliding_window_pattern", c->sliding_window_pattern, 0,
                               MCFG_MAX_LAYERS)) ||
        (st = mcfg_check_range("type_vocab_size", c->type_vocab_size, 0, MCFG_CAP_VOCAB)) ||
        (st = mcfg_check_range("rope_original_max_pos", c->rope_original_max_pos, 0,
                               MCFG_CAP_POSITIONS)))
        return st;
    return KILN_OK;
}

static kiln_status mcfg_check_floats(const model_config *c)
{
    kiln_status st;
    if ((st = mcfg_check_float("norm_eps", c->norm_eps, 0.0, 1.0)) ||
        (st = mcfg_check_float("rope_theta", c->rope_theta, 0.0, 1e30)) ||
        (st = mcfg_check_float("rope_local_theta", c->rope_local_theta, 0.0, 1e30)) ||
        (st = mcfg_check_float("rope_factor", c->rope_factor, 1e-6, 1e6)) ||
        (st = mcfg_check_float("rope_low_freq_factor", c->rope_low_freq_factor, 0.0, 1e6)) ||
        (st = mcfg_check_float("rope_high_freq_factor", c->rope_high_freq_factor, 0.0, 1e6)) ||
        (st = mcfg_check_float("rope_yarn_beta_fast", c->rope_yarn_beta_fast, 0.0, 1e6)) ||
        (st = mcfg_check_float("rope_yarn_beta_slow", c->rope_yarn_beta_slow, 0.0, 1e6)) ||
        (st = mcfg_check_float("rope_attention_factor", c->rope_attention_factor, 0.0, 1e6)) ||
        (st = mcfg_check_float("partial_rotary_factor", c->partial_rotary_factor, 1e-6, 1.0)) ||
        (st = mcfg_check_float("query_pre_attn_scalar", c->query_pre_attn_scalar, 0.0, 1e9)) ||
        (st = mcfg_check_float("attn_logit_softcap", c->attn_logit_softcap, 0.0, 1e9)) ||
        (st = mcfg_check_float("final_logit_softcap", c->final_logit_softcap, 0.0, 1e9)))
        return st;
    if (c->rope_scaling == MCFG_ROPE_LLAMA3 &&
        c->rope_high_freq_factor <= c->rope_low_freq_factor)
        return kiln_err_set(KILN_ERR_FORMAT,
                            "model config: rope_high_freq_factor = %g must exceed "
                            "rope_low_freq_factor = %g for llama3 rope scaling",
                            (double)c->rope_high_freq_factor, (double)c->rope_low_freq_factor);
    return KILN_OK;
}

static kiln_status mcfg_check_ids(const model_config *c)
{
    kiln_status st;
    if ((st = mcfg_check_range("bos_token_id", c->bos_token_id, -1, c->vocab_size - 1)) ||
        (st = mcfg_check_range("eos_token_id", c->eos_token_id, -1, c->vocab_size - 1)) ||
        (st = mcfg_check_range("pad_token_id", c->pad_token_id, -1, c->vocab_size - 1)))
        return st;
    return KILN_OK;
}

kiln_status mcfg_finalize(model_config *c)
{
    kiln_status st;
    if (c->arch <= MCFG_ARCH_UNKNOWN || c->arch >= MCFG_ARCH_COUNT)
        return kiln_err_set(KILN_ERR_FORMAT, "model config: arch is not set");
    if (!c->arch_name[0])
        snprintf(c->arch_name, sizeof c->arch_name, "%s", mcfg_arch_name(c->arch));
    if ((st = mcfg_check_sizes(c)) || (st = mcfg_derive_heads(c)) ||
        (st = mcfg_check_floats(c)) || (st = mcfg_check_ids(c)))
        return st;
    if ((unsigned)c->act > MCFG_ACT_RELU || (unsigned)c->rope_scaling > MCFG_ROPE_LLAMA3 ||
        (unsigned)c->pooling > MCFG_POOL_MAX)
        return kiln_err_set(KILN_ERR_FORMAT, "model config: act, rope_scaling or pooling "
                                             "holds an unknown value");
    mcfg_derive_sliding(c);
    return KILN_OK;
}

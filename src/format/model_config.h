/*
 * model_config.h - one description of a model's shape, whatever file it came
 * from.
 *
 * Filled from a Hugging Face config.json (hf_config.c) or from GGUF metadata
 * (gguf.c, gguf_to_model_config).  Model code reads only this struct.  Fields
 * a family does not use keep the defaults of mcfg_init().  The struct is plain
 * data (no pointers): copy it freely.
 */
#ifndef KILN_FORMAT_MODEL_CONFIG_H
#define KILN_FORMAT_MODEL_CONFIG_H

#include "kiln.h"

#include <stdbool.h>
#include <stdint.h>

#define MCFG_MAX_LAYERS 512

typedef enum mcfg_arch {
    MCFG_ARCH_UNKNOWN = 0,
    MCFG_ARCH_LLAMA,
    MCFG_ARCH_MISTRAL,
    MCFG_ARCH_QWEN2,
    MCFG_ARCH_QWEN3,
    MCFG_ARCH_GEMMA3,
    MCFG_ARCH_BERT,
    MCFG_ARCH_COUNT
} mcfg_arch;

typedef enum mcfg_act {
    MCFG_ACT_SILU = 0,     /* "silu", "swish"                         */
    MCFG_ACT_GELU,         /* exact erf GELU: "gelu"                   */
    MCFG_ACT_GELU_TANH,    /* "gelu_pytorch_tanh", "gelu_new", "gelu_fast" */
    MCFG_ACT_RELU,
} mcfg_act;

typedef enum mcfg_rope_scaling {
    MCFG_ROPE_NONE = 0,
    MCFG_ROPE_LINEAR,      /* positions divided by factor           */
    MCFG_ROPE_DYNAMIC,     /* dynamic NTK                           */
    MCFG_ROPE_YARN,
    MCFG_ROPE_LLAMA3,      /* Llama 3.1 frequency-band scaling       */
} mcfg_rope_scaling;

typedef enum mcfg_pooling {
    MCFG_POOL_NONE = 0,    /* generation models                       */
    MCFG_POOL_MEAN,
    MCFG_POOL_CLS,
    MCFG_POOL_LAST,
    MCFG_POOL_MAX,
} mcfg_pooling;

typedef struct model_config {
    mcfg_arch arch;
    char arch_name[32];          /* as the file says: "llama", "gemma3", "bert" */

    /* -- shape -- */
    int64_t vocab_size;
    int64_t hidden_size;         /* d_model                                    */
    int64_t intermediate_size;   /* MLP inner width                            */
    int64_t n_layers;
    int64_t n_heads;             /* query heads                                */
    int64_t n_kv_heads;          /* key/value heads (GQA); == n_heads for MHA  */
    int64_t head_dim;            /* per-head width; may differ from hidden/heads */
    int64_t max_position_embeddings; /* trained context length                 */

    /* -- normalisation and activation -- */
    float norm_eps;              /* rms_norm_eps or layer_norm_eps             */
    mcfg_act act;

    /* -- rotary position embedding -- */
    float rope_theta;            /* base of global (full-attention) layers     */
    float rope_local_theta;      /* base of sliding-window layers (gemma3); 0 = same */
    mcfg_rope_scaling rope_scaling;
    float rope_factor;
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int64_t rope_original_max_pos; /* llama3/yarn original context              */
    float rope_yarn_beta_fast;
    float rope_yarn_beta_slow;
    float rope_attention_factor; /* yarn attention scaling; 0 = derive          */
    float partial_rotary_factor; /* fraction of head_dim rotated (1.0 = all)   */

    /* -- attention -- */
    int64_t sliding_window;      /* tokens; 0 = none                           */
    int64_t sliding_window_pattern; /* gemma3: every Nth layer is global (6)   */
    uint8_t layer_sliding[MCFG_MAX_LAYERS]; /* 1 = layer i uses the window     */
    bool qk_norm;                /* RMSNorm on q and k per head (qwen3, gemma3) */
    bool attention_bias;         /* bias on q/k/v projections (qwen2)          */
    bool attention_out_bias;     /* bias on the output projection              */
    bool mlp_bias;
    float query_pre_attn_scalar; /* gemma: scores scaled by 1/sqrt(this); 0 = head_dim */
    float attn_logit_softcap;    /* 0 = off */
    float final_logit_softcap;   /* 0 = off */

    /* -- embeddings -- */
    bool tie_word_embeddings;    /* lm_head shares the token embedding          */
    bool embed_scale_sqrt_hidden;/* gemma: embeddings times sqrt(hidden_size)  */
    int64_t type_vocab_size;     /* bert token types                            */
    bool absolute_positions;     /* bert learned position embeddings            */

    /* -- embeddings models (sentence-transformers) -- */
    mcfg_pooling pooling;
    bool normalize;              /* L2-normalise pooled vectors                 */

    /* -- special tokens (-1 = none) -- */
    int64_t bos_token_id;
    int64_t eos_token_id;
    int64_t pad_token_id;

    char torch_dtype[16];        /* "bfloat16", "float32", ... or ""           */
} model_config;

/* Reset every field to its neutral default (ids -1, factors 1, ...). */
void mcfg_init(model_config *c);

/* Name of an architecture ("llama"), "unknown" for MCFG_ARCH_UNKNOWN. */
const char *mcfg_arch_name(mcfg_arch a);

/* Architecture from a model_type / GGUF general.architecture string. */
mcfg_arch mcfg_arch_from_name(const char *name);

/* Fill derived fields (head_dim from hidden/heads, n_kv_heads = n_heads,
 * per-layer sliding flags from window + pattern) and check the shape is
 * usable: positive sizes, heads dividing evenly, n_layers <= MCFG_MAX_LAYERS.
 * Errors: KILN_ERR_FORMAT naming the offending field. */
kiln_status mcfg_finalize(model_config *c);

#endif /* KILN_FORMAT_MODEL_CONFIG_H */

/*
 * hf_config.c - config.json -> model_config; see hf_config.h.
 *
 * Order of a parse:
 *   1. JSON (duplicate keys rejected) -> model_type -> architecture; for the
 *      multimodal gemma3 the fields are read from "text_config".
 *   2. hf_defaults(): the family's transformers defaults (gemma3's text
 *      config, for instance, often gives only hidden_size and layer count).
 *   3. Each group of fields overrides the defaults where the file gives a
 *      non-null value; a value of the wrong JSON type is KILN_ERR_FORMAT
 *      naming the field ("text_config.hidden_size").
 *   4. mcfg_finalize() derives and checks the shape.
 * Invariant: the helpers never change a field the file leaves out or sets
 * to null, so step 2 is the only source of defaults.
 */
#include "format/hf_config.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/fmap.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define HF_MAX_FILE_BYTES (16u * 1000u * 1000u)

/* Where fields are read from, and how their names are shown. */
typedef struct hf_ctx {
    json_t *obj;      /* the object holding the text model's fields */
    json_t *outer;    /* multimodal wrapper (gemma3), else NULL      */
    const char *pfx;  /* "" or "text_config."                        */
} hf_ctx;

/* ---- typed field access ------------------------------------------------- */

static const char *hf_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static kiln_status hf_type_err(const char *pfx, const char *key, const char *want,
                               const json_t *v)
{
    return kiln_err_set(KILN_ERR_FORMAT, "config.json: '%s%s' must be %s, not %s", pfx, key,
                        want, hf_type_name(v));
}

/* Non-null value of key in o, or NULL (absent, null, or o is NULL). */
static json_t *hf_get(json_t *o, const char *key)
{
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

/* Integer field; a real with an integral value is accepted. */
static kiln_status hf_int(json_t *o, const char *pfx, const char *key, int64_t *out)
{
    json_t *v = hf_get(o, key);
    if (!v)
        return KILN_OK;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return KILN_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9.0e18) {
            *out = (int64_t)d;
            return KILN_OK;
        }
    }
    return hf_type_err(pfx, key, "an integer", v);
}

static kiln_status hf_float(json_t *o, const char *pfx, const char *key, float *out)
{
    json_t *v = hf_get(o, key);
    if (!v)
        return KILN_OK;
    if (!json_is_number(v))
        return hf_type_err(pfx, key, "a number", v);
    *out = (float)json_number_value(v);
    return KILN_OK;
}

static kiln_status hf_bool(json_t *o, const char *pfx, const char *key, bool *out)
{
    json_t *v = hf_get(o, key);
    if (!v)
        return KILN_OK;
    if (!json_is_boolean(v))
        return hf_type_err(pfx, key, "a boolean", v);
    *out = json_is_true(v);
    return KILN_OK;
}

/* String field; *out stays NULL-or-unchanged when absent.  Borrowed from o. */
static kiln_status hf_str(json_t *o, const char *pfx, const char *key, const char **out)
{
    json_t *v = hf_get(o, key);
    if (!v)
        return KILN_OK;
    if (!json_is_string(v))
        return hf_type_err(pfx, key, "a string", v);
    *out = json_string_value(v);
    return KILN_OK;
}

/* A string value from a fixed vocabulary (activations, rope types). */
typedef struct hf_name {
    const char *name;
    int value;
} hf_name;

/* The value the table gives s; KILN_ERR_UNSUPPORTED naming the field and s
 * when it has none. */
static kiln_status hf_lookup(const hf_name *t, size_t n, const char *pfx, const char *key,
                             const char *s, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(s, t[i].name)) {
            *out = t[i].value;
            return KILN_OK;
        }
    }
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "config.json: '%s%s' = '%.64s' is not supported",
                        pfx, key, s);
}

/* Token id: an integer, or a list of them (the first one is kept). */
static kiln_status hf_token(json_t *o, const char *pfx, const char *key, int64_t *out)
{
    json_t *v = hf_get(o, key);
    if (v && json_is_array(v)) {
        json_t *first = json_array_get(v, 0);
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_integer(json_array_get(v, i)))
                return hf_type_err(pfx, key, "an integer or a list of integers", v);
        if (first)
            *out = json_integer_value(first);
        return KILN_OK;
    }
    if (v && !json_is_integer(v))
        return hf_type_err(pfx, key, "an integer or a list of integers", v);
    return hf_int(o, pfx, key, out);
}

/* ---- family defaults (transformers' config classes) ----------------------- */

static void hf_defaults_decoder(model_config *c, mcfg_arch a)
{
    c->vocab_size = a == MCFG_ARCH_QWEN2 || a == MCFG_ARCH_QWEN3 ? 151936 : 32000;
    c->hidden_size = 4096;
    c->intermediate_size = a == MCFG_ARCH_LLAMA ? 11008 : a == MCFG_ARCH_MISTRAL ? 14336 : 22016;
    c->n_layers = 32;
    c->n_heads = 32;
    c->n_kv_heads = a == MCFG_ARCH_MISTRAL ? 8 : 0;
    c->head_dim = a == MCFG_ARCH_QWEN3 ? 128 : 0;
    c->max_position_embeddings = a == MCFG_ARCH_LLAMA ? 2048 : 32768;
    if (a == MCFG_ARCH_MISTRAL)
        c->max_position_embeddings = 4096 * 32;
    c->sliding_window = a == MCFG_ARCH_LLAMA ? 0 : 4096;
    c->norm_eps = 1e-6f;
    c->act = MCFG_ACT_SILU;
    c->rope_theta = 10000.0f;
    if (a == MCFG_ARCH_LLAMA || a == MCFG_ARCH_MISTRAL) {
        c->bos_token_id = 1;
        c->eos_token_id = 2;
    }
    c->attention_bias = a == MCFG_ARCH_QWEN2; /* qwen2: q/k/v always biased */
    c->qk_norm = a == MCFG_ARCH_QWEN3;
}

static void hf_defaults_gemma3(model_config *c)
{
    c->vocab_size = 262208;
    c->hidden_size = 2304;
    c->intermediate_size = 9216;
    c->n_layers = 26;
    c->n_heads = 8;
    c->n_kv_heads = 4;
    c->head_dim = 256;
    c->max_position_embeddings = 131072;
    c->norm_eps = 1e-6f;
    c->act = MCFG_ACT_GELU_TANH;
    c->rope_theta = 1000000.0f;
    c->rope_local_theta = 10000.0f;
    c->sliding_window = 4096;
    c->sliding_window_pattern = 6;
    c->query_pre_attn_scalar = 256.0f;
    c->qk_norm = true;
    c->tie_word_embeddings = true;
    c->embed_scale_sqrt_hidden = true;
    c->bos_token_id = 2;
    c->eos_token_id = 1;
    c->pad_token_id = 0;
}

static void hf_defaults_bert(model_config *c)
{
    c->vocab_size = 30522;
    c->hidden_size = 768;
    c->intermediate_size = 3072;
    c->n_layers = 12;
    c->n_heads = 12;
    c->max_position_embeddings = 512;
    c->type_vocab_size = 2;
    c->norm_eps = 1e-12f;
    c->act = MCFG_ACT_GELU;
    c->pad_token_id = 0;
    c->attention_bias = true;
    c->attention_out_bias = true;
    c->mlp_bias = true;
    c->absolute_positions = true;
}

static void hf_defaults(model_config *c, mcfg_arch a)
{
    c->arch = a;
    if (a == MCFG_ARCH_GEMMA3)
        hf_defaults_gemma3(c);
    else if (a == MCFG_ARCH_BERT)
        hf_defaults_bert(c);
    else
        hf_defaults_decoder(c, a);
}

/* ---- field groups ----------------------------------------------------------- */

static kiln_status hf_read_shape(const hf_ctx *cx, model_config *c)
{
    json_t *o = cx->obj;
    const char *p = cx->pfx;
    kiln_status st;
    if ((st = hf_int(o, p, "vocab_size", &c->vocab_size)) ||
        (st = hf_int(o, p, "hidden_size", &c->hidden_size)) ||
        (st = hf_int(o, p, "intermediate_size", &c->intermediate_size)) ||
        (st = hf_int(o, p, "num_hidden_layers", &c->n_layers)) ||
        (st = hf_int(o, p, "num_attention_heads", &c->n_heads)) ||
        (st = hf_int(o, p, "num_key_value_heads", &c->n_kv_heads)) ||
        (st = hf_int(o, p, "head_dim", &c->head_dim)) ||
        (st = hf_int(o, p, "max_position_embeddings", &c->max_position_embeddings)))
        return st;
    if (c->arch == MCFG_ARCH_BERT)
        return hf_int(o, p, "type_vocab_size", &c->type_vocab_size);
    return KILN_OK;
}

static kiln_status hf_parse_act(const char *pfx, const char *key, const char *s, mcfg_act *out)
{
    static const hf_name acts[] = {
        {"silu", MCFG_ACT_SILU},          {"swish", MCFG_ACT_SILU},
        {"gelu", MCFG_ACT_GELU},          {"gelu_pytorch_tanh", MCFG_ACT_GELU_TANH},
        {"gelu_new", MCFG_ACT_GELU_TANH}, {"gelu_fast", MCFG_ACT_GELU_TANH},
        {"relu", MCFG_ACT_RELU},
    };
    int v = 0;
    kiln_status st = hf_lookup(acts, KILN_ARRAY_LEN(acts), pfx, key, s, &v);
    if (!st)
        *out = (mcfg_act)v;
    return st;
}

/* Norm epsilon and activation (gemma names it hidden_activation). */
static kiln_status hf_read_norm_act(const hf_ctx *cx, model_config *c)
{
    const char *act = NULL, *act_key = "hidden_act";
    kiln_status st;
    if ((st = hf_float(cx->obj, cx->pfx, "rms_norm_eps", &c->norm_eps)) ||
        (st = hf_float(cx->obj, cx->pfx, "layer_norm_eps", &c->norm_eps)) ||
        (st = hf_str(cx->obj, cx->pfx, "hidden_act", &act)))
        return st;
    if (c->arch == MCFG_ARCH_GEMMA3) {
        const char *ga = NULL;
        if ((st = hf_str(cx->obj, cx->pfx, "hidden_activation", &ga)))
            return st;
        if (ga) {
            act = ga;
            act_key = "hidden_activation";
        }
    }
    return act ? hf_parse_act(cx->pfx, act_key, act, &c->act) : KILN_OK;
}

/* rope_scaling.{rope_type|type} -> enum; pfx is "...rope_scaling.". */
static kiln_status hf_rope_type(const char *pfx, json_t *rs, mcfg_rope_scaling *out)
{
    static const hf_name types[] = {
        {"default", MCFG_ROPE_NONE}, {"linear", MCFG_ROPE_LINEAR}, {"dynamic", MCFG_ROPE_DYNAMIC},
        {"yarn", MCFG_ROPE_YARN},    {"llama3", MCFG_ROPE_LLAMA3},
    };
    const char *s = NULL;
    int v = 0;
    kiln_status st;
    if ((st = hf_str(rs, pfx, "type", &s)) || (st = hf_str(rs, pfx, "rope_type", &s)))
        return st;
    if (!s)
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: '%srope_type' is missing", pfx);
    if ((st = hf_lookup(types, KILN_ARRAY_LEN(types), pfx, "rope_type", s, &v)))
        return st;
    *out = (mcfg_rope_scaling)v;
    return KILN_OK;
}

/* The scaling fields of one rope object (v4 "rope_scaling" or a v5
 * "rope_parameters" entry); p is its key path ending in '.'. */
static kiln_status hf_read_scaling_obj(json_t *rs, const char *p, model_config *c)
{
    kiln_status st;
    if ((st = hf_rope_type(p, rs, &c->rope_scaling)))
        return st;
    if (c->rope_scaling == MCFG_ROPE_NONE)
        return KILN_OK;
    if (c->rope_scaling == MCFG_ROPE_LLAMA3)
        c->rope_high_freq_factor = 4.0f; /* transformers' default */
    if (!hf_get(rs, "factor"))
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: '%sfactor' is missing", p);
    if ((st = hf_float(rs, p, "factor", &c->rope_factor)) ||
        (st = hf_float(rs, p, "low_freq_factor", &c->rope_low_freq_factor)) ||
        (st = hf_float(rs, p, "high_freq_factor", &c->rope_high_freq_factor)) ||
        (st = hf_int(rs, p, "original_max_position_embeddings", &c->rope_original_max_pos)) ||
        (st = hf_float(rs, p, "beta_fast", &c->rope_yarn_beta_fast)) ||
        (st = hf_float(rs, p, "beta_slow", &c->rope_yarn_beta_slow)) ||
        (st = hf_float(rs, p, "attention_factor", &c->rope_attention_factor)))
        return st;
    return KILN_OK;
}

static kiln_status hf_read_rope_scaling(const hf_ctx *cx, model_config *c)
{
    json_t *rs = hf_get(cx->obj, "rope_scaling");
    char p[64];

    if (!rs)
        return KILN_OK;
    if (!json_is_object(rs))
        return hf_type_err(cx->pfx, "rope_scaling", "an object", rs);
    snprintf(p, sizeof p, "%srope_scaling.", cx->pfx);
    return hf_read_scaling_obj(rs, p, c);
}

/* transformers 5 writes rope settings only as "rope_parameters": either one
 * object {rope_theta, rope_type, factor, ...} or, for models with several
 * layer kinds (gemma3), one per kind: {"full_attention": {...},
 * "sliding_attention": {...}}.  When present it is authoritative. */
static kiln_status hf_read_rope_parameters(const hf_ctx *cx, model_config *c)
{
    json_t *rp = hf_get(cx->obj, "rope_parameters"), *full, *slide;
    char p[96];
    kiln_status st;

    if (!rp)
        return KILN_OK;
    if (!json_is_object(rp))
        return hf_type_err(cx->pfx, "rope_parameters", "an object", rp);
    full = hf_get(rp, "full_attention");
    slide = hf_get(rp, "sliding_attention");
    if (!full && !slide) {
        snprintf(p, sizeof p, "%srope_parameters.", cx->pfx);
        if ((st = hf_float(rp, p, "rope_theta", &c->rope_theta)))
            return st;
        return hf_read_scaling_obj(rp, p, c);
    }
    if (slide) {
        model_config local = *c;
        if (!json_is_object(slide))
            return hf_type_err(cx->pfx, "rope_parameters.sliding_attention", "an object", slide);
        snprintf(p, sizeof p, "%srope_parameters.sliding_attention.", cx->pfx);
        if ((st = hf_float(slide, p, "rope_theta", &c->rope_local_theta)) ||
            (st = hf_read_scaling_obj(slide, p, &local)))
            return st;
        if (local.rope_scaling != MCFG_ROPE_NONE)
            return kiln_err_set(KILN_ERR_UNSUPPORTED,
                                "config.json: '%srope_type': scaled rope on sliding-window "
                                "layers is not supported", p);
    }
    if (full) {
        if (!json_is_object(full))
            return hf_type_err(cx->pfx, "rope_parameters.full_attention", "an object", full);
        snprintf(p, sizeof p, "%srope_parameters.full_attention.", cx->pfx);
        if ((st = hf_float(full, p, "rope_theta", &c->rope_theta)))
            return st;
        c->rope_scaling = MCFG_ROPE_NONE;
        return hf_read_scaling_obj(full, p, c);
    }
    return KILN_OK;
}

static kiln_status hf_read_rope(const hf_ctx *cx, model_config *c)
{
    kiln_status st;
    if ((st = hf_float(cx->obj, cx->pfx, "rope_theta", &c->rope_theta)) ||
        (st = hf_float(cx->obj, cx->pfx, "partial_rotary_factor", &c->partial_rotary_factor)) ||
        (st = hf_read_rope_scaling(cx, c)))
        return st;
    if (c->arch == MCFG_ARCH_GEMMA3 &&
        (st = hf_float(cx->obj, cx->pfx, "rope_local_base_freq", &c->rope_local_theta)))
        return st;
    return hf_read_rope_parameters(cx, c);
}

/* layer_types: one "sliding_attention" / "full_attention" per layer; it
 * replaces any window pattern. */
static kiln_status hf_read_layer_types(const hf_ctx *cx, model_config *c, json_t *lt)
{
    bool any = false;
    if (!json_is_array(lt))
        return hf_type_err(cx->pfx, "layer_types", "an array", lt);
    if ((int64_t)json_array_size(lt) != c->n_layers || c->n_layers > MCFG_MAX_LAYERS)
        return kiln_err_set(KILN_ERR_FORMAT,
                            "config.json: '%slayer_types' has %zu entries for %lld layers",
                            cx->pfx, json_array_size(lt), (long long)c->n_layers);
    for (size_t i = 0; i < json_array_size(lt); i++) {
        const char *s = json_string_value(json_array_get(lt, i));
        if (!s || (strcmp(s, "sliding_attention") && strcmp(s, "full_attention")))
            return kiln_err_set(KILN_ERR_UNSUPPORTED,
                                "config.json: '%slayer_types[%zu]' is not \"sliding_attention\" "
                                "or \"full_attention\"", cx->pfx, i);
        c->layer_sliding[i] = s[0] == 's';
        any |= c->layer_sliding[i] != 0;
    }
    c->sliding_window_pattern = 0;
    if (any && c->sliding_window <= 0)
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: '%slayer_types' has sliding layers "
                            "but '%ssliding_window' is not set", cx->pfx, cx->pfx);
    if (!any)
        c->sliding_window = 0;
    return KILN_OK;
}

/* qwen2/qwen3: the window applies only with use_sliding_window, to layers
 * at index >= max_window_layers. */
static kiln_status hf_read_qwen_window(const hf_ctx *cx, model_config *c)
{
    bool use = false, any = false;
    int64_t mwl = 28;
    kiln_status st;
    if ((st = hf_bool(cx->obj, cx->pfx, "use_sliding_window", &use)) ||
        (st = hf_int(cx->obj, cx->pfx, "max_window_layers", &mwl)))
        return st;
    if (!use || c->sliding_window <= 0) {
        c->sliding_window = 0;
        return KILN_OK;
    }
    for (int64_t i = mwl < 0 ? 0 : mwl; i < c->n_layers && i < MCFG_MAX_LAYERS; i++) {
        c->layer_sliding[i] = 1;
        any = true;
    }
    if (!any)
        c->sliding_window = 0;
    return KILN_OK;
}

/* sliding_window with each family's rule for which layers use it. */
static kiln_status hf_read_window(const hf_ctx *cx, model_config *c)
{
    json_t *o = cx->obj, *lt = hf_get(o, "layer_types");
    kiln_status st;

    if (c->arch == MCFG_ARCH_LLAMA || c->arch == MCFG_ARCH_BERT)
        return KILN_OK;
    if (json_is_object(o) && json_object_get(o, "sliding_window") &&
        json_is_null(json_object_get(o, "sliding_window")))
        c->sliding_window = 0; /* an explicit null turns the family default off */
    if ((st = hf_int(o, cx->pfx, "sliding_window", &c->sliding_window)))
        return st;
    if (lt)
        return hf_read_layer_types(cx, c, lt);
    if (c->arch == MCFG_ARCH_QWEN2 || c->arch == MCFG_ARCH_QWEN3)
        return hf_read_qwen_window(cx, c);
    if (c->arch == MCFG_ARCH_GEMMA3 &&
        ((st = hf_int(o, cx->pfx, "_sliding_window_pattern", &c->sliding_window_pattern)) ||
         (st = hf_int(o, cx->pfx, "sliding_window_pattern", &c->sliding_window_pattern))))
        return st;
    return KILN_OK;
}

static kiln_status hf_read_attention(const hf_ctx *cx, model_config *c)
{
    json_t *o = cx->obj;
    const char *p = cx->pfx;
    kiln_status st;

    if (c->arch != MCFG_ARCH_BERT && c->arch != MCFG_ARCH_QWEN2) {
        if ((st = hf_bool(o, p, "attention_bias", &c->attention_bias)))
            return st;
        c->attention_out_bias = c->attention_bias;
    }
    if (c->arch != MCFG_ARCH_BERT && (st = hf_bool(o, p, "mlp_bias", &c->mlp_bias)))
        return st;
    if ((st = hf_float(o, p, "query_pre_attn_scalar", &c->query_pre_attn_scalar)) ||
        (st = hf_float(o, p, "attn_logit_softcapping", &c->attn_logit_softcap)) ||
        (st = hf_float(o, p, "final_logit_softcapping", &c->final_logit_softcap)))
        return st;
    return hf_read_window(cx, c);
}

/* bert: only absolute learned positions are implemented. */
static kiln_status hf_read_bert(const hf_ctx *cx, model_config *c)
{
    const char *pos = NULL;
    kiln_status st;
    if ((st = hf_str(cx->obj, cx->pfx, "position_embedding_type", &pos)))
        return st;
    if (pos && strcmp(pos, "absolute"))
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "config.json: '%sposition_embedding_type' = '%.64s' is not supported",
                            cx->pfx, pos);
    return KILN_OK;
}

/* Token ids, tie_word_embeddings and dtype, from the wrapper first (when
 * there is one) and then from the text model, which wins. */
static kiln_status hf_read_misc(json_t *o, const char *pfx, model_config *c)
{
    const char *dt = NULL;
    kiln_status st;
    if ((st = hf_token(o, pfx, "bos_token_id", &c->bos_token_id)) ||
        (st = hf_token(o, pfx, "eos_token_id", &c->eos_token_id)) ||
        (st = hf_token(o, pfx, "pad_token_id", &c->pad_token_id)) ||
        (st = hf_bool(o, pfx, "tie_word_embeddings", &c->tie_word_embeddings)) ||
        (st = hf_str(o, pfx, "torch_dtype", &dt)) || (st = hf_str(o, pfx, "dtype", &dt)))
        return st;
    if (dt && strlen(dt) >= sizeof c->torch_dtype)
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: '%storch_dtype' = '%.64s' is "
                            "not a dtype name", pfx, dt);
    if (dt)
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt);
    return KILN_OK;
}

/* ---- entry points ------------------------------------------------------------- */

/* model_type -> architecture and the object holding the text model. */
static kiln_status hf_resolve(json_t *root, hf_ctx *cx, model_config *c)
{
    const char *mt = NULL;
    mcfg_arch a;
    kiln_status st;

    if ((st = hf_str(root, "", "model_type", &mt)))
        return st;
    if (!mt)
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: no 'model_type'");
    a = mcfg_arch_from_name(mt);
    if (a == MCFG_ARCH_UNKNOWN)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "config.json: model_type '%.64s' is not supported", mt);
    snprintf(c->arch_name, sizeof c->arch_name, "%s", mt);
    cx->obj = root;
    cx->outer = NULL;
    cx->pfx = "";
    if (!strcmp(mt, "gemma3")) {
        json_t *tc = hf_get(root, "text_config");
        if (tc && !json_is_object(tc))
            return hf_type_err("", "text_config", "an object", tc);
        cx->obj = tc; /* NULL: every field takes its default */
        cx->outer = root;
        cx->pfx = "text_config.";
    }
    hf_defaults(c, a);
    return KILN_OK;
}

static kiln_status hf_read_all(json_t *root, model_config *c)
{
    hf_ctx cx = {0};
    kiln_status st;

    if (!json_is_object(root))
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: top level is not a JSON object");
    if ((st = hf_resolve(root, &cx, c)) || (st = hf_read_shape(&cx, c)) ||
        (st = hf_read_norm_act(&cx, c)) || (st = hf_read_rope(&cx, c)) ||
        (st = hf_read_attention(&cx, c)))
        return st;
    if (c->arch == MCFG_ARCH_BERT && (st = hf_read_bert(&cx, c)))
        return st;
    if (cx.outer && (st = hf_read_misc(cx.outer, "", c)))
        return st;
    if ((st = hf_read_misc(cx.obj, cx.pfx, c)))
        return st;
    return mcfg_finalize(c);
}

kiln_status hf_config_parse(const char *json, size_t len, model_config *out)
{
    json_error_t jerr;
    json_t *root;
    kiln_status st;

    mcfg_init(out);
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return kiln_err_set(KILN_ERR_FORMAT, "config.json: not valid JSON: %s (line %d, column %d)",
                            jerr.text, jerr.line, jerr.column);
    st = hf_read_all(root, out);
    json_decref(root);
    return st;
}

/* ---- sentence-transformers modules --------------------------------------------- */

/* Map and parse a JSON file; *root owned by the caller. */
static kiln_status hf_load_json(const char *path, json_t **root)
{
    json_error_t jerr;
    fmap *f = NULL;
    kiln_status st;

    if ((st = fmap_open(path, &f)))
        return st;
    if (fmap_size(f) > HF_MAX_FILE_BYTES) {
        fmap_close(f);
        return kiln_err_set(KILN_ERR_FORMAT, "%s: larger than %u bytes", path,
                            HF_MAX_FILE_BYTES);
    }
    *root = json_loadb((const char *)fmap_data(f), fmap_size(f), JSON_REJECT_DUPLICATES, &jerr);
    fmap_close(f);
    if (!*root)
        return kiln_err_set(KILN_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path,
                            jerr.text, jerr.line, jerr.column);
    return KILN_OK;
}

static char *hf_join(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *p = kiln_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s%s", a, b, c[0] ? "/" : "", c);
    return p;
}

/* The one pooling mode of a Pooling module's config.json object. */
static kiln_status hf_pooling_mode(const char *path, json_t *pc, mcfg_pooling *out)
{
    static const struct {
        const char *flag, *name;
        mcfg_pooling mode; /* MCFG_POOL_NONE: kiln does not implement it */
    } modes[] = {
        {"pooling_mode_mean_tokens", "mean", MCFG_POOL_MEAN},
        {"pooling_mode_cls_token", "cls", MCFG_POOL_CLS},
        {"pooling_mode_max_tokens", "max", MCFG_POOL_MAX},
        {"pooling_mode_lasttoken", "lasttoken", MCFG_POOL_LAST},
        {"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens", MCFG_POOL_NONE},
        {"pooling_mode_weightedmean_tokens", "weightedmean", MCFG_POOL_NONE},
    };
    const char *mode = json_string_value(hf_get(pc, "pooling_mode"));
    int on = 0;
    for (size_t i = 0; i < KILN_ARRAY_LEN(modes); i++) {
        json_t *v = hf_get(pc, modes[i].flag);
        bool set = mode ? !strcmp(mode, modes[i].name) : json_is_true(v);
        if (!set)
            continue;
        if (modes[i].mode == MCFG_POOL_NONE)
            return kiln_err_set(KILN_ERR_UNSUPPORTED, "%s: pooling mode '%s' is not supported",
                                path, modes[i].name);
        *out = modes[i].mode;
        on++;
    }
    if (on != 1)
        return kiln_err_set(on ? KILN_ERR_UNSUPPORTED : KILN_ERR_FORMAT,
                            "%s: %s pooling modes are set; kiln needs exactly one", path,
                            on ? "several" : "no");
    return KILN_OK;
}

static kiln_status hf_read_pooling(const char *dir, const char *sub, model_config *c)
{
    char *path;
    json_t *pc = NULL;
    kiln_status st;

    if (strstr(sub, "..") || sub[0] == '/')
        return kiln_err_set(KILN_ERR_FORMAT, "%s/modules.json: module path '%.200s' leaves the "
                            "model directory", dir, sub);
    if (!(path = hf_join(dir, sub, "config.json")))
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    if (!(st = hf_load_json(path, &pc)))
        st = hf_pooling_mode(path, pc, &c->pooling);
    json_decref(pc);
    kiln_free(path);
    return st;
}

/* One modules.json entry: Transformer (the model itself), Pooling, Normalize. */
static kiln_status hf_read_module(const char *dir, json_t *mod, model_config *c)
{
    const char *type = json_string_value(hf_get(mod, "type"));
    const char *sub = json_string_value(hf_get(mod, "path"));
    const char *dot = type ? strrchr(type, '.') : NULL;
    const char *name = dot ? dot + 1 : type;

    if (!name)
        return kiln_err_set(KILN_ERR_FORMAT, "%s/modules.json: an entry has no \"type\" string",
                            dir);
    if (!strcmp(name, "Transformer"))
        return KILN_OK;
    if (!strcmp(name, "Normalize")) {
        c->normalize = true;
        return KILN_OK;
    }
    if (!strcmp(name, "Pooling")) {
        if (!sub)
            return kiln_err_set(KILN_ERR_FORMAT, "%s/modules.json: Pooling has no \"path\"", dir);
        return hf_read_pooling(dir, sub, c);
    }
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "%s/modules.json: module '%.200s' is not supported",
                        dir, type);
}

static kiln_status hf_read_modules(const char *dir, const char *path, model_config *c)
{
    json_t *mods = NULL;
    kiln_status st;

    if ((st = hf_load_json(path, &mods)))
        return st;
    if (!json_is_array(mods)) {
        st = kiln_err_set(KILN_ERR_FORMAT, "%s: not a JSON array", path);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(mods) && !st; i++)
        st = hf_read_module(dir, json_array_get(mods, i), c);
done:
    json_decref(mods);
    return st;
}

kiln_status hf_config_load_dir(const char *dir, model_config *out)
{
    char *path = hf_join(dir, "config.json", "");
    json_t *root = NULL;
    struct stat sb;
    kiln_status st;

    mcfg_init(out);
    if (!path)
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    if ((st = hf_load_json(path, &root)))
        goto done;
    if ((st = hf_read_all(root, out))) {
        kiln_err_wrap(st, "%s", path);
        goto done;
    }
    kiln_free(path);
    if (!(path = hf_join(dir, "modules.json", ""))) {
        st = kiln_err_set(KILN_ERR_OOM, "out of memory");
        goto done;
    }
    if (stat(path, &sb) == 0)
        st = hf_read_modules(dir, path, out);
done:
    json_decref(root);
    kiln_free(path);
    return st;
}

kiln_status hf_config_load(const char *path, model_config *out)
{
    json_t *root = NULL;
    struct stat sb;
    kiln_status st;

    mcfg_init(out);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return hf_config_load_dir(path, out);
    if ((st = hf_load_json(path, &root)))
        return st;
    if ((st = hf_read_all(root, out)))
        kiln_err_wrap(st, "%s", path);
    json_decref(root);
    return st;
}

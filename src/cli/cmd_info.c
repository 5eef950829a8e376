/*
 * cmd_info.c - `kiln info [--json] MODEL`: describe a model without loading
 * it: architecture and shape, parameter count, bytes per stored type,
 * context, vocabulary and tokenizer, chat template, and the memory a load
 * takes (weights as stored, and the KV cache per token / at full context).
 */
#include "cli/cli.h"

#include "base/error.h"
#include "format/dtype.h"
#include "format/gguf.h"
#include "format/model_source.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Everything the report shows, computed once for both output forms. */
typedef struct info_summary {
    int64_t params;
    uint64_t weight_bytes;            /* as stored (what a load maps/reads) */
    uint64_t bf16_bytes;              /* the same weights held as bf16      */
    int64_t dt_count[KILN_DT_COUNT];  /* tensors per stored type            */
    uint64_t dt_bytes[KILN_DT_COUNT]; /* bytes per stored type              */
    int64_t dt_params[KILN_DT_COUNT]; /* elements per stored type           */
    uint64_t kv_bytes_per_token;      /* f16 K+V, all layers (0: encoder)   */
    uint64_t kv_bytes_full_context;   /* window layers hold at most the window */
} info_summary;

static void info_summarize(const model_source *m, info_summary *s)
{
    const model_config *c = msrc_config(m);

    memset(s, 0, sizeof *s);
    for (int64_t i = 0; i < msrc_tensor_count(m); i++) {
        const msrc_tensor *t = msrc_tensor_at(m, i);
        s->params += t->n_elems;
        s->weight_bytes += t->nbytes;
        s->bf16_bytes += (uint64_t)t->n_elems * 2;
        if ((int)t->dtype >= 0 && t->dtype < KILN_DT_COUNT) {
            s->dt_count[t->dtype]++;
            s->dt_bytes[t->dtype] += t->nbytes;
            s->dt_params[t->dtype] += t->n_elems;
        }
    }
    if (c->arch == MCFG_ARCH_BERT)
        return; /* an encoder keeps no cache */
    uint64_t per_layer = 2ull * 2ull * (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim;
    s->kv_bytes_per_token = per_layer * (uint64_t)c->n_layers;
    for (int64_t l = 0; l < c->n_layers && l < MCFG_MAX_LAYERS; l++) {
        int64_t tokens = c->max_position_embeddings;
        if (c->layer_sliding[l] && c->sliding_window > 0 && c->sliding_window < tokens)
            tokens = c->sliding_window;
        s->kv_bytes_full_context += per_layer * (uint64_t)tokens;
    }
}

static const char *info_fmt_bytes(uint64_t b, char *buf, size_t cap)
{
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (double)(1ull << 30));
    else
        snprintf(buf, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    return buf;
}

static const char *info_act_name(mcfg_act a)
{
    switch (a) {
    case MCFG_ACT_SILU: return "silu";
    case MCFG_ACT_GELU: return "gelu";
    case MCFG_ACT_GELU_TANH: return "gelu_tanh";
    case MCFG_ACT_RELU: return "relu";
    }
    return "?";
}

static const char *info_pool_name(mcfg_pooling p)
{
    switch (p) {
    case MCFG_POOL_NONE: return "none";
    case MCFG_POOL_MEAN: return "mean";
    case MCFG_POOL_CLS: return "cls";
    case MCFG_POOL_LAST: return "last";
    case MCFG_POOL_MAX: return "max";
    }
    return "?";
}

static const char *info_rope_name(mcfg_rope_scaling r)
{
    switch (r) {
    case MCFG_ROPE_NONE: return "none";
    case MCFG_ROPE_LINEAR: return "linear";
    case MCFG_ROPE_DYNAMIC: return "dynamic";
    case MCFG_ROPE_YARN: return "yarn";
    case MCFG_ROPE_LLAMA3: return "llama3";
    }
    return "?";
}

static int64_t info_sliding_layers(const model_config *c)
{
    int64_t n = 0;
    for (int64_t l = 0; l < c->n_layers && l < MCFG_MAX_LAYERS; l++)
        n += c->layer_sliding[l];
    return n;
}

static void info_print_text(const model_source *m, const info_summary *s)
{
    const model_config *c = msrc_config(m);
    size_t tlen = 0;
    char b1[32], b2[32];

    printf("model            %s\n", msrc_name(m));
    if (msrc_get_kind(m) == MSRC_GGUF)
        printf("format           GGUF v%u\n", gguf_version(msrc_gguf(m)));
    else
        printf("format           Hugging Face directory, safetensors in %d file(s)\n",
               msrc_file_count(m));
    printf("architecture     %s\n", mcfg_arch_name(c->arch));
    printf("parameters       %lld (%.1f M)\n", (long long)s->params, (double)s->params / 1e6);
    printf("layers           %lld\n", (long long)c->n_layers);
    printf("hidden size      %lld (intermediate %lld, activation %s)\n",
           (long long)c->hidden_size, (long long)c->intermediate_size, info_act_name(c->act));
    printf("attention heads  %lld query, %lld key/value, head_dim %lld\n",
           (long long)c->n_heads, (long long)c->n_kv_heads, (long long)c->head_dim);
    printf("context length   %lld\n", (long long)c->max_position_embeddings);
    printf("vocabulary       %lld (%s tokenizer)\n", (long long)c->vocab_size,
           msrc_tokenizer_name(msrc_tokenizer_kind(m)));
    printf("chat template    %s\n", msrc_chat_template(m, &tlen) ? "yes" : "no");
    if (c->arch != MCFG_ARCH_BERT) {
        printf("rope             theta %g", (double)c->rope_theta);
        if (c->rope_local_theta > 0)
            printf(", local theta %g", (double)c->rope_local_theta);
        printf(", scaling %s\n", info_rope_name(c->rope_scaling));
    }
    if (c->sliding_window > 0)
        printf("sliding window   %lld tokens on %lld of %lld layers\n", (long long)c->sliding_window,
               (long long)info_sliding_layers(c), (long long)c->n_layers);
    if (c->pooling != MCFG_POOL_NONE)
        printf("pooling          %s%s\n", info_pool_name(c->pooling),
               c->normalize ? ", L2-normalised" : "");
    printf("norm eps         %g\n", (double)c->norm_eps);
    printf("tensors          %lld\n", (long long)msrc_tensor_count(m));
    for (int dt = 0; dt < KILN_DT_COUNT; dt++)
        if (s->dt_count[dt])
            printf("  %-8s %5lld tensors %14lld params %12s\n", dtype_name(dt),
                   (long long)s->dt_count[dt], (long long)s->dt_params[dt],
                   info_fmt_bytes(s->dt_bytes[dt], b1, sizeof b1));
    printf("weights          %s as stored (%llu bytes); %s as bf16\n",
           info_fmt_bytes(s->weight_bytes, b1, sizeof b1), (unsigned long long)s->weight_bytes,
           info_fmt_bytes(s->bf16_bytes, b2, sizeof b2));
    if (s->kv_bytes_per_token)
        printf("KV cache (f16)   %llu bytes/token; %s at full context\n",
               (unsigned long long)s->kv_bytes_per_token,
               info_fmt_bytes(s->kv_bytes_full_context, b1, sizeof b1));
    printf("memory to load   %s (weights as stored)\n",
           info_fmt_bytes(s->weight_bytes, b1, sizeof b1));
}

static json_t *info_json(const model_source *m, const info_summary *s)
{
    const model_config *c = msrc_config(m);
    json_t *o = json_object(), *types = json_object();
    size_t tlen = 0;

    json_object_set_new(o, "name", json_string(msrc_name(m)));
    json_object_set_new(o, "path", json_string(msrc_path(m)));
    json_object_set_new(o, "format", json_string(msrc_get_kind(m) == MSRC_GGUF ? "gguf" : "hf"));
    if (msrc_get_kind(m) == MSRC_GGUF)
        json_object_set_new(o, "gguf_version", json_integer(gguf_version(msrc_gguf(m))));
    json_object_set_new(o, "files", json_integer(msrc_file_count(m)));
    json_object_set_new(o, "architecture", json_string(mcfg_arch_name(c->arch)));
    json_object_set_new(o, "parameters", json_integer(s->params));
    json_object_set_new(o, "n_layers", json_integer(c->n_layers));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "n_heads", json_integer(c->n_heads));
    json_object_set_new(o, "n_kv_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "activation", json_string(info_act_name(c->act)));
    json_object_set_new(o, "context_length", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "tokenizer", json_string(msrc_tokenizer_name(msrc_tokenizer_kind(m))));
    json_object_set_new(o, "chat_template", json_boolean(msrc_chat_template(m, &tlen) != NULL));
    json_object_set_new(o, "norm_eps", json_real(c->norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "rope_local_theta", json_real(c->rope_local_theta));
    json_object_set_new(o, "rope_scaling", json_string(info_rope_name(c->rope_scaling)));
    json_object_set_new(o, "sliding_window", json_integer(c->sliding_window));
    json_object_set_new(o, "sliding_layers", json_integer(info_sliding_layers(c)));
    json_object_set_new(o, "pooling", json_string(info_pool_name(c->pooling)));
    json_object_set_new(o, "normalize", json_boolean(c->normalize));
    json_object_set_new(o, "n_tensors", json_integer(msrc_tensor_count(m)));
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        if (!s->dt_count[dt])
            continue;
        json_t *t = json_object();
        json_object_set_new(t, "tensors", json_integer(s->dt_count[dt]));
        json_object_set_new(t, "params", json_integer(s->dt_params[dt]));
        json_object_set_new(t, "bytes", json_integer((json_int_t)s->dt_bytes[dt]));
        json_object_set_new(types, dtype_name(dt), t);
    }
    json_object_set_new(o, "tensor_types", types);
    json_object_set_new(o, "weight_bytes", json_integer((json_int_t)s->weight_bytes));
    json_object_set_new(o, "weight_bytes_bf16", json_integer((json_int_t)s->bf16_bytes));
    json_object_set_new(o, "kv_bytes_per_token", json_integer((json_int_t)s->kv_bytes_per_token));
    json_object_set_new(o, "kv_bytes_full_context",
                        json_integer((json_int_t)s->kv_bytes_full_context));
    json_object_set_new(o, "load_bytes", json_integer((json_int_t)s->weight_bytes));
    return o;
}

static void info_usage(FILE *f)
{
    fprintf(f, "usage: kiln info [--json] MODEL\n\n"
               "MODEL is a GGUF file or a Hugging Face model directory (config.json,\n"
               "*.safetensors, tokenizer files).\n\n"
               "  --json   one JSON object on stdout instead of the text report\n");
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false;
    model_source *m;
    info_summary s;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            as_json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            info_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "kiln info: unknown option '%s'\n", argv[i]);
            info_usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "kiln info: one MODEL at a time\n");
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        info_usage(stderr);
        return 2;
    }
    if (msrc_open(path, &m) != KILN_OK)
        return cli_fail();
    info_summarize(m, &s);
    if (as_json) {
        json_t *o = info_json(m, &s);
        char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(o);
        if (!text) {
            msrc_close(m);
            fprintf(stderr, "kiln: out of memory\n");
            return 1;
        }
    } else {
        info_print_text(m, &s);
    }
    msrc_close(m);
    return 0;
}

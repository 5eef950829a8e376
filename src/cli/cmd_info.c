/*
 * cmd_info.c - `kiln info [--json] MODEL`: describe a model without loading
 * it: architecture and shape, parameter count, bytes per stored type,
 * context, vocabulary and tokenizer, chat template, and the memory a load
 * takes (weights as stored, and the KV cache per token / at full context).
 * A lone .safetensors file (no config.json) gets what its header allows:
 * tensors, parameters, bytes per type, its __metadata__; the architecture
 * is reported as unknown.
 */
#include "cli/cli.h"

#include "base/error.h"
#include "engine/generate.h"
#include "model/model.h"
#ifdef KILN_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "format/dtype.h"
#include "format/gguf.h"
#include "format/model_source.h"
#include "format/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    /* (a lone safetensors file has no config: arch unknown, no cache) */
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
    if (c->arch == MCFG_ARCH_BERT || c->arch == MCFG_ARCH_UNKNOWN)
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
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", (double)b / (double)(1ull << 20));
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)b);
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

/* Does the directory holding the file at path have a config.json? */
static bool info_config_beside(const char *path)
{
    char p[4096];
    struct stat sb;
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(p, sizeof p, "%.*s/config.json", (int)(slash - path), path)
                  : snprintf(p, sizeof p, "config.json");
    return n > 0 && (size_t)n < sizeof p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Tensors, bytes per type, weights and load memory: every kind has them. */
static void info_print_tensors(const model_source *m, const info_summary *s)
{
    char b1[32], b2[32];

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

/* Print up to ~`cap` bytes of s on one line: control characters as '?',
 * never cutting a UTF-8 sequence, "..." when cut. */
static void info_print_clipped(const char *s, size_t cap)
{
    size_t i = 0;
    for (; s[i] && (i < cap || ((unsigned char)s[i] & 0xC0) == 0x80); i++)
        putchar((unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
    if (s[i])
        fputs("...", stdout);
}

/* A lone safetensors file: what its header says, and what it cannot. */
static void info_print_st_file(const model_source *m, const info_summary *s)
{
    const st_model *st = msrc_safetensors(m);

    printf("model            %s\n", msrc_name(m));
    printf("format           safetensors, one file\n");
    printf("architecture     unknown (no config.json read: the file holds tensors only)\n");
    if (info_config_beside(msrc_path(m)))
        printf("                 its directory has a config.json: kiln info DIR for the model\n");
    printf("parameters       %lld (%.1f M)\n", (long long)s->params, (double)s->params / 1e6);
    for (int64_t i = 0; i < st_metadata_count(st); i++) {
        printf("%-16s ", i ? "" : "metadata");
        info_print_clipped(st_metadata_key(st, i), 40);
        fputs(" = ", stdout);
        info_print_clipped(st_metadata_value(st, i), 60);
        putchar('\n');
    }
    info_print_tensors(m, s);
}

static void info_print_text(const model_source *m, const info_summary *s)
{
    const model_config *c = msrc_config(m);
    size_t tlen = 0;

    if (msrc_get_kind(m) == MSRC_ST_FILE) {
        info_print_st_file(m, s);
        return;
    }
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
    info_print_tensors(m, s);
}

/* Keys every kind has: tensors, bytes per type, weights, load memory. */
static void info_json_tensors(json_t *o, const model_source *m, const info_summary *s)
{
    json_t *types = json_object();

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
    json_object_set_new(o, "load_bytes", json_integer((json_int_t)s->weight_bytes));
}

/* A lone safetensors file: "architecture" is null (unknown without
 * config.json) and the config-derived keys are absent; "metadata" is the
 * file's __metadata__. */
static json_t *info_json_st_file(const model_source *m, const info_summary *s)
{
    const st_model *st = msrc_safetensors(m);
    json_t *o = json_object(), *meta = json_object();

    json_object_set_new(o, "name", json_string(msrc_name(m)));
    json_object_set_new(o, "path", json_string(msrc_path(m)));
    json_object_set_new(o, "format", json_string("safetensors"));
    json_object_set_new(o, "files", json_integer(msrc_file_count(m)));
    json_object_set_new(o, "architecture", json_null());
    json_object_set_new(o, "config_json_beside", json_boolean(info_config_beside(msrc_path(m))));
    json_object_set_new(o, "parameters", json_integer(s->params));
    for (int64_t i = 0; i < st_metadata_count(st); i++)
        json_object_set_new(meta, st_metadata_key(st, i), json_string(st_metadata_value(st, i)));
    json_object_set_new(o, "metadata", meta);
    info_json_tensors(o, m, s);
    return o;
}

static json_t *info_json(const model_source *m, const info_summary *s)
{
    const model_config *c = msrc_config(m);
    json_t *o;
    size_t tlen = 0;

    if (msrc_get_kind(m) == MSRC_ST_FILE)
        return info_json_st_file(m, s);
    o = json_object();
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
    info_json_tensors(o, m, s);
    json_object_set_new(o, "kv_bytes_per_token", json_integer((json_int_t)s->kv_bytes_per_token));
    json_object_set_new(o, "kv_bytes_full_context",
                        json_integer((json_int_t)s->kv_bytes_full_context));
    return o;
}

static void info_usage(FILE *f)
{
    fprintf(f, "usage: kiln info [--json] [--gpu [--device cuda:N] [--seqs N] [--ctx N]\n"
               "                 [--gpu-memory-utilization F]] MODEL\n\n"
               "MODEL is a GGUF file or a Hugging Face model directory (config.json,\n"
               "*.safetensors, tokenizer files).  A single .safetensors file on its own\n"
               "gets its tensors, parameter count, bytes per type and metadata; without\n"
               "config.json its architecture is unknown.\n\n"
               "  --json   one JSON object on stdout instead of the text report\n"
               "  --gpu    load the model on the GPU and report its memory plan: total\n"
               "           and free memory, weights, workspace, the KV cache the rest\n"
               "           holds (blocks, tokens) for N sequences (8) of the context\n");
}

/* ---- --gpu: the memory plan of a load -------------------------------------- */

typedef struct info_gpu_opts {
    bool on;
    cli_device dev;
    int32_t seqs, ctx;
} info_gpu_opts;

/* Load `path` on the GPU with a runner as kiln run would make it, and
 * describe the memory: owned JSON object into *out. */
static kiln_status info_gpu_plan(const char *path, const info_gpu_opts *g, json_t **out)
{
#ifdef KILN_HAVE_CUDA
    backend *be = NULL;
    kiln_model *m = NULL;
    gen_runner *run = NULL;
    model_load_opts mo = {.max_batch_tokens = 512};
    gen_opts go = {.max_seqs = g->seqs, .n_ctx = g->ctx, .max_batch_tokens = 512};
    model_stats ms;
    size_t before, loaded, budget = 0;
    kiln_status st;
    cli_device d = g->dev;

    *out = NULL;
    if (d.kind == CLI_DEVICE_AUTO)
        d.kind = CLI_DEVICE_CUDA;
    if (d.kind != CLI_DEVICE_CUDA)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "kiln info --gpu: --device must be cuda[:N]");
    if ((st = cli_device_create(&d, 0, &be)))
        return st;
    const cudev_info *di = bk_cuda_info(be);
    before = bk_cuda_bytes_in_use(be);
    if ((st = model_load(path, be, &mo, &m)))
        goto done;
    loaded = bk_cuda_bytes_in_use(be);
    model_stats_of(m, &ms);
    if (!model_is_encoder(m) &&
        ((st = cli_device_kv_budget(&d, be, &go.kv_pool_bytes)) ||
         (st = gen_create(m, NULL, &go, &run))))
        goto done;
    budget = go.kv_pool_bytes;
    json_t *o = json_object();
    json_object_set_new(o, "device", json_string(di->name));
    json_object_set_new(o, "total_bytes", json_integer((json_int_t)di->total_mem));
    json_object_set_new(o, "free_bytes", json_integer((json_int_t)di->free_mem));
    json_object_set_new(o, "memory_utilization", json_real(d.mem_util));
    json_object_set_new(o, "dtype", json_string(dtype_name(be->ops->act_dtype)));
    json_object_set_new(o, "weight_bytes", json_integer((json_int_t)ms.weight_bytes));
    json_object_set_new(o, "workspace_bytes",
                        json_integer((json_int_t)(loaded - before - ms.weight_bytes)));
    json_object_set_new(o, "backend_bytes", json_integer((json_int_t)before));
    if (run) {
        const gen_opts *ro = gen_options(run);
        json_object_set_new(o, "kv_budget_bytes", json_integer((json_int_t)budget));
        json_object_set_new(o, "kv_bytes_per_token",
                            json_integer((json_int_t)model_kv_bytes_per_token(m)));
        json_object_set_new(o, "kv_block_size", json_integer(ro->block_size));
        json_object_set_new(o, "kv_blocks", json_integer(ro->n_blocks));
        json_object_set_new(o, "kv_max_tokens",
                            json_integer((json_int_t)ro->n_blocks * ro->block_size));
        json_object_set_new(o, "sequences", json_integer(ro->max_seqs));
        json_object_set_new(o, "context", json_integer(ro->n_ctx));
    }
    json_object_set_new(o, "held_bytes", json_integer((json_int_t)bk_cuda_bytes_in_use(be)));
    *out = o;
done:
    gen_free(run);
    model_free(m);
    be->ops->destroy(be);
    return st;
#else
    (void)path;
    (void)g;
    *out = NULL;
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "kiln info --gpu: this kiln was built without the "
                        "CUDA backend");
#endif
}

static void info_gpu_print(const json_t *o)
{
    const double mib = 1024.0 * 1024.0;
#define INFO_MIB(k) ((double)json_integer_value(json_object_get(o, k)) / mib)
    printf("GPU              %s, %.0f MiB total, %.0f MiB free, %s, utilization %.2f\n",
           json_string_value(json_object_get(o, "device")), INFO_MIB("total_bytes"),
           INFO_MIB("free_bytes"), json_string_value(json_object_get(o, "dtype")),
           json_number_value(json_object_get(o, "memory_utilization")));
    printf("  weights        %.1f MiB\n", INFO_MIB("weight_bytes"));
    printf("  workspace      %.1f MiB (activations for 512-token steps, matmul workspace, "
           "staging)\n", INFO_MIB("workspace_bytes") + INFO_MIB("backend_bytes"));
    if (json_object_get(o, "kv_blocks"))
        printf("  KV cache       %.1f MiB may be used: %lld blocks of %lld tokens = %lld tokens "
               "(%lld sequences of %lld)\n", INFO_MIB("kv_budget_bytes"),
               (long long)json_integer_value(json_object_get(o, "kv_blocks")),
               (long long)json_integer_value(json_object_get(o, "kv_block_size")),
               (long long)json_integer_value(json_object_get(o, "kv_max_tokens")),
               (long long)json_integer_value(json_object_get(o, "sequences")),
               (long long)json_integer_value(json_object_get(o, "context")));
    printf("  held by kiln   %.1f MiB\n", INFO_MIB("held_bytes"));
#undef INFO_MIB
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false;
    model_source *m;
    info_summary s;

    info_gpu_opts g = {.seqs = 8};
    json_t *plan = NULL;
    cli_device_init(&g.dev);
    for (int i = 1; i < argc; i++) {
        int dv = cli_device_parse(&g.dev, argc, argv, &i);
        long n;
        char *end;
        if (dv < 0)
            return 2;
        if (dv)
            continue;
        if (!strcmp(argv[i], "--json")) {
            as_json = true;
        } else if (!strcmp(argv[i], "--gpu")) {
            g.on = true;
        } else if ((!strcmp(argv[i], "--seqs") || !strcmp(argv[i], "--ctx")) && i + 1 < argc) {
            n = strtol(argv[i + 1], &end, 10);
            if (!*argv[i + 1] || *end || n < 1 || n > (1 << 24)) {
                fprintf(stderr, "kiln info: %s '%s': expected a whole number >= 1\n", argv[i],
                        argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--seqs"))
                g.seqs = (int32_t)n;
            else
                g.ctx = (int32_t)n;
            i++;
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
    if (msrc_open_any(path, &m) != KILN_OK)
        return cli_fail();
    if (g.on && info_gpu_plan(path, &g, &plan) != KILN_OK) {
        msrc_close(m);
        return cli_fail();
    }
    info_summarize(m, &s);
    if (as_json) {
        json_t *o = info_json(m, &s);
        if (o && plan)
            json_object_set(o, "gpu", plan);
        char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(o);
        if (!text) {
            json_decref(plan);
            msrc_close(m);
            fprintf(stderr, "kiln: out of memory\n");
            return 1;
        }
    } else {
        info_print_text(m, &s);
        if (plan)
            info_gpu_print(plan);
    }
    json_decref(plan);
    msrc_close(m);
    return 0;
}

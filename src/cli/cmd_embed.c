/*
 * cmd_embed.c - `kiln embed`: one embedding per input line.
 *
 *   kiln embed -m MODEL [--input FILE] [--format jsonl|f32] [--threads N]
 *              [--device auto|cpu|cuda[:N]] [--dtype bf16|f16]
 *              [--data-parallel-size N]
 *
 * Every line of FILE (stdin without --input; a final line without a
 * newline counts, "\r\n" endings are accepted) is one document.  jsonl
 * writes {"index": i, "embedding": [...]} per line in input order; f32
 * writes the vectors back to back as raw little-endian floats.  The
 * longest document kept is the model's sentence-transformers
 * max_seq_length (sentence_bert_config.json) when the model directory has
 * one, else its position count.  --data-parallel-size N runs N engines
 * (N GPUs from the --device ordinal, or N CPU backends sharing the cores),
 * each taking chunks of documents as it finishes the last
 * (gen_embed_parallel).
 */
#define EMB_MAX_DP 64
#include "cli/cli.h"

#include "backend/backend.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "engine/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct emb_opts {
    const char *model, *input;
    bool f32;
    int threads;
    cli_device dev;
    int32_t max_batch_tokens;
    int32_t max_len;
    int dp;                 /* --data-parallel-size */
} emb_opts;

static int emb_usage(FILE *f)
{
    fprintf(f, "usage: kiln embed -m MODEL [--input FILE] [--format jsonl|f32] [--threads N]\n"
               "                  [--batch N] [--max-len N] [--data-parallel-size N]\n\n"
               "Embed each line of FILE (default stdin) with an embedding model.\n"
               "  --format jsonl   {\"index\": i, \"embedding\": [...]} per line (default)\n"
               "  --format f32     raw little-endian float32 vectors, in input order\n"
               "  --batch N        tokens per forward step (default 512, at least the\n"
               "                   longest document)\n"
               "  --max-len N      tokens kept per document (default: the model's\n"
               "                   max_seq_length or position count)\n"
               "  --threads N      CPU threads (default: all cores)\n"
               "  --data-parallel-size N  N engines: GPUs cuda:K..K+N-1 (K from --device),\n"
               "                   or N CPU backends sharing the threads (default 1)\n");
    cli_device_usage(f);
    return f == stdout ? 0 : 2;
}

static int emb_parse(int argc, char **argv, emb_opts *o)
{
    memset(o, 0, sizeof *o);
    cli_device_init(&o->dev);
    o->dp = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        int dv;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return emb_usage(stdout);
        if ((dv = cli_device_parse(&o->dev, argc, argv, &i)) < 0)
            return emb_usage(stderr);
        if (dv)
            continue;
        if (!v) {
            fprintf(stderr, "kiln embed: unexpected argument '%s'\n", a);
            return emb_usage(stderr);
        }
        i++;
        long n = strtol(v, &end, 10);
        bool num_ok = *v && !*end && n >= 0 && n <= (1 << 20);
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--input") || !strcmp(a, "-i"))
            o->input = v;
        else if (!strcmp(a, "--format") && (!strcmp(v, "jsonl") || !strcmp(v, "f32")))
            o->f32 = !strcmp(v, "f32");
        else if (!strcmp(a, "--threads") && num_ok && n <= 4096)
            o->threads = (int)n;
        else if (!strcmp(a, "--batch") && num_ok && n > 0)
            o->max_batch_tokens = (int32_t)n;
        else if (!strcmp(a, "--max-len") && num_ok && n > 0)
            o->max_len = (int32_t)n;
        else if (!strcmp(a, "--data-parallel-size") && num_ok && n >= 1 && n <= EMB_MAX_DP)
            o->dp = (int)n;
        else {
            fprintf(stderr, "kiln embed: bad option or value: %s %s\n", a, v);
            return emb_usage(stderr);
        }
    }
    if (!o->model) {
        fprintf(stderr, "kiln embed: -m MODEL is required\n");
        return emb_usage(stderr);
    }
    return -1;
}

/* max_seq_length of <model dir>/sentence_bert_config.json, 0 if none. */
static int32_t emb_st_max_len(const char *model)
{
    char path[4096];
    struct stat sb;
    if (stat(model, &sb) || !S_ISDIR(sb.st_mode))
        return 0;
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", model);
    json_t *j = json_load_file(path, 0, NULL);
    json_int_t v = json_integer_value(json_object_get(j, "max_seq_length"));
    json_decref(j);
    return v > 0 && v <= (1 << 20) ? (int32_t)v : 0;
}

/* Split input into lines (in place): *lines points into in. */
static kiln_status emb_split(kiln_buf *in, char ***lines, size_t **lens, int32_t *n)
{
    size_t cap = 1;
    for (size_t i = 0; i < in->len; i++)
        cap += in->data[i] == '\n';
    *lines = kiln_calloc(cap, sizeof **lines);
    *lens = kiln_calloc(cap, sizeof **lens);
    if (!*lines || !*lens)
        return kiln_err_set(KILN_ERR_OOM, "embed: out of memory for %zu lines", cap);
    if (cap > INT32_MAX)
        return kiln_err_set(KILN_ERR_RANGE, "embed: %zu lines", cap);
    *n = 0;
    for (size_t pos = 0; pos < in->len;) {
        char *nl = memchr(in->data + pos, '\n', in->len - pos);
        size_t end = nl ? (size_t)(nl - in->data) : in->len, len = end - pos;
        if (len && in->data[pos + len - 1] == '\r')
            len--;
        (*lines)[*n] = in->data + pos;
        (*lens)[(*n)++] = len;
        pos = end + 1;
    }
    return KILN_OK;
}

static kiln_status emb_write(const float *v, int32_t n, int64_t d, bool f32)
{
    kiln_buf line = {0};
    kiln_status st = KILN_OK;
    for (int32_t i = 0; i < n && !st; i++) {
        const float *e = v + (size_t)i * (size_t)d;
        buf_clear(&line);
        if (f32) {
            for (int64_t k = 0; k < d && !st; k++) {
                uint32_t u;
                memcpy(&u, &e[k], 4);
                unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8),
                                      (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
                st = buf_append(&line, b, 4);
            }
        } else {
            st = buf_printf(&line, "{\"index\": %d, \"embedding\": [", i);
            for (int64_t k = 0; k < d && !st; k++)
                st = buf_printf(&line, k ? ", %.9g" : "%.9g", (double)e[k]);
            if (!st)
                st = buf_append_str(&line, "]}\n");
        }
        if (!st && fwrite(line.data, 1, line.len, stdout) != line.len)
            st = kiln_err_set(KILN_ERR_IO, "stdout: %s", strerror(errno));
    }
    buf_free(&line);
    return st;
}

int cmd_embed(int argc, char **argv)
{
    emb_opts o;
    backend *bes[EMB_MAX_DP] = {0}, *be = NULL;
    kiln_model *ms[EMB_MAX_DP] = {0}, *m = NULL;
    int32_t docs_of[EMB_MAX_DP] = {0};
    tokenizer *t = NULL;
    kiln_buf in = {0};
    char **lines = NULL;
    size_t *lens = NULL;
    float *out = NULL;
    int32_t n = 0;
    kiln_status st;
    int rc = emb_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;

    FILE *f = o.input ? fopen(o.input, "rb") : stdin;
    if (!f) {
        kiln_err_set(KILN_ERR_IO, "%s: %s", o.input, strerror(errno));
        return cli_fail();
    }
    st = cli_read_all(f, &in);
    if (f != stdin)
        fclose(f);
    if (!o.max_len)
        o.max_len = emb_st_max_len(o.model);
    int32_t mbt = o.max_batch_tokens ? o.max_batch_tokens : 512;
    model_load_opts mo = {.max_batch_tokens = mbt};
    if (st || (st = emb_split(&in, &lines, &lens, &n)) ||
        (st = cli_device_create_n(&o.dev, o.threads, o.dp, bes)))
        goto out;
    be = bes[0];
    /* the default batch holds at least one document of the longest kind */
    if (!o.max_batch_tokens && o.max_len > mbt)
        mo.max_batch_tokens = mbt = o.max_len;
    for (int i = 0; i < o.dp; i++)
        if ((st = model_load(o.model, bes[i], &mo, &ms[i])))
            goto out;
    m = ms[0];
    if ((st = tok_open(o.model, &t)))
        goto out;
    const model_config *c = model_config_of(m);
    if (!model_is_encoder(m)) {
        st = kiln_err_set(KILN_ERR_UNSUPPORTED, "%s is a %s text generation model; kiln embed "
                          "needs an embedding model (bert family)", o.model, c->arch_name);
        goto out;
    }
    if (!(out = kiln_calloc((size_t)(n ? n : 1), (size_t)c->hidden_size * sizeof(float)))) {
        st = kiln_err_set(KILN_ERR_OOM, "embed: out of memory for %d vectors", n);
        goto out;
    }
    gen_embed_opts eo = {.max_batch_tokens = mbt, .max_len = o.max_len};
    /* on GPUs the host's cores are free: tokenize on them (shared between
     * the engines) while the GPUs run */
    if (strcmp(be->ops->name, "cpu")) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN) / o.dp;
        eo.tok_threads = nc > 1 ? (int32_t)(nc < 64 ? nc : 64) : 1;
    }
    if (!eo.max_len && c->max_position_embeddings > mbt)
        eo.max_len = mbt;
    uint64_t t0 = clock_now_ns();
    if ((st = gen_embed_parallel(ms, o.dp, t, (const char *const *)lines, lens, n, &eo, out,
                                 docs_of)) ||
        (st = emb_write(out, n, c->hidden_size, o.f32)))
        goto out;
    double s = (double)(clock_now_ns() - t0) * 1e-9;
    fprintf(stderr, "kiln: embedded %d documents in %.3f s (%.1f docs/s)", n, s,
            s > 0 ? n / s : 0.0);
    for (int i = 0; i < o.dp && o.dp > 1; i++)
        fprintf(stderr, "%s engine %d (%s): %d", i ? "," : ";", i, bes[i]->ops->name,
                docs_of[i]);
    fprintf(stderr, "\n");
out:
    rc = st ? cli_fail() : 0;
    fflush(stdout);
    kiln_free(out);
    kiln_free(lines);
    kiln_free(lens);
    buf_free(&in);
    tok_free(t);
    for (int i = 0; i < o.dp; i++) {
        model_free(ms[i]);
        if (bes[i])
            bes[i]->ops->destroy(bes[i]);
    }
    return rc;
}

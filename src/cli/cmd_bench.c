/*
 * cmd_bench.c - `kiln bench MODE`: measured performance, written as result
 * records to bench/results/ (telemetry/report.h) and printed as a table.
 *
 *   kiln bench tokenize -m SRC [-m SRC ...] [--corpus FILE] [--seconds S]
 *                       [--no-peer] [--peer-python PY] [--out DIR]
 *   kiln bench generate -m MODEL [--prompt-tokens N] [--gen-tokens N]
 *                       [--threads N] [--repeat R] [--no-peer] [--peer-python PY]
 *                       [--out DIR]
 *   kiln bench embed (-m MODEL | --dummy-weights --config FILE --tokenizer SRC)
 *                    [--device D] [--dtype T] [--docs N] [--threads N]
 *                    [--tok-threads N] [--repeat R] [--tokenizer SRC] [--no-peer]
 *                    [--peer-python PY] [--out DIR]
 *
 * tokenize: single-thread encode throughput (MB/s of input text) of each
 * tokenizer on the corpus, beside the reference library measured in the
 * same run (HF tokenizers for tokenizer.json, sentencepiece for .model; a
 * GGUF vocabulary has no live reference here), with the single-thread
 * memcpy bandwidth of this machine as the ceiling.
 *
 * generate: batch-1 prefill and greedy decode (EOS ignored) tokens/s on
 * the CPU backend, beside llama.cpp (llama-cpp-python) on the same GGUF
 * file and the same prompt ids.  Ceiling: the decode roofline, i.e. the
 * streaming read bandwidth of this machine (measured in the same run)
 * divided by the weight bytes one decode step reads.
 *
 * embed: documents/s of an encoder through gen_embed on generated
 * documents of 16..256 tokens, text in and normalised vectors out
 * (settings.mode end_to_end), beside sentence-transformers encode on the
 * same documents and thread count.  On a GPU (--device cuda) the texts are
 * tokenized on all host cores (--tok-threads) while the GPU runs the
 * previous chunk, the ceiling is the measured matmul rate, and the peer
 * runs on the same GPU in the same dtype; --dummy-weights builds the model
 * (and the peer's) from a config with random weights, the tokenizer coming
 * from --tokenizer.  --data-parallel-size N runs N engines
 * (gen_embed_parallel: N GPUs from the --device ordinal, or N CPU backends
 * sharing the threads); the ceiling is then N times one device's and the
 * record gives each engine's documents.
 *
 * Peers run as Python scripts from bench/peers/ in the same call; the
 * interpreter is --peer-python, else $KILN_PYTHON, else .venv/bin/python.
 * A peer that cannot run is reported and recorded as peer: null.
 */
#include "cli/cli.h"
#include "cli/bench.h"

#include "backend/backend.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/fmap.h"
#include "base/tpool.h"
#include "engine/generate.h"
#include "format/model_source.h"
#include "model/model.h"
#include "telemetry/report.h"
#include "tokenizer/tokenizer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif

#define BENCH_MAX_SRC 16

typedef struct bench_corpus {
    kiln_buf text;      /* all inputs, unescaped, back to back */
    size_t *off;        /* input i is text[off[i], off[i+1]) */
    size_t n;
} bench_corpus;

static kiln_status bench_load_corpus(const char *path, bench_corpus *c)
{
    fmap *f;
    kiln_status st = fmap_open(path, &f);
    if (st)
        return st;
    const char *d = (const char *)fmap_data(f);
    size_t size = fmap_size(f), lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += d[i] == '\n';
    c->off = calloc(lines + 2, sizeof *c->off);
    if (!c->off) {
        fmap_close(f);
        return kiln_err_set(KILN_ERR_OOM, "out of memory");
    }
    for (size_t i = 0; i < size && !st; i++) {
        if (d[i] == '\n') {
            c->off[++c->n] = c->text.len;
            continue;
        }
        char ch = d[i];
        if (ch == '\\' && i + 1 < size && (d[i + 1] == 'n' || d[i + 1] == 'r' || d[i + 1] == '\\')) {
            i++;
            ch = d[i] == 'n' ? '\n' : d[i] == 'r' ? '\r' : '\\';
        }
        st = buf_append_char(&c->text, ch);
    }
    fmap_close(f);
    return st;
}

/* Single-thread memcpy bandwidth in MB/s (bytes copied per second). */
static double bench_memcpy_mbs(void)
{
    size_t n = 64u << 20;
    char *a = malloc(n), *b = malloc(n);
    double best = 0;
    if (!a || !b) {
        free(a), free(b);
        return 0;
    }
    memset(a, 1, n);
    memset(b, 2, n);
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = clock_now_ns();
        memcpy(b, a, n);
        double s = (double)(clock_now_ns() - t0) * 1e-9;
        a[r] = b[n - 1 - (size_t)r]; /* keep the copy observable */
        if (s > 0 && n / s / 1e6 > best)
            best = (double)n / s / 1e6;
    }
    free(a), free(b);
    return best;
}

/* Encode every input once per pass until `seconds` have passed. */
static kiln_status bench_kiln(const tokenizer *t, const bench_corpus *c, double seconds,
                              double *mbs, int *passes)
{
    kiln_ids ids = {0};
    kiln_status st = KILN_OK;
    for (size_t i = 0; i < c->n && i < 200 && !st; i++) { /* warm-up */
        ids_clear(&ids);
        st = tok_encode(t, c->text.data + c->off[i], c->off[i + 1] - c->off[i], true, &ids);
    }
    uint64_t t0 = clock_now_ns();
    double el = 0;
    *passes = 0;
    while (!st && el < seconds) {
        for (size_t i = 0; i < c->n && !st; i++) {
            ids_clear(&ids);
            st = tok_encode(t, c->text.data + c->off[i], c->off[i + 1] - c->off[i], true, &ids);
        }
        (*passes)++;
        el = (double)(clock_now_ns() - t0) * 1e-9;
    }
    ids_free(&ids);
    *mbs = el > 0 ? (double)c->text.len * *passes / el / 1e6 : 0;
    return st;
}

/* The reference library for a tokenizer source, or NULL: kind "hf"/"spm". */
static const char *bench_peer_for(const char *src, char *path, size_t cap)
{
    struct stat sb;
    size_t n = strlen(src);
    if (stat(src, &sb) != 0)
        return NULL;
    if (S_ISDIR(sb.st_mode)) {
        snprintf(path, cap, "%s/tokenizer.json", src);
        if (stat(path, &sb) == 0)
            return "hf";
        snprintf(path, cap, "%s/tokenizer.model", src);
        return stat(path, &sb) == 0 ? "spm" : NULL;
    }
    snprintf(path, cap, "%s", src);
    if (n > 5 && !strcmp(src + n - 5, ".json"))
        return "hf";
    if (n > 6 && !strcmp(src + n - 6, ".model"))
        return "spm";
    return NULL;
}

/* The peer interpreter: --peer-python, else $KILN_PYTHON, else the
 * project's .venv, else python3 from PATH. */
const char *bench_peer_python;

const char *bench_python(void)
{
    static char py[4200];
    const char *env = getenv("KILN_PYTHON");
    struct stat sb;
    if (bench_peer_python)
        return bench_peer_python;
    if (env && *env)
        return env;
    snprintf(py, sizeof py, "%s/.venv/bin/python", KILN_SOURCE_DIR);
    return stat(py, &sb) == 0 ? py : "python3";
}

/* Run a peer command whose stdout is one JSON object; NULL (and a note
 * on stderr naming the command) when it cannot run or prints no JSON. */
json_t *bench_run_peer(const char *cmd)
{
    static char out[65536];
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    int rc = p ? pclose(p) : -1;
    out[n] = '\0';
    json_t *j = rc == 0 ? json_loads(out, 0, NULL) : NULL;
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    if (!j)
        fprintf(stderr, "kiln bench: peer measurement failed (recorded as peer: null): %s\n",
                cmd);
    return j;
}

/* Run the peer script; NULL (and a note on stderr) when it cannot run. */
static json_t *bench_peer(const char *kind, const char *path, const char *corpus, double seconds)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' '%s/bench/peers/tokenize_peer.py' %s '%s' '%s' %g",
             bench_python(), KILN_SOURCE_DIR, kind, path, corpus, seconds);
    return bench_run_peer(cmd);
}

static json_t *bench_tokenize_one(const char *src, const char *corpus_path,
                                  const bench_corpus *c, double seconds, bool peer,
                                  double ceiling)
{
    tokenizer *t;
    double mbs;
    int passes;
    char path[4200];
    const char *base = strrchr(src, '/');

    if (tok_open(src, &t) || bench_kiln(t, c, seconds, &mbs, &passes)) {
        tok_free(t);
        return NULL;
    }
    /* name the tokenizer by its directory when the file name says nothing */
    char shape[512];
    snprintf(shape, sizeof shape, "%s", base && base[1] ? base + 1 : src);
    if (base && base > src && (!strcmp(base + 1, "tokenizer.json") || !strcmp(base + 1, "tokenizer.model"))) {
        const char *dir = base - 1;
        while (dir > src && dir[-1] != '/')
            dir--;
        snprintf(shape, sizeof shape, "%.*s", (int)(base - dir), dir);
    }
    json_t *r = report_new("tokenize", shape), *s = json_object();
    json_object_set_new(s, "threads", json_integer(1));
    json_object_set_new(s, "tokenizer", json_string(tok_kind_name(t)));
    json_object_set_new(s, "corpus", json_string(corpus_path));
    json_object_set_new(s, "inputs", json_integer((json_int_t)c->n));
    json_object_set_new(s, "bytes", json_integer((json_int_t)c->text.len));
    json_object_set_new(s, "passes", json_integer(passes));
    json_object_set_new(r, "settings", s);
    json_object_set_new(r, "value", json_real(mbs));
    json_object_set_new(r, "unit", json_string("MB/s"));
    json_object_set_new(r, "ceiling", json_real(ceiling));
    json_object_set_new(r, "ceiling_what", json_string("single-thread memcpy bandwidth"));
    const char *kind = peer ? bench_peer_for(src, path, sizeof path) : NULL;
    json_t *pj = kind ? bench_peer(kind, path, corpus_path, seconds) : NULL;
    if (pj) {
        json_t *po = json_object();
        json_object_set(po, "name", json_object_get(pj, "name"));
        json_object_set(po, "version", json_object_get(pj, "version"));
        json_object_set(po, "value", json_object_get(pj, "mb_per_s"));
        json_object_set_new(r, "peer", po);
        json_decref(pj);
    } else {
        json_object_set_new(r, "peer", json_null());
    }
    tok_free(t);
    return r;
}

int bench_usage(FILE *f)
{
    fprintf(f, "usage: kiln bench tokenize -m SRC [-m SRC ...] [--corpus FILE] [--seconds S]\n"
               "                           [--no-peer] [--peer-python PY] [--out DIR]\n"
               "       kiln bench generate -m MODEL [--prompt-tokens N] [--gen-tokens N]\n"
               "                           [--threads N] [--repeat R] [--no-peer]\n"
               "                           [--peer-python PY] [--out DIR]\n"
               "       kiln bench embed (-m MODEL | --dummy-weights --config FILE --tokenizer SRC)\n"
               "                        [--device D] [--dtype T] [--docs N] [--threads N]\n"
               "                        [--tok-threads N] [--repeat R] [--tokenizer SRC]\n"
               "                        [--data-parallel-size N] [--no-peer]\n"
               "                        [--peer-python PY] [--out DIR]\n\n"
               "tokenize: single-thread tokenizer throughput on the corpus (default\n"
               "  tests/data/tokenizer_corpus.txt) beside the reference library.\n"
               "generate: batch-1 prefill and greedy decode tokens/s on the CPU backend\n"
               "  (defaults: 128 prompt tokens, 64 generated, all cores, 3 repeats) beside\n"
               "  llama.cpp through llama-cpp-python, against the decode roofline.\n"
               "embed: documents/s of an embedding model (default 1000 documents of\n"
               "  16..256 tokens) beside sentence-transformers; --data-parallel-size N\n"
               "  runs N engines (N GPUs, or CPU backends sharing the threads).\n"
               "latency, prefill, embed-model: model steps on any device, also at a\n"
               "  config's shape with --dummy-weights (kiln bench latency --help).\n"
               "Results go to DIR (default bench/results) as JSON.  Peers run under\n"
               "--peer-python, else $KILN_PYTHON, else .venv/bin/python.\n");
    return f == stdout ? 0 : 2;
}

static int bench_tokenize(int argc, char **argv)
{
    const char *srcs[BENCH_MAX_SRC], *out_dir = KILN_SOURCE_DIR "/bench/results";
    const char *corpus = KILN_SOURCE_DIR "/tests/data/tokenizer_corpus.txt";
    int nsrc = 0;
    double seconds = 2.0;
    bool peer = true;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc &&
            nsrc < BENCH_MAX_SRC)
            srcs[nsrc++] = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc)
            corpus = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_dir = argv[++i];
        else if (!strcmp(argv[i], "--peer-python") && i + 1 < argc)
            bench_peer_python = argv[++i];
        else if (!strcmp(argv[i], "--no-peer"))
            peer = false;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return bench_usage(stdout);
        else {
            fprintf(stderr, "kiln bench tokenize: unexpected argument '%s'\n", argv[i]);
            return bench_usage(stderr);
        }
    }
    if (!nsrc || !(seconds > 0)) {
        fprintf(stderr, "kiln bench tokenize: give at least one -m SRC and --seconds > 0\n");
        return bench_usage(stderr);
    }
    bench_corpus c = {0};
    if (bench_load_corpus(corpus, &c))
        return cli_fail();
    double ceiling = bench_memcpy_mbs();
    json_t *all = json_array();
    int rc = 0;
    printf("%-28s %-20s %12s %12s %8s\n", "tokenizer", "kind", "kiln MB/s", "peer MB/s", "ratio");
    for (int i = 0; i < nsrc; i++) {
        json_t *r = bench_tokenize_one(srcs[i], corpus, &c, seconds, peer, ceiling);
        if (!r) {
            rc = cli_fail();
            continue;
        }
        double v = json_real_value(json_object_get(r, "value"));
        json_t *pv = json_object_get(json_object_get(r, "peer"), "value");
        char peer_s[32] = "-", ratio_s[32] = "-";
        if (pv) {
            snprintf(peer_s, sizeof peer_s, "%.2f", json_number_value(pv));
            snprintf(ratio_s, sizeof ratio_s, "%.2f", v / json_number_value(pv));
        }
        printf("%-28s %-20s %12.2f %12s %8s\n", json_string_value(json_object_get(r, "shape")),
               json_string_value(json_object_get(json_object_get(r, "settings"), "tokenizer")), v,
               peer_s, ratio_s);
        json_array_append_new(all, r);
    }
    char path[4400];
    if (json_array_size(all) && report_write(all, out_dir, "tokenize", path, sizeof path) == KILN_OK)
        printf("results: %s (memcpy ceiling %.0f MB/s)\n", path, ceiling);
    json_decref(all);
    buf_free(&c.text);
    free(c.off);
    return rc;
}

/* ---- generate and embed: shared pieces -------------------------------------- */


bool bench_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool bench_float(const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi))
        return false;
    *out = (float)v;
    return true;
}

/* "gemma-3-270m-q4_k_m" from models/gemma-3-270m-q4_k_m.gguf, the
 * directory name for a model directory. */
void bench_model_name(const char *path, char *buf, size_t cap)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    if (n - b > 5 && !strncmp(path + n - 5, ".gguf", 5))
        n -= 5;
    if (n - b == 11 && !strncmp(path + b, "config.json", 11) && b > 1) {
        /* <dir>/config.json: the directory names the shape */
        n = b - 1;
        b = n;
        while (b > 0 && path[b - 1] != '/')
            b--;
    } else if (n - b > 5 && !strncmp(path + n - 5, ".json", 5)) {
        n -= 5;
    }
    snprintf(buf, cap, "%.*s", (int)(n - b), path + b);
}

static bool bench_ends(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* Bytes of weights one forward step reads: every tensor as stored, less
 * the token-embedding table where only its looked-up rows are read (an
 * encoder, or a decoder with its own output matrix).  A tied table is the
 * output projection too and is read whole. */
static kiln_status bench_weight_bytes(const char *model, bool encoder, uint64_t *out)
{
    model_source *src;
    kiln_status st = msrc_open(model, &src);
    if (st)
        return st;
    uint64_t total = 0, embd = 0;
    bool has_output = false;
    for (int64_t i = 0; i < msrc_tensor_count(src); i++) {
        const msrc_tensor *t = msrc_tensor_at(src, i);
        total += t->nbytes;
        if (bench_ends(t->name, "token_embd.weight") || bench_ends(t->name, "embed_tokens.weight") ||
            bench_ends(t->name, "word_embeddings.weight"))
            embd += t->nbytes;
        /* "output.weight" exactly: blk.N.attn_output.weight is a layer weight */
        if (!strcmp(t->name, "output.weight") || bench_ends(t->name, "lm_head.weight"))
            has_output = true;
    }
    msrc_close(src);
    *out = encoder || has_output ? total - embd : total;
    return KILN_OK;
}

typedef struct bench_bw {
    const uint64_t *buf;
    size_t chunk_words;       /* words per chunk; chunk c is buf[c*chunk_words..) */
    uint64_t *sink;           /* one result per chunk, so no read is dead code     */
} bench_bw;

static void bench_bw_chunk(void *ctx, size_t begin, size_t end, int thread_idx)
{
    bench_bw *b = ctx;
    for (size_t c = begin; c < end; c++) {
        const uint64_t *p = b->buf + c * b->chunk_words;
        uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
        /* four independent chains so the loop is bound by loads, not by a
         * single dependency chain */
        for (size_t i = 0; i + 4 <= b->chunk_words; i += 4) {
            x0 ^= p[i];
            x1 ^= p[i + 1];
            x2 ^= p[i + 2];
            x3 ^= p[i + 3];
        }
        b->sink[c] = x0 ^ x1 ^ x2 ^ x3;
    }
}

/* Streaming read bandwidth (GB/s, 1e9 bytes) of a 512 MiB buffer with
 * `threads` threads, best of 5 passes; 0 when it cannot be measured. */
double bench_read_gbs(int threads)
{
    const size_t bytes = (size_t)512 << 20;
    size_t chunks = (size_t)threads * 4;
    uint64_t *buf = malloc(bytes), *sink = calloc(chunks, sizeof *sink);
    tpool *pool = NULL;
    double best = 0;
    if (!buf || !sink || tpool_create(threads, &pool)) {
        free(buf), free(sink);
        return 0;
    }
    for (size_t i = 0; i < bytes / 8; i++) /* fault every page in first */
        buf[i] = i * 0x9e3779b97f4a7c15u;
    bench_bw b = {.buf = buf, .chunk_words = bytes / 8 / chunks, .sink = sink};
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = clock_now_ns();
        tpool_parallel_for(pool, chunks, 1, bench_bw_chunk, &b);
        double s = (double)(clock_now_ns() - t0) * 1e-9;
        double gbs = s > 0 ? (double)(b.chunk_words * chunks * 8) / s / 1e9 : 0;
        if (gbs > best)
            best = gbs;
    }
    uint64_t keep = 0;
    for (size_t c = 0; c < chunks; c++)
        keep ^= sink[c];
    if (keep == 1) /* practically never; makes the reads observable */
        fprintf(stderr, "kiln bench: read checksum 1\n");
    tpool_free(pool);
    free(buf), free(sink);
    return best;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *v, int n)
{
    double s[1000];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

json_t *bench_runs_json(const double *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

/* A temporary file under $TMPDIR (or /tmp) holding `len` bytes; its path
 * goes to path (unlink it when done).  false when it cannot be written. */
bool bench_tmp_file(const char *data, size_t len, char *path, size_t cap)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/kiln-bench-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    FILE *f = fdopen(fd, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f)
        ok = fclose(f) == 0 && ok;
    else
        close(fd);
    if (!ok)
        unlink(path);
    return ok;
}

/* One result record; settings are shared (referenced) between records of
 * one run, peer_value < 0 records peer: null. */
json_t *bench_record(const char *benchmark, const char *shape, json_t *settings,
                            double value, const char *unit, double ceiling, const char *what,
                            const json_t *peer, double peer_value)
{
    json_t *r = report_new(benchmark, shape);
    if (!r)
        return NULL;
    json_object_set(r, "settings", settings);
    json_object_set_new(r, "value", json_real(value));
    json_object_set_new(r, "unit", json_string(unit));
    json_object_set_new(r, "ceiling", json_real(ceiling));
    json_object_set_new(r, "ceiling_what", json_string(what));
    if (peer && peer_value >= 0) {
        json_t *po = json_object();
        json_object_set(po, "name", json_object_get(peer, "name"));
        json_object_set(po, "version", json_object_get(peer, "version"));
        json_object_set_new(po, "value", json_real(peer_value));
        json_object_set_new(r, "peer", po);
    } else {
        json_object_set_new(r, "peer", json_null());
    }
    return r;
}

void bench_table_head(void)
{
    printf("%-14s %-20s %7s %11s %11s %7s %11s %8s  %s\n", "benchmark", "model",
           "thr/bat", "kiln", "peer", "ratio", "ceiling", "of ceil", "unit");
}

void bench_table_row(const json_t *r)
{
    const json_t *s = json_object_get(r, "settings");
    double v = json_number_value(json_object_get(r, "value"));
    double c = json_number_value(json_object_get(r, "ceiling"));
    const json_t *pv = json_object_get(json_object_get(r, "peer"), "value");
    char peer_s[32] = "-", ratio_s[32] = "-";
    if (pv && json_number_value(pv) > 0) {
        snprintf(peer_s, sizeof peer_s, "%.2f", json_number_value(pv));
        snprintf(ratio_s, sizeof ratio_s, "%.2f", v / json_number_value(pv));
    }
    const char *unit = json_string_value(json_object_get(r, "unit"));
    /* a time is better when lower: its share of the ceiling is floor / value,
     * and the kiln/peer ratio is peer / kiln */
    bool time = unit && !strncmp(unit, "ms", 2);
    if (time && pv && json_number_value(pv) > 0 && v > 0)
        snprintf(ratio_s, sizeof ratio_s, "%.2f", json_number_value(pv) / v);
    printf("%-14s %-20s %7d %11.4g %11s %7s %11.4g %7.1f%%  %s\n",
           json_string_value(json_object_get(r, "benchmark")),
           json_string_value(json_object_get(r, "shape")),
           (int)json_integer_value(json_object_get(s, json_object_get(s, "threads") ? "threads"
                                                                                   : "batch")),
           v, peer_s, ratio_s, c,
           c > 0 && v > 0 ? 100.0 * (time ? c / v : v / c) : 0.0, unit ? unit : "");
}

/* Write the records, print where; the exit code of the mode. */
int bench_finish(json_t *all, const char *out_dir, const char *prefix)
{
    char path[4400];
    int rc = 0;
    if (report_write(all, out_dir, prefix, path, sizeof path) == KILN_OK)
        printf("results: %s\n", path);
    else
        rc = cli_fail();
    return rc;
}

/* ---- generate ------------------------------------------------------------- */

typedef struct bench_gen_done {
    gen_summary s;
    bool done;
} bench_gen_done;

static void bench_on_done(void *user, int32_t req, const gen_summary *s)
{
    bench_gen_done *d = user;
    d->s = *s;
    d->s.tokens = NULL; /* borrowed only during the callback */
    d->done = true;
}

static int bench_generate(int argc, char **argv)
{
    bench_opts o;
    int rc = bench_parse_opts("generate", argc, argv, &o);
    if (rc >= 0)
        return rc;
    const int32_t P = o.prompt_tokens, G = o.gen_tokens;
    backend *be = NULL;
    kiln_model *m = NULL;
    gen_runner *run = NULL;
    int32_t *ids = NULL;
    json_t *all = NULL, *settings = NULL, *peer = NULL;
    double pre[1000], dec[1000];
    char name[256], idpath[4200] = "";
    uint64_t wbytes = 0;
    kiln_status st;

    bench_model_name(o.model, name, sizeof name);
    /* bandwidth first, before the model's pages compete for the cache */
    double bw1 = bench_read_gbs(1), bwn = o.threads > 1 ? bench_read_gbs(o.threads) : bw1;
    model_load_opts mo = {.max_batch_tokens = P};
    if ((st = bk_cpu_create(o.threads, &be)) || (st = model_load(o.model, be, &mo, &m)))
        goto out;
    if (model_is_encoder(m)) {
        st = kiln_err_set(KILN_ERR_UNSUPPORTED, "%s is an embedding model; use kiln bench embed",
                          o.model);
        goto out;
    }
    const model_config *c = model_config_of(m);
    gen_opts go = {.max_seqs = 1, .n_ctx = P + G, .max_batch_tokens = P};
    if ((st = gen_create(m, NULL, &go, &run)) ||
        (st = bench_weight_bytes(o.model, false, &wbytes)))
        goto out;
    if (!(ids = kiln_calloc((size_t)P, sizeof *ids))) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for %d prompt ids", P);
        goto out;
    }
    /* valid but arbitrary ids from a fixed xorshift stream, after BOS: the
     * cost of a step does not depend on which ids it carries */
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (int32_t k = 0; k < P; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[k] = (int32_t)(x % (uint64_t)c->vocab_size);
    }
    if (c->bos_token_id >= 0 && c->bos_token_id < c->vocab_size)
        ids[0] = (int32_t)c->bos_token_id;

    sampler_params sp;
    sampler_params_default(&sp);
    sp.max_tokens = G;
    sp.ignore_eos = true;
    bench_gen_done d;
    gen_request rq = {.prompt = ids, .n_prompt = P, .params = sp, .on_done = bench_on_done,
                      .user = &d};
    for (int r = 0; r <= o.repeat; r++) { /* run 0 warms up (maps the weights in) */
        d.done = false;
        if ((st = gen_run(run, &rq, 1)))
            goto out;
        if (!d.done || d.s.n_gen != G) {
            st = kiln_err_set(KILN_ERR_INTERNAL, "bench: %d of %d tokens generated", d.s.n_gen, G);
            goto out;
        }
        if (r) {
            pre[r - 1] = d.s.prompt_tps;
            dec[r - 1] = d.s.gen_tps;
        }
    }

    if (o.peer && !bench_ends(o.model, ".gguf")) {
        fprintf(stderr, "kiln bench: llama.cpp reads GGUF files only; no peer for %s "
                        "(recorded as peer: null)\n", o.model);
    } else if (o.peer) {
        kiln_buf t = {0};
        for (int32_t k = 0; k < P; k++)
            buf_printf(&t, "%d\n", ids[k]);
        if (bench_tmp_file(t.data, t.len, idpath, sizeof idpath)) {
            char cmd[16384];
            snprintf(cmd, sizeof cmd, "'%s' '%s/bench/peers/llamacpp_peer.py' '%s' '%s' %d %d %d",
                     bench_python(), KILN_SOURCE_DIR, o.model, idpath, G, o.threads, o.repeat);
            peer = bench_run_peer(cmd);
            unlink(idpath);
        } else {
            fprintf(stderr, "kiln bench: cannot write the prompt ids for the peer "
                            "(recorded as peer: null)\n");
        }
        buf_free(&t);
    }

    settings = json_object();
    json_object_set_new(settings, "threads", json_integer(o.threads));
    json_object_set_new(settings, "prompt_tokens", json_integer(P));
    json_object_set_new(settings, "gen_tokens", json_integer(G));
    json_object_set_new(settings, "repeat", json_integer(o.repeat));
    json_object_set_new(settings, "batch", json_integer(1));
    json_object_set_new(settings, "prompt", json_string("arbitrary valid token ids "
                                                        "(fixed xorshift stream, BOS first)"));
    json_object_set_new(settings, "sampling", json_string("greedy, EOS ignored"));
    json_object_set_new(settings, "dtype", json_string("f32 activations, weights as stored"));
    json_object_set_new(settings, "backend", json_string("cpu"));
    json_object_set_new(settings, "weight_bytes", json_integer((json_int_t)wbytes));
    json_object_set_new(settings, "read_gbs_1_thread", json_real(bw1));
    json_object_set_new(settings, "read_gbs_all_threads", json_real(bwn));

    double roof = wbytes ? bwn * 1e9 / (double)wbytes : 0;
    double roof1 = wbytes ? bw1 * 1e9 / (double)wbytes : 0;
    double peer_pre = peer ? json_number_value(json_object_get(peer, "prefill_tps")) : -1;
    double peer_dec = peer ? json_number_value(json_object_get(peer, "decode_tps")) : -1;
    all = json_array();
    json_t *rp = bench_record("prefill", name, settings, bench_median(pre, o.repeat), "tokens/s",
                              roof * P, "weight-read bound of one batch of prompt_tokens: "
                              "read_gbs_all_threads / weight_bytes x prompt_tokens (loose: "
                              "prefill is compute-bound)", peer, peer_pre);
    json_t *rd = bench_record("decode", name, settings, bench_median(dec, o.repeat), "tokens/s",
                              roof, "decode roofline: read_gbs_all_threads / weight_bytes "
                              "(KV cache reads not counted)", peer, peer_dec);
    if (!rp || !rd) {
        json_decref(rp), json_decref(rd);
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for results");
        goto out;
    }
    json_object_set_new(rp, "runs", bench_runs_json(pre, o.repeat));
    json_object_set_new(rd, "runs", bench_runs_json(dec, o.repeat));
    json_object_set_new(rd, "ceiling_single_thread", json_real(roof1));
    json_array_append_new(all, rp);
    json_array_append_new(all, rd);
    bench_table_head();
    bench_table_row(rp);
    bench_table_row(rd);
    printf("weights read per decode step: %.1f MiB; read bandwidth %.2f GB/s (1 thread), "
           "%.2f GB/s (%d threads); decode roofline %.1f / %.1f tokens/s\n",
           (double)wbytes / (1 << 20), bw1, bwn, o.threads, roof1, roof);
    rc = bench_finish(all, o.out_dir, "generate");
out:
    if (st)
        rc = cli_fail();
    json_decref(all);
    json_decref(settings);
    json_decref(peer);
    kiln_free(ids);
    gen_free(run);
    model_free(m);
    if (be)
        be->ops->destroy(be);
    return rc;
}

/* ---- embed ---------------------------------------------------------------- */

/* Documents are words of this list in a fixed pseudo-random order. */
static const char *const bench_words[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "on",
    "by", "at", "from", "this", "an", "be", "are", "or", "which", "one", "had", "not", "but",
    "all", "were", "when", "we", "there", "can", "time", "water", "people", "river", "city",
    "market", "energy", "system", "memory", "model", "language", "history", "music", "garden",
    "winter", "summer", "mountain", "science", "school", "report", "engine", "network",
    "library", "kitchen", "window", "question", "answer", "number", "country", "village",
    "forest", "ocean", "machine", "computer", "program", "student", "teacher", "doctor",
    "hospital", "bridge", "railway", "station", "harbour", "weather", "morning", "evening",
    "government", "election", "economy", "industry", "company", "product", "price",
    "research", "experiment", "measurement", "temperature", "pressure", "distance", "light",
    "sound", "colour", "paper", "story", "picture", "family", "friend", "journey", "travel",
    "quickly", "slowly", "carefully", "important", "different", "possible", "available",
    "international", "environmental", "unexpected", "remarkable", "ancient", "modern",
    "green", "small", "large", "bright", "quiet", "heavy", "simple", "careful", "written",
    "built", "found", "known", "grows", "moves", "reads", "writes", "opens", "closes",
};

/* max_seq_length of <model dir>/sentence_bert_config.json, 0 if none. */
static int32_t bench_st_max_len(const char *model)
{
    char path[4200];
    struct stat sb;
    if (stat(model, &sb) || !S_ISDIR(sb.st_mode))
        return 0;
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", model);
    json_t *j = json_load_file(path, 0, NULL);
    json_int_t v = json_integer_value(json_object_get(j, "max_seq_length"));
    json_decref(j);
    return v > 0 && v <= (1 << 20) ? (int32_t)v : 0;
}

/* n documents into text (one per line) and off, each a run of words whose
 * token count (special tokens included) is drawn uniformly from 16..256;
 * counted per word, which is exact for WordPiece on whitespace-separated
 * words and close for other tokenizers.  *tokens gets the true count of
 * the whole set, from encoding each document with no truncation (a
 * tokenizer.json "truncation" setting, 128 in all-MiniLM-L6-v2, would
 * hide the long ones); *kept what remains at max_len. */
static kiln_status bench_make_docs(const tokenizer *t, int32_t n, kiln_buf *text, size_t *off,
                                   int64_t *tokens, int64_t *kept, int32_t max_len)
{
    enum { NW = sizeof bench_words / sizeof bench_words[0] };
    int32_t wtok[NW];
    kiln_ids ids = {0};
    kiln_status st = KILN_OK;
    for (int w = 0; w < NW && !st; w++) {
        ids_clear(&ids);
        st = tok_encode_trunc(t, bench_words[w], strlen(bench_words[w]), false, 0, &ids);
        wtok[w] = ids.len ? (int32_t)ids.len : 1;
    }
    ids_clear(&ids);
    if (!st)
        st = tok_encode_trunc(t, bench_words[0], strlen(bench_words[0]), true, 0, &ids);
    int32_t n_special = (int32_t)ids.len - wtok[0];
    if (n_special < 0)
        n_special = 0;
    uint64_t x = 0x2545f4914f6cdd1du;
    *tokens = *kept = 0;
    for (int32_t d = 0; d < n && !st; d++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int32_t want = 16 + (int32_t)(x % 241) - n_special, have = 0;
        off[d] = text->len;
        while (have < want && !st) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int w = (int)(x % NW);
            if (have)
                st = buf_append_char(text, ' ');
            if (!st)
                st = buf_append_str(text, bench_words[w]);
            have += wtok[w];
        }
        ids_clear(&ids);
        if (!st)
            st = tok_encode_trunc(t, text->data + off[d], text->len - off[d], true, 0, &ids);
        *tokens += (int64_t)ids.len;
        *kept += (int64_t)ids.len < max_len ? (int64_t)ids.len : max_len;
        if (!st)
            st = buf_append_char(text, '\n');
    }
    off[n] = text->len;
    ids_free(&ids);
    return st;
}

static int bench_embed(int argc, char **argv)
{
    bench_opts o;
    int rc = bench_parse_opts("embed", argc, argv, &o);
    if (rc >= 0)
        return rc;
    const int32_t N = o.docs;
    backend *bes[BENCH_MAX_DP] = {0}, *be = NULL;
    kiln_model *engines[BENCH_MAX_DP] = {0}, *m = NULL;
    int32_t docs_of[BENCH_MAX_DP] = {0};
    tokenizer *t = NULL;
    kiln_buf text = {0};
    size_t *off = NULL, *lens = NULL;
    const char **docs = NULL;
    float *emb = NULL;
    json_t *all = NULL, *settings = NULL, *peer = NULL;
    double dps[1000];
    char name[256], docpath[4200];
    uint64_t wbytes = 0;
    int64_t tokens = 0, kept = 0;
    kiln_status st;

    bench_device bd;
    model_stats ms;
    double bw1 = bench_read_gbs(1), bwn = o.threads > 1 ? bench_read_gbs(o.threads) : bw1;
    /* as kiln embed: the sentence-transformers length limit, a batch of at
     * least 512 tokens that holds the longest document; a GPU takes steps
     * of 16384 tokens */
    int32_t max_len = o.dummy ? 256 : bench_st_max_len(o.model), mbt = max_len > 512 ? max_len : 512;
    if ((st = cli_device_create_n(&o.dev, o.threads, o.dp, bes)))
        goto out;
    be = bes[0];
    /* the ceilings of one device (engine 0's); the bound below is o.dp times it */
    if ((st = bench_device_ceilings(be, o.threads, &bd)))
        goto out;
    if (bd.gpu)
        mbt = 16384;
    model_load_opts mo = {.max_batch_tokens = mbt};
    for (int i = 0; i < o.dp; i++)
        if ((st = bench_load_model(&o, bes[i], &mo, &engines[i], name, sizeof name)))
            goto out;
    m = engines[0];
    if ((st = tok_open(o.tokenizer, &t)))
        goto out;
    const model_config *c = model_config_of(m);
    if (!model_is_encoder(m)) {
        st = kiln_err_set(KILN_ERR_UNSUPPORTED, "%s is a %s text generation model; kiln bench "
                          "embed needs an embedding model (bert family)", name, c->arch_name);
        goto out;
    }
    if (!max_len)
        max_len = c->max_position_embeddings < mbt ? (int32_t)c->max_position_embeddings : mbt;
    /* every weight but the embedding tables, as the backend holds them */
    model_stats_of(m, &ms);
    wbytes = ms.weight_bytes - ms.embd_bytes;
    off = kiln_calloc((size_t)N + 1, sizeof *off);
    lens = kiln_calloc((size_t)N, sizeof *lens);
    docs = kiln_calloc((size_t)N, sizeof *docs);
    emb = kiln_calloc((size_t)N, (size_t)c->hidden_size * sizeof *emb);
    if (!off || !lens || !docs || !emb) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for %d documents", N);
        goto out;
    }
    if ((st = bench_make_docs(t, N, &text, off, &tokens, &kept, max_len)))
        goto out;
    for (int32_t i = 0; i < N; i++) {
        docs[i] = text.data + off[i];
        lens[i] = off[i + 1] - off[i] - 1; /* without the newline */
    }

    gen_embed_opts eo = {.max_batch_tokens = mbt, .max_len = max_len, .max_seqs = bd.gpu ? 1024 : 0,
                         .tok_threads = o.tok_threads};
    if (!o.tok_threads && bd.gpu) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN) / o.dp;
        eo.tok_threads = nc > 1 ? (int)(nc < 64 ? nc : 64) : 1;
    }
    /* warm-up: map the weights in, size the allocator's pools (every engine) */
    for (int i = 0; i < o.dp; i++)
        if ((st = gen_embed(engines[i], t, docs, lens, N < 64 ? N : 64, &eo, emb)))
            goto out;
    for (int r = 0; r < o.repeat; r++) {
        uint64_t t0 = clock_now_ns();
        if ((st = gen_embed_parallel(engines, o.dp, t, docs, lens, N, &eo, emb, docs_of)))
            goto out;
        double s = (double)(clock_now_ns() - t0) * 1e-9;
        dps[r] = s > 0 ? N / s : 0;
    }

    struct stat sb;
    if (o.peer && !o.dummy && (stat(o.model, &sb) || !S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "kiln bench: sentence-transformers loads model directories only; no "
                        "peer for %s (recorded as peer: null)\n", o.model);
    } else if (o.peer) {
        if (bench_tmp_file(text.data, text.len, docpath, sizeof docpath)) {
            char cmd[16384], src[8400];
            if (o.dummy)
                snprintf(src, sizeof src, "--config '%s' --tokenizer '%s'", o.config, o.tokenizer);
            else
                snprintf(src, sizeof src, "'%s'", o.model);
            snprintf(cmd, sizeof cmd,
                     "'%s' '%s/bench/peers/st_peer.py' %s '%s' %d %d --device %s --dtype %s",
                     bench_python(), KILN_SOURCE_DIR, src, docpath, o.threads, o.repeat,
                     bd.gpu ? "cuda" : "cpu",
                     be->ops->act_dtype == KILN_DT_F16 ? "f16"
                     : be->ops->act_dtype == KILN_DT_BF16 ? "bf16" : "f32");
            peer = bench_run_peer(cmd);
            unlink(docpath);
        } else {
            fprintf(stderr, "kiln bench: cannot write the documents for the peer "
                            "(recorded as peer: null)\n");
        }
    }

    /* Each forward step reads the weights once; gen_embed needs at least
     * this many steps (max_batch_tokens tokens, 64 documents a step). */
    int64_t steps = (kept + mbt - 1) / mbt, min_steps = (N + 63) / 64;
    if (steps < min_steps)
        steps = min_steps;
    double roof = wbytes && steps ? N * bwn * 1e9 / ((double)wbytes * (double)steps) : 0;
    /* on a GPU: the documents/s if every matmul FLOP ran at the measured
     * matmul rate (attention not counted: loose) */
    if (bd.gpu)
        roof = kept ? bd.gemm_tflops * 1e12 * N / (2.0 * (double)ms.layer_matmul_params * kept)
                    : 0;
    roof *= o.dp;

    settings = json_object();
    json_object_set_new(settings, "threads", json_integer(o.threads));
    json_object_set_new(settings, "docs", json_integer(N));
    json_object_set_new(settings, "doc_tokens", json_string("uniform 16..256 (special tokens "
                                                            "included), words of a fixed list"));
    json_object_set_new(settings, "tokens", json_integer((json_int_t)tokens));
    json_object_set_new(settings, "tokens_kept", json_integer((json_int_t)kept));
    json_object_set_new(settings, "max_len", json_integer(max_len));
    json_object_set_new(settings, "batch_tokens", json_integer(mbt));
    json_object_set_new(settings, "peer_batch_size", json_integer(32));
    json_object_set_new(settings, "repeat", json_integer(o.repeat));
    json_object_set_new(settings, "mode", json_string("end_to_end"));
    json_object_set_new(settings, "data_parallel", json_integer(o.dp));
    json_t *per = json_array();
    for (int i = 0; i < o.dp; i++)
        json_array_append_new(per, json_integer(docs_of[i]));
    json_object_set_new(settings, "docs_per_engine", per);
    json_object_set_new(settings, "dtype", json_string(bd.gpu ? dtype_name(be->ops->act_dtype)
                                                              : "f32 activations, weights as "
                                                                "stored"));
    json_object_set_new(settings, "backend", json_string(be->ops->name));
    json_object_set_new(settings, "weights", json_string(o.dummy ? "dummy (random, on the device)"
                                                                 : o.model));
    json_object_set_new(settings, "tok_threads", json_integer(eo.tok_threads > 1 ? eo.tok_threads
                                                                               : 1));
    json_object_set_new(settings, "gemm_tflops", json_real(bd.gemm_tflops));
    json_object_set_new(settings, "weight_bytes", json_integer((json_int_t)wbytes));
    json_object_set_new(settings, "read_gbs_1_thread", json_real(bw1));
    json_object_set_new(settings, "read_gbs_all_threads", json_real(bwn));
    all = json_array();
    json_t *r = bench_record("embed", name, settings, bench_median(dps, o.repeat), "docs/s", roof,
                             bd.gpu ? "matmul bound: gemm_tflops (measured in this run) over "
                                      "2 x the blocks' matrix elements x tokens kept (attention "
                                      "not counted)"
                                    : "weight-read bound: read_gbs_all_threads / weight_bytes "
                                      "per forward step, at the fewest steps the documents need "
                                      "(loose: encoding is compute-bound)",
                             peer, peer ? json_number_value(json_object_get(peer, "docs_per_s"))
                                        : -1);
    if (!r) {
        st = kiln_err_set(KILN_ERR_OOM, "bench: out of memory for results");
        goto out;
    }
    json_object_set_new(r, "device", json_string(bd.device));
    if (bd.gpu)
        json_object_set_new(r, "driver", json_string(bd.driver));
    json_object_set_new(r, "runs", bench_runs_json(dps, o.repeat));
    json_array_append_new(all, r);
    bench_table_head();
    bench_table_row(r);
    printf("%d documents, %lld tokens (%lld kept at max_len %d); weights %.1f MiB; read "
           "bandwidth %.2f GB/s (1 thread), %.2f GB/s (%d threads)\n",
           N, (long long)tokens, (long long)kept, max_len, (double)wbytes / (1 << 20), bw1, bwn,
           o.threads);
    rc = bench_finish(all, o.out_dir, "embed");
out:
    if (st)
        rc = cli_fail();
    json_decref(all);
    json_decref(settings);
    json_decref(peer);
    kiln_free(emb);
    kiln_free(docs);
    kiln_free(lens);
    kiln_free(off);
    buf_free(&text);
    tok_free(t);
    for (int i = 0; i < o.dp; i++) {
        model_free(engines[i]);
        if (bes[i])
            bes[i]->ops->destroy(bes[i]);
    }
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return bench_usage(argc < 2 ? stderr : stdout);
    if (!strcmp(argv[1], "tokenize"))
        return bench_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "generate"))
        return bench_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "embed"))
        return bench_embed(argc - 1, argv + 1);
    if (!strcmp(argv[1], "latency"))
        return bench_latency(argc - 1, argv + 1);
    if (!strcmp(argv[1], "prefill"))
        return bench_prefill(argc - 1, argv + 1);
    if (!strcmp(argv[1], "embed-model"))
        return bench_embed_model(argc - 1, argv + 1);
    fprintf(stderr, "kiln bench: unknown mode '%s'\n", argv[1]);
    return 2;
}

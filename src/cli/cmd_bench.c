/*
 * cmd_bench.c - `kiln bench MODE`: measured performance, written as result
 * records to bench/results/ (telemetry/report.h) and printed as a table.
 *
 *   kiln bench tokenize -m SRC [-m SRC ...] [--corpus FILE] [--seconds S]
 *                       [--no-peer] [--out DIR]
 *
 * tokenize: single-thread encode throughput (MB/s of input text) of each
 * tokenizer on the corpus, beside the reference library measured in the
 * same run (HF tokenizers for tokenizer.json, sentencepiece for .model; a
 * GGUF vocabulary has no live reference here), with the single-thread
 * memcpy bandwidth of this machine as the ceiling.
 */
#include "cli/cli.h"

#include "base/clock.h"
#include "base/fmap.h"
#include "telemetry/report.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static const char *bench_python(void)
{
    static char py[4200];
    const char *env = getenv("KILN_PYTHON");
    struct stat sb;
    if (env && *env)
        return env;
    snprintf(py, sizeof py, "%s/.venv/bin/python", KILN_SOURCE_DIR);
    return stat(py, &sb) == 0 ? py : "python3";
}

/* Run the peer script; NULL (and a note on stderr) when it cannot run. */
static json_t *bench_peer(const char *kind, const char *path, const char *corpus, double seconds)
{
    char cmd[16384], out[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s/bench/peers/tokenize_peer.py' %s '%s' '%s' %g",
             bench_python(), KILN_SOURCE_DIR, kind, path, corpus, seconds);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    int rc = p ? pclose(p) : -1;
    out[n] = '\0';
    json_t *j = rc == 0 ? json_loads(out, 0, NULL) : NULL;
    if (!j)
        fprintf(stderr, "kiln bench: peer measurement failed: %s\n", cmd);
    return j;
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

static int bench_usage(FILE *f)
{
    fprintf(f, "usage: kiln bench tokenize -m SRC [-m SRC ...] [--corpus FILE] [--seconds S]\n"
               "                           [--no-peer] [--out DIR]\n\n"
               "Single-thread tokenizer throughput on the corpus (default\n"
               "tests/data/tokenizer_corpus.txt) beside the reference library, written to\n"
               "DIR (default bench/results) as JSON.\n");
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

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return bench_usage(argc < 2 ? stderr : stdout);
    if (!strcmp(argv[1], "tokenize"))
        return bench_tokenize(argc - 1, argv + 1);
    fprintf(stderr, "kiln bench: unknown mode '%s'\n", argv[1]);
    return 2;
}

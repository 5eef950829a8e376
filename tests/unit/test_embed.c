/* test_embed.c - the embedding runner on the tiny bert of tests/golden/models
 * (CPU backend): gen_embed_ids against gen_embed of the same documents, bad
 * ids, and running out of memory: every single failed allocation of a run
 * either ends it with KILN_ERR_OOM or, inside a batch, halves the batch
 * and still gives the same vectors, counted in gen_embed_stats; the same
 * with tokenization on threads of its own; data-parallel engines
 * (gen_embed_parallel) against one engine, and their errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "backend/backend.h"
#include "base/alloc.h"
#include "engine/generate.h"
#include "kiln_test.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define ND 24
#define MAXLEN 40

static struct {
    backend *be;
    kiln_model *m;
    int32_t ids[ND * MAXLEN];
    int32_t lens[ND];
    int64_t hidden, vocab;
} E;

static int setup(void **state)
{
    char dir[4096];
    model_load_opts mo = {.max_batch_tokens = 256};
    uint64_t x = 12345;
    size_t off = 0;
    (void)state;
    snprintf(dir, sizeof dir, "%s/tests/golden/models/bert", kt_env("KILN_SOURCE_DIR"));
    if (bk_cpu_create(2, &E.be) || model_load(dir, E.be, &mo, &E.m))
        fail_msg("setup: %s", kiln_last_error());
    E.hidden = model_config_of(E.m)->hidden_size;
    E.vocab = model_config_of(E.m)->vocab_size;
    for (int i = 0; i < ND; i++) {
        E.lens[i] = 2 + (int32_t)(i * 7 % (MAXLEN - 2));
        for (int32_t k = 0; k < E.lens[i]; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            E.ids[off++] = (int32_t)(x % (uint64_t)E.vocab);
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_free(E.m);
    if (E.be)
        E.be->ops->destroy(E.be);
    return 0;
}

static void embed(gen_embed_stats *stats, float *out, kiln_status want)
{
    gen_embed_opts o = {.max_batch_tokens = 256, .max_seqs = 16, .stats = stats};
    kiln_status st = gen_embed_ids(E.m, E.ids, E.lens, ND, &o, out);
    if (st != want)
        fail_msg("gen_embed_ids: %d, expected %d (%s)", st, want, kiln_last_error());
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* Each document alone through model_embed's batch of one equals its row
 * of the packed run; stats count every token once. */
static void test_ids_batches(void **state)
{
    size_t n = (size_t)ND * (size_t)E.hidden;
    float *all = calloc(n, sizeof *all), *one = calloc((size_t)E.hidden, sizeof *one);
    gen_embed_stats s = {0};
    int64_t tokens = 0;
    (void)state;
    assert_true(all && one);
    embed(&s, all, KILN_OK);
    for (int i = 0; i < ND; i++)
        tokens += E.lens[i];
    assert_int_equal(s.tokens, tokens);
    assert_true(s.batches >= 2); /* 16 documents a batch at most */
    assert_int_equal(s.oom_retries, 0);
    size_t off = 0;
    for (int i = 0; i < ND; i++) {
        gen_embed_opts o = {.max_batch_tokens = 256};
        if (gen_embed_ids(E.m, E.ids + off, &E.lens[i], 1, &o, one))
            fail_msg("alone %d: %s", i, kiln_last_error());
        double d = max_diff(one, all + (size_t)i * (size_t)E.hidden, (size_t)E.hidden);
        if (d > 1e-5)
            fail_msg("document %d: alone and batched differ by %g", i, d);
        off += (size_t)E.lens[i];
    }
    free(all);
    free(one);
}

static void test_bad_ids(void **state)
{
    float out[1024];
    int32_t ids[3] = {1, 2, 3}, lens[2] = {2, 1};
    gen_embed_opts o = {.max_batch_tokens = 256};
    (void)state;
    assert_true(E.hidden <= 1024 / 2);
    ids[1] = (int32_t)E.vocab;
    assert_int_equal(gen_embed_ids(E.m, ids, lens, 2, &o, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "outside the vocabulary"));
    ids[1] = 2;
    lens[1] = 0;
    assert_int_equal(gen_embed_ids(E.m, ids, lens, 2, &o, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "no tokens"));
}

/* Fail the k-th allocation of a run, once, for every k the run makes. */
static void test_oom_retry(void **state)
{
    size_t n = (size_t)ND * (size_t)E.hidden;
    float *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    int retried = 0, failed = 0;
    (void)state;
    assert_true(ref && got);
    embed(NULL, ref, KILN_OK);
    /* a fresh backend and model each round, so the batch buffer and the
     * scratch start empty and grow inside the first batch */
    for (int64_t k = 0; k < 60; k++) {
        char dir[4096];
        model_load_opts mo = {.max_batch_tokens = 256};
        kiln_model *m = NULL;
        backend *be = NULL;
        gen_embed_stats s = {0};
        gen_embed_opts o = {.max_batch_tokens = 256, .max_seqs = 16, .stats = &s};
        snprintf(dir, sizeof dir, "%s/tests/golden/models/bert", kt_env("KILN_SOURCE_DIR"));
        if (bk_cpu_create(2, &be) || model_load(dir, be, &mo, &m))
            fail_msg("model_load: %s", kiln_last_error());
        memset(got, 0, n * sizeof *got);
        kiln_alloc_fail_burst(k, 1);
        kiln_status st = gen_embed_ids(m, E.ids, E.lens, ND, &o, got);
        kiln_alloc_fail_after(-1);
        model_free(m);
        be->ops->destroy(be);
        if (st == KILN_ERR_OOM) {
            failed++;
            continue;
        }
        assert_int_equal(st, KILN_OK);
        if (s.oom_retries > 0) {
            retried++;
            double d = max_diff(got, ref, n);
            if (d > 1e-5)
                fail_msg("allocation %lld failed: the halved batch differs by %g", (long long)k,
                         d);
        }
    }
    print_message("single allocation failures: %d reported as out of memory, %d retried as "
                  "halves\n", failed, retried);
    assert_true(retried >= 1);
    assert_true(failed >= 1);
    free(ref);
    free(got);
}

/* Tokenization on its own threads, chunk by chunk, overlapping the model:
 * the same vectors as tokenizing first, over several chunks; one failed
 * allocation anywhere (a pool thread, the producer, the model) ends the
 * run with KILN_ERR_OOM or is retried, and never hangs. */
/* The tiny bert's directory into dir and its tokenizer (owned: tok_free). */
static tokenizer *bert_tokenizer(char *dir, size_t cap)
{
    tokenizer *t = NULL;
    snprintf(dir, cap, "%s/tests/golden/models/bert", kt_env("KILN_SOURCE_DIR"));
    if (tok_open(dir, &t))
        fail_msg("tok_open: %s", kiln_last_error());
    return t;
}

static void test_pipelined_tokenization(void **state)
{
    enum { N = 5000 };
    static const char *const words[] = {"the", "cat", "sat", "on", "a", "mat", "while",
                                        "dogs", "ran", "far", "away", "quickly"};
    char dir[4096];
    tokenizer *t = NULL;
    char **texts = calloc(N, sizeof *texts);
    size_t n = (size_t)N * (size_t)E.hidden;
    float *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    int oom = 0;
    (void)state;
    assert_true(texts && ref && got);
    t = bert_tokenizer(dir, sizeof dir);
    for (int i = 0; i < N; i++) {
        char buf[256] = "";
        for (int w = 0; w < 1 + i % 9; w++) {
            strcat(buf, words[(i * 7 + w * 3) % 12]);
            strcat(buf, " ");
        }
        texts[i] = strdup(buf);
    }
    gen_embed_opts o = {.max_batch_tokens = 256, .max_seqs = 32};
    if (gen_embed(E.m, t, (const char *const *)texts, NULL, N, &o, ref))
        fail_msg("gen_embed: %s", kiln_last_error());
    o.tok_threads = 3;
    if (gen_embed(E.m, t, (const char *const *)texts, NULL, N, &o, got))
        fail_msg("gen_embed (pipelined): %s", kiln_last_error());
    double d = max_diff(got, ref, n);
    if (d > 1e-5)
        fail_msg("pipelined tokenization changes the vectors by %g", d);
    for (int64_t k = 0; k < 400; k += 37) {
        kiln_alloc_fail_burst(k, 1);
        kiln_status st = gen_embed(E.m, t, (const char *const *)texts, NULL, N, &o, got);
        kiln_alloc_fail_after(-1);
        if (st == KILN_ERR_OOM) {
            oom++;
            continue;
        }
        assert_int_equal(st, KILN_OK);
        assert_true(max_diff(got, ref, n) <= 1e-5);
    }
    print_message("pipelined runs with one failed allocation: %d out of memory\n", oom);
    assert_true(oom >= 1);
    for (int i = 0; i < N; i++)
        free(texts[i]);
    free(texts);
    free(ref);
    free(got);
    tok_free(t);
}

/* Three engines on three CPU backends give one engine's vectors, every
 * document embedded once; a bad engine's error stops the run and names it. */
static void test_data_parallel(void **state)
{
    enum { N = 3000, NE = 3 };
    char dir[4096], llama[4096];
    tokenizer *t = NULL;
    char **texts = calloc(N, sizeof *texts);
    size_t n = (size_t)N * (size_t)E.hidden;
    float *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    backend *bes[NE] = {0};
    kiln_model *ms[NE] = {0};
    int32_t docs[NE];
    model_load_opts mo = {.max_batch_tokens = 256};
    (void)state;
    assert_true(texts && ref && got);
    t = bert_tokenizer(dir, sizeof dir);
    for (int i = 0; i < N; i++) {
        char buf[512] = "";
        for (int w = 0; w < 1 + (i * 13) % 31; w++)
            strcat(buf, w % 3 ? "kiln " : "fires clay ");
        texts[i] = strdup(buf);
    }
    for (int i = 0; i < NE; i++)
        if (bk_cpu_create(1, &bes[i]) || model_load(dir, bes[i], &mo, &ms[i]))
            fail_msg("engine %d: %s", i, kiln_last_error());
    gen_embed_opts o = {.max_batch_tokens = 256, .max_seqs = 32};
    gen_embed_stats s1 = {0}, s3 = {0};
    o.stats = &s1;
    if (gen_embed(E.m, t, (const char *const *)texts, NULL, N, &o, ref))
        fail_msg("gen_embed: %s", kiln_last_error());
    o.stats = &s3;
    if (gen_embed_parallel(ms, NE, t, (const char *const *)texts, NULL, N, &o, got, docs))
        fail_msg("gen_embed_parallel: %s", kiln_last_error());
    double d = max_diff(got, ref, n);
    print_message("3 engines: %d + %d + %d documents, %lld batches (one engine: %lld), max "
                  "difference %g\n", docs[0], docs[1], docs[2], (long long)s3.batches,
                  (long long)s1.batches, d);
    if (d > 1e-6)
        fail_msg("data-parallel engines change the vectors by %g", d);
    assert_int_equal(docs[0] + docs[1] + docs[2], N);
    assert_int_equal(s3.tokens, s1.tokens);
    /* one engine: gen_embed itself */
    memset(got, 0, n * sizeof *got);
    assert_int_equal(gen_embed_parallel(ms, 1, t, (const char *const *)texts, NULL, N, &o, got,
                                        docs), KILN_OK);
    assert_true(max_diff(got, ref, n) == 0.0);
    assert_int_equal(docs[0], N);

    /* a decoder as engine 1: its error, naming it */
    snprintf(llama, sizeof llama, "%s/tests/golden/models/llama", kt_env("KILN_SOURCE_DIR"));
    kiln_model *bad = NULL;
    if (model_load(llama, bes[1], &mo, &bad))
        fail_msg("model_load llama: %s", kiln_last_error());
    kiln_model *mixed[2] = {ms[0], bad};
    kiln_status st = gen_embed_parallel(mixed, 2, t, (const char *const *)texts, NULL, N, &o,
                                        got, NULL);
    if (st == KILN_OK || !strstr(kiln_last_error(), "engine"))
        fail_msg("a bad engine: %s", st ? kiln_last_error() : "no error");
    assert_int_equal(gen_embed_parallel(ms, 0, t, (const char *const *)texts, NULL, N, &o, got,
                                        NULL), KILN_ERR_INVALID_ARG);
    model_free(bad);
    for (int i = 0; i < NE; i++) {
        model_free(ms[i]);
        bes[i]->ops->destroy(bes[i]);
    }
    for (int i = 0; i < N; i++)
        free(texts[i]);
    free(texts);
    free(ref);
    free(got);
    tok_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_batches),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_oom_retry),
        cmocka_unit_test(test_pipelined_tokenization),
        cmocka_unit_test(test_data_parallel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

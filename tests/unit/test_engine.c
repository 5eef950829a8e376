/* test_engine.c - the generation runner end to end on the tiny llama of
 * tests/golden/models (random weights, transformers goldens): greedy
 * tokens match transformers' generate(), and are the same alone, in a
 * batch of different prompts, with chunked prefill and with more requests
 * than slots; seeded sampling likewise; max tokens, EOS, stop strings,
 * context and pool overflow errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "backend/backend.h"
#include "engine/generate.h"
#include "kiln_test.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#define NP 4          /* golden prompts */
#define MAXGEN 300

typedef struct out_t {
    int32_t tokens[MAXGEN];
    gen_summary sum;
    char text[4096];
    size_t text_len;
    int done;
} out_t;

static struct {
    backend *be;
    kiln_model *m;
    tokenizer *tok;
    int32_t ids[NP][64];
    int32_t n_ids[NP];
    int32_t greedy[NP][32];
} E;

static kiln_status on_text(void *user, int32_t req, const char *text, size_t len)
{
    out_t *o = (out_t *)user + req;
    assert_true(o->text_len + len < sizeof o->text);
    memcpy(o->text + o->text_len, text, len);
    o->text_len += len;
    return KILN_OK;
}

static void on_done(void *user, int32_t req, const gen_summary *s)
{
    out_t *o = (out_t *)user + req;
    assert_true(s->n_gen <= MAXGEN);
    memcpy(o->tokens, s->tokens, (size_t)s->n_gen * sizeof(int32_t));
    o->sum = *s;
    o->done++;
}

static int setup(void **state)
{
    char dir[4096], path[4200];
    json_error_t je;
    snprintf(dir, sizeof dir, "%s/tests/golden/models/llama", kt_env("KILN_SOURCE_DIR"));
    snprintf(path, sizeof path, "%s/golden.json", dir);
    json_t *g = json_load_file(path, 0, &je);
    if (!g)
        fail_msg("%s: %s", path, je.text);
    json_t *ps = json_object_get(g, "prompts");
    assert_int_equal(json_array_size(ps), NP);
    for (size_t i = 0; i < NP; i++) {
        json_t *p = json_array_get(ps, i), *ids = json_object_get(p, "ids");
        json_t *gr = json_object_get(p, "greedy");
        E.n_ids[i] = (int32_t)json_array_size(ids);
        assert_true(E.n_ids[i] <= 64 && json_array_size(gr) >= 32);
        for (int32_t k = 0; k < E.n_ids[i]; k++)
            E.ids[i][k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        for (int k = 0; k < 32; k++)
            E.greedy[i][k] = (int32_t)json_integer_value(json_array_get(gr, (size_t)k));
    }
    json_decref(g);
    model_load_opts mo = {.max_batch_tokens = 64};
    if (bk_cpu_create(2, &E.be) || model_load(dir, E.be, &mo, &E.m))
        fail_msg("%s: %s", dir, kiln_last_error());
    snprintf(path, sizeof path, "%s/tests/data/tokenizers/bpe_bytelevel.json",
             kt_env("KILN_SOURCE_DIR"));
    if (tok_open(path, &E.tok))
        fail_msg("%s: %s", path, kiln_last_error());
    return 0;
}

static int teardown(void **state)
{
    tok_free(E.tok);
    model_free(E.m);
    if (E.be)
        E.be->ops->destroy(E.be);
    return 0;
}

static gen_runner *runner(int32_t max_seqs, int32_t mbt, int32_t n_ctx, int32_t n_blocks,
                          const tokenizer *t)
{
    gen_opts o = {.max_seqs = max_seqs, .max_batch_tokens = mbt, .n_ctx = n_ctx,
                  .n_blocks = n_blocks};
    gen_runner *r;
    if (gen_create(E.m, t, &o, &r))
        fail_msg("gen_create: %s", kiln_last_error());
    return r;
}

static gen_request request(int i, int32_t max_tokens, out_t *outs)
{
    gen_request rq = {.prompt = E.ids[i], .n_prompt = E.n_ids[i], .on_text = on_text,
                      .on_done = on_done, .user = outs};
    sampler_params_default(&rq.params);
    rq.params.max_tokens = max_tokens;
    rq.params.ignore_eos = true;
    return rq;
}

/* Each prompt alone, greedy: transformers' tokens. */
static void test_greedy_golden(void **state)
{
    gen_runner *r = runner(1, 64, 0, 0, NULL);
    for (int i = 0; i < NP; i++) {
        out_t out[1] = {0};
        gen_request rq = request(i, 32, out);
        assert_int_equal(gen_run(r, &rq, 1), KILN_OK);
        assert_int_equal(out[0].done, 1);
        assert_int_equal(out[0].sum.n_gen, 32);
        assert_int_equal(out[0].sum.n_prompt, E.n_ids[i]);
        assert_int_equal(out[0].sum.reason, GEN_STOP_MAX_TOKENS);
        assert_memory_equal(out[0].tokens, E.greedy[i], sizeof E.greedy[i]);
    }
    /* greedy tokens are chosen on the backend (argmax): every step of one
     * token a sequence timed (32 tokens a prompt: the prefill's and 31
     * more; a one-token prompt's prefill is such a step too), issuing it a
     * part of the whole */
    const gen_stats *gs = gen_stats_of(r);
    assert_int_equal(gs->device_greedy, gs->steps);
    assert_true(gs->timed_steps >= NP * 31 && gs->timed_steps < gs->steps);
    assert_true(gs->issue_s > 0.0 && gs->issue_s <= gs->step_s);
    gen_free(r);
}

/* All prompts in one run, with several runner shapes: the same tokens.
 * Shapes: one batch; 8-token steps (prompts chunked, prefill mixed with
 * decode); two slots for four requests (queued); 8-token blocks. */
static void test_batch_equals_alone(void **state)
{
    static const int32_t shapes[][4] = {
        {NP, 64, 0, 0}, {NP, 8, 0, 0}, {2, 64, 0, 0}, {3, 5, 0, 0}, {NP, 64, 128, 0},
    };
    for (size_t k = 0; k < KILN_ARRAY_LEN(shapes); k++) {
        gen_runner *r = runner(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3], NULL);
        out_t out[NP] = {0};
        gen_request rq[NP];
        for (int i = 0; i < NP; i++)
            rq[i] = request(i, 32, out);
        assert_int_equal(gen_run(r, rq, NP), KILN_OK);
        for (int i = 0; i < NP; i++) {
            assert_int_equal(out[i].done, 1);
            assert_int_equal(out[i].sum.n_gen, 32);
            assert_memory_equal(out[i].tokens, E.greedy[i], sizeof E.greedy[i]);
        }
        gen_free(r);
    }
}

/* Seeded sampling: a request's tokens depend on its seed only. */
static void test_seeded_batch(void **state)
{
    out_t alone[NP] = {0}, batch[NP] = {0}, again[1] = {0};
    gen_request rq[NP];
    gen_runner *r = runner(NP, 64, 0, 0, NULL);
    for (int i = 0; i < NP; i++) {
        rq[i] = request(i, 40, batch);
        rq[i].params.temperature = 1.2f;
        rq[i].params.top_p = 0.95f;
        rq[i].params.top_k = 100;
        rq[i].params.repetition_penalty = 1.1f;
        rq[i].params.seed = 1000 + (uint64_t)i;
    }
    assert_int_equal(gen_run(r, rq, NP), KILN_OK);
    for (int i = 0; i < NP; i++) {
        gen_request one = rq[i];
        one.user = &alone[i];
        assert_int_equal(gen_run(r, &one, 1), KILN_OK);
        assert_memory_equal(alone[i].tokens, batch[i].tokens, 40 * sizeof(int32_t));
    }
    /* a different seed gives a different continuation */
    gen_request other = rq[0];
    other.params.seed = 7;
    other.user = again;
    assert_int_equal(gen_run(r, &other, 1), KILN_OK);
    assert_memory_not_equal(again[0].tokens, batch[0].tokens, 40 * sizeof(int32_t));
    gen_free(r);
}

static void test_max_tokens_and_context(void **state)
{
    gen_runner *r = runner(2, 64, 64, 0, NULL);
    out_t out[2] = {0};
    gen_request rq[2] = {request(3, 5, out), request(1, 0, out)};
    /* prompt 3 has 40 tokens: 5 new; prompt 1 (5 tokens) with max_tokens 0
     * runs to the end of the 64-token context */
    assert_int_equal(E.n_ids[3], 40);
    assert_int_equal(gen_run(r, rq, 2), KILN_OK);
    assert_int_equal(out[0].sum.n_gen, 5);
    assert_int_equal(out[0].sum.reason, GEN_STOP_MAX_TOKENS);
    assert_int_equal(out[1].sum.n_gen, 64 - E.n_ids[1]);
    assert_int_equal(out[1].sum.reason, GEN_STOP_CONTEXT);
    assert_memory_equal(out[0].tokens, E.greedy[3], 5 * sizeof(int32_t));
    assert_memory_equal(out[1].tokens, E.greedy[1], 32 * sizeof(int32_t));
    assert_true(out[1].sum.prompt_s >= 0 && out[1].sum.gen_s > 0 && out[1].sum.gen_tps > 0);
    gen_free(r);
}

static void test_overflow_errors(void **state)
{
    out_t out[2] = {0};
    gen_runner *r = runner(2, 64, 64, 3, NULL); /* 64-token context, 48-token pool */
    gen_request rq = request(3, 30, out);       /* 40 + 30 > 64 */
    assert_int_equal(gen_run(r, &rq, 1), KILN_ERR_RANGE);
    assert_non_null(strstr(kiln_last_error(), "over the context of 64 tokens"));
    rq = request(3, 20, out);                    /* 60 tokens: 4 blocks > 3 */
    assert_int_equal(gen_run(r, &rq, 1), KILN_ERR_RANGE);
    assert_non_null(strstr(kiln_last_error(), "KV blocks"));
    /* a bad request anywhere fails the run before anything runs */
    gen_request two[2] = {request(0, 4, out), request(3, 30, out)};
    assert_int_equal(gen_run(r, two, 2), KILN_ERR_RANGE);
    assert_non_null(strstr(kiln_last_error(), "request 1"));
    assert_int_equal(out[0].done, 0);
    rq = request(0, 4, out);
    rq.n_prompt = 0;
    assert_int_equal(gen_run(r, &rq, 1), KILN_ERR_INVALID_ARG);
    int32_t bad = 512;
    rq.prompt = &bad;
    rq.n_prompt = 1;
    assert_int_equal(gen_run(r, &rq, 1), KILN_ERR_INVALID_ARG);
    rq = request(0, 4, out);
    rq.params.top_p = 2.0f;
    assert_int_equal(gen_run(r, &rq, 1), KILN_ERR_INVALID_ARG);
    const char *stop[1] = {"x"};
    rq = request(0, 4, out);
    rq.params.stop = stop;
    rq.params.n_stop = 1;
    assert_int_equal(gen_run(r, &rq, 1), KILN_ERR_INVALID_ARG); /* no tokenizer */
    /* two requests that each fit but not together: they run one after
     * the other */
    gen_request seq2[2] = {request(3, 4, out), request(2, 8, out)};
    assert_int_equal(gen_run(r, seq2, 2), KILN_OK);
    assert_int_equal(out[0].sum.n_gen, 4);
    assert_int_equal(out[1].sum.n_gen, 8);
    assert_memory_equal(out[1].tokens, E.greedy[2], 8 * sizeof(int32_t));
    gen_free(r);

    /* runner settings out of range */
    gen_opts o = {.max_seqs = 100, .max_batch_tokens = 64};
    gen_runner *bad_r = (gen_runner *)1;
    assert_int_equal(gen_create(E.m, NULL, &o, &bad_r), KILN_ERR_INVALID_ARG);
    assert_null(bad_r);
    gen_opts o2 = {.n_ctx = 100000};
    assert_int_equal(gen_create(E.m, NULL, &o2, &bad_r), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "positions"));
}

static void test_eos(void **state)
{
    gen_opts o = {.max_seqs = 2, .max_batch_tokens = 64, .n_eos = 1};
    o.eos[0] = E.greedy[0][3];
    gen_runner *r;
    assert_int_equal(gen_create(E.m, NULL, &o, &r), KILN_OK);
    out_t out[2] = {0};
    gen_request rq[2] = {request(0, 32, out), request(0, 32, out)};
    rq[0].params.ignore_eos = false;
    assert_int_equal(gen_run(r, rq, 2), KILN_OK);
    int first = 0;
    while (E.greedy[0][first] != o.eos[0])
        first++;
    assert_int_equal(out[0].sum.n_gen, first + 1); /* the EOS token is counted */
    assert_int_equal(out[0].sum.reason, GEN_STOP_EOS);
    assert_int_equal(out[1].sum.n_gen, 32);       /* ignore_eos */
    gen_free(r);
    /* the model's own EOS (id 2 in config.json) is a default */
    int32_t ids[GEN_MAX_EOS];
    int32_t n = gen_default_eos(E.m, NULL, ids);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 2);
}

/* Text through a tokenizer: the streamed pieces form the decoded text, and
 * a stop string cuts it before its first occurrence. */
static void test_text_and_stop_strings(void **state)
{
    gen_runner *r = runner(NP, 64, 0, 0, E.tok);
    out_t full[NP] = {0}, cut[NP] = {0};
    gen_request rq[NP];
    for (int i = 0; i < NP; i++)
        rq[i] = request(i, 32, full);
    assert_int_equal(gen_run(r, rq, NP), KILN_OK);
    char stops[NP][8];
    const char *stop_list[NP][1];
    for (int i = 0; i < NP; i++) {
        kiln_buf want = {0};
        assert_int_equal(tok_decode(E.tok, full[i].tokens, 32, true, &want), KILN_OK);
        assert_int_equal(full[i].text_len, want.len);
        assert_memory_equal(full[i].text, want.data, want.len);
        buf_free(&want);
        /* a 3-byte ASCII stop string from the middle of the text */
        size_t at = full[i].text_len / 2;
        while (at + 3 < full[i].text_len &&
               ((unsigned char)full[i].text[at] >= 0x80 ||
                (unsigned char)full[i].text[at + 1] >= 0x80 ||
                (unsigned char)full[i].text[at + 2] >= 0x80 || !full[i].text[at]))
            at++;
        assert_true(at + 3 < full[i].text_len);
        memcpy(stops[i], full[i].text + at, 3);
        stops[i][3] = '\0';
        stop_list[i][0] = stops[i];
        rq[i] = request(i, 32, cut);
        rq[i].params.stop = stop_list[i];
        rq[i].params.n_stop = 1;
    }
    assert_int_equal(gen_run(r, rq, NP), KILN_OK);
    for (int i = 0; i < NP; i++) {
        const char *first = memmem(full[i].text, full[i].text_len, stops[i], 3);
        size_t keep = (size_t)(first - full[i].text);
        assert_int_equal(cut[i].sum.reason, GEN_STOP_STRING);
        assert_int_equal(cut[i].text_len, keep);
        assert_memory_equal(cut[i].text, full[i].text, keep);
        assert_true(cut[i].sum.n_gen < 32);
        assert_memory_equal(cut[i].tokens, full[i].tokens,
                            (size_t)cut[i].sum.n_gen * sizeof(int32_t));
    }
    gen_free(r);
}

static void test_encoder_and_decoder_roles(void **state)
{
    char dir[4096];
    kiln_model *bert;
    gen_runner *r = (gen_runner *)1;
    snprintf(dir, sizeof dir, "%s/tests/golden/models/bert", kt_env("KILN_SOURCE_DIR"));
    model_load_opts mo = {.max_batch_tokens = 64};
    assert_int_equal(model_load(dir, E.be, &mo, &bert), KILN_OK);
    assert_int_equal(gen_create(bert, NULL, NULL, &r), KILN_ERR_INVALID_ARG);
    assert_null(r);
    model_free(bert);
    const char *texts[1] = {"hello"};
    float v[64];
    assert_int_equal(gen_embed(E.m, E.tok, texts, NULL, 1, NULL, v), KILN_ERR_INVALID_ARG);
}

/* A KV budget sizes the pool: blocks it holds (less one padding block),
 * never more than max_seqs full contexts; one that cannot hold a whole
 * context is an out-of-memory error naming the figures.  Requests still
 * run, fewer at a time. */
static void test_kv_budget(void **state)
{
    size_t per_block = model_kv_bytes_per_token(E.m) * 16;
    gen_opts o = {.max_seqs = 4, .max_batch_tokens = 64, .n_ctx = 64, .block_size = 16};
    gen_runner *r = NULL;
    out_t outs[NP];
    gen_request rq[NP];
    (void)state;

    o.kv_pool_bytes = per_block * 7; /* 6 blocks after the padding one: 1 context */
    if (gen_create(E.m, NULL, &o, &r))
        fail_msg("gen_create: %s", kiln_last_error());
    assert_int_equal(gen_options(r)->n_blocks, 6);
    memset(outs, 0, sizeof outs);
    for (int i = 0; i < NP; i++)
        rq[i] = request(i, 8, outs);
    if (gen_run(r, rq, NP))
        fail_msg("gen_run: %s", kiln_last_error());
    for (int i = 0; i < NP; i++) {
        assert_int_equal(outs[i].done, 1);
        assert_memory_equal(outs[i].tokens, E.greedy[i], 8 * sizeof(int32_t));
    }
    gen_free(r);

    o.kv_pool_bytes = (size_t)1 << 40; /* plenty: max_seqs full contexts */
    if (gen_create(E.m, NULL, &o, &r))
        fail_msg("gen_create: %s", kiln_last_error());
    assert_int_equal(gen_options(r)->n_blocks, 4 * 4);
    gen_free(r);

    o.kv_pool_bytes = per_block * 4; /* 3 blocks: not one 64-token context */
    assert_int_equal(gen_create(E.m, NULL, &o, &r), KILN_ERR_OOM);
    assert_null(r);
    assert_non_null(strstr(kiln_last_error(), "--gpu-memory-utilization"));
}

/* model_stats_of: the blocks' matrix elements as the config gives them
 * (the count prefill FLOPs are taken from), lm_head, and a dummy model of
 * the same config holding weights of the same shapes and bytes (F32 on the
 * CPU, as the file's). */
static void test_model_stats(void **state)
{
    const model_config *c = model_config_of(E.m);
    uint64_t h = (uint64_t)c->hidden_size, q = (uint64_t)(c->n_heads * c->head_dim);
    uint64_t kv = (uint64_t)(c->n_kv_heads * c->head_dim), ff = (uint64_t)c->intermediate_size;
    model_load_opts mo = {.max_batch_tokens = 64};
    model_stats s, sd;
    kiln_model *dm = NULL;
    (void)state;

    model_stats_of(E.m, &s);
    assert_int_equal(s.layer_matmul_params,
                     (uint64_t)c->n_layers * (h * q + 2 * h * kv + q * h + 3 * h * ff));
    assert_int_equal(s.head_params, (uint64_t)c->vocab_size * h);
    assert_true(s.embd_bytes > 0 && s.step_bytes > 0 && s.step_bytes <= s.weight_bytes);
    if (model_load_dummy(c, 7, E.be, &mo, &dm))
        fail_msg("model_load_dummy: %s", kiln_last_error());
    model_stats_of(dm, &sd);
    assert_int_equal(sd.layer_matmul_params, s.layer_matmul_params);
    assert_int_equal(sd.head_params, s.head_params);
    model_free(dm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_golden),
        cmocka_unit_test(test_batch_equals_alone),
        cmocka_unit_test(test_seeded_batch),
        cmocka_unit_test(test_max_tokens_and_context),
        cmocka_unit_test(test_overflow_errors),
        cmocka_unit_test(test_eos),
        cmocka_unit_test(test_text_and_stop_strings),
        cmocka_unit_test(test_encoder_and_decoder_roles),
        cmocka_unit_test(test_kv_budget),
        cmocka_unit_test(test_model_stats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_hf_config.c - config.json parsing against the published configs in
 * tests/data/configs/ (one per supported family and variant), the
 * sentence-transformers pooling files, and malformed configs.
 */
#include "format/hf_config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

/* ---- helpers ------------------------------------------------------------ */

/* Parse tests/data/configs/<name>; fails the test on error. */
static model_config load(const char *name)
{
    char path[4096];
    model_config c;
    size_t n;

    snprintf(path, sizeof path, "%s/tests/data/configs/%s", kt_env("KILN_SOURCE_DIR"), name);
    char *json = kt_read_file(path, &n);
    if (hf_config_parse(json, n, &c))
        fail_msg("%s: %s", name, kiln_last_error());
    free(json);
    return c;
}

static void assert_float(float got, double want)
{
    double d = got - want, tol = 1e-6 * (want < 0 ? -want : want) + 1e-30;
    if (d > tol || d < -tol)
        fail_msg("got %.9g, want %.9g", (double)got, want);
}

static void check_shape(const model_config *c, int64_t vocab, int64_t hidden, int64_t ffn,
                        int64_t layers, int64_t heads, int64_t kv, int64_t head_dim,
                        int64_t max_pos)
{
    assert_int_equal(c->vocab_size, vocab);
    assert_int_equal(c->hidden_size, hidden);
    assert_int_equal(c->intermediate_size, ffn);
    assert_int_equal(c->n_layers, layers);
    assert_int_equal(c->n_heads, heads);
    assert_int_equal(c->n_kv_heads, kv);
    assert_int_equal(c->head_dim, head_dim);
    assert_int_equal(c->max_position_embeddings, max_pos);
}

static void check_ids(const model_config *c, int64_t bos, int64_t eos, int64_t pad)
{
    assert_int_equal(c->bos_token_id, bos);
    assert_int_equal(c->eos_token_id, eos);
    assert_int_equal(c->pad_token_id, pad);
}

static void check_no_window(const model_config *c)
{
    assert_int_equal(c->sliding_window, 0);
    for (int i = 0; i < MCFG_MAX_LAYERS; i++)
        assert_int_equal(c->layer_sliding[i], 0);
}

/* Decoder fields shared by the llama family. */
static void check_llama_common(const model_config *c)
{
    assert_int_equal(c->arch, MCFG_ARCH_LLAMA);
    assert_string_equal(c->arch_name, "llama");
    assert_int_equal(c->act, MCFG_ACT_SILU);
    assert_float(c->norm_eps, 1e-5);
    assert_false(c->qk_norm);
    assert_false(c->attention_bias);
    assert_false(c->mlp_bias);
    assert_false(c->embed_scale_sqrt_hidden);
    assert_float(c->partial_rotary_factor, 1.0);
    assert_float(c->attn_logit_softcap, 0);
    assert_float(c->final_logit_softcap, 0);
    assert_int_equal(c->pooling, MCFG_POOL_NONE);
    check_no_window(c);
}

/* ---- llama ---------------------------------------------------------------- */

static void test_llama2_7b(void **state)
{
    model_config c = load("llama-2-7b.json");
    check_llama_common(&c);
    check_shape(&c, 32000, 4096, 11008, 32, 32, 32, 128, 4096);
    assert_float(c.rope_theta, 10000);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_NONE);
    assert_false(c.tie_word_embeddings);
    check_ids(&c, 1, 2, -1);
    assert_string_equal(c.torch_dtype, "float16");
}

static void test_llama31_8b(void **state)
{
    model_config c = load("llama-3.1-8b.json");
    check_llama_common(&c);
    check_shape(&c, 128256, 4096, 14336, 32, 32, 8, 128, 131072);
    assert_float(c.rope_theta, 500000);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_LLAMA3);
    assert_float(c.rope_factor, 8);
    assert_float(c.rope_low_freq_factor, 1);
    assert_float(c.rope_high_freq_factor, 4);
    assert_int_equal(c.rope_original_max_pos, 8192);
    assert_false(c.tie_word_embeddings);
    check_ids(&c, 128000, 128001, -1);
    assert_string_equal(c.torch_dtype, "bfloat16");
}

static void test_llama32_1b(void **state)
{
    model_config c = load("llama-3.2-1b.json");
    check_llama_common(&c);
    check_shape(&c, 128256, 2048, 8192, 16, 32, 8, 64, 131072);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_LLAMA3);
    assert_float(c.rope_factor, 32);
    assert_float(c.rope_high_freq_factor, 4);
    assert_int_equal(c.rope_original_max_pos, 8192);
    assert_true(c.tie_word_embeddings);
    check_ids(&c, 128000, 128001, -1);
}

static void test_tinyllama(void **state)
{
    model_config c = load("tinyllama-1.1b-chat.json");
    check_llama_common(&c);
    check_shape(&c, 32000, 2048, 5632, 22, 32, 4, 64, 2048);
    assert_float(c.rope_theta, 10000);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_NONE);
    assert_false(c.tie_word_embeddings);
    check_ids(&c, 1, 2, -1);
}

static void test_smollm2(void **state)
{
    model_config c = load("smollm2-135m.json");
    check_llama_common(&c);
    check_shape(&c, 49152, 576, 1536, 30, 9, 3, 64, 8192);
    assert_float(c.rope_theta, 100000);
    assert_true(c.tie_word_embeddings);
    check_ids(&c, 0, 0, -1);
}

/* ---- mistral, qwen --------------------------------------------------------- */

static void test_mistral_7b(void **state)
{
    model_config c = load("mistral-7b-v0.1.json");
    assert_int_equal(c.arch, MCFG_ARCH_MISTRAL);
    check_shape(&c, 32000, 4096, 14336, 32, 32, 8, 128, 32768);
    assert_int_equal(c.sliding_window, 4096);
    for (int i = 0; i < 32; i++)
        assert_int_equal(c.layer_sliding[i], 1);
    assert_int_equal(c.layer_sliding[32], 0);
    assert_float(c.rope_theta, 10000);
    assert_float(c.norm_eps, 1e-5);
    assert_false(c.tie_word_embeddings);
    assert_false(c.attention_bias);
    check_ids(&c, 1, 2, -1);
}

static void test_qwen25_05b(void **state)
{
    model_config c = load("qwen2.5-0.5b.json");
    assert_int_equal(c.arch, MCFG_ARCH_QWEN2);
    check_shape(&c, 151936, 896, 4864, 24, 14, 2, 64, 32768);
    assert_true(c.attention_bias);
    assert_false(c.attention_out_bias);
    assert_false(c.qk_norm);
    assert_true(c.tie_word_embeddings);
    assert_float(c.rope_theta, 1000000);
    assert_float(c.norm_eps, 1e-6);
    check_no_window(&c); /* use_sliding_window is false */
    check_ids(&c, 151643, 151643, -1);
}

static void test_qwen3_06b(void **state)
{
    model_config c = load("qwen3-0.6b.json");
    assert_int_equal(c.arch, MCFG_ARCH_QWEN3);
    /* head_dim 128 though hidden/heads is 64 */
    check_shape(&c, 151936, 1024, 3072, 28, 16, 8, 128, 40960);
    assert_true(c.qk_norm);
    assert_false(c.attention_bias);
    assert_true(c.tie_word_embeddings);
    assert_float(c.rope_theta, 1000000);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_NONE);
    check_no_window(&c);
    check_ids(&c, 151643, 151645, -1);
}

/* ---- gemma3 -------------------------------------------------------------------- */

static void check_gemma3_common(const model_config *c)
{
    assert_int_equal(c->arch, MCFG_ARCH_GEMMA3);
    assert_int_equal(c->act, MCFG_ACT_GELU_TANH);
    assert_true(c->qk_norm);
    assert_true(c->embed_scale_sqrt_hidden);
    assert_true(c->tie_word_embeddings);
    assert_false(c->attention_bias);
    assert_float(c->rope_theta, 1000000);
    assert_float(c->rope_local_theta, 10000);
    assert_float(c->query_pre_attn_scalar, 256);
    assert_float(c->attn_logit_softcap, 0);
    assert_float(c->final_logit_softcap, 0);
    assert_float(c->norm_eps, 1e-6);
    check_ids(c, 2, 1, 0);
    assert_string_equal(c->torch_dtype, "bfloat16");
    for (int64_t i = 0; i < c->n_layers; i++)
        assert_int_equal(c->layer_sliding[i], (i + 1) % 6 != 0);
    assert_int_equal(c->layer_sliding[c->n_layers], 0);
}

static void test_gemma3_270m(void **state)
{
    model_config c = load("gemma-3-270m.json");
    assert_string_equal(c.arch_name, "gemma3_text");
    check_shape(&c, 262144, 640, 2048, 18, 4, 1, 256, 32768);
    assert_int_equal(c.sliding_window, 512);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_NONE);
    check_gemma3_common(&c); /* from layer_types */
}

static void test_gemma3_1b(void **state)
{
    model_config c = load("gemma-3-1b-it.json");
    check_shape(&c, 262144, 1152, 6912, 26, 4, 1, 256, 32768);
    assert_int_equal(c.sliding_window, 512);
    assert_int_equal(c.sliding_window_pattern, 6);
    check_gemma3_common(&c); /* eos [1, 106] -> 1 */
}

static void test_gemma3_4b_multimodal(void **state)
{
    model_config c = load("gemma-3-4b-it.json");
    assert_string_equal(c.arch_name, "gemma3");
    /* text_config gives only some fields; the rest are Gemma3TextConfig's */
    check_shape(&c, 262208, 2560, 10240, 34, 8, 4, 256, 131072);
    assert_int_equal(c.sliding_window, 1024);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_LINEAR);
    assert_float(c.rope_factor, 8);
    check_gemma3_common(&c);
}

/* ---- bert ------------------------------------------------------------------------ */

static void check_bert_common(const model_config *c)
{
    assert_int_equal(c->arch, MCFG_ARCH_BERT);
    assert_string_equal(c->arch_name, "bert");
    assert_int_equal(c->act, MCFG_ACT_GELU);
    assert_float(c->norm_eps, 1e-12);
    assert_int_equal(c->type_vocab_size, 2);
    assert_true(c->absolute_positions);
    assert_true(c->attention_bias);
    assert_true(c->attention_out_bias);
    assert_true(c->mlp_bias);
    assert_false(c->tie_word_embeddings);
    check_ids(c, -1, -1, 0);
    check_no_window(c);
}

static void test_minilm_config(void **state)
{
    model_config c = load("all-minilm-l6-v2.json");
    check_bert_common(&c);
    check_shape(&c, 30522, 384, 1536, 6, 12, 12, 32, 512);
    assert_string_equal(c.torch_dtype, "");
    assert_int_equal(c.pooling, MCFG_POOL_NONE);
}

static void test_bge_base(void **state)
{
    model_config c = load("bge-base-en-v1.5.json");
    check_bert_common(&c);
    check_shape(&c, 30522, 768, 3072, 12, 12, 12, 64, 512);
    assert_string_equal(c.torch_dtype, "float32");
}

static void test_load_dir_bge(void **state)
{
    char dir[4096];
    model_config c;
    snprintf(dir, sizeof dir, "%s/tests/data/configs/bge-base-en-v1.5-dir",
             kt_env("KILN_SOURCE_DIR"));
    if (hf_config_load_dir(dir, &c))
        fail_msg("%s", kiln_last_error());
    check_bert_common(&c);
    assert_int_equal(c.pooling, MCFG_POOL_CLS);
    assert_true(c.normalize);
}

static void test_load_dir_minilm(void **state)
{
    char dir[4096];
    model_config c;
    kt_model_or_skip(dir, sizeof dir, "all-MiniLM-L6-v2");
    if (hf_config_load_dir(dir, &c))
        fail_msg("%s", kiln_last_error());
    check_shape(&c, 30522, 384, 1536, 6, 12, 12, 32, 512);
    assert_int_equal(c.pooling, MCFG_POOL_MEAN);
    assert_true(c.normalize);
}

static void test_load_dir_errors(void **state)
{
    model_config c;
    assert_int_equal(hf_config_load_dir("/nonexistent/kiln/dir", &c), KILN_ERR_IO);
    assert_non_null(strstr(kiln_last_error(), "config.json"));
}

/* ---- defaults and malformed configs ------------------------------------------------ */

static void test_minimal_takes_family_defaults(void **state)
{
    static const char *js = "{\"model_type\": \"llama\", \"head_dim\": null, "
                            "\"rope_scaling\": null, \"eos_token_id\": [7, 8]}";
    model_config c;
    assert_int_equal(hf_config_parse(js, strlen(js), &c), KILN_OK);
    check_shape(&c, 32000, 4096, 11008, 32, 32, 32, 128, 2048);
    check_ids(&c, 1, 7, -1);
}

/* transformers 5 writes rope settings only under "rope_parameters". */
static void test_rope_parameters_v5(void **state)
{
    static const char *llama = "{\"model_type\": \"llama\", \"rope_parameters\": "
                               "{\"factor\": 8.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
                               "\"original_max_position_embeddings\": 8192, \"rope_theta\": 500000.0, "
                               "\"rope_type\": \"llama3\"}}";
    static const char *gemma = "{\"model_type\": \"gemma3_text\", \"rope_parameters\": "
                               "{\"full_attention\": {\"factor\": 2.0, \"rope_theta\": 1000000.0, "
                               "\"rope_type\": \"linear\"}, \"sliding_attention\": "
                               "{\"rope_theta\": 20000.0, \"rope_type\": \"default\"}}}";
    static const char *bad = "{\"model_type\": \"gemma3_text\", \"rope_parameters\": "
                             "{\"sliding_attention\": {\"rope_theta\": 10000.0, "
                             "\"rope_type\": \"linear\", \"factor\": 2.0}}}";
    model_config c;
    assert_int_equal(hf_config_parse(llama, strlen(llama), &c), KILN_OK);
    assert_true(c.rope_theta == 500000.0f);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_LLAMA3);
    assert_true(c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f &&
                c.rope_high_freq_factor == 4.0f);
    assert_int_equal(c.rope_original_max_pos, 8192);
    assert_int_equal(hf_config_parse(gemma, strlen(gemma), &c), KILN_OK);
    assert_true(c.rope_theta == 1000000.0f && c.rope_local_theta == 20000.0f);
    assert_int_equal(c.rope_scaling, MCFG_ROPE_LINEAR);
    assert_true(c.rope_factor == 2.0f);
    assert_int_equal(hf_config_parse(bad, strlen(bad), &c), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "sliding_attention"));
}

typedef struct bad_case {
    const char *json;
    kiln_status st;
    const char *needle; /* expected in kiln_last_error() */
} bad_case;

#define LL "{\"model_type\":\"llama\",\"vocab_size\":1000,\"hidden_size\":64," \
           "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"

static const bad_case bad_cases[] = {
    {"", KILN_ERR_FORMAT, "not valid JSON"},
    {"{\"model_type\": \"llama\",", KILN_ERR_FORMAT, "line 1"},
    {"{\n\"model_type\": \"llama\"\n,,}", KILN_ERR_FORMAT, "line 3"},
    {"[1, 2]", KILN_ERR_FORMAT, "not a JSON object"},
    {"{}", KILN_ERR_FORMAT, "model_type"},
    {"{\"model_type\": 3}", KILN_ERR_FORMAT, "'model_type' must be a string"},
    {"{\"model_type\": \"gpt2\"}", KILN_ERR_UNSUPPORTED, "'gpt2'"},
    {"{\"model_type\": \"llama\", \"model_type\": \"llama\"}", KILN_ERR_FORMAT, "duplicate"},
    {LL "\"num_key_value_heads\":4,\"hidden_size\":\"64\"}", KILN_ERR_FORMAT, "duplicate"},
    {"{\"model_type\":\"llama\",\"hidden_size\":\"4096\"}", KILN_ERR_FORMAT,
     "'hidden_size' must be an integer, not a string"},
    {"{\"model_type\":\"llama\",\"num_hidden_layers\":2.5}", KILN_ERR_FORMAT,
     "'num_hidden_layers' must be an integer"},
    {LL "\"num_key_value_heads\":3}", KILN_ERR_FORMAT, "n_kv_heads"},
    {"{\"model_type\":\"llama\",\"hidden_size\":100,\"num_attention_heads\":3}", KILN_ERR_FORMAT,
     "hidden_size = 100 is not a multiple of n_heads = 3"},
    {"{\"model_type\":\"llama\",\"hidden_size\":1000000000000}", KILN_ERR_FORMAT, "hidden_size"},
    {"{\"model_type\":\"llama\",\"num_hidden_layers\":100000}", KILN_ERR_FORMAT, "n_layers"},
    {"{\"model_type\":\"llama\",\"num_hidden_layers\":0}", KILN_ERR_FORMAT, "n_layers"},
    {"{\"model_type\":\"llama\",\"vocab_size\":-5}", KILN_ERR_FORMAT, "vocab_size"},
    {"{\"model_type\":\"llama\",\"num_attention_heads\":0}", KILN_ERR_FORMAT, "n_heads"},
    {"{\"model_type\":\"llama\",\"max_position_embeddings\":-1}", KILN_ERR_FORMAT,
     "max_position_embeddings"},
    {"{\"model_type\":\"llama\",\"rms_norm_eps\":\"small\"}", KILN_ERR_FORMAT, "rms_norm_eps"},
    {"{\"model_type\":\"llama\",\"rms_norm_eps\":-1}", KILN_ERR_FORMAT, "norm_eps"},
    {"{\"model_type\":\"llama\",\"rope_theta\":\"big\"}", KILN_ERR_FORMAT,
     "'rope_theta' must be a number"},
    {"{\"model_type\":\"llama\",\"rope_theta\":1e300}", KILN_ERR_FORMAT, "rope_theta"},
    {"{\"model_type\":\"llama\",\"rope_scaling\":\"linear\"}", KILN_ERR_FORMAT,
     "'rope_scaling' must be an object"},
    {"{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"longrope\",\"factor\":2}}",
     KILN_ERR_UNSUPPORTED, "'longrope'"},
    {"{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"llama3\"}}", KILN_ERR_FORMAT,
     "rope_scaling.factor' is missing"},
    {"{\"model_type\":\"llama\",\"rope_scaling\":{\"factor\":2}}", KILN_ERR_FORMAT, "rope_type"},
    {"{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":\"linear\",\"factor\":\"2\"}}",
     KILN_ERR_FORMAT, "'rope_scaling.factor' must be a number"},
    {"{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
     "\"low_freq_factor\":4,\"high_freq_factor\":1}}", KILN_ERR_FORMAT, "high_freq_factor"},
    {"{\"model_type\":\"llama\",\"tie_word_embeddings\":\"yes\"}", KILN_ERR_FORMAT,
     "'tie_word_embeddings' must be a boolean"},
    {"{\"model_type\":\"llama\",\"attention_bias\":1}", KILN_ERR_FORMAT, "attention_bias"},
    {"{\"model_type\":\"llama\",\"hidden_act\":\"mish\"}", KILN_ERR_UNSUPPORTED, "'mish'"},
    {"{\"model_type\":\"llama\",\"hidden_act\":[\"silu\"]}", KILN_ERR_FORMAT, "hidden_act"},
    {"{\"model_type\":\"llama\",\"eos_token_id\":[\"a\"]}", KILN_ERR_FORMAT, "eos_token_id"},
    {"{\"model_type\":\"llama\",\"eos_token_id\":99999}", KILN_ERR_FORMAT, "eos_token_id"},
    {"{\"model_type\":\"llama\",\"bos_token_id\":-7}", KILN_ERR_FORMAT, "bos_token_id"},
    {"{\"model_type\":\"llama\",\"torch_dtype\":7}", KILN_ERR_FORMAT, "torch_dtype"},
    {"{\"model_type\":\"llama\",\"torch_dtype\":\"a-very-long-dtype-name\"}", KILN_ERR_FORMAT,
     "torch_dtype"},
    {"{\"model_type\":\"mistral\",\"sliding_window\":\"4096\"}", KILN_ERR_FORMAT,
     "sliding_window"},
    {"{\"model_type\":\"mistral\",\"sliding_window\":-2}", KILN_ERR_FORMAT, "sliding_window"},
    {"{\"model_type\":\"qwen2\",\"use_sliding_window\":\"true\"}", KILN_ERR_FORMAT,
     "use_sliding_window"},
    {"{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":2,\"layer_types\":"
     "[\"full_attention\"]}", KILN_ERR_FORMAT, "layer_types"},
    {"{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":1,\"layer_types\":"
     "[\"chunked_attention\"]}", KILN_ERR_UNSUPPORTED, "layer_types[0]"},
    {"{\"model_type\":\"gemma3_text\",\"layer_types\":{}}", KILN_ERR_FORMAT, "layer_types"},
    {"{\"model_type\":\"gemma3_text\",\"hidden_activation\":\"gelu_quick\"}",
     KILN_ERR_UNSUPPORTED, "hidden_activation"},
    {"{\"model_type\":\"gemma3_text\",\"final_logit_softcapping\":-30}", KILN_ERR_FORMAT,
     "final_logit_softcap"},
    {"{\"model_type\":\"gemma3\",\"text_config\":5}", KILN_ERR_FORMAT, "'text_config'"},
    {"{\"model_type\":\"gemma3\",\"text_config\":{\"hidden_size\":\"x\"}}", KILN_ERR_FORMAT,
     "'text_config.hidden_size'"},
    {"{\"model_type\":\"bert\",\"position_embedding_type\":\"relative_key\"}",
     KILN_ERR_UNSUPPORTED, "position_embedding_type"},
    {"{\"model_type\":\"bert\",\"type_vocab_size\":-1}", KILN_ERR_FORMAT, "type_vocab_size"},
    {"{\"model_type\":\"llama\",\"partial_rotary_factor\":2}", KILN_ERR_FORMAT,
     "partial_rotary_factor"},
};

static void test_malformed(void **state)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *b = &bad_cases[i];
        model_config c;
        kiln_status st = hf_config_parse(b->json, strlen(b->json), &c);
        if (st != b->st || !strstr(kiln_last_error(), b->needle))
            fail_msg("case %zu %s: status %d (want %d), message '%s' (want '%s')", i, b->json,
                     st, b->st, kiln_last_error(), b->needle);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_7b),
        cmocka_unit_test(test_llama31_8b),
        cmocka_unit_test(test_llama32_1b),
        cmocka_unit_test(test_tinyllama),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_mistral_7b),
        cmocka_unit_test(test_qwen25_05b),
        cmocka_unit_test(test_qwen3_06b),
        cmocka_unit_test(test_gemma3_270m),
        cmocka_unit_test(test_gemma3_1b),
        cmocka_unit_test(test_gemma3_4b_multimodal),
        cmocka_unit_test(test_minilm_config),
        cmocka_unit_test(test_bge_base),
        cmocka_unit_test(test_load_dir_bge),
        cmocka_unit_test(test_load_dir_minilm),
        cmocka_unit_test(test_load_dir_errors),
        cmocka_unit_test(test_minimal_takes_family_defaults),
        cmocka_unit_test(test_rope_parameters_v5),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

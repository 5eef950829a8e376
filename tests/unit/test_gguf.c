/*
 * test_gguf.c - the GGUF reader on valid files.
 *
 * tests/ref/gguf_write_fixtures.py writes the files with the gguf package's
 * GGUFWriter into a temporary directory; every metadata type (nested arrays
 * included), tensor infos and data, alignment variants, a version 2 header,
 * the model-config mapping of each family, out-of-memory paths, and the real
 * Gemma 3 270M file when $KILN_MODELS_DIR has it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "kiln_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char fx_dir[256];

static const char *fx(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fx_dir, name);
    return path;
}

static int setup_fixtures(void **state)
{
    (void)state;
    kt_ref_dir(fx_dir, sizeof fx_dir, "gguf_write_fixtures.py");
    return 0;
}

static int teardown_fixtures(void **state)
{
    (void)state;
    kt_rmtree(fx_dir);
    return 0;
}

static gguf_file *open_ok(const char *name)
{
    gguf_file *g = NULL;
    kiln_status st = gguf_open(fx(name), &g);
    if (st)
        fail_msg("gguf_open(%s): %s", name, kiln_last_error());
    return g;
}

static void assert_str(const gguf_file *g, const char *key, const char *want)
{
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_str(g, key, &s, &len), KILN_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(s, want, len);
}

/* ---- metadata ------------------------------------------------------------- */

static void test_scalars(void **state)
{
    gguf_file *g = open_ok("all_types.gguf");
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    (void)state;
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_alignment(g), 32);
    assert_int_equal(gguf_kv_count(g), 26);
    assert_string_equal(gguf_kv_key(g, 0), "general.architecture");
    assert_int_equal(gguf_kv_type(g, 0), GGUF_TYPE_STRING);
    assert_str(g, "general.architecture", "llama");
    assert_int_equal(gguf_get_u64(g, "t.u8", &u), KILN_OK);
    assert_int_equal(u, 255);
    assert_int_equal(gguf_get_i64(g, "t.i8", &i), KILN_OK);
    assert_int_equal(i, -128);
    assert_int_equal(gguf_get_u64(g, "t.u16", &u), KILN_OK);
    assert_int_equal(u, 65535);
    assert_int_equal(gguf_get_i64(g, "t.i16", &i), KILN_OK);
    assert_int_equal(i, -32768);
    assert_int_equal(gguf_get_i64(g, "t.u32", &i), KILN_OK);
    assert_int_equal(i, 4294967295LL);
    assert_int_equal(gguf_get_i64(g, "t.i32", &i), KILN_OK);
    assert_int_equal(i, -2147483648LL);
    assert_int_equal(gguf_get_u64(g, "t.u64", &u), KILN_OK);
    assert_true(u == UINT64_MAX);
    assert_int_equal(gguf_get_i64(g, "t.i64", &i), KILN_OK);
    assert_true(i == INT64_MIN);
    assert_int_equal(gguf_get_f64(g, "t.f32", &f), KILN_OK);
    assert_true(f == 0.15625);
    assert_int_equal(gguf_get_f64(g, "t.f64", &f), KILN_OK);
    assert_true(f == -2.5e-300);
    assert_int_equal(gguf_get_bool(g, "t.bool_t", &b), KILN_OK);
    assert_true(b);
    assert_int_equal(gguf_get_bool(g, "t.bool_f", &b), KILN_OK);
    assert_false(b);
    assert_str(g, "t.str", "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80");
    assert_str(g, "t.empty_str", "");
    gguf_close(g);
}

static void test_getter_errors(void **state)
{
    gguf_file *g = open_ok("all_types.gguf");
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    const char *s;
    size_t len;
    gguf_type et;
    int64_t n;
    (void)state;
    assert_int_equal(gguf_find_key(g, "nope"), -1);
    assert_int_equal(gguf_get_u64(g, "nope", &u), KILN_ERR_NOT_FOUND);
    assert_non_null(strstr(kiln_last_error(), "nope"));
    assert_int_equal(gguf_get_u64(g, "t.i8", &u), KILN_ERR_FORMAT); /* negative */
    assert_non_null(strstr(kiln_last_error(), "t.i8"));
    assert_int_equal(gguf_get_i64(g, "t.u64", &i), KILN_ERR_FORMAT); /* too big */
    assert_int_equal(gguf_get_u64(g, "t.str", &u), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_f64(g, "t.u8", &f), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_bool(g, "t.u8", &b), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_str(g, "t.u8", &s, &len), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_arr(g, "t.str", &et, &n), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_arr_str(g, "t.arr_u8", 0, &s, &len), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_arr_str(g, "t.arr_str", 3, &s, &len), KILN_ERR_RANGE);
    assert_int_equal(gguf_get_arr_str(g, "t.arr_str", -1, &s, &len), KILN_ERR_RANGE);
    const void *data;
    assert_int_equal(gguf_get_arr_data(g, "t.arr_str", &et, &n, &data), KILN_ERR_FORMAT);
    assert_int_equal(gguf_get_arr_data(g, "t.arr_arr", &et, &n, &data), KILN_ERR_FORMAT);
    gguf_close(g);
}

/* Numeric array `key` holds n elements of type t equal to want[] (as i64/f64). */
static void assert_num_arr(const gguf_file *g, const char *key, gguf_type t, int64_t n,
                           const double *want)
{
    gguf_type et;
    int64_t got_n;
    const void *data;
    assert_int_equal(gguf_get_arr_data(g, key, &et, &got_n, &data), KILN_OK);
    assert_int_equal(et, t);
    assert_int_equal(got_n, n);
    const uint8_t *p = data;
    size_t es = gguf_type_size(t);
    for (int64_t k = 0; k < n; k++) {
        uint64_t raw = 0;
        double v = 0.0;
        memcpy(&raw, p + (size_t)k * es, es); /* little-endian host */
        switch (t) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT64: case GGUF_TYPE_BOOL: v = (double)raw; break;
        case GGUF_TYPE_INT16: v = (int16_t)raw; break;
        case GGUF_TYPE_INT32: v = (int32_t)raw; break;
        case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, &raw, 4); v = x; break; }
        case GGUF_TYPE_FLOAT64: memcpy(&v, &raw, 8); break;
        default: fail_msg("unexpected type");
        }
        if (v != want[k])
            fail_msg("%s[%lld] = %g, want %g", key, (long long)k, v, want[k]);
    }
}

static void test_arrays(void **state)
{
    gguf_file *g = open_ok("all_types.gguf");
    (void)state;
    assert_num_arr(g, "t.arr_u8", GGUF_TYPE_UINT8, 3, (double[]){1, 2, 255});
    assert_num_arr(g, "t.arr_i16", GGUF_TYPE_INT16, 3, (double[]){-1, 2, -3});
    assert_num_arr(g, "t.arr_i32", GGUF_TYPE_INT32, 4, (double[]){-7, 0, 7, 2147483647});
    assert_num_arr(g, "t.arr_f32", GGUF_TYPE_FLOAT32, 3, (double[]){0.5, -1.25, 3.0});
    assert_num_arr(g, "t.arr_bool", GGUF_TYPE_BOOL, 3, (double[]){1, 0, 1});
    assert_num_arr(g, "t.arr_u64", GGUF_TYPE_UINT64, 2, (double[]){0, 1099511627776.0});
    assert_num_arr(g, "t.arr_f64", GGUF_TYPE_FLOAT64, 2, (double[]){1.0e100, -0.0});

    gguf_type et;
    int64_t n;
    const char *s;
    size_t len;
    assert_int_equal(gguf_get_arr(g, "t.arr_str", &et, &n), KILN_OK);
    assert_int_equal(et, GGUF_TYPE_STRING);
    assert_int_equal(n, 3);
    const char *want[] = {"a", "", "\xc3\xbc\xc3\xb1\xc3\xae"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(gguf_get_arr_str(g, "t.arr_str", k, &s, &len), KILN_OK);
        assert_int_equal(len, strlen(want[k]));
        assert_memory_equal(s, want[k], len);
    }
    gguf_close(g);
}

static void test_nested_arrays(void **state)
{
    gguf_file *g = open_ok("all_types.gguf");
    const gguf_value *v = gguf_find_value(g, "t.arr_arr");
    const char *s;
    size_t len;
    (void)state;
    assert_non_null(v);
    assert_int_equal(gguf_value_arr_type(v), GGUF_TYPE_ARRAY);
    assert_int_equal(gguf_value_arr_len(v), 3);
    const int64_t lens[] = {2, 1, 3};
    int32_t next = 1;
    for (int k = 0; k < 3; k++) {
        const gguf_value *in = gguf_value_arr_at(v, k);
        assert_non_null(in);
        assert_int_equal(gguf_value_arr_len(in), lens[k]);
        assert_true(gguf_value_arr_type(in) == GGUF_TYPE_INT32 ||
                    gguf_value_arr_type(in) == GGUF_TYPE_UINT32);
        for (int64_t j = 0; j < lens[k]; j++) {
            int32_t x;
            memcpy(&x, (const uint8_t *)gguf_value_arr_data(in) + 4 * j, 4);
            assert_int_equal(x, next++);
        }
    }
    assert_null(gguf_value_arr_at(v, 3));

    v = gguf_find_value(g, "t.arr_arr_str");
    assert_int_equal(gguf_value_arr_len(v), 2);
    assert_int_equal(gguf_value_arr_str(gguf_value_arr_at(v, 0), 1, &s, &len), KILN_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "yz", 2);
    assert_int_equal(gguf_value_arr_str(gguf_value_arr_at(v, 1), 0, &s, &len), KILN_OK);
    assert_memory_equal(s, "w", 1);

    v = gguf_find_value(g, "t.arr_arr_arr");
    const gguf_value *mid = gguf_value_arr_at(v, 0);
    const gguf_value *leaf = gguf_value_arr_at(mid, 1);
    assert_int_equal(gguf_value_arr_type(leaf), GGUF_TYPE_FLOAT32);
    assert_int_equal(gguf_value_arr_len(leaf), 2);
    float x;
    memcpy(&x, (const uint8_t *)gguf_value_arr_data(leaf) + 4, 4);
    assert_true(x == 3.5f);
    leaf = gguf_value_arr_at(gguf_value_arr_at(v, 1), 0);
    memcpy(&x, gguf_value_arr_data(leaf), 4);
    assert_true(x == 4.5f);
    gguf_close(g);
}

/* ---- tensors ---------------------------------------------------------------- */

static void check_tensor_shape(const gguf_tensor *t, kiln_dtype type, int32_t n_dims,
                               int64_t ne0, int64_t ne1)
{
    assert_non_null(t);
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, n_dims);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->ne[3], 1);
}

static void test_tensors(void **state)
{
    gguf_file *g = open_ok("all_types.gguf");
    float out[64];
    (void)state;
    assert_int_equal(gguf_tensor_count(g), 4);
    assert_string_equal(gguf_tensor_at(g, 0)->name, "f32");
    assert_null(gguf_tensor_at(g, 4));
    assert_null(gguf_find_tensor(g, "missing"));
    assert_int_equal(gguf_data_offset(g) % 32, 0);

    const gguf_tensor *t = gguf_find_tensor(g, "f32");
    check_tensor_shape(t, KILN_DT_F32, 2, 4, 3);
    assert_int_equal(t->nbytes, 48);
    assert_int_equal(quant_dequantize(t->type, t->data, t->nbytes, out, 12), KILN_OK);
    for (int k = 0; k < 12; k++)
        assert_true(out[k] == (float)k);

    t = gguf_find_tensor(g, "f16");
    check_tensor_shape(t, KILN_DT_F16, 2, 32, 2);
    assert_int_equal(quant_dequantize(t->type, t->data, t->nbytes, out, 64), KILN_OK);
    for (int k = 0; k < 64; k++)
        assert_true(out[k] == (float)k);

    t = gguf_find_tensor(g, "q8_0");
    check_tensor_shape(t, KILN_DT_Q8_0, 2, 32, 2);
    assert_int_equal(t->nbytes, 68);
    assert_int_equal(quant_dequantize(t->type, t->data, t->nbytes, out, 64), KILN_OK);
    for (int k = 0; k < 64; k++)
        assert_true(fabsf(out[k] - (-1.0f + 2.0f * (float)k / 63.0f)) < 0.01f);

    t = gguf_find_tensor(g, "i32.vec");
    check_tensor_shape(t, KILN_DT_I32, 1, 3, 1);
    assert_int_equal(quant_dequantize(t->type, t->data, t->nbytes, out, 3), KILN_OK);
    assert_true(out[0] == -5.0f && out[1] == 6.0f && out[2] == -7.0f);
    for (int64_t k = 0; k < 4; k++) {
        t = gguf_tensor_at(g, k);
        assert_int_equal(t->offset % 32, 0);
        assert_ptr_equal(t->data, gguf_bytes(g) + gguf_data_offset(g) + t->offset);
    }
    gguf_close(g);
}

static void test_alignments(void **state)
{
    const int aligns[] = {1, 8, 64, 256};
    (void)state;
    for (size_t k = 0; k < sizeof aligns / sizeof aligns[0]; k++) {
        char name[32];
        float out[16];
        snprintf(name, sizeof name, "align_%d.gguf", aligns[k]);
        gguf_file *g = open_ok(name);
        assert_int_equal(gguf_alignment(g), aligns[k]);
        assert_int_equal(gguf_data_offset(g) % (uint64_t)aligns[k], 0);
        assert_int_equal(gguf_tensor_count(g), 3);
        for (int64_t j = 0; j < 3; j++) {
            const gguf_tensor *t = gguf_tensor_at(g, j);
            int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
            assert_int_equal(t->offset % (uint64_t)aligns[k], 0);
            assert_int_equal(quant_dequantize(t->type, t->data, t->nbytes, out, n), KILN_OK);
            for (int64_t e = 0; e < n; e++)
                assert_true(out[e] == (float)(j + 1));
        }
        const gguf_tensor *c = gguf_find_tensor(g, "c");
        assert_int_equal(c->n_dims, 4);
        gguf_close(g);
    }
}

/* Version 2 has the same layout as 3 (which only added big-endian files). */
static void test_version2_memory(void **state)
{
    size_t n;
    uint8_t *buf = (uint8_t *)kt_read_file(fx("all_types.gguf"), &n);
    gguf_file *g = NULL;
    (void)state;
    buf[4] = 2;
    assert_int_equal(gguf_open_memory(buf, n, &g), KILN_OK);
    assert_int_equal(gguf_version(g), 2);
    assert_int_equal(gguf_size(g), n);
    assert_int_equal(gguf_tensor_count(g), 4);
    gguf_close(g);
    gguf_close(NULL);
    free(buf);
}

/* Every allocation of the parser can fail: OOM comes back and nothing leaks. */
static void test_out_of_memory(void **state)
{
    size_t n;
    uint8_t *buf = (uint8_t *)kt_read_file(fx("all_types.gguf"), &n);
    int64_t base = kiln_alloc_bytes_in_use();
    kiln_status st = KILN_ERR_OOM;
    int64_t k;
    (void)state;
    for (k = 0; st == KILN_ERR_OOM && k < 10000; k++) {
        gguf_file *g = NULL;
        kiln_alloc_fail_after(k);
        st = gguf_open_memory(buf, n, &g);
        kiln_alloc_fail_after(-1);
        if (st == KILN_OK)
            gguf_close(g);
        else
            assert_null(g);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
    }
    assert_int_equal(st, KILN_OK);
    assert_true(k > 10);
    free(buf);
}

/* ---- model config ----------------------------------------------------------- */

static model_config *config_of(const char *name)
{
    static model_config c;
    gguf_file *g = open_ok(name);
    if (gguf_to_model_config(g, &c))
        fail_msg("gguf_to_model_config(%s): %s", name, kiln_last_error());
    gguf_close(g);
    return &c;
}

static void test_config_llama(void **state)
{
    model_config *c = config_of("cfg_llama.gguf");
    (void)state;
    assert_int_equal(c->arch, MCFG_ARCH_LLAMA);
    assert_string_equal(c->arch_name, "llama");
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->n_layers, 2);
    assert_int_equal(c->intermediate_size, 128);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_dim, 16);
    assert_int_equal(c->vocab_size, 32);
    assert_int_equal(c->max_position_embeddings, 2048);
    assert_true(c->norm_eps == 1e-5f);
    assert_true(c->rope_theta == 10000.0f);
    assert_int_equal(c->rope_scaling, MCFG_ROPE_NONE);
    assert_int_equal(c->act, MCFG_ACT_SILU);
    assert_false(c->tie_word_embeddings); /* has output.weight */
    assert_true(c->partial_rotary_factor == 1.0f);
    assert_int_equal(c->bos_token_id, 1);
    assert_int_equal(c->eos_token_id, 2);
    assert_int_equal(c->pad_token_id, -1);
    assert_int_equal(c->sliding_window, 0);

    c = config_of("cfg_llama3.gguf");
    assert_true(c->tie_word_embeddings);
    assert_int_equal(c->rope_scaling, MCFG_ROPE_LLAMA3);
    assert_true(c->rope_factor == 8.0f);
    assert_true(c->rope_low_freq_factor == 1.0f && c->rope_high_freq_factor == 4.0f);
    assert_int_equal(c->rope_original_max_pos, 8192);
    assert_true(c->rope_theta == 500000.0f);

    c = config_of("cfg_mistral.gguf");
    assert_int_equal(c->arch, MCFG_ARCH_MISTRAL);
    assert_int_equal(c->sliding_window, 4096);
    assert_int_equal(c->layer_sliding[0], 1);
    assert_int_equal(c->layer_sliding[1], 1);
}

static void test_config_qwen(void **state)
{
    model_config *c = config_of("cfg_qwen2.gguf");
    (void)state;
    assert_int_equal(c->arch, MCFG_ARCH_QWEN2);
    assert_true(c->attention_bias);
    assert_false(c->qk_norm);
    assert_true(c->tie_word_embeddings);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->pad_token_id, 39);
    assert_int_equal(c->rope_scaling, MCFG_ROPE_YARN);
    assert_true(c->rope_factor == 4.0f);
    assert_int_equal(c->rope_original_max_pos, 1024);
    assert_true(c->rope_theta == 1000000.0f);

    c = config_of("cfg_qwen3.gguf");
    assert_int_equal(c->arch, MCFG_ARCH_QWEN3);
    assert_true(c->qk_norm);
    assert_false(c->attention_bias);
    assert_int_equal(c->head_dim, 16); /* key_length, not hidden / heads */
    assert_int_equal(c->vocab_size, 40);
}

static void test_config_gemma3(void **state)
{
    model_config *c = config_of("cfg_gemma3.gguf");
    (void)state;
    assert_int_equal(c->arch, MCFG_ARCH_GEMMA3);
    assert_int_equal(c->head_dim, 32);
    assert_int_equal(c->act, MCFG_ACT_GELU_TANH);
    assert_true(c->qk_norm && c->embed_scale_sqrt_hidden && c->tie_word_embeddings);
    assert_int_equal(c->sliding_window, 512);
    assert_int_equal(c->sliding_window_pattern, 6);
    for (int l = 0; l < 8; l++)
        assert_int_equal(c->layer_sliding[l], l != 5);
    assert_true(c->rope_theta == 1000000.0f);
    assert_true(c->rope_local_theta == 10000.0f);
    assert_true(c->query_pre_attn_scalar == 32.0f);
    assert_int_equal(c->rope_scaling, MCFG_ROPE_LINEAR);
    assert_true(c->rope_factor == 8.0f);
    assert_int_equal(c->pad_token_id, 0);
}

static void test_config_bert(void **state)
{
    model_config *c = config_of("cfg_bert.gguf");
    (void)state;
    assert_int_equal(c->arch, MCFG_ARCH_BERT);
    assert_int_equal(c->pooling, MCFG_POOL_MEAN);
    assert_int_equal(c->act, MCFG_ACT_GELU);
    assert_true(c->norm_eps == 1e-12f);
    assert_true(c->absolute_positions && c->attention_bias && c->mlp_bias);
    assert_false(c->tie_word_embeddings);
    assert_int_equal(c->type_vocab_size, 2);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->max_position_embeddings, 512);
}

static void test_config_errors(void **state)
{
    gguf_file *g = open_ok("all_types.gguf"); /* arch llama, no shape keys */
    model_config c;
    (void)state;
    assert_int_equal(gguf_to_model_config(g, &c), KILN_ERR_NOT_FOUND);
    assert_non_null(strstr(kiln_last_error(), "llama.embedding_length"));
    gguf_close(g);
}

/* ---- the real default model -------------------------------------------------- */

static void test_gemma_270m(void **state)
{
    char path[1024];
    gguf_file *g = NULL;
    model_config c;
    (void)state;
    kt_model_or_skip(path, sizeof path, "gemma-3-270m-q4_k_m.gguf");
    if (gguf_open(path, &g))
        fail_msg("%s", kiln_last_error());
    assert_int_equal(gguf_version(g), 3);
    assert_int_equal(gguf_tensor_count(g), 236);
    assert_int_equal(gguf_data_offset(g), 6525120);
    if (gguf_to_model_config(g, &c))
        fail_msg("%s", kiln_last_error());
    assert_int_equal(c.arch, MCFG_ARCH_GEMMA3);
    assert_int_equal(c.n_layers, 18);
    assert_int_equal(c.hidden_size, 640);
    assert_int_equal(c.intermediate_size, 2048);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 1);
    assert_int_equal(c.head_dim, 256);
    assert_int_equal(c.vocab_size, 262144);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_int_equal(c.sliding_window, 512);
    for (int l = 0; l < 18; l++)
        assert_int_equal(c.layer_sliding[l], (l % 6) != 5);
    assert_true(c.rope_theta == 1000000.0f && c.rope_local_theta == 10000.0f);
    assert_true(c.query_pre_attn_scalar == 256.0f);
    assert_true(c.tie_word_embeddings && c.qk_norm && c.embed_scale_sqrt_hidden);
    assert_int_equal(c.bos_token_id, 2);
    assert_int_equal(c.eos_token_id, 1);
    assert_int_equal(c.pad_token_id, 0);
    assert_true(fabsf(c.norm_eps - 1e-6f) < 1e-12f);

    /* every tensor's data dequantizes (or is a type kiln knows) */
    const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(emb);
    assert_int_equal(emb->ne[0], 640);
    assert_int_equal(emb->ne[1], 262144);
    float *row = kiln_malloc(640 * sizeof(float));
    const dtype_info *di = dtype_get(emb->type);
    size_t row_bytes = 640 / (size_t)di->block_elems * (size_t)di->block_bytes;
    assert_int_equal(quant_dequantize(emb->type, emb->data, row_bytes, row, 640), KILN_OK);
    for (int k = 0; k < 640; k++)
        assert_true(isfinite(row[k]));
    kiln_free(row);
    gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_getter_errors),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_tensors),
        cmocka_unit_test(test_alignments),
        cmocka_unit_test(test_version2_memory),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_config_llama),
        cmocka_unit_test(test_config_qwen),
        cmocka_unit_test(test_config_gemma3),
        cmocka_unit_test(test_config_bert),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_gemma_270m),
    };
    return cmocka_run_group_tests(tests, setup_fixtures, teardown_fixtures);
}

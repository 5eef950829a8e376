/*
 * test_cli_info.c - `kiln info` on the default models, checked against the
 * facts the reference libraries read from the same files
 * (tests/ref/info_ref.py: the gguf package, safetensors), a lone
 * safetensors file written by the safetensors package, plus its exit codes
 * and messages on bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

/* Parse what a command that exited `rc` printed; `what` names it in
 * failures.  Consumes out and err. */
static json_t *parse_json(const char *what, int rc, char *out, char *err)
{
    json_error_t je;
    if (rc != 0)
        fail_msg("%s exited %d: %s", what, rc, err);
    json_t *j = json_loads(out, 0, &je);
    if (!j)
        fail_msg("%s printed no JSON (%s): %s", what, je.text, out);
    free(out);
    free(err);
    return j;
}

static json_int_t jint(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

#define EXPECT_INT(kiln, ref, key) assert_int_equal(jint(kiln, key), jint(ref, key))

/* The same types, each with the same tensors, params and bytes. */
static void check_tensor_types(const json_t *k, const json_t *r)
{
    json_t *kt = json_object_get(k, "tensor_types"), *rt = json_object_get(r, "tensor_types");
    assert_int_equal(json_object_size(kt), json_object_size(rt));
    const char *tname;
    json_t *rv;
    json_object_foreach(rt, tname, rv) {
        json_t *kv = json_object_get(kt, tname);
        if (!kv)
            fail_msg("kiln reports no %s tensors", tname);
        EXPECT_INT(kv, rv, "tensors");
        EXPECT_INT(kv, rv, "params");
        EXPECT_INT(kv, rv, "bytes");
    }
}

/* `kiln info --json path` (returned) and info_ref.py's facts (*ref). */
static json_t *info_and_reference(const char *path, json_t **ref)
{
    char *out, *err;
    int rc = kt_kiln(&out, &err, "info", "--json", path, NULL);
    json_t *k = parse_json("kiln info --json", rc, out, err);
    rc = kt_run_ref(NULL, "info_ref.py", path, &out, &err);
    *ref = parse_json("tests/ref/info_ref.py", rc, out, err);
    return k;
}

/* Compare kiln's report with the reference facts for one model. */
static json_t *check_against_reference(const char *path)
{
    json_t *r, *k = info_and_reference(path, &r);

    assert_string_equal(jstr(k, "architecture"), jstr(r, "architecture"));
    const char *keys[] = {"n_layers", "hidden_size", "intermediate_size", "n_heads",
                          "n_kv_heads", "head_dim", "context_length", "vocab_size",
                          "parameters", "n_tensors", "weight_bytes"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        print_message("  %-18s kiln %lld ref %lld\n", keys[i], (long long)jint(k, keys[i]),
                      (long long)jint(r, keys[i]));
        EXPECT_INT(k, r, keys[i]);
    }
    assert_int_equal(json_is_true(json_object_get(k, "chat_template")),
                     json_is_true(json_object_get(r, "chat_template")));
    check_tensor_types(k, r);
    json_decref(r);
    return k;
}

static void test_info_gemma(void **state)
{
    char path[4096];
    kt_model_or_skip(path, sizeof path, "gemma-3-270m-q4_k_m.gguf");
    json_t *k = check_against_reference(path);
    /* What the issue of record demands, stated outright as well. */
    assert_string_equal(jstr(k, "architecture"), "gemma3");
    assert_int_equal(jint(k, "n_layers"), 18);
    assert_int_equal(jint(k, "n_heads"), 4);
    assert_int_equal(jint(k, "n_kv_heads"), 1);
    assert_int_equal(jint(k, "head_dim"), 256);
    assert_int_equal(jint(k, "vocab_size"), 262144);
    assert_string_equal(jstr(k, "tokenizer"), "SentencePiece BPE");
    json_t *types = json_object_get(k, "tensor_types");
    assert_non_null(json_object_get(types, "Q4_K"));
    assert_non_null(json_object_get(types, "Q6_K"));
    /* 5 of every 6 layers use the 512-token window. */
    assert_int_equal(jint(k, "sliding_window"), 512);
    assert_int_equal(jint(k, "sliding_layers"), 15);
    json_decref(k);
}

static void test_info_minilm(void **state)
{
    char path[4096];
    kt_model_or_skip(path, sizeof path, "all-MiniLM-L6-v2");
    json_t *k = check_against_reference(path);
    assert_string_equal(jstr(k, "architecture"), "bert");
    assert_int_equal(jint(k, "n_layers"), 6);
    assert_int_equal(jint(k, "hidden_size"), 384);
    assert_string_equal(jstr(k, "tokenizer"), "WordPiece");
    assert_string_equal(jstr(k, "pooling"), "mean");
    assert_true(json_is_true(json_object_get(k, "normalize")));
    assert_int_equal(jint(k, "kv_bytes_per_token"), 0);
    json_decref(k);
}

static void test_info_text_report(void **state)
{
    char path[4096], *out;
    kt_model_or_skip(path, sizeof path, "gemma-3-270m-q4_k_m.gguf");
    assert_int_equal(kt_kiln(&out, NULL, "info", path, NULL), 0);
    assert_non_null(strstr(out, "gemma3"));
    assert_non_null(strstr(out, "Q4_K"));
    assert_non_null(strstr(out, "memory to load"));
    free(out);
}

/* `kiln info --json` on a lone safetensors file against info_ref.py. */
static json_t *check_st_file(const char *path)
{
    json_t *r, *k = info_and_reference(path, &r);

    assert_string_equal(jstr(k, "format"), "safetensors");
    assert_true(json_is_null(json_object_get(k, "architecture")));
    assert_true(json_is_null(json_object_get(r, "architecture")));
    assert_int_equal(jint(k, "files"), 1);
    const char *keys[] = {"parameters", "n_tensors", "weight_bytes"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        EXPECT_INT(k, r, keys[i]);
    assert_int_equal(jint(k, "load_bytes"), jint(r, "weight_bytes"));
    check_tensor_types(k, r);
    if (!json_equal(json_object_get(k, "metadata"), json_object_get(r, "metadata")))
        fail_msg("%s: kiln's metadata differs from the safetensors package's", path);
    /* nothing that needs config.json is claimed */
    assert_null(json_object_get(k, "n_layers"));
    assert_null(json_object_get(k, "vocab_size"));
    json_decref(r);
    return k;
}

/* A single .safetensors file with no config.json, written by the
 * safetensors package (tests/ref/st_write.py): every dtype kiln reads. */
static void test_info_safetensors_file(void **state)
{
    const char *const has_pkg[] = {kt_env("KILN_PYTHON"), "-c", "import safetensors, numpy",
                                   NULL};
    char dir[256], path[512], copy[512], *out, *err;
    size_t len;

    if (kt_run(has_pkg, NULL, &err) != 0) {
        print_message("%s has no safetensors package: skipped (%s)\n", kt_env("KILN_PYTHON"),
                      err);
        free(err);
        skip();
    }
    free(err);
    kt_mkdtemp(dir, sizeof dir, "info_st");
    assert_int_equal(kt_run_ref(NULL, "st_write.py", dir, &out, NULL), 0);
    if (strncmp(out, "safetensors", 11))
        fail_msg("st_write.py used the '%s' writer, not the safetensors package", out);
    free(out);

    snprintf(path, sizeof path, "%s/single.safetensors", dir);
    json_t *k = check_st_file(path);
    assert_int_equal(jint(k, "n_tensors"), 12);
    assert_int_equal(json_object_size(json_object_get(k, "tensor_types")), 10);
    assert_string_equal(jstr(json_object_get(k, "metadata"), "producer"), "kiln-ref");
    assert_false(json_is_true(json_object_get(k, "config_json_beside")));
    json_decref(k);

    /* one shard of a sharded model is a file like any other */
    snprintf(path, sizeof path, "%s/sharded/model-00002-of-00003.safetensors", dir);
    json_decref(check_st_file(path));

    /* the text report says what it cannot know */
    snprintf(path, sizeof path, "%s/single.safetensors", dir);
    assert_int_equal(kt_kiln(&out, NULL, "info", path, NULL), 0);
    assert_non_null(strstr(out, "format           safetensors, one file"));
    assert_non_null(strstr(out, "architecture     unknown (no config.json"));
    assert_non_null(strstr(out, "parameters       140 "));
    assert_non_null(strstr(out, "producer = kiln-ref"));
    assert_non_null(strstr(out, "BOOL"));
    assert_non_null(strstr(out, "memory to load"));
    assert_null(strstr(out, "layers"));
    free(out);

    /* recognised by its header, whatever the name */
    char *bytes = kt_read_file(path, &len);
    snprintf(copy, sizeof copy, "%s/weights.bin", dir);
    kt_write_file(copy, bytes, len);
    free(bytes);
    assert_int_equal(kt_kiln(&out, NULL, "info", "--json", copy, NULL), 0);
    assert_non_null(strstr(out, "\"format\": \"safetensors\""));
    free(out);

    /* a config.json beside the file is pointed out */
    snprintf(copy, sizeof copy, "%s/config.json", dir);
    kt_write_file(copy, "{}", 2);
    assert_int_equal(kt_kiln(&out, NULL, "info", path, NULL), 0);
    assert_non_null(strstr(out, "its directory has a config.json"));
    free(out);

    /* loading (not describing) needs the config: a clear refusal */
    assert_int_equal(kt_kiln(NULL, &err, "run", "-m", path, "-p", "hi", "-n", "1", NULL), 1);
    if (!strstr(err, "has no config.json"))
        fail_msg("kiln run on a lone safetensors file: %s", err);
    free(err);
    kt_rmtree(dir);
}

/* `kiln info [a1 [a2]]` exits `code`, prints nothing on stdout and `needle`
 * on stderr. */
static void expect_failure(int code, const char *needle, const char *a1, const char *a2)
{
    char *out, *err;
    int rc = kt_kiln(&out, &err, "info", a1, a2, NULL);
    print_message("  kiln info %s %s -> %d: %s", a1 ? a1 : "", a1 && a2 ? a2 : "", rc, err);
    assert_int_equal(rc, code);
    assert_string_equal(out, "");
    if (!strstr(err, needle))
        fail_msg("stderr of 'kiln info %s' lacks '%s': %s", a1 ? a1 : "", needle, err);
    free(out);
    free(err);
}

static void test_info_bad_input(void **state)
{
    char dir[256], file[512];
    kt_mkdtemp(dir, sizeof dir, "info");

    expect_failure(2, "usage", NULL, NULL);
    expect_failure(2, "unknown option", "--bogus", "x");
    expect_failure(1, "No such file", "/nonexistent/model.gguf", NULL);
    expect_failure(1, "config.json", dir, NULL);
    snprintf(file, sizeof file, "%s/empty.gguf", dir);
    kt_write_file(file, "", 0);
    expect_failure(1, "kiln:", file, NULL);
    static const char junk[] = "this is not a model file at all";
    kt_write_file(file, junk, sizeof junk - 1);
    expect_failure(1, "kiln:", file, NULL);
    kt_rmtree(dir);
}

/* --gpu loads the model on a GPU: where there is none (or no CUDA backend)
 * it fails with a message that says so; where there is one, the report
 * carries the memory plan (weights, KV blocks).  Bad values are usage
 * errors. */
static void test_info_gpu(void **state)
{
    char path[4096], *out = NULL, *err = NULL;
    (void)state;
    snprintf(path, sizeof path, "%s/tests/golden/models/llama", kt_env("KILN_SOURCE_DIR"));
    int rc = kt_kiln(&out, &err, "info", "--gpu", "--seqs", "2", path, NULL);
    if (rc == 0) {
        assert_non_null(strstr(out, "GPU "));
        assert_non_null(strstr(out, "KV cache"));
    } else {
        assert_int_equal(rc, 1);
        if (!strstr(err, "CUDA") && !strstr(err, "cuda"))
            fail_msg("kiln info --gpu without a GPU: %s", err);
    }
    free(out);
    free(err);
    assert_int_equal(kt_kiln(NULL, NULL, "info", "--gpu", "--device", "cpu", path, NULL), 1);
    assert_int_equal(kt_kiln(NULL, NULL, "info", "--gpu", "--seqs", "0", path, NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "info", "--gpu-memory-utilization", "1.5", path, NULL),
                     2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_gpu),
        cmocka_unit_test(test_info_gemma),
        cmocka_unit_test(test_info_minilm),
        cmocka_unit_test(test_info_text_report),
        cmocka_unit_test(test_info_safetensors_file),
        cmocka_unit_test(test_info_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

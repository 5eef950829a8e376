/*
 * test_cli_info.c - `kiln info` on the default models, checked against the
 * facts the reference libraries read from the same files
 * (tests/ref/info_ref.py: the gguf package, safetensors), plus its exit
 * codes and messages on bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        fail_msg("%s is not set (run through ctest)", name);
    return v;
}

/* Run a shell command; stdout into *out (malloc'd), stderr into *err; returns
 * the exit status. */
static int run_capture(const char *cmd, char **out, char **err)
{
    char errpath[] = "/tmp/kiln-test-err-XXXXXX";
    int fd = mkstemp(errpath);
    assert_true(fd >= 0);
    close(fd);
    char full[8192];
    snprintf(full, sizeof full, "%s 2>%s", cmd, errpath);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += r;
        if (cap - n < 2)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    int status = pclose(p);
    FILE *e = fopen(errpath, "rb");
    char *ebuf = calloc(1, 1 << 16);
    if (e) {
        size_t en = fread(ebuf, 1, (1 << 16) - 1, e);
        ebuf[en] = '\0';
        fclose(e);
    }
    unlink(errpath);
    *out = buf;
    if (err)
        *err = ebuf;
    else
        free(ebuf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static json_t *run_json(const char *cmd)
{
    char *out, *err;
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fail_msg("'%s' exited %d: %s", cmd, rc, err);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    if (!j)
        fail_msg("'%s' printed no JSON (%s): %s", cmd, je.text, out);
    free(out);
    free(err);
    return j;
}

static void model_path(const char *rel, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", env_or_fail("KILN_MODELS_DIR"), rel);
}

static bool have(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

#define EXPECT_INT(kiln, ref, key)                                                     \
    assert_int_equal(json_integer_value(json_object_get(kiln, key)),                   \
                     json_integer_value(json_object_get(ref, key)))

/* Compare kiln's report with the reference facts for one model. */
static json_t *check_against_reference(const char *path)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' info --json '%s'", env_or_fail("KILN_BIN"), path);
    json_t *k = run_json(cmd);
    snprintf(cmd, sizeof cmd, "'%s' '%s/tests/ref/info_ref.py' '%s'", env_or_fail("KILN_PYTHON"),
             env_or_fail("KILN_SOURCE_DIR"), path);
    json_t *r = run_json(cmd);

    assert_string_equal(json_string_value(json_object_get(k, "architecture")),
                        json_string_value(json_object_get(r, "architecture")));
    const char *keys[] = {"n_layers", "hidden_size", "intermediate_size", "n_heads",
                          "n_kv_heads", "head_dim", "context_length", "vocab_size",
                          "parameters", "n_tensors", "weight_bytes"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        print_message("  %-18s kiln %lld ref %lld\n", keys[i],
                      (long long)json_integer_value(json_object_get(k, keys[i])),
                      (long long)json_integer_value(json_object_get(r, keys[i])));
        EXPECT_INT(k, r, keys[i]);
    }
    assert_int_equal(json_is_true(json_object_get(k, "chat_template")),
                     json_is_true(json_object_get(r, "chat_template")));
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
    json_decref(r);
    return k;
}

static void test_info_gemma(void **state)
{
    char path[4096];
    model_path("gemma-3-270m-q4_k_m.gguf", path, sizeof path);
    if (!have(path))
        skip();
    json_t *k = check_against_reference(path);
    /* What the issue of record demands, stated outright as well. */
    assert_string_equal(json_string_value(json_object_get(k, "architecture")), "gemma3");
    assert_int_equal(json_integer_value(json_object_get(k, "n_layers")), 18);
    assert_int_equal(json_integer_value(json_object_get(k, "n_heads")), 4);
    assert_int_equal(json_integer_value(json_object_get(k, "n_kv_heads")), 1);
    assert_int_equal(json_integer_value(json_object_get(k, "head_dim")), 256);
    assert_int_equal(json_integer_value(json_object_get(k, "vocab_size")), 262144);
    assert_string_equal(json_string_value(json_object_get(k, "tokenizer")), "SentencePiece BPE");
    json_t *types = json_object_get(k, "tensor_types");
    assert_non_null(json_object_get(types, "Q4_K"));
    assert_non_null(json_object_get(types, "Q6_K"));
    /* 5 of every 6 layers use the 512-token window. */
    assert_int_equal(json_integer_value(json_object_get(k, "sliding_window")), 512);
    assert_int_equal(json_integer_value(json_object_get(k, "sliding_layers")), 15);
    json_decref(k);
}

static void test_info_minilm(void **state)
{
    char path[4096];
    model_path("all-MiniLM-L6-v2", path, sizeof path);
    if (!have(path))
        skip();
    json_t *k = check_against_reference(path);
    assert_string_equal(json_string_value(json_object_get(k, "architecture")), "bert");
    assert_int_equal(json_integer_value(json_object_get(k, "n_layers")), 6);
    assert_int_equal(json_integer_value(json_object_get(k, "hidden_size")), 384);
    assert_string_equal(json_string_value(json_object_get(k, "tokenizer")), "WordPiece");
    assert_string_equal(json_string_value(json_object_get(k, "pooling")), "mean");
    assert_true(json_is_true(json_object_get(k, "normalize")));
    assert_int_equal(json_integer_value(json_object_get(k, "kv_bytes_per_token")), 0);
    json_decref(k);
}

static void test_info_text_report(void **state)
{
    char path[4096], cmd[8192];
    model_path("gemma-3-270m-q4_k_m.gguf", path, sizeof path);
    if (!have(path))
        skip();
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", env_or_fail("KILN_BIN"), path);
    char *out;
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    assert_non_null(strstr(out, "gemma3"));
    assert_non_null(strstr(out, "Q4_K"));
    assert_non_null(strstr(out, "memory to load"));
    free(out);
}

static void expect_failure(const char *args, int code, const char *needle)
{
    char cmd[8192], *out, *err;
    snprintf(cmd, sizeof cmd, "'%s' info %s", env_or_fail("KILN_BIN"), args);
    int rc = run_capture(cmd, &out, &err);
    print_message("  kiln info %s -> %d: %s", args, rc, err);
    assert_int_equal(rc, code);
    assert_string_equal(out, "");
    if (!strstr(err, needle))
        fail_msg("stderr of 'kiln info %s' lacks '%s': %s", args, needle, err);
    free(out);
    free(err);
}

static void test_info_bad_input(void **state)
{
    char dir[] = "/tmp/kiln-info-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char arg[4400], file[4200];

    expect_failure("", 2, "usage");
    expect_failure("--bogus x", 2, "unknown option");
    expect_failure("/nonexistent/model.gguf", 1, "No such file");
    snprintf(arg, sizeof arg, "'%s'", dir);
    expect_failure(arg, 1, "config.json");
    snprintf(file, sizeof file, "%s/empty.gguf", dir);
    FILE *f = fopen(file, "wb");
    fclose(f);
    snprintf(arg, sizeof arg, "'%s'", file);
    expect_failure(arg, 1, "kiln:");
    f = fopen(file, "wb");
    fputs("this is not a model file at all", f);
    fclose(f);
    expect_failure(arg, 1, "kiln:");
    unlink(file);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_gemma),
        cmocka_unit_test(test_info_minilm),
        cmocka_unit_test(test_info_text_report),
        cmocka_unit_test(test_info_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

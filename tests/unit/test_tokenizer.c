/*
 * test_tokenizer.c - the tokenizer facade beyond parity (test_tok_parity):
 * caller-chosen truncation, source detection and errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

/* A text of about 600 word pieces. */
static void long_text(char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = 0; i < 300 && strlen(buf) + 16 < cap; i++)
        strcat(buf, "tokenizers are fun ");
}

static void test_truncation_minilm(void **state)
{
    char path[4096], text[8192];
    tokenizer *t;
    kiln_ids ids = {0};
    kt_model_or_skip(path, sizeof path, "all-MiniLM-L6-v2");
    assert_int_equal(tok_open(path, &t), KILN_OK);
    long_text(text, sizeof text);
    /* the file's own setting: 128, [CLS] ... [SEP] */
    assert_int_equal(tok_encode(t, text, strlen(text), true, &ids), KILN_OK);
    assert_int_equal(ids.len, 128);
    assert_int_equal(ids.data[0], 101);
    assert_int_equal(ids.data[127], 102);
    /* the caller's limit */
    ids_clear(&ids);
    assert_int_equal(tok_encode_trunc(t, text, strlen(text), true, 256, &ids), KILN_OK);
    assert_int_equal(ids.len, 256);
    assert_int_equal(ids.data[255], 102);
    /* none */
    ids_clear(&ids);
    assert_int_equal(tok_encode_trunc(t, text, strlen(text), true, 0, &ids), KILN_OK);
    assert_true(ids.len > 600);
    assert_int_equal(ids.data[ids.len - 1], 102);
    /* -1 is the file's setting again */
    ids_clear(&ids);
    assert_int_equal(tok_encode_trunc(t, text, strlen(text), true, -1, &ids), KILN_OK);
    assert_int_equal(ids.len, 128);
    ids_free(&ids);
    tok_free(t);
}

static void test_truncation_spm(void **state)
{
    char path[4096], text[8192];
    tokenizer *t;
    kiln_ids ids = {0};
    snprintf(path, sizeof path, "%s/../shared/testdata/llama2-tokenizer.model",
             kt_env("KILN_SOURCE_DIR"));
    if (!kt_exists(path))
        skip();
    assert_int_equal(tok_open(path, &t), KILN_OK);
    long_text(text, sizeof text);
    assert_int_equal(tok_encode_trunc(t, text, strlen(text), true, 10, &ids), KILN_OK);
    assert_int_equal(ids.len, 10);
    assert_int_equal(ids.data[0], tok_bos_id(t));
    ids_free(&ids);
    tok_free(t);
}

static void test_open_errors(void **state)
{
    char dir[4096], file[4200];
    tokenizer *t = NULL;
    assert_int_equal(tok_open("/nonexistent/tokenizer.json", &t), KILN_ERR_NOT_FOUND);
    assert_null(t);
    kt_mkdtemp(dir, sizeof dir, "tok");
    assert_int_equal(tok_open(dir, &t), KILN_ERR_NOT_FOUND);
    assert_non_null(strstr(kiln_last_error(), "tokenizer.json"));
    snprintf(file, sizeof file, "%s/tokenizer.json", dir);
    kt_write_file(file, "{\"model\": {\"type\": \"Nope\"}}", 28);
    assert_int_not_equal(tok_open(file, &t), KILN_OK);
    assert_null(t);
    kt_write_file(file, "not json", 8);
    assert_int_not_equal(tok_open(dir, &t), KILN_OK);
    kt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncation_minilm),
        cmocka_unit_test(test_truncation_spm),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

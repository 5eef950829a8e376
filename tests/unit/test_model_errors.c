/*
 * test_model_errors.c - model_load and the run entry points on bad input:
 * an unsupported architecture, a missing tensor, a misshapen tensor, a
 * tensor type kiln cannot run, batches that do not fit, the wrong entry
 * point for the kind of model, and every allocation failure of a load.
 * Each must give its status and a message naming the problem, leak nothing
 * and not crash.
 *
 * The broken models are copies of tests/golden/models/llama with one thing
 * changed, written as safetensors files into a temporary directory.
 */
#include "model/model.h"

#include "base/alloc.h"
#include "format/model_source.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

static backend *g_be;
static char g_tmp[1024];

static int group_setup(void **state)
{
    if (bk_cpu_create(2, &g_be))
        fail_msg("bk_cpu_create: %s", kiln_last_error());
    kt_mkdtemp(g_tmp, sizeof g_tmp, "model_errors");
    return 0;
}

static int group_teardown(void **state)
{
    g_be->ops->destroy(g_be);
    kt_rmtree(g_tmp);
    return 0;
}

static void src_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/tests/golden/models/%s", kt_env("KILN_SOURCE_DIR"), rel);
}

/* ---- writing altered copies of the tiny llama ------------------------------------ */

/* How a copy differs from the original. */
typedef struct alter {
    const char *model_type;    /* replaces config.json's model_type      */
    const char *drop;          /* tensor left out                          */
    const char *reshape;       /* tensor whose 2-D shape is transposed     */
    const char *retype;        /* tensor stored with dtype `as`            */
    const char *as;
} alter;

/* Write tests/golden/models/llama with `a` applied into g_tmp/<name>;
 * the directory path into dir. */
static void write_copy(const char *name, const alter *a, char *dir, size_t cap)
{
    char path[4096], file[4200];
    model_source *src = NULL;
    json_t *hdr = json_object(), *cfg;
    json_error_t err;
    uint8_t *data = NULL, *img;
    size_t dlen = 0, ilen;

    src_path(path, sizeof path, "llama");
    if (msrc_open(path, &src))
        fail_msg("msrc_open: %s", kiln_last_error());
    for (int64_t i = 0; i < msrc_tensor_count(src); i++) {
        const msrc_tensor *t = msrc_tensor_at(src, i);
        json_t *shape = json_array(), *e = json_object();
        if (a->drop && !strcmp(t->name, a->drop)) {
            json_decref(shape);
            json_decref(e);
            continue;
        }
        bool flip = a->reshape && !strcmp(t->name, a->reshape) && t->n_dims == 2;
        for (int32_t d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->shape[flip ? t->n_dims - 1 - d : d]));
        bool retype = a->retype && !strcmp(t->name, a->retype);
        json_object_set_new(e, "dtype", json_string(retype ? a->as : dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[I, I]", (json_int_t)dlen, (json_int_t)(dlen + t->nbytes)));
        json_object_set_new(hdr, t->name, e);
        data = realloc(data, dlen + t->nbytes);
        assert_non_null(data);
        memcpy(data + dlen, t->data, t->nbytes);
        dlen += t->nbytes;
    }
    msrc_close(src);

    snprintf(dir, cap, "%s/%s", g_tmp, name);
    kt_mkdirs(dir);
    char *htxt = json_dumps(hdr, JSON_COMPACT);
    img = kt_st_image(htxt, data, dlen, &ilen);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    kt_write_file(file, img, ilen);
    free(img);
    free(htxt);
    free(data);
    json_decref(hdr);

    snprintf(file, sizeof file, "%s/config.json", path);
    if (!(cfg = json_load_file(file, 0, &err)))
        fail_msg("%s: %s", file, err.text);
    if (a->model_type)
        json_object_set_new(cfg, "model_type", json_string(a->model_type));
    snprintf(file, sizeof file, "%s/config.json", dir);
    if (json_dump_file(cfg, file, JSON_INDENT(2)))
        fail_msg("cannot write %s", file);
    json_decref(cfg);
}

/* model_load of dir must fail with `want`, a message holding every
 * NULL-terminated needle, and no bytes left allocated. */
static void expect_load_error(const char *dir, kiln_status want, ...)
{
    model_load_opts o = {.max_batch_tokens = 16};
    kiln_model *m = (kiln_model *)1;
    int64_t before = kiln_alloc_bytes_in_use();
    kiln_status st = model_load(dir, g_be, &o, &m);
    const char *msg = kiln_last_error();
    va_list ap;

    print_message("%s: %s\n", kiln_status_str(st), msg);
    assert_int_equal(st, want);
    assert_null(m);
    va_start(ap, want);
    for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *))
        if (!strstr(msg, n))
            fail_msg("message '%s' does not mention '%s'", msg, n);
    va_end(ap);
    assert_int_equal(kiln_alloc_bytes_in_use(), before);
}

/* ---- load errors -------------------------------------------------------------------- */

static void test_unsupported_arch(void **state)
{
    char dir[8192];
    alter a = {.model_type = "gpt2"};
    write_copy("arch", &a, dir, sizeof dir);
    expect_load_error(dir, KILN_ERR_UNSUPPORTED, "gpt2", "not supported", NULL);
}

static void test_missing_tensor(void **state)
{
    char dir[8192];
    alter a = {.drop = "model.layers.1.mlp.up_proj.weight"};
    write_copy("missing", &a, dir, sizeof dir);
    expect_load_error(dir, KILN_ERR_FORMAT, "'model.layers.1.mlp.up_proj.weight'", "missing",
                      "[128, 64]", NULL);
}

static void test_missing_norm(void **state)
{
    char dir[8192];
    alter a = {.drop = "model.norm.weight"};
    write_copy("missing_norm", &a, dir, sizeof dir);
    expect_load_error(dir, KILN_ERR_FORMAT, "'model.norm.weight'", "missing", "[64]", NULL);
}

static void test_wrong_shape(void **state)
{
    char dir[8192];
    alter a = {.reshape = "model.layers.0.self_attn.k_proj.weight"};
    write_copy("shape", &a, dir, sizeof dir);
    expect_load_error(dir, KILN_ERR_FORMAT, "'model.layers.0.self_attn.k_proj.weight'",
                      "has shape [64, 32]", "expected [32, 64]", NULL);
}

static void test_unsupported_dtype(void **state)
{
    char dir[8192];
    alter a = {.retype = "model.norm.weight", .as = "I32"};
    write_copy("dtype", &a, dir, sizeof dir);
    expect_load_error(dir, KILN_ERR_UNSUPPORTED, "'model.norm.weight'", "I32", NULL);
}

static void test_no_such_path(void **state)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/does-not-exist", g_tmp);
    expect_load_error(dir, KILN_ERR_NOT_FOUND, "does-not-exist", NULL);
}

static void test_bad_opts(void **state)
{
    char dir[8192];
    model_load_opts o = {.max_batch_tokens = 0};
    kiln_model *m = NULL;
    src_path(dir, sizeof dir, "llama");
    assert_int_equal(model_load(dir, g_be, &o, &m), KILN_ERR_INVALID_ARG);
    assert_null(m);
    assert_int_equal(model_load(dir, g_be, NULL, &m), KILN_ERR_INVALID_ARG);
}

/* ---- run errors ------------------------------------------------------------------------ */

/* A one-sequence batch of n tokens 1..n at positions 0.. (block 0..). */
static bk_batch batch_of(int n, int32_t *buf)
{
    int32_t *tok = buf, *pos = buf + 64, *slot = buf + 128, *ss = buf + 192, *sl = buf + 194;
    int32_t *tab = buf + 196, *out = buf + 200;
    for (int i = 0; i < n; i++) {
        tok[i] = i + 1;
        pos[i] = i;
        slot[i] = i;
    }
    ss[0] = 0;
    ss[1] = n;
    sl[0] = n;
    for (int i = 0; i < 4; i++)
        tab[i] = i;
    out[0] = n - 1;
    bk_batch_host h = {.n_tokens = n, .n_seqs = 1, .max_blocks = 4, .n_out = 1, .tokens = tok,
                       .positions = pos, .seq_start = ss, .seq_len = sl, .block_tables = tab,
                       .slot_mapping = slot, .out_rows = out};
    bk_batch b;
    if (g_be->ops->batch_upload(g_be, &h, &b))
        fail_msg("batch_upload: %s", kiln_last_error());
    return b;
}

static void test_run_errors(void **state)
{
    char dir[8192];
    model_load_opts o = {.max_batch_tokens = 8};
    kiln_model *m = NULL, *enc = NULL;
    bk_kv_cache shape, kv;
    int32_t buf[256];
    float out[16 * 512];
    bk_batch b;

    src_path(dir, sizeof dir, "llama");
    if (model_load(dir, g_be, &o, &m))
        fail_msg("%s", kiln_last_error());
    model_kv_shape(m, 4, 16, &shape);
    if (g_be->ops->kv_alloc(g_be, &shape, &kv))
        fail_msg("%s", kiln_last_error());

    /* a batch larger than max_batch_tokens */
    b = batch_of(9, buf);
    assert_int_equal(model_forward(m, &b, &kv, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "at most 8 tokens"));
    /* one that fits runs */
    b = batch_of(8, buf);
    assert_int_equal(model_forward(m, &b, &kv, out), KILN_OK);
    /* no cache, no logits buffer, a decoder asked for embeddings */
    assert_int_equal(model_forward(m, &b, NULL, out), KILN_ERR_INVALID_ARG);
    assert_int_equal(model_forward(m, &b, &kv, NULL), KILN_ERR_INVALID_ARG);
    assert_int_equal(model_embed(m, &b, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "model_forward"));

    /* an encoder asked for logits */
    src_path(dir, sizeof dir, "bert");
    if (model_load(dir, g_be, &o, &enc))
        fail_msg("%s", kiln_last_error());
    b = batch_of(4, buf);
    assert_int_equal(model_forward(enc, &b, &kv, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "model_embed"));
    assert_int_equal(model_embed(enc, &b, out), KILN_OK);

    model_free(enc);
    g_be->ops->kv_free(g_be, &kv);
    model_free(m);
}

/* ---- allocation failures ----------------------------------------------------------------- */

/* Fail the Nth allocation of a load of `rel` for every N until a load
 * succeeds: each failure is a clean error with nothing left allocated. */
static void oom_loop(const char *rel)
{
    char dir[8192];
    model_load_opts o = {.max_batch_tokens = 16};
    int64_t before = kiln_alloc_bytes_in_use();
    int n;

    src_path(dir, sizeof dir, rel);
    for (n = 0; n < 5000; n++) {
        kiln_model *m = NULL;
        kiln_alloc_fail_after(n);
        kiln_status st = model_load(dir, g_be, &o, &m);
        kiln_alloc_fail_after(-1);
        if (st == KILN_OK) {
            model_free(m);
            break;
        }
        assert_null(m);
        if (kiln_alloc_bytes_in_use() != before)
            fail_msg("failing allocation %d: %lld bytes leaked (%s)", n,
                     (long long)(kiln_alloc_bytes_in_use() - before), kiln_last_error());
    }
    print_message("%s: a load makes %d allocations\n", rel, n);
    assert_true(n < 5000);
    assert_int_equal(kiln_alloc_bytes_in_use(), before);
}

static void test_oom(void **state)
{
    static const char *const models[] = {"llama", "qwen2", "gemma3", "bert", "gguf/llama.gguf",
                                         "gguf/gemma3_hd.gguf", "gguf/bert.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        oom_loop(models[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported_arch), cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_missing_norm),     cmocka_unit_test(test_wrong_shape),
        cmocka_unit_test(test_unsupported_dtype), cmocka_unit_test(test_no_such_path),
        cmocka_unit_test(test_bad_opts),         cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_oom),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

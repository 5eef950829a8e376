/*
 * test_safetensors.c - the safetensors reader on well-formed files: files
 * this test writes, files written by tests/ref/st_write.py (the safetensors
 * package, or numpy by hand), and the real all-MiniLM-L6-v2 weights when
 * $KILN_MODELS_DIR has them; and a lone safetensors file through
 * msrc_open / msrc_open_any (format/model_source.h).
 */
#include "base/alloc.h"
#include "base/error.h"
#include "format/model_source.h"
#include "format/safetensors.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln_test.h"

/* ---- helpers ------------------------------------------------------------ */

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(m + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double bf16_to_double(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Element i as a double, read unaligned. */
static double elem(const st_tensor *t, int64_t i)
{
    const uint8_t *p = t->data;
    union { double d; float f; int64_t i64; int32_t i32; int16_t i16; uint16_t u16; } u;
    switch (t->dtype) {
    case KILN_DT_F64: memcpy(&u.d, p + 8 * i, 8); return u.d;
    case KILN_DT_F32: memcpy(&u.f, p + 4 * i, 4); return u.f;
    case KILN_DT_F16: memcpy(&u.u16, p + 2 * i, 2); return half_to_double(u.u16);
    case KILN_DT_BF16: memcpy(&u.u16, p + 2 * i, 2); return bf16_to_double(u.u16);
    case KILN_DT_I64: memcpy(&u.i64, p + 8 * i, 8); return (double)u.i64;
    case KILN_DT_I32: memcpy(&u.i32, p + 4 * i, 4); return u.i32;
    case KILN_DT_I16: memcpy(&u.i16, p + 2 * i, 2); return u.i16;
    case KILN_DT_I8: return (int8_t)p[i];
    case KILN_DT_U8: return p[i];
    case KILN_DT_BOOL: return p[i];
    default: fail_msg("unexpected dtype %d", t->dtype);
    }
    return 0;
}

/* The formula of tests/ref/st_write.py value(). */
static double ref_value(kiln_dtype dt, int64_t i)
{
    switch (dt) {
    case KILN_DT_F64: case KILN_DT_F32: case KILN_DT_F16: case KILN_DT_BF16:
        return (double)((i * 7) % 23) * 0.5 - 5.0;
    case KILN_DT_I64: return (double)(i * 1000003 - INT64_C(5000000000));
    case KILN_DT_I32: return (double)(i * 7919 - 100000);
    case KILN_DT_I16: return (double)((i * 37) % 60000 - 30000);
    case KILN_DT_I8: return (double)((i * 13) % 256 - 128);
    case KILN_DT_U8: return (double)((i * 29) % 256);
    case KILN_DT_BOOL: return i % 3 == 0;
    default: return NAN;
    }
}

static int64_t numel(const st_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->n_dims; d++)
        n *= t->shape[d];
    return n;
}

static void check_ref_tensor(const st_model *m, const char *name, kiln_dtype dt, int nd, ...)
{
    const st_tensor *t = st_find(m, name);
    va_list ap;
    if (!t)
        fail_msg("tensor %s missing", name);
    assert_string_equal(t->name, name);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->n_dims, nd);
    va_start(ap, nd);
    for (int d = 0; d < nd; d++)
        assert_int_equal(t->shape[d], va_arg(ap, int));
    va_end(ap);
    assert_int_equal(t->nbytes, (uint64_t)numel(t) * (uint64_t)dtype_get(dt)->block_bytes);
    for (int64_t i = 0; i < numel(t); i++)
        if (elem(t, i) != ref_value(dt, i))
            fail_msg("%s[%lld] = %g, want %g", name, (long long)i, elem(t, i), ref_value(dt, i));
}

/* Run tests/ref/st_write.py into $KILN_BINARY_DIR/st_ref/<tag>; skip when
 * the Python has no numpy. */
static const char *make_ref(const char *python, const char *tag)
{
    static char dir[4096];
    const char *const has_numpy[] = {python, "-c", "import numpy", NULL};
    char *err;
    snprintf(dir, sizeof dir, "%s/st_ref/%s", kt_env("KILN_BINARY_DIR"), tag);
    int rc = kt_run(has_numpy, NULL, &err);
    free(err);
    if (rc != 0) {
        print_message("%s has no numpy: skipped\n", python);
        skip();
    }
    assert_int_equal(kt_run_ref(python, "st_write.py", dir, NULL, NULL), 0);
    return dir;
}

/* ---- tests -------------------------------------------------------------- */

static void check_ref_single(const char *dir)
{
    char path[4200];
    st_model *m = NULL;
    snprintf(path, sizeof path, "%s/single.safetensors", dir);
    if (st_open_file(path, &m))
        fail_msg("%s", kiln_last_error());
    assert_int_equal(st_tensor_count(m), 12);
    assert_int_equal(st_shard_count(m), 1);
    check_ref_tensor(m, "f64", KILN_DT_F64, 1, 4);
    check_ref_tensor(m, "f32", KILN_DT_F32, 3, 3, 4, 5);
    check_ref_tensor(m, "f16", KILN_DT_F16, 1, 7);
    check_ref_tensor(m, "bf16", KILN_DT_BF16, 2, 2, 8);
    check_ref_tensor(m, "i64", KILN_DT_I64, 2, 3, 2);
    check_ref_tensor(m, "i32", KILN_DT_I32, 1, 5);
    check_ref_tensor(m, "i16", KILN_DT_I16, 1, 6);
    check_ref_tensor(m, "i8", KILN_DT_I8, 1, 16);
    check_ref_tensor(m, "u8", KILN_DT_U8, 1, 9);
    check_ref_tensor(m, "bool", KILN_DT_BOOL, 1, 10);
    check_ref_tensor(m, "scalar", KILN_DT_F32, 0);
    check_ref_tensor(m, "empty", KILN_DT_F32, 2, 0, 4);
    assert_string_equal(st_metadata(m, "format"), "pt");
    assert_string_equal(st_metadata(m, "producer"), "kiln-ref");
    assert_null(st_metadata(m, "nope"));
    assert_null(st_find(m, "f33"));
    assert_null(st_tensor_at(m, 12));
    assert_null(st_tensor_at(m, -1));
    for (int64_t i = 1; i < st_tensor_count(m); i++)
        assert_true(strcmp(st_tensor_at(m, i - 1)->name, st_tensor_at(m, i)->name) < 0);
    st_close(m);
}

static void check_ref_sharded(const char *dir)
{
    char path[4200];
    st_model *m = NULL;
    snprintf(path, sizeof path, "%s/sharded", dir);
    if (st_open_dir(path, &m))
        fail_msg("%s", kiln_last_error());
    assert_int_equal(st_shard_count(m), 3);
    assert_int_equal(st_tensor_count(m), 6);
    check_ref_tensor(m, "a.weight", KILN_DT_F32, 2, 4, 3);
    check_ref_tensor(m, "a.bias", KILN_DT_F16, 1, 4);
    check_ref_tensor(m, "b.weight", KILN_DT_BF16, 2, 2, 5);
    check_ref_tensor(m, "b.ids", KILN_DT_I32, 1, 3);
    check_ref_tensor(m, "c.weight", KILN_DT_F32, 1, 6);
    check_ref_tensor(m, "c.mask", KILN_DT_U8, 1, 5);
    assert_int_equal(st_find(m, "a.weight")->shard, 0);
    assert_int_equal(st_find(m, "b.ids")->shard, 1);
    assert_int_equal(st_find(m, "c.mask")->shard, 2);
    assert_non_null(strstr(st_shard_path(m, 2), "model-00003-of-00003.safetensors"));
    assert_string_equal(st_metadata(m, "format"), "pt");
    st_close(m);
}

/* Reference files written by the safetensors package ($KILN_PYTHON). */
static void test_reference_package(void **state)
{
    const char *dir = make_ref(kt_env("KILN_PYTHON"), "package");
    check_ref_single(dir);
    check_ref_sharded(dir);
}

/* Reference files written by numpy by hand when the package is absent: run
 * with the plain python3, which has numpy but may lack safetensors. */
static void test_reference_python3(void **state)
{
    const char *dir = make_ref("python3", "python3");
    check_ref_single(dir);
    check_ref_sharded(dir);
}

/* Every dtype from a file this test writes, via file and memory. */
static void test_every_dtype_written_here(void **state)
{
    static const char *hdr =
        "{\"__metadata__\":{\"k\":\"v\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[10,12]},"
        "\"d\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]},"
        "\"e\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[16,17]},"
        "\"f\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[17,18]},"
        "\"g\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[18,19]},"
        "\"h\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[19,21]},"
        "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[21,29]},"
        "\"j\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[29,37]}}";
    uint8_t data[37] = {0};
    float f2[2] = {1.5f, -2.25f};
    uint16_t h = 0x3e00 /* 1.5 */, bf = 0xc010 /* -2.25 */;
    int32_t i32 = -123456;
    int16_t i16 = -1234;
    int64_t i64 = INT64_C(-9000000000);
    double f64 = 3.125;
    size_t len;
    char path[4200];
    st_model *m = NULL, *mm = NULL;

    memcpy(data, f2, 8);
    memcpy(data + 8, &h, 2);
    memcpy(data + 10, &bf, 2);
    memcpy(data + 12, &i32, 4);
    data[16] = (uint8_t)(int8_t)-7;
    data[17] = 250;
    data[18] = 1;
    memcpy(data + 19, &i16, 2);
    memcpy(data + 21, &i64, 8);
    memcpy(data + 29, &f64, 8);
    uint8_t *file = kt_st_image(hdr, data, sizeof data, &len);
    snprintf(path, sizeof path, "%s/st_every_dtype.safetensors", kt_env("KILN_BINARY_DIR"));
    kt_write_file(path, file, len);
    assert_int_equal(st_open_file(path, &m), KILN_OK);
    assert_int_equal(st_open_memory(file, len, &mm), KILN_OK);
    for (st_model *x = m; x; x = x == m ? mm : NULL) {
        assert_int_equal(st_tensor_count(x), 10);
        assert_true(elem(st_find(x, "a"), 1) == -2.25);
        assert_true(elem(st_find(x, "b"), 0) == 1.5);
        assert_true(elem(st_find(x, "c"), 0) == -2.25);
        assert_true(elem(st_find(x, "d"), 0) == -123456);
        assert_true(elem(st_find(x, "e"), 0) == -7);
        assert_true(elem(st_find(x, "f"), 0) == 250);
        assert_true(elem(st_find(x, "g"), 0) == 1);
        assert_true(elem(st_find(x, "h"), 0) == -1234);
        assert_true(elem(st_find(x, "i"), 0) == -9000000000.0);
        assert_true(elem(st_find(x, "j"), 0) == 3.125);
        assert_string_equal(st_metadata(x, "k"), "v");
        assert_int_equal(st_metadata_count(x), 1);
    }
    assert_string_equal(st_shard_path(mm, 0), "<memory>");
    st_close(m);
    st_close(mm);
    st_close(NULL);
    free(file);
}

/* Directory lookup: the lone *.safetensors file, several files without an
 * index, and no file at all. */
static void test_open_dir_rules(void **state)
{
    const char *bin = kt_env("KILN_BINARY_DIR");
    char dir[4096], path[4200];
    size_t len;
    st_model *m = NULL;
    uint8_t *file = kt_st_image("{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
                                "ab", 2, &len);

    snprintf(dir, sizeof dir, "%s/st_dirs", bin);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/empty", dir);
    mkdir(path, 0755);
    assert_int_equal(st_open_dir(path, &m), KILN_ERR_NOT_FOUND);
    assert_null(m);
    snprintf(path, sizeof path, "%s/one", dir);
    mkdir(path, 0755);
    for (int i = 0; i < 3; i++) {
        static const char *const old[] = {"second", "model", "weights"};
        snprintf(path, sizeof path, "%s/one/%s.safetensors", dir, old[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/one/weights.safetensors", dir);
    kt_write_file(path, file, len);
    snprintf(path, sizeof path, "%s/one", dir);
    assert_int_equal(st_open_dir(path, &m), KILN_OK);
    assert_int_equal(st_tensor_count(m), 1);
    st_close(m);
    snprintf(path, sizeof path, "%s/one/second.safetensors", dir);
    kt_write_file(path, file, len);
    snprintf(path, sizeof path, "%s/one", dir);
    assert_int_equal(st_open_dir(path, &m), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_last_error(), "several"));
    snprintf(path, sizeof path, "%s/one/model.safetensors", dir);
    kt_write_file(path, file, len);
    snprintf(path, sizeof path, "%s/one", dir);
    assert_int_equal(st_open_dir(path, &m), KILN_OK);
    assert_true(strstr(st_shard_path(m, 0), "/model.safetensors") != NULL);
    st_close(m);
    free(file);
}

/* Every allocation failure is reported as KILN_ERR_OOM and leaks nothing. */
static void test_oom_paths(void **state)
{
    static const char *hdr =
        "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\"},"
        "\"t1\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"t2\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    size_t len;
    uint8_t *file = kt_st_image(hdr, "01234567", 8, &len);
    int64_t before = kiln_alloc_bytes_in_use();
    kiln_status st = KILN_ERR_OOM;
    int64_t n;

    for (n = 0; n < 100 && st == KILN_ERR_OOM; n++) {
        st_model *m = NULL;
        kiln_alloc_fail_after(n);
        st = st_open_memory(file, len, &m);
        kiln_alloc_fail_after(-1);
        assert_true(st == KILN_OK || st == KILN_ERR_OOM);
        if (st == KILN_OK)
            assert_int_equal(st_tensor_count(m), 2);
        st_close(m);
        assert_int_equal(kiln_alloc_bytes_in_use(), before);
    }
    assert_int_equal(st, KILN_OK);
    assert_true(n > 3);
    free(file);
}

/* The real all-MiniLM-L6-v2 weights (skipped when not fetched). */
static void test_minilm(void **state)
{
    char dir[4096];
    st_model *m = NULL;
    const st_tensor *t;

    kt_model_or_skip(dir, sizeof dir, "all-MiniLM-L6-v2");
    if (st_open_dir(dir, &m))
        fail_msg("%s", kiln_last_error());
    assert_int_equal(st_tensor_count(m), 104);
    assert_string_equal(st_metadata(m, "format"), "pt");
    t = st_find(m, "embeddings.word_embeddings.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, KILN_DT_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], 30522);
    assert_int_equal(t->shape[1], 384);
    assert_int_equal(t->nbytes, UINT64_C(30522) * 384 * 4);
    t = st_find(m, "encoder.layer.5.output.dense.weight");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 384);
    assert_int_equal(t->shape[1], 1536);
    t = st_find(m, "embeddings.position_ids");
    assert_non_null(t);
    assert_int_equal(t->dtype, KILN_DT_I64);
    for (int64_t i = 0; i < 512; i++)
        assert_true(elem(t, i) == (double)i);
    st_close(m);
}

/* A lone safetensors file: msrc_open refuses it (a model needs its
 * config.json), msrc_open_any lists its tensors with no configuration; the
 * file is told from GGUF by name or, under another name, by its header. */
static void test_model_source_lone_file(void **state)
{
    static const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                             "\"w\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                             "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]}}";
    const char *names[] = {"lone.safetensors", "lone.bin", "LONE.SAFETENSORS"};
    char dir[256], path[512];
    size_t len;
    uint8_t *file = kt_st_image(hdr, NULL, 16, &len);
    model_source *m = NULL;

    kt_mkdtemp(dir, sizeof dir, "msrc_lone");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        kt_write_file(path, file, len);
        assert_int_equal(msrc_open(path, &m), KILN_ERR_NOT_FOUND);
        assert_null(m);
        assert_non_null(strstr(kiln_last_error(), "config.json"));
        if (msrc_open_any(path, &m))
            fail_msg("%s: %s", names[i], kiln_last_error());
        assert_int_equal(msrc_get_kind(m), MSRC_ST_FILE);
        assert_int_equal(msrc_tensor_count(m), 2);
        assert_int_equal(msrc_file_count(m), 1);
        assert_int_equal(msrc_config(m)->arch, MCFG_ARCH_UNKNOWN);
        assert_int_equal(msrc_tokenizer_kind(m), MSRC_TOK_NONE);
        assert_null(msrc_chat_template(m, NULL));
        assert_null(msrc_gguf(m));
        assert_string_equal(st_metadata(msrc_safetensors(m), "format"), "pt");
        const msrc_tensor *w = msrc_find_tensor(m, "w");
        assert_non_null(w);
        assert_int_equal(w->dtype, KILN_DT_F16);
        assert_int_equal(w->n_elems, 6);
        assert_int_equal(w->nbytes, 12);
        assert_string_equal(msrc_name(m), names[i]);
        msrc_close(m);
        m = NULL;
    }
    /* a broken .safetensors file gets the safetensors reader's message */
    snprintf(path, sizeof path, "%s/cut.safetensors", dir);
    kt_write_file(path, file, 20);
    assert_int_equal(msrc_open_any(path, &m), KILN_ERR_FORMAT);
    assert_null(m);
    assert_non_null(strstr(kiln_last_error(), "safetensors: "));
    assert_non_null(strstr(kiln_last_error(), "past the end of the file"));
    /* neither name nor header says safetensors: the GGUF reader's verdict */
    snprintf(path, sizeof path, "%s/junk.bin", dir);
    kt_write_file(path, "not a model at all, just some text", 34);
    assert_int_not_equal(msrc_open_any(path, &m), KILN_OK);
    assert_non_null(strstr(kiln_last_error(), "not a GGUF file"));
    /* GGUF magic wins over the name */
    snprintf(path, sizeof path, "%s/magic.safetensors", dir);
    kt_write_file(path, "GGUF\x03\0\0\0", 8);
    assert_int_not_equal(msrc_open_any(path, &m), KILN_OK);
    assert_non_null(strstr(kiln_last_error(), "gguf: "));
    free(file);
    kt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_dtype_written_here),
        cmocka_unit_test(test_reference_package),
        cmocka_unit_test(test_reference_python3),
        cmocka_unit_test(test_open_dir_rules),
        cmocka_unit_test(test_oom_paths),
        cmocka_unit_test(test_minilm),
        cmocka_unit_test(test_model_source_lone_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

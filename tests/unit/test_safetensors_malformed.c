/*
 * test_safetensors_malformed.c - a corpus of broken safetensors files and
 * sharded indexes, written to $KILN_BINARY_DIR/malformed/safetensors/.
 * Each must be refused with a message that names the file and the problem;
 * none may crash (the ASan/UBSan build runs this too).  A sample is also
 * given to `kiln info`, which must open it with the safetensors reader and
 * exit 1 with that reader's own message (naming the problem) on stderr.
 */
#include "format/safetensors.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln_test.h"

static char corpus[4096]; /* $KILN_BINARY_DIR/malformed/safetensors */

/* ---- helpers ------------------------------------------------------------ */

static int setup(void **state)
{
    snprintf(corpus, sizeof corpus, "%s/malformed/safetensors", kt_env("KILN_BINARY_DIR"));
    kt_mkdirs(corpus);
    return 0;
}

/* A malformed model was refused: status st, nothing handed back. */
static void expect_refused(const char *what, kiln_status st, st_model *m)
{
    if (st == KILN_OK) {
        st_close(m);
        fail_msg("%s: opened, but it is malformed", what);
    }
    assert_null(m);
}

/* Open `path`; it must fail with `want` (0 = any error) and a message that
 * names the file and contains `needle` (NULL = any). */
static void expect_fail(const char *path, kiln_status want, const char *needle)
{
    st_model *m = NULL;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    kiln_status st = st_open_file(path, &m);
    expect_refused(path, st, m);
    if (want && st != want)
        fail_msg("%s: status %d, want %d (%s)", base, st, want, kiln_last_error());
    if (!strstr(kiln_last_error(), base))
        fail_msg("%s: message does not name the file: %s", base, kiln_last_error());
    if (needle && !strstr(kiln_last_error(), needle))
        fail_msg("%s: message '%s' lacks '%s'", base, kiln_last_error(), needle);
}

/* `kiln info path` exits 1 and prints "kiln: " and exactly the message
 * st_open_file gives for the file, which holds `needle`: the CLI used the
 * safetensors reader (not the GGUF one) and passed on what it said. */
static void expect_cli_fail(const char *path, const char *needle)
{
    char want[2048], *out, *err;
    st_model *m = NULL;
    expect_refused(path, st_open_file(path, &m), m);
    snprintf(want, sizeof want, "kiln: %s\n", kiln_last_error());
    if (strncmp(kiln_last_error(), "safetensors: ", 13) || !strstr(want, needle))
        fail_msg("%s: reader message '%s' lacks 'safetensors: ' or '%s'", path,
                 kiln_last_error(), needle);
    int rc = kt_kiln(&out, &err, "info", path, NULL);
    print_message("  kiln info %s -> %d: %s", path, rc, err);
    if (rc != 1)
        fail_msg("kiln info %s: exit status %d, want 1", path, rc);
    if (out[0])
        fail_msg("kiln info %s: printed a report: %s", path, out);
    if (!strstr(err, want))
        fail_msg("kiln info %s: stderr '%s' is not the reader's message '%s'", path, err, want);
    free(out);
    free(err);
}

/* ---- single files -------------------------------------------------------- */

typedef struct bad_file {
    const char *name;
    const char *header; /* NULL: raw bytes below */
    size_t dlen;
    kiln_status st;
    const char *needle;
} bad_file;

#define T(d, s, o) "{\"t\":{\"dtype\":\"" d "\",\"shape\":" s ",\"data_offsets\":" o "}}"

static const bad_file bad_files[] = {
    {"not_json", "hello, world", 0, KILN_ERR_FORMAT, "not valid JSON"},
    {"json_array", "[1, 2, 3]", 0, KILN_ERR_FORMAT, "not a JSON object"},
    {"json_string", "\"text\"", 0, KILN_ERR_FORMAT, "not valid JSON"},
    {"trailing_garbage", "{}xyz", 0, KILN_ERR_FORMAT, "line 1"},
    {"multiline_error", "{\n\"t\":\n}", 0, KILN_ERR_FORMAT, "line 3"},
    {"entry_not_object", "{\"t\": 5}", 0, KILN_ERR_FORMAT, "entry is not a JSON object"},
    {"empty_name", "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     KILN_ERR_FORMAT, "empty tensor name"},
    {"missing_dtype", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT,
     "missing \"dtype\""},
    {"missing_shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT,
     "missing \"shape\""},
    {"missing_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, KILN_ERR_FORMAT,
     "missing \"data_offsets\""},
    {"dtype_number", "{\"t\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     KILN_ERR_FORMAT, "\"dtype\" is not a string"},
    {"dtype_unknown_f8", T("F8_E4M3", "[1]", "[0,1]"), 1, KILN_ERR_UNSUPPORTED, "F8_E4M3"},
    {"dtype_unknown_q4", T("Q4_K", "[1]", "[0,1]"), 1, KILN_ERR_UNSUPPORTED, "Q4_K"},
    {"dtype_lowercase", T("f32", "[1]", "[0,4]"), 4, KILN_ERR_UNSUPPORTED, "'f32'"},
    {"shape_string", T("F32", "\"1\"", "[0,4]"), 4, KILN_ERR_FORMAT, "\"shape\" is not an array"},
    {"shape_elem_string", T("F32", "[\"1\"]", "[0,4]"), 4, KILN_ERR_FORMAT,
     "shape[0] is not an integer"},
    {"shape_float", T("F32", "[1.5]", "[0,4]"), 4, KILN_ERR_FORMAT, "is not an integer"},
    {"shape_negative", T("F32", "[2,-1]", "[0,4]"), 4, KILN_ERR_FORMAT, "shape[1] = -1"},
    {"shape_nine_dims", T("U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1, KILN_ERR_FORMAT,
     "at most 8"},
    {"shape_overflow", T("F32", "[1099511627776,1099511627776]", "[0,4]"), 4, KILN_ERR_FORMAT,
     "overflows"},
    {"shape_bytes_overflow", T("F32", "[4611686018427387904,1]", "[0,4]"), 4, KILN_ERR_FORMAT,
     "overflows"},
    {"shape_too_big_int", T("F32", "[99999999999999999999]", "[0,4]"), 4, KILN_ERR_FORMAT,
     "not valid JSON"},
    {"offsets_number", T("F32", "[1]", "4"), 4, KILN_ERR_FORMAT, "[begin, end]"},
    {"offsets_three", T("F32", "[1]", "[0,4,8]"), 8, KILN_ERR_FORMAT, "[begin, end]"},
    {"offsets_strings", T("F32", "[1]", "[\"0\",\"4\"]"), 4, KILN_ERR_FORMAT, "non-negative"},
    {"offsets_negative", T("F32", "[1]", "[-4,0]"), 4, KILN_ERR_FORMAT, "non-negative"},
    {"offsets_past_eof", T("F32", "[100]", "[0,400]"), 4, KILN_ERR_FORMAT,
     "past the end of the data section"},
    {"offsets_huge", T("U8", "[1]", "[18446744073709551614,18446744073709551615]"), 4,
     KILN_ERR_FORMAT, NULL},
    {"begin_after_end", T("F32", "[1]", "[4,0]"), 4, KILN_ERR_FORMAT, "begin 4 > end 0"},
    {"size_mismatch", T("F32", "[2]", "[0,4]"), 8, KILN_ERR_FORMAT, "need 8"},
    {"size_mismatch_dtype", T("F16", "[4]", "[0,16]"), 16, KILN_ERR_FORMAT, "F16 need 8"},
    {"overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
     KILN_ERR_FORMAT, "overlaps"},
    {"same_range", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                   "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     KILN_ERR_FORMAT, "overlaps"},
    {"duplicate_name", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
     KILN_ERR_FORMAT, "duplicate"},
    {"non_utf8_name", "{\"a\xff\xfe\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     KILN_ERR_FORMAT, "not valid JSON"},
    {"nul_in_name", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     KILN_ERR_FORMAT, "not valid JSON"},
    {"metadata_number", "{\"__metadata__\": 5}", 0, KILN_ERR_FORMAT,
     "__metadata__ is not a JSON object"},
    {"metadata_value_int", "{\"__metadata__\": {\"k\": 1}}", 0, KILN_ERR_FORMAT,
     "value of 'k' is not a string"},
    {"metadata_value_object", "{\"__metadata__\": {\"k\": {}}}", 0, KILN_ERR_FORMAT,
     "not a string"},
    {"metadata_duplicate", "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}", 0, KILN_ERR_FORMAT,
     "duplicate"},
};

static void write_case(const bad_file *b, char *path, size_t cap)
{
    size_t len;
    uint8_t *buf = kt_st_image(b->header, NULL, b->dlen, &len);
    snprintf(path, cap, "%s/%s.safetensors", corpus, b->name);
    kt_write_file(path, buf, len);
    free(buf);
}

static void test_named_cases(void **state)
{
    char path[4200];
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        write_case(&bad_files[i], path, sizeof path);
        expect_fail(path, bad_files[i].st, bad_files[i].needle);
    }
}

/* Length prefixes that are wrong in themselves. */
static void test_header_length(void **state)
{
    static const struct {
        const char *name;
        uint64_t n;
        size_t file_len;
        const char *needle;
    } cases[] = {
        {"hlen_zero", 0, 16, "too small"},
        {"hlen_one", 1, 16, "too small"},
        {"hlen_huge", UINT64_C(1) << 63, 64, "exceeds"},
        {"hlen_all_ones", UINT64_MAX, 64, "exceeds"},
        {"hlen_over_limit", 100000001, 64, "exceeds"},
        {"hlen_past_eof", 1000, 64, "past the end of the file"},
        {"hlen_just_past_eof", 57, 64, "past the end of the file"},
        {"file_3_bytes", 0, 3, "too short"},
        {"file_empty", 0, 0, "too short"},
    };
    char path[4200];
    uint8_t buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(buf, '{', sizeof buf);
        for (int k = 0; k < 8; k++)
            buf[k] = (uint8_t)(cases[i].n >> (8 * k));
        snprintf(path, sizeof path, "%s/%s.safetensors", corpus, cases[i].name);
        kt_write_file(path, buf, cases[i].file_len);
        expect_fail(path, KILN_ERR_FORMAT, cases[i].needle);
    }
}

/* A valid file cut at every byte of its header and data. */
static void test_truncated_everywhere(void **state)
{
    static const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[24,30]}}";
    size_t len;
    uint8_t *buf = kt_st_image(hdr, NULL, 30, &len);
    char path[4200];
    st_model *m = NULL;

    assert_int_equal(st_open_memory(buf, len, &m), KILN_OK);
    st_close(m);
    kt_mkdirs(corpus);
    for (size_t cut = 0; cut < len; cut++) {
        snprintf(path, sizeof path, "%s/truncated_%04zu.safetensors", corpus, cut);
        kt_write_file(path, buf, cut);
        expect_fail(path, KILN_ERR_FORMAT, NULL);
        assert_int_equal(st_open_memory(buf, cut, &m), KILN_ERR_FORMAT);
        assert_null(m);
    }
    free(buf);
}

/* A sample of the corpus through the CLI, each with the words of its
 * problem (the files too short for a header are recognised by name). */
static void test_cli_info(void **state)
{
    static const struct {
        const char *name, *needle;
    } cases[] = {
        {"not_json", "not valid JSON"},
        {"json_array", "not a JSON object"},
        {"shape_overflow", "overflows"},
        {"offsets_past_eof", "past the end of the data section"},
        {"size_mismatch", "need 8"},
        {"overlap", "overlaps"},
        {"duplicate_name", "duplicate"},
        {"dtype_unknown_f8", "F8_E4M3"},
        {"metadata_value_int", "value of 'k' is not a string"},
        {"hlen_huge", "exceeds"},
        {"hlen_zero", "too small"},
        {"file_empty", "too short"},
        {"truncated_0005", "too short"},
        {"truncated_0100", "runs past the end of the file"},
    };
    char path[4200];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", corpus, cases[i].name);
        expect_cli_fail(path, cases[i].needle);
    }
}

/* ---- sharded indexes ----------------------------------------------------------- */

#define SHARD_A "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}"
#define SHARD_B "{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}"

typedef struct bad_index {
    const char *name;
    const char *index; /* model.safetensors.index.json */
    const char *shard1, *shard2; /* headers of s1.safetensors, s2.safetensors; NULL: none */
    kiln_status st;
    const char *needle;
} bad_index;

static const bad_index bad_indexes[] = {
    {"index_missing_shard", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}",
     SHARD_A, NULL, KILN_ERR_IO, "s2.safetensors"},
    {"index_tensor_not_in_shard",
     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"ghost\":\"s1.safetensors\"}}", SHARD_A, NULL,
     KILN_ERR_NOT_FOUND, "'ghost'"},
    {"index_tensor_in_two_shards",
     "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}", SHARD_A, SHARD_A,
     KILN_ERR_FORMAT, "also in shard"},
    {"index_wrong_shard", "{\"weight_map\":{\"a\":\"s2.safetensors\",\"b\":\"s1.safetensors\"}}",
     SHARD_A, SHARD_B, KILN_ERR_FORMAT, "weight_map says shard s2.safetensors"},
    {"index_dotdot", "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", SHARD_A, NULL,
     KILN_ERR_FORMAT, "not a plain file name"},
    {"index_dotdot_bare", "{\"weight_map\":{\"a\":\"..\"}}", SHARD_A, NULL, KILN_ERR_FORMAT,
     "not a plain file name"},
    {"index_slash", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", SHARD_A, NULL, KILN_ERR_FORMAT,
     "not a plain file name"},
    {"index_empty_name", "{\"weight_map\":{\"a\":\"\"}}", SHARD_A, NULL, KILN_ERR_FORMAT,
     "not a plain file name"},
    {"index_not_json", "{\"weight_map\":", SHARD_A, NULL, KILN_ERR_FORMAT, "not valid JSON"},
    {"index_no_weight_map", "{\"metadata\":{}}", SHARD_A, NULL, KILN_ERR_FORMAT, "weight_map"},
    {"index_weight_map_array", "{\"weight_map\":[]}", SHARD_A, NULL, KILN_ERR_FORMAT,
     "weight_map"},
    {"index_empty_weight_map", "{\"weight_map\":{}}", SHARD_A, NULL, KILN_ERR_FORMAT,
     "weight_map has 0"},
    {"index_value_number", "{\"weight_map\":{\"a\":1}}", SHARD_A, NULL, KILN_ERR_FORMAT,
     "not a string"},
    {"index_duplicate_key", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}",
     SHARD_A, NULL, KILN_ERR_FORMAT, "duplicate"},
    {"index_bad_shard", "{\"weight_map\":{\"a\":\"s1.safetensors\"}}", "[1]", NULL,
     KILN_ERR_FORMAT, "s1.safetensors: header is not a JSON object"},
};

static void write_shard(const char *dir, const char *file, const char *header)
{
    char path[4300];
    size_t len;
    uint8_t *buf;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    unlink(path);
    if (!header)
        return;
    buf = kt_st_image(header, NULL, 2, &len);
    kt_write_file(path, buf, len);
    free(buf);
}

static void test_bad_indexes(void **state)
{
    char dir[4200], path[4300];
    for (size_t i = 0; i < sizeof bad_indexes / sizeof bad_indexes[0]; i++) {
        const bad_index *b = &bad_indexes[i];
        st_model *m = NULL;
        kiln_status st;

        snprintf(dir, sizeof dir, "%s/%s", corpus, b->name);
        kt_mkdirs(dir);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        kt_write_file(path, b->index, strlen(b->index));
        write_shard(dir, "s1.safetensors", b->shard1);
        write_shard(dir, "s2.safetensors", b->shard2);
        st = st_open_dir(dir, &m);
        expect_refused(b->name, st, m);
        if (st != b->st || !strstr(kiln_last_error(), b->needle))
            fail_msg("%s: status %d (want %d), message '%s' (want '%s')", b->name, st, b->st,
                     kiln_last_error(), b->needle);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_header_length),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_cli_info),
        cmocka_unit_test(test_bad_indexes),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

/*
 * test_gguf_malformed.c - hostile and broken GGUF files are rejected cleanly.
 *
 * Builds a small valid file byte by byte, then a corpus of malformed
 * variants in $KILN_BINARY_DIR/malformed/gguf/: truncations at every byte of
 * the header, metadata and tensor infos and at points in the data, offsets
 * past the end, impossible counts, overflowing sizes, bad alignments,
 * invalid UTF-8, duplicates, overlaps, unknown types, wrong versions and
 * magic.  gguf_open must fail on each with a message naming the problem (an
 * expected word for each named case).  A subset also goes through
 * `$KILN_BIN info FILE`, which must exit non-zero with a message on stderr.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "format/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"

/* ---- a byte buffer and GGUF pieces ---------------------------------------- */

typedef struct gbuf {
    uint8_t *p;
    size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = kiln_realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u8(gbuf *b, uint8_t v) { put(b, &v, 1); }

static void put_u32(gbuf *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, le, 4);
}

static void put_u64(gbuf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_strn(gbuf *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static void put_str(gbuf *b, const char *s) { put_strn(b, s, strlen(s)); }

static void header(gbuf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

static void kv_u32(gbuf *b, const char *key, uint32_t v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}

static void kv_str(gbuf *b, const char *key, const char *v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_STRING);
    put_str(b, v);
}

static void tinfo(gbuf *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset)
{
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}

static void pad_to(gbuf *b, size_t align)
{
    while (b->n % align)
        put_u8(b, 0);
}

static void zeros(gbuf *b, size_t n)
{
    while (n--)
        put_u8(b, 0);
}

/* ---- the valid base file ------------------------------------------------------ */

typedef struct base_layout {
    size_t infos_end; /* first byte past the tensor infos */
    size_t data_off;  /* data section start               */
} base_layout;

/* Metadata of every kind, two tensors: "w" F32 [8,2] at 0, "q" Q8_0 [32] at 64. */
static void make_base(gbuf *b, base_layout *lay)
{
    header(b, 3, 2, 6);
    kv_str(b, "general.architecture", "llama");
    kv_u32(b, "general.alignment", 32);
    put_str(b, "tok.list");
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_STRING);
    put_u64(b, 2);
    put_str(b, "ab");
    put_str(b, "c");
    put_str(b, "nested");
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u64(b, 1);
    put_u32(b, GGUF_TYPE_INT16);
    put_u64(b, 2);
    put_u32(b, 0x00020001u);
    put_str(b, "flag");
    put_u32(b, GGUF_TYPE_BOOL);
    put_u8(b, 1);
    put_str(b, "eps");
    put_u32(b, GGUF_TYPE_FLOAT64);
    put_u64(b, 0x3eb0c6f7a0b5ed8dull);
    tinfo(b, "w", 2, (uint64_t[]){8, 2}, 0, 0);
    tinfo(b, "q", 1, (uint64_t[]){32}, 8, 64);
    lay->infos_end = b->n;
    pad_to(b, 32);
    lay->data_off = b->n;
    zeros(b, 64 + 34);
}

/* A file with one F32 tensor per (name, offset, n) and alignment 32. */
static void make_tensors(gbuf *b, int n, const char *const *names, const uint64_t *offs,
                         const uint64_t *elems, size_t data_bytes)
{
    header(b, 3, (uint64_t)n, 0);
    for (int k = 0; k < n; k++)
        tinfo(b, names[k], 1, &elems[k], 0, offs[k]);
    pad_to(b, 32);
    zeros(b, data_bytes);
}

/* ---- writing and checking ------------------------------------------------------ */

static char corpus_dir[512];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(corpus_dir, sizeof corpus_dir, "%s/malformed/gguf", kt_env("KILN_BINARY_DIR"));
    kt_mkdirs(corpus_dir);
    return 0;
}

static const char *case_path(const char *name)
{
    static char path[768];
    snprintf(path, sizeof path, "%s/%s.gguf", corpus_dir, name);
    return path;
}

static const char *write_case(const char *name, const void *p, size_t n)
{
    const char *path = case_path(name);
    kt_write_file(path, p, n);
    return path;
}

/* gguf_open must fail on the file; gguf_open_memory on the same bytes must
 * fail with a message (free of the path, which would echo the case name)
 * that holds every one of `words` (NULL-terminated; none = any message). */
static void expect_reject_words(const char *name, const void *p, size_t n,
                                const char *const *words)
{
    const char *path = write_case(name, p, n);
    gguf_file *g = NULL;
    kiln_err_clear();
    if (gguf_open(path, &g) == KILN_OK) {
        gguf_close(g);
        fail_msg("%s: accepted", name);
    }
    assert_null(g);
    assert_true(kiln_last_error()[0] != '\0');
    kiln_err_clear();
    if (gguf_open_memory(n ? p : "", n, &g) == KILN_OK) {
        gguf_close(g);
        fail_msg("%s: accepted from memory", name);
    }
    const char *msg = kiln_last_error();
    if (strncmp(msg, "gguf: ", 6))
        fail_msg("%s: message '%s' lacks the 'gguf: ' prefix", name, msg);
    for (; *words; words++)
        if (!strstr(msg, *words))
            fail_msg("%s: message '%s' lacks '%s'", name, msg, *words);
}

/* As expect_reject_words with one word ("" = any message). */
static void expect_reject(const char *name, const void *p, size_t n, const char *word)
{
    const char *const words[] = {word, NULL};
    expect_reject_words(name, p, n, words);
}

/* ---- truncations ------------------------------------------------------------------ */

static void test_truncated_everywhere(void **state)
{
    gbuf b = {0};
    base_layout lay;
    char name[64];
    (void)state;
    make_base(&b, &lay);
    {   /* the untouched base file is valid */
        gguf_file *g = NULL;
        if (gguf_open_memory(b.p, b.n, &g))
            fail_msg("base file: %s", kiln_last_error());
        assert_int_equal(gguf_tensor_count(g), 2);
        gguf_close(g);
    }
    /* Wherever the cut falls (header, a key, a value, a tensor info, the
     * padding), the message says the file is truncated and gives the bytes
     * it has: "file truncated in tensor info 'q': offset needs 8 bytes at
     * offset 300, file is 304 bytes", "header counts are impossible: ... do
     * not fit in the 40 bytes left (truncated or corrupt)", ... */
    const char *const cut_words[] = {"truncated", "bytes", NULL};
    for (size_t len = 0; len < lay.data_off; len++) {
        snprintf(name, sizeof name, "trunc_%04zu", len);
        expect_reject_words(name, b.p, len, cut_words);
    }
    const char *const data_words[] = {"past the end", "truncated", "bytes", NULL};
    const size_t in_data[] = {1, 2, 33, 63, 64, 65, 97};
    for (size_t k = 0; k < sizeof in_data / sizeof in_data[0]; k++) {
        snprintf(name, sizeof name, "trunc_data_%03zu", in_data[k]);
        expect_reject_words(name, b.p, lay.data_off + in_data[k], data_words);
    }
    kiln_free(b.p);
}

/* ---- named cases -------------------------------------------------------------------- */

typedef void (*case_fn)(gbuf *b);

static void c_bad_magic(gbuf *b) { make_base(b, &(base_layout){0}); memcpy(b->p, "GGUG", 4); }
static void c_version1(gbuf *b) { make_base(b, &(base_layout){0}); b->p[4] = 1; }
static void c_version99(gbuf *b) { make_base(b, &(base_layout){0}); b->p[4] = 99; }
static void c_big_endian(gbuf *b) { make_base(b, &(base_layout){0}); b->p[4] = 0; b->p[7] = 3; }
static void c_empty(gbuf *b) { (void)b; }
static void c_kv_count_huge(gbuf *b) { header(b, 3, 0, 1ull << 62); kv_u32(b, "a", 1); }
static void c_tensor_count_huge(gbuf *b) { header(b, 3, UINT64_MAX / 2, 0); zeros(b, 64); }

static void c_key_len_huge(gbuf *b)
{
    header(b, 3, 0, 1);
    put_u64(b, 1ull << 63);
    put(b, "abc", 3);
    zeros(b, 16);
}

static void c_str_len_huge(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "s");
    put_u32(b, GGUF_TYPE_STRING);
    put_u64(b, UINT64_MAX);
    put(b, "xyzw", 4);
}

static void c_array_count_huge(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "a");
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u64(b, 1ull << 61);
    zeros(b, 64);
}

static void c_str_array_count_huge(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "a");
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, GGUF_TYPE_STRING);
    put_u64(b, UINT64_MAX);
    zeros(b, 64);
}

static void c_array_nested_deep(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "deep");
    put_u32(b, GGUF_TYPE_ARRAY);
    for (int d = 0; d < 40; d++) {
        put_u32(b, GGUF_TYPE_ARRAY);
        put_u64(b, 1);
    }
    put_u32(b, GGUF_TYPE_UINT8);
    put_u64(b, 0);
}

static void c_value_type_unknown(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "weird");
    put_u32(b, 13);
    put_u32(b, 0);
}

static void c_value_type_ffff(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "weird");
    put_u32(b, 0xffffffffu);
    put_u32(b, 0);
}

static void c_array_type_unknown(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "weird");
    put_u32(b, GGUF_TYPE_ARRAY);
    put_u32(b, 77);
    put_u64(b, 1);
    put_u32(b, 0);
}

static void c_bool_invalid(gbuf *b)
{
    header(b, 3, 0, 1);
    put_str(b, "flag");
    put_u32(b, GGUF_TYPE_BOOL);
    put_u8(b, 2);
}

static void kv_key_raw(gbuf *b, const char *key, size_t len)
{
    header(b, 3, 0, 1);
    put_strn(b, key, len);
    put_u32(b, GGUF_TYPE_UINT8);
    put_u8(b, 7);
    zeros(b, 8); /* so the kv count alone is plausible */
}

static void c_key_not_utf8(gbuf *b) { kv_key_raw(b, "bad\xff\xfe", 5); }
static void c_key_overlong(gbuf *b) { kv_key_raw(b, "\xc0\x80x", 3); }
static void c_key_surrogate(gbuf *b) { kv_key_raw(b, "\xed\xa0\x80", 3); }
static void c_key_cut_utf8(gbuf *b) { kv_key_raw(b, "ab\xe4\xb8", 4); }
static void c_key_nul(gbuf *b) { kv_key_raw(b, "a\0b", 3); }
static void c_key_empty(gbuf *b) { kv_key_raw(b, "", 0); }

static void c_key_duplicate(gbuf *b)
{
    header(b, 3, 0, 3);
    kv_u32(b, "x.a", 1);
    kv_str(b, "x.b", "s");
    kv_u32(b, "x.a", 2);
}

static void c_alignment(gbuf *b, uint32_t align)
{
    header(b, 3, 1, 1);
    kv_u32(b, "general.alignment", align);
    tinfo(b, "t", 1, (uint64_t[]){4}, 0, 0);
    pad_to(b, 32);
    zeros(b, 16);
}

static void c_alignment_0(gbuf *b) { c_alignment(b, 0); }
static void c_alignment_3(gbuf *b) { c_alignment(b, 3); }
static void c_alignment_str(gbuf *b)
{
    header(b, 3, 0, 1);
    kv_str(b, "general.alignment", "32");
}

static void c_offset_misaligned(gbuf *b)
{
    make_tensors(b, 1, (const char *[]){"t"}, (uint64_t[]){8}, (uint64_t[]){4}, 64);
}

static void c_offset_past_eof(gbuf *b)
{
    make_tensors(b, 1, (const char *[]){"t"}, (uint64_t[]){4096}, (uint64_t[]){4}, 64);
}

static void c_offset_wraps(gbuf *b)
{
    make_tensors(b, 1, (const char *[]){"t"}, (uint64_t[]){UINT64_MAX - 31}, (uint64_t[]){4},
                 64);
}

static void c_tensor_overlap(gbuf *b)
{
    make_tensors(b, 2, (const char *[]){"a", "b"}, (uint64_t[]){0, 32}, (uint64_t[]){16, 4},
                 128);
}

static void c_tensor_duplicate(gbuf *b)
{
    make_tensors(b, 2, (const char *[]){"a", "a"}, (uint64_t[]){0, 32}, (uint64_t[]){4, 4}, 64);
}

static void tensor_raw(gbuf *b, const char *name, size_t name_len, uint32_t n_dims,
                       const uint64_t *ne, uint32_t type)
{
    header(b, 3, 1, 0);
    put_strn(b, name, name_len);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims && d < 8; d++)
        put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, 0);
    pad_to(b, 32);
    zeros(b, 256);
}

static void c_tname_not_utf8(gbuf *b) { tensor_raw(b, "w\x80", 2, 1, (uint64_t[]){4}, 0); }
static void c_tname_empty(gbuf *b) { tensor_raw(b, "", 0, 1, (uint64_t[]){4}, 0); }
static void c_ndims_1000(gbuf *b) { tensor_raw(b, "t", 1, 1000, (uint64_t[8]){4}, 0); }
static void c_ndims_5(gbuf *b) { tensor_raw(b, "t", 1, 5, (uint64_t[]){1, 1, 1, 1, 1}, 0); }
static void c_dim_zero(gbuf *b) { tensor_raw(b, "t", 1, 2, (uint64_t[]){4, 0}, 0); }
static void c_dim_negative(gbuf *b) { tensor_raw(b, "t", 1, 1, (uint64_t[]){1ull << 63}, 0); }
static void c_type_unknown(gbuf *b) { tensor_raw(b, "t", 1, 1, (uint64_t[]){4}, 99); }
static void c_type_removed(gbuf *b) { tensor_raw(b, "t", 1, 1, (uint64_t[]){32}, 4); }
static void c_type_not_ggml(gbuf *b) { tensor_raw(b, "t", 1, 1, (uint64_t[]){4}, 64); }
static void c_block_partial(gbuf *b) { tensor_raw(b, "t", 1, 2, (uint64_t[]){100, 2}, 12); }

static void c_nelem_overflow(gbuf *b)
{
    tensor_raw(b, "t", 1, 4, (uint64_t[]){1ull << 32, 1ull << 32, 1ull << 32, 1}, 0);
}

/* n_elements fits int64, n_elements * 4 bytes does not. */
static void c_nbytes_overflow(gbuf *b)
{
    tensor_raw(b, "t", 1, 2, (uint64_t[]){1ull << 31, 1ull << 31}, 0);
}
static void c_nbytes_overflow_f64(gbuf *b)
{
    tensor_raw(b, "t", 1, 2, (uint64_t[]){1ull << 40, 1ull << 22}, 28);
}

static const struct named_case {
    const char *name;
    case_fn make;
    const char *word;
} named_cases[] = {
    {"bad_magic", c_bad_magic, "magic"},
    {"version_1", c_version1, "version 1"},
    {"version_99", c_version99, "version 99"},
    {"big_endian", c_big_endian, "big-endian"},
    {"empty_file", c_empty, "truncated"},
    {"kv_count_2_62", c_kv_count_huge, "count"},
    {"tensor_count_huge", c_tensor_count_huge, "count"},
    {"key_length_2_63", c_key_len_huge, "length"},
    {"string_length_max", c_str_len_huge, "length"},
    {"array_count_huge", c_array_count_huge, "count"},
    {"string_array_count_huge", c_str_array_count_huge, "count"},
    {"array_nested_deep", c_array_nested_deep, "nested"},
    {"value_type_13", c_value_type_unknown, "unknown value type 13"},
    {"value_type_ffffffff", c_value_type_ffff, "unknown value type"},
    {"array_type_77", c_array_type_unknown, "unknown array element type 77"},
    {"bool_2", c_bool_invalid, "bool"},
    {"key_not_utf8", c_key_not_utf8, "UTF-8"},
    {"key_overlong_utf8", c_key_overlong, "UTF-8"},
    {"key_surrogate_utf8", c_key_surrogate, "UTF-8"},
    {"key_cut_utf8", c_key_cut_utf8, "UTF-8"},
    {"key_nul", c_key_nul, "NUL"},
    {"key_empty", c_key_empty, "empty key"},
    {"key_duplicate", c_key_duplicate, "duplicate key 'x.a'"},
    {"alignment_0", c_alignment_0, "alignment"},
    {"alignment_3", c_alignment_3, "alignment"},
    {"alignment_string", c_alignment_str, "alignment"},
    {"offset_misaligned", c_offset_misaligned, "not aligned"},
    {"offset_past_eof", c_offset_past_eof, "past the end"},
    {"offset_wraps", c_offset_wraps, "past the end"},
    {"tensor_overlap", c_tensor_overlap, "overlap"},
    {"tensor_duplicate", c_tensor_duplicate, "duplicate tensor name 'a'"},
    {"tensor_name_not_utf8", c_tname_not_utf8, "UTF-8"},
    {"tensor_name_empty", c_tname_empty, "empty tensor name"},
    {"n_dims_1000", c_ndims_1000, "1000 dimensions"},
    {"n_dims_5", c_ndims_5, "dimensions"},
    {"dim_zero", c_dim_zero, "positive"},
    {"dim_negative", c_dim_negative, "positive"},
    {"tensor_type_99", c_type_unknown, "unknown tensor type 99"},
    {"tensor_type_4", c_type_removed, "unknown tensor type 4"},
    {"tensor_type_64", c_type_not_ggml, "unknown tensor type 64"},
    {"block_partial", c_block_partial, "block size"},
    {"n_elements_overflow", c_nelem_overflow, "overflows"},
    {"n_bytes_overflow", c_nbytes_overflow, "overflows"},
    {"n_bytes_overflow_f64", c_nbytes_overflow_f64, "overflows"},
};

static void test_named_cases(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof named_cases / sizeof named_cases[0]; k++) {
        gbuf b = {0};
        named_cases[k].make(&b);
        expect_reject(named_cases[k].name, b.p, b.n, named_cases[k].word);
        kiln_free(b.p);
    }
}

/* The messages name the key or tensor concerned. */
static void test_messages_name_items(void **state)
{
    static const struct {
        case_fn make;
        kiln_status st; /* 0: any error */
        const char *needle;
    } cases[] = {
        {c_bool_invalid, 0, "'flag'"},
        {c_offset_past_eof, 0, "tensor 't'"},
        {c_block_partial, KILN_ERR_FORMAT, "Q4_K"},
    };
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        gbuf b = {0};
        gguf_file *g = NULL;
        cases[k].make(&b);
        kiln_status st = gguf_open_memory(b.p, b.n, &g);
        if (cases[k].st)
            assert_int_equal(st, cases[k].st);
        else
            assert_int_not_equal(st, KILN_OK);
        assert_non_null(strstr(kiln_last_error(), cases[k].needle));
        kiln_free(b.p);
    }
}

/* ---- the CLI ----------------------------------------------------------------------- */

/* `kiln info path` exits 1 (not killed) with the GGUF reader's message
 * ("kiln: PATH: gguf: ...", holding `word`) on stderr; `what` names the case
 * in failures. */
static void expect_cli_reject(const char *path, const char *what, const char *word)
{
    char *err;
    int rc = kt_kiln(NULL, &err, "info", path, NULL);
    if (rc != 1 || strncmp(err, "kiln: ", 6) || !strstr(err, "gguf: ") || !strstr(err, word))
        fail_msg("kiln info %s: exit %d, stderr '%s' (want 'gguf: ' and '%s')", what, rc, err,
                 word);
    free(err);
}

static void test_cli_rejects(void **state)
{
    char what[64];
    test_named_cases(state); /* make sure the files exist */
    for (size_t k = 0; k < sizeof named_cases / sizeof named_cases[0]; k++)
        expect_cli_reject(case_path(named_cases[k].name), named_cases[k].name,
                          named_cases[k].word);
    gbuf b = {0};
    base_layout lay;
    make_base(&b, &lay);
    for (size_t len = 0; len < lay.data_off; len += lay.data_off / 20 + 1) {
        snprintf(what, sizeof what, "(truncated at %zu)", len);
        expect_cli_reject(write_case("cli_trunc", b.p, len), what, "truncated");
    }
    kiln_free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_messages_name_items),
        cmocka_unit_test(test_cli_rejects),
    };
    return cmocka_run_group_tests(tests, setup_dir, NULL);
}

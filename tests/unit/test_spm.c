/* test_spm.c - SentencePiece-style tokenizers: the .model protobuf reader,
 * malformed inputs, parity with the `sentencepiece` library (live, through
 * tests/ref/spm_ref.py) on the shared corpus and on trained models, and
 * parity with llama.cpp goldens for the Gemma 3 GGUF vocabulary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "format/gguf.h"
#include "tokenizer/spm.h"
#include "tokenizer/spm_impl.h"

#define LLAMA2_MODEL "/work/shared/testdata/llama2-tokenizer.model"

/* ---- helpers ----------------------------------------------------------------- */

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* snprintf into a path buffer; the result must fit. */
static void fmt_path(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < cap);
}

static const char *llama2_path(void)
{
    static char path[4096];
    const char *src = env_or("KILN_SOURCE_DIR", ".");
    fmt_path(path, sizeof path, "%s/../shared/testdata/llama2-tokenizer.model", src);
    return access(path, R_OK) == 0 ? path : LLAMA2_MODEL;
}

static bool read_file(const char *path, kiln_buf *out)
{
    FILE *f = fopen(path, "rb");
    char chunk[65536];
    size_t n;
    if (!f)
        return false;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(buf_append(out, chunk, n), KILN_OK);
    fclose(f);
    return true;
}

/* Split a file into lines (without the '\n'); the last empty line dropped. */
typedef struct lines {
    kiln_buf data;
    size_t n;
    size_t *start, *len;
} lines;

static bool lines_read(const char *path, lines *l)
{
    memset(l, 0, sizeof *l);
    if (!read_file(path, &l->data))
        return false;
    size_t cap = 1;
    for (size_t i = 0; i < l->data.len; i++)
        cap += l->data.data[i] == '\n';
    l->start = kiln_malloc(cap * sizeof *l->start);
    l->len = kiln_malloc(cap * sizeof *l->len);
    size_t s = 0;
    for (size_t i = 0; i <= l->data.len; i++) {
        if (i == l->data.len || l->data.data[i] == '\n') {
            if (i == l->data.len && i == s)
                break;
            l->start[l->n] = s;
            l->len[l->n++] = i - s;
            s = i + 1;
        }
    }
    return true;
}

static void lines_free(lines *l)
{
    buf_free(&l->data);
    kiln_free(l->start);
    kiln_free(l->len);
}

/* The corpus escapes: \n, \r, \\ ; everything else literal. */
static void unescape(const char *s, size_t len, kiln_buf *out)
{
    buf_clear(out);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < len && (s[i + 1] == 'n' || s[i + 1] == 'r' || s[i + 1] == '\\')) {
            c = s[i + 1] == 'n' ? '\n' : s[i + 1] == 'r' ? '\r' : '\\';
            i++;
        }
        assert_int_equal(buf_append_char(out, c), KILN_OK);
    }
}

static void parse_ids(const char *s, size_t len, kiln_ids *out)
{
    ids_clear(out);
    size_t i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ')
            i++;
        if (i >= len)
            break;
        long v = strtol(s + i, NULL, 10);
        assert_int_equal(ids_push(out, (int32_t)v), KILN_OK);
        while (i < len && s[i] != ' ')
            i++;
    }
}

static bool bufs_equal(const kiln_buf *a, const kiln_buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void print_ids(const char *label, const kiln_ids *v)
{
    fprintf(stderr, "  %s (%zu):", label, v->len);
    for (size_t i = 0; i < v->len; i++)
        fprintf(stderr, " %d", v->data[i]);
    fprintf(stderr, "\n");
}

static size_t first_diff(const kiln_ids *a, const kiln_ids *b)
{
    size_t i = 0;
    while (i < a->len && i < b->len && a->data[i] == b->data[i])
        i++;
    return i;
}

static bool ids_equal(const kiln_ids *a, const kiln_ids *b)
{
    return a->len == b->len && first_diff(a, b) == a->len;
}

static void report_ids(const char *what, size_t line, const kiln_buf *text, const kiln_ids *want,
                       const kiln_ids *got)
{
    fprintf(stderr, "%s: line %zu: ids differ at position %zu\n  text: %.*s\n", what, line + 1,
            first_diff(want, got), (int)(text->len > 300 ? 300 : text->len), text->data);
    print_ids("reference", want);
    print_ids("kiln     ", got);
}

static int run_cmd(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static const char *work_dir(void)
{
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s/spm-test", env_or("KILN_BINARY_DIR", "/tmp"));
    run_cmd("mkdir -p '%s'", dir);
    return dir;
}

/* ---- the Llama 2 model ---------------------------------------------------------- */

static void test_llama2_model(void **state)
{
    spm_tok *t = NULL;
    size_t len;
    assert_int_equal(spm_load_model_file(llama2_path(), &t), KILN_OK);
    assert_int_equal(spm_vocab_size(t), 32000);
    assert_int_equal(spm_bos_id(t), 1);
    assert_int_equal(spm_eos_id(t), 2);
    const char *p = spm_piece(t, 0, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "<unk>", 5);
    p = spm_piece(t, 259, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(p, SPM_WS SPM_WS, 6);
    p = spm_piece(t, 31999, &len);
    assert_memory_equal(p, "\xE7\xBB\x99", 3); /* 给 */
    assert_null(spm_piece(t, 32000, &len));
    assert_null(spm_piece(t, -1, &len));
    assert_true(t->score[259] == -1e9f);
    assert_true(t->score[260] == -1.0f);
    assert_true(t->score[1000] == -741.0f);
    assert_true(t->score[31999] == -31740.0f);
    assert_int_equal(spm_piece_id(t, "<0x0A>", 6), 13);
    assert_int_equal(spm_piece_id(t, "nope-nope", 9), -1);
    assert_true(spm_is_special(t, 1) && spm_is_special(t, 0) && !spm_is_special(t, 3));
    /* Identity normalization, dummy prefix, extra whitespace kept. */
    assert_null(t->norm.darts);
    assert_true(t->norm.add_dummy_prefix && !t->norm.remove_extra_ws && t->norm.escape_ws);
    assert_true(t->byte_fallback);
    spm_free(t);
}

static void encode_expect(const spm_tok *t, const char *text, bool bos, const int32_t *want,
                          size_t n)
{
    kiln_ids ids = {0};
    assert_int_equal(spm_encode(t, text, strlen(text), bos, &ids), KILN_OK);
    assert_int_equal(ids.len, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids.data[i], want[i]);
    ids_free(&ids);
}

static void test_llama2_cases(void **state)
{
    spm_tok *t = NULL;
    assert_int_equal(spm_load_model_file(llama2_path(), &t), KILN_OK);
    encode_expect(t, "", false, NULL, 0);
    encode_expect(t, "", true, (int32_t[]){1}, 1);
    encode_expect(t, " ", false, (int32_t[]){259}, 1);
    encode_expect(t, "  a  ", false, (int32_t[]){259, 263, 259}, 3);
    encode_expect(t, "\n", false, (int32_t[]){29871, 13}, 2);
    encode_expect(t, "The quick", true, (int32_t[]){1, 450, 4996}, 3);
    kiln_buf out = {0};
    assert_int_equal(spm_decode(t, (int32_t[]){1, 450, 4996, 2}, 4, true, &out), KILN_OK);
    assert_string_equal(out.data, "The quick");
    buf_clear(&out);
    assert_int_equal(spm_decode(t, (int32_t[]){0}, 1, true, &out), KILN_OK);
    assert_string_equal(out.data, " \xE2\x81\x87 ");
    buf_clear(&out);
    assert_int_equal(spm_decode(t, (int32_t[]){1, 29871, 29871}, 3, true, &out), KILN_OK);
    assert_string_equal(out.data, " ");
    buf_clear(&out);
    /* A byte piece alone is not UTF-8: U+FFFD. */
    assert_int_equal(spm_decode(t, (int32_t[]){0xE2 + 3, 0x82 + 3}, 2, true, &out), KILN_OK);
    assert_string_equal(out.data, "\xEF\xBF\xBD\xEF\xBF\xBD");
    buf_clear(&out);
    assert_int_equal(spm_decode(t, (int32_t[]){5, 32000}, 2, true, &out), KILN_ERR_RANGE);
    assert_int_equal(out.len, 0);
    buf_free(&out);
    spm_free(t);
}

/* ---- parity with sentencepiece ---------------------------------------------------- */

/* Encode (no BOS) and decode every input of `inputs` with the model at
 * `model` and compare with spm_ref.py's output.  Returns mismatches. */
static size_t sp_parity(const char *model, const char *inputs, const char *label)
{
    char ref[4096];
    fmt_path(ref, sizeof ref, "%s/%s.ref", work_dir(), label);
    int rc = run_cmd("'%s' '%s/tests/ref/spm_ref.py' '%s' '%s' '%s'",
                     env_or("KILN_PYTHON", "python3"), env_or("KILN_SOURCE_DIR", "."), model,
                     inputs, ref);
    assert_int_equal(rc, 0);
    spm_tok *t = NULL;
    assert_int_equal(spm_load_model_file(model, &t), KILN_OK);
    lines in, want;
    assert_true(lines_read(inputs, &in));
    assert_true(lines_read(ref, &want));
    assert_int_equal(want.n, 2 * in.n);
    kiln_buf text = {0}, dec = {0}, wdec = {0};
    kiln_ids got = {0}, wids = {0};
    size_t bad = 0, bad_dec = 0;
    for (size_t i = 0; i < in.n; i++) {
        unescape(in.data.data + in.start[i], in.len[i], &text);
        ids_clear(&got);
        assert_int_equal(spm_encode(t, text.data, text.len, false, &got), KILN_OK);
        parse_ids(want.data.data + want.start[2 * i], want.len[2 * i], &wids);
        if (!ids_equal(&wids, &got) && bad++ < 10)
            report_ids(label, i, &text, &wids, &got);
        buf_clear(&dec);
        assert_int_equal(spm_decode(t, wids.data, wids.len, true, &dec), KILN_OK);
        unescape(want.data.data + want.start[2 * i + 1], want.len[2 * i + 1], &wdec);
        if (!bufs_equal(&dec, &wdec) && bad_dec++ < 10)
            fprintf(stderr, "%s: line %zu: decode differs\n  want: %.*s\n  got:  %.*s\n", label,
                    i + 1, (int)wdec.len, wdec.data, (int)dec.len, dec.data);
    }
    fprintf(stderr, "%s: %zu/%zu encodings and %zu/%zu decodings match sentencepiece\n", label,
            in.n - bad, in.n, in.n - bad_dec, in.n);
    buf_free(&text), buf_free(&dec), buf_free(&wdec);
    ids_free(&got), ids_free(&wids);
    lines_free(&in), lines_free(&want);
    spm_free(t);
    return bad + bad_dec;
}

static const char *corpus_path(void)
{
    static char path[4096];
    fmt_path(path, sizeof path, "%s/tests/data/tokenizer_corpus.txt",
             env_or("KILN_SOURCE_DIR", "."));
    return path;
}

static void test_llama2_parity(void **state)
{
    assert_int_equal(sp_parity(llama2_path(), corpus_path(), "llama2"), 0);
}

/* Models trained on the spot: charsmap (nmt_nfkc, nfkc_cf), user-defined
 * and control pieces, extra-whitespace removal, whitespace as suffix. */
static void test_trained_parity(void **state)
{
    const char *dir = work_dir();
    int rc = run_cmd("'%s' '%s/tests/ref/spm_make_models.py' '%s' '%s/models'",
                     env_or("KILN_PYTHON", "python3"), env_or("KILN_SOURCE_DIR", "."),
                     corpus_path(), dir);
    assert_int_equal(rc, 0);
    static const char *names[] = {"nfkc", "ws", "suffix"};
    char model[4096];
    for (size_t i = 0; i < KILN_ARRAY_LEN(names); i++) {
        fmt_path(model, sizeof model, "%s/models/%s.model", dir, names[i]);
        assert_int_equal(sp_parity(model, corpus_path(), names[i]), 0);
    }
    spm_tok *t = NULL;
    fmt_path(model, sizeof model, "%s/models/unigram.model", dir);
    assert_int_equal(spm_load_model_file(model, &t), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "UNIGRAM"));
    assert_null(t);
}

/* ---- hand-made models -------------------------------------------------------------- */

static void pb_varint(kiln_buf *b, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7f);
        v >>= 7;
        buf_append_char(b, (char)(c | (v ? 0x80 : 0)));
    } while (v);
}

static void pb_bytes(kiln_buf *b, uint32_t field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    buf_append(b, p, n);
}

static void pb_uint(kiln_buf *b, uint32_t field, uint64_t v)
{
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, v);
}

static void pb_piece(kiln_buf *b, const char *piece, float score, int type)
{
    kiln_buf m = {0};
    uint32_t u;
    pb_bytes(&m, 1, piece, strlen(piece));
    memcpy(&u, &score, 4);
    pb_varint(&m, 2 << 3 | 5);
    buf_append(&m, &u, 4);
    pb_uint(&m, 3, (uint64_t)type);
    pb_bytes(b, 1, m.data, m.len);
    buf_free(&m);
}

/* A small BPE model: <unk> <s> </s>, 256 byte pieces, a few merges, an
 * UNUSED piece "▁ab" (split back), a user-defined "<u>". */
static void tiny_model(kiln_buf *b, int model_type, bool remove_ws)
{
    kiln_buf ts = {0}, ns = {0};
    buf_clear(b);
    pb_piece(b, "<unk>", 0, 2);
    pb_piece(b, "<s>", 0, 3);
    pb_piece(b, "</s>", 0, 3);
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        pb_piece(b, name, 0, 6);
    }
    static const char *normal[] = {SPM_WS, "a", "b", "c", SPM_WS "a", "ab", "bc", "abc"};
    for (size_t i = 0; i < KILN_ARRAY_LEN(normal); i++)
        pb_piece(b, normal[i], -(float)i, 1);
    pb_piece(b, SPM_WS "ab", 5.0f, 5);
    pb_piece(b, "<u>", 0, 4);
    pb_uint(&ts, 3, (uint64_t)model_type);
    pb_uint(&ts, 35, 1);
    pb_uint(&ts, 43, (uint64_t)-1); /* a negative int32, 10 bytes */
    pb_bytes(b, 2, ts.data, ts.len);
    pb_bytes(&ns, 1, "identity", 8);
    pb_uint(&ns, 4, remove_ws);
    pb_bytes(b, 3, ns.data, ns.len);
    buf_free(&ts);
    buf_free(&ns);
}

static void test_tiny_model_parity(void **state)
{
    kiln_buf m = {0};
    char path[4096], inputs[4096];
    const char *dir = work_dir();
    tiny_model(&m, 2, false);
    fmt_path(path, sizeof path, "%s/tiny.model", dir);
    fmt_path(inputs, sizeof inputs, "%s/tiny.txt", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(m.data, 1, m.len, f);
    fclose(f);
    f = fopen(inputs, "wb");
    assert_non_null(f);
    fputs("ab\nabc abc\n  abab<u>ab<u>\nxyz ab\n\xC3\xA9t\xC3\xA9 \\n abcab\n<s>a</s>\n"
          "\xff\xfe ab\xe2\x82\n \n", f);
    fclose(f);
    assert_int_equal(sp_parity(path, inputs, "tiny"), 0);
    spm_tok *t = NULL;
    tiny_model(&m, 1, false);
    assert_int_equal(spm_load_model_bytes(m.data, m.len, &t), KILN_ERR_UNSUPPORTED);
    tiny_model(&m, 3, false);
    assert_int_equal(spm_load_model_bytes(m.data, m.len, &t), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "WORD"));
    buf_free(&m);
}

/* ---- malformed input ------------------------------------------------------------------ */

static void load_any(const void *p, size_t n)
{
    spm_tok *t = NULL;
    kiln_status st = spm_load_model_bytes(p, n, &t);
    if (st == KILN_OK) {
        kiln_ids ids = {0};
        kiln_buf out = {0};
        assert_int_equal(spm_encode(t, "Hello w\xC3\xB6rld  \xff ab", 18, true, &ids), KILN_OK);
        assert_int_equal(spm_decode(t, ids.data, ids.len, false, &out), KILN_OK);
        ids_free(&ids);
        buf_free(&out);
        spm_free(t);
    } else {
        assert_null(t);
        assert_true(strlen(kiln_last_error()) > 0);
    }
}

static void test_malformed(void **state)
{
    kiln_buf m = {0}, big = {0};
    tiny_model(&m, 2, true);
    /* Truncated at every byte. */
    for (size_t n = 0; n <= m.len; n++)
        load_any(m.data, n);
    assert_true(read_file(llama2_path(), &big));
    for (size_t n = 0; n < 3000; n++)
        load_any(big.data, n);
    for (size_t k = 0; k < 300; k++)
        load_any(big.data, (size_t)rand() % big.len);
    /* Huge lengths, bad wire types, overlong varints, field 0. */
    static const uint8_t bad[][12] = {
        {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f},
        {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
        {0x0b, 0x00}, {0x0c}, {0x0e, 0x00}, {0x0f, 0x00},
        {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
        {0x00, 0x00}, {0x0d, 0x00, 0x00}, {0x09, 0x00, 0x00, 0x00},
        {0x0a, 0x03, 0x0a, 0x05, 0x41},
    };
    for (size_t i = 0; i < KILN_ARRAY_LEN(bad); i++) {
        spm_tok *t = NULL;
        assert_int_not_equal(spm_load_model_bytes(bad[i], sizeof bad[i], &t), KILN_OK);
        assert_null(t);
    }
    /* Random byte corruption of a valid model. */
    srand(7);
    for (int k = 0; k < 3000; k++) {
        kiln_buf c = {0};
        buf_append(&c, m.data, m.len);
        for (int j = 0; j < 1 + k % 4; j++)
            c.data[(size_t)rand() % c.len] = (char)rand();
        load_any(c.data, c.len);
        buf_free(&c);
    }
    buf_free(&m);
    buf_free(&big);
}

static void test_oom(void **state)
{
    kiln_buf m = {0};
    tiny_model(&m, 2, false);
    for (int64_t n = 0; n < 400; n++) {
        spm_tok *t = NULL;
        kiln_ids ids = {0};
        kiln_alloc_fail_after(n);
        kiln_status st = spm_load_model_bytes(m.data, m.len, &t);
        if (st == KILN_OK)
            st = spm_encode(t, "abc abc \xff", 9, true, &ids);
        kiln_alloc_fail_after(-1);
        assert_true(st == KILN_OK || st == KILN_ERR_OOM);
        ids_free(&ids);
        spm_free(t);
    }
    buf_free(&m);
}

/* ---- Gemma 3 GGUF vs llama.cpp goldens ------------------------------------------------- */

static bool gemma_path(char *path, size_t cap)
{
    snprintf(path, cap, "%s/gemma-3-270m-q4_k_m.gguf",
             env_or("KILN_MODELS_DIR", "models"));
    return access(path, R_OK) == 0;
}

static void golden_path(char *path, size_t cap, const char *file)
{
    snprintf(path, cap, "%s/tests/golden/spm_gemma3/%s", env_or("KILN_SOURCE_DIR", "."), file);
}

static void compare_decoded(const spm_tok *t, const kiln_ids *ids, bool skip, const lines *want,
                            size_t i, size_t *bad)
{
    kiln_buf dec = {0}, wdec = {0};
    assert_int_equal(spm_decode(t, ids->data, ids->len, skip, &dec), KILN_OK);
    unescape(want->data.data + want->start[i], want->len[i], &wdec);
    if (!bufs_equal(&dec, &wdec) && (*bad)++ < 10)
        fprintf(stderr, "gemma3: line %zu: decode(skip_special=%d) differs\n  want: %.*s\n"
                "  got:  %.*s\n", i + 1, skip, (int)wdec.len, wdec.data, (int)dec.len, dec.data);
    buf_free(&dec);
    buf_free(&wdec);
}

static void test_gemma3_golden(void **state)
{
    char path[4096], golden[4096];
    gguf_file *g = NULL;
    spm_tok *t = NULL;
    lines in, want, dec, dec_sp;
    golden_path(golden, sizeof golden, "ids.txt");
    if (!gemma_path(path, sizeof path) || access(golden, R_OK) != 0)
        skip();
    assert_int_equal(gguf_open(path, &g), KILN_OK);
    assert_int_equal(spm_from_gguf(g, &t), KILN_OK);
    gguf_close(g);
    assert_int_equal(spm_vocab_size(t), 262144);
    assert_int_equal(spm_bos_id(t), 2);
    assert_int_equal(spm_eos_id(t), 1);
    golden_path(path, sizeof path, "inputs.txt");
    assert_true(lines_read(path, &in));
    golden_path(path, sizeof path, "ids.txt");
    assert_true(lines_read(path, &want));
    golden_path(path, sizeof path, "decoded.txt");
    assert_true(lines_read(path, &dec));
    golden_path(path, sizeof path, "decoded_special.txt");
    assert_true(lines_read(path, &dec_sp));
    assert_int_equal(want.n, in.n);
    kiln_buf text = {0};
    kiln_ids got = {0}, wids = {0};
    size_t bad = 0, bad_dec = 0;
    for (size_t i = 0; i < in.n; i++) {
        unescape(in.data.data + in.start[i], in.len[i], &text);
        ids_clear(&got);
        assert_int_equal(spm_encode(t, text.data, text.len, true, &got), KILN_OK);
        parse_ids(want.data.data + want.start[i], want.len[i], &wids);
        if (!ids_equal(&wids, &got) && bad++ < 10)
            report_ids("gemma3", i, &text, &wids, &got);
        compare_decoded(t, &wids, true, &dec, i, &bad_dec);
        compare_decoded(t, &wids, false, &dec_sp, i, &bad_dec);
    }
    fprintf(stderr, "gemma3: %zu/%zu encodings match llama.cpp, %zu decode mismatches\n",
            in.n - bad, in.n, bad_dec);
    assert_int_equal(bad, 0);
    assert_int_equal(bad_dec, 0);
    buf_free(&text);
    ids_free(&got), ids_free(&wids);
    lines_free(&in), lines_free(&want), lines_free(&dec), lines_free(&dec_sp);
    spm_free(t);
}

static void test_gguf_errors(void **state)
{
    char path[4096];
    gguf_file *g = NULL;
    spm_tok *t = NULL;
    if (!gemma_path(path, sizeof path))
        skip();
    assert_int_equal(gguf_open(path, &g), KILN_OK);
    assert_int_equal(spm_from_gguf(g, &t), KILN_OK);
    kiln_ids ids = {0};
    kiln_buf out = {0};
    /* Special tokens in text, add_space_prefix false in this file. */
    const char *s = "<start_of_turn>user\nHi<end_of_turn>";
    assert_int_equal(spm_encode(t, s, strlen(s), true, &ids), KILN_OK);
    assert_true(ids.len >= 4);
    assert_int_equal(ids.data[0], 2);
    assert_int_equal(ids.data[1], 105);
    assert_int_equal(ids.data[ids.len - 1], 106);
    assert_int_equal(spm_decode(t, ids.data, ids.len, false, &out), KILN_OK);
    assert_string_equal(out.data, "<bos><start_of_turn>user\nHi<end_of_turn>");
    buf_clear(&out);
    assert_int_equal(spm_decode(t, ids.data, ids.len, true, &out), KILN_OK);
    assert_string_equal(out.data, "user\nHi");
    ids_free(&ids);
    buf_free(&out);
    spm_free(t);
    gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_model),
        cmocka_unit_test(test_llama2_cases),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_tiny_model_parity),
        cmocka_unit_test(test_llama2_parity),
        cmocka_unit_test(test_trained_parity),
        cmocka_unit_test(test_gguf_errors),
        cmocka_unit_test(test_gemma3_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

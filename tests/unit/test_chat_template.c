/* test_chat_template.c - the Jinja interpreter against transformers' goldens
 * (tests/golden/chat/, made by tests/golden/make_chat_goldens.py), plus error
 * paths and limits. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/alloc.h"
#include "tokenizer/chat_template.h"

/* ---- helpers ---------------------------------------------------------------- */

static char *path_join(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("KILN_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[n] = '\0';
        *len = (size_t)n;
    }
    return s;
}

static json_t *load_json(const char *rel)
{
    json_error_t e;
    json_t *j = json_load_file(path_join(rel), 0, &e);
    if (!j)
        fprintf(stderr, "%s: %s (line %d)\n", rel, e.text, e.line);
    return j;
}

static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 0x20)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
}

/* Print where got and want first differ, with some context. */
static void report_diff(const char *tpl, const char *cse, const char *got, size_t gn, const char *want, size_t wn)
{
    size_t i = 0;
    while (i < gn && i < wn && got[i] == want[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "MISMATCH %s / %s at byte %zu (got %zu bytes, want %zu)\n  got:  ...", tpl, cse, i, gn, wn);
    print_escaped(got + from, (gn < i + 40 ? gn : i + 40) - from);
    fprintf(stderr, "\n  want: ...");
    print_escaped(want + from, (wn < i + 40 ? wn : i + 40) - from);
    fprintf(stderr, "\n");
}

/* Render src with ctx; returns status, text in *out (caller frees). */
static kiln_status render_str(const char *src, json_t *ctx, kiln_buf *out)
{
    ctpl *t;
    kiln_status st = ctpl_compile(src, strlen(src), &t);
    if (st)
        return st;
    st = ctpl_render(t, ctx, out);
    ctpl_free(t);
    return st;
}

/* Check one case against its golden: text or an expected failure.  Returns
 * true when it matches. */
static bool check_case(const char *tpl, const char *cse, kiln_status st, const kiln_buf *out, json_t *golden)
{
    json_t *expected = json_object_get(golden, "expected");
    json_t *err = json_object_get(golden, "error");
    if (err) {
        const char *type = json_string_value(json_object_get(err, "type"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        if (st == KILN_OK) {
            fprintf(stderr, "MISMATCH %s / %s: rendered, but transformers raised %s: %s\n", tpl, cse, type, msg);
            return false;
        }
        if (!strcmp(type, "TemplateError") && (st != KILN_ERR_INVALID_ARG || strcmp(kiln_last_error(), msg))) {
            fprintf(stderr, "MISMATCH %s / %s: want raise_exception '%s', got %s '%s'\n", tpl, cse, msg,
                    kiln_status_str(st), kiln_last_error());
            return false;
        }
        return true;
    }
    if (st != KILN_OK) {
        fprintf(stderr, "MISMATCH %s / %s: failed (%s: %s)\n", tpl, cse, kiln_status_str(st), kiln_last_error());
        return false;
    }
    const char *want = json_string_value(expected);
    size_t wn = json_string_length(expected);
    if (out->len != wn || (wn && memcmp(out->data, want, wn))) {
        report_diff(tpl, cse, out->data ? out->data : "", out->len, want, wn);
        return false;
    }
    return true;
}

/* ---- goldens: real templates over the conversations --------------------------------- */

static json_t *case_context(json_t *conv, json_t *golden_doc, json_t *c)
{
    json_t *ctx = json_object();
    json_object_set(ctx, "messages", json_object_get(conv, "messages"));
    if (json_object_get(conv, "tools"))
        json_object_set(ctx, "tools", json_object_get(conv, "tools"));
    json_object_set(ctx, "add_generation_prompt", json_object_get(c, "add_generation_prompt"));
    json_object_update(ctx, json_object_get(conv, "kwargs"));
    json_object_update(ctx, json_object_get(golden_doc, "special_tokens"));
    return ctx;
}

static int run_template_goldens(const char *name, json_t *convs, int *total)
{
    char rel[512];
    size_t len;
    snprintf(rel, sizeof rel, "tests/golden/chat/%s.json", name);
    json_t *doc = load_json(rel);
    snprintf(rel, sizeof rel, "tests/data/chat_templates/%s.jinja", name);
    char *src = slurp(path_join(rel), &len);
    assert_non_null(doc);
    assert_non_null(src);
    ctpl *t;
    kiln_status st = ctpl_compile(src, len, &t);
    if (st)
        fprintf(stderr, "%s: compile failed: %s\n", name, kiln_last_error());
    assert_int_equal(st, KILN_OK);
    int matched = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c) {
        json_t *conv = json_array_get(convs, (size_t)json_integer_value(json_object_get(c, "conversation")));
        json_t *ctx = case_context(conv, doc, c);
        kiln_buf out = {0};
        char cse[128];
        snprintf(cse, sizeof cse, "%s agp=%d", json_string_value(json_object_get(c, "name")),
                 json_is_true(json_object_get(c, "add_generation_prompt")));
        st = ctpl_render(t, ctx, &out);
        matched += check_case(name, cse, st, &out, c);
        (*total)++;
        buf_free(&out);
        json_decref(ctx);
    }
    fprintf(stderr, "golden %-28s %d/%zu\n", name, matched, json_array_size(json_object_get(doc, "cases")));
    ctpl_free(t);
    free(src);
    json_decref(doc);
    return matched;
}

static void test_goldens(void **state)
{
    json_t *convs = load_json("tests/data/chat_conversations.json");
    DIR *d = opendir(path_join("tests/golden/chat"));
    assert_non_null(convs);
    assert_non_null(d);
    struct dirent *e;
    int matched = 0, total = 0, files = 0;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") || !strcmp(e->d_name, "constructs.json"))
            continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(n - 5), e->d_name);
        matched += run_template_goldens(name, convs, &total);
        files++;
    }
    closedir(d);
    json_decref(convs);
    fprintf(stderr, "golden templates: %d files, %d/%d cases match\n", files, matched, total);
    assert_true(files >= 10);
    assert_int_equal(matched, total);
}

/* ---- goldens: one construct per case ------------------------------------------------ */

static void test_constructs(void **state)
{
    json_t *inputs = load_json("tests/data/chat_template_cases.json");
    json_t *doc = load_json("tests/golden/chat/constructs.json");
    assert_non_null(inputs);
    assert_non_null(doc);
    json_t *cases = json_object_get(doc, "cases");
    assert_int_equal(json_array_size(cases), json_array_size(inputs));
    int matched = 0;
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        json_t *in = json_array_get(inputs, i);
        const char *name = json_string_value(json_object_get(in, "name"));
        kiln_buf out = {0};
        kiln_status st = render_str(json_string_value(json_object_get(in, "template")),
                                    json_object_get(in, "context"), &out);
        matched += check_case("construct", name, st, &out, json_array_get(cases, i));
        buf_free(&out);
    }
    fprintf(stderr, "constructs: %d/%zu match\n", matched, json_array_size(inputs));
    assert_int_equal((size_t)matched, json_array_size(inputs));
    json_decref(inputs);
    json_decref(doc);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void expect_compile_error(const char *src, kiln_status want, const char *needle1, const char *needle2)
{
    ctpl *t = (ctpl *)1;
    kiln_status st = ctpl_compile(src, strlen(src), &t);
    if (st != want || !strstr(kiln_last_error(), needle1) || (needle2 && !strstr(kiln_last_error(), needle2)))
        fprintf(stderr, "compile '%s': got %s '%s'\n", src, kiln_status_str(st), kiln_last_error());
    assert_int_equal(st, want);
    assert_null(t);
    assert_non_null(strstr(kiln_last_error(), needle1));
    if (needle2)
        assert_non_null(strstr(kiln_last_error(), needle2));
}

static void test_compile_errors(void **state)
{
    expect_compile_error("a\n{{ x | frobnicate }}", KILN_ERR_UNSUPPORTED, "frobnicate", "line 2");
    expect_compile_error("\n\n{% if x is frob %}{% endif %}", KILN_ERR_UNSUPPORTED, "frob", "line 3");
    expect_compile_error("{% include 'x.jinja' %}", KILN_ERR_UNSUPPORTED, "include", "line 1");
    expect_compile_error("{% raw %}x{% endraw %}", KILN_ERR_UNSUPPORTED, "raw", "line 1");
    expect_compile_error("{% for x in y recursive %}{% endfor %}", KILN_ERR_UNSUPPORTED, "recursive", NULL);
    expect_compile_error("a\nb\n{% if x %}", KILN_ERR_FORMAT, "endif", "line 3");
    expect_compile_error("\n{{ 1 + }}", KILN_ERR_FORMAT, "line 2", NULL);
    expect_compile_error("{{ 'abc }}", KILN_ERR_FORMAT, "unterminated", NULL);
    expect_compile_error("{{ x", KILN_ERR_FORMAT, "expected '}}'", NULL);
    expect_compile_error("{# never closed", KILN_ERR_FORMAT, "comment", NULL);
    expect_compile_error("{% endfor %}", KILN_ERR_FORMAT, "endfor", NULL);
    expect_compile_error("{% break %}", KILN_ERR_FORMAT, "outside of a loop", NULL);
    expect_compile_error("{{ (1 }}", KILN_ERR_FORMAT, "line 1", NULL);
    expect_compile_error("{{ 1 ] }}", KILN_ERR_FORMAT, "']'", NULL);
    expect_compile_error("{% macro m(a=1, b) %}{% endmacro %}", KILN_ERR_FORMAT, "non-default", NULL);
    expect_compile_error("{{ f(*args) }}", KILN_ERR_UNSUPPORTED, "*args", NULL);
}

static void expect_render_error(const char *src, const char *ctx_json, kiln_status want, const char *needle)
{
    json_t *ctx = ctx_json ? json_loads(ctx_json, 0, NULL) : NULL;
    kiln_buf out = {0};
    buf_append_str(&out, "keep");
    kiln_status st = render_str(src, ctx, &out);
    if (st != want || !strstr(kiln_last_error(), needle))
        fprintf(stderr, "render '%.60s': got %s '%s'\n", src, kiln_status_str(st), kiln_last_error());
    assert_int_equal(st, want);
    assert_non_null(strstr(kiln_last_error(), needle));
    assert_string_equal(out.data, "keep"); /* a failed render appends nothing */
    buf_free(&out);
    json_decref(ctx);
}

static void test_render_errors(void **state)
{
    expect_render_error("a{{ raise_exception('Roles must alternate') }}", NULL, KILN_ERR_INVALID_ARG,
                        "Roles must alternate");
    expect_render_error("\n\n{{ x.y }}", NULL, KILN_ERR_FORMAT, "line 3");
    expect_render_error("{{ 'a' + 1 }}", NULL, KILN_ERR_FORMAT, "unsupported operand");
    expect_render_error("{{ 'x'.format(1) }}", NULL, KILN_ERR_UNSUPPORTED, "format");
    expect_render_error("{{ '%s' % 1 }}", NULL, KILN_ERR_UNSUPPORTED, "formatting");
    expect_render_error("{{ lipsum() }}", NULL, KILN_ERR_UNSUPPORTED, "lipsum");
    /* A test (`is ...`) that fails: the error, and (under UBSan) no read of
     * a result it never wrote. */
    expect_render_error("{{ 'AB' is even }}", NULL, KILN_ERR_FORMAT, "needs a number");
    expect_render_error("{{ 9 is divisibleby 0 }}", NULL, KILN_ERR_FORMAT, "by zero");
    expect_render_error("{{ 1 is eq }}", NULL, KILN_ERR_FORMAT, "takes one argument");
}

static void test_limits(void **state)
{
    /* Recursion without end hits the macro call depth. */
    expect_render_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, KILN_ERR_RANGE, "nested");
    /* Output cap: 100000 * 1000 bytes. */
    expect_render_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", NULL, KILN_ERR_RANGE, "output");
    /* Step cap: 10^10 iterations. */
    expect_render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL,
                        KILN_ERR_RANGE, "steps");
    expect_render_error("{{ range(1000000)|length }}", NULL, KILN_ERR_RANGE, "range");
    expect_render_error("{{ 2 ** 64 }}", NULL, KILN_ERR_RANGE, "overflow");
    /* Compile-time nesting. */
    char deep[4096];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++)
        deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    expect_compile_error(deep, KILN_ERR_FORMAT, "nested", NULL);
    char chain[20000];
    k = (size_t)snprintf(chain, sizeof chain, "{{ 1");
    for (int i = 0; i < 2000; i++)
        k += (size_t)snprintf(chain + k, sizeof chain - k, " + 1");
    snprintf(chain + k, sizeof chain - k, " }}");
    expect_compile_error(chain, KILN_ERR_RANGE, "nested", NULL);
}

static void test_strftime_now(void **state)
{
    char want[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(want, sizeof want, "%d %b %Y", &tm);
    kiln_buf out = {0};
    assert_int_equal(render_str("{{ strftime_now('%d %b %Y') }}", NULL, &out), KILN_OK);
    assert_string_equal(out.data, want);
    buf_free(&out);
}

static void test_context_defaults(void **state)
{
    kiln_buf out = {0};
    json_t *ctx = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", "hi");
    assert_int_equal(render_str("{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }}"
                                "{{ bos_token is defined }}{{ messages[0].content }}",
                                ctx, &out),
                     KILN_OK);
    assert_string_equal(out.data, "TrueTrueFalseFalsehi");
    buf_free(&out);
    json_decref(ctx);
    /* A compiled template renders many times, and appends. */
    ctpl *t;
    assert_int_equal(ctpl_compile("{{ n }}", 7, &t), KILN_OK);
    for (int i = 0; i < 3; i++) {
        json_t *c = json_pack("{s:i}", "n", i);
        assert_int_equal(ctpl_render(t, c, &out), KILN_OK);
        json_decref(c);
    }
    assert_string_equal(out.data, "012");
    ctpl_free(t);
    ctpl_free(NULL);
    buf_free(&out);
    assert_int_equal(ctpl_render(NULL, NULL, &out), KILN_ERR_INVALID_ARG);
    json_t *arr = json_array();
    assert_int_equal(render_str("x", arr, &out), KILN_ERR_INVALID_ARG);
    json_decref(arr);
}

/* Every allocation failure on the way is an ordinary KILN_ERR_OOM. */
static void test_out_of_memory(void **state)
{
    size_t len;
    char *src = slurp(path_join("tests/data/chat_templates/qwen3-0.6b.jinja"), &len);
    json_t *convs = load_json("tests/data/chat_conversations.json");
    assert_non_null(src);
    assert_non_null(convs);
    json_t *ctx = json_object();
    json_object_set(ctx, "messages", json_object_get(json_array_get(convs, 7), "messages"));
    json_object_set(ctx, "tools", json_object_get(json_array_get(convs, 7), "tools"));
    int ok = 0;
    for (int64_t n = 0; n < 400; n++) {
        ctpl *t = NULL;
        kiln_buf out = {0};
        kiln_alloc_fail_after(n);
        kiln_status st = ctpl_compile(src, len, &t);
        if (!st)
            st = ctpl_render(t, ctx, &out);
        kiln_alloc_fail_after(-1);
        assert_true(st == KILN_OK || st == KILN_ERR_OOM);
        ok += st == KILN_OK;
        ctpl_free(t);
        buf_free(&out);
    }
    assert_true(ok > 0);
    json_decref(ctx);
    json_decref(convs);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_constructs),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_strftime_now),
        cmocka_unit_test(test_context_defaults),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

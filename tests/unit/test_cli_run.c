/*
 * test_cli_run.c - `kiln run` and `kiln embed` run as a user runs them, on
 * the tiny random-weight models of tests/golden/models/ and their
 * tokenizers (tests/golden/make_golden_tokenizers.py).
 *
 * run: tests/golden/cli_run.json holds, per decoder, the golden prompts
 * (golden.json, from transformers) whose text the model's tokenizer encodes
 * back to the golden's ids, with `expected`, the reference tokenizer's
 * decoding of the first greedy tokens transformers generated.  For each:
 * kiln's tokenizer encodes the prompt text to the golden ids (so the run
 * starts from the golden prompt), and `kiln run --device cpu -p TEXT -n N
 * --ignore-eos` (greedy, EOS disabled as in the goldens) exits 0, prints
 * exactly `expected` on stdout, reports the prompt's and N generated
 * tokens on stderr, and prints the same text when run again.  Every decoder
 * directory must have such a case, and each also runs an English prompt.
 *
 * embed: `kiln embed --device cpu` of a two-line file on the tiny BERT
 * writes two jsonl objects in input order, each with hidden_size finite
 * floats of unit length (its modules.json ends in Normalize), and the two
 * documents get different vectors; with --data-parallel-size 3 the same
 * vectors as one engine within 1e-6 an element.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"

#include "base/buf.h"
#include "base/error.h"
#include "tokenizer/tokenizer.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

static void model_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/tests/golden/models/%s", kt_env("KILN_SOURCE_DIR"), name);
}

static json_t *load_model_json(const char *name, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/models/%s/%s", kt_env("KILN_SOURCE_DIR"), name,
             file);
    return kt_load_json(path);
}

static json_t *load_cases(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/cli_run.json", kt_env("KILN_SOURCE_DIR"));
    return kt_load_json(path);
}

/* true when the JSON array a holds exactly the ints ids[0..n). */
static bool ids_equal(json_t *a, const int32_t *ids, size_t n)
{
    if (json_array_size(a) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(a, i)) != ids[i])
            return false;
    return true;
}

/* The JSON array a as ids (owned by *out; ids_free). */
static void ids_of(json_t *a, kiln_ids *out)
{
    for (size_t i = 0; i < json_array_size(a); i++)
        assert_int_equal(ids_push(out, (int32_t)json_integer_value(json_array_get(a, i))),
                         KILN_OK);
}

static void print_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            print_error("\\x%02x", c);
        else
            print_error("%c", c);
    }
}

/* The decoder directories of tests/golden/models (a config.json whose
 * model_type is not bert), as a JSON array of names (owned). */
static json_t *decoder_dirs(void)
{
    char path[4096];
    json_t *names = json_array();
    snprintf(path, sizeof path, "%s/tests/golden/models", kt_env("KILN_SOURCE_DIR"));
    DIR *d = opendir(path);
    if (!d)
        fail_msg("cannot open %s", path);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char cfg[4400];
        if (e->d_name[0] == '.')
            continue;
        snprintf(cfg, sizeof cfg, "%s/%s/config.json", path, e->d_name);
        if (!kt_exists(cfg))
            continue;
        json_t *c = kt_load_json(cfg);
        if (strcmp(json_string_value(json_object_get(c, "model_type")), "bert") != 0)
            json_array_append_new(names, json_string(e->d_name));
        json_decref(c);
    }
    closedir(d);
    return names;
}

/* `kiln run --device cpu -m dir -p prompt -n n --ignore-eos`: exit status,
 * stdout and stderr (owned). */
static int kiln_run(const char *dir, const char *prompt, int n, char **out, char **err)
{
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    return kt_kiln(out, err, "run", "--device", "cpu", "-m", dir, "-p", prompt, "-n", num,
                   "--ignore-eos", (const char *)NULL);
}

/* stderr names n_prompt prompt tokens and n_gen generated ones. */
static void assert_counts(const char *what, const char *err, size_t n_prompt, int n_gen)
{
    char want_p[64], want_g[64];
    snprintf(want_p, sizeof want_p, "prompt %zu tokens", n_prompt);
    snprintf(want_g, sizeof want_g, "generated %d tokens", n_gen);
    if (!strstr(err, want_p) || !strstr(err, want_g))
        fail_msg("%s: want '%s' and '%s' on stderr, got: %s", what, want_p, want_g, err);
}

/* ---- kiln run against the goldens --------------------------------------------- */

/* One case of cli_run.json; fails with the first difference. */
static void check_case(json_t *c, int n_gen)
{
    const char *name = json_string_value(json_object_get(c, "model"));
    const char *prompt = json_string_value(json_object_get(c, "prompt"));
    const char *want = json_string_value(json_object_get(c, "expected"));
    size_t want_len = json_string_length(json_object_get(c, "expected"));
    size_t gi = (size_t)json_integer_value(json_object_get(c, "golden_prompt"));
    char dir[4096];
    json_t *golden = load_model_json(name, "golden.json");
    json_t *gp = json_array_get(json_object_get(golden, "prompts"), gi);
    kiln_ids ids = {0}, greedy = {0};
    kiln_buf text = {0};
    tokenizer *t = NULL;

    /* the case is the golden's: its prompt and the head of its greedy path */
    assert_non_null(gp);
    ids_of(json_object_get(gp, "ids"), &ids);
    ids_of(json_object_get(gp, "greedy"), &greedy);
    assert_true((size_t)n_gen <= greedy.len);
    if (!ids_equal(json_object_get(c, "prompt_ids"), ids.data, ids.len) ||
        !ids_equal(json_object_get(c, "greedy"), greedy.data, (size_t)n_gen))
        fail_msg("%s: cli_run.json case %zu does not hold golden.json's ids", name, gi);

    /* kiln's tokenizer turns the text into the golden prompt, and the
     * golden's greedy ids into the expected text */
    model_dir(dir, sizeof dir, name);
    if (tok_open(dir, &t))
        fail_msg("%s: %s", dir, kiln_last_error());
    kiln_ids enc = {0};
    assert_int_equal(tok_encode(t, prompt, strlen(prompt), true, &enc), KILN_OK);
    if (enc.len != ids.len || memcmp(enc.data, ids.data, ids.len * sizeof *ids.data))
        fail_msg("%s: kiln encodes the prompt of golden %zu to %zu ids, not the golden's %zu",
                 name, gi, enc.len, ids.len);
    assert_int_equal(tok_decode(t, greedy.data, (size_t)n_gen, false, &text), KILN_OK);
    if (text.len != want_len || memcmp(text.data, want, want_len))
        fail_msg("%s: kiln's tokenizer decodes the golden's greedy ids differently", name);
    ids_free(&enc);
    tok_free(t);

    /* the run prints that text, twice */
    char *out[2], *err[2];
    for (int r = 0; r < 2; r++) {
        int rc = kiln_run(dir, prompt, n_gen, &out[r], &err[r]);
        if (rc != 0)
            fail_msg("%s: kiln run exited %d: %s", name, rc, err[r]);
        assert_counts(name, err[r], ids.len, n_gen);
    }
    if (strlen(out[0]) != want_len || memcmp(out[0], want, want_len)) {
        print_error("MISMATCH %s, golden prompt %zu:\n  kiln: ", name, gi);
        print_escaped(out[0], strlen(out[0]));
        print_error("\n  want: ");
        print_escaped(want, want_len);
        print_error("\n");
        fail_msg("%s: kiln run's text is not the golden's greedy continuation", name);
    }
    assert_string_equal(out[0], out[1]);
    for (int r = 0; r < 2; r++)
        free(out[r]), free(err[r]);
    buf_free(&text);
    ids_free(&ids);
    ids_free(&greedy);
    json_decref(golden);
}

static void test_run_goldens(void **state)
{
    (void)state;
    json_t *cases = load_cases();
    int n_gen = (int)json_integer_value(json_object_get(cases, "gen_tokens"));
    json_t *list = json_object_get(cases, "cases");
    assert_true(n_gen > 0);
    assert_true(json_array_size(list) > 0);
    for (size_t i = 0; i < json_array_size(list); i++)
        check_case(json_array_get(list, i), n_gen);
    json_decref(cases);
}

/* Every decoder directory has a tokenizer with the model's vocabulary size
 * and at least one golden case. */
static void test_every_decoder_has_a_case(void **state)
{
    (void)state;
    json_t *names = decoder_dirs(), *cases = load_cases();
    json_t *list = json_object_get(cases, "cases");
    assert_true(json_array_size(names) > 0);
    for (size_t i = 0; i < json_array_size(names); i++) {
        const char *name = json_string_value(json_array_get(names, i));
        char dir[4096];
        tokenizer *t = NULL;
        bool found = false;
        json_t *cfg = load_model_json(name, "config.json");
        model_dir(dir, sizeof dir, name);
        if (tok_open(dir, &t))
            fail_msg("%s: %s", name, kiln_last_error());
        if (tok_vocab_size(t) != json_integer_value(json_object_get(cfg, "vocab_size")))
            fail_msg("%s: tokenizer has %lld tokens, config.json vocab_size %lld", name,
                     (long long)tok_vocab_size(t),
                     (long long)json_integer_value(json_object_get(cfg, "vocab_size")));
        tok_free(t);
        json_decref(cfg);
        for (size_t k = 0; k < json_array_size(list) && !found; k++)
            found = !strcmp(json_string_value(json_object_get(json_array_get(list, k), "model")),
                            name);
        if (!found)
            fail_msg("%s: no case in tests/golden/cli_run.json", name);
    }
    json_decref(cases);
    json_decref(names);
}

/* English text on every decoder: exit 0, the prompt's token count as kiln's
 * tokenizer counts it, N tokens, the same text twice. */
static void test_run_text_prompt(void **state)
{
    (void)state;
    static const char prompt[] = "The quick brown fox jumps over the lazy dog.";
    json_t *names = decoder_dirs();
    for (size_t i = 0; i < json_array_size(names); i++) {
        const char *name = json_string_value(json_array_get(names, i));
        char dir[4096], *out[2], *err[2];
        tokenizer *t = NULL;
        kiln_ids enc = {0};
        model_dir(dir, sizeof dir, name);
        if (tok_open(dir, &t))
            fail_msg("%s: %s", name, kiln_last_error());
        assert_int_equal(tok_encode(t, prompt, strlen(prompt), true, &enc), KILN_OK);
        tok_free(t);
        for (int r = 0; r < 2; r++) {
            int rc = kiln_run(dir, prompt, 8, &out[r], &err[r]);
            if (rc != 0)
                fail_msg("%s: kiln run exited %d: %s", name, rc, err[r]);
            assert_counts(name, err[r], enc.len, 8);
        }
        if (strcmp(out[0], out[1]) != 0)
            fail_msg("%s: two greedy runs printed different text", name);
        for (int r = 0; r < 2; r++)
            free(out[r]), free(err[r]);
        ids_free(&enc);
    }
    json_decref(names);
}

/* ---- kiln embed ------------------------------------------------------------------ */

static void test_embed_two_lines(void **state)
{
    (void)state;
    static const char docs[] = "The quick brown fox jumps over the lazy dog.\n"
                               "It was the best of times, it was the worst of times.\n";
    char dir[4096], tmp[4096], input[4200];
    char *out, *err;
    json_t *cfg = load_model_json("bert", "config.json");
    size_t hidden = (size_t)json_integer_value(json_object_get(cfg, "hidden_size"));
    double vec[2][4096];
    json_decref(cfg);
    assert_true(hidden > 0 && hidden <= 4096);

    model_dir(dir, sizeof dir, "bert");
    kt_mkdtemp(tmp, sizeof tmp, "cli_embed");
    snprintf(input, sizeof input, "%s/docs.txt", tmp);
    kt_write_file(input, docs, strlen(docs));
    int rc = kt_kiln(&out, &err, "embed", "--device", "cpu", "-m", dir, "--input", input,
                     (const char *)NULL);
    if (rc != 0)
        fail_msg("kiln embed exited %d: %s", rc, err);

    /* two lines, each one object: index i, hidden_size floats of norm 1 */
    size_t lines = 0;
    for (char *line = out, *nl; *line; line = nl + 1, lines++) {
        nl = strchr(line, '\n');
        if (!nl)
            fail_msg("embed output line %zu does not end in a newline", lines);
        if (lines >= 2)
            fail_msg("embed printed more than 2 lines: %s", out);
        json_error_t e;
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &e);
        if (!json_is_object(o))
            fail_msg("embed line %zu is not a JSON object: %s", lines, e.text);
        json_t *v = json_object_get(o, "embedding");
        assert_int_equal(json_integer_value(json_object_get(o, "index")), lines);
        assert_true(json_is_integer(json_object_get(o, "index")));
        if (json_array_size(v) != hidden)
            fail_msg("embed line %zu: %zu values, hidden_size is %zu", lines,
                     json_array_size(v), hidden);
        double norm = 0;
        for (size_t k = 0; k < hidden; k++) {
            json_t *x = json_array_get(v, k);
            assert_true(json_is_number(x));
            vec[lines][k] = json_number_value(x);
            assert_true(isfinite(vec[lines][k]));
            norm += vec[lines][k] * vec[lines][k];
        }
        if (fabs(sqrt(norm) - 1.0) > 1e-4)
            fail_msg("embed line %zu: norm %g, want 1 (Normalize)", lines, sqrt(norm));
        json_decref(o);
    }
    assert_int_equal(lines, 2);
    double diff = 0;
    for (size_t k = 0; k < hidden; k++)
        diff += fabs(vec[0][k] - vec[1][k]);
    assert_true(diff > 1e-3);
    free(out), free(err);
    kt_rmtree(tmp);
}

/* kiln embed's jsonl outputs a and b: the same documents in the same order,
 * vectors equal within tol an element.  Not bit for bit: a document's
 * vector is computed in another batch when the engines split the input,
 * and the sgemm (OpenBLAS) may sum a row in another order depending on
 * how many rows the call has. */
static void assert_embeddings_close(const char *a, const char *b, double tol)
{
    char *ca = strdup(a), *cb = strdup(b), *sa = NULL, *sb = NULL;
    assert_non_null(ca);
    assert_non_null(cb);
    char *la = strtok_r(ca, "\n", &sa), *lb = strtok_r(cb, "\n", &sb);
    int lines = 0;
    for (; la && lb; la = strtok_r(NULL, "\n", &sa), lb = strtok_r(NULL, "\n", &sb), lines++) {
        json_t *ja = json_loads(la, 0, NULL), *jb = json_loads(lb, 0, NULL);
        if (!ja || !jb)
            fail_msg("line %d is not JSON: %s | %s", lines, la, lb);
        assert_int_equal(json_integer_value(json_object_get(ja, "index")),
                         json_integer_value(json_object_get(jb, "index")));
        json_t *ea = json_object_get(ja, "embedding"), *eb = json_object_get(jb, "embedding");
        assert_true(json_is_array(ea) && json_is_array(eb));
        assert_int_equal(json_array_size(ea), json_array_size(eb));
        for (size_t i = 0; i < json_array_size(ea); i++) {
            double x = json_number_value(json_array_get(ea, i));
            double y = json_number_value(json_array_get(eb, i));
            if (!(fabs(x - y) <= tol))
                fail_msg("line %d element %zu: %.9g against %.9g", lines, i, x, y);
        }
        json_decref(ja);
        json_decref(jb);
    }
    assert_true(lines > 0);
    if (la || lb)
        fail_msg("the outputs have different line counts (%d lines in common)", lines);
    free(ca);
    free(cb);
}

/* --data-parallel-size: three CPU engines print the documents one engine
 * prints, in input order, with the same vectors to float rounding; bad
 * sizes are usage errors, GPUs that are not there an error that says so. */
static void test_embed_data_parallel(void **state)
{
    char dir[4096], tmp[4096], input[4200], *one = NULL, *three = NULL, *err = NULL;
    (void)state;
    model_dir(dir, sizeof dir, "bert");
    kt_mkdtemp(tmp, sizeof tmp, "cli_embed_dp");
    snprintf(input, sizeof input, "%s/docs.txt", tmp);
    FILE *f = fopen(input, "w");
    assert_non_null(f);
    for (int i = 0; i < 900; i++) {
        for (int w = 0; w <= i % 23; w++)
            fprintf(f, "%s", w % 2 ? "glaze " : "clay fires ");
        fprintf(f, "\n");
    }
    fclose(f);
    assert_int_equal(kt_kiln(&one, NULL, "embed", "--device", "cpu", "-m", dir, "--input", input,
                             (const char *)NULL), 0);
    int rc = kt_kiln(&three, &err, "embed", "--device", "cpu", "--data-parallel-size", "3", "-m",
                     dir, "--input", input, (const char *)NULL);
    if (rc != 0)
        fail_msg("kiln embed --data-parallel-size 3 exited %d: %s", rc, err);
    if (!strstr(err, "engine 2"))
        fail_msg("kiln embed --data-parallel-size 3 does not report its engines: %s", err);
    assert_embeddings_close(three, one, 1e-6);
    free(one), free(three), free(err);
    assert_int_equal(kt_kiln(NULL, NULL, "embed", "--data-parallel-size", "0", "-m", dir,
                             "--input", input, (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "embed", "--data-parallel-size", "x", "-m", dir,
                             "--input", input, (const char *)NULL), 2);
    /* more GPUs than any machine here has */
    rc = kt_kiln(NULL, &err, "embed", "--device", "cuda", "--data-parallel-size", "64", "-m", dir,
                 "--input", input, (const char *)NULL);
    assert_int_equal(rc, 1);
    if (!strstr(err, "cuda") && !strstr(err, "CUDA") && !strstr(err, "GPU"))
        fail_msg("--data-parallel-size 64 on cuda: %s", err);
    free(err);
    kt_rmtree(tmp);
}

/* --tensor-parallel-size: 2 and 4 ranks (threads, CPU backend) print what
 * one prints, greedy and sampled; sizes that do not divide the heads, or
 * out of range, fail with a message; two GPUs where there are fewer fail
 * naming them. */
static void test_run_tensor_parallel(void **state)
{
    char dir[4096], *one = NULL, *got = NULL, *err = NULL;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    for (int sampled = 0; sampled < 2; sampled++) {
        const char *temp = sampled ? "0.8" : "0";
        assert_int_equal(kt_kiln(&one, NULL, "run", "--device", "cpu", "-m", dir, "-p",
                                 "The kiln", "-n", "20", "--ignore-eos", "--temp", temp,
                                 "--seed", "5", (const char *)NULL), 0);
        for (int tp = 2; tp <= 4; tp *= 2) {
            char n[8];
            snprintf(n, sizeof n, "%d", tp);
            int rc = kt_kiln(&got, &err, "run", "--device", "cpu", "--tensor-parallel-size", n,
                             "-m", dir, "-p", "The kiln", "-n", "20", "--ignore-eos", "--temp",
                             temp, "--seed", "5", (const char *)NULL);
            if (rc != 0)
                fail_msg("kiln run --tensor-parallel-size %d exited %d: %s", tp, rc, err);
            assert_string_equal(got, one);
            free(got), free(err);
        }
        free(one);
    }
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--tensor-parallel-size", "0", "-m", dir, "-p",
                             "hi", (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--tensor-parallel-size", "17", "-m", dir, "-p",
                             "hi", (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, &err, "run", "--device", "cpu", "--tensor-parallel-size", "3",
                             "-m", dir, "-p", "hi", (const char *)NULL), 1);
    if (!strstr(err, "divide"))
        fail_msg("--tensor-parallel-size 3 over 4 heads: %s", err);
    free(err);
    /* a group of processes: the three options together */
    assert_int_equal(kt_kiln(NULL, &err, "run", "--tp-rank", "1", "-m", dir, "-p", "hi",
                             (const char *)NULL), 1);
    if (!strstr(err, "--tp-id"))
        fail_msg("--tp-rank alone: %s", err);
    free(err);
    /* (groups of CPU processes: test_cli_tp.c) an id file where none can be */
    assert_int_equal(kt_kiln(NULL, &err, "run", "--device", "cpu", "--tp-rank", "0",
                             "--tp-world", "2", "--tp-id", "/nonexistent/kiln.id", "-m", dir,
                             "-p", "hi", (const char *)NULL), 1);
    if (!strstr(err, "/nonexistent/kiln.id"))
        fail_msg("--tp-id in a missing directory: %s", err);
    free(err);
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--tp-world", "17", "-m", dir, "-p", "hi",
                             (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "chat", "--tp-world", "2", "-m", dir,
                             (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, &err, "run", "--device", "cuda", "--tensor-parallel-size", "2",
                             "-m", dir, "-p", "hi", (const char *)NULL), 1);
    /* no GPU, or fewer than two: the message says which */
    if (!strstr(err, "cuda") && !strstr(err, "CUDA") && !strstr(err, "GPU"))
        fail_msg("--tensor-parallel-size 2 on cuda: %s", err);
    free(err);
}

/* ---- device options ---------------------------------------------------------------- */

/* --device and --dtype: bad values are usage errors (exit 2); cuda where
 * there is no GPU or no CUDA backend fails with a message (exit 1), while
 * auto falls back to the CPU and gives the CPU's text; --no-cuda-graphs is
 * accepted everywhere. */
static void test_device_options(void **state)
{
    char dir[4096], *out = NULL, *err = NULL, *cpu = NULL;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--device", "tpu", "-m", dir, "-p", "hi",
                             (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--dtype", "f8", "-m", dir, "-p", "hi",
                             (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "embed", "--device", "cuda:x", "-m", dir,
                             (const char *)NULL), 2);
    assert_int_equal(kt_kiln(NULL, NULL, "run", "--gpu-memory-utilization", "0", "-m", dir,
                             "-p", "hi", (const char *)NULL), 2);

    assert_int_equal(kt_kiln(&cpu, NULL, "run", "--device", "cpu", "--no-cuda-graphs", "-m", dir,
                             "-p", "hello", "-n", "6", "--ignore-eos", (const char *)NULL), 0);
    int rc = kt_kiln(&out, &err, "run", "--device", "cuda", "-m", dir, "-p", "hello", "-n", "6",
                     "--ignore-eos", (const char *)NULL);
    if (rc != 0) {
        /* no GPU here (CI): the message says why */
        assert_int_equal(rc, 1);
        if (!strstr(err, "cuda") && !strstr(err, "CUDA"))
            fail_msg("--device cuda without a GPU: %s", err);
        free(out);
        free(err);
        assert_int_equal(kt_kiln(&out, NULL, "run", "--device", "auto", "-m", dir, "-p", "hello",
                                 "-n", "6", "--ignore-eos", (const char *)NULL), 0);
        assert_string_equal(out, cpu); /* auto ran on the CPU */
    }
    free(out);
    free(cpu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_options),
        cmocka_unit_test(test_every_decoder_has_a_case),
        cmocka_unit_test(test_run_goldens),
        cmocka_unit_test(test_run_text_prompt),
        cmocka_unit_test(test_embed_two_lines),
        cmocka_unit_test(test_embed_data_parallel),
        cmocka_unit_test(test_run_tensor_parallel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

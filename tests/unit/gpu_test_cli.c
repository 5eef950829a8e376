/*
 * gpu_test_cli.c - the command line on a GPU, against the same commands on
 * the CPU (label gpu: needs a CUDA device).
 *
 *   info:  `kiln info --gpu --json` reports a memory plan that respects
 *          --gpu-memory-utilization (kiln holds at most that share of the
 *          device, the KV budget grows with the share), and a share too
 *          small for the KV cache is a clear error (exit 1).
 *   run:   greedy `kiln run --device cuda` prints the CPU's text (f16, a
 *          tiny llama); sampled runs with one seed repeat exactly, and
 *          --top-k 1 is greedy.
 *   embed: `kiln embed --device cuda` over 3000 lines (more than one
 *          tokenization chunk, so the tokenizer thread runs beside the
 *          model) gives each line the CPU's vector (cosine >= 0.999), in
 *          input order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "kiln_test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void model_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/tests/golden/models/%s", kt_env("KILN_SOURCE_DIR"), name);
}

/* ---- kiln info --gpu ---------------------------------------------------------- */

/* The "gpu" object of `kiln info --json --gpu` at utilization util (owned). */
static json_t *info_plan(const char *dir, const char *util)
{
    char *out = NULL, *err = NULL;
    int rc = kt_kiln(&out, &err, "info", "--json", "--gpu", "--seqs", "2",
                     "--gpu-memory-utilization", util, dir, (const char *)NULL);
    if (rc != 0)
        fail_msg("kiln info --gpu at %s exited %d: %s", util, rc, err);
    json_error_t e;
    json_t *o = json_loads(out, 0, &e);
    if (!o)
        fail_msg("kiln info --json: %s", e.text);
    json_t *g = json_incref(json_object_get(o, "gpu"));
    if (!json_is_object(g))
        fail_msg("kiln info --json --gpu has no gpu object: %s", out);
    json_decref(o);
    free(out);
    free(err);
    return g;
}

static double jnum(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_number(v))
        fail_msg("memory plan: no number %s", k);
    return json_number_value(v);
}

static void test_info_gpu_plan(void **state)
{
    char dir[4096], *err = NULL;
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    json_t *half = info_plan(dir, "0.5"), *most = info_plan(dir, "0.9");
    double total = jnum(half, "total_bytes");
    assert_true(total > 0 && jnum(half, "free_bytes") <= total);
    assert_true(jnum(half, "weight_bytes") > 0);
    for (int i = 0; i < 2; i++) {
        json_t *g = i ? most : half;
        double util = i ? 0.9 : 0.5;
        assert_true(jnum(g, "kv_blocks") > 0);
        assert_true(jnum(g, "kv_max_tokens") == jnum(g, "kv_blocks") * jnum(g, "kv_block_size"));
        /* what kiln holds after the plan stays inside its share; the KV pool
         * is the budget's blocks, each of block_size tokens */
        if (jnum(g, "held_bytes") > util * total)
            fail_msg("at %.1f kiln holds %.0f of %.0f bytes", util, jnum(g, "held_bytes"), total);
        double pool = jnum(g, "kv_blocks") * jnum(g, "kv_block_size") * jnum(g, "kv_bytes_per_token");
        assert_true(pool <= jnum(g, "kv_budget_bytes"));
    }
    /* the budget grows by the share added (other processes may come and go
     * between the two runs: 2% of the device); the pool never shrinks (it
     * stops at what --seqs sequences of the context need) */
    double grown = jnum(most, "kv_budget_bytes") - jnum(half, "kv_budget_bytes");
    if (fabs(grown - 0.4 * total) > 0.02 * total)
        fail_msg("KV budget at 0.9 minus at 0.5: %.0f bytes, want 0.4 x %.0f", grown, total);
    assert_true(jnum(most, "kv_blocks") >= jnum(half, "kv_blocks"));
    json_decref(half);
    json_decref(most);

    /* a share that leaves nothing for the KV cache: exit 1, saying so */
    int rc = kt_kiln(NULL, &err, "run", "--device", "cuda", "--gpu-memory-utilization", "0.0001",
                     "-m", dir, "-p", "hi", "-n", "2", (const char *)NULL);
    assert_int_equal(rc, 1);
    if (!strstr(err, "gpu-memory-utilization"))
        fail_msg("too small a --gpu-memory-utilization: %s", err);
    free(err);
}

/* ---- kiln run ----------------------------------------------------------------- */

/* stdout of `kiln run --device DEV -m dir -p "Hello there" -n 16 --ignore-eos
 * extra...` (owned); the command must succeed. */
static char *run_text(const char *dev, const char *dir, const char *a1, const char *a2,
                      const char *a3, const char *a4)
{
    char *out = NULL, *err = NULL;
    const char *argv[32];
    int n = 0;
    argv[n++] = kt_env("KILN_BIN");
    const char *fixed[] = {"run", "--device", dev, "--dtype", "f16", "-m", dir, "-p",
                           "Hello there", "-n", "16", "--ignore-eos"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        argv[n++] = fixed[i];
    const char *extra[] = {a1, a2, a3, a4};
    for (int i = 0; i < 4 && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int rc = kt_run(argv, &out, &err);
    if (rc != 0)
        fail_msg("kiln run --device %s exited %d: %s", dev, rc, err);
    free(err);
    return out;
}

static void test_run_matches_cpu(void **state)
{
    char dir[4096];
    (void)state;
    model_dir(dir, sizeof dir, "llama");
    char *cpu = run_text("cpu", dir, NULL, NULL, NULL, NULL);
    char *gpu = run_text("cuda", dir, NULL, NULL, NULL, NULL);
    char *eager = run_text("cuda", dir, "--no-cuda-graphs", NULL, NULL, NULL);
    assert_string_equal(gpu, cpu);
    assert_string_equal(eager, cpu);

    /* sampling: one seed, one text; top-k 1 is the greedy text */
    char *s1 = run_text("cuda", dir, "--temp", "0.9", "--seed", "1234");
    char *s2 = run_text("cuda", dir, "--temp", "0.9", "--seed", "1234");
    char *k1 = run_text("cuda", dir, "--temp", "0.9", "--top-k", "1");
    assert_string_equal(s1, s2);
    assert_string_equal(k1, cpu);
    free(cpu), free(gpu), free(eager), free(s1), free(s2), free(k1);
}

/* ---- kiln embed --------------------------------------------------------------- */

#define CLI_DOCS 3000

/* The vectors of `kiln embed --device dev --input path` (n rows of d, owned). */
static double *embed_vectors(const char *dev, const char *dir, const char *path, size_t n,
                             size_t *d)
{
    char *out = NULL, *err = NULL;
    int rc = kt_kiln(&out, &err, "embed", "--device", dev, "--dtype", "f16", "-m", dir,
                     "--input", path, (const char *)NULL);
    if (rc != 0)
        fail_msg("kiln embed --device %s exited %d: %s", dev, rc, err);
    double *v = NULL;
    size_t line = 0;
    for (char *p = out, *nl; *p; p = nl + 1, line++) {
        nl = strchr(p, '\n');
        assert_non_null(nl);
        json_error_t e;
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, &e);
        assert_non_null(o);
        json_t *a = json_object_get(o, "embedding");
        if (!v) {
            *d = json_array_size(a);
            assert_true(*d > 0);
            v = calloc(n * *d, sizeof *v);
            assert_non_null(v);
        }
        assert_true(line < n);
        assert_int_equal(json_integer_value(json_object_get(o, "index")), line);
        assert_int_equal(json_array_size(a), *d);
        for (size_t k = 0; k < *d; k++)
            v[line * *d + k] = json_number_value(json_array_get(a, k));
        json_decref(o);
    }
    assert_int_equal(line, n);
    free(out);
    free(err);
    return v;
}

static void test_embed_matches_cpu(void **state)
{
    static const char *words[] = {"the", "kiln", "fires", "clay", "at", "night", "while",
                                  "potters", "sleep", "glaze", "cracks", "slowly", "in",
                                  "cold", "air", "and", "morning", "light", "returns"};
    const size_t nw = sizeof words / sizeof *words;
    char dir[4096], tmp[4096], path[4200];
    unsigned seed = (unsigned)time(NULL);
    (void)state;
    print_message("seed %u\n", seed);
    srand(seed);
    model_dir(dir, sizeof dir, "bert");
    kt_mkdtemp(tmp, sizeof tmp, "gpu_cli_embed");
    snprintf(path, sizeof path, "%s/docs.txt", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < CLI_DOCS; i++) {
        int len = 1 + rand() % 60;
        for (int w = 0; w < len; w++)
            fprintf(f, "%s%s", w ? " " : "", words[rand() % nw]);
        fprintf(f, "\n");
    }
    fclose(f);

    size_t dc = 0, dg = 0;
    double *cpu = embed_vectors("cpu", dir, path, CLI_DOCS, &dc);
    double *gpu = embed_vectors("cuda", dir, path, CLI_DOCS, &dg);
    assert_int_equal(dc, dg);
    double worst = 1.0;
    for (size_t i = 0; i < CLI_DOCS; i++) {
        double dot = 0, na = 0, nb = 0;
        for (size_t k = 0; k < dc; k++) {
            double a = cpu[i * dc + k], b = gpu[i * dc + k];
            dot += a * b, na += a * a, nb += b * b;
        }
        double cos = dot / sqrt(na * nb);
        if (!(cos >= worst))
            worst = cos;
    }
    print_message("lowest cosine gpu vs cpu over %d documents: %.7f\n", CLI_DOCS, worst);
    assert_true(worst >= 0.999);
    free(cpu);
    free(gpu);
    kt_rmtree(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_gpu_plan),
        cmocka_unit_test(test_run_matches_cpu),
        cmocka_unit_test(test_embed_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_model_golden.c - every architecture's forward pass on the CPU backend
 * against Hugging Face transformers (fp32), using the tiny random-weight
 * models and goldens of tests/golden/models/ (made by
 * tests/golden/make_model_goldens.py).
 *
 * For each decoder variant:
 *   - each prompt alone: logits of the last position (all positions for
 *     short prompts), max |kiln - hf| / max |hf| <= 1e-4;
 *   - all prompts as one batch: the same logits;
 *   - greedy decoding of 32 tokens through the paged KV cache (block size
 *     16, blocks handed out in a scrambled order), sequences starting at
 *     different steps so that prefills and decodes share batches; every
 *     token must equal transformers' generate().
 * For bert: last hidden states and pooled, normalised embeddings, alone and
 * batched (cosine >= 0.99999).
 * The GGUF copies of the variants (tests/golden/models/gguf/) hold the same
 * weights in llama.cpp's layout and are checked against the same goldens.
 *
 * KILN_TEST_BACKEND picks the backend: "cpu" (the default, the tolerances
 * above), "cuda-bf16" or "cuda-f16" (registered as GPU tests): logits
 * within 2e-2 of max |hf|, BERT cosine >= 0.999, and the greedy
 * continuation teacher-forced (transformers' token fed back each step)
 * with kiln's argmax equal to transformers' at >= 95% of the steps.
 * When scripts/fetch-models.sh has run, the default generation model (Gemma
 * 3 270M, GGUF Q4_K_M) is checked against transformers running the same
 * file (tests/golden/make_gemma3_gguf_golden.py): 10 prompts, the whole
 * last-position logit vector within 1e-3 and 32 identical greedy tokens.
 */
#include "model/model.h"
#ifdef KILN_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_test.h"
#include "kt_step.h"

#define MAX_PROMPTS KT_MAX_SEQS
#define MAX_TOKENS KT_MAX_TOKENS
#define GEN 32
#define BLOCK KT_BLOCK
#define N_BLOCKS KT_N_BLOCKS

/* Tolerances of the backend under test (group_setup). */
static double LOGIT_TOL = 1e-4;
static double COS_TOL = 0.99999;
static double G3_LOGIT_TOL = 1e-3;
static double GREEDY_MIN = 1.0;   /* fraction of greedy steps that must agree */

typedef struct prompt {
    int n;
    int32_t ids[64];
    int32_t types[64];
    json_t *j;                 /* the prompt's golden object (borrowed) */
} prompt;

typedef struct golden {
    json_t *root;
    int n_prompts;
    prompt p[MAX_PROMPTS];
    int64_t vocab, hidden;
} golden;

static backend *g_be;

/* ---- fixtures ------------------------------------------------------------------ */

static int group_setup(void **state)
{
    const char *want = getenv("KILN_TEST_BACKEND");
    kiln_status st = KILN_ERR_UNSUPPORTED;

    if (!want || !*want || !strcmp(want, "cpu")) {
        st = bk_cpu_create(4, &g_be);
    } else {
#ifdef KILN_HAVE_CUDA
        bool f16 = !strcmp(want, "cuda-f16");
        if (!f16 && strcmp(want, "cuda-bf16"))
            fail_msg("KILN_TEST_BACKEND=%s: expected cpu, cuda-bf16 or cuda-f16", want);
        st = bk_cuda_create(0, f16 ? KILN_DT_F16 : KILN_DT_BF16, &g_be);
        LOGIT_TOL = G3_LOGIT_TOL = 2e-2;
        COS_TOL = 0.999;
        GREEDY_MIN = 0.95;
#else
        fail_msg("KILN_TEST_BACKEND=%s: this build has no CUDA backend", want);
#endif
    }
    if (st)
        fail_msg("backend %s: %s", want ? want : "cpu", kiln_last_error());
    print_message("backend %s (%s activations)\n", g_be->ops->name,
                  dtype_name(g_be->ops->act_dtype));
    return 0;
}

/* Greedy agreement over a run: steps where kiln's argmax was
 * transformers' token, of all steps. */
typedef struct agree {
    int same, total;
} agree;

/* Count one greedy step; with exact agreement required, fail at once. */
static void agree_step(agree *a, const char *what, int pi, int k, int pos, int32_t tok,
                       int32_t ref)
{
    a->total++;
    if (tok == ref) {
        a->same++;
        return;
    }
    if (GREEDY_MIN >= 1.0)
        fail_msg("%s: prompt %d: greedy token %d (position %d) is %d, transformers gave %d",
                 what, pi, k, pos, tok, ref);
    print_message("%s: prompt %d: greedy token %d (position %d) is %d, transformers gave %d\n",
                  what, pi, k, pos, tok, ref);
}

static void agree_check(const agree *a, const char *what)
{
    double f = a->total ? (double)a->same / a->total : 1.0;
    print_message("%s: %d of %d greedy tokens agree (%.1f %%)\n", what, a->same, a->total,
                  100.0 * f);
    if (f < GREEDY_MIN)
        fail_msg("%s: greedy agreement %.3f < %.2f", what, f, GREEDY_MIN);
}

static int group_teardown(void **state)
{
    g_be->ops->destroy(g_be);
    return 0;
}

static void model_dir(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/tests/golden/models/%s", kt_env("KILN_SOURCE_DIR"), name);
}

static void golden_load(const char *name, golden *g)
{
    char path[4096];
    json_error_t err;
    json_t *ps;

    memset(g, 0, sizeof *g);
    snprintf(path, sizeof path, "%s/tests/golden/models/%s/golden.json",
             kt_env("KILN_SOURCE_DIR"), name);
    if (!(g->root = json_load_file(path, 0, &err)))
        fail_msg("%s: %s", path, err.text);
    g->vocab = json_integer_value(json_object_get(g->root, "vocab_size"));
    g->hidden = json_integer_value(json_object_get(g->root, "hidden_size"));
    ps = json_object_get(g->root, "prompts");
    g->n_prompts = (int)json_array_size(ps);
    assert_true(g->n_prompts > 0 && g->n_prompts <= MAX_PROMPTS);
    for (int i = 0; i < g->n_prompts; i++) {
        prompt *p = &g->p[i];
        json_t *ids = json_object_get(json_array_get(ps, (size_t)i), "ids");
        json_t *types = json_object_get(json_array_get(ps, (size_t)i), "token_types");
        p->j = json_array_get(ps, (size_t)i);
        p->n = (int)json_array_size(ids);
        assert_true(p->n > 0 && p->n <= 64);
        for (int t = 0; t < p->n; t++) {
            p->ids[t] = (int32_t)json_integer_value(json_array_get(ids, (size_t)t));
            p->types[t] = types ? (int32_t)json_integer_value(json_array_get(types, (size_t)t)) : 0;
        }
    }
}

/* Floats of a golden array (flattened), n of them expected. */
static float *golden_floats(json_t *a, size_t n)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    if (json_array_size(a) != n)
        fail_msg("golden array has %zu values, expected %zu", json_array_size(a), n);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)json_number_value(json_array_get(a, i));
    return v;
}

/* Load tests/golden/models/<rel>. */
static kiln_model *load(const char *rel)
{
    char dir[4096];
    model_load_opts o = {.max_batch_tokens = MAX_TOKENS};
    kiln_model *m = NULL;
    model_dir(dir, sizeof dir, rel);
    if (model_load(dir, g_be, &o, &m))
        fail_msg("model_load %s: %s", rel, kiln_last_error());
    return m;
}

/* ---- comparisons ------------------------------------------------------------------ */

/* max |got - want| / max |want| over n values; prints the first value
 * past the tolerance. */
static double rel_err(const char *what, const float *got, const float *want, size_t n)
{
    double scale = 0.0, worst = 0.0;
    size_t first = n;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]) / (scale > 0 ? scale : 1.0);
        if (e > LOGIT_TOL && first == n)
            first = i;
        worst = fmax(worst, e);
    }
    if (first < n)
        print_message("%s: first mismatch at %zu: kiln %.7g, hf %.7g (max rel err %.3g)\n", what,
                      first, (double)got[first], (double)want[first], worst);
    return worst;
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb + 1e-300);
}

static int32_t argmax(const float *v, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = (int32_t)i;
    return best;
}

/* ---- batches ------------------------------------------------------------------------ */

static bk_batch step_upload(const kt_step *st, bool with_types)
{
    bk_batch b;
    if (kt_step_upload(g_be, st, with_types, &b))
        fail_msg("batch_upload: %s", kiln_last_error());
    return b;
}

/* ---- decoders ------------------------------------------------------------------------- */

/* Check the logits of prompt p, whose output rows start at row `r0` of
 * logits (rows: every position when the golden has logits_all, else the
 * last one).  Returns the number of rows it used. */
static int check_prompt_logits(const char *name, const char *how, const golden *g, int i,
                               const float *logits, int r0)
{
    const prompt *p = &g->p[i];
    json_t *all = json_object_get(p->j, "logits_all");
    char what[128];
    int rows = all ? p->n : 1;
    size_t n = (size_t)rows * (size_t)g->vocab;
    float *want = golden_floats(all ? all : json_object_get(p->j, "logits_last"), n);
    snprintf(what, sizeof what, "%s %s prompt %d (%d tokens)", name, how, i, p->n);
    double e = rel_err(what, logits + (size_t)r0 * (size_t)g->vocab, want, n);
    if (e > LOGIT_TOL)
        fail_msg("%s: max relative logit error %.3g > %g", what, e, LOGIT_TOL);
    print_message("%s: max rel err %.2e\n", what, e);
    free(want);
    return rows;
}

/* Golden `name` against the model at tests/golden/models/<rel>. */
static void run_decoder(const char *name, const char *rel)
{
    golden g;
    kiln_model *m;
    bk_kv_cache shape, kv;
    float *logits;
    kt_step st;
    bk_batch b;

    golden_load(name, &g);
    m = load(rel);
    assert_false(model_is_encoder(m));
    assert_int_equal(model_config_of(m)->vocab_size, g.vocab);
    model_kv_shape(m, N_BLOCKS, BLOCK, &shape);
    if (g_be->ops->kv_alloc(g_be, &shape, &kv))
        fail_msg("kv_alloc: %s", kiln_last_error());
    logits = malloc((size_t)MAX_TOKENS * (size_t)g.vocab * sizeof *logits);
    assert_non_null(logits);

    /* 1. each prompt alone */
    for (int i = 0; i < g.n_prompts; i++) {
        bool all = json_object_get(g.p[i].j, "logits_all") != NULL;
        kt_step_init(&st);
        kt_step_add(&st, i, g.p[i].ids, NULL, g.p[i].n, 0, all);
        b = step_upload(&st, false);
        if (model_forward(m, &b, &kv, logits))
            fail_msg("%s: model_forward: %s", name, kiln_last_error());
        check_prompt_logits(name, "alone", &g, i, logits, 0);
    }

    /* 2. all prompts as one batch */
    kt_step_init(&st);
    for (int i = 0; i < g.n_prompts; i++)
        kt_step_add(&st, i, g.p[i].ids, NULL, g.p[i].n, 0,
                 json_object_get(g.p[i].j, "logits_all") != NULL);
    b = step_upload(&st, false);
    if (model_forward(m, &b, &kv, logits))
        fail_msg("%s: model_forward (batch): %s", name, kiln_last_error());
    for (int i = 0, r = 0; i < g.n_prompts; i++)
        r += check_prompt_logits(name, "batched", &g, i, logits, r);

    /* 3. greedy decoding; sequence i joins at step start[i], so steps mix
     *    prefills with decodes */
    int start[MAX_PROMPTS], done[MAX_PROMPTS] = {0}, left = g.n_prompts;
    int32_t gen[MAX_PROMPTS][GEN];
    agree ag = {0, 0};
    for (int i = 0; i < g.n_prompts; i++)
        start[i] = (i * 3) / 2;
    for (int stepi = 0; left > 0; stepi++) {
        int who[MAX_PROMPTS], n_who = 0;
        kt_step_init(&st);
        for (int i = 0; i < g.n_prompts; i++) {
            if (stepi < start[i] || done[i] == GEN)
                continue;
            if (stepi == start[i])
                kt_step_add(&st, i, g.p[i].ids, NULL, g.p[i].n, 0, false);
            else
                kt_step_add(&st, i, &gen[i][done[i] - 1], NULL, 1, g.p[i].n + done[i] - 1, false);
            who[n_who++] = i;
        }
        if (n_who == 0)
            continue;
        b = step_upload(&st, false);
        if (model_forward(m, &b, &kv, logits))
            fail_msg("%s: model_forward (step %d): %s", name, stepi, kiln_last_error());
        for (int k = 0; k < n_who; k++) {
            int i = who[k];
            json_t *want = json_object_get(g.p[i].j, "greedy");
            int32_t tok = argmax(logits + (size_t)k * (size_t)g.vocab, g.vocab);
            int32_t ref = (int32_t)json_integer_value(json_array_get(want, (size_t)done[i]));
            agree_step(&ag, name, i, done[i], g.p[i].n + done[i], tok, ref);
            gen[i][done[i]++] = ref; /* teacher-forced: transformers' token goes on */
            if (done[i] == GEN)
                left--;
        }
    }
    agree_check(&ag, name);

    free(logits);
    g_be->ops->kv_free(g_be, &kv);
    model_free(m);
    json_decref(g.root);
}

static void test_llama(void **state) { run_decoder("llama", "llama"); }
static void test_llama3_rope(void **state) { run_decoder("llama3_rope", "llama3_rope"); }
static void test_mistral(void **state) { run_decoder("mistral", "mistral"); }
static void test_qwen2(void **state) { run_decoder("qwen2", "qwen2"); }
static void test_qwen3(void **state) { run_decoder("qwen3", "qwen3"); }
static void test_gemma3(void **state) { run_decoder("gemma3", "gemma3"); }

static void test_gemma3_hd(void **state) { run_decoder("gemma3_hd", "gemma3_hd"); }

/* The same weights as llama.cpp's converter writes them to GGUF (llama q/k
 * permuted for interleaved rope pairs, gemma3 norms as 1 + w, llama3 rope
 * factors): the same goldens hold. */
static void test_llama_gguf(void **state) { run_decoder("llama", "gguf/llama.gguf"); }
static void test_llama3_rope_gguf(void **state)
{
    run_decoder("llama3_rope", "gguf/llama3_rope.gguf");
}
static void test_qwen2_gguf(void **state) { run_decoder("qwen2", "gguf/qwen2.gguf"); }
static void test_qwen3_gguf(void **state) { run_decoder("qwen3", "gguf/qwen3.gguf"); }
static void test_gemma3_gguf(void **state) { run_decoder("gemma3_hd", "gguf/gemma3_hd.gguf"); }

/* ---- bert ------------------------------------------------------------------------------ */

static void check_bert(const golden *g, int i, const float *hidden, const float *emb,
                       const char *how)
{
    const prompt *p = &g->p[i];
    size_t nh = (size_t)p->n * (size_t)g->hidden;
    float *want_h = golden_floats(json_object_get(p->j, "hidden"), nh);
    float *want_e = golden_floats(json_object_get(p->j, "embedding"), (size_t)g->hidden);
    char what[128];
    snprintf(what, sizeof what, "bert %s prompt %d (%d tokens) hidden", how, i, p->n);
    double e = rel_err(what, hidden, want_h, nh);
    double cs = cosine(emb, want_e, (size_t)g->hidden);
    print_message("%s: max rel err %.2e, embedding cosine %.9f\n", what, e, cs);
    if (e > LOGIT_TOL)
        fail_msg("%s: max relative error %.3g > %g", what, e, LOGIT_TOL);
    if (cs < COS_TOL)
        fail_msg("bert %s prompt %d: embedding cosine %.9f < %g", how, i, cs, COS_TOL);
    free(want_h);
    free(want_e);
}

/* The bert golden against tests/golden/models/<rel>. */
static void run_bert(const char *rel, bool normalize)
{
    golden g;
    kiln_model *m;
    kt_step st;
    bk_batch b;
    float *hidden, *emb;

    golden_load("bert", &g);
    m = load(rel);
    assert_true(model_is_encoder(m));
    assert_int_equal(model_config_of(m)->normalize, normalize);
    hidden = malloc((size_t)MAX_TOKENS * (size_t)g.hidden * sizeof *hidden);
    emb = malloc((size_t)MAX_PROMPTS * (size_t)g.hidden * sizeof *emb);
    assert_true(hidden && emb);

    /* each prompt alone */
    for (int i = 0; i < g.n_prompts; i++) {
        kt_step_init(&st);
        kt_step_add(&st, i, g.p[i].ids, g.p[i].types, g.p[i].n, 0, false);
        b = step_upload(&st, true);
        if (model_encode_tokens(m, &b, hidden) || model_embed(m, &b, emb))
            fail_msg("bert: %s", kiln_last_error());
        check_bert(&g, i, hidden, emb, "alone");
    }

    /* all prompts in one batch: attention stays within each sequence */
    kt_step_init(&st);
    for (int i = 0; i < g.n_prompts; i++)
        kt_step_add(&st, i, g.p[i].ids, g.p[i].types, g.p[i].n, 0, false);
    b = step_upload(&st, true);
    if (model_encode_tokens(m, &b, hidden) || model_embed(m, &b, emb))
        fail_msg("bert (batch): %s", kiln_last_error());
    for (int i = 0; i < g.n_prompts; i++)
        check_bert(&g, i, hidden + (size_t)st.seq_start[i] * (size_t)g.hidden,
                   emb + (size_t)i * (size_t)g.hidden, "batched");

    free(hidden);
    free(emb);
    model_free(m);
    json_decref(g.root);
}

/* ---- the default generation model ------------------------------------------------ */

#define G3_PROMPT_MAX 64

/* Prompt `name`'s whole last-position logit vector from the golden
 * directory: n little-endian int16 q, logit = q * scale / 32767. */
static float *g3_logits(const char *dir, const char *name, int64_t n, double scale)
{
    char path[8192];
    unsigned char *raw = malloc((size_t)n * 2);
    float *v = malloc((size_t)n * sizeof *v);
    FILE *f;
    assert_true(raw && v);
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        fail_msg("%s/%s: path too long", dir, name);
    if (!(f = fopen(path, "rb")))
        fail_msg("%s: cannot open", path);
    if (fread(raw, 2, (size_t)n, f) != (size_t)n || fgetc(f) != EOF)
        fail_msg("%s: expected %lld int16 values", path, (long long)n);
    fclose(f);
    for (int64_t i = 0; i < n; i++) {
        int16_t q = (int16_t)(uint16_t)(raw[2 * i] | (raw[2 * i + 1] << 8));
        v[i] = (float)((double)q * scale / 32767.0);
    }
    free(raw);
    return v;
}

/* The two largest logits: ids and values. */
static void top2(const float *v, int64_t n, int32_t *id, float *val)
{
    id[0] = argmax(v, n);
    id[1] = id[0] == 0 ? 1 : 0;
    for (int64_t i = 0; i < n; i++)
        if (i != id[0] && v[i] > v[id[1]])
            id[1] = (int32_t)i;
    val[0] = v[id[0]];
    val[1] = v[id[1]];
}

/* Gemma 3 270M Q4_K_M (scripts/fetch-models.sh) against transformers
 * running the same GGUF file dequantized to fp32
 * (tests/golden/models/gemma3_270m_q4km/, 10 prompts of 1 to 57 tokens):
 * the whole last-position logit vector of each prompt (int16 fixed point,
 * within 1.5e-5 of max |logit|) and its 32 largest logits (exact), max
 * |kiln - hf| / max |hf| <= 1e-3 (quantized weights meet fp32 activations on both sides,
 * so that leaves room for summation order only), and 32 greedy tokens
 * through the paged cache identical to transformers' generate().  Every
 * prompt is checked before the test fails; at a greedy divergence it prints
 * both sides' top-2 margins there. */
static void test_gemma3_270m_q4km(void **state)
{
    char path[4096], gdir[4096], gpath[4096 + 16];
    json_error_t err;
    json_t *root, *ps;
    kiln_model *m;
    bk_kv_cache shape, kv;
    model_load_opts o = {.max_batch_tokens = MAX_TOKENS};
    float *logits;
    kt_step st;
    bk_batch b;
    int bad_logits = 0, bad_greedy = 0;
    agree ag = {0, 0};

    kt_model_or_skip(path, sizeof path, "gemma-3-270m-q4_k_m.gguf");
    snprintf(gdir, sizeof gdir, "%s/tests/golden/models/gemma3_270m_q4km",
             kt_env("KILN_SOURCE_DIR"));
    snprintf(gpath, sizeof gpath, "%s/golden.json", gdir);
    if (!(root = json_load_file(gpath, 0, &err)))
        fail_msg("%s: %s", gpath, err.text);
    if (model_load(path, g_be, &o, &m))
        fail_msg("model_load: %s", kiln_last_error());
    int64_t vocab = model_config_of(m)->vocab_size;
    model_kv_shape(m, N_BLOCKS, BLOCK, &shape);
    if (g_be->ops->kv_alloc(g_be, &shape, &kv))
        fail_msg("kv_alloc: %s", kiln_last_error());
    logits = malloc((size_t)vocab * sizeof *logits);
    assert_non_null(logits);

    ps = json_object_get(root, "prompts");
    assert_int_equal(json_array_size(ps), 10);
    for (size_t i = 0; i < json_array_size(ps); i++) {
        json_t *p = json_array_get(ps, i), *ids = json_object_get(p, "ids");
        json_t *greedy = json_object_get(p, "greedy"), *margin = json_object_get(p, "greedy_margin");
        double scale = json_number_value(json_object_get(p, "max_abs_logit"));
        int32_t toks[G3_PROMPT_MAX + GEN];
        int n = (int)json_array_size(ids);
        assert_true(n > 0 && n <= G3_PROMPT_MAX);
        assert_int_equal(json_array_size(greedy), GEN);
        assert_int_equal(json_integer_value(json_object_get(p, "vocab")), vocab);
        for (int t = 0; t < n; t++)
            toks[t] = (int32_t)json_integer_value(json_array_get(ids, (size_t)t));

        /* prefill, then one token per step through the cache */
        for (int k = 0; k < GEN; k++) {
            kt_step_init(&st);
            if (k == 0)
                kt_step_add(&st, (int)i % MAX_PROMPTS, toks, NULL, n, 0, false);
            else
                kt_step_add(&st, (int)i % MAX_PROMPTS, &toks[n + k - 1], NULL, 1, n + k - 1, false);
            b = step_upload(&st, false);
            if (model_forward(m, &b, &kv, logits))
                fail_msg("model_forward: %s", kiln_last_error());
            if (k == 0) {
                const char *file = json_string_value(json_object_get(p, "logits_file"));
                float *want = g3_logits(gdir, file, vocab, scale);
                double worst = 0.0;
                int64_t at = 0;
                for (int64_t j = 0; j < vocab; j++) {
                    double e = fabs((double)logits[j] - (double)want[j]) / scale;
                    if (e > worst) {
                        worst = e;
                        at = j;
                    }
                }
                /* the 32 largest, stored exactly: the error without the
                 * 1.5e-5 of the int16 file */
                json_t *top_ids = json_object_get(p, "top_ids");
                json_t *top = json_object_get(p, "top_logits");
                double worst_top = 0.0;
                for (size_t j = 0; j < json_array_size(top_ids); j++) {
                    int64_t tid = json_integer_value(json_array_get(top_ids, j));
                    double tw = json_number_value(json_array_get(top, j));
                    assert_true(tid >= 0 && tid < vocab);
                    worst_top = fmax(worst_top, fabs((double)logits[tid] - tw) / scale);
                }
                worst = fmax(worst, worst_top);
                print_message("gemma3 270m prompt %zu (%d tokens): max rel err of all %lld "
                              "logits %.2e (id %lld: kiln %.6f, hf %.6f), of the top %zu %.2e\n",
                              i, n, (long long)vocab, worst, (long long)at, (double)logits[at],
                              (double)want[at], json_array_size(top_ids), worst_top);
                if (worst > G3_LOGIT_TOL) {
                    print_message("gemma3 270m prompt %zu: relative logit error %.3g > %g\n", i,
                                  worst, G3_LOGIT_TOL);
                    bad_logits++;
                }
                free(want);
            }
            int32_t id[2];
            float val[2];
            top2(logits, vocab, id, val);
            int32_t ref = (int32_t)json_integer_value(json_array_get(greedy, (size_t)k));
            if (id[0] != ref) {
                print_message("gemma3 270m prompt %zu: greedy token %d (position %d) is %d "
                              "(logit %.6f), transformers gave %d (kiln logit %.6f); kiln "
                              "top-2 margin %.6f, transformers' %.6f\n", i, k, n + k, id[0],
                              (double)val[0], ref, (double)logits[ref],
                              (double)(val[0] - val[1]),
                              json_number_value(json_array_get(margin, (size_t)k)));
                bad_greedy++;
                if (GREEDY_MIN >= 1.0)
                    break;
            }
            ag.total++;
            ag.same += id[0] == ref;
            toks[n + k] = ref; /* teacher-forced; equal to kiln's token when exact */
            if (k == GEN - 1 && !bad_greedy)
                print_message("gemma3 270m prompt %zu: %d greedy tokens identical\n", i, GEN);
        }
    }
    free(logits);
    g_be->ops->kv_free(g_be, &kv);
    model_free(m);
    json_decref(root);
    if (GREEDY_MIN < 1.0) {
        agree_check(&ag, "gemma3 270m");
        bad_greedy = 0;
    }
    if (bad_logits || bad_greedy)
        fail_msg("gemma3 270m: %d prompt(s) past the logit tolerance, %d greedy divergence(s)",
                 bad_logits, bad_greedy);
}

/* sentence-transformers layout: mean pooling, Normalize. */
static void test_bert(void **state) { run_bert("bert", true); }
/* GGUF: mean pooling from bert.pooling_type; the format records no
 * normalisation, and kiln L2-normalises as llama.cpp does by default. */
static void test_bert_gguf(void **state) { run_bert("gguf/bert.gguf", true); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama),       cmocka_unit_test(test_llama3_rope),
        cmocka_unit_test(test_mistral),     cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_qwen3),       cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_gemma3_hd),   cmocka_unit_test(test_bert),
        cmocka_unit_test(test_llama_gguf),  cmocka_unit_test(test_llama3_rope_gguf),
        cmocka_unit_test(test_qwen2_gguf),  cmocka_unit_test(test_qwen3_gguf),
        cmocka_unit_test(test_gemma3_gguf), cmocka_unit_test(test_bert_gguf),
        cmocka_unit_test(test_gemma3_270m_q4km),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

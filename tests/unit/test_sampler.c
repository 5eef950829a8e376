/* test_sampler.c - each sampling step on crafted logits, penalties as
 * vLLM/transformers define them, seeds, the distribution of many draws,
 * stop-string matching, settings checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "base/alloc.h"
#include "engine/sampler.h"
#include "kiln.h"

/* logits[i] = log(probs[i]) */
static void log_probs(float *logits, const double *probs, int n)
{
    for (int i = 0; i < n; i++)
        logits[i] = (float)log(probs[i]);
}

/* The kept set of p over logits, as a sorted id list in kept[]. */
static int kept_set(sampler *s, const sampler_params *p, const float *logits, int n, int *kept)
{
    float *l = malloc((size_t)n * sizeof *l);
    const int32_t *ids;
    const float *probs;
    memcpy(l, logits, (size_t)n * sizeof *l);
    sampler_reset(s, p, NULL, 0);
    int k = sampler_candidates(s, l, &ids, &probs);
    double sum = 0;
    for (int i = 0; i < k; i++) {
        kept[i] = ids[i];
        sum += probs[i];
        if (i)
            assert_true(probs[i] <= probs[i - 1]);
    }
    assert_true(fabs(sum - 1.0) < 1e-5);
    free(l);
    return k;
}

static void assert_set(const int *got, int n_got, const int *want, int n_want)
{
    assert_int_equal(n_got, n_want);
    for (int i = 0; i < n_want; i++)
        assert_int_equal(got[i], want[i]);
}

static sampler_params sampling(float temp)
{
    sampler_params p;
    sampler_params_default(&p);
    p.temperature = temp;
    return p;
}

static void test_greedy(void **state)
{
    sampler *s;
    assert_int_equal(sampler_create(6, &s), KILN_OK);
    sampler_params p = sampling(0.0f);
    float l[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, -INFINITY};
    sampler_reset(s, &p, NULL, 0);
    assert_int_equal(sampler_sample(s, l), 1); /* the lower id of two equal */
    float l2[6] = {-5, -4, -3, -2, -1, -0.5f};
    assert_int_equal(sampler_sample(s, l2), 5);
    /* top_k = 1 is greedy at any temperature */
    p = sampling(5.0f);
    p.top_k = 1;
    sampler_reset(s, &p, NULL, 0);
    float l3[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0};
    assert_int_equal(sampler_sample(s, l3), 1);
    sampler_free(s);
    sampler_free(NULL);
}

static void test_temperature(void **state)
{
    sampler *s;
    assert_int_equal(sampler_create(4, &s), KILN_OK);
    sampler_params p = sampling(2.0f);
    float l[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    const int32_t *ids;
    const float *probs;
    sampler_reset(s, &p, NULL, 0);
    int n = sampler_candidates(s, l, &ids, &probs);
    assert_int_equal(n, 4);
    double z = 0;
    for (int i = 0; i < 4; i++)
        z += exp((i + 1) / 2.0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ids[i], 3 - i);
        assert_true(fabs(probs[i] - exp((4 - i) / 2.0) / z) < 1e-6);
    }
    sampler_free(s);
}

static void test_top_k(void **state)
{
    sampler *s;
    int kept[8];
    float l[8] = {0.1f, 2.0f, -3.0f, 1.5f, 7.0f, 0.2f, 1.6f, -0.4f};
    assert_int_equal(sampler_create(8, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.top_k = 3;
    assert_set(kept, kept_set(s, &p, l, 8, kept), (int[]){4, 1, 6}, 3);
    p.top_k = 1;
    assert_set(kept, kept_set(s, &p, l, 8, kept), (int[]){4}, 1);
    p.top_k = 8;
    assert_int_equal(kept_set(s, &p, l, 8, kept), 8);
    p.top_k = 100;
    assert_int_equal(kept_set(s, &p, l, 8, kept), 8);

    /* renormalised over the kept three */
    const int32_t *ids;
    const float *probs;
    float c[8];
    memcpy(c, l, sizeof c);
    p.top_k = 3;
    sampler_reset(s, &p, NULL, 0);
    assert_int_equal(sampler_candidates(s, c, &ids, &probs), 3);
    double z = exp(7.0) + exp(2.0) + exp(1.6);
    assert_true(fabs(probs[0] - exp(7.0) / z) < 1e-6);
    assert_true(fabs(probs[2] - exp(1.6) / z) < 1e-6);
    sampler_free(s);
}

static void test_top_p(void **state)
{
    sampler *s;
    int kept[5];
    float l[5];
    const double pr[5] = {0.05, 0.5, 0.15, 0.3, 0.0 + 1e-30};
    log_probs(l, pr, 5);
    assert_int_equal(sampler_create(5, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    /* mass above each token in rank order: id1 0, id3 .5, id2 .8, id0 .95 */
    p.top_p = 0.45f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1}, 1);
    p.top_p = 0.55f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1, 3}, 2);
    p.top_p = 0.79f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1, 3}, 2);
    p.top_p = 0.81f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1, 3, 2}, 3);
    p.top_p = 0.96f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1, 3, 2, 0}, 4);
    p.top_p = 1e-6f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1}, 1);
    /* after top_k = 2 the masses are renormalised: id3 has 0.375 */
    p.top_k = 2;
    p.top_p = 0.6f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1}, 1);
    p.top_p = 0.7f;
    assert_set(kept, kept_set(s, &p, l, 5, kept), (int[]){1, 3}, 2);
    sampler_free(s);
}

static void test_min_p(void **state)
{
    sampler *s;
    int kept[4];
    float l[4];
    const double pr[4] = {0.5, 0.3, 0.15, 0.05};
    log_probs(l, pr, 4);
    assert_int_equal(sampler_create(4, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.min_p = 0.2f; /* threshold 0.1 */
    assert_set(kept, kept_set(s, &p, l, 4, kept), (int[]){0, 1, 2}, 3);
    p.min_p = 0.5f; /* threshold 0.25 */
    assert_set(kept, kept_set(s, &p, l, 4, kept), (int[]){0, 1}, 2);
    p.min_p = 0.05f; /* threshold 0.025 */
    assert_int_equal(kept_set(s, &p, l, 4, kept), 4);
    p.min_p = 1.0f;
    assert_set(kept, kept_set(s, &p, l, 4, kept), (int[]){0}, 1);
    /* the threshold is on probabilities after temperature: at T = 2 the
     * ratios are sqrt'd, 0.05/0.5 -> 0.316 */
    p = sampling(2.0f);
    p.min_p = 0.3f;
    assert_int_equal(kept_set(s, &p, l, 4, kept), 4);
    sampler_free(s);
}

/* Reference for a large vocabulary: sort everything, apply the rules. */
static int ref_kept(const float *l, int n, const sampler_params *p, int *out)
{
    int *idx = malloc((size_t)n * sizeof *idx);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 1; i < n; i++) { /* insertion sort, higher logit then lower id */
        int v = idx[i], j = i - 1;
        while (j >= 0 && (l[idx[j]] < l[v] || (l[idx[j]] == l[v] && idx[j] > v))) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = v;
    }
    double m = l[idx[0]] / p->temperature;
    int cnt = 0;
    for (int i = 0; i < n; i++)
        if (p->min_p <= 0 || l[idx[i]] / p->temperature - m >= log(p->min_p))
            idx[cnt++] = idx[i];
    if (p->top_k > 0 && p->top_k < cnt)
        cnt = p->top_k;
    double z = 0, above = 0;
    for (int i = 0; i < cnt; i++)
        z += exp(l[idx[i]] / p->temperature - m);
    int k = 0;
    while (k < cnt && (p->top_p >= 1.0f || above < p->top_p * z))
        above += exp(l[idx[k++]] / p->temperature - m);
    memcpy(out, idx, (size_t)k * sizeof *out);
    free(idx);
    return k;
}

/* Wide vocabularies exercise the heap selection's growth. */
static void test_large_vocab_vs_reference(void **state)
{
    enum { V = 3000 };
    static float l[V];
    static int got[V], want[V];
    sampler *s;
    unsigned seed = 7;
    assert_int_equal(sampler_create(V, &s), KILN_OK);
    for (int trial = 0; trial < 24; trial++) {
        for (int i = 0; i < V; i++) {
            seed = seed * 1664525u + 1013904223u;
            /* flat or peaked, with some exact ties */
            l[i] = (float)((seed >> 8) % 1000) / (trial % 3 == 0 ? 900.0f : 60.0f);
        }
        sampler_params p = sampling(trial % 2 ? 0.7f : 1.3f);
        p.top_p = trial % 4 == 3 ? 1.0f : 0.3f + 0.03f * (float)trial;
        p.top_k = trial % 5 == 1 ? 50 : 0;
        p.min_p = trial % 6 == 2 ? 0.1f : 0.0f;
        int nw = ref_kept(l, V, &p, want);
        int ng = kept_set(s, &p, l, V, got);
        /* the summation order differs: allow one token of difference at the
         * top_p boundary, nothing else */
        assert_true(abs(ng - nw) <= 1);
        for (int i = 0; i < (ng < nw ? ng : nw); i++)
            assert_int_equal(got[i], want[i]);
    }
    sampler_free(s);
}

static void test_repetition_penalty(void **state)
{
    sampler *s;
    const int32_t *ids;
    const float *probs;
    assert_int_equal(sampler_create(6, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.repetition_penalty = 2.0f;
    int32_t prompt[3] = {1, 2, 1};
    sampler_reset(s, &p, prompt, 3);
    sampler_accept(s, 4);
    float l[6] = {1.0f, 2.0f, -1.0f, 3.0f, -0.5f, 0.0f};
    sampler_candidates(s, l, &ids, &probs);
    /* prompt and output tokens: positive / r, negative * r; others kept */
    assert_true(l[0] == 1.0f);
    assert_true(l[1] == 1.0f);
    assert_true(l[2] == -2.0f);
    assert_true(l[3] == 3.0f);
    assert_true(l[4] == -1.0f);
    assert_true(l[5] == 0.0f);
    /* greedy sees the penalty too: 3.0 at id 3 beats 2.0 / 2 */
    p.temperature = 0;
    sampler_reset(s, &p, prompt, 3);
    float g[6] = {0.0f, 2.0f, 0.0f, 1.5f, 0.0f, 0.0f};
    assert_int_equal(sampler_sample(s, g), 3);
    /* a reset forgets the old prompt */
    int32_t other = 5;
    sampler_reset(s, &p, &other, 1);
    float g2[6] = {0.0f, 2.0f, 0.0f, 1.5f, 0.0f, 0.0f};
    assert_int_equal(sampler_sample(s, g2), 1);
    sampler_free(s);
}

static void test_presence_frequency(void **state)
{
    sampler *s;
    const int32_t *ids;
    const float *probs;
    assert_int_equal(sampler_create(6, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    int32_t prompt[2] = {0, 5};
    sampler_reset(s, &p, prompt, 2);
    sampler_accept(s, 3);
    sampler_accept(s, 3);
    sampler_accept(s, 4);
    sampler_accept(s, 3);
    sampler_accept(s, -1);   /* out of range ids are ignored */
    sampler_accept(s, 600);
    float l[6] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
    sampler_candidates(s, l, &ids, &probs);
    assert_true(l[0] == 1.0f);  /* prompt only: no presence/frequency */
    assert_true(l[1] == 1.0f);
    assert_true(fabsf(l[3] - (1.0f - 3 * 0.25f - 0.5f)) < 1e-6f);
    assert_true(fabsf(l[4] - (1.0f - 0.25f - 0.5f)) < 1e-6f);
    assert_true(l[5] == 1.0f);
    /* all three together: repetition first, then subtraction */
    p.repetition_penalty = 1.25f;
    sampler_reset(s, &p, prompt, 2);
    sampler_accept(s, 3);
    float m[6] = {2.0f, 1.0f, 1.0f, -1.0f, 1.0f, 1.0f};
    sampler_candidates(s, m, &ids, &probs);
    assert_true(fabsf(m[0] - 1.6f) < 1e-6f);
    assert_true(fabsf(m[3] - (-1.25f - 0.25f - 0.5f)) < 1e-6f);
    sampler_free(s);
}

static void test_seed(void **state)
{
    enum { V = 50, N = 200 };
    sampler *s;
    float base[V], l[V];
    int32_t a[N], b[N], c[N];
    for (int i = 0; i < V; i++)
        base[i] = (float)sin(i * 0.7) * 2.0f;
    assert_int_equal(sampler_create(V, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.top_p = 0.95f;
    int32_t *runs[3] = {a, b, c};
    uint64_t seeds[3] = {42, 42, 43};
    for (int r = 0; r < 3; r++) {
        p.seed = seeds[r];
        sampler_reset(s, &p, NULL, 0);
        for (int i = 0; i < N; i++) {
            memcpy(l, base, sizeof l);
            runs[r][i] = sampler_sample(s, l);
        }
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* two samplers with the same seed, interleaved: same draws */
    sampler *s2;
    assert_int_equal(sampler_create(V, &s2), KILN_OK);
    p.seed = 42;
    sampler_reset(s, &p, NULL, 0);
    sampler_reset(s2, &p, NULL, 0);
    for (int i = 0; i < N; i++) {
        memcpy(l, base, sizeof l);
        assert_int_equal(sampler_sample(s, l), a[i]);
        memcpy(l, base, sizeof l);
        assert_int_equal(sampler_sample(s2, l), a[i]);
    }
    sampler_free(s2);
    sampler_free(s);
}

/* One PRNG draw per non-greedy step, whatever the kept set (sampler_draw
 * is what the device path takes): a step whose min_p keeps one token still
 * advances the stream; a greedy step does not; sampler_sample equals
 * sampler_sample_u with the draw it took. */
static void test_one_draw_per_step(void **state)
{
    enum { V = 40 };
    sampler *s, *t;
    float base[V], l[V];
    (void)state;
    for (int i = 0; i < V; i++)
        base[i] = (float)cos(i * 1.3) * 3.0f;
    base[7] = 30.0f; /* min_p 0.5 keeps token 7 alone */
    assert_int_equal(sampler_create(V, &s), KILN_OK);
    assert_int_equal(sampler_create(V, &t), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.min_p = 0.5f;
    p.seed = 2024;
    sampler_reset(s, &p, NULL, 0);
    sampler_reset(t, &p, NULL, 0);
    memcpy(l, base, sizeof l);
    assert_int_equal(sampler_sample(s, l), 7);
    (void)sampler_rand(t); /* the draw s took */
    assert_true(sampler_rand(s) == sampler_rand(t));
    /* greedy: no draw */
    sampler_params g = sampling(0.0f);
    g.seed = 5;
    sampler_reset(s, &g, NULL, 0);
    sampler_reset(t, &g, NULL, 0);
    memcpy(l, base, sizeof l);
    assert_int_equal(sampler_sample(s, l), 7);
    assert_true(sampler_draw(t) == 0.0);
    assert_true(sampler_rand(s) == sampler_rand(t));
    /* sampler_sample is sampler_sample_u with its own draw */
    p.min_p = 0.0f;
    base[7] = 0.5f;
    for (int k = 0; k < 50; k++) {
        p.seed = 100 + (uint64_t)k;
        sampler_reset(s, &p, NULL, 0);
        sampler_reset(t, &p, NULL, 0);
        memcpy(l, base, sizeof l);
        int32_t a = sampler_sample(s, l);
        memcpy(l, base, sizeof l);
        double u = sampler_draw(t);
        assert_int_equal(sampler_sample_u(t, l, u), a);
    }
    sampler_free(s);
    sampler_free(t);
}

static void test_distribution(void **state)
{
    enum { N = 200000 };
    sampler *s;
    const double pr[5] = {0.1, 0.2, 0.3, 0.35, 0.05};
    float l[5];
    int hist[5] = {0};
    assert_int_equal(sampler_create(5, &s), KILN_OK);
    sampler_params p = sampling(1.0f);
    p.seed = 2024;
    sampler_reset(s, &p, NULL, 0);
    for (int i = 0; i < N; i++) {
        log_probs(l, pr, 5);
        hist[sampler_sample(s, l)]++;
    }
    for (int i = 0; i < 5; i++) /* ~5 standard deviations at N = 200000 */
        assert_true(fabs((double)hist[i] / N - pr[i]) < 0.006);

    /* top_k = 2 keeps ids 3 and 2 in the ratio 0.35 : 0.3 */
    memset(hist, 0, sizeof hist);
    p.top_k = 2;
    sampler_reset(s, &p, NULL, 0);
    for (int i = 0; i < N; i++) {
        log_probs(l, pr, 5);
        hist[sampler_sample(s, l)]++;
    }
    assert_int_equal(hist[0] + hist[1] + hist[4], 0);
    assert_true(fabs((double)hist[3] / N - 0.35 / 0.65) < 0.006);

    /* uniform doubles fill [0, 1) evenly */
    int bins[10] = {0};
    for (int i = 0; i < N; i++) {
        double u = sampler_rand(s);
        assert_true(u >= 0.0 && u < 1.0);
        bins[(int)(u * 10)]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(fabs(bins[i] / (double)N - 0.1) < 0.004);
    sampler_free(s);
}

static void test_stop_strings(void **state)
{
    sampler_params p;
    sampler_params_default(&p);
    const char *stops[2] = {"</s>", "\n\nUser:"};
    p.stop = stops;
    p.n_stop = 2;
    size_t safe;
    assert_int_equal(sampler_stop_find(&p, "hello", 5, &safe), -1);
    assert_int_equal(safe, 5);
    assert_int_equal(sampler_stop_find(&p, "hello</", 7, &safe), -1);
    assert_int_equal(safe, 5);
    assert_int_equal(sampler_stop_find(&p, "hello\n\nUs", 9, &safe), -1);
    assert_int_equal(safe, 5);
    assert_int_equal(sampler_stop_find(&p, "ab</s>cd", 8, &safe), 2);
    assert_int_equal(safe, 2);
    /* the earliest of two matches */
    assert_int_equal(sampler_stop_find(&p, "x\n\nUser: </s>", 13, &safe), 1);
    assert_int_equal(safe, 1);
    assert_int_equal(sampler_stop_find(&p, "<", 1, &safe), -1);
    assert_int_equal(safe, 0);
    assert_int_equal(sampler_stop_find(&p, "", 0, &safe), -1);
    assert_int_equal(safe, 0);
    p.n_stop = 0;
    assert_int_equal(sampler_stop_find(&p, "ab</s>", 6, &safe), -1);
    assert_int_equal(safe, 6);
}

static void test_params_check(void **state)
{
    sampler_params p;
    sampler_params_default(&p);
    assert_int_equal(sampler_params_check(&p), KILN_OK);
    p.temperature = -1;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    p.temperature = NAN;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    sampler_params_default(&p);
    p.top_p = 0;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    p.top_p = 1.5f;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    sampler_params_default(&p);
    p.min_p = -0.1f;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    sampler_params_default(&p);
    p.repetition_penalty = 0;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    sampler_params_default(&p);
    p.max_tokens = -3;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    sampler_params_default(&p);
    const char *empty[1] = {""};
    p.stop = empty;
    p.n_stop = 1;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);
    p.n_stop = SAMPLER_MAX_STOPS + 1;
    assert_int_equal(sampler_params_check(&p), KILN_ERR_INVALID_ARG);

    sampler *s = (sampler *)1;
    assert_int_equal(sampler_create(0, &s), KILN_ERR_INVALID_ARG);
    assert_null(s);
}

static void test_oom_and_no_alloc(void **state)
{
    int64_t base = kiln_alloc_bytes_in_use();
    for (int64_t n = 0; n < 9; n++) {
        sampler *s = (sampler *)1;
        kiln_alloc_fail_after(n);
        assert_int_equal(sampler_create(100, &s), KILN_ERR_OOM);
        kiln_alloc_fail_after(-1);
        assert_null(s);
        assert_int_equal(kiln_alloc_bytes_in_use(), base);
    }
    sampler *s;
    assert_int_equal(sampler_create(100, &s), KILN_OK);
    kiln_alloc_fail_after(0); /* sampling allocates nothing */
    sampler_params p = sampling(0.8f);
    p.top_p = 0.9f;
    p.repetition_penalty = 1.1f;
    int32_t prompt[3] = {1, 2, 3};
    sampler_reset(s, &p, prompt, 3);
    float l[100];
    for (int i = 0; i < 20; i++) {
        for (int j = 0; j < 100; j++)
            l[j] = (float)((j * 37 + i) % 23);
        sampler_accept(s, sampler_sample(s, l));
    }
    kiln_alloc_fail_after(-1);
    sampler_free(s);
    assert_int_equal(kiln_alloc_bytes_in_use(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_large_vocab_vs_reference),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_presence_frequency),
        cmocka_unit_test(test_seed),
        cmocka_unit_test(test_one_draw_per_step),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_oom_and_no_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

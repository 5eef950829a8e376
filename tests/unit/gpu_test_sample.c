/*
 * gpu_test_sample.c - bk sample and bk argmax on the CUDA backend against
 * the host sampler (sampler.c), which is the reference.
 *
 * Rows of random logits (fresh each run; the seed is printed) of several
 * widths, including odd ones and a 262144-token vocabulary, are stored in
 * bf16 and f16; the host sampler gets the same rounded values and the
 * same draw u, and its kept set (sampler_candidates).  Settings cover
 * greedy, temperature alone, top_k (1, small, large, above the candidates),
 * top_p, min_p, their combinations, and the three penalties over counts
 * made both by sample_reset (prompt marks) and by direct upload.
 *
 * Exact: greedy rows and top_k 1 (an argmax of the same values); the
 * counts row after a draw (the chosen token counted once more); the same
 * tokens and counts whatever the number of blocks that share a row (every
 * cluster size the device runs, forced by cusmp_set_cluster); ids are
 * poisoned before every call, so an unwritten row fails.
 * Near-exact: a drawn token equals the host's on >= 99% of the rows, and
 * every drawn token is one the host kept (>= 99.5%): the device sums
 * masses of a fast exp in fixed point where the host sums exp in double, so
 * they may part only where two running masses are within ~1e-6.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/sample.h"
#include "base/error.h"
#include "engine/sampler.h"
#include "format/quant.h"
#include "kt_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng;

static uint64_t rnd_u64(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double rnd_unit(void) { return (double)(rnd_u64() >> 11) * (1.0 / 9007199254740992.0); }

static float rnd_normal(void)
{
    double u = rnd_unit() + 1e-300, v = rnd_unit();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static uint16_t to_half(kiln_dtype dt, float f)
{
    return dt == KILN_DT_BF16 ? quant_f32_to_bf16(f) : quant_f32_to_f16(f);
}

static float from_half(kiln_dtype dt, uint16_t h)
{
    return dt == KILN_DT_BF16 ? quant_bf16_to_f32(h) : quant_f16_to_f32(h);
}

/* The settings of case c (of N_CASES). */
#define N_CASES 14
static void case_params(int c, int64_t vocab, sampler_params *p)
{
    sampler_params_default(p);
    p->temperature = 1.0f;
    switch (c) {
    case 0: p->temperature = 0.0f; break;                       /* greedy            */
    case 1: break;                                              /* temperature only  */
    case 2: p->temperature = 0.6f; p->top_k = 1; break;         /* greedy by top_k   */
    case 3: p->top_k = 5; break;
    case 4: p->top_k = 50; p->temperature = 1.3f; break;
    case 5: p->top_k = (int32_t)(vocab > 2000 ? 1000 : vocab / 2 + 1); break;
    case 6: p->top_p = 0.9f; break;
    case 7: p->top_p = 0.3f; p->temperature = 0.7f; break;
    case 8: p->min_p = 0.05f; break;
    case 9: p->top_k = 40; p->top_p = 0.95f; p->min_p = 0.02f; p->temperature = 0.8f; break;
    case 10: p->repetition_penalty = 1.3f; break;
    case 11: p->frequency_penalty = 0.5f; p->presence_penalty = 0.25f; p->top_p = 0.8f; break;
    case 12: p->repetition_penalty = 0.7f; p->frequency_penalty = -0.2f; p->top_k = 20; break;
    default: p->temperature = 0.0f; p->repetition_penalty = 1.5f; break; /* greedy + pen */
    }
}

/* One batch: rows of width vocab in dt, each row r with case r % N_CASES. */
static void check_batch(backend *be, kiln_dtype dt, int64_t vocab, int32_t rows, double scale,
                        int64_t *n_rows, int64_t *n_diff, int64_t *n_outside)
{
    const bk_ops *op = be->ops;
    size_t cells = (size_t)rows * (size_t)vocab;
    uint16_t *xh = malloc(cells * sizeof *xh), *counts = calloc(cells, sizeof *counts);
    uint16_t *back = malloc(cells * sizeof *back);
    float *row = malloc((size_t)vocab * sizeof *row);
    bk_sample_row *sr = calloc((size_t)rows, sizeof *sr);
    int32_t *ids = malloc((size_t)rows * sizeof *ids), *want = malloc((size_t)rows * sizeof *want);
    uint8_t *kept = calloc(cells, 1); /* the host's kept set of each row */
    sampler *s = NULL;
    void *xd = NULL, *pd = NULL, *cd = NULL, *idd = NULL;
    assert_true(xh && counts && back && row && sr && ids && want && kept);
    assert_int_equal(sampler_create(vocab, &s), KILN_OK);

    /* logits: normal * scale, a quarter of the rows with a few spikes;
     * each row's prompt (8 ids) and generated tokens (12 draws of 3 ids) */
    int32_t prompt[8];
    for (int32_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < vocab; i++)
            xh[(size_t)r * vocab + i] = to_half(dt, (float)scale * rnd_normal());
        if (r % 4 == 1)
            for (int k = 0; k < 4; k++)
                xh[(size_t)r * vocab + rnd_u64() % vocab] = to_half(dt, (float)(6.0 * scale));
    }
    assert_int_equal(op->alloc(be, cells * sizeof(uint16_t), &xd), KILN_OK);
    assert_int_equal(op->alloc(be, (size_t)rows * sizeof *sr, &pd), KILN_OK);
    assert_int_equal(op->alloc(be, cells * sizeof(uint16_t), &cd), KILN_OK);
    assert_int_equal(op->alloc(be, (size_t)rows * sizeof(int32_t), &idd), KILN_OK);
    assert_int_equal(op->upload(be, xd, xh, cells * sizeof(uint16_t)), KILN_OK);

    for (int32_t r = 0; r < rows; r++) {
        sampler_params p;
        case_params(r % N_CASES, vocab, &p);
        p.seed = rnd_u64();
        for (int k = 0; k < 8; k++)
            prompt[k] = (int32_t)(rnd_u64() % (uint64_t)vocab);
        sampler_reset(s, &p, prompt, 8);
        uint16_t *cr = counts + (size_t)r * vocab;
        /* device row: the prompt marks by sample_reset (checked below),
         * the generated counts uploaded over them */
        assert_int_equal(op->sample_reset(be, (uint16_t *)cd + (size_t)r * vocab, vocab, prompt,
                                          8), KILN_OK);
        for (int k = 0; k < 8; k++)
            cr[prompt[k]] = BK_SAMPLE_PROMPT;
        for (int k = 0; k < 12; k++) {
            int32_t t = (int32_t)(rnd_u64() % (uint64_t)(vocab < 3 ? vocab : 3)) * 7 %
                        (int32_t)vocab;
            sampler_accept(s, t);
            cr[t]++;
        }
        for (int64_t i = 0; i < vocab; i++)
            row[i] = from_half(dt, xh[(size_t)r * vocab + i]);
        double u = sampler_draw(s);
        uint64_t u53 = (uint64_t)(u * 9007199254740992.0);
        bool pen = sampler_params_penalized(&p);
        sr[r] = (bk_sample_row){
            .temperature = p.temperature, .top_p = p.top_p, .min_p = p.min_p,
            .repetition_penalty = p.repetition_penalty, .presence_penalty = p.presence_penalty,
            .frequency_penalty = p.frequency_penalty, .top_k = p.top_k, .slot = pen ? r : -1,
            .u_hi = (uint32_t)(u53 >> 32), .u_lo = (uint32_t)u53};
        /* the reference: the draw, then the kept set of the same row */
        float *copy = malloc((size_t)vocab * sizeof *copy);
        assert_non_null(copy);
        memcpy(copy, row, (size_t)vocab * sizeof *row);
        want[r] = sampler_sample_u(s, copy, u);
        memcpy(copy, row, (size_t)vocab * sizeof *row);
        const int32_t *kid;
        const float *kp;
        int32_t nk = sampler_candidates(s, copy, &kid, &kp);
        free(copy);
        for (int32_t k = 0; k < nk; k++)
            kept[(size_t)r * vocab + kid[k]] = 1;
        assert_true(kept[(size_t)r * vocab + want[r]]); /* the host draws from its kept set */
    }
    /* the prompt marks sample_reset made */
    assert_int_equal(op->sync(be), KILN_OK);
    assert_int_equal(op->download(be, back, cd, cells * sizeof(uint16_t)), KILN_OK);
    for (size_t i = 0; i < cells; i++) {
        uint16_t want_mark = counts[i] & BK_SAMPLE_PROMPT;
        if (back[i] != want_mark)
            fail_msg("sample_reset: cell %zu is %u, want %u", i, back[i], want_mark);
    }
    assert_int_equal(op->upload(be, cd, counts, cells * sizeof(uint16_t)), KILN_OK);
    assert_int_equal(op->upload(be, pd, sr, (size_t)rows * sizeof *sr), KILN_OK);
    for (int32_t r = 0; r < rows; r++)
        ids[r] = -7;
    assert_int_equal(op->upload(be, idd, ids, (size_t)rows * sizeof(int32_t)), KILN_OK);
    if (op->sample(be, xd, rows, vocab, pd, cd, idd))
        fail_msg("sample: %s", kiln_last_error());
    assert_int_equal(op->sync(be), KILN_OK);
    assert_int_equal(op->download(be, ids, idd, (size_t)rows * sizeof(int32_t)), KILN_OK);
    assert_int_equal(op->download(be, back, cd, cells * sizeof(uint16_t)), KILN_OK);

    /* every cluster size the device runs draws the same tokens and leaves
     * the same counts as the size chosen above */
    int32_t *again = malloc((size_t)rows * sizeof *again);
    uint16_t *back2 = malloc(cells * sizeof *back2);
    assert_true(again && back2);
    for (int cl = 1; cl <= 16; cl *= 2) {
        for (int32_t r = 0; r < rows; r++)
            again[r] = -7;
        assert_int_equal(op->upload(be, cd, counts, cells * sizeof(uint16_t)), KILN_OK);
        assert_int_equal(op->upload(be, idd, again, (size_t)rows * sizeof(int32_t)), KILN_OK);
        assert_int_equal(cusmp_set_cluster(cl), KILN_OK);
        kiln_status st = op->sample(be, xd, rows, vocab, pd, cd, idd);
        assert_int_equal(cusmp_set_cluster(0), KILN_OK);
        if (st == KILN_ERR_UNSUPPORTED && cl > 1) { /* not on this device (before sm_90) */
            (void)op->sync(be);
            continue;
        }
        if (st)
            fail_msg("sample, clusters of %d: %s", cl, kiln_last_error());
        assert_int_equal(op->sync(be), KILN_OK);
        assert_int_equal(op->download(be, again, idd, (size_t)rows * sizeof(int32_t)), KILN_OK);
        assert_int_equal(op->download(be, back2, cd, cells * sizeof(uint16_t)), KILN_OK);
        for (int32_t r = 0; r < rows; r++)
            if (again[r] != ids[r])
                fail_msg("%s vocab %lld row %d case %d: clusters of %d drew %d, the default %d",
                         dtype_name(dt), (long long)vocab, r, r % N_CASES, cl, again[r], ids[r]);
        if (memcmp(back2, back, cells * sizeof *back))
            fail_msg("%s vocab %lld: the counts after clusters of %d differ", dtype_name(dt),
                     (long long)vocab, cl);
    }
    free(again), free(back2);

    for (int32_t r = 0; r < rows; r++) {
        int c = r % N_CASES;
        sampler_params p;
        case_params(c, vocab, &p);
        if (ids[r] < 0 || ids[r] >= vocab)
            fail_msg("%s vocab %lld row %d case %d: id %d (unwritten or out of range)",
                     dtype_name(dt), (long long)vocab, r, c, ids[r]);
        if (sampler_params_greedy(&p) && ids[r] != want[r])
            fail_msg("%s vocab %lld row %d case %d (greedy): device %d, host %d",
                     dtype_name(dt), (long long)vocab, r, c, ids[r], want[r]);
        /* the counts row: the chosen token once more where the row has a slot */
        for (int64_t i = 0; i < vocab; i++) {
            uint16_t w = counts[(size_t)r * vocab + i];
            if (sr[r].slot >= 0 && i == ids[r])
                w++;
            if (back[(size_t)r * vocab + i] != w)
                fail_msg("counts row %d token %lld: %u, want %u", r, (long long)i,
                         back[(size_t)r * vocab + i], w);
        }
        bool in = kept[(size_t)r * vocab + ids[r]];
        *n_rows += 1;
        *n_diff += ids[r] != want[r];
        *n_outside += !in;
        if (ids[r] != want[r])
            print_message("  %s vocab %lld row %d case %d: device %d, host %d (%s the host's "
                          "kept set)\n", dtype_name(dt), (long long)vocab, r, c, ids[r],
                          want[r], in ? "in" : "outside");
    }

    sampler_free(s);
    op->free(be, xd);
    op->free(be, pd);
    op->free(be, cd);
    op->free(be, idd);
    free(xh), free(counts), free(back), free(row), free(sr), free(ids), free(want), free(kept);
}

static void run_dtype(kiln_dtype dt)
{
    backend *be = kt_cuda_or_skip(dt);
    static const int64_t vocabs[] = {1, 2, 7, 1000, 4099, 32000, 151936, 262144};
    int64_t rows = 0, diff = 0, outside = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof *vocabs; v++) {
        int32_t n = vocabs[v] >= 100000 ? 2 * N_CASES : 6 * N_CASES;
        check_batch(be, dt, vocabs[v], n, 1.0, &rows, &diff, &outside);
        check_batch(be, dt, vocabs[v], N_CASES, 4.0, &rows, &diff, &outside);
    }
    print_message("%s: %lld rows; device and host drew different tokens on %lld, the device "
                  "drew outside the host's kept set on %lld\n", dtype_name(dt), (long long)rows,
                  (long long)diff, (long long)outside);
    if (diff * 100 > rows || outside * 200 > rows)
        fail_msg("%s: %lld of %lld draws differ from the host's, %lld outside its kept set",
                 dtype_name(dt), (long long)diff, (long long)rows, (long long)outside);
    be->ops->destroy(be);
}

static void test_sample_bf16(void **state)
{
    (void)state;
    run_dtype(KILN_DT_BF16);
}

static void test_sample_f16(void **state)
{
    (void)state;
    run_dtype(KILN_DT_F16);
}

/* Bad arguments are errors, not launches. */
static void test_sample_bad_args(void **state)
{
    (void)state;
    backend *be = kt_cuda_or_skip(KILN_DT_BF16);
    int32_t *ids = NULL;
    assert_int_equal(be->ops->alloc(be, 64, (void **)&ids), KILN_OK);
    assert_int_equal(be->ops->sample(be, NULL, 1, 10, NULL, NULL, ids), KILN_ERR_INVALID_ARG);
    assert_int_equal(be->ops->sample(be, ids, 1, 0, (const bk_sample_row *)ids, NULL, ids),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(be->ops->sample_reset(be, NULL, 10, NULL, 0), KILN_ERR_INVALID_ARG);
    /* cluster sizes: a power of two up to 16, or 0 */
    assert_int_equal(cusmp_set_cluster(3), KILN_ERR_INVALID_ARG);
    assert_int_equal(cusmp_set_cluster(32), KILN_ERR_INVALID_ARG);
    assert_int_equal(cusmp_set_cluster(-1), KILN_ERR_INVALID_ARG);
    assert_int_equal(cusmp_set_cluster(0), KILN_OK);
    be->ops->free(be, ids);
    be->ops->destroy(be);
}

int main(void)
{
    rng = (uint64_t)time(NULL) * 2654435761u | 1;
    printf("gpu_test_sample seed %llu\n", (unsigned long long)rng);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_bad_args),
        cmocka_unit_test(test_sample_bf16),
        cmocka_unit_test(test_sample_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

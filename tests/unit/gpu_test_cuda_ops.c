/*
 * gpu_test_cuda_ops.c - every op of the CUDA backend (attention has its own
 * test) against the CPU backend, in BF16 and F16.
 *
 * Both backends get the same inputs: random f32 values rounded to the
 * activation type, so the CPU (f32 activations) starts from exactly what
 * the GPU holds.  Weights are the same stored bytes on both (the GPU
 * converts them at load).  Shapes are random within lists of awkward sizes
 * (n = 1, 3, 17, 130 rows; widths that are not multiples of 8); the seed is
 * printed and KILN_TEST_SEED=<n> repeats a run.  Every GPU output buffer is
 * filled with NaN before the op runs, and a result with any non-finite
 * value fails, so an element an op forgot to write cannot pass.
 *
 * Pass: ||gpu - cpu|| / ||cpu|| below 1e-2 (BF16) or 2e-3 (F16).
 *
 * Without a GPU (or a driver) the GPU tests print why and are skipped; the
 * creation test still checks that the failure is a message, not a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "base/error.h"
#include "format/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool gpu_ok;
static char gpu_why[1024];
static uint64_t rng;
static backend *cpu;
static backend *gpus[2];                 /* BF16, F16 */
static const kiln_dtype act_types[2] = {KILN_DT_BF16, KILN_DT_F16};
static const int64_t row_counts[] = {1, 3, 17, 130};
static const int64_t widths[] = {7, 67, 130, 300, 1001};

#define N_ROWS ((int)(sizeof row_counts / sizeof row_counts[0]))
#define N_WIDTHS ((int)(sizeof widths / sizeof widths[0]))

/* ==== helpers =============================================================== */

/* splitmix64 */
static uint64_t rnd_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rnd(float lo, float hi)
{
    return lo + (hi - lo) * (float)((double)(rnd_u64() >> 40) / 16777216.0);
}

static int rnd_int(int n) { return (int)(rnd_u64() % (uint64_t)n); }

#define SKIP_WITHOUT_GPU()                                                               \
    do {                                                                                 \
        if (!gpu_ok) {                                                                   \
            print_message("skipped: %s\n", gpu_why);                                     \
            skip();                                                                      \
        }                                                                                \
    } while (0)

#define OK(call)                                                                         \
    do {                                                                                 \
        kiln_status s_ = (call);                                                         \
        if (s_ != KILN_OK)                                                               \
            fail_msg("%s: %s", #call, kiln_last_error());                                \
    } while (0)

static double tol_of(kiln_dtype dt) { return dt == KILN_DT_BF16 ? 1e-2 : 2e-3; }

/* f32 value of v rounded to dt. */
static float round_act(kiln_dtype dt, float v)
{
    return dt == KILN_DT_BF16 ? quant_bf16_to_f32(quant_f32_to_bf16(v))
                              : quant_f16_to_f32(quant_f32_to_f16(v));
}

/* n random values in [lo, hi), rounded to dt.  Owned: free(). */
static float *rnd_act(kiln_dtype dt, int64_t n, float lo, float hi)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = round_act(dt, rnd(lo, hi));
    return v;
}

static float *host_nan(int64_t n)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = NAN;
    return v;
}

static float *host_copy(const float *x, int64_t n)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    memcpy(v, x, (size_t)n * sizeof *v);
    return v;
}

/* Device buffer of n elements holding host values x (exact in dt). */
static void *dev_put(backend *be, const float *x, int64_t n)
{
    kiln_dtype dt = be->ops->act_dtype;
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    void *p = NULL;
    for (int64_t i = 0; i < n; i++)
        h[i] = dt == KILN_DT_BF16 ? quant_f32_to_bf16(x[i]) : quant_f32_to_f16(x[i]);
    OK(be->ops->alloc(be, (size_t)n * 2, &p));
    OK(be->ops->upload(be, p, h, (size_t)n * 2));
    free(h);
    return p;
}

/* Device buffer of n elements, all NaN (0xffff is a NaN in BF16 and F16). */
static void *dev_nan(backend *be, int64_t n)
{
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * 2);
    void *p = NULL;
    for (int64_t i = 0; i < n; i++)
        h[i] = 0xffff;
    OK(be->ops->alloc(be, (size_t)n * 2, &p));
    OK(be->ops->upload(be, p, h, (size_t)n * 2));
    free(h);
    return p;
}

/* n elements of device buffer p as f32.  Owned: free(). */
static float *dev_get(backend *be, const void *p, int64_t n)
{
    float *v = host_nan(n);
    OK(be->ops->to_host_f32(be, p, n, v));
    return v;
}

/* Relative L2 error of got against ref; infinity when got has a non-finite
 * value or ref is not finite. */
static double rel_err(const float *got, const float *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(ref[i]))
            return INFINITY;
        double e = (double)got[i] - (double)ref[i];
        num += e * e;
        den += (double)ref[i] * (double)ref[i];
    }
    if (den == 0.0)
        return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

/* Fail with the op, type and shape when the error is over the tolerance. */
static void check(const char *what, kiln_dtype dt, int64_t n, int64_t d, const float *got,
                  const float *ref, int64_t count)
{
    double e = rel_err(got, ref, count);
    if (!(e < tol_of(dt))) {
        int64_t bad = 0;
        while (bad < count && isfinite(got[bad]) &&
               fabs((double)got[bad] - ref[bad]) <= tol_of(dt) * (fabs(ref[bad]) + 1e-3))
            bad++;
        fail_msg("%s %s n=%lld d=%lld: relative error %g over %g (first suspect element %lld: "
                 "gpu %g cpu %g; seed above)",
                 what, dtype_name(dt), (long long)n, (long long)d, e, tol_of(dt),
                 (long long)(bad < count ? bad : 0), (double)got[bad < count ? bad : 0],
                 (double)ref[bad < count ? bad : 0]);
    }
}

/* A vector parameter (d values, exact in dt) on both backends: F32 view of
 * the host array on the CPU, converted on the GPU.  Free with
 * vec_free. */
typedef struct vec_pair {
    float *host;
    bk_tensor c, g;
} vec_pair;

static void vec_make(backend *g, int64_t d, float lo, float hi, vec_pair *v)
{
    kiln_dtype dt = g->ops->act_dtype;
    v->host = rnd_act(dt, d, lo, hi);
    OK(cpu->ops->weight(cpu, KILN_DT_F32, d, 1, v->host, (size_t)d * 4, &v->c));
    OK(g->ops->weight(g, KILN_DT_F32, d, 1, v->host, (size_t)d * 4, &v->g));
}

static void vec_free(backend *g, vec_pair *v)
{
    cpu->ops->weight_free(cpu, &v->c);
    g->ops->weight_free(g, &v->g);
    free(v->host);
}

/* ==== batches ================================================================= */

/* A host batch of n tokens in 1..5 sequences, each with up to `past`
 * tokens already in context; one output row per sequence (its last). */
typedef struct tbatch {
    bk_batch_host h;
    int32_t *tokens, *types, *positions, *seq_start, *seq_len, *out_rows;
} tbatch;

static void tbatch_make(tbatch *tb, int n, int vocab, int n_types, int past)
{
    int n_seqs = 1 + rnd_int(n < 5 ? n : 5), t = 0;
    memset(tb, 0, sizeof *tb);
    tb->tokens = malloc((size_t)n * 4);
    tb->types = malloc((size_t)n * 4);
    tb->positions = malloc((size_t)n * 4);
    tb->seq_start = malloc((size_t)(n_seqs + 1) * 4);
    tb->seq_len = malloc((size_t)n_seqs * 4);
    tb->out_rows = malloc((size_t)n_seqs * 4);
    for (int s = 0; s < n_seqs; s++) {
        /* the last sequence takes what is left; the others at least one */
        int news = s == n_seqs - 1 ? n - t : 1 + rnd_int(n - t - (n_seqs - 1 - s));
        int before = past ? rnd_int(past + 1) : 0;
        tb->seq_start[s] = t;
        tb->seq_len[s] = before + news;
        for (int i = 0; i < news; i++, t++) {
            tb->tokens[t] = rnd_int(vocab);
            tb->types[t] = rnd_int(n_types);
            tb->positions[t] = before + i;
        }
        tb->out_rows[s] = t - 1;
    }
    tb->seq_start[n_seqs] = t;
    tb->h = (bk_batch_host){.n_tokens = n, .n_seqs = n_seqs, .n_out = n_seqs,
                            .tokens = tb->tokens, .token_types = tb->types,
                            .positions = tb->positions, .seq_start = tb->seq_start,
                            .seq_len = tb->seq_len, .out_rows = tb->out_rows};
}

static void tbatch_free(tbatch *tb)
{
    free(tb->tokens), free(tb->types), free(tb->positions);
    free(tb->seq_start), free(tb->seq_len), free(tb->out_rows);
}

/* ==== random weights ============================================================= */

/* Offsets of the f16 scale fields of a block of dt; count into *n. */
static void scale_fields(kiln_dtype dt, int *off, int *n)
{
    *n = 1;
    off[0] = 0;
    if (dt == KILN_DT_Q4_K) {
        *n = 2;
        off[1] = 2;
    } else if (dt == KILN_DT_Q6_K) {
        off[0] = 208;
    }
}

/* Bytes of a random (m, k) weight of type dt, values about [-1, 1)
 * (quantized: small finite scales).  Owned: free(); size into *bytes. */
static uint8_t *rand_weight(kiln_dtype dt, int64_t m, int64_t k, size_t *bytes)
{
    const dtype_info *di = dtype_get(dt);
    uint64_t rb;
    assert_int_equal(dtype_nbytes(dt, k, &rb), KILN_OK);
    *bytes = (size_t)rb * (size_t)m;
    uint8_t *w = malloc(*bytes);
    if (dt == KILN_DT_F32 || dt == KILN_DT_F16 || dt == KILN_DT_BF16) {
        for (int64_t i = 0; i < m * k; i++) {
            float f = rnd(-1.0f, 1.0f);
            uint16_t h = dt == KILN_DT_F16 ? quant_f32_to_f16(f) : quant_f32_to_bf16(f);
            if (dt == KILN_DT_F32)
                memcpy(w + 4 * i, &f, 4);
            else
                memcpy(w + 2 * i, &h, 2);
        }
        return w;
    }
    for (size_t i = 0; i < *bytes; i++)
        w[i] = (uint8_t)rnd_u64();
    int off[2], nf;
    scale_fields(dt, off, &nf);
    for (size_t b = 0; b < *bytes / (size_t)di->block_bytes; b++)
        for (int f = 0; f < nf; f++) {
            float d = rnd(0.002f, 0.02f) * (f == 0 && rnd_int(2) ? -1.0f : 1.0f);
            uint16_t h = quant_f32_to_f16(d);
            memcpy(w + b * (size_t)di->block_bytes + (size_t)off[f], &h, 2);
        }
    return w;
}

/* ==== creation, memory, weights ===================================================== */

/* Without a usable GPU: a KILN_ERR_DEVICE (or, for a GPU older than
 * compute capability 8.0, KILN_ERR_UNSUPPORTED) message, no crash.  With one: bad
 * arguments are refused. */
static void test_create(void **state)
{
    backend *be = NULL;
    bk_cuda_opts o;
    (void)state;

    if (!gpu_ok) {
        kiln_status st = bk_cuda_create(0, KILN_DT_BF16, &be);
        assert_true(st == KILN_ERR_DEVICE || st == KILN_ERR_UNSUPPORTED);
        assert_null(be);
        assert_non_null(strstr(kiln_last_error(), "cuda"));
        print_message("no GPU, as reported: %s\n", kiln_last_error());
        return;
    }
    assert_int_equal(bk_cuda_create(0, KILN_DT_F32, &be), KILN_ERR_INVALID_ARG);
    assert_null(be);
    assert_int_equal(bk_cuda_create(9999, KILN_DT_BF16, &be), KILN_ERR_INVALID_ARG);
    assert_null(be);
    bk_cuda_opts_default(&o);
    o.stage_bytes = 1000;
    assert_int_equal(bk_cuda_create_opts(&o, &be), KILN_ERR_INVALID_ARG);
    assert_true(bk_is_cuda(gpus[0]));
    assert_false(bk_is_cuda(cpu));
    assert_string_equal(gpus[0]->ops->name, "cuda");
    assert_int_equal(gpus[0]->ops->act_dtype, KILN_DT_BF16);
    assert_int_equal(gpus[1]->ops->act_dtype, KILN_DT_F16);
}

static void test_memory(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    backend *be = gpus[0];
    size_t before = bk_cuda_bytes_in_use(be);
    uint8_t src[1000], dst[1000];
    void *p = NULL, *huge = NULL;

    for (int i = 0; i < 1000; i++)
        src[i] = (uint8_t)rnd_u64();
    OK(be->ops->alloc(be, sizeof src, &p));
    assert_true(bk_cuda_bytes_in_use(be) >= before + sizeof src);
    OK(be->ops->upload(be, p, src, sizeof src));
    OK(be->ops->download(be, dst, p, sizeof dst));
    assert_memory_equal(src, dst, sizeof src);
    OK(be->ops->sync(be));
    be->ops->free(be, p);
    be->ops->free(be, NULL);
    assert_int_equal(bk_cuda_bytes_in_use(be), before);
    assert_true(bk_cuda_bytes_peak(be) >= before + sizeof src);

    /* Out of memory is a status with a message. */
    assert_int_equal(be->ops->alloc(be, (size_t)1 << 50, &huge), KILN_ERR_OOM);
    assert_null(huge);
    assert_non_null(strstr(kiln_last_error(), "out of device memory"));
    assert_int_equal(bk_cuda_bytes_in_use(be), before);
    /* The backend still works afterwards. */
    OK(be->ops->alloc(be, 64, &p));
    be->ops->free(be, p);
}

/* Weights of every stored type: the GPU copy equals the CPU's dequantized
 * values rounded to the activation type, bit for bit; a backend with 1 MiB
 * staging buffers makes the tensor cross both slots several times. */
static void test_weight_exact(void **state)
{
    static const kiln_dtype types[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q4_0,
                                       KILN_DT_Q8_0, KILN_DT_Q4_K, KILN_DT_Q6_K};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        bk_cuda_opts o;
        backend *be = NULL;
        bk_cuda_opts_default(&o);
        o.act_dtype = act_types[a];
        o.stage_bytes = 1u << 20;
        OK(bk_cuda_create_opts(&o, &be));
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            kiln_dtype dt = types[t];
            int64_t k = dtype_get(dt)->block_elems == 256 ? 1536 : 1024, m = 1000 + rnd_int(64);
            size_t bytes;
            uint8_t *w = rand_weight(dt, m, k, &bytes);
            float *ref = malloc((size_t)(m * k) * sizeof *ref);
            bk_tensor g;
            OK(quant_dequantize(dt, w, bytes, ref, m * k));
            OK(be->ops->weight(be, dt, k, m, w, bytes, &g));
            assert_int_equal(g.dtype, act_types[a]);
            assert_int_equal(g.row_bytes, (size_t)k * 2);
            free(w); /* the GPU copy must not need the source after weight() */
            float *got = dev_get(be, g.data, m * k);
            for (int64_t i = 0; i < m * k; i++) {
                float want = round_act(act_types[a], ref[i]);
                if (memcmp(&got[i], &want, 4) != 0 && !(isnan(got[i]) && isnan(want)))
                    fail_msg("weight %s -> %s (%lld x %lld): element %lld is %g, want %g",
                             dtype_name(dt), dtype_name(act_types[a]), (long long)m,
                             (long long)k, (long long)i, (double)got[i], (double)want);
            }
            be->ops->weight_free(be, &g);
            assert_null(g.data);
            free(got), free(ref);
        }
        assert_int_equal(bk_cuda_bytes_in_use(be) > 0, 1);
        be->ops->destroy(be);
    }
}

static void test_weight_errors(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    backend *be = gpus[0];
    uint8_t buf[4096] = {0};
    bk_tensor w;

    assert_int_equal(be->ops->weight(be, KILN_DT_Q2_K, 256, 1, buf, 84, &w),
                     KILN_ERR_UNSUPPORTED);
    assert_int_equal(be->ops->weight(be, KILN_DT_F32, 64, 16, buf, 64 * 16 * 4 - 1, &w),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(be->ops->weight(be, KILN_DT_Q4_0, 33, 1, buf, sizeof buf, &w),
                     KILN_ERR_FORMAT);
    assert_int_equal(be->ops->weight(be, KILN_DT_F32, 0, 1, buf, sizeof buf, &w),
                     KILN_ERR_INVALID_ARG);
    /* matmul takes only weights in the backend's type */
    bk_tensor raw = {.dtype = KILN_DT_F32, .ne0 = 4, .ne1 = 4, .row_bytes = 16, .data = buf};
    assert_int_equal(be->ops->matmul(be, buf, 1, &raw, NULL, buf), KILN_ERR_INVALID_ARG);
}

/* ==== matmul ====================================================================== */

/* y = x W^T (+ bias) for a stored weight type, on GPU backend g. */
/* y = act(x W^T + bias) on g (matmul_act; act NULL: matmul) against the
 * CPU's matmul then act with `ref_act` (the activation g should compute). */
static void run_product(backend *g, kiln_dtype wt, int64_t n, int64_t k, int64_t m, bool bias,
                        int64_t x_shift, const bk_act *act, bk_act ref_act)
{
    kiln_dtype dt = g->ops->act_dtype;
    size_t bytes;
    uint8_t *wb = rand_weight(wt, m, k, &bytes);
    float *x = rnd_act(dt, n * k, -1.0f, 1.0f), *ref = host_nan(n * m);
    bk_tensor wc, wg;
    vec_pair b = {0};
    void *gx, *gy;

    OK(cpu->ops->weight(cpu, wt, k, m, wb, bytes, &wc));
    OK(g->ops->weight(g, wt, k, m, wb, bytes, &wg));
    if (bias)
        vec_make(g, m, -1.0f, 1.0f, &b);
    /* x_shift elements into a larger buffer: x less aligned than cuBLASLt's
     * default assumption */
    float *xs = malloc((size_t)(n * k + x_shift) * sizeof *xs);
    for (int64_t i = 0; i < x_shift; i++)
        xs[i] = 0.0f;
    memcpy(xs + x_shift, x, (size_t)(n * k) * sizeof *x);
    void *gxs = dev_put(g, xs, n * k + x_shift);
    gx = (uint8_t *)gxs + 2 * x_shift;
    gy = dev_nan(g, n * m);

    OK(cpu->ops->matmul(cpu, x, n, &wc, bias ? &b.c : NULL, ref));
    if (act) {
        OK(cpu->ops->act(cpu, ref, n * m, ref_act));
        OK(g->ops->matmul_act(g, gx, n, &wg, bias ? &b.g : NULL, *act, gy));
    } else {
        OK(g->ops->matmul(g, gx, n, &wg, bias ? &b.g : NULL, gy));
    }
    float *got = dev_get(g, gy, n * m);
    char what[80];
    snprintf(what, sizeof what, "matmul%s %s%s (m=%lld)", act ? "_act" : "", dtype_name(wt),
             bias ? "+bias" : "", (long long)m);
    check(what, dt, n, k, got, ref, n * m);

    free(got), free(x), free(xs), free(ref), free(wb);
    g->ops->free(g, gxs);
    g->ops->free(g, gy);
    if (bias)
        vec_free(g, &b);
    cpu->ops->weight_free(cpu, &wc);
    g->ops->weight_free(g, &wg);
}

/* y = x W^T (+ bias) on g against the CPU. */
static void run_matmul(backend *g, kiln_dtype wt, int64_t n, int64_t k, int64_t m, bool bias,
                       int64_t x_shift)
{
    run_product(g, wt, n, k, m, bias, x_shift, NULL, BK_ACT_SILU);
}

/* Every stored type, both activation types, every row count. */
static void test_matmul_types(void **state)
{
    static const kiln_dtype types[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q4_0,
                                       KILN_DT_Q8_0, KILN_DT_Q4_K, KILN_DT_Q6_K};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            for (int r = 0; r < N_ROWS; r++) {
                int32_t be = dtype_get(types[t])->block_elems;
                int64_t k = be > 1 ? be * (1 + rnd_int(3)) : 32 + rnd_int(300);
                int64_t m = 1 + rnd_int(300);
                run_matmul(gpus[a], types[t], row_counts[r], k, m, rnd_int(2), 0);
            }
}

/* Odd widths, biases, unaligned activations, one large product. */
static void test_matmul_shapes(void **state)
{
    static const int64_t ks[] = {1, 7, 67, 129, 1001};
    static const int64_t ms[] = {1, 3, 33, 257};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        for (int r = 0; r < N_ROWS; r++)
            for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
                for (size_t j = 0; j < sizeof ms / sizeof ms[0]; j++)
                    run_matmul(gpus[a], KILN_DT_BF16, row_counts[r], ks[i], ms[j], true,
                               rnd_int(2) ? 1 : 0);
        /* the same shape twice uses the cached plan */
        run_matmul(gpus[a], KILN_DT_F32, 17, 64, 48, true, 0);
        run_matmul(gpus[a], KILN_DT_F32, 17, 64, 48, true, 0);
        run_matmul(gpus[a], KILN_DT_BF16, 130, 2048, 1536, false, 0);
        /* decode rows (gemv.cu): every row count it takes, long rows, a
         * width that is not a multiple of its 8 columns per block */
        for (int64_t n = 1; n <= 9; n++)
            run_matmul(gpus[a], KILN_DT_BF16, n, 4096 + 8 * rnd_int(64), 1000 + rnd_int(99),
                       rnd_int(2), 0);
        run_matmul(gpus[a], KILN_DT_F16, 1, 14336, 4096, true, 0);
    }
}

/* matmul_act: every activation, decode rows (gemv, then the activation
 * kernel) and cuBLASLt rows (the epilogue for RELU and the tanh GELU), with
 * and without a bias, against the CPU's matmul then act; the erf GELU is
 * exact (a kernel) unless the backend was told to take the tanh form. */
static void test_matmul_act(void **state)
{
    static const bk_act acts[] = {BK_ACT_SILU, BK_ACT_GELU, BK_ACT_GELU_TANH, BK_ACT_RELU};
    static const int64_t ns[] = {1, 5, 17, 130, 1000};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++)
        for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
            for (size_t r = 0; r < sizeof ns / sizeof ns[0]; r++) {
                int64_t k = 8 * (1 + rnd_int(100)), m = 8 * (1 + rnd_int(200));
                run_product(gpus[a], act_types[a], ns[r], k, m, rnd_int(2), 0, &acts[i],
                            acts[i]);
            }
    float one = 0.0f;
    bk_tensor w = {0};
    assert_int_equal(gpus[0]->ops->matmul_act(gpus[0], &one, 1, &w, NULL, BK_ACT_GELU, &one),
                     KILN_ERR_INVALID_ARG);
}

/* The GELU a 300-row product computes on backend g, at pre-activations
 * near -2.7 where the erf and tanh forms differ most (~4.7e-4, ~5 % of the
 * value): y = x W^T with W picking x's first column; *d_erf and *d_tanh
 * the largest differences from the two forms. */
static void gelu_form_of(backend *g, double *d_erf, double *d_tanh)
{
    const int64_t n = 300, k = 8, m = 16;
    float *x = calloc((size_t)(n * k), sizeof *x), *w = calloc((size_t)(m * k), sizeof *w);
    bk_tensor wg;
    for (int64_t i = 0; i < n; i++)
        x[i * k] = round_act(g->ops->act_dtype, -2.4f - 0.6f * (float)i / (float)n);
    for (int64_t j = 0; j < m; j++)
        w[j * k] = 1.0f;
    OK(g->ops->weight(g, KILN_DT_F32, k, m, w, (size_t)(m * k) * 4, &wg));
    void *gx = dev_put(g, x, n * k), *gy = dev_nan(g, n * m);
    OK(g->ops->matmul_act(g, gx, n, &wg, NULL, BK_ACT_GELU, gy));
    float *got = dev_get(g, gy, n * m);
    *d_erf = *d_tanh = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i * k];
        double e = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        double t = 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        for (int64_t j = 0; j < m; j++) {
            *d_erf = fmax(*d_erf, fabs(got[i * m + j] - e));
            *d_tanh = fmax(*d_tanh, fabs(got[i * m + j] - t));
        }
    }
    free(got), free(x), free(w);
    g->ops->free(g, gx), g->ops->free(g, gy);
    g->ops->weight_free(g, &wg);
}

/* KILN_CUDA_GELU_TANH=1 (bk_cuda_opts.gelu_tanh): the erf GELU after a
 * cuBLASLt product takes the tanh form in its epilogue; by default it is
 * the erf form.  The two differ by ~4.7e-4 near -2.7, far above the
 * rounding of values near -0.009 in either type. */
static void test_gelu_tanh_knob(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        bk_cuda_opts o;
        backend *t = NULL;
        double de, dt;
        gelu_form_of(gpus[a], &de, &dt);
        print_message("%s default: |gelu - erf form| %.2e, |gelu - tanh form| %.2e\n",
                      dtype_name(act_types[a]), de, dt);
        assert_true(de < 1e-4 && dt > 3e-4);
        bk_cuda_opts_default(&o);
        o.act_dtype = act_types[a];
        o.gelu_tanh = true;
        OK(bk_cuda_create_opts(&o, &t));
        gelu_form_of(t, &de, &dt);
        print_message("%s gelu_tanh: |gelu - erf form| %.2e, |gelu - tanh form| %.2e\n",
                      dtype_name(act_types[a]), de, dt);
        assert_true(dt < 1e-4 && de > 3e-4);
        t->ops->destroy(t);
    }
}

/* Row counts past MM_EXACT_ROWS share their bucket's algorithm: the first
 * product of a bucket asks the heuristic (for the bucket's plan) and
 * checks the algorithm at its own row count; another row count of the
 * same bucket is a check alone; the bucket's own row count is its plan.
 * A bucket from MM_TUNE_ROWS rows is tuned once.  Every product against
 * the CPU. */
static void test_matmul_buckets(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    bk_cuda_opts o;
    backend *g = NULL;
    bk_cuda_mm_stats s0, s1, s2, s3;
    bk_cuda_opts_default(&o);
    OK(bk_cuda_create_opts(&o, &g));
    bk_cuda_mm_stats_get(g, &s0);
    assert_int_equal(s0.plans, 0);
    run_product(g, KILN_DT_BF16, 300, 256, 200, true, 0, NULL, BK_ACT_SILU); /* bucket 320 */
    bk_cuda_mm_stats_get(g, &s1);
    assert_int_equal(s1.plans, 2);
    assert_true(s1.heuristic_calls >= 1);
    assert_int_equal(s1.checks, 1);
    run_product(g, KILN_DT_BF16, 310, 256, 200, true, 0, NULL, BK_ACT_SILU);
    bk_cuda_mm_stats_get(g, &s2);
    assert_int_equal(s2.plans, 3);
    assert_int_equal(s2.heuristic_calls, s1.heuristic_calls);
    assert_int_equal(s2.checks, 2);
    run_product(g, KILN_DT_BF16, 320, 256, 200, true, 0, NULL, BK_ACT_SILU);
    run_product(g, KILN_DT_BF16, 200, 256, 200, true, 0, NULL, BK_ACT_SILU); /* exact */
    bk_cuda_mm_stats_get(g, &s3);
    assert_int_equal(s3.plans, 4);
    assert_int_equal(s3.checks, 2);
    assert_true(s3.heuristic_calls > s2.heuristic_calls);
    assert_int_equal(s3.tuned, 0);
    /* from MM_TUNE_ROWS rows the bucket's plan times the heuristic's
     * candidates on the call's operands; the product is still exact */
    run_product(g, KILN_DT_F16, 2000, 512, 384, true, 0, NULL, BK_ACT_SILU); /* bucket 2048 */
    bk_cuda_mm_stats_get(g, &s3);
    assert_int_equal(s3.tuned, 1);
    print_message("planner: %lld plans, %lld heuristic calls (%.3f ms), %lld checks (%.3f ms), "
                  "%lld tuned (%lld away from the first candidate, %.3f ms)\n",
                  (long long)s3.plans, (long long)s3.heuristic_calls, s3.heuristic_s * 1e3,
                  (long long)s3.checks, s3.check_s * 1e3, (long long)s3.tuned,
                  (long long)s3.tuned_away, s3.tune_s * 1e3);
    g->ops->destroy(g);
}

/* to_host_f32_start: two copies in flight in the two slots, each exact
 * once its slot is waited for; a slot grows (a larger copy after a small
 * one) while the other is in flight; bad slots are refused. */
static void test_to_host_async(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        const int64_t n0 = 1000, n1 = 3001, n2 = 200000;
        float *x0 = rnd_act(dt, n0, -4.0f, 4.0f), *x1 = rnd_act(dt, n1, -4.0f, 4.0f);
        float *x2 = rnd_act(dt, n2, -4.0f, 4.0f);
        void *g0 = dev_put(g, x0, n0), *g1 = dev_put(g, x1, n1), *g2 = dev_put(g, x2, n2);
        const float *h0 = NULL, *h1 = NULL, *h2 = NULL;
        OK(g->ops->to_host_f32_start(g, g0, n0, 0, &h0));
        OK(g->ops->to_host_f32_start(g, g1, n1, 1, &h1));
        OK(g->ops->to_host_wait(g, 0));
        assert_memory_equal(h0, x0, (size_t)n0 * sizeof(float));
        OK(g->ops->to_host_f32_start(g, g2, n2, 0, &h2)); /* slot 0 grows; slot 1 in flight */
        OK(g->ops->to_host_wait(g, 1));
        assert_memory_equal(h1, x1, (size_t)n1 * sizeof(float));
        OK(g->ops->to_host_wait(g, 0));
        assert_memory_equal(h2, x2, (size_t)n2 * sizeof(float));
        assert_int_equal(g->ops->to_host_f32_start(g, g0, n0, 2, &h0), KILN_ERR_INVALID_ARG);
        assert_int_equal(g->ops->to_host_wait(g, -1), KILN_ERR_INVALID_ARG);
        free(x0), free(x1), free(x2);
        g->ops->free(g, g0), g->ops->free(g, g1), g->ops->free(g, g2);
    }
}

/* A GPU backend of activation type dt with every matmul of <= 8 rows on
 * gemv.cu's split `split` ("RBxU"), or NULL when the split is refused. */
static backend *gemv_backend(kiln_dtype dt, const char *split, bool pdl)
{
    bk_cuda_opts o;
    backend *be = NULL;
    kiln_status st;

    bk_cuda_opts_default(&o);
    o.act_dtype = dt;
    setenv("KILN_CUDA_GEMV_ALL", "1", 1);
    setenv("KILN_CUDA_GEMV_SPLIT", split, 1);
    if (!pdl)
        setenv("KILN_CUDA_NO_PDL", "1", 1);
    st = bk_cuda_create_opts(&o, &be);
    unsetenv("KILN_CUDA_GEMV_ALL");
    unsetenv("KILN_CUDA_GEMV_SPLIT");
    unsetenv("KILN_CUDA_NO_PDL");
    return st == KILN_OK ? be : NULL;
}

/* KILN_CUDA_PREFILL_ENCODER takes 0 or 1 and nothing else: another value
 * stops the backend with a message naming it. */
static void test_prefill_encoder_knob(void **state)
{
    static const char *const bad[] = {"2", "yes", "01"};
    static const char *const good[] = {"0", "1", ""};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        backend *be = NULL;
        setenv("KILN_CUDA_PREFILL_ENCODER", bad[i], 1);
        assert_int_equal(bk_cuda_create(0, KILN_DT_BF16, &be), KILN_ERR_INVALID_ARG);
        assert_null(be);
        assert_non_null(strstr(kiln_last_error(), "KILN_CUDA_PREFILL_ENCODER"));
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        backend *be = NULL;
        setenv("KILN_CUDA_PREFILL_ENCODER", good[i], 1);
        assert_int_equal(bk_cuda_create(0, KILN_DT_BF16, &be), KILN_OK);
        be->ops->destroy(be);
    }
    unsetenv("KILN_CUDA_PREFILL_ENCODER");
}

/* Every split gemv.cu is built for, every row count it takes, against the
 * CPU: k from one 16-byte piece to several per thread and not a multiple
 * of the block's pieces, m not a multiple of the split's rows, f16 too. */
static void test_gemv_splits(void **state)
{
    static const char *const splits[] = {"1x4", "2x2", "2x4", "4x1", "4x2", "8x1"};
    static const char *const bad[] = {"3x3", "2x1", "x", "0x4", "8x8"};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        assert_null(gemv_backend(KILN_DT_BF16, bad[b], true));
        assert_non_null(strstr(kiln_last_error(), "KILN_CUDA_GEMV_SPLIT"));
    }
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++)
        for (int a = 0; a < 2; a++) {
            backend *g = gemv_backend(act_types[a], splits[i], true);
            if (!g)
                fail_msg("split %s: %s", splits[i], kiln_last_error());
            for (int64_t n = 1; n <= 8; n++) {
                const int64_t ks[] = {8, 8 * (1 + rnd_int(40)), 2048 + 8 * rnd_int(300),
                                      8 * (2048 + rnd_int(64))};
                const int64_t k = ks[rnd_int(4)], m = 1 + rnd_int(3) * (1 + rnd_int(700));
                run_matmul(g, act_types[a], n, k, m, rnd_int(2), 0);
            }
            g->ops->destroy(g);
        }
}

/* The CPU's rmsnorm of x (n, k) by nw, each element rounded to dt as the
 * GPU stores it when `rounded`, else left in f32.  Owned: free(). */
static float *ref_norm(kiln_dtype dt, const float *x, int64_t n, int64_t k, const vec_pair *nw,
                       float eps, bool add_one, bool rounded)
{
    float *xr = host_nan(n * k);
    OK(cpu->ops->rmsnorm(cpu, x, n, k, &nw->c, eps, add_one, xr));
    for (int64_t i = 0; rounded && i < n * k; i++)
        xr[i] = round_act(dt, xr[i]);
    return xr;
}

/* check() against either of two references: a product with a norm in it
 * may round the normed input to dt (separate norm and matmul launches) or
 * not (the norm inside a gemv), and at a short k a single output can tell
 * the two apart by more than the tolerance; both are the op. */
static void check2(const char *what, kiln_dtype dt, int64_t n, int64_t d, const float *got,
                   const float *ref_rounded, const float *ref_exact, int64_t count)
{
    if (rel_err(got, ref_exact, count) < tol_of(dt))
        return;
    check(what, dt, n, d, got, ref_rounded, count);
}

/* out = glu(round(xr Wg^T + bg), round(xr Wu^T + bu)) on the CPU, gate and
 * up rounded to dt as the GPU stores them; rg, ru (n, m) scratch. */
static void ref_glu(kiln_dtype dt, const float *xr, int64_t n, int64_t m, const bk_tensor *wg,
                    const bk_tensor *bg, const bk_tensor *wu, const bk_tensor *bu, bk_act act,
                    float *rg, float *ru, float *out)
{
    OK(cpu->ops->matmul(cpu, xr, n, wg, bg, rg));
    OK(cpu->ops->matmul(cpu, xr, n, wu, bu, ru));
    for (int64_t i = 0; i < n * m; i++) {
        rg[i] = round_act(dt, rg[i]);
        ru[i] = round_act(dt, ru[i]);
    }
    OK(cpu->ops->glu(cpu, rg, ru, n, m, act, out));
}

/* y = act(x' Wg^T + bg) * (x' Wu^T + bu), x' = x or rmsnorm(x), through
 * matmul_glu on GPU backend g: against the CPU's norm, matmul, matmul (each
 * rounded to the activation type as the GPU stores it) and glu; without a
 * norm also bit for bit against g's own matmul, matmul and glu - the fused
 * gemv launch and the three-op path it replaces (cuBLASLt, or gemv past
 * its sizes) must agree exactly.  Scratch and outputs start as NaN. */
static void run_matmul_glu(backend *g, int64_t n, int64_t k, int64_t m, bool bias, bk_act act,
                           bool norm)
{
    kiln_dtype dt = g->ops->act_dtype;
    size_t bytes;
    uint8_t *wgb = rand_weight(dt, m, k, &bytes), *wub = rand_weight(dt, m, k, &bytes);
    float *x = rnd_act(dt, n * k, -1.0f, 1.0f);
    float *rg = host_nan(n * m), *ru = host_nan(n * m), *ref = host_nan(n * m);
    bk_tensor wgc, wug, wgg, wuc;
    vec_pair bg = {0}, bu = {0}, nw = {0};
    void *gx = dev_put(g, x, n * k), *gy = dev_nan(g, n * m), *gy3 = dev_nan(g, n * m);
    void *ggate = dev_nan(g, n * m), *gup = dev_nan(g, n * m), *gxn = dev_nan(g, n * k);
    const bool add_one = rnd_int(2);
    bk_norm gn = {.eps = 1e-5f, .add_one = add_one};

    OK(cpu->ops->weight(cpu, dt, k, m, wgb, bytes, &wgc));
    OK(cpu->ops->weight(cpu, dt, k, m, wub, bytes, &wuc));
    OK(g->ops->weight(g, dt, k, m, wgb, bytes, &wgg));
    OK(g->ops->weight(g, dt, k, m, wub, bytes, &wug));
    if (bias) {
        vec_make(g, m, -1.0f, 1.0f, &bg);
        vec_make(g, m, -1.0f, 1.0f, &bu);
    }
    float *xr = x, *ref2 = NULL;
    if (norm) {
        vec_make(g, k, add_one ? -0.5f : 0.5f, add_one ? 0.5f : 1.5f, &nw);
        gn.w = &nw.g;
        xr = ref_norm(dt, x, n, k, &nw, gn.eps, add_one, false);
        ref2 = host_nan(n * m);
        ref_glu(dt, xr, n, m, &wgc, bias ? &bg.c : NULL, &wuc, bias ? &bu.c : NULL, act, rg, ru,
                ref2);
        for (int64_t i = 0; i < n * k; i++)
            xr[i] = round_act(dt, xr[i]);
    }
    ref_glu(dt, xr, n, m, &wgc, bias ? &bg.c : NULL, &wuc, bias ? &bu.c : NULL, act, rg, ru, ref);

    OK(g->ops->matmul_glu(g, gx, n, norm ? &gn : NULL, &wgg, bias ? &bg.g : NULL, &wug,
                          bias ? &bu.g : NULL, act, gxn, ggate, gup, gy));
    float *got = dev_get(g, gy, n * m);
    char what[96];
    snprintf(what, sizeof what, "matmul_glu act %d%s%s (k=%lld m=%lld)", (int)act,
             bias ? " +bias" : "", norm ? " +norm" : "", (long long)k, (long long)m);
    if (norm)
        check2(what, dt, n, k, got, ref, ref2, n * m);
    else
        check(what, dt, n, k, got, ref, n * m);

    if (!norm) {
        OK(g->ops->matmul(g, gx, n, &wgg, bias ? &bg.g : NULL, ggate));
        OK(g->ops->matmul(g, gx, n, &wug, bias ? &bu.g : NULL, gup));
        OK(g->ops->glu(g, ggate, gup, n, m, act, gy3));
        float *three = dev_get(g, gy3, n * m);
        for (int64_t i = 0; i < n * m; i++)
            if (memcmp(&got[i], &three[i], sizeof got[i]))
                fail_msg("%s n=%lld %s: element %lld is %g fused, %g from matmul, matmul, glu",
                         what, (long long)n, dtype_name(dt), (long long)i, (double)got[i],
                         (double)three[i]);
        free(three);
    } else {
        free(xr), free(ref2);
        vec_free(g, &nw);
    }

    free(got), free(x), free(rg), free(ru), free(ref), free(wgb), free(wub);
    g->ops->free(g, gx), g->ops->free(g, gy), g->ops->free(g, gy3), g->ops->free(g, gxn);
    g->ops->free(g, ggate), g->ops->free(g, gup);
    if (bias)
        vec_free(g, &bg), vec_free(g, &bu);
    cpu->ops->weight_free(cpu, &wgc), cpu->ops->weight_free(cpu, &wuc);
    g->ops->weight_free(g, &wgg), g->ops->weight_free(g, &wug);
}

/* y = rmsnorm(x) W^T (+ bias) through matmul_norm, and res += x W^T (+
 * bias) through matmul_res, on GPU backend g against the CPU (the norm and
 * the product rounded as the GPU stores them).  Where the gemv takes the
 * product (decode rows, k a multiple of 8) matmul_res is also bit for bit
 * g's matmul then add; elsewhere cuBLASLt adds the product into res in
 * place, rounded once, and the reference is rounded once too. */
static void run_matmul_norm_res(backend *g, int64_t n, int64_t k, int64_t m, bool bias)
{
    kiln_dtype dt = g->ops->act_dtype;
    size_t bytes;
    uint8_t *wb = rand_weight(dt, m, k, &bytes);
    float *x = rnd_act(dt, n * k, -2.0f, 2.0f), *res = rnd_act(dt, n * m, -4.0f, 4.0f);
    float *ref = host_nan(n * m);
    bk_tensor wc, wg;
    vec_pair b = {0}, nw = {0};
    const bool add_one = rnd_int(2);
    void *gx = dev_put(g, x, n * k), *gy = dev_nan(g, n * m), *gxn = dev_nan(g, n * k);
    void *gres = dev_put(g, res, n * m), *gres2 = dev_put(g, res, n * m), *gtmp = dev_nan(g, n * m);
    char what[96];

    OK(cpu->ops->weight(cpu, dt, k, m, wb, bytes, &wc));
    OK(g->ops->weight(g, dt, k, m, wb, bytes, &wg));
    if (bias)
        vec_make(g, m, -1.0f, 1.0f, &b);
    vec_make(g, k, add_one ? -0.5f : 0.5f, add_one ? 0.5f : 1.5f, &nw);
    bk_norm gn = {.w = &nw.g, .eps = 1e-6f, .add_one = add_one};

    /* matmul_norm */
    float *xe = ref_norm(dt, x, n, k, &nw, gn.eps, add_one, false);
    float *xr = ref_norm(dt, x, n, k, &nw, gn.eps, add_one, true), *ref2 = host_nan(n * m);
    OK(cpu->ops->matmul(cpu, xr, n, &wc, bias ? &b.c : NULL, ref));
    OK(cpu->ops->matmul(cpu, xe, n, &wc, bias ? &b.c : NULL, ref2));
    OK(g->ops->matmul_norm(g, gx, n, &gn, &wg, bias ? &b.g : NULL, gxn, gy));
    float *got = dev_get(g, gy, n * m);
    snprintf(what, sizeof what, "matmul_norm%s%s (k=%lld m=%lld)", bias ? " +bias" : "",
             add_one ? " add_one" : "", (long long)k, (long long)m);
    check2(what, dt, n, k, got, ref, ref2, n * m);
    free(got), free(xe), free(ref2);

    /* matmul_res */
    const bool gemv = n <= g->ops->fused_rows(g) && k % 8 == 0;
    OK(cpu->ops->matmul(cpu, x, n, &wc, bias ? &b.c : NULL, ref));
    for (int64_t i = 0; i < n * m; i++)
        ref[i] = round_act(dt, res[i] + (gemv ? round_act(dt, ref[i]) : ref[i]));
    OK(g->ops->matmul_res(g, gx, n, &wg, bias ? &b.g : NULL, gtmp, gres));
    got = dev_get(g, gres, n * m);
    snprintf(what, sizeof what, "matmul_res%s (k=%lld m=%lld)", bias ? " +bias" : "",
             (long long)k, (long long)m);
    check(what, dt, n, k, got, ref, n * m);
    OK(g->ops->matmul(g, gx, n, &wg, bias ? &b.g : NULL, gtmp));
    OK(g->ops->add(g, gres2, gtmp, n * m, gres2));
    float *two = dev_get(g, gres2, n * m);
    for (int64_t i = 0; gemv && i < n * m; i++)
        if (memcmp(&got[i], &two[i], sizeof got[i]))
            fail_msg("%s n=%lld %s: element %lld is %g fused, %g from matmul, add", what,
                     (long long)n, dtype_name(dt), (long long)i, (double)got[i], (double)two[i]);
    if (!gemv) /* one rounding against two: within the type's precision */
        check(what, dt, n, k, got, two, n * m);

    free(got), free(two), free(x), free(xr), free(res), free(ref), free(wb);
    g->ops->free(g, gx), g->ops->free(g, gy), g->ops->free(g, gxn);
    g->ops->free(g, gres), g->ops->free(g, gres2), g->ops->free(g, gtmp);
    if (bias)
        vec_free(g, &b);
    vec_free(g, &nw);
    cpu->ops->weight_free(cpu, &wc);
    g->ops->weight_free(g, &wg);
}

/* matmul_res at a row count whose new plan is tuned (MM_TUNE_ROWS, 1024
 * rows and more) and made by matmul_res itself (a shape no other case
 * takes): the tuning runs write the scratch, never the residual, so res
 * ends as res + x W^T + bias once - against the CPU, bias and no bias;
 * and with no scratch (the plan is not tuned then). */
static void run_matmul_res_tuned(backend *g)
{
    kiln_dtype dt = g->ops->act_dtype;
    const int64_t n = 1100 + rnd_int(200), k = 136, m = 200 + 8 * rnd_int(4);
    size_t bytes;
    uint8_t *wb = rand_weight(dt, m, k, &bytes);
    float *x = rnd_act(dt, n * k, -2.0f, 2.0f), *res = rnd_act(dt, n * m, -4.0f, 4.0f);
    float *ref = host_nan(n * m);
    bk_tensor wc, wg;
    vec_pair b = {0};
    void *gx = dev_put(g, x, n * k), *gtmp = dev_nan(g, n * m);
    char what[96];

    OK(cpu->ops->weight(cpu, dt, k, m, wb, bytes, &wc));
    OK(g->ops->weight(g, dt, k, m, wb, bytes, &wg));
    vec_make(g, m, -1.0f, 1.0f, &b);
    /* (bias, scratch): each key's plan is made by the first call of it -
     * tuned without a bias, untuned with one */
    static const int cases[4][2] = {{0, 1}, {0, 0}, {1, 0}, {1, 1}};
    for (int c = 0; c < 4; c++) {
        const int with_bias = cases[c][0], scratch = cases[c][1];
        void *gres = dev_put(g, res, n * m);
        OK(cpu->ops->matmul(cpu, x, n, &wc, with_bias ? &b.c : NULL, ref));
        for (int64_t i = 0; i < n * m; i++)
            ref[i] = round_act(dt, res[i] + ref[i]);
        OK(g->ops->matmul_res(g, gx, n, &wg, with_bias ? &b.g : NULL, scratch ? gtmp : NULL,
                              gres));
        float *got = dev_get(g, gres, n * m);
        snprintf(what, sizeof what, "matmul_res tuned%s%s (n=%lld m=%lld)",
                 with_bias ? " +bias" : "", scratch ? "" : " no scratch", (long long)n,
                 (long long)m);
        check(what, dt, n, k, got, ref, n * m);
        free(got);
        g->ops->free(g, gres);
    }
    free(x), free(res), free(ref), free(wb);
    g->ops->free(g, gx), g->ops->free(g, gtmp);
    vec_free(g, &b);
    cpu->ops->weight_free(cpu, &wc);
    g->ops->weight_free(g, &wg);
}

/* The fused forms of a decode step's matmuls: the gated input side
 * (every activation, with and without a norm), the normed projection and
 * the residual one, both types, decode rows (one fused gemv launch, on the
 * default split and on every split built) and more rows or a k gemv
 * cannot take (the separate ops); fused_rows; bad arguments refused. */
static void test_matmul_fused(void **state)
{
    static const char *const splits[] = {"1x4", "2x2", "2x4", "4x1", "4x2", "8x1"};
    static const bk_act acts[] = {BK_ACT_SILU, BK_ACT_GELU, BK_ACT_GELU_TANH, BK_ACT_RELU};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        assert_int_equal(g->ops->fused_rows(g), 8);
        for (int64_t n = 1; n <= 10; n++) {
            const int64_t ks[] = {8, 8 * (1 + rnd_int(40)), 2048 + 8 * rnd_int(300), 67};
            const int64_t k = ks[rnd_int(4)], m = 1 + rnd_int(3) * (1 + rnd_int(700));
            run_matmul_glu(g, n, k, m, rnd_int(2), acts[rnd_int(4)], rnd_int(2));
            run_matmul_norm_res(g, n, k, m, rnd_int(2));
        }
        run_matmul_glu(g, 1, 2048, 8192, false, BK_ACT_SILU, true);  /* the 1B shape */
        run_matmul_glu(g, 1, 4096, 14336, false, BK_ACT_SILU, false); /* the 8B shape */
        run_matmul_glu(g, 130, 256, 96, true, BK_ACT_GELU, true);     /* cuBLASLt */
        run_matmul_norm_res(g, 1, 2048, 3072, false);
        run_matmul_norm_res(g, 1, 8192, 2048, false);
        run_matmul_norm_res(g, 130, 256, 96, true);
        run_matmul_res_tuned(g);
    }
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        int a = rnd_int(2);
        backend *g = gemv_backend(act_types[a], splits[i], true);
        if (!g)
            fail_msg("split %s: %s", splits[i], kiln_last_error());
        for (int64_t n = 1; n <= 8; n++) {
            const int64_t k = 8 * (1 + rnd_int(600)), m = 1 + rnd_int(3) * (1 + rnd_int(300));
            run_matmul_glu(g, n, k, m, rnd_int(2), acts[rnd_int(4)], rnd_int(2));
            run_matmul_norm_res(g, n, k, m, rnd_int(2));
        }
        g->ops->destroy(g);
    }

    /* refused: gate and up of different shapes, an unknown activation, no
     * up weight, a norm weight of the wrong length */
    backend *g = gpus[0];
    size_t bytes;
    uint8_t *w1 = rand_weight(KILN_DT_BF16, 16, 64, &bytes);
    uint8_t *w2 = rand_weight(KILN_DT_BF16, 8, 64, &bytes);
    bk_tensor t1, t2;
    void *buf = dev_nan(g, 64);
    OK(g->ops->weight(g, KILN_DT_BF16, 64, 16, w1, (size_t)16 * 64 * 2, &t1));
    OK(g->ops->weight(g, KILN_DT_BF16, 64, 8, w2, (size_t)8 * 64 * 2, &t2));
    bk_norm bad = {.w = &t1, .eps = 1e-6f, .add_one = false}; /* 1024 elements, not 64 */
    assert_int_equal(g->ops->matmul_glu(g, buf, 1, NULL, &t1, NULL, &t2, NULL, BK_ACT_SILU, buf,
                                        buf, buf, buf), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "matmul_glu"));
    assert_int_equal(g->ops->matmul_glu(g, buf, 1, NULL, &t1, NULL, &t1, NULL, (bk_act)99, buf,
                                        buf, buf, buf), KILN_ERR_INVALID_ARG);
    assert_int_equal(g->ops->matmul_glu(g, buf, 1, NULL, &t1, NULL, NULL, NULL, BK_ACT_SILU, buf,
                                        buf, buf, buf), KILN_ERR_INVALID_ARG);
    assert_int_equal(g->ops->matmul_glu(g, buf, 1, &bad, &t1, NULL, &t1, NULL, BK_ACT_SILU, buf,
                                        buf, buf, buf), KILN_ERR_INVALID_ARG);
    assert_int_equal(g->ops->matmul_norm(g, buf, 1, &bad, &t1, NULL, buf, buf),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "norm weight"));
    assert_int_equal(g->ops->matmul_res(g, buf, 1, NULL, NULL, buf, buf), KILN_ERR_INVALID_ARG);
    g->ops->weight_free(g, &t1), g->ops->weight_free(g, &t2);
    g->ops->free(g, buf);
    free(w1), free(w2);
}

/* A decode block's fused chain queued with no host wait, programmatic
 * launch on, on every gemv split: h += (norm(h) W1) W2 (matmul_norm, then
 * matmul_res writing the h the norm read), h += glu(norm(h)) W3
 * (matmul_glu with its norm, matmul_res), at 1 and 8 rows against the CPU
 * with the GPU's roundings (the normed inputs unrounded, as inside the
 * gemv).  A residual write that overtook a read of h
 * would change every later value. */
static void test_fused_chain(void **state)
{
    static const char *const splits[] = {"1x4", "2x2", "4x1", "8x1"};
    enum { D = 1024, F = 2048 };
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        backend *g = gemv_backend(KILN_DT_BF16, splits[i], true);
        kiln_dtype dt = KILN_DT_BF16;
        if (!g)
            fail_msg("split %s: %s", splits[i], kiln_last_error());
        for (int64_t n = 1; n <= 8; n += 7) {
            const int64_t shp[4][2] = {{D, D}, {D, D}, {F, D}, {D, F}}; /* (m, k) */
            uint8_t *wb[5];
            bk_tensor wc[5], wg[5];
            for (int l = 0; l < 5; l++) {
                size_t bytes;
                int64_t mm = l < 4 ? shp[l][0] : F, kk = l < 4 ? shp[l][1] : D;
                wb[l] = rand_weight(dt, mm, kk, &bytes);
                OK(cpu->ops->weight(cpu, dt, kk, mm, wb[l], bytes, &wc[l]));
                OK(g->ops->weight(g, dt, kk, mm, wb[l], bytes, &wg[l]));
            }
            vec_pair n1, n2;
            vec_make(g, D, 0.5f, 1.5f, &n1);
            vec_make(g, D, 0.5f, 1.5f, &n2);
            bk_norm g1 = {.w = &n1.g, .eps = 1e-5f}, g2 = {.w = &n2.g, .eps = 1e-5f};
            float *h = rnd_act(dt, n * D, -2.0f, 2.0f);
            void *gh = dev_put(g, h, n * D), *ga = dev_nan(g, n * F), *gb = dev_nan(g, n * F);
            void *gxn = dev_nan(g, n * F), *gt = dev_nan(g, n * F), *gu = dev_nan(g, n * F);
            OK(g->ops->sync(g));
            OK(g->ops->matmul_norm(g, gh, n, &g1, &wg[0], NULL, gxn, ga));
            OK(g->ops->matmul_res(g, ga, n, &wg[1], NULL, gt, gh));
            OK(g->ops->matmul_glu(g, gh, n, &g2, &wg[2], NULL, &wg[4], NULL, BK_ACT_SILU, gxn,
                                  gt, gu, gb));
            OK(g->ops->matmul_res(g, gb, n, &wg[3], NULL, gt, gh));

            float *a = host_nan(n * F), *gate = host_nan(n * F), *up = host_nan(n * F);
            float *xr = ref_norm(dt, h, n, D, &n1, 1e-5f, false, false);
            OK(cpu->ops->matmul(cpu, xr, n, &wc[0], NULL, a));
            for (int64_t e = 0; e < n * D; e++)
                a[e] = round_act(dt, a[e]);
            OK(cpu->ops->matmul(cpu, a, n, &wc[1], NULL, gate));
            for (int64_t e = 0; e < n * D; e++)
                h[e] = round_act(dt, h[e] + round_act(dt, gate[e]));
            free(xr);
            xr = ref_norm(dt, h, n, D, &n2, 1e-5f, false, false);
            ref_glu(dt, xr, n, F, &wc[2], NULL, &wc[4], NULL, BK_ACT_SILU, gate, up, a);
            for (int64_t e = 0; e < n * F; e++)
                a[e] = round_act(dt, a[e]);
            OK(cpu->ops->matmul(cpu, a, n, &wc[3], NULL, gate));
            for (int64_t e = 0; e < n * D; e++)
                h[e] = round_act(dt, h[e] + round_act(dt, gate[e]));
            float *got = dev_get(g, gh, n * D);
            char what[64];
            snprintf(what, sizeof what, "fused chain %s", splits[i]);
            check(what, dt, n, D, got, h, n * D);

            free(got), free(a), free(gate), free(up), free(xr), free(h);
            g->ops->free(g, gh), g->ops->free(g, ga), g->ops->free(g, gb);
            g->ops->free(g, gxn), g->ops->free(g, gt), g->ops->free(g, gu);
            vec_free(g, &n1), vec_free(g, &n2);
            for (int l = 0; l < 5; l++) {
                cpu->ops->weight_free(cpu, &wc[l]);
                g->ops->weight_free(g, &wg[l]);
                free(wb[l]);
            }
        }
        g->ops->destroy(g);
    }
}

/* A chain of dependent kernels queued with no host wait between them -
 * rmsnorm, then four matmuls each reading the one before it, 1 and 8 rows
 * - on every gemv split with programmatic launch on (a matmul's early
 * weight reads overlap the kernel before it; its reads of that kernel's
 * output must not) and off; the outputs are NaN-poisoned first, so a read
 * ahead of its producer fails. */
static void test_gemv_chain(void **state)
{
    static const char *const splits[] = {"1x4", "2x2", "4x1", "8x1"};
    enum { D = 2048, LEN = 4 };
    (void)state;
    SKIP_WITHOUT_GPU();
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++)
        for (int pdl = 0; pdl < 2; pdl++) {
            backend *g = gemv_backend(KILN_DT_BF16, splits[i], pdl);
            kiln_dtype dt = KILN_DT_BF16;
            if (!g)
                fail_msg("split %s: %s", splits[i], kiln_last_error());
            for (int64_t n = 1; n <= 8; n += 7) {
                bk_tensor wc[LEN], wg[LEN];
                uint8_t *wb[LEN]; /* the CPU's weights are views of these */
                vec_pair nw;
                void *gy[LEN + 1];
                float *ref[LEN + 1];
                vec_make(g, D, 0.5f, 1.5f, &nw);
                float *x = rnd_act(dt, n * D, -2.0f, 2.0f);
                void *gx = dev_put(g, x, n * D);
                for (int l = 0; l < LEN; l++) {
                    size_t bytes;
                    wb[l] = rand_weight(KILN_DT_BF16, D, D, &bytes);
                    OK(cpu->ops->weight(cpu, KILN_DT_BF16, D, D, wb[l], bytes, &wc[l]));
                    OK(g->ops->weight(g, KILN_DT_BF16, D, D, wb[l], bytes, &wg[l]));
                }
                for (int l = 0; l <= LEN; l++) {
                    gy[l] = dev_nan(g, n * D);
                    ref[l] = host_nan(n * D);
                }
                OK(g->ops->sync(g));
                OK(g->ops->rmsnorm(g, gx, n, D, &nw.g, 1e-6f, false, gy[0]));
                for (int l = 0; l < LEN; l++)
                    OK(g->ops->matmul(g, gy[l], n, &wg[l], NULL, gy[l + 1]));
                OK(cpu->ops->rmsnorm(cpu, x, n, D, &nw.c, 1e-6f, false, ref[0]));
                for (int l = 0; l < LEN; l++) {
                    for (int64_t e = 0; e < n * D; e++) /* the GPU's rounding of each link */
                        ref[l][e] = round_act(dt, ref[l][e]);
                    OK(cpu->ops->matmul(cpu, ref[l], n, &wc[l], NULL, ref[l + 1]));
                }
                for (int l = 0; l <= LEN; l++) {
                    float *got = dev_get(g, gy[l], n * D);
                    char what[64];
                    snprintf(what, sizeof what, "chain %s pdl=%d link %d", splits[i], pdl, l);
                    check(what, dt, n, D, got, ref[l], n * D);
                    free(got), free(ref[l]);
                    g->ops->free(g, gy[l]);
                }
                for (int l = 0; l < LEN; l++) {
                    cpu->ops->weight_free(cpu, &wc[l]);
                    g->ops->weight_free(g, &wg[l]);
                    free(wb[l]);
                }
                free(x);
                g->ops->free(g, gx);
                vec_free(g, &nw);
            }
            g->ops->destroy(g);
        }
}

/* ==== norms ========================================================================== */

static void test_rmsnorm(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (int r = 0; r < N_ROWS; r++)
            for (int wi = 0; wi < N_WIDTHS; wi++) {
                int64_t n = row_counts[r], d = widths[wi];
                bool add_one = rnd_int(2);
                float eps = 1e-6f;
                vec_pair w;
                vec_make(g, d, add_one ? -0.5f : 0.5f, add_one ? 0.5f : 1.5f, &w);
                float *x = rnd_act(dt, n * d, -2.0f, 2.0f), *ref = host_nan(n * d);
                void *gx = dev_put(g, x, n * d), *gy = dev_nan(g, n * d);

                /* out of place */
                OK(cpu->ops->rmsnorm(cpu, x, n, d, &w.c, eps, add_one, ref));
                OK(g->ops->rmsnorm(g, gx, n, d, &w.g, eps, add_one, gy));
                float *got = dev_get(g, gy, n * d);
                check("rmsnorm", dt, n, d, got, ref, n * d);
                free(got);
                /* in place (x == y) */
                OK(g->ops->rmsnorm(g, gx, n, d, &w.g, eps, add_one, gx));
                got = dev_get(g, gx, n * d);
                check("rmsnorm in place", dt, n, d, got, ref, n * d);
                free(got), free(x), free(ref);
                g->ops->free(g, gx), g->ops->free(g, gy);
                vec_free(g, &w);
            }
    }
}

static void test_add_rmsnorm(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (int r = 0; r < N_ROWS; r++)
            for (int wi = 0; wi < N_WIDTHS; wi++) {
                int64_t n = row_counts[r], d = widths[wi];
                bool add_one = rnd_int(2);
                vec_pair w;
                vec_make(g, d, 0.5f, 1.5f, &w);
                float *res = rnd_act(dt, n * d, -2.0f, 2.0f), *x = rnd_act(dt, n * d, -1, 1);
                float *ref = host_nan(n * d);
                void *gres = dev_put(g, res, n * d), *gx = dev_put(g, x, n * d);
                void *gy = dev_nan(g, n * d);

                OK(cpu->ops->add_rmsnorm(cpu, res, x, n, d, &w.c, 1e-5f, add_one, ref));
                OK(g->ops->add_rmsnorm(g, gres, gx, n, d, &w.g, 1e-5f, add_one, gy));
                float *got = dev_get(g, gy, n * d), *got_res = dev_get(g, gres, n * d);
                check("add_rmsnorm", dt, n, d, got, ref, n * d);
                check("add_rmsnorm residual", dt, n, d, got_res, res, n * d);
                free(got), free(got_res), free(res), free(x), free(ref);
                g->ops->free(g, gres), g->ops->free(g, gx), g->ops->free(g, gy);
                vec_free(g, &w);
            }
    }
}

static void test_layernorm(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (int r = 0; r < N_ROWS; r++)
            for (int wi = 0; wi < N_WIDTHS; wi++) {
                int64_t n = row_counts[r], d = widths[wi];
                bool with_res = rnd_int(2), with_bias = rnd_int(2);
                vec_pair w, b = {0};
                vec_make(g, d, 0.5f, 1.5f, &w);
                if (with_bias)
                    vec_make(g, d, -0.5f, 0.5f, &b);
                /* an offset mean, as hidden states have */
                float *x = rnd_act(dt, n * d, 1.0f, 3.0f), *res = rnd_act(dt, n * d, -1, 1);
                float *ref = host_nan(n * d);
                void *gx = dev_put(g, x, n * d), *gres = dev_put(g, res, n * d);

                OK(cpu->ops->layernorm(cpu, x, with_res ? res : NULL, n, d, &w.c,
                                       with_bias ? &b.c : NULL, 1e-12f, ref));
                /* y aliases the residual, as bert.c calls it */
                void *gy = with_res ? gres : dev_nan(g, n * d);
                OK(g->ops->layernorm(g, gx, with_res ? gres : NULL, n, d, &w.g,
                                     with_bias ? &b.g : NULL, 1e-12f, gy));
                float *got = dev_get(g, gy, n * d);
                check(with_res ? "layernorm+res" : "layernorm", dt, n, d, got, ref, n * d);
                free(got), free(x), free(res), free(ref);
                if (!with_res)
                    g->ops->free(g, gy);
                g->ops->free(g, gx), g->ops->free(g, gres);
                vec_free(g, &w);
                if (with_bias)
                    vec_free(g, &b);
            }
    }
}

/* ==== element-wise ====================================================================== */

static void test_elementwise(void **state)
{
    static const bk_act acts[] = {BK_ACT_SILU, BK_ACT_GELU, BK_ACT_GELU_TANH, BK_ACT_RELU};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (int r = 0; r < N_ROWS; r++)
            for (int wi = 0; wi < N_WIDTHS; wi++) {
                int64_t n = row_counts[r], d = widths[wi], cnt = n * d;
                float *x = rnd_act(dt, cnt, -4.0f, 4.0f), *u = rnd_act(dt, cnt, -2.0f, 2.0f);
                float *ref = host_nan(cnt);
                void *gx = dev_put(g, x, cnt), *gu = dev_put(g, u, cnt), *gy = dev_nan(g, cnt);
                float *got;

                OK(cpu->ops->add(cpu, x, u, cnt, ref));
                OK(g->ops->add(g, gx, gu, cnt, gy));
                got = dev_get(g, gy, cnt);
                check("add", dt, n, d, got, ref, cnt);
                free(got);

                bk_act act = acts[rnd_int(4)];
                g->ops->free(g, gy);
                gy = dev_nan(g, cnt);
                OK(cpu->ops->glu(cpu, x, u, n, d, act, ref));
                OK(g->ops->glu(g, gx, gu, n, d, act, gy));
                got = dev_get(g, gy, cnt);
                check(act == BK_ACT_SILU ? "glu silu" : act == BK_ACT_GELU ? "glu gelu"
                      : act == BK_ACT_GELU_TANH ? "glu gelu_tanh" : "glu relu",
                      dt, n, d, got, ref, cnt);
                free(got);

                float *y = host_copy(x, cnt);
                OK(cpu->ops->act(cpu, y, cnt, act));
                OK(g->ops->act(g, gx, cnt, act));
                got = dev_get(g, gx, cnt);
                check("act", dt, n, d, got, y, cnt);
                free(got), free(y);

                float cap = rnd(5.0f, 30.0f);
                float *z = host_copy(u, cnt);
                for (int64_t i = 0; i < cnt; i++)
                    z[i] = round_act(dt, u[i] * 10.0f);
                g->ops->free(g, gu);
                gu = dev_put(g, z, cnt);
                OK(cpu->ops->softcap(cpu, z, cnt, cap));
                OK(g->ops->softcap(g, gu, cnt, cap));
                got = dev_get(g, gu, cnt);
                check("softcap", dt, n, d, got, z, cnt);
                free(got), free(z);

                free(x), free(u), free(ref);
                g->ops->free(g, gx), g->ops->free(g, gu), g->ops->free(g, gy);
            }
        float one = 0.0f;
        assert_int_equal(g->ops->softcap(g, &one, 1, 0.0f), KILN_ERR_INVALID_ARG);
        assert_int_equal(g->ops->act(g, &one, 1, (bk_act)99), KILN_ERR_INVALID_ARG);
    }
}

/* Shapes that take the other work splits of cuda_ops.cu: many rows of a
 * multiple of 8 (one to four warps per row, the row in registers), the
 * same with one row (a block per row), widths that are not a multiple of 8
 * with many rows (a block per row), and element counts with a vector tail. */
static void test_norm_wide(void **state)
{
    static const int64_t shapes[][2] = {{3000, 768}, {300, 4096}, {257, 8192}, {300, 1000},
                                        {300, 16},   {300, 1004}, {1, 4096},   {3, 2048}};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t n = shapes[s][0], d = shapes[s][1], cnt = n * d;
            bool add_one = rnd_int(2), with_bias = rnd_int(2);
            vec_pair w, b = {0};
            vec_make(g, d, 0.5f, 1.5f, &w);
            if (with_bias)
                vec_make(g, d, -0.5f, 0.5f, &b);
            float *x = rnd_act(dt, cnt, -2.0f, 2.0f), *res = rnd_act(dt, cnt, -1.0f, 1.0f);
            float *ref = host_nan(cnt), *res_ref = host_copy(res, cnt);
            void *gx = dev_put(g, x, cnt), *gres = dev_put(g, res, cnt), *gy = dev_nan(g, cnt);

            /* rmsnorm */
            OK(cpu->ops->rmsnorm(cpu, x, n, d, &w.c, 1e-6f, add_one, ref));
            OK(g->ops->rmsnorm(g, gx, n, d, &w.g, 1e-6f, add_one, gy));
            float *got = dev_get(g, gy, cnt);
            check("rmsnorm wide", dt, n, d, got, ref, cnt);
            free(got);

            /* add_rmsnorm, y aliasing the residual */
            OK(cpu->ops->add_rmsnorm(cpu, res_ref, x, n, d, &w.c, 1e-5f, add_one, ref));
            OK(g->ops->add_rmsnorm(g, gres, gx, n, d, &w.g, 1e-5f, add_one, gres));
            got = dev_get(g, gres, cnt);
            check("add_rmsnorm wide (y = res)", dt, n, d, got, ref, cnt);
            free(got);

            /* layernorm + residual, y aliasing the residual */
            g->ops->free(g, gres);
            gres = dev_put(g, res, cnt);
            OK(cpu->ops->layernorm(cpu, x, res, n, d, &w.c, with_bias ? &b.c : NULL, 1e-12f, ref));
            OK(g->ops->layernorm(g, gx, gres, n, d, &w.g, with_bias ? &b.g : NULL, 1e-12f, gres));
            got = dev_get(g, gres, cnt);
            check("layernorm wide (y = res)", dt, n, d, got, ref, cnt);
            free(got);

            /* element-wise over n * d - 5 elements: vectors and a tail */
            int64_t m = cnt - 5;
            g->ops->free(g, gres);
            gres = dev_put(g, res, cnt);
            OK(cpu->ops->glu(cpu, x, res, 1, m, BK_ACT_SILU, ref));
            OK(g->ops->glu(g, gx, gres, 1, m, BK_ACT_SILU, gy));
            got = dev_get(g, gy, m);
            check("glu wide", dt, 1, m, got, ref, m);
            free(got);

            free(x), free(res), free(ref), free(res_ref);
            g->ops->free(g, gx), g->ops->free(g, gres), g->ops->free(g, gy);
            vec_free(g, &w);
            if (with_bias)
                vec_free(g, &b);
        }
    }
}

/* split3 is a bit copy: the outputs equal the host's split exactly, for
 * widths that are multiples of 8 (16-byte form) and not. */
static void test_split3(void **state)
{
    static const int64_t shapes[][4] = {{1, 4096, 1024, 1024}, {300, 64, 8, 24},
                                        {3, 7, 5, 9},          {130, 768, 768, 768},
                                        {17, 16, 8, 12}};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t n = shapes[s][0], w[3] = {shapes[s][1], shapes[s][2], shapes[s][3]};
            int64_t wt = w[0] + w[1] + w[2];
            float *x = rnd_act(dt, n * wt, -2.0f, 2.0f);
            void *gx = dev_put(g, x, n * wt), *gy[3];
            for (int o = 0; o < 3; o++)
                gy[o] = dev_nan(g, n * w[o]);
            OK(g->ops->split3(g, gx, n, w[0], w[1], w[2], gy[0], gy[1], gy[2]));
            for (int o = 0, c0 = 0; o < 3; c0 += (int)w[o], o++) {
                float *got = dev_get(g, gy[o], n * w[o]);
                for (int64_t t = 0; t < n; t++)
                    for (int64_t c = 0; c < w[o]; c++)
                        if (got[t * w[o] + c] != x[t * wt + c0 + c])
                            fail_msg("split3 %s n=%lld %lld/%lld/%lld: output %d (%lld, %lld) is "
                                     "%g, want %g", dtype_name(dt), (long long)n,
                                     (long long)w[0], (long long)w[1], (long long)w[2], o,
                                     (long long)t, (long long)c, (double)got[t * w[o] + c],
                                     (double)x[t * wt + c0 + c]);
                free(got);
                g->ops->free(g, gy[o]);
            }
            free(x);
            g->ops->free(g, gx);
        }
    }
}

/* ==== batch ops: embed, gather, pool ========================================================= */

static void test_embed(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (int r = 0; r < N_ROWS; r++) {
            int64_t n = row_counts[r], d = widths[rnd_int(N_WIDTHS)];
            int vocab = 50 + rnd_int(200), n_pos = 600, n_types = 1 + rnd_int(2);
            bool bert = rnd_int(2);
            float scale = bert ? 1.0f : rnd(1.0f, 40.0f);
            float *tab = rnd_act(dt, vocab * d, -1, 1), *pos = rnd_act(dt, n_pos * d, -1, 1);
            float *typ = rnd_act(dt, n_types * d, -1, 1), *ref = host_nan(n * d);
            bk_tensor tc, tg, pc, pg, yc, yg;
            bk_batch bc, bg;
            tbatch tb;

            tbatch_make(&tb, (int)n, vocab, n_types, 400);
            OK(cpu->ops->weight(cpu, KILN_DT_F32, d, vocab, tab, (size_t)(vocab * d) * 4, &tc));
            OK(g->ops->weight(g, KILN_DT_F32, d, vocab, tab, (size_t)(vocab * d) * 4, &tg));
            OK(cpu->ops->weight(cpu, KILN_DT_F32, d, n_pos, pos, (size_t)(n_pos * d) * 4, &pc));
            OK(g->ops->weight(g, KILN_DT_F32, d, n_pos, pos, (size_t)(n_pos * d) * 4, &pg));
            OK(cpu->ops->weight(cpu, KILN_DT_F32, d, n_types, typ, (size_t)(n_types * d) * 4,
                                &yc));
            OK(g->ops->weight(g, KILN_DT_F32, d, n_types, typ, (size_t)(n_types * d) * 4, &yg));
            OK(cpu->ops->batch_upload(cpu, &tb.h, &bc));
            OK(g->ops->batch_upload(g, &tb.h, &bg));
            void *gy = dev_nan(g, n * d);

            OK(cpu->ops->embed(cpu, &tc, &bc, scale, bert ? &pc : NULL, bert ? &yc : NULL, ref));
            OK(g->ops->embed(g, &tg, &bg, scale, bert ? &pg : NULL, bert ? &yg : NULL, gy));
            float *got = dev_get(g, gy, n * d);
            check(bert ? "embed bert" : "embed", dt, n, d, got, ref, n * d);
            free(got);

            /* embed_part: the table as rows [row0, row0 + part) of a larger
             * vocabulary; ids outside the slice give zeros */
            int64_t row0 = rnd_int(vocab / 2), part = 1 + rnd_int((int)(vocab - row0));
            bk_tensor sc, sg;
            OK(cpu->ops->weight(cpu, KILN_DT_F32, d, part, tab + row0 * d,
                                (size_t)(part * d) * 4, &sc));
            OK(g->ops->weight(g, KILN_DT_F32, d, part, tab + row0 * d, (size_t)(part * d) * 4,
                              &sg));
            g->ops->free(g, gy);
            gy = dev_nan(g, n * d);
            float *pref = host_nan(n * d);
            tb.tokens[0] = (int32_t)row0; /* at least one row inside the slice */
            OK(cpu->ops->batch_upload(cpu, &tb.h, &bc));
            OK(g->ops->batch_upload(g, &tb.h, &bg));
            OK(cpu->ops->embed_part(cpu, &sc, row0, &bc, scale, pref));
            OK(g->ops->embed_part(g, &sg, row0, &bg, scale, gy));
            got = dev_get(g, gy, n * d);
            check("embed_part", dt, n, d, got, pref, n * d);
            free(got), free(pref);
            cpu->ops->weight_free(cpu, &sc), g->ops->weight_free(g, &sg);

            /* a token outside the vocabulary is refused before any launch */
            tb.tokens[tb.h.n_tokens - 1] = vocab;
            OK(g->ops->batch_upload(g, &tb.h, &bg));
            assert_int_equal(g->ops->embed(g, &tg, &bg, scale, NULL, NULL, gy),
                             KILN_ERR_INVALID_ARG);

            g->ops->free(g, gy);
            cpu->ops->weight_free(cpu, &tc), cpu->ops->weight_free(cpu, &pc);
            cpu->ops->weight_free(cpu, &yc);
            g->ops->weight_free(g, &tg), g->ops->weight_free(g, &pg), g->ops->weight_free(g, &yg);
            free(tab), free(pos), free(typ), free(ref);
            tbatch_free(&tb);
        }
    }
}

static void test_gather_pool(void **state)
{
    static const bk_pool modes[] = {BK_POOL_MEAN, BK_POOL_CLS, BK_POOL_LAST, BK_POOL_MAX};
    static const char *const names[] = {"pool mean", "pool cls", "pool last", "pool max"};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++) {
        backend *g = gpus[a];
        kiln_dtype dt = act_types[a];
        for (int r = 0; r < N_ROWS; r++)
            for (int wi = 0; wi < N_WIDTHS; wi++) {
                int64_t n = row_counts[r], d = widths[wi];
                float *x = rnd_act(dt, n * d, -2.0f, 2.0f), *ref = host_nan(n * d);
                void *gx = dev_put(g, x, n * d);
                bk_batch bc, bg;
                tbatch tb;

                tbatch_make(&tb, (int)n, 100, 1, 0);
                OK(cpu->ops->batch_upload(cpu, &tb.h, &bc));
                OK(g->ops->batch_upload(g, &tb.h, &bg));
                int64_t ns = tb.h.n_seqs;

                void *gy = dev_nan(g, ns * d);
                OK(cpu->ops->gather_rows(cpu, x, d, &bc, ref));
                OK(g->ops->gather_rows(g, gx, d, &bg, gy));
                float *got = dev_get(g, gy, ns * d);
                check("gather_rows", dt, ns, d, got, ref, ns * d);
                free(got);
                g->ops->free(g, gy);

                for (int m = 0; m < 4; m++)
                    for (int norm = 0; norm < 2; norm++) {
                        gy = dev_nan(g, ns * d);
                        OK(cpu->ops->pool(cpu, x, d, &bc, modes[m], norm, ref));
                        OK(g->ops->pool(g, gx, d, &bg, modes[m], norm, gy));
                        got = dev_get(g, gy, ns * d);
                        check(names[m], dt, ns, d, got, ref, ns * d);
                        free(got);
                        g->ops->free(g, gy);
                    }

                /* a batch other than the last uploaded one is refused */
                bk_batch stale = bg;
                stale.out_rows = NULL;
                assert_int_equal(g->ops->gather_rows(g, gx, d, &stale, gx),
                                 KILN_ERR_INVALID_ARG);
                g->ops->free(g, gx);
                free(x), free(ref);
                tbatch_free(&tb);
            }
    }
}

/* ==== rotary embedding =============================================================== */

static void run_rope(backend *g, int64_t n, int nh, int nkv, int hd, int rot,
                     bk_rope_style style, mcfg_rope_scaling scaling)
{
    kiln_dtype dt = g->ops->act_dtype;
    bk_rope r;
    memset(&r, 0, sizeof r);
    r.style = style;
    r.head_dim = hd;
    r.rot_dims = rot;
    r.theta = rnd_int(2) ? 10000.0f : 500000.0f;
    r.scaling = scaling;
    r.factor = scaling == MCFG_ROPE_NONE ? 1.0f : rnd(2.0f, 8.0f);
    r.low_freq_factor = 1.0f;
    r.high_freq_factor = 4.0f;
    r.original_max_pos = scaling == MCFG_ROPE_DYNAMIC ? 64 : 4096;
    r.yarn_beta_fast = 32.0f;
    r.yarn_beta_slow = 1.0f;

    int64_t qn = n * nh * hd, kn = n * nkv * hd;
    float *q = rnd_act(dt, qn, -2.0f, 2.0f), *k = rnd_act(dt, kn, -2.0f, 2.0f);
    void *gq = dev_put(g, q, qn), *gk = dev_put(g, k, kn);
    bk_batch bc, bg;
    tbatch tb;

    tbatch_make(&tb, (int)n, 100, 1, 3000);
    OK(cpu->ops->batch_upload(cpu, &tb.h, &bc));
    OK(g->ops->batch_upload(g, &tb.h, &bg));
    OK(cpu->ops->rope(cpu, q, k, &bc, nh, nkv, &r));
    OK(g->ops->rope(g, gq, gk, &bg, nh, nkv, &r));
    float *got_q = dev_get(g, gq, qn), *got_k = dev_get(g, gk, kn);
    char what[96];
    snprintf(what, sizeof what, "rope %s scaling %d hd %d rot %d q",
             style == BK_ROPE_NEOX ? "neox" : "norm", (int)scaling, hd, rot);
    check(what, dt, n, nh * hd, got_q, q, qn);
    what[strlen(what) - 1] = 'k';
    check(what, dt, n, nkv * hd, got_k, k, kn);
    free(got_q), free(got_k), free(q), free(k);
    g->ops->free(g, gq), g->ops->free(g, gk);
    tbatch_free(&tb);
}

static void test_rope(void **state)
{
    static const mcfg_rope_scaling scalings[] = {MCFG_ROPE_NONE, MCFG_ROPE_LINEAR,
                                                 MCFG_ROPE_LLAMA3, MCFG_ROPE_YARN,
                                                 MCFG_ROPE_DYNAMIC};
    (void)state;
    SKIP_WITHOUT_GPU();
    for (int a = 0; a < 2; a++)
        for (int r = 0; r < N_ROWS; r++)
            for (size_t s = 0; s < sizeof scalings / sizeof scalings[0]; s++) {
                int64_t n = row_counts[r];
                run_rope(gpus[a], n, 4, 2, 64, 64, BK_ROPE_NEOX, scalings[s]);
                run_rope(gpus[a], n, 3, 1, 128, 128, BK_ROPE_NORM, scalings[s]);
                run_rope(gpus[a], n, 2, 2, 80, 20, BK_ROPE_NEOX, scalings[s]); /* partial */
                run_rope(gpus[a], n, 5, 1, 18, 10, BK_ROPE_NORM, scalings[s]);
                /* partial rotations the 16-byte form takes */
                run_rope(gpus[a], n, 3, 1, 128, 64, BK_ROPE_NEOX, scalings[s]);
                run_rope(gpus[a], n, 2, 1, 64, 32, BK_ROPE_NORM, scalings[s]);
            }
}

/* ==== setup ============================================================================== */

static int group_setup(void **state)
{
    const char *env = getenv("KILN_TEST_SEED");
    uint64_t seed;
    cudev_info dev;
    int n = 0;
    (void)state;

    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
    }
    rng = seed;
    print_message("seed %llu (KILN_TEST_SEED=%llu repeats this run)\n",
                  (unsigned long long)seed, (unsigned long long)seed);
    if (bk_cpu_create(2, &cpu) != KILN_OK)
        return -1;
    if (cudev_count(&n) != KILN_OK || cudev_query(0, &dev) != KILN_OK ||
        cudev_check_supported(&dev) != KILN_OK) {
        snprintf(gpu_why, sizeof gpu_why, "%s", kiln_last_error());
        print_message("GPU tests skipped: %s\n", gpu_why);
        return 0;
    }
    for (int a = 0; a < 2; a++)
        if (bk_cuda_create(0, act_types[a], &gpus[a]) != KILN_OK) {
            print_message("bk_cuda_create: %s\n", kiln_last_error());
            return -1;
        }
    gpu_ok = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int a = 0; a < 2; a++)
        if (gpus[a])
            gpus[a]->ops->destroy(gpus[a]);
    if (cpu)
        cpu->ops->destroy(cpu);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_weight_exact),
        cmocka_unit_test(test_weight_errors),
        cmocka_unit_test(test_matmul_types),
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_matmul_act),
        cmocka_unit_test(test_gelu_tanh_knob),
        cmocka_unit_test(test_matmul_buckets),
        cmocka_unit_test(test_to_host_async),
        cmocka_unit_test(test_gemv_splits),
        cmocka_unit_test(test_gemv_chain),
        cmocka_unit_test(test_matmul_fused),
        cmocka_unit_test(test_fused_chain),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_add_rmsnorm),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_norm_wide),
        cmocka_unit_test(test_split3),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_gather_pool),
        cmocka_unit_test(test_prefill_encoder_knob),
        cmocka_unit_test(test_rope),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

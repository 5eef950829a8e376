/*
 * test_cpu_ops.c - every op of the CPU backend against a naive reference
 * written here (double accumulation), on random shapes and fresh random
 * inputs each run (the seed is printed; KILN_TEST_SEED=<n> repeats a run).
 *
 * Each op runs on several backends: AVX2 and portable kernels
 * (KILN_CPU_NO_SIMD=1), 1 and 2 threads, OpenBLAS and the built-in gemm
 * (KILN_CPU_NO_BLAS=1).  Outputs are poisoned with NaN first, so an element
 * an op forgot to write fails.  Errors are relative to the magnitude of the
 * terms summed (sum |w x| for a dot product), so cancellation does not make
 * a correct result look wrong.  Quantized weights are random blocks; the
 * reference reads them through quant_dequantize, so the kernels must agree
 * to float rounding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend/backend.h"
#include "base/error.h"
#include "format/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- random numbers --------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static float rnd(float lo, float hi)
{
    return lo + (hi - lo) * (float)((rng_next() >> 40) * (1.0 / 16777216.0));
}

static int rnd_int(int n)
{
    return (int)(rng_next() % (uint64_t)n);
}

static float *rnd_vec(int64_t n, float lo, float hi)
{
    float *v = malloc((n > 0 ? (size_t)n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = rnd(lo, hi);
    return v;
}

/* A buffer of n floats filled with NaN. */
static float *poisoned(int64_t n)
{
    float *v = malloc((n > 0 ? (size_t)n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = NAN;
    return v;
}

static void poison(float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = NAN;
}

/* ---- backends under test ------------------------------------------------------ */

typedef struct cfg {
    const char *name;
    int threads;
    bool simd, blas;
    backend *be;
} cfg;

static cfg cfgs[] = {
    {"simd/1t", 1, true, true, NULL},       {"simd/2t", 2, true, true, NULL},
    {"portable/1t", 1, false, true, NULL},  {"portable/2t", 2, false, true, NULL},
    {"simd-noblas/2t", 2, true, false, NULL}, {"portable-noblas/1t", 1, false, false, NULL},
};
#define N_CFG ((int)(sizeof cfgs / sizeof cfgs[0]))

static int group_setup(void **state)
{
    const char *s = getenv("KILN_TEST_SEED");
    uint64_t seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)clock();
    printf("test_cpu_ops: seed %llu (KILN_TEST_SEED=%llu repeats)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    rng_state = seed;
    for (int i = 0; i < N_CFG; i++) {
        if (cfgs[i].simd)
            unsetenv("KILN_CPU_NO_SIMD");
        else
            setenv("KILN_CPU_NO_SIMD", "1", 1);
        if (cfgs[i].blas)
            unsetenv("KILN_CPU_NO_BLAS");
        else
            setenv("KILN_CPU_NO_BLAS", "1", 1);
        if (bk_cpu_create(cfgs[i].threads, &cfgs[i].be) != KILN_OK)
            return -1;
    }
    unsetenv("KILN_CPU_NO_SIMD");
    unsetenv("KILN_CPU_NO_BLAS");
    return 0;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < N_CFG; i++)
        if (cfgs[i].be)
            cfgs[i].be->ops->destroy(cfgs[i].be);
    return 0;
}

#define OPS(c) ((c)->be->ops)

/* |got - ref| <= tol * mag (mag: the magnitude of what was summed) for all. */
static void check_close(const char *what, const cfg *c, const float *got, const double *ref,
                        const double *mag, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        double scale = mag ? mag[i] : fabs(ref[i]);
        if (scale < 1e-30)
            scale = 1e-30;
        if (isnan(got[i]) || !(err <= tol * scale))
            fail_msg("%s [%s]: element %lld: got %.9g, want %.9g (rel err %.3g > %.3g)", what,
                     c->name, (long long)i, (double)got[i], ref[i], err / scale, tol);
    }
}

/* ---- random weights ------------------------------------------------------------- */

/* Offsets of the f16 scale fields of a block of dt; count into *n. */
static void scale_fields(kiln_dtype dt, int *off, int *n)
{
    *n = 1;
    off[0] = 0;
    switch (dt) {
    case KILN_DT_Q4_1: case KILN_DT_Q5_1: case KILN_DT_Q4_K: case KILN_DT_Q5_K:
        *n = 2;
        off[1] = 2;
        break;
    case KILN_DT_Q6_K: off[0] = 208; break;
    default: break;
    }
}

/* A random (m, k) weight of type dt: bytes owned (free()), and its exact
 * f32 values from quant_dequantize into *ref (free()). */
static uint8_t *rand_weight(kiln_dtype dt, int64_t m, int64_t k, size_t *row_bytes, float **ref)
{
    const dtype_info *di = dtype_get(dt);
    uint64_t rb;
    assert_int_equal(dtype_nbytes(dt, k, &rb), KILN_OK);
    size_t bytes = (size_t)rb * (size_t)m;
    uint8_t *w = malloc(bytes);
    if (dt == KILN_DT_F32 || dt == KILN_DT_F16 || dt == KILN_DT_BF16) {
        for (int64_t i = 0; i < m * k; i++) {
            float f = rnd(-1.0f, 1.0f);
            uint16_t h = dt == KILN_DT_F16 ? quant_f32_to_f16(f) : quant_f32_to_bf16(f);
            if (dt == KILN_DT_F32)
                memcpy(w + 4 * i, &f, 4);
            else
                memcpy(w + 2 * i, &h, 2);
        }
    } else {
        for (size_t i = 0; i < bytes; i++)
            w[i] = (uint8_t)rng_next();
        int off[2], nf;
        scale_fields(dt, off, &nf);
        for (size_t b = 0; b < bytes / (size_t)di->block_bytes; b++)
            for (int f = 0; f < nf; f++) {
                float d = rnd(0.002f, 0.02f) * (f == 0 && rnd_int(2) ? -1.0f : 1.0f);
                uint16_t h = quant_f32_to_f16(d);
                memcpy(w + b * (size_t)di->block_bytes + (size_t)off[f], &h, 2);
            }
    }
    *ref = malloc((size_t)(m * k) * sizeof(float));
    assert_int_equal(quant_dequantize(dt, w, bytes, *ref, m * k), KILN_OK);
    *row_bytes = (size_t)rb;
    return w;
}

/* ---- guarded buffers ------------------------------------------------------------- */

/* A copy of src[0..bytes) that ends exactly where an inaccessible page
 * begins, so a kernel reading one byte past it faults in every build, not
 * only under AddressSanitizer.  Free with guarded_free(p, bytes). */
static void *guarded_copy(const void *src, size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (bytes + page - 1) / page * page + page;
    unsigned char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               -1, 0);
    assert_true(base != MAP_FAILED);
    assert_int_equal(mprotect(base + span - page, page, PROT_NONE), 0);
    unsigned char *p = base + span - page - bytes;
    memcpy(p, src, bytes);
    return p;
}

static void guarded_free(void *p, size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t span = (bytes + page - 1) / page * page + page;
    munmap((unsigned char *)p + bytes + page - span, span);
}

/* ---- matmul ----------------------------------------------------------------------- */

static const kiln_dtype mm_types[] = {
    KILN_DT_F32,  KILN_DT_F16,  KILN_DT_BF16, KILN_DT_Q8_0, KILN_DT_Q4_0, KILN_DT_Q4_1,
    KILN_DT_Q5_0, KILN_DT_Q5_1, KILN_DT_Q4_K, KILN_DT_Q5_K, KILN_DT_Q6_K,
};

/* One matmul shape on every backend; 1- and 2-thread results must match
 * bit for bit.  With `guard`, the weights and activations the backend reads
 * end at an inaccessible page (guarded_copy). */
static void run_matmul_at(kiln_dtype dt, int64_t n, int64_t m, int64_t k, bool with_bias,
                          bool guard)
{
    size_t rb;
    float *wref;
    uint8_t *wb = rand_weight(dt, m, k, &rb, &wref);
    float *x = rnd_vec(n * k, -1.0f, 1.0f), *bias = rnd_vec(m, -1.0f, 1.0f);
    double *ref = malloc((size_t)(n * m) * sizeof *ref), *mag = malloc((size_t)(n * m) * sizeof *mag);
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < m; r++) {
            double s = with_bias ? bias[r] : 0.0, a = with_bias ? fabs(bias[r]) : 0.0;
            for (int64_t i = 0; i < k; i++) {
                double p = (double)wref[r * k + i] * (double)x[t * k + i];
                s += p;
                a += fabs(p);
            }
            ref[t * m + r] = s;
            mag[t * m + r] = a;
        }
    size_t wbytes = rb * (size_t)m, xbytes = (size_t)(n * k) * sizeof(float);
    const uint8_t *wuse = guard ? guarded_copy(wb, wbytes) : wb;
    const float *xuse = guard ? guarded_copy(x, xbytes) : x;
    float *prev = NULL;
    char what[96];
    snprintf(what, sizeof what, "matmul %s n=%lld m=%lld k=%lld", dtype_name(dt), (long long)n,
             (long long)m, (long long)k);
    for (int ci = 0; ci < N_CFG; ci++) {
        cfg *c = &cfgs[ci];
        bk_tensor w, bt;
        assert_int_equal(OPS(c)->weight(c->be, dt, k, m, wuse, wbytes, &w), KILN_OK);
        assert_int_equal(OPS(c)->weight(c->be, KILN_DT_F32, m, 1, bias, (size_t)m * 4, &bt),
                         KILN_OK);
        float *y = poisoned(n * m);
        assert_int_equal(OPS(c)->matmul(c->be, xuse, n, &w, with_bias ? &bt : NULL, y),
                         KILN_OK);
        check_close(what, c, y, ref, mag, n * m, 1e-5);
        if (prev && cfgs[ci - 1].simd == c->simd && cfgs[ci - 1].blas == c->blas &&
            memcmp(prev, y, (size_t)(n * m) * sizeof *y))
            fail_msg("%s: %s differs from %s", what, c->name, cfgs[ci - 1].name);
        free(prev);
        prev = y;
    }
    free(prev);
    if (guard) {
        guarded_free((void *)wuse, wbytes);
        guarded_free((void *)xuse, xbytes);
    }
    free(wb);
    free(wref);
    free(x);
    free(bias);
    free(ref);
    free(mag);
}

static void run_matmul(kiln_dtype dt, int64_t n, int64_t m, int64_t k, bool with_bias)
{
    run_matmul_at(dt, n, m, k, with_bias, false);
}

static void test_matmul_types(void **state)
{
    static const int64_t ns[] = {1, 3, 17, 64};
    for (size_t ti = 0; ti < sizeof mm_types / sizeof mm_types[0]; ti++) {
        kiln_dtype dt = mm_types[ti];
        int64_t be = dtype_get(dt)->block_elems;
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int64_t k = be == 1 ? 1 + rnd_int(300) : be * (1 + rnd_int(be == 256 ? 3 : 12));
            int64_t m = 1 + rnd_int(70);
            run_matmul(dt, ns[ni], m, k, rnd_int(2) != 0);
        }
    }
}

static void test_matmul_shapes(void **state)
{
    /* odd widths and single rows/columns on the f32 and a quantized path */
    run_matmul(KILN_DT_F32, 1, 1, 1, true);
    run_matmul(KILN_DT_F32, 17, 3, 7, false);
    run_matmul(KILN_DT_F32, 64, 129, 200, true);
    run_matmul(KILN_DT_F16, 9, 33, 13, true);
    run_matmul(KILN_DT_BF16, 65, 31, 77, false);
    run_matmul(KILN_DT_Q8_0, 2, 300, 64, true);
    run_matmul(KILN_DT_Q4_K, 5, 40, 512, false);
    run_matmul(KILN_DT_Q6_K, 8, 17, 256, true);
    run_matmul(KILN_DT_Q4_0, 130, 20, 96, false);
}

/* Every weight type with the last weight row and the last activation row
 * ending at an inaccessible page: the decode path (n = 1..7, 1 to 4 x rows
 * per dot call, permuted activations for the nibble types), the first gemm
 * sizes (n = 8, 9), and row lengths that leave every remainder modulo 8 and
 * 32 for the scalar types (vector loads must stop at the row's end). */
static void test_matmul_row_ends(void **state)
{
    static const int64_t scalar_k[] = {1, 3, 7, 8, 9, 15, 31, 33, 47, 63, 65, 100};
    for (size_t ti = 0; ti < sizeof mm_types / sizeof mm_types[0]; ti++) {
        kiln_dtype dt = mm_types[ti];
        int64_t be = dtype_get(dt)->block_elems;
        for (int64_t n = 1; n <= 9; n++) {
            int64_t k = be == 1 ? scalar_k[(ti + (size_t)n) % KILN_ARRAY_LEN(scalar_k)]
                                : be * (1 + n % 3);
            int64_t m = 1 + (n + (int64_t)ti) % 7;
            run_matmul_at(dt, n, m, k, n % 2 == 0, true);
        }
    }
    /* every k in 1..40 for f32 at n = 1..7, and a square f32 weight at
     * every decode n */
    for (int64_t k = 1; k <= 40; k++)
        run_matmul_at(KILN_DT_F32, 1 + k % 7, 1 + k % 5, k, false, true);
    for (int64_t n = 1; n < 8; n++)
        run_matmul_at(KILN_DT_F32, n, 64, 64, true, true);
}

static void test_matmul_errors(void **state)
{
    cfg *c = &cfgs[0];
    uint8_t buf[4096] = {0};
    bk_tensor w;
    float x[64] = {0}, y[64];
    assert_int_equal(OPS(c)->weight(c->be, KILN_DT_Q2_K, 256, 1, buf, sizeof buf, &w),
                     KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "Q2_K"));
    assert_int_equal(OPS(c)->weight(c->be, KILN_DT_Q8_0, 30, 1, buf, sizeof buf, &w) != KILN_OK,
                     1);
    assert_int_equal(OPS(c)->weight(c->be, KILN_DT_F32, 64, 100, buf, sizeof buf, &w),
                     KILN_ERR_INVALID_ARG);
    /* a type the weight op keeps (Q8_K dequantizes) but matmul cannot run */
    assert_int_equal(OPS(c)->weight(c->be, KILN_DT_Q8_K, 256, 1, buf, sizeof buf, &w), KILN_OK);
    assert_int_equal(OPS(c)->matmul(c->be, x, 1, &w, NULL, y), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "Q8_K"));
    /* bias of the wrong length */
    bk_tensor wt, bt;
    assert_int_equal(OPS(c)->weight(c->be, KILN_DT_F32, 8, 4, buf, sizeof buf, &wt), KILN_OK);
    assert_int_equal(OPS(c)->weight(c->be, KILN_DT_F32, 3, 1, buf, sizeof buf, &bt), KILN_OK);
    assert_int_equal(OPS(c)->matmul(c->be, x, 2, &wt, &bt, y), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "matmul"));
    assert_int_equal(OPS(c)->matmul(c->be, x, -1, &wt, NULL, y), KILN_ERR_INVALID_ARG);
    assert_int_equal(OPS(c)->matmul(c->be, x, 0, &wt, NULL, y), KILN_OK);
}

/* ---- norms and element-wise ops ---------------------------------------------------- */

static const int64_t widths[] = {1, 7, 64, 300};

static bk_tensor vec_tensor(cfg *c, kiln_dtype dt, const void *data, int64_t n)
{
    bk_tensor t;
    size_t bytes = (size_t)n * (dt == KILN_DT_F32 ? 4 : 2);
    assert_int_equal(OPS(c)->weight(c->be, dt, n, 1, data, bytes, &t), KILN_OK);
    return t;
}

/* BF16 copy of f (rounded values written back to f). */
static uint16_t *to_bf16(float *f, int64_t n)
{
    uint16_t *h = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        h[i] = quant_f32_to_bf16(f[i]);
        f[i] = quant_bf16_to_f32(h[i]);
    }
    return h;
}

static void ref_rms(const float *x, const float *w, int64_t n, int64_t d, double eps,
                    bool add_one, double *ref, double *mag)
{
    for (int64_t r = 0; r < n; r++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++)
            ss += (double)x[r * d + i] * x[r * d + i];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++) {
            double g = add_one ? 1.0 + w[i] : w[i];
            ref[r * d + i] = x[r * d + i] * inv * g;
            mag[r * d + i] = fabs(ref[r * d + i]) + 1e-6 * fabs(g);
        }
    }
}

static void test_rmsnorm(void **state)
{
    for (size_t wi = 0; wi < 4; wi++)
        for (int variant = 0; variant < 4; variant++) {
            int64_t d = widths[wi], n = 1 + rnd_int(20);
            bool add_one = variant & 1, bf16 = variant & 2;
            float *x = rnd_vec(n * d, -2.0f, 2.0f), *w = rnd_vec(d, -1.0f, 1.0f);
            float *res = rnd_vec(n * d, -2.0f, 2.0f), *sum = malloc((size_t)(n * d) * 4);
            uint16_t *wh = to_bf16(w, d);
            double *ref = malloc((size_t)(n * d) * 8), *mag = malloc((size_t)(n * d) * 8);
            for (int64_t i = 0; i < n * d; i++)
                sum[i] = res[i] + x[i];
            for (int ci = 0; ci < N_CFG; ci++) {
                cfg *c = &cfgs[ci];
                bk_tensor wt = vec_tensor(c, bf16 ? KILN_DT_BF16 : KILN_DT_F32,
                                          bf16 ? (void *)wh : (void *)w, d);
                float *y = poisoned(n * d), *r2 = malloc((size_t)(n * d) * 4);
                ref_rms(x, w, n, d, 1e-6, add_one, ref, mag);
                assert_int_equal(OPS(c)->rmsnorm(c->be, x, n, d, &wt, 1e-6f, add_one, y), KILN_OK);
                check_close("rmsnorm", c, y, ref, mag, n * d, 1e-5);
                /* in place */
                memcpy(y, x, (size_t)(n * d) * 4);
                assert_int_equal(OPS(c)->rmsnorm(c->be, y, n, d, &wt, 1e-6f, add_one, y), KILN_OK);
                check_close("rmsnorm in place", c, y, ref, mag, n * d, 1e-5);
                /* fused residual */
                memcpy(r2, res, (size_t)(n * d) * 4);
                poison(y, n * d);
                ref_rms(sum, w, n, d, 1e-6, add_one, ref, mag);
                assert_int_equal(OPS(c)->add_rmsnorm(c->be, r2, x, n, d, &wt, 1e-6f, add_one, y),
                                 KILN_OK);
                check_close("add_rmsnorm", c, y, ref, mag, n * d, 1e-5);
                assert_memory_equal(r2, sum, (size_t)(n * d) * 4);
                free(y);
                free(r2);
            }
            free(x), free(w), free(res), free(sum), free(wh), free(ref), free(mag);
        }
    bk_tensor wt = vec_tensor(&cfgs[0], KILN_DT_F32, (float[4]){0}, 4);
    float x[8] = {0};
    assert_int_equal(OPS(&cfgs[0])->rmsnorm(cfgs[0].be, x, 1, 8, &wt, 1e-6f, false, x),
                     KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "rmsnorm"));
}

static void test_layernorm(void **state)
{
    for (size_t wi = 0; wi < 4; wi++)
        for (int variant = 0; variant < 4; variant++) {
            int64_t d = widths[wi], n = 1 + rnd_int(20);
            bool with_res = variant & 1, with_b = variant & 2;
            float *x = rnd_vec(n * d, -2.0f, 3.0f), *res = rnd_vec(n * d, -1.0f, 1.0f);
            float *w = rnd_vec(d, -1.0f, 1.0f), *b = rnd_vec(d, -1.0f, 1.0f);
            double *ref = malloc((size_t)(n * d) * 8), *mag = malloc((size_t)(n * d) * 8);
            for (int64_t r = 0; r < n; r++) {
                double v[300], s = 0, ss = 0;
                for (int64_t i = 0; i < d; i++)
                    s += v[i] = (double)x[r * d + i] + (with_res ? (double)res[r * d + i] : 0.0);
                double mean = s / (double)d;
                for (int64_t i = 0; i < d; i++)
                    ss += (v[i] - mean) * (v[i] - mean);
                double inv = 1.0 / sqrt(ss / (double)d + 1e-5);
                for (int64_t i = 0; i < d; i++) {
                    double nv = (v[i] - mean) * inv * w[i];
                    ref[r * d + i] = nv + (with_b ? b[i] : 0.0);
                    mag[r * d + i] = (fabs(v[i]) + fabs(mean)) * inv * fabs(w[i]) +
                                     (with_b ? fabs(b[i]) : 0.0);
                }
            }
            for (int ci = 0; ci < N_CFG; ci++) {
                cfg *c = &cfgs[ci];
                bk_tensor wt = vec_tensor(c, KILN_DT_F32, w, d), bt = vec_tensor(c, KILN_DT_F32, b, d);
                float *y = poisoned(n * d);
                assert_int_equal(OPS(c)->layernorm(c->be, x, with_res ? res : NULL, n, d, &wt,
                                                   with_b ? &bt : NULL, 1e-5f, y),
                                 KILN_OK);
                check_close("layernorm", c, y, ref, mag, n * d, 1e-5);
                memcpy(y, x, (size_t)(n * d) * 4);
                assert_int_equal(OPS(c)->layernorm(c->be, y, with_res ? res : NULL, n, d, &wt,
                                                   with_b ? &bt : NULL, 1e-5f, y),
                                 KILN_OK);
                check_close("layernorm in place", c, y, ref, mag, n * d, 1e-5);
                free(y);
            }
            free(x), free(res), free(w), free(b), free(ref), free(mag);
        }
}

static double ref_act(bk_act act, double x)
{
    switch (act) {
    case BK_ACT_SILU: return x / (1.0 + exp(-x));
    case BK_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case BK_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case BK_ACT_RELU: return x > 0 ? x : 0;
    }
    return NAN;
}

static void test_elementwise(void **state)
{
    static const int64_t sizes[] = {1, 3, 17, 64, 40001};
    for (size_t si = 0; si < 5; si++) {
        int64_t n = sizes[si];
        float *a = rnd_vec(n, -6.0f, 6.0f), *b = rnd_vec(n, -2.0f, 2.0f);
        double *ref = malloc((size_t)n * 8), *mag = malloc((size_t)n * 8);
        for (int ci = 0; ci < N_CFG; ci++) {
            cfg *c = &cfgs[ci];
            float *y = poisoned(n);
            for (int64_t i = 0; i < n; i++)
                ref[i] = (double)a[i] + b[i], mag[i] = fabs(a[i]) + fabs(b[i]);
            assert_int_equal(OPS(c)->add(c->be, a, b, n, y), KILN_OK);
            check_close("add", c, y, ref, mag, n, 1e-7);
            for (int act = BK_ACT_SILU; act <= BK_ACT_RELU; act++) {
                for (int64_t i = 0; i < n; i++) {
                    /* 1 + erf / 1 + tanh cancel for negative inputs: PyTorch's
                     * f32 formulas lose the same absolute ~eps |x| */
                    ref[i] = ref_act((bk_act)act, a[i]) * b[i];
                    mag[i] = fabs(ref[i]) + 0.5 * fabs(a[i]) * fabs(b[i]);
                }
                poison(y, n);
                assert_int_equal(OPS(c)->glu(c->be, a, b, 1, n, (bk_act)act, y), KILN_OK);
                check_close("glu", c, y, ref, mag, n, 2e-6);
                for (int64_t i = 0; i < n; i++) {
                    ref[i] = ref_act((bk_act)act, a[i]);
                    mag[i] = fabs(ref[i]) + 0.5 * fabs(a[i]);
                }
                memcpy(y, a, (size_t)n * 4);
                assert_int_equal(OPS(c)->act(c->be, y, n, (bk_act)act), KILN_OK);
                check_close("act", c, y, ref, mag, n, 2e-6);
            }
            for (int64_t i = 0; i < n; i++)
                ref[i] = 3.0 * tanh(a[i] / 3.0), mag[i] = fabs(ref[i]) + 1e-7;
            memcpy(y, a, (size_t)n * 4);
            assert_int_equal(OPS(c)->softcap(c->be, y, n, 3.0f), KILN_OK);
            check_close("softcap", c, y, ref, mag, n, 2e-6);
            free(y);
        }
        free(a), free(b), free(ref), free(mag);
    }
    float x[2] = {0};
    assert_int_equal(OPS(&cfgs[0])->softcap(cfgs[0].be, x, 2, 0.0f), KILN_ERR_INVALID_ARG);
    assert_int_equal(OPS(&cfgs[0])->act(cfgs[0].be, x, 2, (bk_act)99), KILN_ERR_INVALID_ARG);
}

/* ---- batch helpers ------------------------------------------------------------------- */

/* A host batch of sequences with `news[s]` new tokens ending at context
 * ctx[s]; block tables (max_blocks per seq) from `tables`. */
typedef struct tbatch {
    bk_batch_host h;
    int32_t tokens[256], types[256], positions[256], seq_start[17], seq_len[16];
    int32_t slots[256], out_rows[16], tables[16 * 32];
} tbatch;

static void tbatch_make(tbatch *tb, int n_seqs, const int *news, const int *ctx,
                        const int32_t *tables, int max_blocks, int block_size, int vocab)
{
    memset(tb, 0, sizeof *tb);
    int t = 0;
    for (int s = 0; s < n_seqs; s++) {
        tb->seq_start[s] = t;
        tb->seq_len[s] = ctx[s];
        for (int i = 0; i < news[s]; i++, t++) {
            int pos = ctx[s] - news[s] + i;
            tb->tokens[t] = rnd_int(vocab);
            tb->types[t] = rnd_int(2);
            tb->positions[t] = pos;
            if (tables)
                tb->slots[t] = tables[s * max_blocks + pos / block_size] * block_size +
                               pos % block_size;
        }
        tb->out_rows[s] = t - 1;
    }
    tb->seq_start[n_seqs] = t;
    if (tables)
        memcpy(tb->tables, tables, (size_t)(n_seqs * max_blocks) * sizeof(int32_t));
    tb->h = (bk_batch_host){.n_tokens = t, .n_seqs = n_seqs, .max_blocks = max_blocks,
                            .n_out = n_seqs, .tokens = tb->tokens, .token_types = tb->types,
                            .positions = tb->positions, .seq_start = tb->seq_start,
                            .seq_len = tb->seq_len, .block_tables = tb->tables,
                            .slot_mapping = tb->slots, .out_rows = tb->out_rows};
}

/* ---- embed, gather, pool ---------------------------------------------------------------- */

static void test_embed(void **state)
{
    static const kiln_dtype types[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q8_0,
                                       KILN_DT_Q4_K, KILN_DT_Q6_K, KILN_DT_Q5_0};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int64_t be = dtype_get(types[ti])->block_elems;
        int64_t d = be == 1 ? 1 + rnd_int(70) : be * (1 + rnd_int(2)), vocab = 1 + rnd_int(50);
        size_t rb, prb, trb;
        float *tref, *pref, *yref_t;
        uint8_t *tab = rand_weight(types[ti], vocab, d, &rb, &tref);
        uint8_t *ptab = rand_weight(KILN_DT_F32, 40, d, &prb, &pref);
        uint8_t *ttab = rand_weight(KILN_DT_F16, 2, d, &trb, &yref_t);
        tbatch tb;
        int news[3] = {3, 1, 17}, ctx[3] = {3, 9, 20};
        tbatch_make(&tb, 3, news, ctx, NULL, 0, 1, (int)vocab);
        int n = tb.h.n_tokens;
        for (int bert = 0; bert < 2; bert++) {
            float scale = bert ? 1.0f : 1.7f;
            double *ref = malloc((size_t)(n * d) * 8), *mag = malloc((size_t)(n * d) * 8);
            for (int t = 0; t < n; t++)
                for (int64_t i = 0; i < d; i++) {
                    double v = (double)(tref[tb.tokens[t] * d + i] * scale), a = fabs(v);
                    if (bert) {
                        v += yref_t[tb.types[t] * d + i] + pref[tb.positions[t] * d + i];
                        a += fabs(yref_t[tb.types[t] * d + i]) + fabs(pref[tb.positions[t] * d + i]);
                    }
                    ref[t * d + i] = v;
                    mag[t * d + i] = a + 1e-30;
                }
            for (int ci = 0; ci < N_CFG; ci++) {
                cfg *c = &cfgs[ci];
                bk_tensor tt, pt, yt;
                bk_batch b;
                assert_int_equal(OPS(c)->weight(c->be, types[ti], d, vocab, tab, rb * (size_t)vocab, &tt), KILN_OK);
                assert_int_equal(OPS(c)->weight(c->be, KILN_DT_F32, d, 40, ptab, prb * 40, &pt), KILN_OK);
                assert_int_equal(OPS(c)->weight(c->be, KILN_DT_F16, d, 2, ttab, trb * 2, &yt), KILN_OK);
                assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
                float *y = poisoned(n * d);
                assert_int_equal(OPS(c)->embed(c->be, &tt, &b, scale, bert ? &pt : NULL,
                                               bert ? &yt : NULL, y), KILN_OK);
                check_close("embed", c, y, ref, mag, n * d, 1e-6);
                free(y);
                /* a token id past the table */
                int32_t tok0 = tb.tokens[0];
                tb.tokens[0] = (int32_t)vocab;
                assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
                float tmp[1024];
                assert_int_equal(OPS(c)->embed(c->be, &tt, &b, 1.0f, NULL, NULL, d * n <= 1024 ? tmp : NULL),
                                 KILN_ERR_INVALID_ARG);
                tb.tokens[0] = tok0;
            }
            free(ref), free(mag);
        }
        free(tab), free(ptab), free(ttab), free(tref), free(pref), free(yref_t);
    }
}

static void test_gather_pool(void **state)
{
    for (int rep = 0; rep < 4; rep++) {
        int64_t d = widths[rep];
        tbatch tb;
        int news[4] = {1, 5, 3, 17}, ctx[4] = {1, 5, 3, 17};
        tbatch_make(&tb, 4, news, ctx, NULL, 0, 1, 10);
        int n = tb.h.n_tokens;
        float *x = rnd_vec(n * d, -3.0f, 3.0f);
        double *ref = malloc((size_t)(n * d) * 8);
        for (int ci = 0; ci < N_CFG; ci++) {
            cfg *c = &cfgs[ci];
            bk_batch b;
            assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
            float *y = poisoned(4 * d);
            assert_int_equal(OPS(c)->gather_rows(c->be, x, d, &b, y), KILN_OK);
            for (int i = 0; i < 4; i++)
                for (int64_t j = 0; j < d; j++)
                    ref[i * d + j] = x[tb.out_rows[i] * d + j];
            check_close("gather_rows", c, y, ref, NULL, 4 * d, 0.0);
            for (int mode = BK_POOL_MEAN; mode <= BK_POOL_MAX; mode++)
                for (int norm = 0; norm < 2; norm++) {
                    for (int s = 0; s < 4; s++) {
                        int r0 = tb.seq_start[s], r1 = tb.seq_start[s + 1];
                        double ss = 0;
                        for (int64_t j = 0; j < d; j++) {
                            double v = mode == BK_POOL_CLS ? x[r0 * d + j]
                                     : mode == BK_POOL_LAST ? x[(r1 - 1) * d + j] : 0;
                            if (mode == BK_POOL_MAX) {
                                v = -INFINITY;
                                for (int r = r0; r < r1; r++)
                                    v = fmax(v, x[r * d + j]);
                            } else if (mode == BK_POOL_MEAN) {
                                for (int r = r0; r < r1; r++)
                                    v += x[r * d + j];
                                v /= (r1 - r0);
                            }
                            ref[s * d + j] = v;
                            ss += v * v;
                        }
                        for (int64_t j = 0; norm && j < d; j++)
                            ref[s * d + j] /= fmax(sqrt(ss), 1e-12);
                    }
                    poison(y, 4 * d);
                    assert_int_equal(OPS(c)->pool(c->be, x, d, &b, (bk_pool)mode, norm, y), KILN_OK);
                    double mag[4 * 300];
                    for (int64_t i = 0; i < 4 * d; i++)
                        mag[i] = fabs(ref[i]) + (norm ? 1e-6 : 1e-6 * 3.0);
                    check_close("pool", c, y, ref, mag, 4 * d, 1e-6);
                }
            free(y);
        }
        free(x), free(ref);
    }
}

/* ---- rope ----------------------------------------------------------------------------- */

/* transformers' inverse frequencies, in double. */
static void ref_inv_freq(const bk_rope *r, double *inv, double *mscale)
{
    int half = r->rot_dims / 2;
    double dim = r->rot_dims;
    *mscale = 1.0;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(r->theta, 2.0 * i / dim);
        if (r->scaling == MCFG_ROPE_LINEAR)
            f /= r->factor;
        if (r->scaling == MCFG_ROPE_LLAMA3) {
            double old = (double)r->original_max_pos, wl = 2 * M_PI / f;
            double lo_wl = old / r->low_freq_factor, hi_wl = old / r->high_freq_factor;
            if (wl > lo_wl)
                f /= r->factor;
            else if (wl >= hi_wl) {
                double sm = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                f = (1 - sm) * f / r->factor + sm * f;
            }
        }
        if (r->scaling == MCFG_ROPE_YARN) {
            double om = (double)r->original_max_pos;
            double lo = floor(dim * log(om / (r->yarn_beta_fast * 2 * M_PI)) / (2 * log(r->theta)));
            double hi = ceil(dim * log(om / (r->yarn_beta_slow * 2 * M_PI)) / (2 * log(r->theta)));
            lo = fmax(lo, 0), hi = fmin(hi, dim - 1);
            if (lo == hi)
                hi += 0.001;
            double ramp = fmin(fmax((i - lo) / (hi - lo), 0), 1), ext = 1 - ramp;
            f = f / r->factor * (1 - ext) + f * ext;
            *mscale = 0.1 * log(r->factor) + 1.0;
        }
        inv[i] = f;
    }
}

static void ref_rope_heads(const float *x, int heads, const bk_rope *r, double pos,
                           const double *inv, double ms, double *out, double *mag)
{
    int half = r->rot_dims / 2;
    for (int h = 0; h < heads; h++) {
        const float *v = x + h * r->head_dim;
        for (int i = 0; i < r->head_dim; i++)
            out[h * r->head_dim + i] = v[i], mag[h * r->head_dim + i] = fabs(v[i]) + 1e-6;
        for (int i = 0; i < half; i++) {
            int i0 = r->style == BK_ROPE_NEOX ? i : 2 * i;
            int i1 = r->style == BK_ROPE_NEOX ? i + half : 2 * i + 1;
            double c = cos(pos * inv[i]) * ms, s = sin(pos * inv[i]) * ms;
            out[h * r->head_dim + i0] = v[i0] * c - v[i1] * s;
            out[h * r->head_dim + i1] = v[i1] * c + v[i0] * s;
            mag[h * r->head_dim + i0] = mag[h * r->head_dim + i1] = (fabs(v[i0]) + fabs(v[i1])) * ms;
        }
    }
}

static void test_rope(void **state)
{
    static const mcfg_rope_scaling sc[] = {MCFG_ROPE_NONE, MCFG_ROPE_LINEAR, MCFG_ROPE_LLAMA3,
                                           MCFG_ROPE_YARN};
    for (int style = 0; style < 2; style++)
        for (size_t si = 0; si < 4; si++)
            for (int partial = 0; partial < 2; partial++) {
                bk_rope r = {(bk_rope_style)style, 16 + 2 * rnd_int(30), 0, 10000.0f, sc[si],
                             4.0f, 1.0f, 4.0f, 64, 32.0f, 1.0f, 0.0f};
                r.rot_dims = partial ? (r.head_dim / 2) & ~1 : r.head_dim;
                if (si == 3)
                    r.theta = 500000.0f;
                int nh = 1 + rnd_int(4), nkv = 1 + rnd_int(2);
                tbatch tb;
                int news[3] = {5, 1, 12}, ctx[3] = {5, 40, 100};
                tbatch_make(&tb, 3, news, ctx, NULL, 0, 1, 10);
                int n = tb.h.n_tokens;
                int64_t nq = (int64_t)n * nh * r.head_dim, nk = (int64_t)n * nkv * r.head_dim;
                float *q0 = rnd_vec(nq, -1, 1), *k0 = rnd_vec(nk, -1, 1);
                double *qr = malloc((size_t)nq * 8), *kr = malloc((size_t)nk * 8);
                double *qm = malloc((size_t)nq * 8), *km = malloc((size_t)nk * 8);
                double inv[64], ms;
                ref_inv_freq(&r, inv, &ms);
                for (int t = 0; t < n; t++) {
                    int64_t oq = (int64_t)t * nh * r.head_dim, ok = (int64_t)t * nkv * r.head_dim;
                    ref_rope_heads(q0 + oq, nh, &r, tb.positions[t], inv, ms, qr + oq, qm + oq);
                    ref_rope_heads(k0 + ok, nkv, &r, tb.positions[t], inv, ms, kr + ok, km + ok);
                }
                for (int ci = 0; ci < N_CFG; ci++) {
                    cfg *c = &cfgs[ci];
                    bk_batch b;
                    float *q = malloc((size_t)nq * 4), *k = malloc((size_t)nk * 4);
                    memcpy(q, q0, (size_t)nq * 4), memcpy(k, k0, (size_t)nk * 4);
                    assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
                    assert_int_equal(OPS(c)->rope(c->be, q, k, &b, nh, nkv, &r), KILN_OK);
                    check_close("rope q", c, q, qr, qm, nq, 2e-5);
                    check_close("rope k", c, k, kr, km, nk, 2e-5);
                    free(q), free(k);
                }
                free(q0), free(k0), free(qr), free(kr), free(qm), free(km);
            }
}

static void test_rope_from_config(void **state)
{
    model_config c;
    mcfg_init(&c);
    c.arch = MCFG_ARCH_GEMMA3;
    c.head_dim = 256;
    c.rope_theta = 1000000.0f;
    c.rope_local_theta = 10000.0f;
    c.rope_scaling = MCFG_ROPE_LINEAR;
    c.rope_factor = 8.0f;
    c.max_position_embeddings = 32768;
    bk_rope r;
    bk_rope_from_config(&c, false, BK_ROPE_NEOX, &r);
    assert_true(r.theta == 1000000.0f && r.scaling == MCFG_ROPE_LINEAR && r.factor == 8.0f);
    assert_int_equal(r.rot_dims, 256);
    assert_int_equal(r.original_max_pos, 32768);
    bk_rope_from_config(&c, true, BK_ROPE_NORM, &r);
    assert_true(r.theta == 10000.0f && r.scaling == MCFG_ROPE_NONE && r.factor == 1.0f);
    assert_int_equal(r.style, BK_ROPE_NORM);
    mcfg_init(&c);
    c.arch = MCFG_ARCH_LLAMA;
    c.head_dim = 80;
    c.partial_rotary_factor = 0.4f;
    c.rope_scaling = MCFG_ROPE_LLAMA3;
    c.rope_factor = 8.0f;
    c.rope_low_freq_factor = 1.0f;
    c.rope_high_freq_factor = 4.0f;
    c.rope_original_max_pos = 8192;
    bk_rope_from_config(&c, true, BK_ROPE_NEOX, &r);
    assert_int_equal(r.rot_dims, 32);
    assert_true(r.theta == 10000.0f && r.scaling == MCFG_ROPE_LLAMA3 && r.factor == 8.0f);
    assert_true(r.high_freq_factor == 4.0f && r.original_max_pos == 8192);
}

/* ---- attention --------------------------------------------------------------------------- */

#define AT_BS 4
#define AT_BLOCKS 40
#define AT_MAXB 10
#define AT_MAXPOS (AT_BS * AT_MAXB)

typedef struct attn_ref {
    int nh, nkv, hd;
    /* every position's k and v per sequence: (seq, pos, nkv, hd) */
    float k[4][AT_MAXPOS][4][64], v[4][AT_MAXPOS][4][64];
} attn_ref;

/* Reference output of token t (query q (nh, hd)) of sequence s at q_pos
 * over keys key_pos[0..nk) of that sequence. */
static void ref_attend(const attn_ref *R, const bk_attn *a, int s, int q_pos, const float *q,
                       const int *key_pos, int nk, const float *kk, const float *vv, double *out,
                       double *mag)
{
    int group = a->n_heads / a->n_kv_heads, hd = a->head_dim;
    for (int h = 0; h < a->n_heads; h++) {
        double sc[256], mx = -INFINITY, l = 0;
        int kvh = h / group;
        for (int j = 0; j < nk; j++) {
            int p = key_pos[j];
            const float *kr = kk ? kk + ((size_t)j * a->n_kv_heads + kvh) * hd : R->k[s][p][kvh];
            bool vis = (!a->causal || p <= q_pos) && (a->window <= 0 || p > q_pos - a->window);
            sc[j] = -INFINITY;
            if (!vis)
                continue;
            double d = 0;
            for (int i = 0; i < hd; i++)
                d += (double)q[h * hd + i] * kr[i];
            d *= a->scale;
            if (a->softcap > 0)
                d = a->softcap * tanh(d / a->softcap);
            sc[j] = d;
            mx = fmax(mx, d);
        }
        for (int i = 0; i < hd; i++)
            out[h * hd + i] = 0, mag[h * hd + i] = 0;
        for (int j = 0; j < nk; j++) {
            if (sc[j] == -INFINITY)
                continue;
            double p = exp(sc[j] - mx);
            l += p;
            const float *vr = vv ? vv + ((size_t)j * a->n_kv_heads + kvh) * hd : R->v[s][key_pos[j]][kvh];
            for (int i = 0; i < hd; i++)
                out[h * hd + i] += p * vr[i], mag[h * hd + i] += p * fabs(vr[i]);
        }
        for (int i = 0; i < hd; i++) {
            out[h * hd + i] = l > 0 ? out[h * hd + i] / l : 0;
            mag[h * hd + i] = l > 0 ? mag[h * hd + i] / l + 1e-7 : 1e-7;
        }
    }
}

/* q (n, qw), k and v (n, kw) as the rows of one fused projection output
 * (q, then k, then v: qw + 2 kw floats a row). */
static float *fuse_qkv(const float *q, const float *k, const float *v, int n, int64_t qw,
                       int64_t kw)
{
    int64_t row = qw + 2 * kw;
    float *f = malloc((size_t)(n * row + 1) * sizeof *f);
    assert_non_null(f);
    for (int t = 0; t < n; t++) {
        memcpy(f + t * row, q + t * qw, (size_t)qw * sizeof *f);
        memcpy(f + t * row + qw, k + t * kw, (size_t)kw * sizeof *f);
        memcpy(f + t * row + qw + kw, v + t * kw, (size_t)kw * sizeof *f);
    }
    return f;
}

/* The same call with q, k, v read from one fused buffer (qkv_stride) gives
 * the packed call's bits. */
static void check_fused(cfg *c, const bk_batch *b, const bk_attn *a, const float *q,
                        const float *k, const float *v, bk_kv_cache *kv, int32_t layer, int n,
                        const float *want)
{
    int64_t qw = (int64_t)a->n_heads * a->head_dim, kw = (int64_t)a->n_kv_heads * a->head_dim;
    float *f = fuse_qkv(q, k, v, n, qw, kw), *out = poisoned((int64_t)n * qw);
    bk_attn fa = *a;
    fa.qkv_stride = qw + 2 * kw;
    assert_int_equal(OPS(c)->attention(c->be, b, &fa, f, f + qw, f + qw + kw, kv, layer, out),
                     KILN_OK);
    if (memcmp(out, want, (size_t)(n * qw) * sizeof *out))
        fail_msg("attention: %s with fused q/k/v rows differs from packed", c->name);
    fa.qkv_stride = qw - 1; /* narrower than q */
    assert_int_equal(OPS(c)->attention(c->be, b, &fa, f, f + qw, f + qw + kw, kv, layer, out),
                     KILN_ERR_INVALID_ARG);
    free(f), free(out);
}

/* One attention step of tb on every backend (kv caches kvs[]), checked
 * against the reference R, whose k/v the step's tokens are added to. */
static void attn_step(attn_ref *R, const bk_attn *a, tbatch *tb, bk_kv_cache *kvs,
                      const int *seq_ids)
{
    int n = tb->h.n_tokens, hd = a->head_dim;
    int64_t nq = (int64_t)n * a->n_heads * hd, nk = (int64_t)n * a->n_kv_heads * hd;
    float *q = rnd_vec(nq, -1, 1), *k = rnd_vec(nk, -1, 1), *v = rnd_vec(nk, -1, 1);
    double *ref = malloc((size_t)nq * 8), *mag = malloc((size_t)nq * 8);
    for (int t = 0; t < n; t++) {
        int s = 0;
        while (tb->seq_start[s + 1] <= t)
            s++;
        for (int h = 0; h < a->n_kv_heads; h++)
            for (int i = 0; i < hd; i++) {
                R->k[seq_ids[s]][tb->positions[t]][h][i] = k[((size_t)t * a->n_kv_heads + h) * hd + i];
                R->v[seq_ids[s]][tb->positions[t]][h][i] = v[((size_t)t * a->n_kv_heads + h) * hd + i];
            }
    }
    for (int t = 0; t < n; t++) {
        int s = 0, kp[AT_MAXPOS];
        while (tb->seq_start[s + 1] <= t)
            s++;
        for (int j = 0; j < tb->seq_len[s]; j++)
            kp[j] = j;
        ref_attend(R, a, seq_ids[s], tb->positions[t], q + (size_t)t * a->n_heads * hd, kp,
                   tb->seq_len[s], NULL, NULL, ref + (size_t)t * a->n_heads * hd,
                   mag + (size_t)t * a->n_heads * hd);
    }
    float *prev = NULL;
    for (int ci = 0; ci < N_CFG; ci++) {
        cfg *c = &cfgs[ci];
        bk_batch b;
        float *out = poisoned(nq);
        assert_int_equal(OPS(c)->batch_upload(c->be, &tb->h, &b), KILN_OK);
        assert_int_equal(OPS(c)->attention(c->be, &b, a, q, k, v, &kvs[ci], 1, out), KILN_OK);
        check_close("attention", c, out, ref, mag, nq, 1e-5);
        /* the cache write is repeated with the same rows */
        check_fused(c, &b, a, q, k, v, &kvs[ci], 1, n, out);
        /* same kernels, other thread count: the same bits */
        if (prev && cfgs[ci - 1].simd == c->simd && memcmp(prev, out, (size_t)nq * 4))
            fail_msg("attention: %s differs from %s", c->name, cfgs[ci - 1].name);
        free(prev);
        prev = out;
    }
    free(prev);
    free(q), free(k), free(v), free(ref), free(mag);
}

static void run_attention(int nh, int nkv, int hd, int window, float softcap)
{
    static attn_ref R;
    bk_attn a = {nh, nkv, hd, 1.0f / sqrtf((float)hd), true, window, softcap, true, 0};
    bk_kv_cache kvs[N_CFG];
    bk_kv_cache shape = {3, AT_BLOCKS, AT_BS, nkv, hd, KILN_DT_F32, NULL, NULL};
    for (int ci = 0; ci < N_CFG; ci++)
        assert_int_equal(OPS(&cfgs[ci])->kv_alloc(cfgs[ci].be, &shape, &kvs[ci]), KILN_OK);
    /* scattered block tables: a random permutation of the pool */
    int32_t perm[AT_BLOCKS], tables[4][AT_MAXB];
    for (int i = 0; i < AT_BLOCKS; i++)
        perm[i] = i;
    for (int i = AT_BLOCKS - 1; i > 0; i--) {
        int j = rnd_int(i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < AT_MAXB; i++)
            tables[s][i] = perm[s * AT_MAXB + i];
    tbatch tb;
    /* step 1: prefill of three sequences */
    int ids1[3] = {0, 1, 2}, news1[3] = {6, 9, 1}, ctx1[3] = {6, 9, 1};
    tbatch_make(&tb, 3, news1, ctx1, &tables[0][0], AT_MAXB, AT_BS, 10);
    attn_step(&R, &a, &tb, kvs, ids1);
    /* step 2: decode, chunked prefill, decode and a new prefill mixed */
    int ids2[4] = {0, 1, 2, 3}, news2[4] = {1, 4, 1, 3}, ctx2[4] = {7, 13, 2, 3};
    tbatch_make(&tb, 4, news2, ctx2, &tables[0][0], AT_MAXB, AT_BS, 10);
    attn_step(&R, &a, &tb, kvs, ids2);
    /* step 3: long prefill chunk for sequence 1 only (its table row 1) */
    int ids3[1] = {1}, news3[1] = {20}, ctx3[1] = {33};
    tbatch_make(&tb, 1, news3, ctx3, &tables[1][0], AT_MAXB, AT_BS, 10);
    attn_step(&R, &a, &tb, kvs, ids3);
    for (int ci = 0; ci < N_CFG; ci++)
        OPS(&cfgs[ci])->kv_free(cfgs[ci].be, &kvs[ci]);
}

static void test_attention_paged(void **state)
{
    run_attention(4, 2, 16, 0, 0.0f);
    run_attention(3, 1, 20, 5, 0.0f);
    run_attention(2, 2, 64, 0, 2.0f);
    run_attention(4, 4, 7, 3, 1.5f);
    run_attention(4, 1, 33, 0, 0.0f);
}

static void test_attention_nocache(void **state)
{
    for (int causal = 0; causal < 2; causal++) {
        int nh = 4, nkv = 2, hd = 24;
        bk_attn a = {nh, nkv, hd, 0.3f, causal, 0, 0.0f, false, 0};
        tbatch tb;
        int news[3] = {3, 1, 150}, ctx[3] = {3, 1, 150};
        tbatch_make(&tb, 3, news, ctx, NULL, 0, 1, 10);
        int n = tb.h.n_tokens;
        int64_t nq = (int64_t)n * nh * hd, nk = (int64_t)n * nkv * hd;
        float *q = rnd_vec(nq, -2, 2), *k = rnd_vec(nk, -2, 2), *v = rnd_vec(nk, -1, 1);
        double *ref = malloc((size_t)nq * 8), *mag = malloc((size_t)nq * 8);
        for (int s = 0; s < 3; s++) {
            int r0 = tb.seq_start[s], r1 = tb.seq_start[s + 1], kp[256];
            for (int j = 0; j < r1 - r0; j++)
                kp[j] = tb.positions[r0 + j];
            for (int t = r0; t < r1; t++)
                ref_attend(NULL, &a, s, tb.positions[t], q + (size_t)t * nh * hd, kp, r1 - r0,
                           k + (size_t)r0 * nkv * hd, v + (size_t)r0 * nkv * hd,
                           ref + (size_t)t * nh * hd, mag + (size_t)t * nh * hd);
        }
        for (int ci = 0; ci < N_CFG; ci++) {
            cfg *c = &cfgs[ci];
            bk_batch b;
            float *out = poisoned(nq);
            assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
            assert_int_equal(OPS(c)->attention(c->be, &b, &a, q, k, v, NULL, 0, out), KILN_OK);
            check_close("attention (no cache)", c, out, ref, mag, nq, 1e-5);
            check_fused(c, &b, &a, q, k, v, NULL, 0, n, out);
            free(out);
        }
        free(q), free(k), free(v), free(ref), free(mag);
    }
}

static void test_attention_errors(void **state)
{
    cfg *c = &cfgs[0];
    bk_kv_cache kv, shape = {1, 4, 4, 1, 8, KILN_DT_F32, NULL, NULL};
    assert_int_equal(OPS(c)->kv_alloc(c->be, &shape, &kv), KILN_OK);
    int32_t table[2] = {3, 99};
    tbatch tb;
    int news[1] = {2}, ctx[1] = {6};
    tbatch_make(&tb, 1, news, ctx, table, 2, 4, 10);
    bk_batch b;
    float q[16] = {0}, out[16];
    bk_attn a = {1, 1, 8, 1.0f, true, 0, 0.0f, true, 0};
    assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
    /* block 99 is outside the pool */
    assert_int_equal(OPS(c)->attention(c->be, &b, &a, q, q, q, &kv, 0, out), KILN_ERR_INVALID_ARG);
    assert_non_null(strstr(kiln_last_error(), "attention"));
    table[1] = 2;
    tbatch_make(&tb, 1, news, ctx, table, 2, 4, 10);
    assert_int_equal(OPS(c)->batch_upload(c->be, &tb.h, &b), KILN_OK);
    assert_int_equal(OPS(c)->attention(c->be, &b, &a, q, q, q, &kv, 0, out), KILN_OK);
    assert_int_equal(OPS(c)->attention(c->be, &b, &a, q, q, q, &kv, 1, out), KILN_ERR_INVALID_ARG);
    bk_attn bad = {3, 2, 8, 1.0f, true, 0, 0.0f, true, 0};
    assert_int_equal(OPS(c)->attention(c->be, &b, &bad, q, q, q, &kv, 0, out), KILN_ERR_INVALID_ARG);
    OPS(c)->kv_free(c->be, &kv);
    OPS(c)->kv_free(c->be, &kv); /* freed state is safe to free again */
}

static void test_memory(void **state)
{
    cfg *c = &cfgs[1];
    void *p;
    float src[5] = {1, 2, 3, 4, 5}, dst[5];
    assert_int_equal(OPS(c)->alloc(c->be, 20, &p), KILN_OK);
    assert_int_equal((uintptr_t)p % 64, 0);
    assert_int_equal(OPS(c)->upload(c->be, p, src, 20), KILN_OK);
    assert_int_equal(OPS(c)->download(c->be, dst, p, 20), KILN_OK);
    assert_memory_equal(src, dst, 20);
    assert_int_equal(OPS(c)->to_host_f32(c->be, p, 5, dst), KILN_OK);
    assert_memory_equal(src, dst, 20);
    assert_int_equal(OPS(c)->sync(c->be), KILN_OK);
    OPS(c)->free(c->be, p);
    OPS(c)->free(c->be, NULL);
    assert_string_equal(OPS(c)->name, "cpu");
    assert_int_equal(OPS(c)->act_dtype, KILN_DT_F32);
    assert_int_equal(bk_act_bytes(c->be, 3), 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_matmul_types),
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_matmul_row_ends),
        cmocka_unit_test(test_matmul_errors),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_gather_pool),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_from_config),
        cmocka_unit_test(test_attention_paged),
        cmocka_unit_test(test_attention_nocache),
        cmocka_unit_test(test_attention_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

/*
 * gpu_test_dequant.c - GPU dequantization against quant_dequantize, and GPU
 * enumeration.
 *
 * For every type the GPU dequantizes: fresh random blocks (seed printed;
 * KILN_TEST_SEED=<n> repeats a run) with finite scales, in odd block counts
 * (1, 3, 257, 10007), once with 16-byte aligned buffers (vector path) and
 * once with both shifted (element path).  The output buffer is poisoned with
 * 0xff bytes (NaN in every output type) before each run, so an element the
 * kernel does not write fails, and the bytes around the output must still
 * hold the poison afterwards.  F32 output must be bit-exact with the CPU;
 * F16/BF16 output must equal quant_f32_to_f16/_bf16 of the CPU's f32.
 *
 * Without a GPU (or a driver) the GPU tests print why and are skipped; the
 * argument checks and messages that need no GPU still run.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/dequant.h"
#include "base/alloc.h"
#include "format/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAD 16 /* poisoned bytes checked after the output */

static bool gpu_ok;
static char gpu_why[1024];
static cudaStream_t stream;
static uint64_t rng;

/* ==== helpers ============================================================== */

/* splitmix64 */
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void put_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, v & 0xffffu);
    put_u16(p + 2, v >> 16);
}

static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static uint32_t get_u32(const uint8_t *p) { return get_u16(p) | (get_u16(p + 2) << 16); }

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* A finite f16 scale: half the time weight-sized (2^-14 .. 2), else any
 * finite half, subnormals included. */
static uint32_t rnd_scale_f16(void)
{
    uint64_t r = rnd();
    uint32_t sign = (uint32_t)(r & 1) << 15, man = (uint32_t)(r >> 1) & 0x3ffu;
    uint32_t exp = (r >> 63) ? 1 + (uint32_t)((r >> 20) % 15) : (uint32_t)((r >> 20) % 31);
    return sign | (exp << 10) | man;
}

/* A finite f32 scale (Q8_K), likewise. */
static uint32_t rnd_scale_f32(void)
{
    uint64_t r = rnd();
    uint32_t sign = (uint32_t)(r & 1) << 31, man = (uint32_t)(r >> 1) & 0x7fffffu;
    uint32_t exp = (r >> 63) ? 100 + (uint32_t)((r >> 30) % 30) : (uint32_t)((r >> 30) % 255);
    return sign | (exp << 23) | man;
}

/* Random bytes for n_blocks blocks of dt, then finite scales.  Scalar types
 * keep fully random bit patterns: subnormals, infinities and NaNs too. */
static void fill_blocks(kiln_dtype dt, uint8_t *buf, int64_t n_blocks)
{
    const dtype_info *di = dtype_get(dt);
    size_t bytes = (size_t)n_blocks * (size_t)di->block_bytes;

    for (size_t i = 0; i < bytes; i++)
        buf[i] = (uint8_t)rnd();
    for (int64_t b = 0; b < n_blocks; b++) {
        uint8_t *p = buf + (size_t)b * (size_t)di->block_bytes;
        switch (dt) {
        case KILN_DT_Q4_1: case KILN_DT_Q5_1: case KILN_DT_Q4_K: case KILN_DT_Q5_K:
            put_u16(p, rnd_scale_f16());
            put_u16(p + 2, rnd_scale_f16());
            break;
        case KILN_DT_Q4_0: case KILN_DT_Q5_0: case KILN_DT_Q8_0:
            put_u16(p, rnd_scale_f16());
            break;
        case KILN_DT_Q6_K:
            put_u16(p + 208, rnd_scale_f16());
            break;
        case KILN_DT_Q8_K:
            put_u32(p, rnd_scale_f32());
            break;
        default:
            break;
        }
    }
}

static bool is_scalar(kiln_dtype dt)
{
    return dt == KILN_DT_F32 || dt == KILN_DT_F16 || dt == KILN_DT_BF16;
}

static int out_size(kiln_dtype dt) { return dt == KILN_DT_F32 ? 4 : 2; }

#define CU(call)                                                                         \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess)                                                           \
            fail_msg("%s failed: %s", #call, cudaGetErrorString(e_));                    \
    } while (0)

#define SKIP_WITHOUT_GPU()                                                               \
    do {                                                                                 \
        if (!gpu_ok) {                                                                   \
            print_message("skipped: %s\n", gpu_why);                                     \
            skip();                                                                      \
        }                                                                                \
    } while (0)

/* Expected output bits of element i. */
static uint32_t expected_bits(kiln_dtype src_type, const uint8_t *src, const float *ref,
                              kiln_dtype out_type, int64_t i)
{
    if (src_type == out_type) /* a plain copy */
        return out_type == KILN_DT_F32 ? get_u32(src + 4 * i) : get_u16(src + 2 * i);
    switch (out_type) {
    case KILN_DT_F32:
        return bits_of(ref[i]);
    case KILN_DT_F16:
        return quant_f32_to_f16(ref[i]);
    default:
        return quant_f32_to_bf16(ref[i]);
    }
}

/* Print the source block holding element i, for a failure report. */
static void dump_block(kiln_dtype dt, const uint8_t *src, int64_t i)
{
    const dtype_info *di = dtype_get(dt);
    int64_t b = i / di->block_elems;
    const uint8_t *p = src + (size_t)b * (size_t)di->block_bytes;

    fprintf(stderr, "  block %lld (%d bytes):", (long long)b, di->block_bytes);
    for (int k = 0; k < di->block_bytes; k++)
        fprintf(stderr, "%s%02x", k % 32 ? " " : "\n    ", p[k]);
    fprintf(stderr, "\n");
}

/* Compare n outputs; the PAD bytes after them (and `before` bytes before
 * them) must still be 0xff.  Returns the number of wrong elements. */
static int64_t compare_output(kiln_dtype src_type, const uint8_t *src, const float *ref,
                              kiln_dtype out_type, const uint8_t *out, int64_t n,
                              size_t before)
{
    const int es = out_size(out_type);
    const uint8_t *o = out + before;
    int64_t bad = 0;

    for (int64_t i = 0; i < n; i++) {
        uint32_t want = expected_bits(src_type, src, ref, out_type, i);
        uint32_t got = es == 4 ? get_u32(o + 4 * i) : get_u16(o + 2 * i);
        if (got == want)
            continue;
        if (bad++ < 3) {
            fprintf(stderr, "%s -> %s: element %lld of %lld: got 0x%0*x, want 0x%0*x (cpu f32 0x%08x)\n",
                    dtype_name(src_type), dtype_name(out_type), (long long)i, (long long)n,
                    2 * es, got, 2 * es, want, bits_of(ref[i]));
            dump_block(src_type, src, i);
        }
    }
    for (size_t k = 0; k < before; k++)
        if (out[k] != 0xff) {
            fprintf(stderr, "%s -> %s: byte %zu before the output was written\n",
                    dtype_name(src_type), dtype_name(out_type), before - k);
            bad++;
        }
    for (size_t k = 0; k < PAD; k++)
        if (o[(size_t)n * (size_t)es + k] != 0xff) {
            fprintf(stderr, "%s -> %s: byte %zu past the output was written\n",
                    dtype_name(src_type), dtype_name(out_type), k);
            bad++;
        }
    return bad;
}

/* One block count of one type, into all three output types.  shifted: src
 * moved off 16-byte alignment (by one byte for block types, one element for
 * scalar types) and dst by one output element. */
static void run_case(kiln_dtype dt, int64_t n_blocks, bool shifted)
{
    const dtype_info *di = dtype_get(dt);
    const int64_t n = n_blocks * di->block_elems;
    const size_t bytes = (size_t)n_blocks * (size_t)di->block_bytes;
    const size_t src_off = shifted ? (is_scalar(dt) ? (size_t)di->block_bytes : 1) : 0;
    const size_t out_cap = (size_t)n * 4 + 4 + PAD;
    const kiln_dtype outs[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16};
    uint8_t *src = kiln_malloc(bytes), *out = kiln_malloc(out_cap);
    float *ref = kiln_malloc((size_t)n * sizeof(float));
    uint8_t *d_src = NULL, *d_out = NULL;

    assert_non_null(src);
    assert_non_null(out);
    assert_non_null(ref);
    fill_blocks(dt, src, n_blocks);
    if (quant_dequantize(dt, src, bytes, ref, n) != KILN_OK)
        fail_msg("quant_dequantize(%s): %s", dtype_name(dt), kiln_last_error());

    CU(cudaMalloc((void **)&d_src, bytes + src_off));
    CU(cudaMalloc((void **)&d_out, out_cap));
    CU(cudaMemcpy(d_src + src_off, src, bytes, cudaMemcpyHostToDevice));

    for (size_t t = 0; t < sizeof outs / sizeof outs[0]; t++) {
        const size_t before = shifted ? (size_t)out_size(outs[t]) : 0;
        const size_t out_bytes = before + (size_t)n * (size_t)out_size(outs[t]) + PAD;
        kiln_status st;

        CU(cudaMemsetAsync(d_out, 0xff, out_cap, stream));
        st = cuda_dequant_tensor(dt, d_src + src_off, bytes, outs[t], d_out + before, n, stream);
        if (st != KILN_OK)
            fail_msg("cuda_dequant_tensor(%s -> %s, %lld blocks): %s", dtype_name(dt),
                     dtype_name(outs[t]), (long long)n_blocks, kiln_last_error());
        CU(cudaStreamSynchronize(stream));
        CU(cudaMemcpy(out, d_out, out_bytes, cudaMemcpyDeviceToHost));
        if (compare_output(dt, src, ref, outs[t], out, n, before))
            fail_msg("%s -> %s, %lld blocks%s: output differs from the CPU (seed above)",
                     dtype_name(dt), dtype_name(outs[t]), (long long)n_blocks,
                     shifted ? ", unaligned buffers" : "");
    }
    CU(cudaFree(d_src));
    CU(cudaFree(d_out));
    kiln_free(src);
    kiln_free(out);
    kiln_free(ref);
}

static void check_type(kiln_dtype dt)
{
    static const int64_t counts[] = {1, 3, 257, 10007};

    SKIP_WITHOUT_GPU();
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        run_case(dt, counts[i], false);
        run_case(dt, counts[i], true);
    }
}

/* ==== tests that need no GPU ============================================== */

static void test_check_supported(void **state)
{
    cudev_info dev;
    (void)state;

    memset(&dev, 0, sizeof dev);
    snprintf(dev.name, sizeof dev.name, "Tesla T4");
    dev.cc_major = 7, dev.cc_minor = 5;
    assert_int_equal(cudev_check_supported(&dev), KILN_ERR_UNSUPPORTED);
    assert_non_null(strstr(kiln_last_error(), "7.5"));
    assert_non_null(strstr(kiln_last_error(), "Tesla T4"));
    dev.cc_major = 8, dev.cc_minor = 0;
    assert_int_equal(cudev_check_supported(&dev), KILN_OK);
    dev.cc_major = 9, dev.cc_minor = 0;
    assert_int_equal(cudev_check_supported(&dev), KILN_OK);
    dev.cc_major = 12, dev.cc_minor = 0;
    assert_int_equal(cudev_check_supported(&dev), KILN_OK);
}

static void test_check_messages(void **state)
{
    (void)state;
    assert_int_equal(cuda_check_fail(cudaErrorMemoryAllocation, "cudaMalloc(&p, n)", "x.cu", 7),
                     KILN_ERR_DEVICE);
    assert_non_null(strstr(kiln_last_error(), "cuda: cudaMalloc(&p, n) failed: "));
    assert_non_null(strstr(kiln_last_error(), "(x.cu:7)"));
    assert_int_equal(cuda_check_cublas_fail("CUBLAS_STATUS_NOT_SUPPORTED", "not supported",
                                            "cublasLtMatmul(h)", "g.c", 9),
                     KILN_ERR_DEVICE);
    assert_string_equal(kiln_last_error(), "cublas: cublasLtMatmul(h) failed: "
                                           "CUBLAS_STATUS_NOT_SUPPORTED: not supported (g.c:9)");
}

/* Every precondition is checked before any CUDA call. */
static void test_bad_args(void **state)
{
    void *p = (void *)(uintptr_t)0x10000, *odd = (void *)(uintptr_t)0x10001;
    (void)state;

    assert_true(cuda_dequant_supported(KILN_DT_Q4_K));
    assert_true(cuda_dequant_supported(KILN_DT_BF16));
    assert_false(cuda_dequant_supported(KILN_DT_Q2_K));
    assert_false(cuda_dequant_supported(KILN_DT_I8));
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q2_K, p, 84, KILN_DT_F32, p, 256, stream),
                     KILN_ERR_UNSUPPORTED);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q4_0, p, 18, KILN_DT_I8, p, 32, stream),
                     KILN_ERR_UNSUPPORTED);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q4_0, p, 36, KILN_DT_F32, p, 33, stream),
                     KILN_ERR_FORMAT);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q4_0, p, 35, KILN_DT_F32, p, 64, stream),
                     KILN_ERR_RANGE);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q6_K, p, 210, KILN_DT_F32, p, -256, stream),
                     KILN_ERR_RANGE);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q8_0, NULL, 34, KILN_DT_F16, p, 32, stream),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q8_0, p, 34, KILN_DT_F16, NULL, 32, stream),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q8_0, p, 34, KILN_DT_F16, odd, 32, stream),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_F16, odd, 64, KILN_DT_F32, p, 32, stream),
                     KILN_ERR_INVALID_ARG);
    assert_int_equal(cuda_dequant_tensor(KILN_DT_Q4_K, NULL, 0, KILN_DT_BF16, NULL, 0, stream),
                     KILN_OK);
}

/* Without a GPU: a KILN_ERR_DEVICE message that says why.  With one: an
 * ordinal past the last device is rejected. */
static void test_cudev_errors(void **state)
{
    cudev_info dev;
    int n = -1;
    (void)state;

    if (!gpu_ok && cudev_count(&n) != KILN_OK) {
        assert_int_equal(n, 0);
        assert_int_equal(cudev_query(0, &dev), KILN_ERR_DEVICE);
        assert_true(strncmp(kiln_last_error(), "cuda: ", 6) == 0);
        print_message("no GPU, as reported: %s\n", kiln_last_error());
        return;
    }
    assert_int_equal(cudev_count(&n), KILN_OK);
    assert_int_equal(cudev_query(n, &dev), KILN_ERR_INVALID_ARG);
    assert_int_equal(cudev_query(-1, &dev), KILN_ERR_INVALID_ARG);
}

/* ==== GPU tests ============================================================ */

static void test_cudev_enumerate(void **state)
{
    cudev_info devs[16];
    char line[512];
    int n = 0;
    (void)state;

    SKIP_WITHOUT_GPU();
    if (cudev_enumerate(devs, 16, &n) != KILN_OK)
        fail_msg("cudev_enumerate: %s", kiln_last_error());
    assert_true(n >= 1);
    for (int i = 0; i < n && i < 16; i++) {
        const cudev_info *d = &devs[i];
        cudev_describe(d, line, sizeof line);
        print_message("%s\n", line);
        assert_int_equal(d->ordinal, i);
        assert_true(d->name[0] != '\0');
        assert_true(d->cc_major >= 3);
        assert_true(d->total_mem > 0);
        assert_true(d->free_mem > 0 && d->free_mem <= d->total_mem);
        assert_true(d->sm_count > 0);
        assert_true(d->l2_bytes > 0);
        assert_true(d->smem_optin_bytes >= 48 * 1024);
        assert_true(d->mem_bw_bytes_s >= 0.0);
        assert_true(d->driver_version > 0);
        assert_true(d->runtime_version > 0);
    }
}

#define DQ_TEST(name, dt)                                                                \
    static void test_dequant_##name(void **state)                                        \
    {                                                                                    \
        (void)state;                                                                     \
        check_type(dt);                                                                  \
    }

DQ_TEST(q4_0, KILN_DT_Q4_0)
DQ_TEST(q4_1, KILN_DT_Q4_1)
DQ_TEST(q5_0, KILN_DT_Q5_0)
DQ_TEST(q5_1, KILN_DT_Q5_1)
DQ_TEST(q8_0, KILN_DT_Q8_0)
DQ_TEST(q4_k, KILN_DT_Q4_K)
DQ_TEST(q5_k, KILN_DT_Q5_K)
DQ_TEST(q6_k, KILN_DT_Q6_K)
DQ_TEST(q8_k, KILN_DT_Q8_K)
DQ_TEST(f16, KILN_DT_F16)
DQ_TEST(bf16, KILN_DT_BF16)
DQ_TEST(f32, KILN_DT_F32)

/* More chunks than the grid has threads (65536 blocks of 256), so the
 * kernels' grid-stride loop runs a second round. */
static void test_dequant_grid_stride(void **state)
{
    (void)state;
    SKIP_WITHOUT_GPU();
    run_case(KILN_DT_Q4_0, 65536 * 256 / 4 + 3, false);
}

/* ==== setup ================================================================ */

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

    /* Pin any asynchronous fault to the kernel that caused it. */
    cuda_check_set_sync(true);
    if (cudev_count(&n) != KILN_OK || cudev_query(0, &dev) != KILN_OK ||
        cudev_check_supported(&dev) != KILN_OK) {
        snprintf(gpu_why, sizeof gpu_why, "%s", kiln_last_error());
        print_message("GPU tests skipped: %s\n", gpu_why);
        return 0;
    }
    if (cudaSetDevice(0) != cudaSuccess ||
        cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        snprintf(gpu_why, sizeof gpu_why, "cannot set up device 0: %s",
                 cudaGetErrorString(cudaGetLastError()));
        print_message("GPU tests skipped: %s\n", gpu_why);
        return 0;
    }
    gpu_ok = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (gpu_ok)
        cudaStreamDestroy(stream);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_supported),
        cmocka_unit_test(test_check_messages),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_cudev_errors),
        cmocka_unit_test(test_cudev_enumerate),
        cmocka_unit_test(test_dequant_q4_0),
        cmocka_unit_test(test_dequant_q4_1),
        cmocka_unit_test(test_dequant_q5_0),
        cmocka_unit_test(test_dequant_q5_1),
        cmocka_unit_test(test_dequant_q8_0),
        cmocka_unit_test(test_dequant_q4_k),
        cmocka_unit_test(test_dequant_q5_k),
        cmocka_unit_test(test_dequant_q6_k),
        cmocka_unit_test(test_dequant_q8_k),
        cmocka_unit_test(test_dequant_f16),
        cmocka_unit_test(test_dequant_bf16),
        cmocka_unit_test(test_dequant_f32),
        cmocka_unit_test(test_dequant_grid_stride),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

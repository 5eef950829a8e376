/*
 * cpu_matmul_bench.c - the CPU backend's matmul speed per weight type and
 * shape, next to the machine's measured read bandwidth.
 *
 *   make -C build cpu_matmul_bench && build/cpu_matmul_bench [seconds-per-case [type [n]]]
 *
 * For each type (F32, Q8_0, Q4_K, ...), shape (out x in: Gemma 3 270M's
 * 2048x640 and 640x2048, a 4096x4096 that does not fit in cache, and
 * Gemma's Q8_0 262144x640 tied embedding used as lm_head), batch rows n
 * (1: decode, 128: prefill) and thread count (1, 2), prints the time per
 * call, weight bytes read per second and GFLOP/s (2 n out in per call),
 * from wall time and from the calling thread's CPU time.  The CPU-time
 * columns are the meaningful ones for 1 thread on a loaded machine; with 2
 * threads they count only the caller's share.  KILN_CPU_NO_SIMD=1 /
 * KILN_CPU_NO_BLAS=1 time the portable kernels / the built-in gemm.
 * Weights are random blocks with small scales; the numbers do not depend
 * on their values.
 */
#include "backend/backend.h"
#include "base/clock.h"
#include "format/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t bench_rng = 88172645463325252ull;

static uint8_t bench_byte(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (uint8_t)bench_rng;
}

/* Random weight bytes of dt with every f16 scale field a small number. */
static uint8_t *bench_weight(kiln_dtype dt, int64_t m, int64_t k, size_t *bytes)
{
    uint64_t rb;
    if (dtype_nbytes(dt, k, &rb))
        return NULL;
    *bytes = (size_t)rb * (size_t)m;
    uint8_t *w = malloc(*bytes);
    const dtype_info *di = dtype_get(dt);
    uint16_t small = quant_f32_to_f16(0.01f);
    for (size_t i = 0; i < *bytes; i++)
        w[i] = bench_byte();
    if (dt == KILN_DT_F32) {
        for (size_t i = 0; i < *bytes / 4; i++)
            ((float *)w)[i] = (float)(bench_byte() - 128) / 128.0f;
        return w;
    }
    if (dt == KILN_DT_F16 || dt == KILN_DT_BF16) {
        for (size_t i = 0; i < *bytes / 2; i++)
            ((uint16_t *)w)[i] = dt == KILN_DT_F16 ? small : quant_f32_to_bf16(0.01f);
        return w;
    }
    size_t off = dt == KILN_DT_Q6_K ? 208 : 0;
    for (size_t b = 0; b < *bytes / (size_t)di->block_bytes; b++) {
        memcpy(w + b * (size_t)di->block_bytes + off, &small, 2);
        if (dt == KILN_DT_Q4_K || dt == KILN_DT_Q5_K || dt == KILN_DT_Q4_1 || dt == KILN_DT_Q5_1)
            memcpy(w + b * (size_t)di->block_bytes + 2, &small, 2);
    }
    return w;
}

/* CPU time of the calling thread, in seconds. */
static double bench_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds per call of one matmul case: the best of ten batches of calls
 * that together take about `secs` (the best batch filters out time lost to
 * other processes on a shared machine).  *cpu: the calling thread's CPU
 * seconds per call in that batch (unaffected by being descheduled). */
static double bench_case(backend *be, const bk_tensor *w, const float *x, int64_t n, float *y,
                         double secs, double *cpu)
{
    be->ops->matmul(be, x, n, w, NULL, y); /* warm-up: scratch, caches */
    uint64_t t0 = clock_now_ns();
    be->ops->matmul(be, x, n, w, NULL, y);
    double one = (double)(clock_now_ns() - t0) * 1e-9, best = 1e30;
    long reps = (long)(secs / 10.0 / (one > 1e-7 ? one : 1e-7));
    reps = reps < 1 ? 1 : reps;
    for (int batch = 0; batch < 10; batch++) {
        double c0 = bench_thread_cpu();
        t0 = clock_now_ns();
        for (long r = 0; r < reps; r++)
            be->ops->matmul(be, x, n, w, NULL, y);
        double per = (double)(clock_now_ns() - t0) * 1e-9 / (double)reps;
        if (per < best) {
            best = per;
            *cpu = (bench_thread_cpu() - c0) / (double)reps;
        }
    }
    return best;
}

/* Read bandwidth: sum a 512 MiB buffer, best of three passes. */
static double bench_read_bw(void)
{
    size_t n = (size_t)128 << 20;
    float *buf = malloc(n * sizeof *buf);
    volatile float sink = 0.0f;
    double best = 0.0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 7);
    for (int pass = 0; pass < 3; pass++) {
        uint64_t t0 = clock_now_ns();
        float s[8] = {0};
        for (size_t i = 0; i < n; i += 8)
            for (int l = 0; l < 8; l++)
                s[l] += buf[i + l];
        sink = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
        double gbs = (double)(n * sizeof *buf) / ((double)(clock_now_ns() - t0) * 1e-9) / 1e9;
        best = gbs > best ? gbs : best;
    }
    (void)sink;
    free(buf);
    return best;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.3;
    const char *only_type = argc > 2 ? argv[2] : NULL;
    int64_t only_n = argc > 3 ? atoll(argv[3]) : 0;
    static const kiln_dtype types[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_Q8_0, KILN_DT_Q4_0,
                                       KILN_DT_Q4_K, KILN_DT_Q5_K, KILN_DT_Q6_K};
    static const int64_t shapes[][2] = {{2048, 640}, {640, 2048}, {4096, 4096}, {262144, 640}};
    static const int64_t ns[] = {1, 128};
    printf("single-thread read bandwidth (512 MiB sum): %.1f GB/s\n", bench_read_bw());
    printf("%-6s %11s %4s %3s %10s %9s %9s %9s %9s\n", "type", "out x in", "n", "thr",
           "us/call", "wGB/s", "GFLOP/s", "cpuGB/s", "cpuGFLOP");
    for (int threads = 1; threads <= 2; threads++) {
        backend *be;
        if (bk_cpu_create(threads, &be))
            return 1;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
                int64_t m = shapes[si][0], k = shapes[si][1];
                if (only_type && strcmp(only_type, dtype_name(types[ti])))
                    continue;
                size_t bytes;
                uint8_t *wb = bench_weight(types[ti], m, k, &bytes);
                bk_tensor w;
                if (!wb) /* rows are not whole blocks of this type */
                    continue;
                if (bytes > ((size_t)256 << 20) && types[ti] != KILN_DT_Q8_0) {
                    free(wb); /* the vocabulary-sized shape: its stored type only */
                    continue;
                }
                if (be->ops->weight(be, types[ti], k, m, wb, bytes, &w))
                    return 1;
                float *x = malloc((size_t)(128 * k) * sizeof *x);
                float *y = malloc((size_t)(128 * m) * sizeof *y);
                for (int64_t i = 0; i < 128 * k; i++)
                    x[i] = (float)(bench_byte() - 128) / 128.0f;
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                    if (only_n && ns[ni] != only_n)
                        continue;
                    double cpu = 0.0, s = bench_case(be, &w, x, ns[ni], y, secs, &cpu);
                    double flop = 2.0 * (double)ns[ni] * (double)m * (double)k;
                    printf("%-6s %5lldx%-5lld %4lld %3d %10.1f %9.2f %9.1f %9.2f %9.1f\n",
                           dtype_name(types[ti]), (long long)m, (long long)k, (long long)ns[ni],
                           threads, s * 1e6, (double)bytes / s / 1e9, flop / s / 1e9,
                           (double)bytes / cpu / 1e9, flop / cpu / 1e9);
                }
                free(x);
                free(y);
                free(wb);
            }
        be->ops->destroy(be);
    }
    return 0;
}

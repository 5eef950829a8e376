/*
 * cpu_kern.c - portable C kernels of the CPU backend: weight-row dot
 * products and row dequantization for every matmul weight type, the f32
 * gemm used for prefill without OpenBLAS, and the f32 vector helpers of
 * attention.  The AVX2 builds of the same contracts live in cpu_avx2.c.
 *
 * Invariants:
 *   1. Weight rows are dequantized by quant_dequantize, so the values a dot
 *      product uses are exactly those of the format's reference.
 *   2. Sums run over eight partial accumulators in a fixed order, so a
 *      result does not depend on how rows were split over threads.
 *   3. Nothing here allocates: chunks of a row go through a stack buffer.
 */
#include "backend/cpu/cpu_impl.h"

#include "base/error.h"
#include "format/quant.h"

#include <string.h>

/* Elements dequantized per step of a portable dot product. */
#define KP_CHUNK 256

/* Bytes of `k` elements of dt (k a whole number of blocks). */
static size_t kp_bytes(kiln_dtype dt, int64_t k)
{
    const dtype_info *di = dtype_get(dt);
    return (size_t)(k / di->block_elems) * (size_t)di->block_bytes;
}

static void kp_deq(kiln_dtype dt, const uint8_t *w, float *y, int64_t k)
{
    kiln_status st = quant_dequantize(dt, w, kp_bytes(dt, k), y, k);
    KILN_ASSERT(st == KILN_OK);
}

/* y[t] = <row w, x_t>: dequantize KP_CHUNK elements at a time, then
 * accumulate every x row against the chunk. */
static void kp_dot(kiln_dtype dt, const uint8_t *w, const float *x, int64_t ldx, int nx,
                   int64_t k, float *y)
{
    float buf[KP_CHUNK];
    float acc[CPU_NX][8];
    memset(acc, 0, sizeof acc);
    for (int64_t i0 = 0; i0 < k; i0 += KP_CHUNK) {
        int64_t len = k - i0 < KP_CHUNK ? k - i0 : KP_CHUNK;
        if (dt == KILN_DT_F32)
            memcpy(buf, w + 4 * i0, (size_t)len * sizeof(float));
        else
            kp_deq(dt, w + kp_bytes(dt, i0), buf, len);
        for (int t = 0; t < nx; t++) {
            const float *xt = x + t * ldx + i0;
            for (int64_t j = 0; j < len; j++)
                acc[t][j & 7] += buf[j] * xt[j];
        }
    }
    for (int t = 0; t < nx; t++)
        y[t] = ((acc[t][0] + acc[t][4]) + (acc[t][1] + acc[t][5])) +
               ((acc[t][2] + acc[t][6]) + (acc[t][3] + acc[t][7]));
}

#define KP_TYPE(NAME, DT)                                                                    \
    static void kp_dot_##NAME(const uint8_t *w, const float *x, int64_t ldx, int nx,         \
                              int64_t k, float *y)                                           \
    {                                                                                        \
        kp_dot(DT, w, x, ldx, nx, k, y);                                                     \
    }                                                                                        \
    static void kp_deq_##NAME(const uint8_t *w, float *y, int64_t k)                         \
    {                                                                                        \
        kp_deq(DT, w, y, k);                                                                 \
    }

KP_TYPE(f32, KILN_DT_F32)
KP_TYPE(f16, KILN_DT_F16)
KP_TYPE(bf16, KILN_DT_BF16)
KP_TYPE(q8_0, KILN_DT_Q8_0)
KP_TYPE(q4_0, KILN_DT_Q4_0)
KP_TYPE(q4_1, KILN_DT_Q4_1)
KP_TYPE(q5_0, KILN_DT_Q5_0)
KP_TYPE(q5_1, KILN_DT_Q5_1)
KP_TYPE(q4_k, KILN_DT_Q4_K)
KP_TYPE(q5_k, KILN_DT_Q5_K)
KP_TYPE(q6_k, KILN_DT_Q6_K)

static const cpu_kern kp_table[] = {
    {KILN_DT_F32, kp_dot_f32, kp_deq_f32, CPU_PERM_NONE},
    {KILN_DT_F16, kp_dot_f16, kp_deq_f16, CPU_PERM_NONE},
    {KILN_DT_BF16, kp_dot_bf16, kp_deq_bf16, CPU_PERM_NONE},
    {KILN_DT_Q8_0, kp_dot_q8_0, kp_deq_q8_0, CPU_PERM_NONE},
    {KILN_DT_Q4_0, kp_dot_q4_0, kp_deq_q4_0, CPU_PERM_NONE},
    {KILN_DT_Q4_1, kp_dot_q4_1, kp_deq_q4_1, CPU_PERM_NONE},
    {KILN_DT_Q5_0, kp_dot_q5_0, kp_deq_q5_0, CPU_PERM_NONE},
    {KILN_DT_Q5_1, kp_dot_q5_1, kp_deq_q5_1, CPU_PERM_NONE},
    {KILN_DT_Q4_K, kp_dot_q4_k, kp_deq_q4_k, CPU_PERM_NONE},
    {KILN_DT_Q5_K, kp_dot_q5_k, kp_deq_q5_k, CPU_PERM_NONE},
    {KILN_DT_Q6_K, kp_dot_q6_k, kp_deq_q6_k, CPU_PERM_NONE},
};

const cpu_kern *cpu_kern_get(kiln_dtype dt, bool simd)
{
    const cpu_kern *k;
    if (simd && (k = cpu_kern_avx2(dt)))
        return k;
    for (size_t i = 0; i < KILN_ARRAY_LEN(kp_table); i++)
        if (kp_table[i].dt == dt)
            return &kp_table[i];
    return NULL;
}

/* ---- permuted activations ------------------------------------------------- */

void cpu_x_permute(cpu_perm perm, const float *x, int64_t n, int64_t k, float *out)
{
    int src[32];
    for (int p = 0; p < 32; p++) {
        int hi = p / 8, lo = p % 8;
        src[p] = perm == CPU_PERM_K ? 4 * lo + hi
                 : perm == CPU_PERM_HALVES ? (lo < 4 ? 4 * lo + hi : 16 + 4 * (lo - 4) + hi)
                                           : p;
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t g = 0; g < k; g += 32)
            for (int p = 0; p < 32; p++)
                out[r * k + g + p] = x[r * k + g + src[p]];
}

/* ---- f32 gemm ------------------------------------------------------------ */

/* y(n, m) = x(n, k) t(m, k)^T, 4 x 4 output tiles, eight-lane sums. */
static void kp_gemm_tile(int64_t ni, int64_t mj, int64_t k, const float *x, int64_t ldx,
                         const float *t, int64_t ldt, float *y, int64_t ldy)
{
    float acc[4][4][8];
    memset(acc, 0, sizeof acc);
    for (int64_t i0 = 0; i0 < k; i0 += 8) {
        int64_t len = k - i0 < 8 ? k - i0 : 8;
        for (int64_t a = 0; a < ni; a++)
            for (int64_t b = 0; b < mj; b++)
                for (int64_t l = 0; l < len; l++)
                    acc[a][b][l] += x[a * ldx + i0 + l] * t[b * ldt + i0 + l];
    }
    for (int64_t a = 0; a < ni; a++)
        for (int64_t b = 0; b < mj; b++) {
            const float *s = acc[a][b];
            y[a * ldy + b] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
        }
}

void cpu_gemm_nt(bool simd, int64_t n, int64_t m, int64_t k, const float *x, int64_t ldx,
                 const float *t, int64_t ldt, float *y, int64_t ldy)
{
    if (simd) {
        cpu_gemm_nt_avx2(n, m, k, x, ldx, t, ldt, y, ldy);
        return;
    }
    for (int64_t i = 0; i < n; i += 4)
        for (int64_t j = 0; j < m; j += 4)
            kp_gemm_tile(n - i < 4 ? n - i : 4, m - j < 4 ? m - j : 4, k, x + i * ldx, ldx,
                         t + j * ldt, ldt, y + i * ldy + j, ldy);
}

/* ---- f32 vectors --------------------------------------------------------- */

float cpu_dot_f32(bool simd, const float *a, const float *b, int64_t k)
{
    if (simd)
        return cpu_dot_f32_avx2(a, b, k);
    float acc[8] = {0};
    for (int64_t i = 0; i < k; i++)
        acc[i & 7] += a[i] * b[i];
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

void cpu_axpy_f32(bool simd, float a, const float *x, float *y, int64_t k)
{
    if (simd) {
        cpu_axpy_f32_avx2(a, x, y, k);
        return;
    }
    for (int64_t i = 0; i < k; i++)
        y[i] += a * x[i];
}

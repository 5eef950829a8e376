/*
 * cpu_avx2.c - AVX2/FMA/F16C kernels of the CPU backend.
 *
 * The file builds without -mavx2: every SIMD function carries a target
 * attribute and is only called after cpu_avx2_usable() said yes (the CPU
 * backend checks once, at creation).  On other architectures the entry
 * points fall back to the portable kernels of cpu_kern.c.
 *
 * Contracts are those of cpu_impl.h; results agree with the portable
 * kernels to float rounding (f32 accumulation in both, different order).
 */
#include "backend/cpu/cpu_impl.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CPU_X86 1
#include <immintrin.h>
#define CPU_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

#ifdef CPU_X86

bool cpu_avx2_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}

/* ---- helpers ------------------------------------------------------------- */

CPU_AVX2 static inline float hsum8(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* ---- f32 vectors --------------------------------------------------------- */

CPU_AVX2 float cpu_dot_f32_avx2(const float *a, const float *b, int64_t k)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= k; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < k; i++)
        s += a[i] * b[i];
    return s;
}

CPU_AVX2 void cpu_axpy_f32_avx2(float a, const float *x, float *y, int64_t k)
{
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i),
                                                _mm256_loadu_ps(y + i)));
    for (; i < k; i++)
        y[i] += a * x[i];
}

/* ---- f32 gemm ------------------------------------------------------------ */

CPU_AVX2 void cpu_gemm_nt_avx2(int64_t n, int64_t m, int64_t k, const float *x, int64_t ldx,
                               const float *t, int64_t ldt, float *y, int64_t ldy)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < m; j++)
            y[i * ldy + j] = cpu_dot_f32_avx2(x + i * ldx, t + j * ldt, k);
}

/* ---- weight-row kernels --------------------------------------------------- */

const cpu_kern *cpu_kern_avx2(kiln_dtype dt)
{
    return NULL;
}

#else /* !CPU_X86 */

bool cpu_avx2_usable(void)
{
    return false;
}

const cpu_kern *cpu_kern_avx2(kiln_dtype dt)
{
    return NULL;
}

float cpu_dot_f32_avx2(const float *a, const float *b, int64_t k)
{
    return cpu_dot_f32(false, a, b, k);
}

void cpu_axpy_f32_avx2(float a, const float *x, float *y, int64_t k)
{
    cpu_axpy_f32(false, a, x, y, k);
}

void cpu_gemm_nt_avx2(int64_t n, int64_t m, int64_t k, const float *x, int64_t ldx,
                      const float *t, int64_t ldt, float *y, int64_t ldy)
{
    cpu_gemm_nt(false, n, m, k, x, ldx, t, ldt, y, ldy);
}

#endif

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

#include "format/quant.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CPU_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define CPU_AVX2 __attribute__((target("avx2,fma,f16c")))
#define AI __attribute__((always_inline))
/* Fully unroll a short constant loop, so its vectors stay in registers. */
#define UNROLL _Pragma("GCC unroll 16")
#endif

#ifdef CPU_X86

/* __builtin_cpu_supports("avx2") also checks that the OS saves the YMM
 * state.  F16C is read from CPUID leaf 1 directly: clang before 16 rejects
 * "f16c" as a feature name for the builtin. */
bool cpu_avx2_usable(void)
{
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return false;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
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

/* ---- f32 gemm ------------------------------------------------------------
 * y(n, m) = x(n, k) t(m, k)^T in tiles of 4 x rows by 3 t rows: twelve
 * accumulators, 7 loads per 12 FMAs.  Edge tiles repeat the last row
 * instead of branching and store only the valid outputs.  The 3 t rows of
 * a tile stay in L1 while the x rows stream past them. */

CPU_AVX2 static void gemm_tile_4x3(const float *const xr[4], const float *const tr[3],
                                   int64_t k, float out[4][3])
{
    __m256 acc[4][3];
    UNROLL for (int a = 0; a < 4; a++)
        UNROLL for (int b = 0; b < 3; b++)
            acc[a][b] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 t0 = _mm256_loadu_ps(tr[0] + i), t1 = _mm256_loadu_ps(tr[1] + i);
        __m256 t2 = _mm256_loadu_ps(tr[2] + i);
        UNROLL for (int a = 0; a < 4; a++) {
            __m256 xv = _mm256_loadu_ps(xr[a] + i);
            acc[a][0] = _mm256_fmadd_ps(xv, t0, acc[a][0]);
            acc[a][1] = _mm256_fmadd_ps(xv, t1, acc[a][1]);
            acc[a][2] = _mm256_fmadd_ps(xv, t2, acc[a][2]);
        }
    }
    UNROLL for (int a = 0; a < 4; a++)
        UNROLL for (int b = 0; b < 3; b++) {
            float s = hsum8(acc[a][b]);
            for (int64_t r = i; r < k; r++)
                s += xr[a][r] * tr[b][r];
            out[a][b] = s;
        }
}

CPU_AVX2 void cpu_gemm_nt_avx2(int64_t n, int64_t m, int64_t k, const float *x, int64_t ldx,
                               const float *t, int64_t ldt, float *y, int64_t ldy)
{
    for (int64_t j = 0; j < m; j += 3) {
        const float *tr[3];
        for (int b = 0; b < 3; b++)
            tr[b] = t + (j + b < m ? j + b : m - 1) * ldt;
        for (int64_t i = 0; i < n; i += 4) {
            const float *xr[4];
            float out[4][3];
            for (int a = 0; a < 4; a++)
                xr[a] = x + (i + a < n ? i + a : n - 1) * ldx;
            gemm_tile_4x3(xr, tr, k, out);
            for (int a = 0; a < 4 && i + a < n; a++)
                for (int b = 0; b < 3 && j + b < m; b++)
                    y[(i + a) * ldy + j + b] = out[a][b];
        }
    }
}

/* ---- weight groups ---------------------------------------------------------
 * Each *_group function turns group g (32 consecutive elements) of a block
 * into four vectors of 8 f32 weights, with the arithmetic of quant.c's
 * reference (products may fuse into one FMA rounding). */


CPU_AVX2 static inline AI float h2f(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 32 bytes of quants (0..255) into four vectors of 8 epi32. */
CPU_AVX2 static inline AI void widen_u8x32(__m256i q, __m256i out[4])
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    out[0] = _mm256_cvtepu8_epi32(lo);
    out[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
    out[2] = _mm256_cvtepu8_epi32(hi);
    out[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
}

/* 16 bytes of a 32-element block: low nibbles are elements 0..15, high
 * nibbles 16..31; returned as 32 bytes in element order. */
CPU_AVX2 static inline AI __m256i nibbles_16(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(q, m), hi = _mm_and_si128(_mm_srli_epi16(q, 4), m);
    return _mm256_set_m128i(hi, lo);
}

/* Bit j of qh (j = 0..31) << 4, per element, as 32 bytes. */
CPU_AVX2 static inline AI __m256i q5_high(uint32_t qh)
{
    const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                            0x0303030303030303ll);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* F32 / F16 / BF16 groups: 32 consecutive values. */
CPU_AVX2 static inline AI void f32_group(const uint8_t *b, int g, __m256 w[4])
{
    const float *p = (const float *)b + 32 * g;
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_loadu_ps(p + 8 * c);
}

CPU_AVX2 static inline AI void f16_group(const uint8_t *b, int g, __m256 w[4])
{
    const __m128i *p = (const __m128i *)(b + 64 * g);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_cvtph_ps(_mm_loadu_si128(p + c));
}

CPU_AVX2 static inline AI void bf16_group(const uint8_t *b, int g, __m256 w[4])
{
    const __m128i *p = (const __m128i *)(b + 64 * g);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p + c)), 16));
}

/* Q8_0 {f16 d; i8 qs[32]}: q * d. */
CPU_AVX2 static inline AI void q8_0_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b));
    UNROLL
    for (int c = 0; c < 4; c++) {
        __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + 8 * c));
        w[c] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
}

/* Q4_0 {f16 d; u8 qs[16]}: d * (q - 8). */
CPU_AVX2 static inline AI void q4_0_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b));
    __m256i q[4];
    widen_u8x32(nibbles_16(b + 2), q);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[c], _mm256_set1_epi32(8))));
}

/* Q4_1 {f16 d, m; u8 qs[16]}: d * q + m. */
CPU_AVX2 static inline AI void q4_1_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b)), m = _mm256_set1_ps(h2f(b + 2));
    __m256i q[4];
    widen_u8x32(nibbles_16(b + 4), q);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[c]), m);
}

/* Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: d * (q5 - 16). */
CPU_AVX2 static inline AI void q5_0_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b));
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    __m256i q[4];
    widen_u8x32(_mm256_or_si256(nibbles_16(b + 6), q5_high(qh)), q);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[c], _mm256_set1_epi32(16))));
}

/* Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}: d * q5 + m. */
CPU_AVX2 static inline AI void q5_1_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b)), m = _mm256_set1_ps(h2f(b + 2));
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    __m256i q[4];
    widen_u8x32(_mm256_or_si256(nibbles_16(b + 8), q5_high(qh)), q);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[c]), m);
}

/* Scale and min of sub-block j of Q4_K/Q5_K's packed scales[12]. */
static inline AI void k_scale_min(const uint8_t *sc, int j, int *scale, int *min)
{
    if (j < 4) {
        *scale = sc[j] & 0x3f;
        *min = sc[j + 4] & 0x3f;
    } else {
        *scale = (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 2) & 0x30);
        *min = (sc[j + 4] >> 4) | ((sc[j] >> 2) & 0x30);
    }
}

/* Sub-block g of a Q4_K/Q5_K super-block: (d * sc) * q - (dmin * m). */
CPU_AVX2 static inline AI void k_affine(const uint8_t *b, int g, __m256i qb, __m256 w[4])
{
    int sc, mn;
    k_scale_min(b + 4, g, &sc, &mn);
    __m256 dl = _mm256_set1_ps(h2f(b) * (float)sc), ml = _mm256_set1_ps(h2f(b + 2) * (float)mn);
    __m256i q[4];
    widen_u8x32(qb, q);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_fmsub_ps(dl, _mm256_cvtepi32_ps(q[c]), ml);
}

/* Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: sub-block g takes the low
 * (even g) or high (odd g) nibbles of qs[32 (g/2) ..]. */
CPU_AVX2 static inline AI void q4_k_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256i q = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (g / 2)));
    if (g & 1)
        q = _mm256_srli_epi16(q, 4);
    k_affine(b, g, _mm256_and_si256(q, _mm256_set1_epi8(0x0f)), w);
}

/* Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K plus
 * bit g of qh[l] as the fifth bit. */
CPU_AVX2 static inline AI void q5_k_group(const uint8_t *b, int g, __m256 w[4])
{
    __m256i q = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * (g / 2)));
    if (g & 1)
        q = _mm256_srli_epi16(q, 4);
    q = _mm256_and_si256(q, _mm256_set1_epi8(0x0f));
    __m256i bit = _mm256_set1_epi8((char)(1u << g));
    __m256i hb = _mm256_loadu_si256((const __m256i *)(b + 16));
    hb = _mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit);
    q = _mm256_or_si256(q, _mm256_and_si256(hb, _mm256_set1_epi8(0x10)));
    k_affine(b, g, q, w);
}

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: sub-block g = 4h + kk
 * of half h; (d * scales[e / 16]) * (q - 32). */
CPU_AVX2 static inline AI void q6_k_group(const uint8_t *b, int g, __m256 w[4])
{
    int h = g / 4, kk = g % 4;
    __m256i lo = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * (kk & 1)));
    if (kk >= 2)
        lo = _mm256_srli_epi16(lo, 4);
    lo = _mm256_and_si256(lo, _mm256_set1_epi8(0x0f));
    __m256i hi = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
    hi = _mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * kk));
    hi = _mm256_and_si256(hi, _mm256_set1_epi8(0x03));
    __m256i q[4];
    widen_u8x32(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)), q);
    const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * kk;
    float d = h2f(b + 208);
    __m256 d0 = _mm256_set1_ps(d * (float)sc[0]), d1 = _mm256_set1_ps(d * (float)sc[1]);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_mul_ps(c < 2 ? d0 : d1,
                             _mm256_cvtepi32_ps(_mm256_sub_epi32(q[c], _mm256_set1_epi32(32))));
}

/* ---- weight groups in permuted order (dot products) ------------------------
 * The x these read was reordered by cpu_x_permute, so vector j of a group
 * holds byte j of each 32-bit word of the quants: shifts and masks unpack
 * it, no byte shuffles.  CPU_PERM_K: vector j, lane d is element 4d + j.
 * CPU_PERM_HALVES: vector c, lane i is element 4i + c (low nibbles) for
 * i < 4 and 16 + 4(i-4) + c (high nibbles) for i >= 4. */

/* Byte j of each word of v, shifted right by s more bits, masked. */
#define BYTE_FIELD(v, j, s, mask) \
    _mm256_and_si256(_mm256_srli_epi32((v), 8 * (j) + (s)), _mm256_set1_epi32(mask))

/* Q4_K, permuted: (d * sc) * q - (dmin * m). */
CPU_AVX2 static inline AI void q4_k_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * (g / 2)));
    int sc, mn;
    k_scale_min(b + 4, g, &sc, &mn);
    __m256 dl = _mm256_set1_ps(h2f(b) * (float)sc), ml = _mm256_set1_ps(h2f(b + 2) * (float)mn);
    UNROLL
    for (int j = 0; j < 4; j++)
        w[j] = _mm256_fmsub_ps(dl, _mm256_cvtepi32_ps(BYTE_FIELD(v, j, 4 * (g & 1), 0x0f)), ml);
}

/* Q5_K, permuted: as Q4_K with bit g of qh[l] as the fifth bit. */
CPU_AVX2 static inline AI void q5_k_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    __m256i v = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * (g / 2)));
    __m256i h = _mm256_loadu_si256((const __m256i *)(b + 16));
    int sc, mn;
    k_scale_min(b + 4, g, &sc, &mn);
    __m256 dl = _mm256_set1_ps(h2f(b) * (float)sc), ml = _mm256_set1_ps(h2f(b + 2) * (float)mn);
    UNROLL
    for (int j = 0; j < 4; j++) {
        __m256i q = _mm256_or_si256(BYTE_FIELD(v, j, 4 * (g & 1), 0x0f),
                                    _mm256_slli_epi32(BYTE_FIELD(h, j, g, 0x01), 4));
        w[j] = _mm256_fmsub_ps(dl, _mm256_cvtepi32_ps(q), ml);
    }
}

/* Q6_K, permuted: lanes 0-3 are elements < 16 of the sub-block (scale 0),
 * lanes 4-7 the others (scale 1). */
CPU_AVX2 static inline AI void q6_k_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    int h = g / 4, kk = g % 4;
    __m256i lo = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32 * (kk & 1)));
    __m256i hi = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
    const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * kk;
    float d = h2f(b + 208);
    __m256 ds = _mm256_set_m128(_mm_set1_ps(d * (float)sc[1]), _mm_set1_ps(d * (float)sc[0]));
    UNROLL
    for (int j = 0; j < 4; j++) {
        __m256i q = _mm256_or_si256(BYTE_FIELD(lo, j, kk >= 2 ? 4 : 0, 0x0f),
                                    _mm256_slli_epi32(BYTE_FIELD(hi, j, 2 * kk, 0x03), 4));
        q = _mm256_sub_epi32(q, _mm256_set1_epi32(32));
        w[j] = _mm256_mul_ps(ds, _mm256_cvtepi32_ps(q));
    }
}

/* 16 quant bytes as words 0-3 in both halves, the upper half shifted right
 * by 4: vector c's nibble is then byte c of every word. */
CPU_AVX2 static inline AI __m256i halves_16(const uint8_t *qs)
{
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_blend_epi32(v, _mm256_srli_epi32(v, 4), 0xf0);
}

/* Fifth bits of Q5_0/Q5_1 for vector c of the halves order, << 4. */
CPU_AVX2 static inline AI __m256i halves_q5_high(uint32_t qh, int c)
{
    __m256i e = _mm256_setr_epi32(c, 4 + c, 8 + c, 12 + c, 16 + c, 20 + c, 24 + c, 28 + c);
    __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)qh), e),
                                   _mm256_set1_epi32(1));
    return _mm256_slli_epi32(bit, 4);
}

CPU_AVX2 static inline AI void q4_0_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b));
    __m256i v = halves_16(b + 2);
    UNROLL
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_sub_epi32(BYTE_FIELD(v, c, 0, 0x0f), _mm256_set1_epi32(8));
        w[c] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(q));
    }
}

CPU_AVX2 static inline AI void q4_1_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b)), m = _mm256_set1_ps(h2f(b + 2));
    __m256i v = halves_16(b + 4);
    UNROLL
    for (int c = 0; c < 4; c++)
        w[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(BYTE_FIELD(v, c, 0, 0x0f)), m);
}

CPU_AVX2 static inline AI void q5_0_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b));
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    __m256i v = halves_16(b + 6);
    UNROLL
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_or_si256(BYTE_FIELD(v, c, 0, 0x0f), halves_q5_high(qh, c));
        w[c] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(16))));
    }
}

CPU_AVX2 static inline AI void q5_1_pgroup(const uint8_t *b, int g, __m256 w[4])
{
    __m256 d = _mm256_set1_ps(h2f(b)), m = _mm256_set1_ps(h2f(b + 2));
    uint32_t qh;
    memcpy(&qh, b + 4, 4);
    __m256i v = halves_16(b + 8);
    UNROLL
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_or_si256(BYTE_FIELD(v, c, 0, 0x0f), halves_q5_high(qh, c));
        w[c] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q), m);
    }
}

/* ---- dot products and dequantization over a row ------------------------------
 * KERN(name, dtype, dot group_fn, deq group_fn, groups per block, block
 * bytes) defines name_dot (cpu_dot_fn, x in the dot group's order) and
 * name_deq (cpu_deq_fn, natural order).  Accumulators: four per x row when
 * one row (latency), two per row otherwise (registers). */

CPU_AVX2 static inline AI void acc_group(__m256 acc[CPU_NX][4], const __m256 w[4],
                                         const float *x, int64_t ldx, const int nx)
{
    UNROLL
    for (int t = 0; t < nx; t++)
        UNROLL
        for (int c = 0; c < 4; c++) {
            int a = nx == 1 ? c : c & 1;
            acc[t][a] = _mm256_fmadd_ps(w[c], _mm256_loadu_ps(x + t * ldx + 8 * c), acc[t][a]);
        }
}

CPU_AVX2 static inline AI float acc_sum(__m256 a[4])
{
    return hsum8(_mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
}

/* Tail of a scalar-typed row: elements [k0, k) (fewer than 32). */
static float tail_elem(kiln_dtype dt, const uint8_t *w, int64_t i)
{
    uint16_t h;
    float f;
    switch (dt) {
    case KILN_DT_F32: memcpy(&f, w + 4 * i, 4); return f;
    case KILN_DT_F16: memcpy(&h, w + 2 * i, 2); return quant_f16_to_f32(h);
    default: memcpy(&h, w + 2 * i, 2); return quant_bf16_to_f32(h);
    }
}

#define KERN(NAME, DT, GROUP, DGROUP, GPB, BB)                                                        \
    CPU_AVX2 static inline AI void NAME##_dotn(const uint8_t *w, const float *x, int64_t ldx, \
                                               const int nx, int64_t k, float *y)             \
    {                                                                                         \
        __m256 acc[CPU_NX][4];                                                                \
        UNROLL for (int t = 0; t < CPU_NX; t++)                                               \
            UNROLL for (int a = 0; a < 4; a++)                                                \
                acc[t][a] = _mm256_setzero_ps();                                              \
        int64_t nb = k / (32 * (GPB));                                                        \
        for (int64_t ib = 0; ib < nb; ib++) {                                                 \
            const uint8_t *blk = w + (size_t)ib * (BB);                                       \
            UNROLL for (int g = 0; g < (GPB); g++) {                                          \
                __m256 wv[4];                                                                 \
                GROUP(blk, g, wv);                                                            \
                acc_group(acc, wv, x + 32 * ((GPB) * ib + g), ldx, nx);                       \
            }                                                                                 \
        }                                                                                     \
        int64_t ng = nb * (GPB);                                                              \
        UNROLL for (int t = 0; t < nx; t++) {                                                 \
            y[t] = acc_sum(acc[t]);                                                           \
            for (int64_t i = 32 * ng; i < k; i++)                                             \
                y[t] += tail_elem(DT, w, i) * x[t * ldx + i];                                 \
        }                                                                                     \
    }                                                                                         \
    CPU_AVX2 static void NAME##_dot(const uint8_t *w, const float *x, int64_t ldx, int nx,    \
                                    int64_t k, float *y)                                      \
    {                                                                                         \
        switch (nx) {                                                                         \
        case 1: NAME##_dotn(w, x, ldx, 1, k, y); break;                                       \
        case 2: NAME##_dotn(w, x, ldx, 2, k, y); break;                                       \
        case 3: NAME##_dotn(w, x, ldx, 3, k, y); break;                                       \
        default: NAME##_dotn(w, x, ldx, 4, k, y); break;                                      \
        }                                                                                     \
    }                                                                                         \
    CPU_AVX2 static void NAME##_deq(const uint8_t *w, float *y, int64_t k)                    \
    {                                                                                         \
        int64_t nb = k / (32 * (GPB)), ng = nb * (GPB);                                       \
        for (int64_t ib = 0; ib < nb; ib++) {                                                 \
            UNROLL for (int g = 0; g < (GPB); g++) {                                          \
                __m256 wv[4];                                                                 \
                DGROUP(w + (size_t)ib * (BB), g, wv);                                          \
                UNROLL for (int c = 0; c < 4; c++)                                            \
                    _mm256_storeu_ps(y + 32 * ((GPB) * ib + g) + 8 * c, wv[c]);               \
            }                                                                                 \
        }                                                                                     \
        for (int64_t i = 32 * ng; i < k; i++)                                                 \
            y[i] = tail_elem(DT, w, i);                                                       \
    }

/* Scalar types: "blocks" of 32 elements, any k (the tail is scalar). */
KERN(a_f32, KILN_DT_F32, f32_group, f32_group, 1, 128)
KERN(a_f16, KILN_DT_F16, f16_group, f16_group, 1, 64)
KERN(a_bf16, KILN_DT_BF16, bf16_group, bf16_group, 1, 64)
KERN(a_q8_0, KILN_DT_Q8_0, q8_0_group, q8_0_group, 1, 34)
KERN(a_q4_0, KILN_DT_Q4_0, q4_0_pgroup, q4_0_group, 1, 18)
KERN(a_q4_1, KILN_DT_Q4_1, q4_1_pgroup, q4_1_group, 1, 20)
KERN(a_q5_0, KILN_DT_Q5_0, q5_0_pgroup, q5_0_group, 1, 22)
KERN(a_q5_1, KILN_DT_Q5_1, q5_1_pgroup, q5_1_group, 1, 24)
KERN(a_q4_k, KILN_DT_Q4_K, q4_k_pgroup, q4_k_group, 8, 144)
KERN(a_q5_k, KILN_DT_Q5_K, q5_k_pgroup, q5_k_group, 8, 176)
KERN(a_q6_k, KILN_DT_Q6_K, q6_k_pgroup, q6_k_group, 8, 210)

#define KERN_ENTRY(NAME, DT, PERM) {DT, NAME##_dot, NAME##_deq, PERM}
static const cpu_kern avx2_table[] = {
    KERN_ENTRY(a_f32, KILN_DT_F32, CPU_PERM_NONE),
    KERN_ENTRY(a_f16, KILN_DT_F16, CPU_PERM_NONE),
    KERN_ENTRY(a_bf16, KILN_DT_BF16, CPU_PERM_NONE),
    KERN_ENTRY(a_q8_0, KILN_DT_Q8_0, CPU_PERM_NONE),
    KERN_ENTRY(a_q4_0, KILN_DT_Q4_0, CPU_PERM_HALVES),
    KERN_ENTRY(a_q4_1, KILN_DT_Q4_1, CPU_PERM_HALVES),
    KERN_ENTRY(a_q5_0, KILN_DT_Q5_0, CPU_PERM_HALVES),
    KERN_ENTRY(a_q5_1, KILN_DT_Q5_1, CPU_PERM_HALVES),
    KERN_ENTRY(a_q4_k, KILN_DT_Q4_K, CPU_PERM_K),
    KERN_ENTRY(a_q5_k, KILN_DT_Q5_K, CPU_PERM_K),
    KERN_ENTRY(a_q6_k, KILN_DT_Q6_K, CPU_PERM_K),
};

const cpu_kern *cpu_kern_avx2(kiln_dtype dt)
{
    for (size_t i = 0; i < sizeof avx2_table / sizeof avx2_table[0]; i++)
        if (avx2_table[i].dt == dt)
            return &avx2_table[i];
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

/*
 * quant.c - half-precision conversions and dequantization of GGML block
 * formats to f32; see quant.h for the block layouts.
 *
 * Invariants:
 *  1. Results are bit-exact with gguf.quants.dequantize (numpy): every scale
 *     is widened from f16 to f32 exactly, products and differences are taken
 *     in f32 in the same order as the reference, e.g. Q4_K is
 *     (d * sc) * q - (dmin * m) with each step rounded to f32.
 *  2. Each rounding step is its own statement.  C lets a compiler contract
 *     a*b+c into a fused multiply-add only inside one expression (and GCC in
 *     ISO C mode not at all), so splitting the steps keeps every product
 *     rounded as the reference rounds it.
 *  3. Block bytes are read with memcpy/byte loads: `src` needs no alignment.
 *  4. quant_dequantize checks src_bytes against n before reading anything.
 */
#include "format/quant.h"

#include "base/checked.h"
#include "base/error.h"

#include <string.h>

#define QK 32   /* elements per block of the 32-element formats */
#define QK_K 256 /* elements per super-block of the K formats */

/* ---- scalar conversions ------------------------------------------------- */

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float quant_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (exp == 0x1f) /* inf / nan: keep the payload */
        return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp != 0)
        return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0)
        return f32_from_bits(sign);
    /* subnormal half: normalise into an f32 exponent */
    exp = 113;
    while (!(man & 0x400u)) {
        man <<= 1;
        exp--;
    }
    return f32_from_bits(sign | (exp << 23) | ((man & 0x3ffu) << 13));
}

uint16_t quant_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t man = u & 0x7fffffu;

    if (exp == 0xff) /* inf stays inf, nan becomes a quiet nan */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    if (exp > 142) /* |f| >= 2^16: past the largest half */
        return (uint16_t)(sign | 0x7c00u);
    if (exp >= 113) { /* normal half; rounding may carry into inf */
        uint32_t v = ((exp - 112u) << 10) | (man >> 13);
        uint32_t rest = man & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (v & 1u)))
            v++;
        return (uint16_t)(sign | v);
    }
    if (exp < 102) /* below half the smallest subnormal: zero */
        return sign;
    /* subnormal half: shift the implicit-one mantissa into place */
    man |= 0x800000u;
    uint32_t shift = 126u - exp; /* 14..24 */
    uint32_t v = man >> shift;
    uint32_t rest = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (v & 1u)))
        v++;
    return (uint16_t)(sign | v);
}

float quant_bf16_to_f32(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* nan: keep sign, force quiet */
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* ---- little-endian loads -------------------------------------------------- */

static uint16_t ld_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t ld_u64(const uint8_t *p)
{
    return (uint64_t)ld_u32(p) | ((uint64_t)ld_u32(p + 4) << 32);
}

static float ld_f16(const uint8_t *p)
{
    return quant_f16_to_f32(ld_u16(p));
}

/* ---- scalar types ------------------------------------------------------- */

/* F32 F16 BF16 F64 I8 I16 I32 I64 U8 BOOL: one element per "block". */
static void deq_scalar(kiln_dtype dt, const uint8_t *s, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case KILN_DT_F32: y[i] = f32_from_bits(ld_u32(s + 4 * i)); break;
        case KILN_DT_F16: y[i] = ld_f16(s + 2 * i); break;
        case KILN_DT_BF16: y[i] = quant_bf16_to_f32(ld_u16(s + 2 * i)); break;
        case KILN_DT_F64: {
            uint64_t u = ld_u64(s + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            y[i] = (float)d;
            break;
        }
        case KILN_DT_I8: y[i] = (float)(int8_t)s[i]; break;
        case KILN_DT_I16: y[i] = (float)(int16_t)ld_u16(s + 2 * i); break;
        case KILN_DT_I32: y[i] = (float)(int32_t)ld_u32(s + 4 * i); break;
        case KILN_DT_I64: y[i] = (float)(int64_t)ld_u64(s + 8 * i); break;
        case KILN_DT_U8: y[i] = (float)s[i]; break;
        case KILN_DT_BOOL: y[i] = s[i] ? 1.0f : 0.0f; break;
        default: KILN_ASSERT(!"deq_scalar: not a scalar type");
        }
    }
}

/* ---- 32-element formats -------------------------------------------------- */

/* Q4_0 {f16 d; u8 qs[16]}: y = d * (nibble - 8); low nibbles first. */
static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = ld_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)((qs[j] & 0x0f) - 8);
        y[j + QK / 2] = d * (float)((qs[j] >> 4) - 8);
    }
}

/* Q4_1 {f16 d, m; u8 qs[16]}: y = d * nibble + m. */
static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = ld_f16(b), m = ld_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        float lo = d * (float)(qs[j] & 0x0f);
        float hi = d * (float)(qs[j] >> 4);
        y[j] = lo + m;
        y[j + QK / 2] = hi + m;
    }
}

/* The 5-bit quant of element j of a Q5 block: nibble | bit j of qh << 4. */
static int q5_quant(const uint8_t *qs, uint32_t qh, int j)
{
    int nib = j < QK / 2 ? (qs[j] & 0x0f) : (qs[j - QK / 2] >> 4);
    return nib | (int)(((qh >> j) & 1u) << 4);
}

/* Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: y = d * (q5 - 16). */
static void deq_q5_0(const uint8_t *b, float *y)
{
    float d = ld_f16(b);
    uint32_t qh = ld_u32(b + 2);
    for (int j = 0; j < QK; j++)
        y[j] = d * (float)(q5_quant(b + 6, qh, j) - 16);
}

/* Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}: y = d * q5 + m. */
static void deq_q5_1(const uint8_t *b, float *y)
{
    float d = ld_f16(b), m = ld_f16(b + 2);
    uint32_t qh = ld_u32(b + 4);
    for (int j = 0; j < QK; j++) {
        float p = d * (float)q5_quant(b + 8, qh, j);
        y[j] = p + m;
    }
}

/* Q8_0 {f16 d; i8 qs[32]}: y = q * d. */
static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = ld_f16(b);
    for (int j = 0; j < QK; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* ---- K formats (256-element super-blocks) -------------------------------- */

/* The 6-bit scale and min of sub-block j (0..7) of Q4_K/Q5_K's packed
 * scales[12]: bytes 0-3 hold scales 0-3 (+ top bits of 4-7), bytes 4-7 the
 * mins 0-3 (+ top bits), bytes 8-11 the low nibbles of scales/mins 4-7. */
static void k_scale_min(const uint8_t *sc, int j, int *scale, int *min)
{
    if (j < 4) {
        *scale = sc[j] & 0x3f;
        *min = sc[j + 4] & 0x3f;
    } else {
        *scale = (sc[j + 4] & 0x0f) | ((sc[j - 4] >> 2) & 0x30);
        *min = (sc[j + 4] >> 4) | ((sc[j] >> 2) & 0x30);
    }
}

/* Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: eight 32-element
 * sub-blocks; sub-block 2i uses the low nibbles of qs[32i..32i+32), 2i+1
 * the high ones.  y = (d*sc) * q - (dmin*m). */
static void deq_q4_k(const uint8_t *b, float *y)
{
    float d = ld_f16(b), dmin = ld_f16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k_scale_min(scales, j, &sc, &m);
        float dl = d * (float)sc;
        float ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            float p = dl * (float)((q[l] >> shift) & 0x0f);
            y[32 * j + l] = p - ml;
        }
    }
}

/* Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K with a
 * fifth bit: bit j of qh[l] for element l of sub-block j. */
static void deq_q5_k(const uint8_t *b, float *y)
{
    float d = ld_f16(b), dmin = ld_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k_scale_min(scales, j, &sc, &m);
        float dl = d * (float)sc;
        float ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
            float p = dl * (float)v;
            y[32 * j + l] = p - ml;
        }
    }
}

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128;
 * in half h, element 32*k + l (k 0..3) takes its low 4 bits from
 * ql[64h + l + 32*(k&1)] (high nibble when k >= 2) and its top 2 bits from
 * qh[32h + l] >> 2k.  y = (d * scales[e/16]) * (q - 32). */
static void deq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = ld_f16(b + 208);
    for (int e = 0; e < QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int lo = (ql[64 * h + l + 32 * (k & 1)] >> (4 * (k / 2))) & 0x0f;
        int hi = (qh[32 * h + l] >> (2 * k)) & 0x03;
        float ds = d * (float)scales[e / 16];
        y[e] = ds * (float)((lo | (hi << 4)) - 32);
    }
}

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16]}: y = d * q (bsums unused). */
static void deq_q8_k(const uint8_t *b, float *y)
{
    float d = f32_from_bits(ld_u32(b));
    for (int j = 0; j < QK_K; j++)
        y[j] = d * (float)(int8_t)b[4 + j];
}

/* ---- dispatch ----------------------------------------------------------- */

typedef void (*deq_block_fn)(const uint8_t *block, float *y);

static deq_block_fn block_fn(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DT_Q4_0: return deq_q4_0;
    case KILN_DT_Q4_1: return deq_q4_1;
    case KILN_DT_Q5_0: return deq_q5_0;
    case KILN_DT_Q5_1: return deq_q5_1;
    case KILN_DT_Q8_0: return deq_q8_0;
    case KILN_DT_Q4_K: return deq_q4_k;
    case KILN_DT_Q5_K: return deq_q5_k;
    case KILN_DT_Q6_K: return deq_q6_k;
    case KILN_DT_Q8_K: return deq_q8_k;
    default: return NULL;
    }
}

static bool is_scalar_type(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DT_F32: case KILN_DT_F16: case KILN_DT_BF16: case KILN_DT_F64:
    case KILN_DT_I8: case KILN_DT_I16: case KILN_DT_I32: case KILN_DT_I64:
    case KILN_DT_U8: case KILN_DT_BOOL:
        return true;
    default:
        return false;
    }
}

kiln_status quant_dequantize(kiln_dtype dt, const void *src, size_t src_bytes, float *dst,
                             int64_t n)
{
    const dtype_info *di = dtype_get(dt);
    deq_block_fn fn = block_fn(dt);
    uint64_t need;
    kiln_status st;

    if (!di || (!fn && !is_scalar_type(dt)))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "quant: cannot dequantize type %s",
                            dtype_name(dt));
    if ((st = dtype_nbytes(dt, n, &need)))
        return kiln_err_wrap(st, "quant");
    if (need > src_bytes)
        return kiln_err_set(KILN_ERR_RANGE,
                            "quant: %lld elements of %s need %llu bytes, source has %zu",
                            (long long)n, di->name, (unsigned long long)need, src_bytes);
    if (!fn) {
        deq_scalar(dt, src, dst, n);
        return KILN_OK;
    }
    const uint8_t *s = src;
    int64_t nb = n / di->block_elems;
    for (int64_t i = 0; i < nb; i++)
        fn(s + (size_t)i * (size_t)di->block_bytes, dst + i * di->block_elems);
    return KILN_OK;
}

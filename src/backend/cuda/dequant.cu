/*
 * dequant.cu - GGUF block formats (and F16/BF16/F32) to f32/f16/bf16 on the
 * GPU, at weight-load time.  Interface and contract: dequant.h.
 *
 * Work split.  Every block holds 32 or 256 elements, both multiples of 8, so
 * the output is cut into chunks of 8 elements that never straddle a block.
 * Thread c of the grid (grid-stride loop) decodes chunk c and writes
 * dst[8c .. 8c+8): a warp writes 32 consecutive chunks, as 16-byte vector
 * stores when dst is 16-byte aligned (one per thread for f16/bf16, two for
 * f32), else element by element.  A block of 256 threads covers 2048
 * elements: 8 K-quant blocks or 64 small blocks.
 *
 * Loads.  Block sizes (18, 20, 22, 24, 34, 144, 176, 210, 292 bytes) leave
 * the fields of most blocks unaligned, so sources are read byte by byte;
 * the threads of a warp read one or a few neighbouring blocks, so these loads
 * hit the same L1 lines and DRAM sees each source byte once.  The output
 * (2-4 bytes per element against 0.5-1.1 for the source) is the traffic that
 * bounds the kernel, and it is written with full coalesced vectors.
 *
 * Exactness.  The arithmetic follows gguf.quants.dequantize (numpy, all f32)
 * step by step, which quant.c mirrors on the CPU:
 *
 *   Q4_0  d * (q - 8)              Q4_1  d * q + m
 *   Q5_0  d * (q - 16)             Q5_1  d * q + m
 *   Q8_0  d * q
 *   Q4_K, Q5_K  (d * sc) * q - (dmin * mn)
 *   Q6_K  (d * sc) * (q - 32)      Q8_K  d * q   (d is f32)
 *
 * with every product and sum rounded on its own.  Each one is written as
 * __fmul_rn / __fadd_rn / __fsub_rn, which nvcc never contracts into an FMA,
 * so the results do not depend on --fmad and the file needs no special flags.
 * (It must not be built with --use_fast_math: f32 denormals are kept, as
 * nvcc's default -ftz=false does.)  f16 -> f32 is done with integer code
 * (exact for every input, NaN payloads kept as numpy keeps them); f16/bf16
 * outputs are the f32 value rounded to nearest even, NaNs made quiet with
 * their sign and top payload bits, exactly as quant_f32_to_f16/_to_bf16.
 * Same type in and out is a plain copy: bytes unchanged, signalling NaNs
 * included.
 */
#include "backend/cuda/dequant.h"

#include "backend/cuda/cuda_check.h"
#include "base/checked.h"

#include <cuda_fp16.h>

#define DQ_THREADS 256    /* threads per block                               */
#define DQ_CHUNK 8        /* output elements per thread and loop step        */
#define DQ_MAX_GRID 65536 /* grid cap; the kernels loop over what lies beyond */

enum dq_out { DQ_OUT_F32, DQ_OUT_F16, DQ_OUT_BF16 };
enum dq_src { DQ_SRC_F32, DQ_SRC_F16, DQ_SRC_BF16 };

/* ==== element conversions ================================================ */

static __device__ __forceinline__ uint32_t ld_u16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static __device__ __forceinline__ uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* IEEE half bits -> f32, exact for every input. */
static __device__ __forceinline__ float f16_to_f32(uint32_t h)
{
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t man = h & 0x3ffu;

    if (exp == 0x1fu) /* inf, NaN (payload kept) */
        return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return __uint_as_float(sign | ((exp + 112u) << 23) | (man << 13));
    /* zero or subnormal: man * 2^-24, exact in f32 */
    return __uint_as_float(sign | __float_as_uint(__fmul_rn((float)man, 5.9604644775390625e-8f)));
}

static __device__ __forceinline__ float bf16_to_f32(uint32_t b)
{
    return __uint_as_float(b << 16);
}

/* f32 -> bf16 bits, round to nearest even; NaN stays NaN (quiet bit set). */
static __device__ __forceinline__ uint32_t f32_to_bf16_bits(float f)
{
    const uint32_t u = __float_as_uint(f);

    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

/* f32 -> IEEE half bits, round to nearest even (overflow -> inf).  The
 * hardware conversion is exact for all but NaN, which it would make the
 * canonical 0x7fff; a NaN keeps its sign and top payload bits instead and
 * is made quiet, as quant_f32_to_f16 does. */
static __device__ __forceinline__ uint32_t f32_to_f16_bits(float f)
{
    const uint32_t u = __float_as_uint(f);

    if ((u & 0x7fffffffu) > 0x7f800000u)
        return ((u >> 16) & 0x8000u) | 0x7e00u | ((u & 0x7fffffu) >> 13);
    return __half_as_ushort(__float2half_rn(f));
}

template <int OUT>
static __device__ __forceinline__ uint32_t to_bits16(float f)
{
    return OUT == DQ_OUT_F16 ? f32_to_f16_bits(f) : f32_to_bf16_bits(f);
}

/* ==== stores and loads of 8 elements ===================================== */

template <int OUT>
static __device__ __forceinline__ void store1(void *dst, int64_t i, float y)
{
    if (OUT == DQ_OUT_F32)
        ((float *)dst)[i] = y;
    else
        ((uint16_t *)dst)[i] = (uint16_t)to_bits16<OUT>(y);
}

/* dst[e0 .. e0+8) = y; vec: dst + e0 is 16-byte aligned. */
template <int OUT>
static __device__ __forceinline__ void store8(void *dst, int64_t e0, const float *y, bool vec)
{
    if (!vec) {
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            store1<OUT>(dst, e0 + k, y[k]);
    } else if (OUT == DQ_OUT_F32) {
        float4 *p = (float4 *)((float *)dst + e0);
        p[0] = make_float4(y[0], y[1], y[2], y[3]);
        p[1] = make_float4(y[4], y[5], y[6], y[7]);
    } else {
        uint4 v;
        v.x = to_bits16<OUT>(y[0]) | (to_bits16<OUT>(y[1]) << 16);
        v.y = to_bits16<OUT>(y[2]) | (to_bits16<OUT>(y[3]) << 16);
        v.z = to_bits16<OUT>(y[4]) | (to_bits16<OUT>(y[5]) << 16);
        v.w = to_bits16<OUT>(y[6]) | (to_bits16<OUT>(y[7]) << 16);
        *(uint4 *)((uint16_t *)dst + e0) = v;
    }
}

template <int SRC>
static __device__ __forceinline__ float from_bits16(uint32_t h)
{
    return SRC == DQ_SRC_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

template <int SRC>
static __device__ __forceinline__ float load1(const void *src, int64_t i)
{
    if (SRC == DQ_SRC_F32)
        return ((const float *)src)[i];
    return from_bits16<SRC>(((const uint16_t *)src)[i]);
}

/* y = src[e0 .. e0+8) as f32; vec: src + e0 is 16-byte aligned. */
template <int SRC>
static __device__ __forceinline__ void load8(const void *src, int64_t e0, float *y, bool vec)
{
    if (!vec) {
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            y[k] = load1<SRC>(src, e0 + k);
    } else if (SRC == DQ_SRC_F32) {
        const float4 *p = (const float4 *)((const float *)src + e0);
        const float4 a = p[0], b = p[1];
        y[0] = a.x, y[1] = a.y, y[2] = a.z, y[3] = a.w;
        y[4] = b.x, y[5] = b.y, y[6] = b.z, y[7] = b.w;
    } else {
        const uint4 v = *(const uint4 *)((const uint16_t *)src + e0);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            y[2 * k] = from_bits16<SRC>(w[k] & 0xffffu);
            y[2 * k + 1] = from_bits16<SRC>(w[k] >> 16);
        }
    }
}

/* ==== block decoders ======================================================
 * decode(b, j0, y): y[0..8) = elements j0 .. j0+8 of the block at b, with
 * j0 a multiple of 8 below QK.  Offsets are GGML's layouts (quant.h). */

/* Q4_0 {f16 d; u8 qs[16]}: element j < 16 is the low nibble of qs[j],
 * j >= 16 the high nibble of qs[j-16]. */
struct dq_q4_0 {
    static constexpr int QK = 32, BYTES = 18;
    static constexpr const char *NAME = "dequant_q4_0";
    static constexpr kiln_dtype DT = KILN_DT_Q4_0;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float d = f16_to_f32(ld_u16(b));
        const uint8_t *qs = b + 2 + (j0 & 15);
        const int shift = (j0 & 16) ? 4 : 0;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            y[k] = __fmul_rn(d, (float)((int)((qs[k] >> shift) & 0xf) - 8));
    }
};

/* Q4_1 {f16 d, m; u8 qs[16]}: nibbles as Q4_0. */
struct dq_q4_1 {
    static constexpr int QK = 32, BYTES = 20;
    static constexpr const char *NAME = "dequant_q4_1";
    static constexpr kiln_dtype DT = KILN_DT_Q4_1;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float d = f16_to_f32(ld_u16(b));
        const float m = f16_to_f32(ld_u16(b + 2));
        const uint8_t *qs = b + 4 + (j0 & 15);
        const int shift = (j0 & 16) ? 4 : 0;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            y[k] = __fadd_rn(__fmul_rn(d, (float)((qs[k] >> shift) & 0xf)), m);
    }
};

/* Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: low 4 bits as Q4_0, bit 4 of element
 * j is bit j of the little-endian u32 qh. */
struct dq_q5_0 {
    static constexpr int QK = 32, BYTES = 22;
    static constexpr const char *NAME = "dequant_q5_0";
    static constexpr kiln_dtype DT = KILN_DT_Q5_0;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float d = f16_to_f32(ld_u16(b));
        const uint32_t qh = ld_u32(b + 2) >> j0;
        const uint8_t *qs = b + 6 + (j0 & 15);
        const int shift = (j0 & 16) ? 4 : 0;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++) {
            const int q = (int)(((qs[k] >> shift) & 0xf) | (((qh >> k) & 1u) << 4));
            y[k] = __fmul_rn(d, (float)(q - 16));
        }
    }
};

/* Q5_1 {f16 d, m; u8 qh[4]; u8 qs[16]}: bits as Q5_0. */
struct dq_q5_1 {
    static constexpr int QK = 32, BYTES = 24;
    static constexpr const char *NAME = "dequant_q5_1";
    static constexpr kiln_dtype DT = KILN_DT_Q5_1;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float d = f16_to_f32(ld_u16(b));
        const float m = f16_to_f32(ld_u16(b + 2));
        const uint32_t qh = ld_u32(b + 4) >> j0;
        const uint8_t *qs = b + 8 + (j0 & 15);
        const int shift = (j0 & 16) ? 4 : 0;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++) {
            const uint32_t q = ((qs[k] >> shift) & 0xfu) | (((qh >> k) & 1u) << 4);
            y[k] = __fadd_rn(__fmul_rn(d, (float)q), m);
        }
    }
};

/* Q8_0 {f16 d; i8 qs[32]}. */
struct dq_q8_0 {
    static constexpr int QK = 32, BYTES = 34;
    static constexpr const char *NAME = "dequant_q8_0";
    static constexpr kiln_dtype DT = KILN_DT_Q8_0;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float d = f16_to_f32(ld_u16(b));
        const uint8_t *qs = b + 2 + j0;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            y[k] = __fmul_rn((float)(int8_t)qs[k], d);
    }
};

/* 6-bit scale and min of sub-block i (0..7) from the 12 packed bytes s of
 * Q4_K/Q5_K: bytes 0-3 hold the low 6 bits of scales 0-3 (top 2 bits: high
 * bits of scales 4-7), bytes 4-7 likewise for the mins, bytes 8-11 the low
 * nibbles of scales 4-7 and (high nibble) mins 4-7. */
static __device__ __forceinline__ void k_scale_min(const uint8_t *s, int i, int *sc, int *mn)
{
    if (i < 4) {
        *sc = s[i] & 63;
        *mn = s[i + 4] & 63;
    } else {
        *sc = (s[i + 4] & 0xf) | ((s[i - 4] >> 6) << 4);
        *mn = (s[i + 4] >> 4) | ((s[i] >> 6) << 4);
    }
}

/* Q4_K {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32;
 * sub-block i reads qs[32*(i/2) ..] with nibble i%2. */
struct dq_q4_k {
    static constexpr int QK = 256, BYTES = 144;
    static constexpr const char *NAME = "dequant_q4_k";
    static constexpr kiln_dtype DT = KILN_DT_Q4_K;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const int i = j0 >> 5;
        int sc, mn;
        k_scale_min(b + 4, i, &sc, &mn);
        const float dl = __fmul_rn(f16_to_f32(ld_u16(b)), (float)sc);
        const float dm = __fmul_rn(f16_to_f32(ld_u16(b + 2)), (float)mn);
        const uint8_t *qs = b + 16 + 32 * (i >> 1) + (j0 & 31);
        const int shift = (i & 1) * 4;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            y[k] = __fsub_rn(__fmul_rn(dl, (float)((qs[k] >> shift) & 0xf)), dm);
    }
};

/* Q5_K {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: low bits as
 * Q4_K, bit 4 of element 32*i + l is bit i of qh[l]. */
struct dq_q5_k {
    static constexpr int QK = 256, BYTES = 176;
    static constexpr const char *NAME = "dequant_q5_k";
    static constexpr kiln_dtype DT = KILN_DT_Q5_K;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const int i = j0 >> 5;
        int sc, mn;
        k_scale_min(b + 4, i, &sc, &mn);
        const float dl = __fmul_rn(f16_to_f32(ld_u16(b)), (float)sc);
        const float dm = __fmul_rn(f16_to_f32(ld_u16(b + 2)), (float)mn);
        const uint8_t *qh = b + 16 + (j0 & 31);
        const uint8_t *qs = b + 48 + 32 * (i >> 1) + (j0 & 31);
        const int shift = (i & 1) * 4;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++) {
            const uint32_t q = ((qs[k] >> shift) & 0xfu) | (((uint32_t)(qh[k] >> i) & 1u) << 4);
            y[k] = __fsub_rn(__fmul_rn(dl, (float)q), dm);
        }
    }
};

/* Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: 16 sub-blocks of 16
 * with scale scales[e/16].  Element e = 128*h + r (h = 0, 1): low 4 bits
 * are nibble r/64 of ql[64*h + r%64], high 2 bits are bits 2*(r/32) of
 * qh[32*h + r%32]. */
struct dq_q6_k {
    static constexpr int QK = 256, BYTES = 210;
    static constexpr const char *NAME = "dequant_q6_k";
    static constexpr kiln_dtype DT = KILN_DT_Q6_K;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float dl = __fmul_rn(f16_to_f32(ld_u16(b + 208)), (float)(int8_t)b[192 + (j0 >> 4)]);
        const int h = j0 >> 7, r = j0 & 127;
        const uint8_t *ql = b + 64 * h + (r & 63);
        const uint8_t *qh = b + 128 + 32 * h + (r & 31);
        const int lshift = (r >> 6) * 4, hshift = (r >> 5) * 2;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++) {
            const int q = (int)(((ql[k] >> lshift) & 0xf) | (((qh[k] >> hshift) & 3) << 4));
            y[k] = __fmul_rn(dl, (float)(q - 32));
        }
    }
};

/* Q8_K {f32 d; i8 qs[256]; i16 bsums[16]} (bsums are not needed). */
struct dq_q8_k {
    static constexpr int QK = 256, BYTES = 292;
    static constexpr const char *NAME = "dequant_q8_k";
    static constexpr kiln_dtype DT = KILN_DT_Q8_K;
    static __device__ __forceinline__ void decode(const uint8_t *__restrict__ b, int j0, float *y)
    {
        const float d = __uint_as_float(ld_u32(b));
        const uint8_t *qs = b + 4 + j0;
#pragma unroll
        for (int k = 0; k < DQ_CHUNK; k++)
            y[k] = __fmul_rn(d, (float)(int8_t)qs[k]);
    }
};

/* ==== kernels ============================================================= */

template <typename B, int OUT>
static __global__ void __launch_bounds__(DQ_THREADS)
dequant_blocks_kernel(const uint8_t *__restrict__ src, /* (n_chunks / (QK/8), BYTES) raw blocks */
                      void *__restrict__ dst,          /* (n_chunks * 8) elements of OUT        */
                      int64_t n_chunks,                /* output elements / 8                   */
                      bool vec)                        /* dst is 16-byte aligned                */
{
    const int64_t stride = (int64_t)gridDim.x * DQ_THREADS;

    for (int64_t c = (int64_t)blockIdx.x * DQ_THREADS + threadIdx.x; c < n_chunks; c += stride) {
        const int64_t blk = c / (B::QK / DQ_CHUNK);
        const int j0 = (int)(c % (B::QK / DQ_CHUNK)) * DQ_CHUNK;
        float y[DQ_CHUNK];

        B::decode(src + blk * B::BYTES, j0, y);
        store8<OUT>(dst, c * DQ_CHUNK, y, vec);
    }
}

template <int SRC, int OUT>
static __global__ void __launch_bounds__(DQ_THREADS)
convert_kernel(const void *__restrict__ src, /* (n) elements of SRC                  */
               void *__restrict__ dst,       /* (n) elements of OUT                  */
               int64_t n,                    /* any count; the last chunk may be short */
               bool vec_load,                /* src is 16-byte aligned               */
               bool vec_store)               /* dst is 16-byte aligned               */
{
    const int64_t n_chunks = (n + DQ_CHUNK - 1) / DQ_CHUNK;
    const int64_t stride = (int64_t)gridDim.x * DQ_THREADS;

    for (int64_t c = (int64_t)blockIdx.x * DQ_THREADS + threadIdx.x; c < n_chunks; c += stride) {
        const int64_t e0 = c * DQ_CHUNK;
        float y[DQ_CHUNK];

        if (e0 + DQ_CHUNK <= n) {
            load8<SRC>(src, e0, y, vec_load);
            store8<OUT>(dst, e0, y, vec_store);
        } else {
            for (int64_t e = e0; e < n; e++)
                store1<OUT>(dst, e, load1<SRC>(src, e));
        }
    }
}

/* ==== launchers =========================================================== */

static unsigned dq_grid(int64_t n_chunks)
{
    const int64_t blocks = (n_chunks + DQ_THREADS - 1) / DQ_THREADS;
    return (unsigned)(blocks < DQ_MAX_GRID ? blocks : DQ_MAX_GRID);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <typename B, int OUT>
static kiln_status dequant_blocks_launch(const uint8_t *src, void *dst, int64_t n_blocks,
                                         cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    const int64_t n_chunks = n_blocks * (B::QK / DQ_CHUNK);

    dequant_blocks_kernel<B, OUT>
        <<<dq_grid(n_chunks), DQ_THREADS, 0, stream>>>(src, dst, n_chunks, aligned16(dst));
    KILN_CUDA_LAUNCH_CHECK(B::NAME, stream);
err:
    return st;
}

/* Block type B into dst_type (already checked to be F32, F16 or BF16). */
template <typename B>
static kiln_status dequant_blocks(const void *src, kiln_dtype dst_type, void *dst,
                                  int64_t n_blocks, cudaStream_t stream)
{
    const dtype_info *info = dtype_get(B::DT);
    const uint8_t *s = (const uint8_t *)src;

    /* The decoder's layout and the type table must agree. */
    KILN_ASSERT(info && info->block_elems == B::QK && info->block_bytes == B::BYTES);
    switch (dst_type) {
    case KILN_DT_F32:
        return dequant_blocks_launch<B, DQ_OUT_F32>(s, dst, n_blocks, stream);
    case KILN_DT_F16:
        return dequant_blocks_launch<B, DQ_OUT_F16>(s, dst, n_blocks, stream);
    default:
        return dequant_blocks_launch<B, DQ_OUT_BF16>(s, dst, n_blocks, stream);
    }
}

template <int SRC, int OUT>
static kiln_status convert_launch(const void *src, void *dst, int64_t n, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    const int64_t n_chunks = (n + DQ_CHUNK - 1) / DQ_CHUNK;

    convert_kernel<SRC, OUT><<<dq_grid(n_chunks), DQ_THREADS, 0, stream>>>(
        src, dst, n, aligned16(src), aligned16(dst));
    KILN_CUDA_LAUNCH_CHECK("dequant_convert", stream);
err:
    return st;
}

/* Scalar source SRC into dst_type (a different type, F32, F16 or BF16). */
template <int SRC>
static kiln_status convert(const void *src, kiln_dtype dst_type, void *dst, int64_t n,
                           cudaStream_t stream)
{
    switch (dst_type) {
    case KILN_DT_F32:
        return convert_launch<SRC, DQ_OUT_F32>(src, dst, n, stream);
    case KILN_DT_F16:
        return convert_launch<SRC, DQ_OUT_F16>(src, dst, n, stream);
    default:
        return convert_launch<SRC, DQ_OUT_BF16>(src, dst, n, stream);
    }
}

/* Same type in and out: a device-to-device copy. */
static kiln_status dequant_copy(const void *src, void *dst, size_t bytes, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
err:
    return st;
}

/* ==== entry points ========================================================= */

extern "C" bool cuda_dequant_supported(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DT_Q4_0: case KILN_DT_Q4_1: case KILN_DT_Q5_0: case KILN_DT_Q5_1:
    case KILN_DT_Q8_0: case KILN_DT_Q4_K: case KILN_DT_Q5_K: case KILN_DT_Q6_K:
    case KILN_DT_Q8_K: case KILN_DT_F16: case KILN_DT_BF16: case KILN_DT_F32:
        return true;
    default:
        return false;
    }
}

static int out_elem_bytes(kiln_dtype dt)
{
    switch (dt) {
    case KILN_DT_F32:
        return 4;
    case KILN_DT_F16:
    case KILN_DT_BF16:
        return 2;
    default:
        return 0;
    }
}

/* Every precondition of cuda_dequant_tensor, checked before any CUDA call. */
static kiln_status dequant_check_args(kiln_dtype src_type, const void *src, size_t src_bytes,
                                      kiln_dtype dst_type, const void *dst, int64_t n)
{
    const dtype_info *info = dtype_get(src_type);
    const int out_bytes = out_elem_bytes(dst_type);
    uint64_t need = 0;

    if (!info || !cuda_dequant_supported(src_type))
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "cuda_dequant: no GPU kernel for %s tensors",
                            dtype_name(src_type));
    if (out_bytes == 0)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "cuda_dequant: cannot write %s (F32, F16 or BF16 only)",
                            dtype_name(dst_type));
    if (n < 0)
        return kiln_err_set(KILN_ERR_RANGE, "cuda_dequant: negative element count %lld",
                            (long long)n);
    if (n % info->block_elems)
        return kiln_err_set(KILN_ERR_FORMAT,
                            "cuda_dequant: %lld elements of %s are not a whole number of "
                            "%d-element blocks",
                            (long long)n, info->name, info->block_elems);
    if (!ck_mul_u64((uint64_t)(n / info->block_elems), (uint64_t)info->block_bytes, &need) ||
        need > src_bytes)
        return kiln_err_set(KILN_ERR_RANGE,
                            "cuda_dequant: %lld elements of %s need %llu bytes, the source "
                            "holds %zu",
                            (long long)n, info->name, (unsigned long long)need, src_bytes);
    if (n == 0)
        return KILN_OK;
    if (!src || !dst)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda_dequant: NULL %s pointer",
                            src ? "destination" : "source");
    if ((uintptr_t)dst % (uintptr_t)out_bytes)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda_dequant: %s destination %p is not %d-byte aligned",
                            dtype_name(dst_type), dst, out_bytes);
    if (info->block_elems == 1 && (uintptr_t)src % (uintptr_t)info->block_bytes)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda_dequant: %s source %p is not %d-byte aligned", info->name,
                            src, info->block_bytes);
    return KILN_OK;
}

extern "C" kiln_status cuda_dequant_tensor(kiln_dtype src_type, const void *src,
                                           size_t src_bytes, kiln_dtype dst_type, void *dst,
                                           int64_t n, cudaStream_t stream)
{
    kiln_status st = dequant_check_args(src_type, src, src_bytes, dst_type, dst, n);
    const dtype_info *info = dtype_get(src_type);
    int64_t n_blocks;

    if (st != KILN_OK || n == 0)
        return st;
    n_blocks = n / info->block_elems;
    if (src_type == dst_type)
        return dequant_copy(src, dst, (size_t)n * (size_t)out_elem_bytes(dst_type), stream);

    switch (src_type) {
    case KILN_DT_Q4_0:
        return dequant_blocks<dq_q4_0>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q4_1:
        return dequant_blocks<dq_q4_1>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q5_0:
        return dequant_blocks<dq_q5_0>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q5_1:
        return dequant_blocks<dq_q5_1>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q8_0:
        return dequant_blocks<dq_q8_0>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q4_K:
        return dequant_blocks<dq_q4_k>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q5_K:
        return dequant_blocks<dq_q5_k>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q6_K:
        return dequant_blocks<dq_q6_k>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_Q8_K:
        return dequant_blocks<dq_q8_k>(src, dst_type, dst, n_blocks, stream);
    case KILN_DT_F32:
        return convert<DQ_SRC_F32>(src, dst_type, dst, n, stream);
    case KILN_DT_F16:
        return convert<DQ_SRC_F16>(src, dst_type, dst, n, stream);
    case KILN_DT_BF16:
        return convert<DQ_SRC_BF16>(src, dst_type, dst, n, stream);
    default:
        return kiln_err_set(KILN_ERR_INTERNAL, "cuda_dequant: %s passed the checks but has no "
                                               "kernel", dtype_name(src_type));
    }
}

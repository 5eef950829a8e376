/*
 * attention_dev.cuh - device helpers shared by the attention kernels:
 * asynchronous 16-byte copies into shared memory, ldmatrix, the m16n8k16
 * tensor-core mma for bf16 and fp16, element conversions, score shaping and
 * the paged-cache address of a key.  Included by .cu files only.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16/.f16 inputs, f32
 * accumulators), with g = lane / 4 and t = lane % 4:
 *   A (16 x 16, row major): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)
 *                           a3 (g+8, 2t+8..)
 *   B (16 x 8, "col"):      b0 (k 2t..2t+1, n g)  b1 (k 2t+8..2t+9, n g)
 *   C (16 x 8, f32):        c0 c1 (g, 2t..2t+1)  c2 c3 (g+8, 2t..2t+1)
 * ldmatrix.x4 gives register i the 8x8 matrix whose row addresses lanes
 * 8i..8i+7 supplied; lane l holds row l/4, columns 2(l%4), 2(l%4)+1 (with
 * .trans: rows 2(l%4), 2(l%4)+1 of column l/4).
 */
#ifndef KILN_BACKEND_CUDA_ATTENTION_DEV_CUH
#define KILN_BACKEND_CUDA_ATTENTION_DEV_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "backend/cuda/attention_impl.h"

#define ATTN_LOG2E 1.4426950408889634f

/* ==== asynchronous copies ================================================= */

static __device__ __forceinline__ uint32_t attn_smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes from global src to shared dst; zeros instead when !valid (src is
 * then not read). */
static __device__ __forceinline__ void attn_cp16(void *dst, const void *src, bool valid)
{
    uint32_t n = valid ? 16u : 0u;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(attn_smem_addr(dst)),
                 "l"(src), "r"(n)
                 : "memory");
}

static __device__ __forceinline__ void attn_cp_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Wait until at most `n` committed groups are still in flight. */
template <int n> static __device__ __forceinline__ void attn_cp_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory");
}

/* ==== tensor cores ========================================================= */

static __device__ __forceinline__ void attn_ldsm_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(attn_smem_addr(p)));
}

static __device__ __forceinline__ void attn_ldsm_x4_trans(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(attn_smem_addr(p)));
}

/* The same from a shared-memory address already in the .shared window
 * (attn_smem_addr), for loops that step one base address by constants. */
static __device__ __forceinline__ void attn_ldsm_x4_at(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void attn_ldsm_x4_trans_at(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* 2^x in one MUFU instruction (ex2.approx.ftz: about 2 ulp, denormal
 * results flushed to 0, 2^-inf = 0).  The softmax weights it makes are
 * rounded to bf16/fp16 right after, far coarser than its error. */
static __device__ __forceinline__ float attn_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* c(16x8) += A(16x16) B(16x8), inputs of type T (bf16 or half). */
template <typename T>
static __device__ __forceinline__ void attn_mma(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1);

template <>
__device__ __forceinline__ void attn_mma<__nv_bfloat16>(float c[4], const uint32_t a[4],
                                                        uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void attn_mma<__half>(float c[4], const uint32_t a[4], uint32_t b0,
                                                 uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* ==== conversions ========================================================== */

/* Two floats as one 32-bit pair of T, x in the low half (lower column). */
template <typename T> static __device__ __forceinline__ uint32_t attn_pack2(float x, float y);

template <> __device__ __forceinline__ uint32_t attn_pack2<__nv_bfloat16>(float x, float y)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    return *reinterpret_cast<uint32_t *>(&h);
}

template <> __device__ __forceinline__ uint32_t attn_pack2<__half>(float x, float y)
{
    __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* The two T of a 32-bit pair as floats. */
template <typename T> static __device__ __forceinline__ float2 attn_unpack2(uint32_t u);

template <> __device__ __forceinline__ float2 attn_unpack2<__nv_bfloat16>(uint32_t u)
{
    __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162 *>(&u);
    return __bfloat1622float2(h);
}

template <> __device__ __forceinline__ float2 attn_unpack2<__half>(uint32_t u)
{
    __half2 h = *reinterpret_cast<__half2 *>(&u);
    return __half22float2(h);
}

/* Eight T in 16 bytes to floats. */
template <typename T> static __device__ __forceinline__ void attn_unpack8(uint4 u, float f[8])
{
    float2 p;
    p = attn_unpack2<T>(u.x); f[0] = p.x; f[1] = p.y;
    p = attn_unpack2<T>(u.y); f[2] = p.x; f[3] = p.y;
    p = attn_unpack2<T>(u.z); f[4] = p.x; f[5] = p.y;
    p = attn_unpack2<T>(u.w); f[6] = p.x; f[7] = p.y;
}

static __device__ __forceinline__ float attn_to_float(__nv_bfloat16 x)
{
    return __bfloat162float(x);
}
static __device__ __forceinline__ float attn_to_float(__half x) { return __half2float(x); }

template <typename T> static __device__ __forceinline__ T attn_from_float(float x);
template <> __device__ __forceinline__ __nv_bfloat16 attn_from_float(float x)
{
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half attn_from_float(float x)
{
    return __float2half_rn(x);
}

/* ==== scores and keys ====================================================== */

/* A raw dot product q . k as the base-2 score the softmax uses. */
static __device__ __forceinline__ float attn_score(const attn_args &a, float dot)
{
    float s = dot * a.scale;
    if (a.softcap > 0.0f)
        s = a.softcap * tanhf(s / a.softcap);
    return s * ATTN_LOG2E;
}

/* Element offset of (key at position p, kv head kvh) in a pool, through the
 * sequence's block table row; -1 when the block id is outside the pool
 * (checked on the host too; the kernels never read outside the pool). */
static __device__ __forceinline__ int64_t attn_key_offset(const attn_args &a,
                                                          const int32_t *table, int32_t p,
                                                          int32_t kvh)
{
    /* shifts for the usual power-of-two block sizes: a run-time division
     * costs about twenty instructions per key row */
    const int32_t bi = a.block_shift >= 0 ? p >> a.block_shift : p / a.block_size;
    const int32_t bo = a.block_shift >= 0 ? p & (a.block_size - 1) : p % a.block_size;
    const int32_t blk = table[bi];
    if (blk < 0 || blk >= a.n_blocks)
        return -1;
    const int64_t slot = (int64_t)blk * a.block_size + bo;
    return (slot * a.n_kv_heads + kvh) * a.head_dim;
}

#endif /* KILN_BACKEND_CUDA_ATTENTION_DEV_CUH */

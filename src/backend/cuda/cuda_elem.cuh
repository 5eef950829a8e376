/*
 * cuda_elem.cuh - element access shared by the CUDA kernels: widening
 * loads, rounding stores and 16-byte vector unpacking of the two
 * activation types (__nv_bfloat16, __half), and the dispatch from a
 * kiln_dtype to a launcher templated on the type.
 *
 * Every value is widened to f32 on load and rounded once (to nearest even)
 * on its store, as the CPU reference does.
 */
#ifndef KILN_BACKEND_CUDA_ELEM_CUH
#define KILN_BACKEND_CUDA_ELEM_CUH

#include "backend/backend.h"
#include "base/error.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

static __device__ __forceinline__ float ld(const __nv_bfloat16 *p)
{
    return __bfloat162float(*p);
}
static __device__ __forceinline__ float ld(const __half *p) { return __half2float(*p); }

/* Round to nearest even on store. */
static __device__ __forceinline__ void put(__nv_bfloat16 *p, float v)
{
    *p = __float2bfloat16_rn(v);
}
static __device__ __forceinline__ void put(__half *p, float v) { *p = __float2half_rn(v); }

/* v as it reads back after a store to T (the residual stream's rounding). */
static __device__ __forceinline__ float round_to(const __nv_bfloat16 *, float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}
static __device__ __forceinline__ float round_to(const __half *, float v)
{
    return __half2float(__float2half_rn(v));
}

/* The 8 elements of a 16-byte vector of T, widened; the pointer only picks
 * the type. */
static __device__ __forceinline__ void unpack8(uint4 v, const __nv_bfloat16 *, float *f)
{
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 p = __bfloat1622float2(h[i]);
        f[2 * i] = p.x;
        f[2 * i + 1] = p.y;
    }
}
static __device__ __forceinline__ void unpack8(uint4 v, const __half *, float *f)
{
    const __half2 *h = (const __half2 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 p = __half22float2(h[i]);
        f[2 * i] = p.x;
        f[2 * i + 1] = p.y;
    }
}

/* Programmatic dependent launch (sm_90): a kernel launched with the
 * programmatic-serialization attribute may start while the kernel before it
 * in the stream still runs.  pdl_wait() blocks until that kernel has
 * finished and its writes are visible: such a kernel calls it before it
 * touches any memory the kernels before it write (only constant weights may
 * be read first).  pdl_trigger() lets the next such kernel start now; it
 * changes nothing for kernels launched the ordinary way.  Both are no-ops
 * before sm_90 and in kernels not launched with the attribute. */
static __device__ __forceinline__ void pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
static __device__ __forceinline__ void pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Whether the calling thread's backend launches with programmatic
 * serialization (cuda_backend.pdl, noted by cuda_use_device). */
extern "C" bool cuda_pdl_enabled(void);

/* kernel<<<grid, block, smem, stream>>>(args...), with programmatic
 * serialization when cuda_pdl_enabled(): the kernel must call pdl_wait()
 * before it touches memory that kernels before it write. */
template <typename... P, typename... A>
static inline cudaError_t pdl_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                                     cudaStream_t stream, A... args)
{
    cudaLaunchConfig_t lc = {};
    cudaLaunchAttribute at = {};
    lc.gridDim = grid;
    lc.blockDim = block;
    lc.dynamicSmemBytes = smem;
    lc.stream = stream;
    at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at.val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = &at;
    lc.numAttrs = cuda_pdl_enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&lc, kernel, args...);
}

static inline kiln_status elem_bad_dtype(const char *op, kiln_dtype dt)
{
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "cuda %s: activation type %d is not BF16 or F16",
                        op, (int)dt);
}

/* Run launcher<T>(args...) for the element type named by dt. */
#define ELEM_DISPATCH(op, dt, launcher, ...)                                         \
    ((dt) == KILN_DT_BF16  ? launcher<__nv_bfloat16>(__VA_ARGS__)                    \
     : (dt) == KILN_DT_F16 ? launcher<__half>(__VA_ARGS__)                           \
                           : elem_bad_dtype((op), (dt)))

/* One rotary pair (x0, x1) turned by the angle whose cos and sin are c, s:
 * (x0 c - x1 s, x1 c + x0 s), with the rounding spelled out (one product
 * rounded, the other fused into the sum) so that every kernel that rotates
 * - the rope kernels, decode attention - gets the same bits. */
static __device__ __forceinline__ void rope_turn(float x0, float x1, float c, float s,
                                                 float *r0, float *r1)
{
    *r0 = __fmaf_rn(x0, c, -__fmul_rn(x1, s));
    *r1 = __fmaf_rn(x1, c, __fmul_rn(x0, s));
}

/* The activation of a bk_act (erf GELU, tanh GELU, SiLU, ReLU), in f32;
 * an unknown value passes x through (the entry points refuse it first). */
static __device__ __forceinline__ float act_apply(int act, float x)
{
    switch (act) {
    case BK_ACT_SILU:
        return x / (1.0f + expf(-x));
    case BK_ACT_GELU:
        return (x * 0.5f) * (1.0f + erff(x * 0.70710678118654752f));
    case BK_ACT_GELU_TANH: {
        const float beta = 0.79788456080286536f, kappa = 0.044715f; /* sqrt(2/pi) */
        float inner = beta * (x + kappa * (x * x * x));
        return (0.5f * x) * (1.0f + tanhf(inner));
    }
    case BK_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    default:
        return x;
    }
}

#endif /* KILN_BACKEND_CUDA_ELEM_CUH */

/*
 * gemv.cu - y(n, m) = x(n, k) W^T (+ bias) for the few rows of a decode
 * step (n <= GEMV_MAX_ROWS), where the product is a read of W and nothing
 * else: the kernel's only job is to stream W at the memory's bandwidth.
 * cuBLASLt picks GEMM tiles for these shapes that leave bandwidth unused
 * (bench/kernels/matmul_bench.cu measures both; bench/NOTES.md).
 *
 * Work split: one warp per output column j (row j of W); the warp's lanes
 * take 8 consecutive elements each (one 16-byte load), so a warp reads 512
 * contiguous bytes of the row per step, and GEMV_UNROLL steps are loaded
 * before any is used, so every lane has that many loads in flight.  x rows
 * are read through the read-only cache (n x k elements, shared by every
 * warp of the grid, so they stay in L1/L2).  Each lane accumulates n dot
 * products in f32; a shuffle tree sums the lanes; lane 0 adds the bias and
 * rounds once on the store, as cuBLASLt's f32-accumulating path does.
 *
 * Preconditions (checked by the caller, cuda_matmul): k % 8 == 0, x, W, y
 * (and bias) 16-byte aligned with row strides k and m elements, 1 <= n <=
 * GEMV_MAX_ROWS.
 */
#include "backend/cuda/gemv.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define GEMV_WARPS 8              /* warps per block: 8 columns of y per block */
#define GEMV_UNROLL 4             /* 16-byte loads in flight per lane          */
#define GEMV_FULL 0xffffffffu

/* acc[r] += x_r[k0 .. k0 + 8) . w */
template <typename T, int NR>
static __device__ __forceinline__ void gemv_fma(const T *x, int64_t k, int64_t k0, uint4 wv,
                                                float *acc)
{
    float w[8];
    unpack8(wv, (const T *)0, w);
#pragma unroll
    for (int r = 0; r < NR; r++) {
        float xf[8];
        unpack8(__ldg((const uint4 *)(x + r * k + k0)), (const T *)0, xf);
#pragma unroll
        for (int e = 0; e < 8; e++)
            acc[r] = fmaf(xf[e], w[e], acc[r]);
    }
}

/* Grid (ceil(m / GEMV_WARPS)), GEMV_WARPS warps.  x (NR, k), W (m, k),
 * bias (m) or NULL, y (NR, m). */
template <typename T, int NR>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const T *__restrict__ x, const T *__restrict__ W, const T *__restrict__ bias,
                T *__restrict__ y, int64_t k, int64_t m)
{
    const int lane = threadIdx.x & 31;
    const int64_t j = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (j >= m)
        return;
    const T *wr = W + j * k;
    float acc[NR];
#pragma unroll
    for (int r = 0; r < NR; r++)
        acc[r] = 0.0f;

    const int64_t step = 32 * 8;                    /* elements a warp covers per load */
    int64_t k0 = (int64_t)lane * 8;
    for (; k0 + (GEMV_UNROLL - 1) * step < k; k0 += GEMV_UNROLL * step) {
        uint4 wv[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) /* all loads first: GEMV_UNROLL in flight */
            wv[u] = __ldcs((const uint4 *)(wr + k0 + u * step));
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++)
            gemv_fma<T, NR>(x, k, k0 + u * step, wv[u], acc);
    }
    for (; k0 < k; k0 += step)
        gemv_fma<T, NR>(x, k, k0, __ldcs((const uint4 *)(wr + k0)), acc);

#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            acc[r] += __shfl_xor_sync(GEMV_FULL, acc[r], o);
    if (lane == 0) {
        const float b = bias ? ld(bias + j) : 0.0f;
#pragma unroll
        for (int r = 0; r < NR; r++)
            put(y + r * m + j, acc[r] + b);
    }
}

template <typename T, int NR>
static kiln_status gemv_run(const void *x, const void *w, const void *bias, void *y, int64_t k,
                            int64_t m, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    const unsigned blocks = (unsigned)((m + GEMV_WARPS - 1) / GEMV_WARPS);

    gemv_kernel<T, NR><<<blocks, GEMV_WARPS * 32, 0, stream>>>(
        (const T *)x, (const T *)w, (const T *)bias, (T *)y, k, m);
    KILN_CUDA_LAUNCH_CHECK("matmul (gemv)", stream);
err:
    return st;
}

template <typename T>
static kiln_status gemv_rows(const void *x, int32_t n, const void *w, const void *bias, void *y,
                             int64_t k, int64_t m, cudaStream_t stream)
{
    switch (n) {
    case 1: return gemv_run<T, 1>(x, w, bias, y, k, m, stream);
    case 2: return gemv_run<T, 2>(x, w, bias, y, k, m, stream);
    case 3: return gemv_run<T, 3>(x, w, bias, y, k, m, stream);
    case 4: return gemv_run<T, 4>(x, w, bias, y, k, m, stream);
    case 5: return gemv_run<T, 5>(x, w, bias, y, k, m, stream);
    case 6: return gemv_run<T, 6>(x, w, bias, y, k, m, stream);
    case 7: return gemv_run<T, 7>(x, w, bias, y, k, m, stream);
    case 8: return gemv_run<T, 8>(x, w, bias, y, k, m, stream);
    default:
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: %d rows (1..%d)", n, GEMV_MAX_ROWS);
    }
}

extern "C" kiln_status cuda_gemv(kiln_dtype dt, const void *x, int32_t n, const void *w,
                                 const void *bias, void *y, int64_t k, int64_t m,
                                 cudaStream_t stream)
{
    if (n <= 0 || m <= 0)
        return KILN_OK;
    if (k <= 0 || k % 8 || m > (int64_t)GEMV_WARPS * 0x7fffffff)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: k = %lld is not a positive multiple "
                            "of 8", (long long)k);
    if (dt == KILN_DT_BF16)
        return gemv_rows<__nv_bfloat16>(x, n, w, bias, y, k, m, stream);
    if (dt == KILN_DT_F16)
        return gemv_rows<__half>(x, n, w, bias, y, k, m, stream);
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "gemv: type %s (bf16, f16)", dtype_name(dt));
}

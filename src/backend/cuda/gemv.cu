/*
 * gemv.cu - y(n, m) = x(n, k) W^T (+ bias) for the few rows of a decode
 * step (n <= GEMV_MAX_ROWS), where the product is a read of W and nothing
 * else: the kernel's only job is to stream W at the memory's bandwidth.
 * cuBLASLt picks GEMM tiles for these shapes that leave bandwidth unused
 * (bench/kernels/cuda_matmul_bench.c measures both; bench/NOTES.md).
 *
 * Work split (gemv_cfg): a block of up to GEMV_THREADS threads computes
 * RB consecutive outputs j0 .. j0 + RB - 1.  Its threads split k into
 * 16-byte pieces (8 elements): thread t reads pieces t, t + T, t + 2T, ...
 * of each of the RB rows of W, U pieces of a row at a time, so every thread
 * has RB x U loads in flight and every piece of x it reads (x is n x k
 * elements shared by the whole grid, so they stay in L1/L2) serves RB rows.
 * x is read with ordinary coherent loads: the read-only (.nc) path assumes
 * memory that no one writes while the grid runs, and with programmatic
 * launch the kernel before this one writes x while this grid is resident.  Each thread accumulates RB x n dot products in f32; a shuffle tree
 * and one pass through shared memory sum the threads; the store adds the
 * bias and rounds once, as cuBLASLt's f32-accumulating path does.
 *
 * Launched with programmatic serialization (gemv_cfg.pdl, sm_90) a block
 * issues its first RB x U loads of W - constant weights - before
 * pdl_wait(), so the matrix read starts while the kernel before it (the
 * norm, the attention, the GLU, or the previous matmul) is still finishing;
 * and every block calls pdl_trigger() first, so the next such matmul's
 * blocks start as soon as this one's free their SMs.
 *
 * The gated form (cuda_gemv_glu, GLU = true) is the feed-forward's input
 * side of a decode step in one launch: a block reads RB rows of W_gate and
 * the same RB rows of W_up (2 RB rows in flight) and stores
 * act(gate + b_gate) * (up + b_up), each of gate and up rounded to T first
 * and the product rounded once, as matmul, matmul and glu would: with the
 * same split every output's sums are the same as in the separate launches,
 * so the result has the same bits, and neither gate nor up is written.
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

#define GEMV_THREADS 256 /* most threads a block: the reduction's warps */
#define GEMV_FULL 0xffffffffu

/* Grid (ceil(m / RB)), min(GEMV_THREADS, k / 8 rounded up to a warp)
 * threads.  x (NR, k), W (m, k), bias (m) or NULL, y (NR, m).  GLU: W2
 * (m, k) and bias2 (m) or NULL are the up projection, W and bias the gate,
 * y = act(gate) * up; without GLU, W2, bias2 and act are unused. */
template <typename T, int NR, int RB, int U, bool GLU>
static __global__ void __launch_bounds__(GEMV_THREADS)
    gemv_kernel(const T *x, const T *__restrict__ W, const T *__restrict__ bias,
                const T *__restrict__ W2, const T *__restrict__ bias2, int act, T *y,
                int64_t k, int64_t m)
{
    constexpr int RW = GLU ? 2 * RB : RB; /* rows of weights a block reads */
    __shared__ float red[GEMV_THREADS / 32][RW * NR];
    const int tid = threadIdx.x, nth = blockDim.x;
    const int64_t j0 = (int64_t)blockIdx.x * RB, kc = k >> 3;
    const uint4 *wr[RW];
    bool live[RW];
    float acc[RW][NR];

    pdl_trigger();
#pragma unroll
    for (int r = 0; r < RW; r++) {
        const int64_t j = j0 + (r < RB ? r : r - RB);
        live[r] = j < m;
        wr[r] = (const uint4 *)((r < RB ? W : W2) + (live[r] ? j : j0) * k);
#pragma unroll
        for (int q = 0; q < NR; q++)
            acc[r][q] = 0.0f;
    }

    bool waited = false;
    for (int64_t base = tid; base < kc; base += (int64_t)nth * U) {
        uint4 wv[U][RW];
#pragma unroll
        for (int u = 0; u < U; u++) /* every load first: RW x U in flight */
#pragma unroll
            for (int r = 0; r < RW; r++) {
                const int64_t c = base + (int64_t)u * nth;
                wv[u][r] = c < kc && live[r] ? __ldcs(wr[r] + c) : make_uint4(0, 0, 0, 0);
            }
        if (!waited) { /* x is the previous kernel's output */
            pdl_wait();
            waited = true;
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t c = base + (int64_t)u * nth;
            if (c >= kc)
                break;
            float wf[RW][8];
#pragma unroll
            for (int r = 0; r < RW; r++)
                unpack8(wv[u][r], (const T *)0, wf[r]);
#pragma unroll
            for (int q = 0; q < NR; q++) {
                float xf[8];
                /* a coherent load, never the read-only path: under
                 * programmatic launch x is written while this grid runs */
                unpack8(((const uint4 *)(x + q * k))[c], (const T *)0, xf);
#pragma unroll
                for (int r = 0; r < RW; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        acc[r][q] = fmaf(xf[e], wf[r][e], acc[r][q]);
            }
        }
    }
    if (!waited) /* no piece of k here: still no write before the wait */
        pdl_wait();

    const int lane = tid & 31, warp = tid >> 5, nw = (nth + 31) >> 5;
#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int q = 0; q < NR; q++) {
            float v = acc[r][q];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                v += __shfl_xor_sync(GEMV_FULL, v, o);
            if (lane == 0)
                red[warp][r * NR + q] = v;
        }
    __syncthreads();
    /* RB x NR sums: more than the block's threads when k is short (a block
     * of 32 threads for k <= 256, 8 rows x 8 x-rows) */
    for (int i = tid; i < RB * NR; i += nth) {
        const int r = i / NR, q = i % NR;
        if (j0 + r < m) {
            float s = 0.0f;
            for (int w = 0; w < nw; w++)
                s += red[w][i];
            s += bias ? ld(bias + j0 + r) : 0.0f;
            if (GLU) { /* gate and up as their stores would read back */
                float u = 0.0f;
                for (int w = 0; w < nw; w++)
                    u += red[w][RB * NR + i];
                u += bias2 ? ld(bias2 + j0 + r) : 0.0f;
                s = act_apply(act, round_to(y, s)) * round_to(y, u);
            }
            put(y + q * m + j0 + r, s);
        }
    }
}

/* The operands of one launch; w2 NULL: the plain product. */
typedef struct gemv_ops {
    const void *x, *w, *bias, *w2, *bias2;
    int act;
    void *y;
} gemv_ops;

template <typename T, int NR, int RB, int U>
static kiln_status gemv_launch(const gemv_ops *o, int64_t k, int64_t m, bool pdl,
                               cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    cudaLaunchConfig_t lc = {};
    cudaLaunchAttribute at = {};
    const int64_t kc = k / 8;

    lc.gridDim = dim3((unsigned)((m + RB - 1) / RB));
    lc.blockDim = dim3((unsigned)(kc >= GEMV_THREADS ? GEMV_THREADS : (kc + 31) / 32 * 32));
    lc.stream = stream;
    at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at.val.programmaticStreamSerializationAllowed = 1;
    lc.attrs = &at;
    lc.numAttrs = pdl ? 1 : 0;
    if (o->w2)
        KILN_CUDA_CHECK(cudaLaunchKernelEx(&lc, gemv_kernel<T, NR, RB, U, true>,
                                           (const T *)o->x, (const T *)o->w,
                                           (const T *)o->bias, (const T *)o->w2,
                                           (const T *)o->bias2, o->act, (T *)o->y, k, m));
    else
        KILN_CUDA_CHECK(cudaLaunchKernelEx(&lc, gemv_kernel<T, NR, RB, U, false>,
                                           (const T *)o->x, (const T *)o->w,
                                           (const T *)o->bias, (const T *)NULL,
                                           (const T *)NULL, 0, (T *)o->y, k, m));
    KILN_CUDA_LAUNCH_CHECK(o->w2 ? "matmul + glu (gemv)" : "matmul (gemv)", stream);
err:
    return st;
}

/* The (rows, unroll) pairs built, for every n. */
#define GEMV_SPLITS(X) X(1, 4) X(2, 2) X(2, 4) X(4, 1) X(4, 2) X(8, 1)

template <typename T, int NR>
static kiln_status gemv_split(const gemv_ops *o, int64_t k, int64_t m, const gemv_cfg *c,
                              cudaStream_t stream)
{
#define GEMV_CASE(rb, u)                                                                     \
    if (c->rows == (rb) && c->unroll == (u))                                                 \
        return gemv_launch<T, NR, rb, u>(o, k, m, c->pdl, stream);
    GEMV_SPLITS(GEMV_CASE)
#undef GEMV_CASE
    return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: no kernel for %d rows x %d loads a block",
                        c->rows, c->unroll);
}

template <typename T>
static kiln_status gemv_rows(const gemv_ops *o, int32_t n, int64_t k, int64_t m,
                             const gemv_cfg *c, cudaStream_t stream)
{
    switch (n) {
    case 1: return gemv_split<T, 1>(o, k, m, c, stream);
    case 2: return gemv_split<T, 2>(o, k, m, c, stream);
    case 3: return gemv_split<T, 3>(o, k, m, c, stream);
    case 4: return gemv_split<T, 4>(o, k, m, c, stream);
    case 5: return gemv_split<T, 5>(o, k, m, c, stream);
    case 6: return gemv_split<T, 6>(o, k, m, c, stream);
    case 7: return gemv_split<T, 7>(o, k, m, c, stream);
    case 8: return gemv_split<T, 8>(o, k, m, c, stream);
    default:
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: %d rows (1..%d)", n, GEMV_MAX_ROWS);
    }
}

extern "C" bool gemv_cfg_supported(const gemv_cfg *c)
{
#define GEMV_HAS(rb, u) if (c->rows == (rb) && c->unroll == (u)) return true;
    GEMV_SPLITS(GEMV_HAS)
#undef GEMV_HAS
    return false;
}

extern "C" void gemv_cfg_pick(int64_t n, int64_t k, int64_t m, gemv_cfg *c)
{
    /* pieces of one W row a thread reads */
    const int64_t per = (k / 8 + GEMV_THREADS - 1) / GEMV_THREADS;

    /* measured on an H200 (bench/results/cuda-matmul-2026-12-02T04-23-30Z.json):
     * a split of 4 rows is the best, or within 2 % of it, at 1, 4 and 8
     * rows of x on every 8B and 1B shape.  The loads in flight are the
     * one-row measurement: 2 a row once a thread has 4 or more pieces
     * (k >= 8192: 4x2 streams the 8B down projection at 4.39 TB/s, 4x1 at
     * 4.00), 1 below (4x1 leads at k = 2048 and 4096 except 1024x4096,
     * within 1 %); at 4 and 8 rows 4x2 is up to 10 % faster on 1024x4096 */
    (void)n;
    c->pdl = false;
    c->rows = 4;
    c->unroll = per >= 4 ? 2 : 1;
    /* a block for every SM (132 on an H100/H200) at least */
    if (m / c->rows < 128) {
        c->rows = m / 2 >= 128 ? 2 : 1;
        c->unroll = c->rows == 2 ? 2 : 4;
    }
}

/* Both entry points: the checks, the split, the type. */
static kiln_status gemv_run(kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k, int64_t m,
                            const gemv_cfg *cfg, cudaStream_t stream)
{
    gemv_cfg c;

    if (n <= 0 || m <= 0)
        return KILN_OK;
    if (k <= 0 || k % 8 || m > 0x7fffffffLL)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: k = %lld is not a positive multiple "
                            "of 8, or m = %lld is too large", (long long)k, (long long)m);
    if (cfg)
        c = *cfg;
    else
        gemv_cfg_pick(n, k, m, &c);
    if (dt == KILN_DT_BF16)
        return gemv_rows<__nv_bfloat16>(o, n, k, m, &c, stream);
    if (dt == KILN_DT_F16)
        return gemv_rows<__half>(o, n, k, m, &c, stream);
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "gemv: type %s (bf16, f16)", dtype_name(dt));
}

extern "C" kiln_status cuda_gemv(kiln_dtype dt, const void *x, int32_t n, const void *w,
                                 const void *bias, void *y, int64_t k, int64_t m,
                                 const gemv_cfg *cfg, cudaStream_t stream)
{
    const gemv_ops o = {x, w, bias, NULL, NULL, 0, y};
    return gemv_run(dt, &o, n, k, m, cfg, stream);
}

extern "C" kiln_status cuda_gemv_glu(kiln_dtype dt, const void *x, int32_t n, const void *wg,
                                     const void *bg, const void *wu, const void *bu, int act,
                                     void *y, int64_t k, int64_t m, const gemv_cfg *cfg,
                                     cudaStream_t stream)
{
    const gemv_ops o = {x, wg, bg, wu, bu, act, y};
    if (!wu)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: gated product without W_up");
    return gemv_run(dt, &o, n, k, m, cfg, stream);
}

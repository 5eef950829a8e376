/*
 * gemv_impl.cuh - the decode-row matmul kernel (gemv.cu describes it) and
 * its launchers, templated on the type, the rows of x, the split and the
 * mode; included by gemv.cu, gemv_glu.cu and gemv_norm.cu, which each
 * build some of the modes.
 */
#ifndef KILN_BACKEND_CUDA_GEMV_IMPL_CUH
#define KILN_BACKEND_CUDA_GEMV_IMPL_CUH

#include "backend/cuda/gemv.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define GEMV_THREADS 256 /* most threads a block: the reduction's warps */
#define GEMV_FULL 0xffffffffu

/* What a launch does besides y = x W^T + bias (bits of MODE). */
#define GEMV_GLU 1  /* W2 (m, k), bias2: y = act(x W^T + bias) * (x W2^T + bias2) */
#define GEMV_NORM 2 /* x is RMSNorm'ed on load: x_i / rms(x) * (nw_i (+ 1))     */
#define GEMV_RES 4  /* y += the product (a residual stream)                       */

/* Grid (ceil(m / RB)), min(GEMV_THREADS, k / 8 rounded up to a warp)
 * threads.  x (NR, k), W (m, k), bias (m) or NULL, y (NR, m).  GLU: W2
 * (m, k) and bias2 (m) or NULL are the up projection, W and bias the gate,
 * y = act(gate) * up.  NORM: nw (k), eps, add_one as bk rmsnorm's: the
 * product is taken with x_i nw_i (unscaled, never rounded) while the same
 * loop sums the squares of x, and the row's 1 / rms multiplies the sums
 * at the end (it is one factor for the whole row), so the norm costs no
 * pass of its own.  RES: y = y + the product rounded to T, rounded again
 * (bk add's bits).  Unused arguments of a mode are ignored. */
template <typename T, int NR, int RB, int U, int MODE>
static __global__ void __launch_bounds__(GEMV_THREADS)
    gemv_kernel(const T *x, const T *__restrict__ W, const T *__restrict__ bias,
                const T *__restrict__ W2, const T *__restrict__ bias2, int act,
                const T *__restrict__ nw, float eps, bool add_one, T *y, int64_t k, int64_t m)
{
    constexpr bool GLU = (MODE & GEMV_GLU) != 0, NORM = (MODE & GEMV_NORM) != 0;
    constexpr bool RES = (MODE & GEMV_RES) != 0;
    constexpr int RW = GLU ? 2 * RB : RB; /* rows of weights a block reads */
    constexpr int NS = NORM ? NR : 0;     /* sums of squares of x           */
    __shared__ float red[GEMV_THREADS / 32][RW * NR + NS];
    const int tid = threadIdx.x, nth = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nw_ = (nth + 31) >> 5;
    const int64_t j0 = (int64_t)blockIdx.x * RB, kc = k >> 3;
    const uint4 *wr[RW];
    bool live[RW];
    float acc[RW][NR], ss[NR];

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
#pragma unroll
    for (int q = 0; q < NR; q++)
        ss[q] = 0.0f;

    /* the first RW x U loads of W - constant weights - before the wait */
    uint4 wv[U][RW];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int r = 0; r < RW; r++) {
            const int64_t c = tid + (int64_t)u * nth;
            wv[u][r] = c < kc && live[r] ? __ldcs(wr[r] + c) : make_uint4(0, 0, 0, 0);
        }
    pdl_wait(); /* x (and y under RES) are the previous kernels' outputs */

    for (int64_t base = tid; base < kc; base += (int64_t)nth * U) {
        if (base != tid)
#pragma unroll
            for (int u = 0; u < U; u++) /* every load first: RW x U in flight */
#pragma unroll
                for (int r = 0; r < RW; r++) {
                    const int64_t c = base + (int64_t)u * nth;
                    wv[u][r] = c < kc && live[r] ? __ldcs(wr[r] + c) : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t c = base + (int64_t)u * nth;
            if (c >= kc)
                break;
            float wf[RW][8], gf[8];
#pragma unroll
            for (int r = 0; r < RW; r++)
                unpack8(wv[u][r], (const T *)0, wf[r]);
            if (NORM) {
                unpack8(((const uint4 *)nw)[c], (const T *)0, gf);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    gf[e] = add_one ? 1.0f + gf[e] : gf[e];
            }
#pragma unroll
            for (int q = 0; q < NR; q++) {
                float xf[8];
                /* a coherent load, never the read-only path: under
                 * programmatic launch x is written while this grid runs */
                unpack8(((const uint4 *)(x + q * k))[c], (const T *)0, xf);
                if (NORM)
#pragma unroll
                    for (int e = 0; e < 8; e++) {
                        ss[q] = fmaf(xf[e], xf[e], ss[q]);
                        xf[e] *= gf[e];
                    }
#pragma unroll
                for (int r = 0; r < RW; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        acc[r][q] = fmaf(xf[e], wf[r][e], acc[r][q]);
            }
        }
    }

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
#pragma unroll
    for (int q = 0; q < NS; q++) {
        float v = ss[q];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(GEMV_FULL, v, o);
        if (lane == 0)
            red[warp][RW * NR + q] = v;
    }
    __syncthreads();
    /* RB x NR sums: more than the block's threads when k is short (a block
     * of 32 threads for k <= 256, 8 rows x 8 x-rows) */
    for (int i = tid; i < RB * NR; i += nth) {
        const int r = i / NR, q = i % NR;
        if (j0 + r < m) {
            float s = 0.0f, inv = 1.0f;
            if (NORM) {
                float t = 0.0f;
                for (int w = 0; w < nw_; w++)
                    t += red[w][RW * NR + (q < NS ? q : 0)];
                inv = 1.0f / sqrtf(t / (float)k + eps);
            }
            for (int w = 0; w < nw_; w++)
                s += red[w][i];
            s = (NORM ? s * inv : s) + (bias ? ld(bias + j0 + r) : 0.0f);
            if (GLU) { /* gate and up as their stores would read back */
                float u = 0.0f;
                for (int w = 0; w < nw_; w++)
                    u += red[w][RB * NR + i];
                u = (NORM ? u * inv : u) + (bias2 ? ld(bias2 + j0 + r) : 0.0f);
                s = act_apply(act, round_to(y, s)) * round_to(y, u);
            }
            if (RES)
                s = ld(y + q * m + j0 + r) + round_to(y, s);
            put(y + q * m + j0 + r, s);
        }
    }
}

/* The operands of one launch and its GEMV_ mode bits. */
typedef struct gemv_ops {
    int mode;
    const void *x, *w, *bias, *w2, *bias2;
    int act;
    const void *nw;
    float eps;
    bool add_one;
    void *y;
} gemv_ops;

template <typename T, int NR, int RB, int U, int MODE>
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
    KILN_CUDA_CHECK(cudaLaunchKernelEx(&lc, gemv_kernel<T, NR, RB, U, MODE>, (const T *)o->x,
                                       (const T *)o->w, (const T *)o->bias, (const T *)o->w2,
                                       (const T *)o->bias2, o->act, (const T *)o->nw, o->eps,
                                       o->add_one, (T *)o->y, k, m));
    KILN_CUDA_LAUNCH_CHECK("matmul (gemv)", stream);
err:
    return st;
}

/* The (rows, unroll) pairs built, for every n. */
#define GEMV_SPLITS(X) X(1, 4) X(2, 2) X(2, 4) X(4, 1) X(4, 2) X(8, 1)

template <typename T, int NR, int MODE>
static kiln_status gemv_split(const gemv_ops *o, int64_t k, int64_t m, const gemv_cfg *c,
                              cudaStream_t stream)
{
#define GEMV_CASE(rb, u)                                                                     \
    if (c->rows == (rb) && c->unroll == (u))                                                 \
        return gemv_launch<T, NR, rb, u, MODE>(o, k, m, c->pdl, stream);
    GEMV_SPLITS(GEMV_CASE)
#undef GEMV_CASE
    return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: no kernel for %d rows x %d loads a block",
                        c->rows, c->unroll);
}

template <typename T, int MODE>
static kiln_status gemv_rows(const gemv_ops *o, int32_t n, int64_t k, int64_t m,
                             const gemv_cfg *c, cudaStream_t stream)
{
    switch (n) {
    case 1: return gemv_split<T, 1, MODE>(o, k, m, c, stream);
    case 2: return gemv_split<T, 2, MODE>(o, k, m, c, stream);
    case 3: return gemv_split<T, 3, MODE>(o, k, m, c, stream);
    case 4: return gemv_split<T, 4, MODE>(o, k, m, c, stream);
    case 5: return gemv_split<T, 5, MODE>(o, k, m, c, stream);
    case 6: return gemv_split<T, 6, MODE>(o, k, m, c, stream);
    case 7: return gemv_split<T, 7, MODE>(o, k, m, c, stream);
    case 8: return gemv_split<T, 8, MODE>(o, k, m, c, stream);
    default:
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: %d rows (1..%d)", n, GEMV_MAX_ROWS);
    }
}

/* The launch of one mode for either type (c: the split in force). */
template <int MODE>
static kiln_status gemv_run_mode(kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                                 int64_t m, const gemv_cfg *c, cudaStream_t stream)
{
    if (dt == KILN_DT_BF16)
        return gemv_rows<__nv_bfloat16, MODE>(o, n, k, m, c, stream);
    if (dt == KILN_DT_F16)
        return gemv_rows<__half, MODE>(o, n, k, m, c, stream);
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "gemv: type %s (bf16, f16)", dtype_name(dt));
}

/* Each mode's launches, built in their own translation units so that the
 * modes compile in parallel: 0 in gemv.cu, GLU and GLU | NORM in
 * gemv_glu.cu, NORM and RES in gemv_norm.cu. */
kiln_status gemv_run_built(int mode, kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                           int64_t m, const gemv_cfg *c, cudaStream_t stream);
kiln_status gemv_run_glu(int mode, kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                         int64_t m, const gemv_cfg *c, cudaStream_t stream);
kiln_status gemv_run_norm(int mode, kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                          int64_t m, const gemv_cfg *c, cudaStream_t stream);

#endif /* KILN_BACKEND_CUDA_GEMV_IMPL_CUH */

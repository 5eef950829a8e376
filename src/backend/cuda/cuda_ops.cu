/*
 * cuda_ops.cu - element-wise, row-wise and batch kernels of the CUDA
 * backend: embedding lookup, RMSNorm (plain and fused with the residual
 * add), LayerNorm (+ residual), add, bias add, rotary embedding, gated
 * linear units, activations, soft-capping, the split of a fused
 * projection, row gathering, sequence pooling, the widening copy behind
 * to_host_f32 and the random fill of dummy weights.  Contract: cuda_ops.h.
 * (Greedy argmax and sampling: sample.cu.)
 *
 * Each op has three layers: a static __global__ kernel templated on the
 * element type T (__nv_bfloat16 or __half), a static launcher that does the
 * grid math and launches on the caller's stream, and an extern "C" entry
 * that picks T from the kiln_dtype.
 *
 * Numerics mirror the CPU backend (cpu_ops.c, cpu_attn.c), which is the
 * reference every kernel is tested against: elements are widened to f32 on
 * load, formulas are PyTorch's, every sum accumulates in f32 (per thread,
 * then a warp-shuffle tree, then across warps through shared memory), and
 * each result is rounded once on its store.  Transcendentals are the
 * accurate expf/erff/tanhf/sinf/cosf (the build does not use fast math):
 * rotary angles reach 1e5 radians, where the fast intrinsics are wrong.
 *
 * These kernels move little data per flop, so what sets their speed is the
 * memory traffic: 16-byte loads and stores (8 elements of T) wherever the
 * pointers are 16-byte aligned and the widths multiples of 8, with the
 * 2-byte scalar form of the same kernel otherwise (odd widths, an
 * unaligned view).  Which form ran changes no result bit of the element-
 * wise ops, split3 and neox rope; the norms may sum in another order.
 *
 * Work split.
 *   norms, many rows (n >= OPS_NORM_GROUP_ROWS, d a multiple of 8, at most
 *     OPS_NORM_GROUP_MAX_D): a group of 1, 2 or 4 warps per row, four warps
 *     per block; each thread keeps up to OPS_NORM_VPT 16-byte vectors of
 *     its row in registers, so the row is read from memory once and the
 *     sums need one warp-shuffle tree (plus, for a group of several warps,
 *     one barrier among the block's four warps).
 *   norms, few rows (decode) or long or odd rows, and the other row ops
 *     (embed, gather, pool): one block per row; the block's threads stride
 *     over the row's d elements, so a warp reads 32 neighbouring elements,
 *     and a norm keeps up to OPS_NORM_REG elements per thread in registers.
 *   In both, each element is read and written by the same thread, and all
 *     of a thread's reads come before its writes, which is what makes
 *     in-place calls (y aliasing x or res) safe.
 *   rope: a block per (token, group of heads); a thread rotates the 8 pairs
 *     of one 16-byte vector (neox: 8 elements of each half of the head;
 *     GPT-J: 4 neighbouring pairs), or one pair in the scalar form; the
 *     token's cos/sin table is computed once per block.  Groups are small
 *     for few tokens, so a decode token's ~40 heads are spread over
 *     several blocks.
 *   element-wise ops (add, glu, act, softcap): a grid-stride loop over
 *     16-byte vectors (or single elements) with 32-bit indices, the n % 8
 *     tail done by the first block; sizes past 2^30 vectors are split over
 *     several launches.
 *   bias add, split3: a grid over (group of rows, 16-byte column chunk):
 *     a thread owns one column chunk and loops over rows, so no index is
 *     divided to find its row or column.
 * Block sizes are multiples of 32, which block_sum relies on.
 */
#include "backend/cuda/cuda_ops.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"
#include "base/hashrand.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define OPS_EW_THREADS 256        /* threads per block of element-wise kernels   */
#define OPS_EW_MAX_BLOCKS 65536   /* grid cap; the kernels loop beyond it        */
#define OPS_EW_MAX_UNITS (1 << 30) /* vectors (or elements) of one launch: 32-bit indices */
#define OPS_ROW_MAX_THREADS 1024
#define OPS_ROWGRID_BLOCKS 4096   /* blocks a (rows, columns) grid aims for: ~30 per SM */
#define OPS_ROPE_THREADS 128      /* threads a rope block aims for (64 for few tokens) */
#define OPS_NORM_REG 8            /* row elements a block-per-row norm thread keeps in registers */
#define OPS_NORM_THREADS 128      /* threads per block of the grouped norms: 4 warps */
#define OPS_NORM_VPT 8            /* 16-byte vectors a grouped-norm thread keeps in registers */
#define OPS_NORM_GROUP_ROWS 256   /* rows from which the norms take the grouped split */
#define OPS_NORM_GROUP_MAX_D (8 * 32 * 4 * OPS_NORM_VPT) /* 8192: 4 warps x 8 vectors */
#define OPS_POOL_THREADS 256

/* ==== reductions ========================================================== */

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024);
 * every thread gets the total.  sh: 32 floats of shared memory, free for
 * reuse when this returns. */
static __device__ float block_sum(float v, float *sh)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;

    v = warp_sum(v);
    if (lane == 0)
        sh[warp] = v;
    __syncthreads(); /* every warp's partial sum is in sh */
    if (warp == 0) {
        v = lane < n_warps ? sh[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0)
            sh[0] = v;
    }
    __syncthreads(); /* sh[0] holds the total */
    v = sh[0];
    __syncthreads(); /* everyone has read sh[0] before the caller reuses sh */
    return v;
}

/* Sum of v over the calling thread's group of WARPS warps (1, 2 or 4;
 * groups are aligned runs of warps); every thread of the group gets the
 * total.  One warp needs no shared memory and no barrier.  Several write
 * one partial per warp to sh (a float per warp of the block) behind one
 * barrier that every thread of the block must reach; sh is not reusable
 * afterwards without another barrier, so a kernel passes each call its own
 * sh. */
template <int WARPS>
static __device__ __forceinline__ float group_sum(float v, float *sh)
{
    v = warp_sum(v);
    if (WARPS == 1)
        return v;
    int warp = threadIdx.x >> 5, first = warp & ~(WARPS - 1);
    if ((threadIdx.x & 31) == 0)
        sh[warp] = v;
    __syncthreads(); /* every warp's partial sum is in sh */
    v = 0.0f;
#pragma unroll
    for (int k = 0; k < WARPS; k++)
        v += sh[first + k];
    return v;
}

/* ==== vector access ======================================================= */

/* 8 f32 values rounded to T (nearest even) in one 16-byte vector; the
 * pointer only picks the type.  Element 2i is the low half of pair i, as
 * unpack8 reads it. */
static __device__ __forceinline__ uint4 pack8(const __nv_bfloat16 *, const float *f)
{
    uint4 v;
    __nv_bfloat162 *h = (__nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return v;
}
static __device__ __forceinline__ uint4 pack8(const __half *, const float *f)
{
    uint4 v;
    __half2 *h = (__half2 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
    return v;
}

/* W elements of T from p, widened into f: W == 8 is one 16-byte load (p
 * 16-byte aligned), W == 1 a scalar one. */
template <int W, typename T>
static __device__ __forceinline__ void ldv(const T *p, float *f)
{
    if (W == 8) {
        unpack8(*(const uint4 *)p, p, f);
    } else {
#pragma unroll
        for (int j = 0; j < W; j++)
            f[j] = ld(p + j);
    }
}

/* W values of f rounded to T and stored at p, as ldv reads them. */
template <int W, typename T>
static __device__ __forceinline__ void putv(T *p, const float *f)
{
    if (W == 8) {
        *(uint4 *)p = pack8(p, f);
    } else {
#pragma unroll
        for (int j = 0; j < W; j++)
            put(p + j, f[j]);
    }
}

/* ==== launch helpers ====================================================== */

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static unsigned ew_blocks(int64_t n)
{
    int64_t b = (n + OPS_EW_THREADS - 1) / OPS_EW_THREADS;
    return (unsigned)(b < 1 ? 1 : b > OPS_EW_MAX_BLOCKS ? OPS_EW_MAX_BLOCKS : b);
}

/* Threads for a row of d elements: about 4 elements each, a multiple of 32
 * in [32, 1024]. */
static unsigned row_threads(int64_t d)
{
    int64_t t = (d / 4 + 31) / 32 * 32;
    return (unsigned)(t < 32 ? 32 : t > OPS_ROW_MAX_THREADS ? OPS_ROW_MAX_THREADS : t);
}

/* Block and grid of a (rows, columns) kernel over n rows of `units` column
 * chunks: the block's threads take neighbouring chunks (at most 256, a
 * multiple of 32), grid.y covers a row's chunks, grid.x the rows in about
 * OPS_ROWGRID_BLOCKS blocks in all (each block loops over its rows). */
static void row_grid(int64_t n, int64_t units, dim3 *grid, dim3 *block)
{
    int64_t t = (units + 31) / 32 * 32;
    t = t > OPS_EW_THREADS ? OPS_EW_THREADS : t;
    int64_t gy = (units + t - 1) / t;
    gy = gy > 65535 ? 65535 : gy;
    int64_t gx = OPS_ROWGRID_BLOCKS / gy;
    gx = gx < 1 ? 1 : gx > n ? n : gx;
    *block = dim3((unsigned)t);
    *grid = dim3((unsigned)gx, (unsigned)gy);
}

/* ==== embed =============================================================== */

template <typename T>
static __global__ void embed_kernel(const T *table,      /* (rows, d)     */
                                    int64_t rows,
                                    int64_t row0,        /* table row 0's id */
                                    const T *pos_table,  /* (pos_rows, d) or NULL  */
                                    int64_t pos_rows,
                                    const T *type_table, /* (type_rows, d) or NULL */
                                    int64_t type_rows,
                                    const int32_t *tokens,    /* (n)        */
                                    const int32_t *positions, /* (n)        */
                                    const int32_t *types,     /* (n) or NULL */
                                    int64_t d, float scale,
                                    T *y)                /* (n, d)        */
{
    int64_t t = blockIdx.x;
    int64_t id = (int64_t)tokens[t] - row0;
    int64_t pid = pos_table ? positions[t] : 0;
    int64_t tid = types ? types[t] : 0;
    bool ok = id >= 0 && id < rows && (!pos_table || (pid >= 0 && pid < pos_rows)) &&
              (!type_table || (tid >= 0 && tid < type_rows));
    T *yr = y + t * d;

    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = 0.0f;
        if (ok) {
            v = ld(table + id * d + i) * scale;
            if (type_table)
                v += ld(type_table + tid * d + i);
            if (pos_table)
                v += ld(pos_table + pid * d + i);
        }
        put(yr + i, v);
    }
}

template <typename T>
static kiln_status embed_launch(const void *table, int64_t rows, int64_t row0,
                                const void *pos_table, int64_t pos_rows, const void *type_table, int64_t type_rows,
                                const int32_t *tokens, const int32_t *positions,
                                const int32_t *types, int32_t n, int64_t d, float scale, void *y,
                                cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    embed_kernel<T><<<(unsigned)n, row_threads(d), 0, stream>>>(
        (const T *)table, rows, row0, (const T *)pos_table, pos_rows, (const T *)type_table, type_rows,
        tokens, positions, types, d, scale, (T *)y);
    KILN_CUDA_LAUNCH_CHECK("embed", stream);
err:
    return st;
}

extern "C" kiln_status cuops_embed(kiln_dtype dt, const void *table, int64_t rows,
                                   int64_t row0, const void *pos_table, int64_t pos_rows,
                                   const void *type_table, int64_t type_rows,
                                   const int32_t *tokens, const int32_t *positions,
                                   const int32_t *types, int32_t n, int64_t d, float scale,
                                   void *y, cudaStream_t stream)
{
    if (n <= 0 || d <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("embed", dt, embed_launch, table, rows, row0, pos_table, pos_rows,
                         type_table,
                        type_rows, tokens, positions, types, n, d, scale, y, stream);
}

/* ==== RMSNorm (+ residual add) ============================================ */

/* Few rows (decode), long rows and odd widths: one block per row. */
template <typename T>
static __global__ void rmsnorm_kernel(T *res,        /* (n, d) or NULL: res += x first */
                                      const T *x,    /* (n, d) */
                                      const T *w,    /* (d)    */
                                      int64_t d, float eps, bool add_one,
                                      T *y)          /* (n, d) */
{
    __shared__ float sh[32];
    int64_t o = (int64_t)blockIdx.x * d;
    float ss = 0.0f;

    pdl_trigger(); /* the matmul after the norm may start its weight reads */
    pdl_wait();

    if (d <= (int64_t)OPS_NORM_REG * blockDim.x) {
        /* the row in registers: every load is issued before the reduction
         * and nothing is read twice; the same sums in the same order as
         * the loop below, so the same bits */
        float v[OPS_NORM_REG], wv[OPS_NORM_REG];
#pragma unroll
        for (int j = 0; j < OPS_NORM_REG; j++) {
            int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
            v[j] = wv[j] = 0.0f;
            if (i < d) {
                v[j] = ld(x + o + i);
                if (res)
                    v[j] = round_to(res, ld(res + o + i) + v[j]);
                wv[j] = ld(w + i);
                ss += v[j] * v[j];
            }
        }
        float inv = 1.0f / sqrtf(block_sum(ss, sh) / (float)d + eps);
#pragma unroll
        for (int j = 0; j < OPS_NORM_REG; j++) {
            int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
            if (i < d) {
                if (res)
                    put(res + o + i, v[j]);
                put(y + o + i, (v[j] * inv) * (add_one ? 1.0f + wv[j] : wv[j]));
            }
        }
        return;
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = ld(x + o + i);
        if (res) {
            v = round_to(res, ld(res + o + i) + v);
            put(res + o + i, v);
        }
        ss += v * v;
    }
    float inv = 1.0f / sqrtf(block_sum(ss, sh) / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = res ? ld(res + o + i) : ld(x + o + i);
        float wi = ld(w + i);
        put(y + o + i, (v * inv) * (add_one ? 1.0f + wi : wi));
    }
}

/* Many rows: a group of WARPS warps per row, OPS_NORM_THREADS / (32 WARPS)
 * rows per block.  Thread g of a group holds the row's 16-byte vectors g,
 * g + 32 WARPS, ... (VPT of them at most) in registers: all its loads are
 * issued before the one reduction, and its stores go to the vectors it
 * read.  The rows past n of the last block only take part in the barrier. */
template <typename T, int WARPS, int VPT>
static __global__ void __launch_bounds__(OPS_NORM_THREADS)
rmsnorm_rows_kernel(T *res,        /* (n, d) or NULL: res += x first */
                    const T *x,    /* (n, d) */
                    const T *w,    /* (d)    */
                    int32_t n, int32_t d, float eps, bool add_one,
                    T *y)          /* (n, d) */
{
    __shared__ float sh[OPS_NORM_THREADS / 32];
    const int G = 32 * WARPS;
    int g = threadIdx.x % G;
    int32_t row = (int32_t)blockIdx.x * (OPS_NORM_THREADS / G) + (int32_t)(threadIdx.x / G);
    int32_t dv = d / 8;
    bool live = row < n;
    size_t o = (size_t)(live ? row : 0) * (size_t)d;
    float v[VPT][8], ss = 0.0f;

    pdl_trigger(); /* the matmul after the norm may start its weight reads */
    pdl_wait();

#pragma unroll
    for (int j = 0; j < VPT; j++) {
        int32_t c = g + j * G;
        if (live && c < dv) {
            ldv<8>(x + o + 8 * c, v[j]);
            if (res) {
                float r[8];
                ldv<8>(res + o + 8 * c, r);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    v[j][e] = round_to(res, r[e] + v[j][e]);
            }
#pragma unroll
            for (int e = 0; e < 8; e++)
                ss += v[j][e] * v[j][e];
        }
    }
    float inv = 1.0f / sqrtf(group_sum<WARPS>(ss, sh) / (float)d + eps);
#pragma unroll
    for (int j = 0; j < VPT; j++) {
        int32_t c = g + j * G;
        if (live && c < dv) {
            float wv[8];
            ldv<8>(w + 8 * c, wv);
            if (res)
                putv<8>(res + o + 8 * c, v[j]);
#pragma unroll
            for (int e = 0; e < 8; e++)
                v[j][e] = (v[j][e] * inv) * (add_one ? 1.0f + wv[e] : wv[e]);
            putv<8>(y + o + 8 * c, v[j]);
        }
    }
}

/* The grouped split for n rows of d: warps per row and vectors per thread,
 * the fewest warps whose threads hold the row in OPS_NORM_VPT vectors, then
 * the fewest vectors (a power of 2) for them.  False where the block per
 * row is used: few rows, d not a multiple of 8 or past
 * OPS_NORM_GROUP_MAX_D, or a pointer not 16-byte aligned. */
static bool norm_group(int64_t n, int64_t d, bool aligned, int *warps, int *vpt)
{
    if (n < OPS_NORM_GROUP_ROWS || d % 8 || d > OPS_NORM_GROUP_MAX_D || !aligned)
        return false;
    int64_t dv = d / 8;
    *warps = dv <= 32 * OPS_NORM_VPT ? 1 : dv <= 64 * OPS_NORM_VPT ? 2 : 4;
    *vpt = OPS_NORM_VPT;
    while (*vpt > 1 && dv <= (int64_t)32 * *warps * (*vpt / 2))
        *vpt /= 2;
    return true;
}

/* The instances norm_group can pick: 1 warp with 1..8 vectors, 2 or 4
 * warps with 8 (a row that needs more than one warp's 8 vectors needs more
 * than 4 from each of two warps). */
#define NORM_GROUP_PICK(kernel, T, warps, vpt)                                              \
    ((warps) == 4   ? kernel<T, 4, OPS_NORM_VPT>                                            \
     : (warps) == 2 ? kernel<T, 2, OPS_NORM_VPT>                                            \
     : (vpt) == 8   ? kernel<T, 1, 8>                                                       \
     : (vpt) == 4   ? kernel<T, 1, 4>                                                       \
     : (vpt) == 2   ? kernel<T, 1, 2>                                                       \
                    : kernel<T, 1, 1>)

template <typename T>
static kiln_status rmsnorm_launch(void *res, const void *x, const void *w, int64_t n, int64_t d,
                                  float eps, bool add_one, void *y, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    int warps, vpt;

    if (norm_group(n, d, al16(x) && al16(w) && al16(y) && (!res || al16(res)), &warps, &vpt)) {
        unsigned rows = OPS_NORM_THREADS / (32 * (unsigned)warps);
        KILN_CUDA_CHECK(pdl_launch(NORM_GROUP_PICK(rmsnorm_rows_kernel, T, warps, vpt),
                                   dim3((unsigned)((n + rows - 1) / rows)),
                                   dim3(OPS_NORM_THREADS), 0, stream, (T *)res, (const T *)x,
                                   (const T *)w, (int32_t)n, (int32_t)d, eps, add_one, (T *)y));
    } else {
        KILN_CUDA_CHECK(pdl_launch(rmsnorm_kernel<T>, dim3((unsigned)n), dim3(row_threads(d)), 0,
                                   stream, (T *)res, (const T *)x, (const T *)w, d, eps, add_one,
                                   (T *)y));
    }
    KILN_CUDA_LAUNCH_CHECK(res ? "add_rmsnorm" : "rmsnorm", stream);
err:
    return st;
}

extern "C" kiln_status cuops_rmsnorm(kiln_dtype dt, void *res, const void *x, const void *w,
                                     int64_t n, int64_t d, float eps, bool add_one, void *y,
                                     cudaStream_t stream)
{
    if (n <= 0 || d <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("rmsnorm", dt, rmsnorm_launch, res, x, w, n, d, eps, add_one, y, stream);
}

/* ==== LayerNorm (+ residual) ============================================== */

/* Few rows, long rows and odd widths: one block per row; v = x + res is
 * kept in registers when the row fits OPS_NORM_REG per thread, else each
 * pass reads the row again. */
template <typename T>
static __global__ void layernorm_kernel(const T *x,   /* (n, d) */
                                        const T *res, /* (n, d) or NULL */
                                        const T *w,   /* (d)    */
                                        const T *b,   /* (d) or NULL */
                                        int64_t d, float eps,
                                        T *y)         /* (n, d) */
{
    __shared__ float sh[32];
    int64_t o = (int64_t)blockIdx.x * d;
    float s = 0.0f, ss = 0.0f;

    if (d <= (int64_t)OPS_NORM_REG * blockDim.x) {
        float v[OPS_NORM_REG];
#pragma unroll
        for (int j = 0; j < OPS_NORM_REG; j++) {
            int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
            v[j] = 0.0f;
            if (i < d) {
                v[j] = ld(x + o + i) + (res ? ld(res + o + i) : 0.0f);
                s += v[j];
            }
        }
        float mean = block_sum(s, sh) / (float)d;
#pragma unroll
        for (int j = 0; j < OPS_NORM_REG; j++) {
            int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
            if (i < d)
                ss += (v[j] - mean) * (v[j] - mean);
        }
        float inv = 1.0f / sqrtf(block_sum(ss, sh) / (float)d + eps);
#pragma unroll
        for (int j = 0; j < OPS_NORM_REG; j++) {
            int64_t i = threadIdx.x + (int64_t)j * blockDim.x;
            if (i < d)
                put(y + o + i, ((v[j] - mean) * inv) * ld(w + i) + (b ? ld(b + i) : 0.0f));
        }
        return;
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        s += ld(x + o + i) + (res ? ld(res + o + i) : 0.0f);
    float mean = block_sum(s, sh) / (float)d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float c = ld(x + o + i) + (res ? ld(res + o + i) : 0.0f) - mean;
        ss += c * c;
    }
    float inv = 1.0f / sqrtf(block_sum(ss, sh) / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = ld(x + o + i) + (res ? ld(res + o + i) : 0.0f);
        put(y + o + i, ((v - mean) * inv) * ld(w + i) + (b ? ld(b + i) : 0.0f));
    }
}

/* Many rows: the grouped split of rmsnorm_rows_kernel; the mean and the
 * variance are two reductions over the registers (each with its own sh). */
template <typename T, int WARPS, int VPT>
static __global__ void __launch_bounds__(OPS_NORM_THREADS)
layernorm_rows_kernel(const T *x,   /* (n, d) */
                      const T *res, /* (n, d) or NULL */
                      const T *w,   /* (d)    */
                      const T *b,   /* (d) or NULL */
                      int32_t n, int32_t d, float eps,
                      T *y)         /* (n, d) */
{
    __shared__ float sh[2][OPS_NORM_THREADS / 32];
    const int G = 32 * WARPS;
    int g = threadIdx.x % G;
    int32_t row = (int32_t)blockIdx.x * (OPS_NORM_THREADS / G) + (int32_t)(threadIdx.x / G);
    int32_t dv = d / 8;
    bool live = row < n;
    size_t o = (size_t)(live ? row : 0) * (size_t)d;
    float v[VPT][8] = {}, s = 0.0f, ss = 0.0f;

#pragma unroll
    for (int j = 0; j < VPT; j++) {
        int32_t c = g + j * G;
        if (live && c < dv) {
            ldv<8>(x + o + 8 * c, v[j]);
            if (res) {
                float r[8];
                ldv<8>(res + o + 8 * c, r);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    v[j][e] += r[e];
            }
#pragma unroll
            for (int e = 0; e < 8; e++)
                s += v[j][e];
        }
    }
    float mean = group_sum<WARPS>(s, sh[0]) / (float)d;
#pragma unroll
    for (int j = 0; j < VPT; j++)
        if (live && g + j * G < dv)
#pragma unroll
            for (int e = 0; e < 8; e++)
                ss += (v[j][e] - mean) * (v[j][e] - mean);
    float inv = 1.0f / sqrtf(group_sum<WARPS>(ss, sh[1]) / (float)d + eps);
#pragma unroll
    for (int j = 0; j < VPT; j++) {
        int32_t c = g + j * G;
        if (live && c < dv) {
            float wv[8], bv[8];
            ldv<8>(w + 8 * c, wv);
            if (b)
                ldv<8>(b + 8 * c, bv);
#pragma unroll
            for (int e = 0; e < 8; e++)
                v[j][e] = ((v[j][e] - mean) * inv) * wv[e] + (b ? bv[e] : 0.0f);
            putv<8>(y + o + 8 * c, v[j]);
        }
    }
}

template <typename T>
static kiln_status layernorm_launch(const void *x, const void *res, const void *w, const void *b,
                                    int64_t n, int64_t d, float eps, void *y,
                                    cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    int warps, vpt;

    if (norm_group(n, d, al16(x) && al16(w) && al16(y) && (!res || al16(res)) && (!b || al16(b)),
                   &warps, &vpt)) {
        unsigned rows = OPS_NORM_THREADS / (32 * (unsigned)warps);
        NORM_GROUP_PICK(layernorm_rows_kernel, T, warps, vpt)<<<
            (unsigned)((n + rows - 1) / rows), OPS_NORM_THREADS, 0, stream>>>(
            (const T *)x, (const T *)res, (const T *)w, (const T *)b, (int32_t)n, (int32_t)d, eps,
            (T *)y);
    } else {
        layernorm_kernel<T><<<(unsigned)n, row_threads(d), 0, stream>>>(
            (const T *)x, (const T *)res, (const T *)w, (const T *)b, d, eps, (T *)y);
    }
    KILN_CUDA_LAUNCH_CHECK("layernorm", stream);
err:
    return st;
}

extern "C" kiln_status cuops_layernorm(kiln_dtype dt, const void *x, const void *res,
                                       const void *w, const void *b, int64_t n, int64_t d,
                                       float eps, void *y, cudaStream_t stream)
{
    if (n <= 0 || d <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("layernorm", dt, layernorm_launch, x, res, w, b, n, d, eps, y, stream);
}

/* ==== element-wise kernel ================================================= */

/* The per-element formulas of the element-wise ops, f(a, b); the unary
 * ones ignore b. */
struct ew_add {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct ew_glu {
    int act;
    __device__ float operator()(float gate, float up) const { return act_apply(act, gate) * up; }
};
struct ew_act {
    int act;
    __device__ float operator()(float x, float) const { return act_apply(act, x); }
};
struct ew_softcap {
    float cap;
    __device__ float operator()(float x, float) const { return tanhf(x / cap) * cap; }
};

/* y = f(a, b) over units * W + tail elements (b NULL for a unary f): a
 * grid-stride loop over W-element units (W == 8: 16-byte vectors, every
 * pointer 16-byte aligned), then the first block does the tail (fewer than
 * W elements).  A thread reads each of its elements before it writes it,
 * so y may alias a or b.  PDL: launched by pdl_launch. */
template <typename T, int W, bool PDL, typename F>
static __global__ void ew_kernel(const T *a,  /* (n) */
                                 const T *b,  /* (n) or NULL */
                                 uint32_t units, uint32_t tail, F f,
                                 T *y)        /* (n) */
{
    if (PDL) {
        pdl_trigger(); /* the kernel after this one may start its weight reads */
        pdl_wait();
    }
    uint32_t stride = gridDim.x * blockDim.x;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < units; i += stride) {
        float va[W], vb[W];
        ldv<W>(a + (size_t)i * W, va);
        if (b)
            ldv<W>(b + (size_t)i * W, vb);
#pragma unroll
        for (int j = 0; j < W; j++)
            va[j] = f(va[j], b ? vb[j] : 0.0f);
        putv<W>(y + (size_t)i * W, va);
    }
    if (W > 1 && blockIdx.x == 0 && threadIdx.x < tail) {
        size_t i = (size_t)units * W + threadIdx.x;
        put(y + i, f(ld(a + i), b ? ld(b + i) : 0.0f));
    }
}

/* Queue ew_kernel over n elements: the vector form when every pointer is
 * 16-byte aligned, in launches of at most OPS_EW_MAX_UNITS units (one for
 * any size a model has) so that indices stay 32-bit. */
template <typename T, bool PDL, typename F>
static cudaError_t ew_run(const T *a, const T *b, int64_t n, F f, T *y, cudaStream_t stream)
{
    bool vec = al16(a) && (!b || al16(b)) && al16(y);
    int64_t W = vec ? 8 : 1;
    cudaError_t e = cudaSuccess;

    for (int64_t off = 0; off < n && e == cudaSuccess;) {
        int64_t len = n - off;
        if (len / W > OPS_EW_MAX_UNITS)
            len = (int64_t)OPS_EW_MAX_UNITS * W;
        uint32_t units = (uint32_t)(len / W), tail = (uint32_t)(len - (int64_t)units * W);
        dim3 grid(ew_blocks(units)), block(OPS_EW_THREADS);
        const T *ao = a + off, *bo = b ? b + off : NULL;
        T *yo = y + off;
        void (*k)(const T *, const T *, uint32_t, uint32_t, F, T *) =
            vec ? ew_kernel<T, 8, PDL, F> : ew_kernel<T, 1, PDL, F>;
        if (PDL) {
            e = pdl_launch(k, grid, block, 0, stream, ao, bo, units, tail, f, yo);
        } else {
            k<<<grid, block, 0, stream>>>(ao, bo, units, tail, f, yo);
            e = cudaPeekAtLastError();
        }
        off += len;
    }
    return e;
}

/* ==== add, bias add ======================================================= */

template <typename T>
static kiln_status add_launch(const void *a, const void *b, int64_t n, void *y,
                              cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK((ew_run<T, false>((const T *)a, (const T *)b, n, ew_add{}, (T *)y, stream)));
    KILN_CUDA_LAUNCH_CHECK("add", stream);
err:
    return st;
}

extern "C" kiln_status cuops_add(kiln_dtype dt, const void *a, const void *b, int64_t n,
                                 void *y, cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("add", dt, add_launch, a, b, n, y, stream);
}

/* ==== random fill (dummy weights) ========================================= */

template <typename T>
static __global__ void fill_random_kernel(T *y,       /* (n) */
                                          int64_t n, uint64_t seed, float lo, float hi)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        put(y + i, hr_uniform(seed, (uint64_t)i, lo, hi));
}

template <typename T>
static kiln_status fill_random_launch(void *y, int64_t n, uint64_t seed, float lo, float hi,
                                      cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    fill_random_kernel<T><<<ew_blocks(n), OPS_EW_THREADS, 0, stream>>>((T *)y, n, seed, lo, hi);
    KILN_CUDA_LAUNCH_CHECK("fill_random", stream);
err:
    return st;
}

extern "C" kiln_status cuops_fill_random(kiln_dtype dt, void *y, int64_t n, uint64_t seed,
                                         float lo, float hi, cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("fill_random", dt, fill_random_launch, y, n, seed, lo, hi, stream);
}

/* y(n, m) += bias(m): a thread owns one W-element column chunk (W == 8:
 * 16-byte vectors, m a multiple of 8 and both pointers aligned), loads its
 * bias once and walks the rows of its block's grid.x slot. */
template <typename T, int W>
static __global__ void add_bias_kernel(T *y,          /* (n, m) */
                                       const T *bias, /* (m)    */
                                       uint32_t n, int32_t m)
{
    int32_t step = (int32_t)(gridDim.y * blockDim.x) * W;
    for (int32_t c = (int32_t)(blockIdx.y * blockDim.x + threadIdx.x) * W; c < m; c += step) {
        float bv[W];
        ldv<W>(bias + c, bv);
        for (uint32_t r = blockIdx.x; r < n; r += gridDim.x) {
            T *p = y + (size_t)r * (size_t)m + c;
            float v[W];
            ldv<W>(p, v);
#pragma unroll
            for (int j = 0; j < W; j++)
                v[j] += bv[j];
            putv<W>(p, v);
        }
    }
}

template <typename T>
static kiln_status add_bias_launch(void *y, const void *bias, int64_t n, int64_t m,
                                   cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    bool vec = m % 8 == 0 && al16(y) && al16(bias);
    dim3 grid, block;

    if (m > INT32_MAX / 2 || n > INT32_MAX)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda matmul bias: %lld x %lld is too large",
                            (long long)n, (long long)m);
    row_grid(n, vec ? m / 8 : m, &grid, &block);
    if (vec)
        add_bias_kernel<T, 8><<<grid, block, 0, stream>>>((T *)y, (const T *)bias, (uint32_t)n,
                                                          (int32_t)m);
    else
        add_bias_kernel<T, 1><<<grid, block, 0, stream>>>((T *)y, (const T *)bias, (uint32_t)n,
                                                          (int32_t)m);
    KILN_CUDA_LAUNCH_CHECK("matmul bias", stream);
err:
    return st;
}

extern "C" kiln_status cuops_add_bias(kiln_dtype dt, void *y, const void *bias, int64_t n,
                                      int64_t m, cudaStream_t stream)
{
    if (n <= 0 || m <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("matmul bias", dt, add_bias_launch, y, bias, n, m, stream);
}

/* ==== rotary embedding ==================================================== */

/* Dynamic NTK: the base for a sequence of len tokens, as cpu_attn.c. */
static __device__ float rope_dynamic_base(const cuops_rope_args &a, int32_t len)
{
    double orig = (double)a.original_max_pos, dim = (double)a.rot_dims;
    if (orig <= 0.0 || (double)len <= orig)
        return a.theta;
    double f = (double)a.factor * (double)len / orig - ((double)a.factor - 1.0);
    return (float)((double)a.theta * pow(f, dim / (dim - 2.0)));
}

/* Sequence owning batch row t (seq_start is sorted, n_seqs >= 1). */
static __device__ int32_t seq_of(const int32_t *seq_start, int32_t n_seqs, int32_t t)
{
    int32_t lo = 0, hi = n_seqs - 1;
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) / 2;
        if (seq_start[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* cs[i] = cos, cs[half + i] = sin of token t's angle for frequency i (times
 * mscale), filled by the block's threads; the caller syncs before reading. */
static __device__ void rope_table(float *cs, const int32_t *positions, const int32_t *seq_start,
                                  const int32_t *seq_len, int32_t n_seqs, int32_t t,
                                  const cuops_rope_args &a)
{
    int32_t half = a.rot_dims / 2;
    float pos = (float)positions[t];
    float base = a.dynamic ? rope_dynamic_base(a, seq_len[seq_of(seq_start, n_seqs, t)]) : 0.0f;

    for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
        float inv = a.dynamic ? 1.0f / powf(base, (float)(2 * i) / (float)a.rot_dims)
                              : a.inv_freq[i];
        float ang = pos * inv;
        cs[i] = cosf(ang) * a.mscale;
        cs[half + i] = sinf(ang) * a.mscale;
    }
}

/* The start both rope kernels share: the dependent-launch handshake, the
 * block's heads [*h_lo, *h_hi) of the `heads` (q's then k's; group
 * blockIdx.y of `per`), and token blockIdx.x's cos/sin table in cs,
 * complete for every thread on return. */
static __device__ void rope_begin(float *cs, const int32_t *positions, const int32_t *seq_start,
                                  const int32_t *seq_len, int32_t n_seqs, int32_t heads,
                                  int32_t per, const cuops_rope_args &a, int32_t *h_lo,
                                  int32_t *h_hi)
{
    pdl_trigger();
    pdl_wait();
    *h_lo = (int32_t)blockIdx.y * per;
    *h_hi = *h_lo + per < heads ? *h_lo + per : heads;
    rope_table(cs, positions, seq_start, seq_len, n_seqs, (int32_t)blockIdx.x, a);
    __syncthreads(); /* the cos/sin table is complete before any thread reads it */
}

/* Head h of token t: q's heads then k's. */
template <typename T>
static __device__ __forceinline__ T *rope_head(T *q, T *k, int32_t t, int32_t h, int32_t n_heads,
                                               int32_t n_kv_heads, int32_t head_dim)
{
    return h < n_heads ? q + ((int64_t)t * n_heads + h) * head_dim
                       : k + ((int64_t)t * n_kv_heads + (h - n_heads)) * head_dim;
}

/* The scalar form: one thread per rotated pair, heads [per y, per (y + 1))
 * of token x (per a launch argument). */
template <typename T>
static __global__ void rope_kernel(T *q,                     /* (n, n_heads, head_dim)    */
                                   T *k,                     /* (n, n_kv_heads, head_dim) or NULL */
                                   const int32_t *positions, /* (n)                       */
                                   const int32_t *seq_start, /* (n_seqs + 1), dynamic only */
                                   const int32_t *seq_len,   /* (n_seqs), dynamic only     */
                                   int32_t n_seqs, int32_t n_heads, int32_t n_kv_heads,
                                   cuops_rope_args a, int32_t per)
{
    extern __shared__ float4 cs4[]; /* (2, half): cos then sin of each frequency */
    float *cs = (float *)cs4;
    int32_t t = blockIdx.x, half = a.rot_dims / 2, h_lo, h_hi;
    const float *sn = cs + half;

    rope_begin(cs, positions, seq_start, seq_len, n_seqs, n_heads + (k ? n_kv_heads : 0), per,
               a, &h_lo, &h_hi);

    for (int32_t p = threadIdx.x; p < (h_hi - h_lo) * half; p += blockDim.x) {
        int32_t i = p % half;
        T *v = rope_head(q, k, t, h_lo + p / half, n_heads, n_kv_heads, a.head_dim);
        int32_t i0 = a.neox ? i : 2 * i, i1 = a.neox ? i + half : 2 * i + 1;
        float r0, r1;
        rope_turn(ld(v + i0), ld(v + i1), cs[i], sn[i], &r0, &r1);
        put(v + i0, r0);
        put(v + i1, r1);
    }
}

/* The vector form (head_dim a multiple of 8, pointers 16-byte aligned, and
 * half a multiple of 8 for neox, rot_dims for GPT-J): one thread per
 * 16-byte unit of a head.  neox unit u: elements [8u, 8u + 8) and the same
 * of the second half, 8 pairs; GPT-J unit u: elements [8u, 8u + 8), pairs
 * 4u .. 4u + 3.  Same table, same formulas as rope_kernel. */
template <typename T>
static __global__ void rope_vec_kernel(T *q,                     /* (n, n_heads, head_dim)    */
                                       T *k,                     /* (n, n_kv_heads, head_dim) or NULL */
                                       const int32_t *positions, /* (n)                       */
                                       const int32_t *seq_start, /* (n_seqs + 1), dynamic only */
                                       const int32_t *seq_len,   /* (n_seqs), dynamic only     */
                                       int32_t n_seqs, int32_t n_heads, int32_t n_kv_heads,
                                       cuops_rope_args a, int32_t per)
{
    extern __shared__ float4 cs4[]; /* (2, half): cos then sin of each frequency */
    float *cs = (float *)cs4;
    int32_t t = blockIdx.x, half = a.rot_dims / 2, h_lo, h_hi;
    int32_t units = a.neox ? half / 8 : a.rot_dims / 8; /* 16-byte units a head rotates */
    const float *sn = cs + half;

    rope_begin(cs, positions, seq_start, seq_len, n_seqs, n_heads + (k ? n_kv_heads : 0), per,
               a, &h_lo, &h_hi);

    for (int32_t p = threadIdx.x; p < (h_hi - h_lo) * units; p += blockDim.x) {
        int32_t u = p % units;
        T *v = rope_head(q, k, t, h_lo + p / units, n_heads, n_kv_heads, a.head_dim);
        if (a.neox) {
            int32_t i = 8 * u;
            float x0[8], x1[8];
            ldv<8>(v + i, x0);
            ldv<8>(v + i + half, x1);
#pragma unroll
            for (int e = 0; e < 8; e++)
                rope_turn(x0[e], x1[e], cs[i + e], sn[i + e], &x0[e], &x1[e]);
            putv<8>(v + i, x0);
            putv<8>(v + i + half, x1);
        } else {
            float x[8];
            ldv<8>(v + 8 * u, x);
#pragma unroll
            for (int e = 0; e < 4; e++)
                rope_turn(x[2 * e], x[2 * e + 1], cs[4 * u + e], sn[4 * u + e], &x[2 * e],
                          &x[2 * e + 1]);
            putv<8>(v + 8 * u, x);
        }
    }
}

template <typename T>
static kiln_status rope_launch(void *q, void *k, const int32_t *positions,
                               const int32_t *seq_start, const int32_t *seq_len, int32_t n_seqs,
                               int32_t n, int32_t n_heads, int32_t n_kv_heads,
                               const cuops_rope_args *a, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    size_t smem = (size_t)a->rot_dims * sizeof(float);
    int32_t half = a->rot_dims / 2, heads = n_heads + (k ? n_kv_heads : 0);
    bool vec = a->head_dim % 8 == 0 && (a->neox ? half % 8 : a->rot_dims % 8) == 0 && al16(q) &&
               (!k || al16(k));
    /* a thread per unit (16-byte vector, or pair): a block takes as many
     * heads as fit its thread target, which is smaller for few tokens so
     * that their heads still spread over several blocks */
    int32_t units = vec ? (a->neox ? half / 8 : a->rot_dims / 8) : half;
    int32_t target = n < 32 ? OPS_ROPE_THREADS / 2 : OPS_ROPE_THREADS;
    int32_t per = target / units > 0 ? target / units : 1;
    int32_t threads = per * units < target ? (per * units + 31) / 32 * 32 : target;
    dim3 grid((unsigned)n, (unsigned)((heads + per - 1) / per));

    KILN_CUDA_CHECK(pdl_launch(vec ? rope_vec_kernel<T> : rope_kernel<T>, grid,
                               dim3((unsigned)threads), smem, stream, (T *)q, (T *)k, positions,
                               seq_start, seq_len, n_seqs, n_heads, n_kv_heads, *a, per));
    KILN_CUDA_LAUNCH_CHECK("rope", stream);
err:
    return st;
}

extern "C" kiln_status cuops_rope(kiln_dtype dt, void *q, void *k, const int32_t *positions,
                                  const int32_t *seq_start, const int32_t *seq_len,
                                  int32_t n_seqs, int32_t n, int32_t n_heads, int32_t n_kv_heads,
                                  const cuops_rope_args *a, cudaStream_t stream)
{
    if (n <= 0 || n_heads <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("rope", dt, rope_launch, q, k, positions, seq_start, seq_len, n_seqs, n,
                        n_heads, n_kv_heads, a, stream);
}

/* ==== gated linear unit, activation, soft-capping ========================= */

/* ew_kernel with act(gate) * up; programmatic launch: the down projection
 * after it may start its weight reads. */
template <typename T>
static kiln_status glu_launch(const void *gate, const void *up, int64_t n, bk_act act, void *y,
                              cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK((ew_run<T, true>((const T *)gate, (const T *)up, n, ew_glu{(int)act}, (T *)y,
                                     stream)));
    KILN_CUDA_LAUNCH_CHECK("glu", stream);
err:
    return st;
}

extern "C" kiln_status cuops_glu(kiln_dtype dt, const void *gate, const void *up, int64_t n,
                                 bk_act act, void *y, cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("glu", dt, glu_launch, gate, up, n, act, y, stream);
}

template <typename T>
static kiln_status act_launch(void *x, int64_t n, bk_act act, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK((ew_run<T, false>((const T *)x, (const T *)NULL, n, ew_act{(int)act}, (T *)x,
                                      stream)));
    KILN_CUDA_LAUNCH_CHECK("act", stream);
err:
    return st;
}

extern "C" kiln_status cuops_act(kiln_dtype dt, void *x, int64_t n, bk_act act,
                                 cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("act", dt, act_launch, x, n, act, stream);
}

template <typename T>
static kiln_status softcap_launch(void *x, int64_t n, float cap, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK((ew_run<T, false>((const T *)x, (const T *)NULL, n, ew_softcap{cap}, (T *)x,
                                      stream)));
    KILN_CUDA_LAUNCH_CHECK("softcap", stream);
err:
    return st;
}

extern "C" kiln_status cuops_softcap(kiln_dtype dt, void *x, int64_t n, float cap,
                                     cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("softcap", dt, softcap_launch, x, n, cap, stream);
}

/* ==== split of a fused projection ========================================= */

/* Row t of x into rows t of y0, y1, y2: a thread owns one W-element column
 * chunk of x (W == 8: 16-byte vectors; W divides w0, w1 and w2, so a chunk
 * lies in one output), picks its output once and walks the rows of its
 * block's grid.x slot.  A bit copy. */
template <typename T, int W>
static __global__ void split3_kernel(const T *x,  /* (n, w0 + w1 + w2) */
                                     uint32_t n, int32_t w0, int32_t w1, int32_t w2,
                                     T *y0,       /* (n, w0) */
                                     T *y1,       /* (n, w1) */
                                     T *y2)       /* (n, w2) */
{
    int32_t w = w0 + w1 + w2, step = (int32_t)(gridDim.y * blockDim.x) * W;
    for (int32_t c = (int32_t)(blockIdx.y * blockDim.x + threadIdx.x) * W; c < w; c += step) {
        T *dst = c < w0 ? y0 + c : c < w0 + w1 ? y1 + (c - w0) : y2 + (c - w0 - w1);
        size_t dw = (size_t)(c < w0 ? w0 : c < w0 + w1 ? w1 : w2);
        for (uint32_t r = blockIdx.x; r < n; r += gridDim.x) {
            const T *s = x + (size_t)r * (size_t)w + c;
            if (W == 8)
                *(uint4 *)(dst + r * dw) = *(const uint4 *)s;
            else
                dst[r * dw] = *s;
        }
    }
}

template <typename T>
static kiln_status split3_launch(const void *x, int64_t n, int64_t w0, int64_t w1, int64_t w2,
                                 void *y0, void *y1, void *y2, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    int64_t w = w0 + w1 + w2;
    bool vec = w0 % 8 == 0 && w1 % 8 == 0 && w2 % 8 == 0 && al16(x) && al16(y0) && al16(y1) &&
               al16(y2);
    dim3 grid, block;

    if (w > INT32_MAX / 2 || n > INT32_MAX)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda split3: %lld x %lld is too large",
                            (long long)n, (long long)w);
    row_grid(n, vec ? w / 8 : w, &grid, &block);
    if (vec)
        split3_kernel<T, 8><<<grid, block, 0, stream>>>((const T *)x, (uint32_t)n, (int32_t)w0,
                                                        (int32_t)w1, (int32_t)w2, (T *)y0,
                                                        (T *)y1, (T *)y2);
    else
        split3_kernel<T, 1><<<grid, block, 0, stream>>>((const T *)x, (uint32_t)n, (int32_t)w0,
                                                        (int32_t)w1, (int32_t)w2, (T *)y0,
                                                        (T *)y1, (T *)y2);
    KILN_CUDA_LAUNCH_CHECK("split3", stream);
err:
    return st;
}

extern "C" kiln_status cuops_split3(kiln_dtype dt, const void *x, int64_t n, int64_t w0,
                                    int64_t w1, int64_t w2, void *y0, void *y1, void *y2,
                                    cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("split3", dt, split3_launch, x, n, w0, w1, w2, y0, y1, y2, stream);
}

/* ==== rows of a batch: gather, pool ======================================= */

template <typename T>
static __global__ void gather_rows_kernel(const T *x,               /* (n_rows, d) */
                                          int64_t d, int32_t n_rows,
                                          const int32_t *out_rows,  /* (n_out)     */
                                          T *y)                     /* (n_out, d)  */
{
    int64_t r = out_rows[blockIdx.x];
    bool ok = r >= 0 && r < n_rows;
    T *yr = y + (int64_t)blockIdx.x * d;

    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        put(yr + i, ok ? ld(x + r * d + i) : 0.0f);
}

template <typename T>
static kiln_status gather_rows_launch(const void *x, int64_t d, int32_t n_rows,
                                      const int32_t *out_rows, int32_t n_out, void *y,
                                      cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    gather_rows_kernel<T><<<(unsigned)n_out, row_threads(d), 0, stream>>>(
        (const T *)x, d, n_rows, out_rows, (T *)y);
    KILN_CUDA_LAUNCH_CHECK("gather_rows", stream);
err:
    return st;
}

extern "C" kiln_status cuops_gather_rows(kiln_dtype dt, const void *x, int64_t d,
                                         int32_t n_rows, const int32_t *out_rows, int32_t n_out,
                                         void *y, cudaStream_t stream)
{
    if (n_out <= 0 || d <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("gather_rows", dt, gather_rows_launch, x, d, n_rows, out_rows, n_out, y,
                        stream);
}

/* A pool block's threads form `rg` row groups (pool_kernel); each thread
 * keeps POOL_COLS columns' partial results in registers, so a row
 * iteration has POOL_COLS independent loads in flight. */
#define POOL_COLS 8
/* Shared memory a pool block may take for its row groups' partials. */
#define POOL_MAX_SMEM (160 * 1024)

/* y(s) = pool over rows [seq_start[s], seq_start[s + 1]) of x, one block a
 * sequence: for MEAN and MAX the block's threads form rg row groups, group
 * g taking rows r0 + g, r0 + g + rg, ..., whose partials meet in shared
 * memory (rg x d floats); CLS and LAST read their one row.  With
 * normalize, the pooled row (kept in shared memory) is scaled by 1 / its
 * L2 norm. */
template <typename T>
static __global__ void pool_kernel(const T *x,               /* (n_tokens, d) */
                                   int64_t d,
                                   const int32_t *seq_start, /* (n_seqs + 1)  */
                                   int mode, bool normalize, int rg,
                                   T *y)                     /* (n_seqs, d)   */
{
    extern __shared__ float pool_s[]; /* (rg, d) partials; row 0 ends as the pooled row */
    __shared__ float sh[32];
    const int32_t r0 = seq_start[blockIdx.x], r1 = seq_start[blockIdx.x + 1];
    const int ct = (int)blockDim.x / rg, g = (int)threadIdx.x / ct, c = (int)threadIdx.x % ct;
    const bool mx = mode == BK_POOL_MAX;
    T *yr = y + (int64_t)blockIdx.x * d;
    float scale = 1.0f;

    if (r1 <= r0) {
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
            put(yr + i, 0.0f);
        return;
    }
    if (mode == BK_POOL_CLS || mode == BK_POOL_LAST) {
        const T *xr = x + (int64_t)(mode == BK_POOL_CLS ? r0 : r1 - 1) * d;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
            pool_s[i] = ld(xr + i);
    } else {
        /* 1. each row group's partials; threads past the last group idle */
        for (int64_t base = 0; g < rg && base < d; base += (int64_t)POOL_COLS * ct) {
            float acc[POOL_COLS];
#pragma unroll
            for (int u = 0; u < POOL_COLS; u++)
                acc[u] = mx ? -INFINITY : 0.0f;
            for (int32_t r = r0 + g; r < r1; r += rg) {
                const T *xr = x + (int64_t)r * d;
#pragma unroll
                for (int u = 0; u < POOL_COLS; u++) {
                    const int64_t i = base + (int64_t)u * ct + c;
                    if (i < d) {
                        const float v = ld(xr + i);
                        acc[u] = mx ? fmaxf(acc[u], v) : acc[u] + v;
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < POOL_COLS; u++) {
                const int64_t i = base + (int64_t)u * ct + c;
                if (i < d)
                    pool_s[(int64_t)g * d + i] = acc[u];
            }
        }
        __syncthreads(); /* every group's partials are in shared memory */
        /* 2. the groups' partials of column i meet in row 0 (one thread a column) */
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
            float acc = pool_s[i];
            for (int k = 1; k < rg; k++) {
                const float v = pool_s[(int64_t)k * d + i];
                acc = mx ? fmaxf(acc, v) : acc + v;
            }
            pool_s[i] = mx ? acc : acc / (float)(r1 - r0);
        }
    }
    __syncthreads(); /* the pooled row is in pool_s[0, d) */
    if (normalize) {
        float ss = 0.0f;
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
            ss += pool_s[i] * pool_s[i];
        const float norm = sqrtf(block_sum(ss, sh));
        scale = 1.0f / (norm < 1e-12f ? 1e-12f : norm);
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
        put(yr + i, pool_s[i] * scale);
}

template <typename T>
static kiln_status pool_launch(const void *x, int64_t d, const int32_t *seq_start,
                               int32_t n_seqs, bk_pool mode, bool normalize, void *y,
                               cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    /* row groups: 4 where their partials fit, fewer for wide rows */
    const bool one_row = mode == BK_POOL_CLS || mode == BK_POOL_LAST;
    int rg = one_row ? 1 : 4;
    while (rg > 1 && (size_t)rg * (size_t)d * sizeof(float) > POOL_MAX_SMEM)
        rg /= 2;
    const size_t smem = (size_t)rg * (size_t)d * sizeof(float);
    if (smem > POOL_MAX_SMEM)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "pool: rows of %lld elements (at most %d)",
                            (long long)d, (int)(POOL_MAX_SMEM / sizeof(float)));
    if (smem > 48 * 1024)
        KILN_CUDA_CHECK(cudaFuncSetAttribute(pool_kernel<T>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem));
    pool_kernel<T><<<(unsigned)n_seqs, OPS_POOL_THREADS, smem, stream>>>(
        (const T *)x, d, seq_start, (int)mode, normalize, rg, (T *)y);
    KILN_CUDA_LAUNCH_CHECK("pool", stream);
err:
    return st;
}

extern "C" kiln_status cuops_pool(kiln_dtype dt, const void *x, int64_t d,
                                  const int32_t *seq_start, int32_t n_seqs, bk_pool mode,
                                  bool normalize, void *y, cudaStream_t stream)
{
    if (n_seqs <= 0 || d <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("pool", dt, pool_launch, x, d, seq_start, n_seqs, mode, normalize, y,
                        stream);
}

/* ==== widening copy ======================================================= */

template <typename T>
static __global__ void to_f32_kernel(const T *x, /* (n) */
                                     int64_t n,
                                     float *y)   /* (n) */
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = ld(x + i);
}

template <typename T>
static kiln_status to_f32_launch(const void *x, int64_t n, float *y, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    to_f32_kernel<T><<<ew_blocks(n), OPS_EW_THREADS, 0, stream>>>((const T *)x, n, y);
    KILN_CUDA_LAUNCH_CHECK("to_host_f32", stream);
err:
    return st;
}

extern "C" kiln_status cuops_to_f32(kiln_dtype dt, const void *x, int64_t n, float *y,
                                    cudaStream_t stream)
{
    if (n <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("to_host_f32", dt, to_f32_launch, x, n, y, stream);
}

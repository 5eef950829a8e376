/*
 * cuda_ops.cu - element-wise, row-wise and batch kernels of the CUDA
 * backend: embedding lookup, RMSNorm (plain and fused with the residual
 * add), LayerNorm (+ residual), add, bias add, rotary embedding, gated
 * linear units, activations, soft-capping, row gathering, sequence pooling,
 * the widening copy behind to_host_f32 and the random fill of dummy
 * weights.  Contract: cuda_ops.h.  (Greedy argmax and sampling: sample.cu.)
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
 * Work split.
 *   row ops (embed, norms, gather, pool): one block per row (token or
 *     sequence); the block's threads stride over the row's d elements, so a
 *     warp reads 32 neighbouring elements.  Each element is read and
 *     written by the same thread in every pass, which is what makes in-place
 *     calls (y aliasing x or res) safe.
 *   rope: a block per (token, group of heads), one thread per rotated pair,
 *     so a decode token's ~40 heads are spread over ~10 blocks and no
 *     thread waits on a chain of loads.
 *   element-wise ops: a grid-stride loop over n with 64-bit indices.
 * Block sizes are multiples of 32, which block_sum relies on.
 */
#include "backend/cuda/cuda_ops.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"
#include "base/hashrand.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define OPS_EW_THREADS 256        /* threads per block of element-wise kernels  */
#define OPS_EW_MAX_BLOCKS 65536   /* grid cap; the kernels loop beyond it       */
#define OPS_ROW_MAX_THREADS 1024
#define OPS_ROPE_THREADS 256
#define OPS_RMS_REG 8             /* row elements an RMSNorm thread keeps in registers */
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

/* ==== activations ========================================================= */

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

/* ==== launch helpers ====================================================== */

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

    if (d <= (int64_t)OPS_RMS_REG * blockDim.x) {
        /* the row in registers: every load is issued before the reduction
         * and nothing is read twice; the same sums in the same order as
         * the loop below, so the same bits */
        float v[OPS_RMS_REG], wv[OPS_RMS_REG];
#pragma unroll
        for (int j = 0; j < OPS_RMS_REG; j++) {
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
        for (int j = 0; j < OPS_RMS_REG; j++) {
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

template <typename T>
static kiln_status rmsnorm_launch(void *res, const void *x, const void *w, int64_t n, int64_t d,
                                  float eps, bool add_one, void *y, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK(pdl_launch(rmsnorm_kernel<T>, dim3((unsigned)n), dim3(row_threads(d)), 0,
                               stream, (T *)res, (const T *)x, (const T *)w, d, eps, add_one,
                               (T *)y));
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

template <typename T>
static kiln_status layernorm_launch(const void *x, const void *res, const void *w, const void *b,
                                    int64_t n, int64_t d, float eps, void *y,
                                    cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    layernorm_kernel<T><<<(unsigned)n, row_threads(d), 0, stream>>>(
        (const T *)x, (const T *)res, (const T *)w, (const T *)b, d, eps, (T *)y);
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

/* ==== add, bias add ======================================================= */

template <typename T>
static __global__ void add_kernel(const T *a, /* (n) */
                                  const T *b, /* (n) */
                                  int64_t n,
                                  T *y)       /* (n) */
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        put(y + i, ld(a + i) + ld(b + i));
}

template <typename T>
static kiln_status add_launch(const void *a, const void *b, int64_t n, void *y,
                              cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    add_kernel<T><<<ew_blocks(n), OPS_EW_THREADS, 0, stream>>>((const T *)a, (const T *)b, n,
                                                                (T *)y);
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

template <typename T>
static __global__ void add_bias_kernel(T *y,          /* (n, m) */
                                       const T *bias, /* (m)    */
                                       int64_t total, int64_t m)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        put(y + i, ld(y + i) + ld(bias + i % m));
}

template <typename T>
static kiln_status add_bias_launch(void *y, const void *bias, int64_t n, int64_t m,
                                   cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    int64_t total = n * m;

    add_bias_kernel<T><<<ew_blocks(total), OPS_EW_THREADS, 0, stream>>>((T *)y, (const T *)bias,
                                                                        total, m);
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

template <typename T>
static __global__ void rope_kernel(T *q,                     /* (n, n_heads, head_dim)    */
                                   T *k,                     /* (n, n_kv_heads, head_dim) or NULL */
                                   const int32_t *positions, /* (n)                       */
                                   const int32_t *seq_start, /* (n_seqs + 1), dynamic only */
                                   const int32_t *seq_len,   /* (n_seqs), dynamic only     */
                                   int32_t n_seqs, int32_t n_heads, int32_t n_kv_heads,
                                   cuops_rope_args a)
{
    extern __shared__ float cs[]; /* (2, half): cos then sin of each frequency */
    int32_t t = blockIdx.x, half = a.rot_dims / 2;
    pdl_trigger();
    pdl_wait();
    /* this block's heads: [h_lo, h_hi) of the q heads then the k heads */
    int32_t heads = n_heads + (k ? n_kv_heads : 0);
    int32_t per = (int32_t)(blockDim.x) / half > 0 ? (int32_t)(blockDim.x) / half : 1;
    int32_t h_lo = (int32_t)blockIdx.y * per;
    int32_t h_hi = h_lo + per < heads ? h_lo + per : heads;
    float *sn = cs + half;
    float pos = (float)positions[t];
    float base = a.dynamic ? rope_dynamic_base(a, seq_len[seq_of(seq_start, n_seqs, t)]) : 0.0f;

    for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
        float inv = a.dynamic ? 1.0f / powf(base, (float)(2 * i) / (float)a.rot_dims)
                              : a.inv_freq[i];
        float ang = pos * inv;
        cs[i] = cosf(ang) * a.mscale;
        sn[i] = sinf(ang) * a.mscale;
    }
    __syncthreads(); /* the cos/sin table is complete before any pair reads it */

    for (int32_t p = threadIdx.x; p < (h_hi - h_lo) * half; p += blockDim.x) {
        int32_t h = h_lo + p / half, i = p % half;
        T *v = h < n_heads ? q + ((int64_t)t * n_heads + h) * a.head_dim
                           : k + ((int64_t)t * n_kv_heads + (h - n_heads)) * a.head_dim;
        int32_t i0 = a.neox ? i : 2 * i, i1 = a.neox ? i + half : 2 * i + 1;
        float x0 = ld(v + i0), x1 = ld(v + i1);
        put(v + i0, x0 * cs[i] - x1 * sn[i]);
        put(v + i1, x1 * cs[i] + x0 * sn[i]);
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
    /* one thread per rotated pair: a block takes as many heads as fit */
    int32_t half = a->rot_dims / 2, heads = n_heads + (k ? n_kv_heads : 0);
    int32_t per = OPS_ROPE_THREADS / half > 0 ? OPS_ROPE_THREADS / half : 1;
    dim3 grid((unsigned)n, (unsigned)((heads + per - 1) / per));

    KILN_CUDA_CHECK(pdl_launch(rope_kernel<T>, grid, dim3(OPS_ROPE_THREADS), smem, stream,
                               (T *)q, (T *)k, positions, seq_start, seq_len, n_seqs, n_heads,
                               n_kv_heads, *a));
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

template <typename T>
static __global__ void glu_kernel(const T *gate, /* (n) */
                                  const T *up,   /* (n) */
                                  int64_t n, int act,
                                  T *y)          /* (n) */
{
    pdl_trigger(); /* the down projection may start its weight reads */
    pdl_wait();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        put(y + i, act_apply(act, ld(gate + i)) * ld(up + i));
}

template <typename T>
static kiln_status glu_launch(const void *gate, const void *up, int64_t n, bk_act act, void *y,
                              cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK(pdl_launch(glu_kernel<T>, dim3(ew_blocks(n)), dim3(OPS_EW_THREADS), 0,
                               stream, (const T *)gate, (const T *)up, n, (int)act, (T *)y));
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
static __global__ void act_kernel(T *x, /* (n) */
                                  int64_t n, int act)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        put(x + i, act_apply(act, ld(x + i)));
}

template <typename T>
static kiln_status act_launch(void *x, int64_t n, bk_act act, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    act_kernel<T><<<ew_blocks(n), OPS_EW_THREADS, 0, stream>>>((T *)x, n, (int)act);
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
static __global__ void softcap_kernel(T *x, /* (n) */
                                      int64_t n, float cap)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        put(x + i, tanhf(ld(x + i) / cap) * cap);
}

template <typename T>
static kiln_status softcap_launch(void *x, int64_t n, float cap, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    softcap_kernel<T><<<ew_blocks(n), OPS_EW_THREADS, 0, stream>>>((T *)x, n, cap);
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

template <typename T>
static __global__ void split3_kernel(const T *x,  /* (n, w0 + w1 + w2) */
                                     int64_t n, int64_t w0, int64_t w1, int64_t w2,
                                     T *y0, T *y1, T *y2)
{
    const int64_t w = w0 + w1 + w2, total = n * w;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / w, c = i % w;
        if (c < w0)
            y0[t * w0 + c] = x[i];
        else if (c < w0 + w1)
            y1[t * w1 + c - w0] = x[i];
        else
            y2[t * w2 + c - w0 - w1] = x[i];
    }
}

template <typename T>
static kiln_status split3_launch(const void *x, int64_t n, int64_t w0, int64_t w1, int64_t w2,
                                 void *y0, void *y1, void *y2, cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    split3_kernel<T><<<ew_blocks(n * (w0 + w1 + w2)), OPS_EW_THREADS, 0, stream>>>(
        (const T *)x, n, w0, w1, w2, (T *)y0, (T *)y1, (T *)y2);
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

/* Column i pooled over rows [r0, r1) of x (r0 < r1). */
template <typename T>
static __device__ float pool_column(const T *x, int64_t d, int32_t r0, int32_t r1, int mode,
                                    int64_t i)
{
    float acc;

    switch (mode) {
    case BK_POOL_CLS:
        return ld(x + (int64_t)r0 * d + i);
    case BK_POOL_LAST:
        return ld(x + (int64_t)(r1 - 1) * d + i);
    case BK_POOL_MAX:
        acc = -INFINITY;
        for (int32_t r = r0; r < r1; r++)
            acc = fmaxf(acc, ld(x + (int64_t)r * d + i));
        return acc;
    default: /* BK_POOL_MEAN */
        acc = 0.0f;
        for (int32_t r = r0; r < r1; r++)
            acc += ld(x + (int64_t)r * d + i);
        return acc / (float)(r1 - r0);
    }
}

template <typename T>
static __global__ void pool_kernel(const T *x,               /* (n_tokens, d) */
                                   int64_t d,
                                   const int32_t *seq_start, /* (n_seqs + 1)  */
                                   int mode, bool normalize,
                                   T *y)                     /* (n_seqs, d)   */
{
    __shared__ float sh[32];
    int32_t r0 = seq_start[blockIdx.x], r1 = seq_start[blockIdx.x + 1];
    T *yr = y + (int64_t)blockIdx.x * d;
    float ss = 0.0f, scale = 1.0f;

    if (r1 <= r0) {
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
            put(yr + i, 0.0f);
        return;
    }
    /* With normalize, a first pass takes the norm; the second recomputes
     * each value (the same operations, so the same bits) and scales it. */
    if (normalize) {
        for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
            float v = pool_column(x, d, r0, r1, mode, i);
            ss += v * v;
        }
        float norm = sqrtf(block_sum(ss, sh));
        scale = 1.0f / (norm < 1e-12f ? 1e-12f : norm);
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float v = pool_column(x, d, r0, r1, mode, i);
        put(yr + i, normalize ? v * scale : v);
    }
}

template <typename T>
static kiln_status pool_launch(const void *x, int64_t d, const int32_t *seq_start,
                               int32_t n_seqs, bk_pool mode, bool normalize, void *y,
                               cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    pool_kernel<T><<<(unsigned)n_seqs, OPS_POOL_THREADS, 0, stream>>>(
        (const T *)x, d, seq_start, (int)mode, normalize, (T *)y);
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

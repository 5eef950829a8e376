/*
 * sample.cu - token choice on the device.  Contract: sample.h.
 *
 * argmax: blocks of AMX_CHUNK elements of a row, so a row of a 128k-token
 * vocabulary is read by 32 multiprocessors at once; each thread keeps its
 * best (value, index), a shuffle tree and shared memory pick the block's,
 * and a 64-bit atomicMax over (key, ~index) the row's.
 *
 * sample: the host sampler's steps (sampler.h) on one row per cluster of
 * CL blocks of SMP_THREADS threads (sm_90 thread block clusters; CL = 1
 * before sm_90 and when the batch alone fills the GPU), with nothing
 * sorted.  Block b of a cluster owns the b-th contiguous part of the row;
 * every reduction below is first the block's, then the cluster's: each
 * block puts its partial in its shared memory, the cluster synchronises,
 * and every block reads all the partials through distributed shared
 * memory and combines them in rank order, so all blocks reach the same
 * choice and no choice depends on CL (a draw is the same token at every
 * CL, bit for bit).  Partials alternate between two slots, one cluster
 * barrier per reduction: a slot is written again only after the next
 * barrier, which every reader of it has passed.  Row values are recomputed
 * in every pass from the logits (widened to f32, penalised from the row's
 * counts, times 1/temperature, with the same float operations as the host,
 * so the values are the host's bit for bit); the row is read from L2.
 *
 *   A  max m and argmax of the values; a greedy row (temperature <= 0,
 *      top_k == 1) or a row whose max is not finite ends here.
 *   B  the candidates: value >= m + log(min_p), finite from below; their
 *      count and mass.  Mass is exp(value - m) in fixed point (SMP_ONE is
 *      1.0), so every sum is an exact integer sum, the same in any order.
 *   top_k, top_p and the draw are each one "select": the element at which
 *      the inclusive running weight, in rank order (larger value first,
 *      lower id first among equals, as the host's), first exceeds t.  The
 *      host draws from a kept set that neither top_k nor top_p ranked in
 *      id order, and so does the draw here (no radix passes then).
 *      top_k: weight 1, t = k - 1; top_p: weight mass, t = ceil(top_p *
 *      Z) - 1 (the host keeps tokens until the kept mass reaches top_p *
 *      Z); the draw: weight mass, t = floor(u * Z) (the host takes the
 *      first token whose running probability exceeds u).  A selected
 *      (key, id) cuts the candidates to those ranked at or before it.
 *
 * A select is a radix select over an order-preserving 32-bit key of the
 * value: four passes of 8-bit digits, from the top, each building a
 * histogram of weight per digit (in SMP_GROUPS copies in shared memory, so
 * atomics of different warps seldom meet) over the candidates that share
 * the digits chosen so far; one warp walks the 256 bins from the highest.
 * Ties of the final key are then resolved in id order: every warp owns a
 * contiguous segment of its block's part (lanes read consecutive
 * elements), so a scan over the blocks' sums, then over the chosen block's
 * warps' sums, and a walk of one warp's segment finds the id.
 *
 * The fixed-point masses use the fast exponential (relative error ~2^-21)
 * where the host uses exp in double: the kept set and the draw can differ
 * from the host's only where two cumulative masses are that close.
 */
#include "backend/cuda/sample.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"

#include <cooperative_groups.h>
#include <math.h>

namespace cg = cooperative_groups;

#define SMP_THREADS 1024
#define SMP_WARPS (SMP_THREADS / 32)
#define SMP_GROUPS 16                     /* histogram copies, 2 warps each  */
#define SMP_BINS 256
#define SMP_ONE 1099511627776.0f          /* 2^40: fixed-point unit of mass  */
#define SMP_FULL 0xffffffffu
#define SMP_VEC 8                         /* elements of a row per load      */
#define AMX_THREADS 256
#define AMX_CHUNK 4096                    /* elements of a row per argmax block */

typedef unsigned long long smp_u64;

/* ==== argmax ================================================================ */

/* (v, i) beats (bv, bi): larger, or equal with a lower index; NaN never wins. */
static __device__ __forceinline__ bool argmax_better(float v, int32_t i, float bv, int32_t bi)
{
    return v > bv || (v == bv && i < bi);
}

/* The best (v, i) of the warp, in every lane. */
static __device__ __forceinline__ void argmax_warp(float *bv, int32_t *bi)
{
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(SMP_FULL, *bv, o);
        int32_t i = __shfl_xor_sync(SMP_FULL, *bi, o);
        if (argmax_better(v, i, *bv, *bi))
            *bv = v, *bi = i;
    }
}

/* The block's best (v, i), in every thread; sv, si: 32 entries of shared
 * memory, free again on return. */
static __device__ void argmax_block(float *bv, int32_t *bi, float *sv, int32_t *si)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    argmax_warp(bv, bi);
    if (lane == 0)
        sv[warp] = *bv, si[warp] = *bi;
    __syncthreads(); /* every warp's best is in shared memory */
    *bv = lane < (int)(blockDim.x >> 5) ? sv[lane] : -INFINITY;
    *bi = lane < (int)(blockDim.x >> 5) ? si[lane] : INT32_MAX;
    argmax_warp(bv, bi);
    __syncthreads(); /* everyone has read sv, si */
}

/* Order-preserving key: a larger value has a larger key; -0 is +0. */
static __device__ __forceinline__ uint32_t smp_key(float x)
{
    uint32_t u = __float_as_uint(x + 0.0f);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* Grid (chunks, rows), AMX_THREADS threads: block (c, r) finds the best of
 * chunk c of row r and folds it into best[r] with a 64-bit atomicMax of
 * (key, ~index), so equal values keep the lowest index; the last block of
 * the row writes ids[r] and leaves best[r] and done[r] zero again. */
template <typename T>
static __global__ void __launch_bounds__(AMX_THREADS)
    argmax_kernel(const T *x,              /* (rows, cols)               */
                  int64_t cols,
                  smp_u64 *best,           /* (rows) zero between calls  */
                  unsigned *done,          /* (rows) zero between calls  */
                  int32_t *ids)            /* (rows)                     */
{
    __shared__ float sv[32];
    __shared__ int32_t si[32];
    const int64_t r = blockIdx.y, lo = (int64_t)blockIdx.x * AMX_CHUNK;
    const int64_t hi = lo + AMX_CHUNK < cols ? lo + AMX_CHUNK : cols;
    const T *row = x + r * cols;
    float bv = -INFINITY;
    int32_t bi = INT32_MAX;

#pragma unroll 4
    for (int64_t c = lo + threadIdx.x; c < hi; c += AMX_THREADS) {
        float v = ld(row + c);
        if (argmax_better(v, (int32_t)c, bv, bi))
            bv = v, bi = (int32_t)c;
    }
    argmax_block(&bv, &bi, sv, si);
    if (threadIdx.x == 0) {
        if (bi != INT32_MAX)
            atomicMax(best + r, (smp_u64)smp_key(bv) << 32 | (smp_u64)(~(uint32_t)bi));
        __threadfence(); /* the max is in L2 before this block counts as done */
        if (atomicAdd(done + r, 1u) == gridDim.x - 1) {
            smp_u64 v = atomicExch(best + r, 0ull);
            done[r] = 0;
            /* no index: every value NaN, 0 as the host sampler */
            ids[r] = v ? (int32_t)~(uint32_t)v : 0;
        }
    }
}

template <typename T>
static kiln_status argmax_launch(const void *x, int64_t rows, int64_t cols, smp_u64 *best,
                                 unsigned *done, int32_t *ids, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    dim3 grid((unsigned)((cols + AMX_CHUNK - 1) / AMX_CHUNK), (unsigned)rows);

    argmax_kernel<T><<<grid, AMX_THREADS, 0, stream>>>((const T *)x, cols, best, done, ids);
    KILN_CUDA_LAUNCH_CHECK("argmax", stream);
err:
    return st;
}

extern "C" kiln_status cusmp_argmax(kiln_dtype dt, const void *x, int64_t rows, int64_t cols,
                                    void *ws, int32_t *ids, cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0)
        return KILN_OK;
    smp_u64 *best = (smp_u64 *)ws;
    unsigned *done = (unsigned *)(best + rows);
    return ELEM_DISPATCH("argmax", dt, argmax_launch, x, rows, cols, best, done, ids, stream);
}

/* ==== sample ================================================================ */

/* One row's state, the same in every thread of its block.  The row is
 * read in groups of SMP_VEC consecutive elements (one 16-byte load when
 * the row allows it), so each load instruction of a warp brings 512 bytes
 * and a pass is not bound by the latency of one 2-byte load per thread. */
template <typename T> struct smp_row {
    const T *x;              /* (cols) logits                                 */
    const uint16_t *cnt;     /* (cols) penalty counts; NULL: no penalties     */
    int64_t cols;
    int64_t groups;          /* ceil(cols / SMP_VEC)                          */
    int64_t g_lo, g_hi;      /* the groups of this block's part of the row    */
    int64_t seg;             /* groups per warp segment (a multiple of 32)    */
    bool vec;                /* 16-byte loads: x aligned, cols % SMP_VEC == 0 */
    float inv_t, rep, pres, freq;
    float m, thr;            /* max value; min_p threshold                    */
    uint32_t k1, k2;         /* cuts: keep key > k or (key == k, id <= i)     */
    int32_t i1, i2;
};

struct smp_shared {
    smp_u64 hist[SMP_GROUPS * SMP_BINS];
    smp_u64 tot[2][SMP_BINS];  /* the block's weight per digit (two slots)    */
    smp_u64 gtot[SMP_BINS];    /* ... the cluster's                            */
    smp_u64 part[SMP_WARPS];
    smp_u64 t;
    smp_u64 csum[2];           /* the block's partial of a cluster sum         */
    float sv[32];
    int32_t si[32];
    float cbv[2];              /* the block's best (value, id) for the cluster */
    int32_t cbi[2];
    int32_t idc[2];            /* the chosen id, in the block that found it    */
    int32_t bin, wsel, id;
};

/* ---- the cluster that shares a row -------------------------------------------- */

/* Barrier of the row's CL blocks, with their shared-memory writes made
 * visible to each other (a block barrier at CL = 1). */
template <int CL> static __device__ __forceinline__ void smp_sync()
{
    if (CL == 1) {
        __syncthreads();
        return;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::this_cluster().sync();
#else
    __trap(); /* clusters are launched only for code built for sm_90 */
#endif
}

/* p (this block's shared memory) as the same variable of block `rank`. */
template <int CL, typename P> static __device__ __forceinline__ P smp_peer(P *p, int rank)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (CL > 1)
        return *cg::this_cluster().map_shared_rank(p, rank);
#endif
    (void)rank;
    return *p;
}

/* The cluster's sum of the blocks' s (each block's s the same in all its
 * threads), in every thread; par: the slot parity, advanced. */
template <int CL>
static __device__ __forceinline__ smp_u64 smp_csum(smp_u64 s, smp_shared &sh, int &par)
{
    if (CL == 1)
        return s;
    if (threadIdx.x == 0)
        sh.csum[par] = s;
    smp_sync<CL>(); /* every block's partial is in place */
    smp_u64 t = 0;
    for (int b = 0; b < CL; b++)
        t += smp_peer<CL>(&sh.csum[par], b);
    par ^= 1;
    return t;
}

/* The cluster's best (v, i) (argmax_better), in every thread. */
template <int CL>
static __device__ void smp_cargmax(float *bv, int32_t *bi, smp_shared &sh, int &par)
{
    argmax_block(bv, bi, sh.sv, sh.si);
    if (CL == 1)
        return;
    if (threadIdx.x == 0)
        sh.cbv[par] = *bv, sh.cbi[par] = *bi;
    smp_sync<CL>(); /* every block's best is in place */
    float v = -INFINITY;
    int32_t i = INT32_MAX;
    for (int b = 0; b < CL; b++) {
        float pv = smp_peer<CL>(&sh.cbv[par], b);
        int32_t pi = smp_peer<CL>(&sh.cbi[par], b);
        if (argmax_better(pv, pi, v, i))
            v = pv, i = pi;
    }
    *bv = v, *bi = i;
    par ^= 1;
}

/* Element i's value from its logit x: the host's penalties (sampler.c
 * smp_penalize), then the temperature, with the host's rounding (no fused
 * multiply-adds). */
template <typename T>
static __device__ __forceinline__ float smp_finish(const smp_row<T> &r, int64_t i, float x)
{
    if (r.cnt) {
        uint32_t n = r.cnt[i];
        if (n) {
            if (r.rep != 1.0f)
                x = x > 0.0f ? __fdiv_rn(x, r.rep) : __fmul_rn(x, r.rep);
            if (n & BK_SAMPLE_COUNT_MAX)
                x = __fsub_rn(x, __fadd_rn(__fmul_rn(r.freq, (float)(n & BK_SAMPLE_COUNT_MAX)),
                                           r.pres));
        }
    }
    return __fmul_rn(x, r.inv_t);
}

/* The values of group g (elements SMP_VEC g + j); NaN past the row's end,
 * which is never a candidate and never the argmax. */
template <typename T>
static __device__ __forceinline__ void smp_load(const smp_row<T> &r, int64_t g, float v[SMP_VEC])
{
    const int64_t i0 = g * SMP_VEC;
    if (r.vec) {
        unpack8(__ldg((const uint4 *)(r.x + i0)), (const T *)0, v);
    } else {
#pragma unroll
        for (int j = 0; j < SMP_VEC; j++)
            v[j] = i0 + j < r.cols ? ld(r.x + i0 + j) : __int_as_float(0x7fc00000);
    }
#pragma unroll
    for (int j = 0; j < SMP_VEC; j++)
        if (i0 + j < r.cols)
            v[j] = smp_finish(r, i0 + j, v[j]);
}

/* x (key `key`, id i) is a candidate: at or above min_p's threshold, above
 * -inf (NaN never), and inside both cuts. */
template <typename T>
static __device__ __forceinline__ bool smp_in(const smp_row<T> &r, float x, uint32_t key,
                                              int32_t i)
{
    return x >= r.thr && x > -INFINITY && (key > r.k1 || (key == r.k1 && i <= r.i1)) &&
           (key > r.k2 || (key == r.k2 && i <= r.i2));
}

/* Weight of a candidate: 1, or its mass exp(x - m) in units of 2^-40. */
template <typename T>
static __device__ __forceinline__ smp_u64 smp_weight(const smp_row<T> &r, float x, bool mass)
{
    return mass ? (smp_u64)__float2ull_rz(__expf(x - r.m) * SMP_ONE) : 1ull;
}

static __device__ __forceinline__ smp_u64 smp_warp_sum(smp_u64 v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(SMP_FULL, v, o);
    return v;
}

/* Inclusive scan over the lanes of the warp. */
static __device__ __forceinline__ smp_u64 smp_warp_scan(smp_u64 v)
{
    const int lane = threadIdx.x & 31;
    for (int o = 1; o < 32; o <<= 1) {
        smp_u64 n = __shfl_up_sync(SMP_FULL, v, o);
        if (lane >= o)
            v += n;
    }
    return v;
}

/* Sum over the row of the candidates' weights, in every thread. */
template <typename T, int CL>
static __device__ smp_u64 smp_total(const smp_row<T> &r, bool mass, smp_shared &sh, int &par)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    smp_u64 s = 0;
    for (int64_t g = r.g_lo + threadIdx.x; g < r.g_hi; g += blockDim.x) {
        float v[SMP_VEC];
        smp_load(r, g, v);
#pragma unroll
        for (int j = 0; j < SMP_VEC; j++)
            if (smp_in(r, v[j], smp_key(v[j]), (int32_t)(g * SMP_VEC + j)))
                s += smp_weight(r, v[j], mass);
    }
    s = smp_warp_sum(s);
    if (lane == 0)
        sh.part[warp] = s;
    __syncthreads(); /* every warp's sum is in part */
    s = smp_warp_sum(lane < SMP_WARPS ? sh.part[lane] : 0);
    __syncthreads(); /* everyone has read part */
    return smp_csum<CL>(s, sh, par);
}

/* The candidate at which the running weight in rank order (by_id: in id
 * order) first exceeds t (t below the candidates' total): its key into
 * *key, its id returned. */
template <typename T, int CL>
static __device__ int32_t smp_select(const smp_row<T> &r, bool mass, bool by_id, smp_u64 t,
                                     smp_shared &sh, int &par, uint32_t *key)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int rank = CL > 1 ? (int)blockIdx.x : 0;
    const int64_t lo = r.g_lo + (int64_t)warp * r.seg < r.g_hi ? r.g_lo + (int64_t)warp * r.seg
                                                               : r.g_hi;
    const int64_t hi = lo + r.seg < r.g_hi ? lo + r.seg : r.g_hi;
    uint32_t prefix = 0, mask = 0;

    for (int shift = 24; shift >= 0 && !by_id; shift -= 8) {
        for (int b = threadIdx.x; b < SMP_GROUPS * SMP_BINS; b += blockDim.x)
            sh.hist[b] = 0;
        __syncthreads(); /* the histograms are clear */
        smp_u64 *h = sh.hist + (warp % SMP_GROUPS) * SMP_BINS;
        for (int64_t g = lo + lane; g < hi; g += 32) {
            float v[SMP_VEC];
            smp_load(r, g, v);
#pragma unroll
            for (int j = 0; j < SMP_VEC; j++) {
                uint32_t k = smp_key(v[j]);
                if ((k & mask) == prefix && smp_in(r, v[j], k, (int32_t)(g * SMP_VEC + j)))
                    atomicAdd(h + ((k >> shift) & 0xffu), smp_weight(r, v[j], mass));
            }
        }
        __syncthreads(); /* every histogram copy is complete */
        if (threadIdx.x < SMP_BINS) {
            smp_u64 s = 0;
            for (int g = 0; g < SMP_GROUPS; g++)
                s += sh.hist[g * SMP_BINS + threadIdx.x];
            sh.tot[par][threadIdx.x] = s;
        }
        smp_sync<CL>(); /* every block's tot holds its weight per digit */
        if (threadIdx.x < SMP_BINS) {
            smp_u64 s = 0;
            for (int b = 0; b < CL; b++)
                s += smp_peer<CL>(&sh.tot[par][threadIdx.x], b);
            sh.gtot[threadIdx.x] = s;
        }
        par ^= 1;
        __syncthreads(); /* gtot holds the row's weight per digit */
        if (warp == 0) {
            /* lane l holds digits 255 - 8l - j, j = 0..7: the highest first */
            smp_u64 v[8], own = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                v[j] = sh.gtot[255 - 8 * lane - j];
                own += v[j];
            }
            smp_u64 inc = smp_warp_scan(own), exc = inc - own;
            bool hit = exc <= t && t < inc;
            unsigned any = __ballot_sync(SMP_FULL, hit);
            if (hit) {
                smp_u64 c = exc;
                int j = 0;
                while (j < 7 && t >= c + v[j])
                    c += v[j++];
                sh.bin = 255 - 8 * lane - j;
                sh.t = t - c;
            } else if (!any && lane == 0) {
                /* unreachable when t is below the total: take the top digit
                 * that has weight, so the result is still a candidate */
                int b = 255;
                while (b > 0 && !sh.gtot[b])
                    b--;
                sh.bin = b;
                sh.t = 0;
            }
        }
        __syncthreads(); /* bin and t are chosen */
        prefix |= (uint32_t)sh.bin << shift;
        mask |= 0xffu << shift;
        t = sh.t;
    }

    /* ties of the key (by_id: every candidate): the blocks' weights in id
     * order, then the chosen block's warps', then one warp's walk */
    smp_u64 s = 0;
    for (int64_t g = lo + lane; g < hi; g += 32) {
        float v[SMP_VEC];
        smp_load(r, g, v);
#pragma unroll
        for (int j = 0; j < SMP_VEC; j++) {
            uint32_t k = smp_key(v[j]);
            if ((by_id || k == prefix) && smp_in(r, v[j], k, (int32_t)(g * SMP_VEC + j)))
                s += smp_weight(r, v[j], mass);
        }
    }
    s = smp_warp_sum(s);
    if (lane == 0)
        sh.part[warp] = s;
    __syncthreads(); /* every warp's weight of the key is in part */
    int bsel = 0;
    if (CL > 1) {
        /* the block in which the running weight crosses t */
        smp_u64 own = smp_warp_sum(lane < SMP_WARPS ? sh.part[lane] : 0), c = 0;
        if (threadIdx.x == 0)
            sh.csum[par] = own;
        smp_sync<CL>(); /* every block's weight of the key is in place */
        bsel = -1;
        for (int b = 0; b < CL && bsel < 0; b++) {
            smp_u64 w = smp_peer<CL>(&sh.csum[par], b);
            if (t < c + w)
                bsel = b;
            else
                c += w;
        }
        par ^= 1;
        if (bsel < 0) /* unreachable with consistent totals: the fallback below */
            bsel = CL;
        else
            t -= c;
    }
    if (threadIdx.x == 0)
        sh.id = -1;
    __syncthreads(); /* id is clear */
    if (warp == 0 && rank == bsel) {
        smp_u64 own = sh.part[lane], inc = smp_warp_scan(own), exc = inc - own;
        bool hit = exc <= t && t < inc;
        unsigned any = __ballot_sync(SMP_FULL, hit);
        int w = any ? __ffs(any) - 1 : 0;
        if (lane == w) {
            sh.wsel = any ? w : -1;
            sh.t = any ? t - exc : 0;
        }
    } else if (threadIdx.x == 0) {
        sh.wsel = -1;
    }
    __syncthreads(); /* wsel and t are chosen */
    if (warp == sh.wsel) {
        smp_u64 base = 0;
        t = sh.t;
        for (int64_t gb = lo; gb < hi; gb += 32) {
            const int64_t g = gb + lane;
            smp_u64 w[SMP_VEC], own = 0;
            float v[SMP_VEC];
            if (g < hi)
                smp_load(r, g, v);
#pragma unroll
            for (int j = 0; j < SMP_VEC; j++) {
                w[j] = 0;
                if (g < hi) {
                    uint32_t k = smp_key(v[j]);
                    if ((by_id || k == prefix) && smp_in(r, v[j], k, (int32_t)(g * SMP_VEC + j)))
                        w[j] = smp_weight(r, v[j], mass);
                }
                own += w[j];
            }
            smp_u64 inc = base + smp_warp_scan(own);
            unsigned hit = __ballot_sync(SMP_FULL, own && inc > t);
            if (hit) {
                if (lane == __ffs(hit) - 1) {
                    /* the crossing is inside this lane's group */
                    smp_u64 c = inc - own;
                    int j = 0;
                    while (j < SMP_VEC - 1 && !(w[j] && c + w[j] > t))
                        c += w[j++];
                    sh.id = (int32_t)(g * SMP_VEC + j);
                }
                break;
            }
            base = __shfl_sync(SMP_FULL, inc, 31);
        }
    }
    __syncthreads(); /* id is chosen, in block bsel */
    int32_t id = sh.id;
    if (CL > 1) {
        if (threadIdx.x == 0)
            sh.idc[par] = id;
        smp_sync<CL>(); /* block bsel's id is in place */
        id = bsel < CL ? smp_peer<CL>(&sh.idc[par], bsel) : -1;
        par ^= 1;
    }
    if (id < 0) {
        /* unreachable with consistent totals: the first candidate with the key */
        id = INT32_MAX;
        for (int64_t g = r.g_lo + threadIdx.x; g < r.g_hi; g += blockDim.x) {
            float v[SMP_VEC];
            smp_load(r, g, v);
            for (int j = 0; j < SMP_VEC; j++) {
                uint32_t k = smp_key(v[j]);
                int32_t i = (int32_t)(g * SMP_VEC + j);
                if ((by_id || k == prefix) && smp_in(r, v[j], k, i) && i < id)
                    id = i;
            }
        }
        float bv = 0.0f;
        smp_cargmax<CL>(&bv, &id, sh, par); /* equal values: the lowest id */
    }
    *key = prefix;
    return id;
}

/* Grid (CL, rows) in clusters of (CL, 1, 1), SMP_THREADS threads: ids[r]
 * = row r's draw under p[r]. */
template <typename T, int CL>
static __global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(const T *x,                /* (rows, cols)           */
                  int64_t cols,
                  const bk_sample_row *p,    /* (rows)                 */
                  uint16_t *counts,          /* (slots, cols) or NULL  */
                  int32_t *ids)              /* (rows)                 */
{
    __shared__ smp_shared sh;
    const int64_t row = blockIdx.y;
    const int rank = CL > 1 ? (int)blockIdx.x : 0;
    const bk_sample_row pr = p[row];
    int par = 0;
    smp_row<T> r;
    bool pen = pr.repetition_penalty != 1.0f || pr.presence_penalty != 0.0f ||
               pr.frequency_penalty != 0.0f;
    bool greedy = !(pr.temperature > 0.0f) || pr.top_k == 1;
    r.x = x + row * cols;
    r.cnt = counts && pr.slot >= 0 && pen ? counts + (int64_t)pr.slot * cols : NULL;
    r.cols = cols;
    r.groups = (cols + SMP_VEC - 1) / SMP_VEC;
    {
        const int64_t part = (r.groups + CL - 1) / CL;
        r.g_lo = (int64_t)rank * part < r.groups ? (int64_t)rank * part : r.groups;
        r.g_hi = r.g_lo + part < r.groups ? r.g_lo + part : r.groups;
    }
    r.seg = ((r.g_hi - r.g_lo + SMP_WARPS - 1) / SMP_WARPS + 31) / 32 * 32;
    r.vec = cols % SMP_VEC == 0 && ((uintptr_t)r.x & 15) == 0;
    r.inv_t = greedy ? 1.0f : __frcp_rn(pr.temperature);
    r.rep = pr.repetition_penalty;
    r.pres = pr.presence_penalty;
    r.freq = pr.frequency_penalty;
    r.m = 0.0f;
    r.thr = -INFINITY;
    r.k1 = r.k2 = 0;
    r.i1 = r.i2 = INT32_MAX;

    /* A: max and argmax of the values */
    float bv = -INFINITY;
    int32_t bi = INT32_MAX;
    for (int64_t g = r.g_lo + threadIdx.x; g < r.g_hi; g += blockDim.x) {
        float v[SMP_VEC];
        smp_load(r, g, v);
#pragma unroll
        for (int j = 0; j < SMP_VEC; j++)
            if (argmax_better(v[j], (int32_t)(g * SMP_VEC + j), bv, bi))
                bv = v[j], bi = (int32_t)(g * SMP_VEC + j);
    }
    smp_cargmax<CL>(&bv, &bi, sh, par);
    int32_t id = bi == INT32_MAX ? 0 : bi;

    if (!greedy && isfinite(bv)) {
        r.m = bv;
        r.thr = pr.min_p > 0.0f ? bv + logf(pr.min_p) : -INFINITY;
        /* B: candidates; then top_k, top_p, the draw */
        smp_u64 cnt = smp_total<T, CL>(r, false, sh, par);
        smp_u64 z = smp_total<T, CL>(r, true, sh, par);
        /* the host draws in rank order once top_k or top_p has ranked the
         * kept set, else in id order */
        bool ranked = false;
        if (pr.top_k > 0 && (smp_u64)pr.top_k < cnt) {
            r.i1 = smp_select<T, CL>(r, false, false, (smp_u64)pr.top_k - 1, sh, par, &r.k1);
            z = smp_total<T, CL>(r, true, sh, par);
            ranked = true;
        }
        if (pr.top_p < 1.0f) {
            double need = ceil((double)pr.top_p * (double)z);
            smp_u64 t = need >= (double)z ? z - 1 : need >= 1.0 ? (smp_u64)need - 1 : 0;
            r.i2 = smp_select<T, CL>(r, true, false, t, sh, par, &r.k2);
            z = smp_total<T, CL>(r, true, sh, par);
            ranked = true;
        }
        double u = ((double)pr.u_hi * 4294967296.0 + (double)pr.u_lo) *
                   (1.0 / 9007199254740992.0);
        double draw = floor(u * (double)z);
        smp_u64 t = draw >= (double)z ? z - 1 : (smp_u64)draw;
        uint32_t k;
        id = smp_select<T, CL>(r, true, !ranked, t, sh, par, &k);
    }
    if (rank == 0 && threadIdx.x == 0) {
        ids[row] = id;
        if (counts && pr.slot >= 0) {
            uint16_t *c = counts + (int64_t)pr.slot * cols + id;
            if ((*c & BK_SAMPLE_COUNT_MAX) < BK_SAMPLE_COUNT_MAX)
                *c = (uint16_t)(*c + 1);
        }
    }
    if (CL > 1)
        smp_sync<CL>(); /* no block leaves while a peer may read its shared memory */
}

/* The blocks of a row's cluster: the forced size (cusmp_set_cluster), else
 * the most, up to SMP_MAX_CLUSTER, that keep rows x CL blocks within two
 * an SM (a batch that fills the GPU takes one block a row); 1 where
 * clusters cannot run (before sm_90, or code not built for it). */
#define SMP_MAX_CLUSTER 16
static int smp_forced_cluster; /* 0: chosen per call */

extern "C" kiln_status cusmp_set_cluster(int blocks)
{
    if (blocks != 0 && blocks != 1 && blocks != 2 && blocks != 4 && blocks != 8 &&
        blocks != 16)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "sample: a cluster of %d blocks (0, 1, 2, 4, 8 or 16)", blocks);
    __atomic_store_n(&smp_forced_cluster, blocks, __ATOMIC_RELAXED);
    return KILN_OK;
}

template <typename T, int CL>
static cudaError_t smp_launch_cl(const T *x, int64_t rows, int64_t cols, const bk_sample_row *p,
                                 uint16_t *counts, int32_t *ids, cudaStream_t stream)
{
    cudaLaunchConfig_t lc = {};
    cudaLaunchAttribute at = {};

    lc.gridDim = dim3((unsigned)CL, (unsigned)rows);
    lc.blockDim = dim3(SMP_THREADS);
    lc.stream = stream;
    at.id = cudaLaunchAttributeClusterDimension;
    at.val.clusterDim.x = CL;
    at.val.clusterDim.y = 1;
    at.val.clusterDim.z = 1;
    lc.attrs = &at;
    lc.numAttrs = CL > 1 ? 1 : 0;
    return cudaLaunchKernelEx(&lc, sample_kernel<T, CL>, x, cols, p, counts, ids);
}

/* Whether clusters of CL blocks of the kernel can run here: code built for
 * sm_90 on an sm_90+ device, and (16 being past the portable size) the
 * device schedules one. */
template <typename T, int CL> static bool smp_cluster_runs(void)
{
    cudaFuncAttributes fa;
    cudaLaunchConfig_t lc = {};
    cudaLaunchAttribute at = {};
    int n = 0;

    if (cudaFuncGetAttributes(&fa, sample_kernel<T, CL>) != cudaSuccess || fa.ptxVersion < 90 ||
        fa.binaryVersion < 90)
        return (void)cudaGetLastError(), false;
    if (CL > 8 && cudaFuncSetAttribute(sample_kernel<T, CL>,
                                       cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
                      cudaSuccess)
        return (void)cudaGetLastError(), false;
    lc.gridDim = dim3((unsigned)CL, 1);
    lc.blockDim = dim3(SMP_THREADS);
    at.id = cudaLaunchAttributeClusterDimension;
    at.val.clusterDim.x = CL;
    at.val.clusterDim.y = 1;
    at.val.clusterDim.z = 1;
    lc.attrs = &at;
    lc.numAttrs = 1;
    if (cudaOccupancyMaxActiveClusters(&n, sample_kernel<T, CL>, &lc) != cudaSuccess)
        return (void)cudaGetLastError(), false;
    return n > 0;
}

/* The largest cluster of the kernel that runs on this process's device
 * (1 when none does); found once per type. */
template <typename T> static int smp_cluster_max(void)
{
    static int found; /* 0: not yet; the same value whichever thread finds it */
    int c = __atomic_load_n(&found, __ATOMIC_RELAXED);
    if (c)
        return c;
    c = smp_cluster_runs<T, 16>() ? 16 : smp_cluster_runs<T, 8>() ? 8 : 1;
    __atomic_store_n(&found, c, __ATOMIC_RELAXED);
    return c;
}

template <typename T>
static kiln_status sample_launch(const void *x, int64_t rows, int64_t cols,
                                 const bk_sample_row *p, uint16_t *counts, int32_t *ids,
                                 int sm_count, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    int cl = __atomic_load_n(&smp_forced_cluster, __ATOMIC_RELAXED), max = smp_cluster_max<T>();

    if (rows > 65535)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "sample: %lld rows (at most 65535)",
                            (long long)rows);
    if (!cl)
        for (cl = max; cl > 1 && rows * cl > 2 * (int64_t)(sm_count > 0 ? sm_count : 1); cl /= 2)
            ;
    if (cl > max)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "sample: a cluster of %d blocks; this device runs at most %d", cl,
                            max);
    const T *xt = (const T *)x;
    switch (cl) {
    case 16: KILN_CUDA_CHECK((smp_launch_cl<T, 16>(xt, rows, cols, p, counts, ids, stream))); break;
    case 8: KILN_CUDA_CHECK((smp_launch_cl<T, 8>(xt, rows, cols, p, counts, ids, stream))); break;
    case 4: KILN_CUDA_CHECK((smp_launch_cl<T, 4>(xt, rows, cols, p, counts, ids, stream))); break;
    case 2: KILN_CUDA_CHECK((smp_launch_cl<T, 2>(xt, rows, cols, p, counts, ids, stream))); break;
    default: KILN_CUDA_CHECK((smp_launch_cl<T, 1>(xt, rows, cols, p, counts, ids, stream))); break;
    }
    KILN_CUDA_LAUNCH_CHECK("sample", stream);
err:
    return st;
}

extern "C" kiln_status cusmp_sample(kiln_dtype dt, const void *x, int64_t rows, int64_t cols,
                                    const bk_sample_row *p, uint16_t *counts, int32_t *ids,
                                    int sm_count, cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("sample", dt, sample_launch, x, rows, cols, p, counts, ids, sm_count,
                         stream);
}

/* ==== penalty rows ============================================================ */

static __global__ void reset_mark_kernel(uint16_t *row, int64_t cols, const int32_t *ids,
                                         int32_t n)
{
    for (int32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int32_t id = ids[i];
        if (id >= 0 && id < cols)
            row[id] = BK_SAMPLE_PROMPT; /* every writer stores the same value */
    }
}

extern "C" kiln_status cusmp_reset(uint16_t *row, int64_t cols, const int32_t *ids, int32_t n,
                                   cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    if (cols <= 0)
        return KILN_OK;
    KILN_CUDA_CHECK(cudaMemsetAsync(row, 0, (size_t)cols * sizeof *row, stream));
    if (n > 0) {
        int blocks = (n + 255) / 256 < 1024 ? (n + 255) / 256 : 1024;
        reset_mark_kernel<<<blocks, 256, 0, stream>>>(row, cols, ids, n);
        KILN_CUDA_LAUNCH_CHECK("sample_reset", stream);
    }
err:
    return st;
}

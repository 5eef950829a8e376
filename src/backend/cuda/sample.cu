/*
 * sample.cu - token choice on the device.  Contract: sample.h.
 *
 * argmax: blocks of AMX_CHUNK elements of a row, so a row of a 128k-token
 * vocabulary is read by 32 multiprocessors at once; each thread keeps its
 * best (value, index), a shuffle tree and shared memory pick the block's,
 * and a 64-bit atomicMax over (key, ~index) the row's.
 *
 * sample: the host sampler's steps (sampler.h) on one row per block of
 * SMP_THREADS threads, with nothing sorted.  Row values are recomputed in
 * every pass from the logits (widened to f32, penalised from the row's
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
 * contiguous segment of the row (lanes read consecutive elements), so a
 * scan over the warps' sums and a walk of one warp's segment finds the id.
 *
 * The fixed-point masses use the fast exponential (relative error ~2^-21)
 * where the host uses exp in double: the kept set and the draw can differ
 * from the host's only where two cumulative masses are that close.
 */
#include "backend/cuda/sample.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"

#include <math.h>

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
    int64_t seg;             /* groups per warp segment (a multiple of 32)    */
    bool vec;                /* 16-byte loads: x aligned, cols % SMP_VEC == 0 */
    float inv_t, rep, pres, freq;
    float m, thr;            /* max value; min_p threshold                    */
    uint32_t k1, k2;         /* cuts: keep key > k or (key == k, id <= i)     */
    int32_t i1, i2;
};

struct smp_shared {
    smp_u64 hist[SMP_GROUPS * SMP_BINS];
    smp_u64 tot[SMP_BINS];
    smp_u64 part[SMP_WARPS];
    smp_u64 t;
    float sv[32];
    int32_t si[32];
    int32_t bin, wsel, id;
};

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

/* Sum over the block of the candidates' weights, in every thread. */
template <typename T>
static __device__ smp_u64 smp_total(const smp_row<T> &r, bool mass, smp_shared &sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    smp_u64 s = 0;
    for (int64_t g = threadIdx.x; g < r.groups; g += blockDim.x) {
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
    return s;
}

/* The candidate at which the running weight in rank order (by_id: in id
 * order) first exceeds t (t below the candidates' total): its key into
 * *key, its id returned. */
template <typename T>
static __device__ int32_t smp_select(const smp_row<T> &r, bool mass, bool by_id, smp_u64 t,
                                     smp_shared &sh, uint32_t *key)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t lo = (int64_t)warp * r.seg;
    const int64_t hi = lo + r.seg < r.groups ? lo + r.seg : r.groups;
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
            sh.tot[threadIdx.x] = s;
        }
        __syncthreads(); /* tot holds the weight per digit */
        if (warp == 0) {
            /* lane l holds digits 255 - 8l - j, j = 0..7: the highest first */
            smp_u64 v[8], own = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                v[j] = sh.tot[255 - 8 * lane - j];
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
                while (b > 0 && !sh.tot[b])
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

    /* ties of the key (by_id: every candidate): the warps' weights in id
     * order, then one warp's walk */
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
    if (warp == 0) {
        smp_u64 own = sh.part[lane], inc = smp_warp_scan(own), exc = inc - own;
        bool hit = exc <= t && t < inc;
        unsigned any = __ballot_sync(SMP_FULL, hit);
        int w = any ? __ffs(any) - 1 : 0;
        if (lane == w) {
            sh.wsel = any ? w : -1;
            sh.t = any ? t - exc : 0;
            sh.id = -1;
        }
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
    __syncthreads(); /* id is chosen */
    int32_t id = sh.id;
    if (id < 0) {
        /* unreachable with consistent totals: the first candidate with the key */
        id = INT32_MAX;
        for (int64_t g = threadIdx.x; g < r.groups; g += blockDim.x) {
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
        argmax_block(&bv, &id, sh.sv, sh.si); /* equal values: the lowest id */
    }
    *key = prefix;
    return id;
}

/* Grid (rows), SMP_THREADS threads: ids[r] = row r's draw under p[r]. */
template <typename T>
static __global__ void __launch_bounds__(SMP_THREADS)
    sample_kernel(const T *x,                /* (rows, cols)           */
                  int64_t cols,
                  const bk_sample_row *p,    /* (rows)                 */
                  uint16_t *counts,          /* (slots, cols) or NULL  */
                  int32_t *ids)              /* (rows)                 */
{
    __shared__ smp_shared sh;
    const bk_sample_row pr = p[blockIdx.x];
    smp_row<T> r;
    bool pen = pr.repetition_penalty != 1.0f || pr.presence_penalty != 0.0f ||
               pr.frequency_penalty != 0.0f;
    bool greedy = !(pr.temperature > 0.0f) || pr.top_k == 1;
    r.x = x + (int64_t)blockIdx.x * cols;
    r.cnt = counts && pr.slot >= 0 && pen ? counts + (int64_t)pr.slot * cols : NULL;
    r.cols = cols;
    r.groups = (cols + SMP_VEC - 1) / SMP_VEC;
    r.seg = ((r.groups + SMP_WARPS - 1) / SMP_WARPS + 31) / 32 * 32;
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
    for (int64_t g = threadIdx.x; g < r.groups; g += blockDim.x) {
        float v[SMP_VEC];
        smp_load(r, g, v);
#pragma unroll
        for (int j = 0; j < SMP_VEC; j++)
            if (argmax_better(v[j], (int32_t)(g * SMP_VEC + j), bv, bi))
                bv = v[j], bi = (int32_t)(g * SMP_VEC + j);
    }
    argmax_block(&bv, &bi, sh.sv, sh.si);
    int32_t id = bi == INT32_MAX ? 0 : bi;

    if (!greedy && isfinite(bv)) {
        r.m = bv;
        r.thr = pr.min_p > 0.0f ? bv + logf(pr.min_p) : -INFINITY;
        /* B: candidates; then top_k, top_p, the draw */
        smp_u64 cnt = smp_total(r, false, sh);
        smp_u64 z = smp_total(r, true, sh);
        /* the host draws in rank order once top_k or top_p has ranked the
         * kept set, else in id order */
        bool ranked = false;
        if (pr.top_k > 0 && (smp_u64)pr.top_k < cnt) {
            r.i1 = smp_select(r, false, false, (smp_u64)pr.top_k - 1, sh, &r.k1);
            z = smp_total(r, true, sh);
            ranked = true;
        }
        if (pr.top_p < 1.0f) {
            double need = ceil((double)pr.top_p * (double)z);
            smp_u64 t = need >= (double)z ? z - 1 : need >= 1.0 ? (smp_u64)need - 1 : 0;
            r.i2 = smp_select(r, true, false, t, sh, &r.k2);
            z = smp_total(r, true, sh);
            ranked = true;
        }
        double u = ((double)pr.u_hi * 4294967296.0 + (double)pr.u_lo) *
                   (1.0 / 9007199254740992.0);
        double draw = floor(u * (double)z);
        smp_u64 t = draw >= (double)z ? z - 1 : (smp_u64)draw;
        uint32_t k;
        id = smp_select(r, true, !ranked, t, sh, &k);
    }
    if (threadIdx.x == 0) {
        ids[blockIdx.x] = id;
        if (counts && pr.slot >= 0) {
            uint16_t *c = counts + (int64_t)pr.slot * cols + id;
            if ((*c & BK_SAMPLE_COUNT_MAX) < BK_SAMPLE_COUNT_MAX)
                *c = (uint16_t)(*c + 1);
        }
    }
}

template <typename T>
static kiln_status sample_launch(const void *x, int64_t rows, int64_t cols,
                                 const bk_sample_row *p, uint16_t *counts, int32_t *ids,
                                 cudaStream_t stream)
{
    kiln_status st = KILN_OK;

    sample_kernel<T><<<(unsigned)rows, SMP_THREADS, 0, stream>>>((const T *)x, cols, p, counts,
                                                                 ids);
    KILN_CUDA_LAUNCH_CHECK("sample", stream);
err:
    return st;
}

extern "C" kiln_status cusmp_sample(kiln_dtype dt, const void *x, int64_t rows, int64_t cols,
                                    const bk_sample_row *p, uint16_t *counts, int32_t *ids,
                                    cudaStream_t stream)
{
    if (rows <= 0 || cols <= 0)
        return KILN_OK;
    return ELEM_DISPATCH("sample", dt, sample_launch, x, rows, cols, p, counts, ids, stream);
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

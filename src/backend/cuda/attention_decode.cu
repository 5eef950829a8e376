/*
 * attention_decode.cu - paged attention for decode sequences (one new
 * token), split along the context (flash-decoding), GQA-aware.
 *
 * Work split.  A CTA of 128 threads serves one sequence s, one KV head and
 * up to GMAX of the query heads that share it (group = n_heads / n_kv_heads
 * heads; groups above 8 take several CTAs), and one split z of the
 * sequence's visible keys.  Grid (n_seqs, n_kv_heads * head tiles, n_split);
 * CTAs of non-decode sequences exit at once.  Every K and V row a CTA
 * reads serves all of its query heads, so each KV byte crosses the memory
 * bus once per step.
 *
 * Per chunk of N = 8192 / head_dim keys (two shared-memory stages, filled by
 * cp.async with 16-byte copies gathered through the block table while the
 * other stage is in use):
 *   scores   TPK = 128 / N threads per key, each dotting 64 dims of K_j with
 *            the GMAX query heads (q in shared memory as f32), summed by
 *            shuffles: S[g][n] = q_g . k_n, scaled, soft-capped, base 2;
 *   softmax  warp w owns heads w and w + 4: m' = max(m, max_n S),
 *            P = 2^(S - m'), l = l 2^(m - m') + sum P, alpha = 2^(m - m');
 *   P V      thread (vec, slice) holds acc[g][8 dims] over the keys
 *            n = slice (mod SLICES): acc = acc alpha + sum_n P[g][n] v_n.
 * At the end the slices' partial sums are added in shared memory; with one
 * split the CTA writes acc / l, else it writes (acc, m, l) to the split
 * workspace and attn_decode_combine_kernel merges the splits:
 *   M = max_z m_z;  L = sum_z l_z 2^(m_z - M);  O = sum_z acc_z 2^(m_z - M) / L.
 * (Merging in the split that finishes last, with a count in the workspace,
 * was measured slower at every split count: bench/NOTES.md.)
 *
 * Rotary embedding (attn_args.rope_inv set; cuda_attention_rope): q and
 * the new token's k come from the projection unrotated.  Each CTA rotates
 * its q heads on load, as the rope kernel would (rounded to the type); the
 * CTA whose split holds the new key (position q_pos) rotates that k row,
 * puts it and the v row into its shared stage where the cache read would
 * have gone, and the first head tile's CTA stores both into the cache slot,
 * so the separate rope and cache-write kernels are not needed.
 *
 * Shared rows of K are padded by 16 * TPK bytes, so the 8 lanes of a
 * 16-byte access phase (different keys, TPK parts of a row) hit distinct
 * banks.  Softmax and accumulation are f32 throughout.
 */
#include "backend/cuda/attention.h"
#include "backend/cuda/attention_dev.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_elem.cuh"

#include <math.h>

#define DC_THREADS 128
#define DC_FULL 0xffffffffu

template <int D> struct dc_cfg {
    /* keys per chunk: 128 up to head_dim 64, then 64, 32 */
    static constexpr int N = D <= 64 ? DC_THREADS : 8192 / D;
    static constexpr int TPK = DC_THREADS / N;    /* threads per key for scores: 1, 2, 4 */
    static constexpr int STR = D + 8 * TPK;       /* shared row stride in elements       */
    static constexpr int VPR = D / 8;             /* 16-byte vectors per row             */
    static constexpr int VPT = VPR / TPK;         /* vectors per thread for scores: 8
                                                     (2, 4 at head_dim 16, 32)           */
    static constexpr int SLICES = DC_THREADS / VPR; /* key slices of the P V step        */
    /* alpha, m, l of each head, ahead of everything (16-byte multiple) */
    template <int GMAX> static constexpr __host__ __device__ size_t head_bytes()
    {
        return ((size_t)3 * GMAX * sizeof(float) + 15) / 16 * 16;
    }
    /* the loop's stages, q and scores; after the loop the same bytes hold
     * the slices' partial sums, which at small head_dim take more room */
    template <typename T, int GMAX> static constexpr size_t body_bytes()
    {
        return (size_t)4 * N * STR * sizeof(T) + (size_t)(GMAX * D + GMAX * N) * sizeof(float) >
                       (size_t)SLICES * GMAX * D * sizeof(float)
                   ? (size_t)4 * N * STR * sizeof(T) + (size_t)(GMAX * D + GMAX * N) * sizeof(float)
                   : (size_t)SLICES * GMAX * D * sizeof(float);
    }
    /* the rotation's cos/sin (f32, D) and the new key's k, v rows (T, D each) */
    template <typename T> static constexpr __host__ __device__ size_t rope_bytes()
    {
        return ((size_t)D * sizeof(float) + 2 * (size_t)D * sizeof(T) + 15) / 16 * 16;
    }
    template <typename T, int GMAX> static constexpr size_t smem_bytes()
    {
        return head_bytes<GMAX>() + rope_bytes<T>() + body_bytes<T, GMAX>();
    }
};

/* Queue the copies of keys [c0, c0 + N) into stage st; keys at or past
 * k_hi are zeros.  Key j_new (-1: none) is not read from the cache: its
 * rows kn, vn (shared memory, complete before the call) are copied in, or
 * with kn NULL its row is left for the caller to fill. */
template <typename T, int D>
static __device__ __forceinline__ void decode_load(const attn_args &a, T *K_s, T *V_s, int st,
                                                   int32_t c0, int32_t k_hi,
                                                   const int32_t *table, int32_t kvh,
                                                   int32_t j_new, const T *kn, const T *vn)
{
    constexpr int N = dc_cfg<D>::N, STR = dc_cfg<D>::STR, VPR = dc_cfg<D>::VPR;
    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;

    for (int i = threadIdx.x; i < N * VPR; i += DC_THREADS) {
        int r = i / VPR, c = i % VPR;
        int32_t j = c0 + r;
        T *kd = K_s + (st * N + r) * STR + c * 8, *vd = V_s + (st * N + r) * STR + c * 8;
        if (j == j_new) {
            if (kn) {
                *(uint4 *)kd = ((const uint4 *)kn)[c];
                *(uint4 *)vd = ((const uint4 *)vn)[c];
            }
            continue;
        }
        int64_t off = j < k_hi ? attn_key_offset(a, table, j, kvh) : -1;
        bool ok = off >= 0;
        attn_cp16(kd, ok ? kc + off + c * 8 : kc, ok);
        attn_cp16(vd, ok ? vc + off + c * 8 : vc, ok);
    }
}

static __device__ __forceinline__ float dc_f32(float x) { return x; }
template <typename T> static __device__ __forceinline__ float dc_f32(T x)
{
    return attn_to_float(x);
}
template <typename T> static __device__ __forceinline__ void dc_put(float *p, T r)
{
    *p = attn_to_float(r);
}
template <typename T> static __device__ __forceinline__ void dc_put(T *p, T r) { *p = r; }

/* Rotate pair i of one head x (f32 or T, in place) by the angles cs
 * (cos[0..half), sin[half..2 half)), the rope kernel's formulas, each
 * result rounded to T as its store rounds it; elements past rot_dims are
 * never touched. */
template <typename T, typename X>
static __device__ __forceinline__ void decode_rotate(const attn_args &a, const float *cs, X *x,
                                                     int i)
{
    const int half = a.rot_dims / 2;
    const int i0 = a.rope_neox ? i : 2 * i, i1 = a.rope_neox ? i + half : 2 * i + 1;
    float r0, r1;
    rope_turn(dc_f32(x[i0]), dc_f32(x[i1]), cs[i], cs[half + i], &r0, &r1);
    dc_put<T>(x + i0, attn_from_float<T>(r0));
    dc_put<T>(x + i1, attn_from_float<T>(r1));
}

/* Grid (n_seqs, n_kv_heads * ceil(group / GMAX), n_split), DC_THREADS
 * threads, dc_cfg<D>::smem_bytes<T, GMAX>() bytes of dynamic shared memory.
 * q, out (n_tokens, n_heads, D); caches (n_blocks, block_size, n_kv_heads, D);
 * ws as attn_split_ws when n_split > 1. */
template <typename T, int D, int GMAX>
static __global__ void __launch_bounds__(DC_THREADS)
    attn_decode_kernel(const attn_args a, const int32_t n_split, const attn_split_ws ws)
{
    constexpr int N = dc_cfg<D>::N, TPK = dc_cfg<D>::TPK, STR = dc_cfg<D>::STR;
    constexpr int VPR = dc_cfg<D>::VPR, VPT = dc_cfg<D>::VPT, SLICES = dc_cfg<D>::SLICES;
    constexpr int WHEADS = (GMAX + 3) / 4;        /* softmax heads per warp */
    extern __shared__ __align__(16) unsigned char attn_smem[];
    float *alpha_s = (float *)attn_smem;          /* (GMAX)                  */
    float *m_s = alpha_s + GMAX, *l_s = m_s + GMAX; /* (GMAX) each           */
    float *cs_s = (float *)(attn_smem + dc_cfg<D>::template head_bytes<GMAX>()); /* (D) */
    T *kn_s = (T *)(cs_s + D), *vn_s = kn_s + D;  /* (D) each: the new key's rows */
    unsigned char *body = attn_smem + dc_cfg<D>::template head_bytes<GMAX>() +
                          dc_cfg<D>::template rope_bytes<T>();
    T *K_s = (T *)body;                           /* (2, N, STR)             */
    T *V_s = K_s + 2 * N * STR;                   /* (2, N, STR)             */
    float *q_s = (float *)(V_s + 2 * N * STR);    /* (GMAX, D)               */
    float *P_s = q_s + GMAX * D;                  /* (GMAX, N) scores, weights */
    float *red_s = (float *)body;                 /* (SLICES, GMAX, D) after the loop */

    /* Before the wait on the kernel before (the q/k/v projection; with
     * separate launches the cache write): the batch arrays and the keys
     * before the new token's position, which earlier steps stored, so the
     * first chunk's copies overlap the projection's end. */
    pdl_trigger(); /* the o projection may start its weight reads */
    const int32_t s = blockIdx.x, z = blockIdx.z;
    if (a.seq_start[s + 1] - a.seq_start[s] != 1)
        return;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int32_t row = a.seq_start[s];
    const int32_t ht = (a.group + GMAX - 1) / GMAX;
    const int32_t kvh = blockIdx.y / ht;
    const int32_t h0 = kvh * a.group + (int32_t)(blockIdx.y % ht) * GMAX;
    const int32_t G = min(GMAX, (kvh + 1) * a.group - h0);

    /* This split's keys [k_lo, k_hi) of the query's visible range. */
    const int32_t q_pos = a.positions[row], kv_len = a.seq_len[s];
    const int32_t j_end = a.causal ? min(kv_len, q_pos + 1) : kv_len;
    const int32_t j_begin = a.window > 0 ? max(0, q_pos - a.window + 1) : 0;
    const int32_t len = max(0, j_end - j_begin);
    const int32_t per = ((len + n_split - 1) / n_split + N - 1) / N * N;
    const int32_t k_lo = j_begin + z * per, k_hi = min(j_end, k_lo + per);
    const int32_t *table = a.block_tables + (int64_t)s * a.max_blocks;

    /* The first chunk's copies but the new key's go out first; its row of
     * stage 0 is filled after the wait (the rotation's, or the cache's, which
     * the write before this kernel made). */
    const int32_t j_own = k_lo <= q_pos && q_pos < k_hi ? q_pos : -1;
    const int32_t j_new = a.rope_inv ? j_own : -1; /* not read from the cache */
    if (k_lo < k_hi)
        decode_load<T, D>(a, K_s, V_s, 0, k_lo, k_hi, table, kvh, j_own, (const T *)0,
                          (const T *)0);
    pdl_wait(); /* q, k, v (and with the separate write, the new key's slot) are written */
    if (!a.rope_inv && j_own >= 0 && j_own < k_lo + N) {
        const int64_t off = attn_key_offset(a, table, j_own, kvh);
        for (int c = tid; c < VPR; c += DC_THREADS) {
            const bool ok = off >= 0;
            const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
            attn_cp16(K_s + (j_own - k_lo) * STR + c * 8, ok ? kc + off + c * 8 : kc, ok);
            attn_cp16(V_s + (j_own - k_lo) * STR + c * 8, ok ? vc + off + c * 8 : vc, ok);
        }
    }
    attn_cp_commit();

    const T *q_src = (const T *)a.q + (int64_t)row * a.q_stride + h0 * D;
    for (int i = tid; i < GMAX * D; i += DC_THREADS)
        q_s[i] = i / D < G ? attn_to_float(q_src[i]) : 0.0f;
    /* The rotation (q's heads here, the new key where this split holds it)
     * runs while the copies are in flight; the new key's row of the first
     * chunk is written after it. */
    if (a.rope_inv) {
        const int half = a.rot_dims / 2;
        const int64_t slot = a.slot_mapping[row]; /* read early: used after two barriers */
        for (int i = tid; i < half; i += DC_THREADS) {
            const float ang = (float)q_pos * a.rope_inv[i];
            cs_s[i] = cosf(ang) * a.rope_mscale;
            cs_s[half + i] = sinf(ang) * a.rope_mscale;
        }
        if (j_new >= 0) {
            const T *k_src = (const T *)a.k + (int64_t)row * a.kv_stride + kvh * D;
            const T *v_src = (const T *)a.v + (int64_t)row * a.kv_stride + kvh * D;
            for (int d = tid; d < D; d += DC_THREADS) {
                kn_s[d] = k_src[d];
                vn_s[d] = v_src[d];
            }
        }
        __syncthreads(); /* cos/sin, raw q and the raw new key are in place */
        for (int p = tid; p < G * half; p += DC_THREADS)
            decode_rotate<T>(a, cs_s, q_s + (p / half) * D, p % half);
        if (j_new >= 0)
            for (int i = tid; i < half; i += DC_THREADS)
                decode_rotate<T>(a, cs_s, kn_s, i);
        __syncthreads(); /* rotated q and k are complete */
        if (j_new >= 0) {
            if (j_new < k_lo + N) /* its row of stage 0, which no copy targets */
                for (int c = tid; c < VPR; c += DC_THREADS) {
                    *(uint4 *)(K_s + (j_new - k_lo) * STR + c * 8) = ((const uint4 *)kn_s)[c];
                    *(uint4 *)(V_s + (j_new - k_lo) * STR + c * 8) = ((const uint4 *)vn_s)[c];
                }
            if (blockIdx.y % ht == 0) {
                /* one CTA per (sequence, KV head) stores the new key */
                const int64_t off = (slot * a.n_kv_heads + kvh) * D;
                for (int c = tid; c < VPR; c += DC_THREADS) {
                    ((uint4 *)((T *)a.k_cache + off))[c] = ((const uint4 *)kn_s)[c];
                    ((uint4 *)((T *)a.v_cache + off))[c] = ((const uint4 *)vn_s)[c];
                }
            }
        }
    }

    float acc[GMAX][8];
#pragma unroll
    for (int g = 0; g < GMAX; g++)
#pragma unroll
        for (int e = 0; e < 8; e++)
            acc[g][e] = 0.0f;
    float m[WHEADS], l[WHEADS];
#pragma unroll
    for (int r = 0; r < WHEADS; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const int n = tid / TPK, part = tid % TPK;    /* score step: key, part of it */
    const int vec = tid % VPR, slice = tid / VPR; /* P V step: dims, key slice   */

    int st = 0;
    for (int32_t c0 = k_lo; c0 < k_hi; c0 += N, st ^= 1) {
        if (c0 + N < k_hi)
            decode_load<T, D>(a, K_s, V_s, st ^ 1, c0 + N, k_hi, table, kvh, j_new, kn_s,
                              vn_s);
        attn_cp_commit();
        attn_cp_wait<1>();
        __syncthreads(); /* chunk c0 (and q_s) written by every thread is visible */

        /* S[g][n] = q_g . k_n */
        float dot[GMAX];
#pragma unroll
        for (int g = 0; g < GMAX; g++)
            dot[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            const int c = i * TPK + part;
            float kf[8];
            attn_unpack8<T>(*(const uint4 *)(K_s + (st * N + n) * STR + c * 8), kf);
#pragma unroll
            for (int g = 0; g < GMAX; g++) {
                const float4 *qv = (const float4 *)(q_s + g * D + c * 8);
                float4 x0 = qv[0], x1 = qv[1];
                dot[g] += x0.x * kf[0] + x0.y * kf[1] + x0.z * kf[2] + x0.w * kf[3] +
                          x1.x * kf[4] + x1.y * kf[5] + x1.z * kf[6] + x1.w * kf[7];
            }
        }
#pragma unroll
        for (int g = 0; g < GMAX; g++)
#pragma unroll
            for (int off = 1; off < TPK; off <<= 1)
                dot[g] += __shfl_xor_sync(DC_FULL, dot[g], off);
        if (part == 0)
#pragma unroll
            for (int g = 0; g < GMAX; g++)
                if (g < G)
                    P_s[g * N + n] = c0 + n < k_hi ? attn_score(a, dot[g]) : -INFINITY;
        __syncthreads(); /* every score of the chunk is in P_s */

        /* online softmax, one warp per head */
#pragma unroll
        for (int r = 0; r < WHEADS; r++) {
            const int gg = warp + 4 * r;
            if (gg >= G)
                continue;
            float mx = -INFINITY;
            for (int k = lane; k < N; k += 32)
                mx = fmaxf(mx, P_s[gg * N + k]);
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(DC_FULL, mx, off));
            const float m_new = fmaxf(m[r], mx);
            const float alpha = m_new == -INFINITY ? 1.0f : exp2f(m[r] - m_new);
            float sum = 0.0f;
            for (int k = lane; k < N; k += 32) {
                float p = m_new == -INFINITY ? 0.0f : exp2f(P_s[gg * N + k] - m_new);
                P_s[gg * N + k] = p;
                sum += p;
            }
#pragma unroll
            for (int off = 16; off > 0; off >>= 1)
                sum += __shfl_xor_sync(DC_FULL, sum, off);
            l[r] = l[r] * alpha + sum;
            m[r] = m_new;
            if (lane == 0)
                alpha_s[gg] = alpha;
        }
        __syncthreads(); /* weights and rescale factors are in shared memory */

        /* acc = acc alpha + P V_j over this thread's key slice */
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
            if (g >= G)
                continue;
            const float alpha = alpha_s[g];
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[g][e] *= alpha;
        }
#pragma unroll 4
        for (int k = slice; k < N; k += SLICES) {
            float vf[8];
            attn_unpack8<T>(*(const uint4 *)(V_s + (st * N + k) * STR + vec * 8), vf);
#pragma unroll
            for (int g = 0; g < GMAX; g++) {
                if (g >= G)
                    continue;
                const float p = P_s[g * N + k];
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[g][e] += p * vf[e];
            }
        }
        __syncthreads(); /* stage st and P_s are free for the next chunk */
    }
    attn_cp_wait<0>();

    /* Add the slices' partial sums (red_s reuses the K/V stages: every copy
     * has landed and every read is behind the loop's last barrier). */
#pragma unroll
    for (int r = 0; r < WHEADS; r++) {
        const int gg = warp + 4 * r;
        if (gg < G && lane == 0) {
            m_s[gg] = m[r];
            l_s[gg] = l[r];
        }
    }
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        if (g >= G)
            continue;
        float4 *dst = (float4 *)(red_s + (slice * GMAX + g) * D + vec * 8);
        dst[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
        dst[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
    }
    __syncthreads(); /* partial sums and m, l of every head are visible */

    for (int i = tid; i < G * D; i += DC_THREADS) {
        const int g = i / D, d = i % D;
        float o = 0.0f;
#pragma unroll
        for (int sl = 0; sl < SLICES; sl++)
            o += red_s[(sl * GMAX + g) * D + d];
        if (n_split == 1) {
            const float lg = l_s[g];
            T *out = (T *)a.out + ((int64_t)row * a.n_heads + h0 + g) * D;
            out[d] = attn_from_float<T>(lg > 0.0f ? o / lg : 0.0f);
        } else {
            const int64_t prow = ((int64_t)s * a.n_heads + h0 + g) * n_split + z;
            ws.acc[prow * D + d] = o;
            if (d == 0) {
                ws.ml[2 * prow] = m_s[g];
                ws.ml[2 * prow + 1] = l_s[g];
            }
        }
    }
}

/* Grid (n_seqs, n_heads), DC_THREADS threads: merge the n_split partials
 * of each decode (sequence, head) into out (n_tokens, n_heads, head_dim). */
template <typename T>
static __global__ void __launch_bounds__(DC_THREADS)
    attn_decode_combine_kernel(const attn_args a, const int32_t n_split, const attn_split_ws ws)
{
    pdl_trigger();
    pdl_wait();
    const int32_t s = blockIdx.x, h = blockIdx.y, D = a.head_dim;
    if (a.seq_start[s + 1] - a.seq_start[s] != 1)
        return;
    const int32_t row = a.seq_start[s];
    const int64_t prow = ((int64_t)s * a.n_heads + h) * n_split;
    const float *ml = ws.ml + 2 * prow;

    float M = -INFINITY;
    for (int32_t z = 0; z < n_split; z++)
        M = fmaxf(M, ml[2 * z]);
    float L = 0.0f;
    for (int32_t z = 0; z < n_split; z++)
        L += ml[2 * z] == -INFINITY ? 0.0f : exp2f(ml[2 * z] - M) * ml[2 * z + 1];
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;

    T *out = (T *)a.out + ((int64_t)row * a.n_heads + h) * D;
    for (int32_t d = threadIdx.x; d < D; d += DC_THREADS) {
        float o = 0.0f;
        for (int32_t z = 0; z < n_split; z++)
            if (ml[2 * z] != -INFINITY)
                o += exp2f(ml[2 * z] - M) * ws.acc[(prow + z) * D + d];
        out[d] = attn_from_float<T>(o * inv);
    }
}

template <typename T, int D, int GMAX>
static kiln_status decode_run(const attn_args *a, int32_t n_split, const attn_split_ws *ws,
                              cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    const size_t smem = dc_cfg<D>::template smem_bytes<T, GMAX>();
    const int32_t ht = (a->group + GMAX - 1) / GMAX;
    dim3 grid((unsigned)a->n_seqs, (unsigned)(a->n_kv_heads * ht), (unsigned)n_split);

    KILN_CUDA_CHECK(cudaFuncSetAttribute(attn_decode_kernel<T, D, GMAX>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    KILN_CUDA_CHECK(pdl_launch(attn_decode_kernel<T, D, GMAX>, grid, dim3(DC_THREADS), smem,
                               stream, *a, n_split, *ws));
    KILN_CUDA_LAUNCH_CHECK("attention_decode", stream);
    if (n_split > 1) {
        dim3 cgrid((unsigned)a->n_seqs, (unsigned)a->n_heads);
        KILN_CUDA_CHECK(pdl_launch(attn_decode_combine_kernel<T>, cgrid, dim3(DC_THREADS), 0,
                                   stream, *a, n_split, *ws));
        KILN_CUDA_LAUNCH_CHECK("attention_decode_combine", stream);
    }
err:
    return st;
}

template <typename T, int D>
static kiln_status decode_dispatch_group(const attn_args *a, int32_t n_split,
                                         const attn_split_ws *ws, cudaStream_t stream)
{
    if (a->group <= 1)
        return decode_run<T, D, 1>(a, n_split, ws, stream);
    if (a->group <= 2)
        return decode_run<T, D, 2>(a, n_split, ws, stream);
    if (a->group <= 4)
        return decode_run<T, D, 4>(a, n_split, ws, stream);
    return decode_run<T, D, ATTN_DECODE_GMAX>(a, n_split, ws, stream);
}

template <typename T>
static kiln_status decode_dispatch_dim(const attn_args *a, int32_t n_split,
                                       const attn_split_ws *ws, cudaStream_t stream)
{
    switch (a->head_dim) {
    case 16: return decode_dispatch_group<T, 16>(a, n_split, ws, stream);
    case 32: return decode_dispatch_group<T, 32>(a, n_split, ws, stream);
    case 64: return decode_dispatch_group<T, 64>(a, n_split, ws, stream);
    case 128: return decode_dispatch_group<T, 128>(a, n_split, ws, stream);
    case 256: return decode_dispatch_group<T, 256>(a, n_split, ws, stream);
    default:
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: head_dim %d has no decode kernel "
                            "(16, 32, 64, 128, 256)", a->head_dim);
    }
}

/* The minimum keys a split in force (attn_decode_set_min_keys). */
static int32_t dc_min_keys = ATTN_DECODE_MIN_KEYS;

extern "C" kiln_status attn_decode_set_min_keys(int32_t keys)
{
    if (keys < 0 || keys > ATTN_DECODE_MAX_MIN_KEYS)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: %d keys a decode split (1..%d, "
                            "0 for the default %d)", keys, ATTN_DECODE_MAX_MIN_KEYS,
                            ATTN_DECODE_MIN_KEYS);
    __atomic_store_n(&dc_min_keys, keys ? keys : ATTN_DECODE_MIN_KEYS, __ATOMIC_RELAXED);
    return KILN_OK;
}

extern "C" int32_t attn_decode_splits(int32_t n_seqs, int32_t n_kv_heads, int32_t group,
                                      int32_t max_keys, int32_t sm_count)
{
    const int32_t min_keys = __atomic_load_n(&dc_min_keys, __ATOMIC_RELAXED);
    const int64_t ht = (group + ATTN_DECODE_GMAX - 1) / ATTN_DECODE_GMAX;
    const int64_t base = (int64_t)n_seqs * n_kv_heads * ht, target = 2 * (int64_t)sm_count;
    if (base <= 0 || base >= target || max_keys <= 0)
        return 1;
    int64_t split = (target + base - 1) / base;
    const int64_t by_len = ((int64_t)max_keys + min_keys - 1) / min_keys;
    split = split < by_len ? split : by_len;
    split = split < ATTN_DECODE_MAX_SPLIT ? split : ATTN_DECODE_MAX_SPLIT;
    return split < 1 ? 1 : (int32_t)split;
}

/* rows = n_seqs * n_heads * split <= base * GMAX * split, and with split > 1
 * base * split < target + base < 2 * target = 4 * sm_count. */
extern "C" int64_t attn_decode_ws_rows(int32_t sm_count)
{
    return 4 * (int64_t)ATTN_DECODE_GMAX * sm_count;
}

extern "C" kiln_status attn_decode_launch(const attn_args *a, kiln_dtype dtype, int32_t n_split,
                                          const attn_split_ws *ws, cudaStream_t stream)
{
    if (n_split < 1 || n_split > ATTN_DECODE_MAX_SPLIT || (n_split > 1 && (!ws->acc || !ws->ml)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "attention: bad decode split %d", n_split);
    if (a->n_heads > 65535) /* grid.y = n_kv_heads * head tiles <= n_heads */
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: %d query heads (at most 65535)",
                            a->n_heads);
    if (dtype == KILN_DT_BF16)
        return decode_dispatch_dim<__nv_bfloat16>(a, n_split, ws, stream);
    if (dtype == KILN_DT_F16)
        return decode_dispatch_dim<__half>(a, n_split, ws, stream);
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: activation type %s has no kernel "
                        "(bf16, f16)", dtype_name(dtype));
}

/*
 * attention_prefill.cu - flash attention (FlashAttention-2 schedule) for the
 * prefill sequences of a batch: sequences packed without padding, keys read
 * through the paged cache (or, without a cache, from the batch's own k/v
 * rows), causal by absolute position, sliding window, softcap, GQA.
 *
 * Work split.  A CTA of 4 warps owns one query head h and one tile of
 * BM = 64 MT consecutive rows of one sequence (16 MT rows per warp; MT = 1
 * in the default variant, see prefill_variant).  Grid.x runs
 * over the (sequence, tile) pairs of prefill sequences only; each warp finds
 * its pair with a warp-wide prefix sum over the tile counts of the
 * sequences (prefill_find_tile), so the grid has no idle CTAs and no scratch
 * memory is needed.  Tiles are handed out last first: the late tiles of a
 * causal sequence see the most keys.
 *
 * Per key tile K_j, V_j (BN keys, NS shared-memory stages filled by
 * cp.async while another is in use; NS = 2 but in the lab's deeper
 * variants), every warp computes for its rows
 *   S = Q_i K_j^T                        (mma.m16n8k16, f32 accumulators)
 *   S = scale, softcap, mask, in base 2
 *   m' = max(m, rowmax S) if that passes m by more than PF_SLACK, else m;
 *   P = 2^(S - m');  l = l 2^(m - m') + rowsum P
 *   O = O 2^(m - m') + P V_j            (P rounded to the input type)
 * and at the end writes O / l (zeros where no key is visible).  Q, K and V
 * fragments come from shared memory through ldmatrix (V transposed; Q read
 * once into registers in the variants that hold it there); rows are padded
 * by 16 bytes so the 8 row addresses of an ldmatrix phase fall in distinct
 * banks.
 *
 * Where the time goes (attention lab, H200, 8B heads, 1 x 2048 causal):
 * about 110 TFLOP/s in every variant, whether tiles are 32 or 64 keys, Q
 * in registers or not, 16 or 32 rows a warp; the variants with more CTAs
 * an SM lead.  Nsight Compute shows the schedulers idle two cycles in
 * three with ~2 warps each: the warps wait on latency (the copies of the
 * next tile, the mma chains), not on a saturated pipe.
 *
 * Invariants:
 *   1. Rows of a tile past the sequence's end are loaded as zeros and never
 *      written; keys past the tile's range are zero-filled, so P V never
 *      multiplies a zero weight by garbage (0 * NaN).
 *   2. A masked score is -inf and its weight exactly 0; a row whose running
 *      max is still -inf rescales by 1 and adds nothing.
 *   3. The new tokens' keys are in the cache before this kernel runs (the
 *      cache write precedes it on the same stream).
 *   4. Every score of a row is at most its reference max + PF_SLACK, so no
 *      weight exceeds 2^PF_SLACK.
 */
#include "backend/cuda/attention.h"
#include "backend/cuda/attention_dev.cuh"
#include "backend/cuda/cuda_check.h"

#include <math.h>
#include <string.h>

#define PF_THREADS 128
#define PF_FULL 0xffffffffu
/* Lazy rescaling: a row's reference max m (base 2) moves only when a
 * tile's scores pass it by more than PF_SLACK, so the weights
 * p = 2^(s - m) stay at most 2^PF_SLACK = 256 (in range for bf16 and f16
 * and for the f32 sums, with the same relative precision as p <= 1) and O
 * and l are rescaled only when m moves: in most tiles after the first a
 * row's max grows by less than that, and the rescale of O (a multiply an
 * accumulator) is skipped.  O / l at the end is the same softmax for any
 * reference. */
#define PF_SLACK 8.0f

/* A kernel variant: BN keys per tile, Q fragments held in registers or
 * read from shared memory at every tile, at least MINB CTAs an SM (a
 * register bound for the compiler), MT m-tiles of 16 rows a warp, NS
 * shared-memory stages of K/V (NS - 1 tiles in flight while one computes). */
template <int D, int BN, bool QREG, int MINB, int MT, int NS> struct pf_cfg {
    static_assert(NS >= 2, "at least double buffering");
    static constexpr int HD = D;        /* head_dim                                     */
    static constexpr int KT = BN;       /* keys a tile                                  */
    static constexpr int BM = 64 * MT;  /* query rows of a CTA (4 warps)                */
    static constexpr int STR = D + 8;   /* shared row stride in elements (16-byte pad) */
    static constexpr int VPR = D / 8;   /* 16-byte vectors per row                      */
    template <typename T> static constexpr size_t smem_bytes()
    {
        return (size_t)(BM * STR + 2 * NS * BN * STR) * sizeof(T) +
               (size_t)NS * BN * sizeof(int32_t);
    }
};

/* The (sequence, tile) that grid index `target` stands for, counting
 * ceil(rows / BM) tiles for each prefill sequence in order.  Every lane of
 * the warp gets the answer; false when target is past the last tile. */
template <int BM>
static __device__ bool prefill_find_tile(const attn_args &a, int32_t target, int32_t *s_out,
                                         int32_t *tile_out)
{
    const int lane = threadIdx.x & 31;
    int32_t carry = 0;

    for (int32_t base = 0; base < a.n_seqs; base += 32) {
        int32_t s = base + lane, n = 0;
        if (s < a.n_seqs) {
            int32_t len = a.seq_start[s + 1] - a.seq_start[s];
            if (len > 1 || (len == 1 && !a.use_cache))
                n = (len + BM - 1) / BM;
        }
        int32_t x = n; /* inclusive prefix sum over the lanes */
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            int32_t y = __shfl_up_sync(PF_FULL, x, off);
            if (lane >= off)
                x += y;
        }
        int32_t total = __shfl_sync(PF_FULL, x, 31);
        if (target < carry + total) {
            unsigned hit = __ballot_sync(PF_FULL, carry + x > target);
            int f = __ffs((int)hit) - 1;
            int32_t xf = __shfl_sync(PF_FULL, x, f), nf = __shfl_sync(PF_FULL, n, f);
            *s_out = base + f;
            *tile_out = target - (carry + xf - nf);
            return true;
        }
        carry += total;
    }
    return false;
}

/* Queue the copies of keys [j0, j0 + BN) of sequence s into stage `st`;
 * keys at or past j_end are zeros.  Key j is batch row row0 + j without a
 * cache and, with `own`, in a sequence whose keys are all new (its first
 * chunk: the cache holds the same rows, written before this kernel); else
 * it is read from the cache through the block table.
 * A thread copies the same 16-byte column c of rows r0, r0 + RPI, ...: the
 * addresses of all its rows are found first (the block-table loads are
 * independent and all in flight together), then the copies are queued -
 * each copy is an asm statement that orders memory, so a table load placed
 * between two copies would wait for the first. */
template <typename T, typename cfg, bool ENC>
static __device__ __forceinline__ void prefill_load_kv(const attn_args &a, T *K_s, T *V_s,
                                                       int32_t *kpos_s, int st, int32_t j0,
                                                       int32_t j_end, int32_t s, int32_t row0,
                                                       int32_t kvh, bool own)
{
    constexpr int D = cfg::HD, BN = cfg::KT, STR = cfg::STR, VPR = cfg::VPR;
    constexpr int RPI = PF_THREADS / VPR;         /* rows per pass of the block        */
    constexpr int NPASS = BN * VPR / PF_THREADS;  /* passes: rows a thread copies      */
    static_assert(BN * VPR % PF_THREADS == 0, "whole passes");
    const bool paged = !ENC && a.use_cache && !own;
    const T *kc = (const T *)(paged ? a.k_cache : a.k);
    const T *vc = (const T *)(paged ? a.v_cache : a.v);
    const int32_t *table = a.block_tables + (int64_t)s * a.max_blocks;
    const int r0 = threadIdx.x / VPR, c = threadIdx.x % VPR;

    int64_t off[NPASS];
#pragma unroll
    for (int i = 0; i < NPASS; i++) {
        const int32_t j = j0 + r0 + i * RPI;
        off[i] = -1;
        if (j < j_end)
            off[i] = paged ? attn_key_offset(a, table, j, kvh)
                           : (int64_t)(row0 + j) * a.kv_stride + kvh * D;
    }
#pragma unroll
    for (int i = 0; i < NPASS; i++) {
        const int r = r0 + i * RPI;
        const bool ok = off[i] >= 0;
        T *kd = K_s + (st * BN + r) * STR + c * 8;
        T *vd = V_s + (st * BN + r) * STR + c * 8;
        attn_cp16(kd, ok ? kc + off[i] + c * 8 : kc, ok);
        attn_cp16(vd, ok ? vc + off[i] + c * 8 : vc, ok);
    }
    if (!ENC && !a.use_cache) /* the encoder path reads no key position */
        for (int i = threadIdx.x; i < BN; i += PF_THREADS)
            kpos_s[st * BN + i] = j0 + i < j_end ? a.positions[row0 + j0 + i] : 0;
}

/* Grid n_tiles * n_heads (one dimension, heads fastest), PF_THREADS
 * threads, pf_cfg<...>::smem_bytes<T>() bytes of dynamic shared memory.
 * Tensors as in attn_args: q, out (n_tokens, n_heads, D); k, v (n_tokens,
 * n_kv_heads, D); caches (n_blocks, block_size, n_kv_heads, D).
 *
 * A warp owns MT m-tiles of 16 query rows (BM = 64 MT rows a CTA): each K
 * and V fragment read from shared memory feeds MT independent mma, which
 * halves the shared-memory reads per mma at MT = 2 and gives the tensor
 * pipe two chains to interleave.
 *
 * Per key tile, a warp takes one of three paths, decided for its rows
 * together (the decision is warp-uniform):
 *   skip   no key of the tile is visible to any of its rows (past a causal
 *          diagonal, before a window, or rows past the sequence's end);
 *   full   every key is visible to every row and there is no softcap: the
 *          scale folds into one FMA per score, p = 2^(S sl2 - m), with no
 *          mask and no -inf test (the running max is finite from here on);
 *   masked the visibility rule per (row, key), scores shaped by attn_score.
 * Only tiles on a causal diagonal, at a window's edge or at the end of the
 * keys take the masked path.
 *
 * ENC: the encoder form, for calls without a cache, causal mask, window or
 * softcap and with a positive scale (prefill_is_encoder): every key of the
 * sequence is visible to every row, so no position is read and every tile
 * takes the full path; the last tile's keys past the sequence's end get a
 * score of -inf first.  The running max is finite from the first tile on
 * (key 0 is visible to every row), so p = 2^(S sl2 - m) needs no -inf test:
 * a masked key's weight is 2^-inf = 0. */
template <typename T, int D, int BN, bool QREG, int MINB, int MT, int NS, bool ENC>
static __global__ void __launch_bounds__(PF_THREADS, MINB) attn_prefill_kernel(const attn_args a)
{
    using cfg = pf_cfg<D, BN, QREG, MINB, MT, NS>;
    constexpr int STR = cfg::STR, VPR = cfg::VPR, BM = cfg::BM;
    constexpr int NT = BN / 8;          /* n-tiles of S per m-tile    */
    constexpr int DT = D / 8;           /* n-tiles of O per m-tile    */
    constexpr int KD = D / 16;          /* k-steps of Q K^T           */
    constexpr int WR = 16 * MT;         /* query rows of a warp       */
    extern __shared__ __align__(16) unsigned char attn_smem[];
    T *Q_s = (T *)attn_smem;            /* (BM, STR)                 */
    T *K_s = Q_s + BM * STR;            /* (NS, BN, STR)             */
    T *V_s = K_s + NS * BN * STR;       /* (NS, BN, STR)             */
    int32_t *kpos_s = (int32_t *)(V_s + NS * BN * STR); /* (NS, BN): key positions, no cache */

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    /* CTA i takes head i % n_heads of tile n_tiles - 1 - i / n_heads: the
     * last tiles (a causal sequence's, whose rows see the most keys; the
     * longest sequence's in a batch sorted by length) start first for
     * every head before any lighter tile, so the light ones fill the tail
     * of the last wave (see attn_prefill_launch) */
    const int32_t h = (int32_t)(blockIdx.x % (unsigned)a.n_heads), kvh = h / a.group;
    const int32_t n_tiles = (int32_t)(gridDim.x / (unsigned)a.n_heads);

    int32_t s, tile;
    if (!prefill_find_tile<BM>(a, n_tiles - 1 - (int32_t)(blockIdx.x / (unsigned)a.n_heads), &s,
                               &tile))
        return;
    const int32_t row0 = a.seq_start[s], n_rows = a.seq_start[s + 1] - row0;
    const int32_t q0 = tile * BM, nq = min(BM, n_rows - q0);
    const int32_t *pos = a.positions + row0;

    /* Key range of the whole tile; each row masks its own part of it. */
    const int32_t qpos_lo = ENC ? 0 : pos[q0], qpos_hi = ENC ? 0 : pos[q0 + nq - 1];
    int32_t j_begin, j_end;
    bool own = false; /* every key is one of this batch's rows (see prefill_load_kv) */
    if (ENC) {
        j_begin = 0;
        j_end = n_rows;
    } else if (a.use_cache) {
        int32_t kv_len = a.seq_len[s];
        own = kv_len == n_rows;
        j_end = a.causal ? min(kv_len, qpos_hi + 1) : kv_len;
        j_begin = a.window > 0 ? max(0, qpos_lo - a.window + 1) : 0;
    } else {
        int32_t p0 = pos[0];
        j_end = a.causal ? min(n_rows, qpos_hi - p0 + 1) : n_rows;
        j_begin = a.window > 0 ? max(0, qpos_lo - p0 - a.window + 1) : 0;
    }
    /* positions of this lane's rows g and g + 8 of each m-tile */
    int32_t qp[MT][2];
    int32_t wq_lo = INT32_MAX, wq_hi = INT32_MIN;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int row = warp * WR + mt * 16 + g + 8 * r;
            qp[mt][r] = !ENC && row < nq ? pos[q0 + row] : qpos_hi;
            wq_lo = min(wq_lo, qp[mt][r]);
            wq_hi = max(wq_hi, qp[mt][r]);
        }
    /* The warp's rows: whether any is in the sequence, and (cache mode,
     * where a key's position is its index) the lowest and highest query
     * position among them, for the skip and full tests. */
    const bool warp_live = warp * WR < nq;
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
        wq_lo = min(wq_lo, __shfl_xor_sync(PF_FULL, wq_lo, off));
        wq_hi = max(wq_hi, __shfl_xor_sync(PF_FULL, wq_hi, off));
    }
    const float sl2 = a.scale * ATTN_LOG2E;
    /* this lane's row addresses for the Q fragment of the warp's first
     * m-tile and the K and V fragments of stage 0, key block 0, column
     * block 0: every fragment is a constant away */
    const uint32_t q_lane = attn_smem_addr(Q_s + (warp * WR + (lane & 7) + 8 * ((lane >> 3) & 1)) *
                                                     STR + 8 * (lane >> 4));
    const uint32_t k_lane = attn_smem_addr(K_s + ((lane & 7) + 8 * (lane >> 4)) * STR +
                                           8 * ((lane >> 3) & 1));
    const uint32_t v_lane = attn_smem_addr(V_s + ((lane & 7) + 8 * ((lane >> 3) & 1)) * STR +
                                           8 * (lane >> 4));

    /* Q_i and the first key tile: one copy group; then one group for each
     * of the next NS - 2 tiles (an empty group past the last key). */
    const T *q_src = (const T *)a.q + (int64_t)(row0 + q0) * a.q_stride + h * D;
    for (int i = tid; i < BM * VPR; i += PF_THREADS) {
        int r = i / VPR, c = i % VPR;
        bool ok = r < nq;
        attn_cp16(Q_s + r * STR + c * 8, ok ? q_src + (int64_t)r * a.q_stride + c * 8 : q_src,
                  ok);
    }
#pragma unroll
    for (int p = 0; p < NS - 1; p++) {
        if (j_begin + p * BN < j_end)
            prefill_load_kv<T, cfg, ENC>(a, K_s, V_s, kpos_s, p, j_begin + p * BN, j_end, s,
                                           row0, kvh, own);
        attn_cp_commit();
    }

    float O[MT][DT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            O[mt][dt][0] = O[mt][dt][1] = O[mt][dt][2] = O[mt][dt][3] = 0.0f;
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
    uint32_t qf[QREG ? MT * KD : 1][4];

    int st = 0; /* the stage of tile j0 */
    for (int32_t j0 = j_begin; j0 < j_end; j0 += BN, st = st + 1 == NS ? 0 : st + 1) {
        /* tile j0 + (NS - 1) BN into the stage tile j0 - BN used (the
         * barrier closing the last iteration freed it); then the group of
         * tile j0 is NS - 1 groups back, and waiting for all but NS - 1
         * groups waits for it */
        const int32_t jn = j0 + (NS - 1) * BN;
        if (jn < j_end)
            prefill_load_kv<T, cfg, ENC>(a, K_s, V_s, kpos_s, st == 0 ? NS - 1 : st - 1, jn,
                                           j_end, s, row0, kvh, own);
        attn_cp_commit();
        attn_cp_wait<NS - 1>();
        __syncthreads(); /* tile j0 (and Q_i) copied by every thread is visible to all */

        if (QREG && j0 == j_begin) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < KD; kk++)
                    attn_ldsm_x4_at(qf[QREG ? mt * KD + kk : 0],
                                    q_lane + (uint32_t)((mt * 16 * STR + kk * 16) * sizeof(T)));
        }

        /* the warp's path for this tile (see above) */
        const int32_t j_last = min(j0 + BN, j_end) - 1;
        bool skip = !warp_live, full = false;
        if (ENC) {
            full = true;
        } else if (a.use_cache) {
            skip = skip || (a.causal && j0 > wq_hi) ||
                   (a.window > 0 && j_last <= wq_lo - a.window);
            full = j0 + BN <= j_end && a.softcap <= 0.0f && (!a.causal || j_last <= wq_lo) &&
                   (a.window <= 0 || j0 > wq_hi - a.window);
        } else {
            full = j0 + BN <= j_end && a.softcap <= 0.0f && !a.causal && a.window <= 0;
        }
        if (!skip) {
            /* S = Q_i K_j^T */
            float S[MT][NT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
                    S[mt][nt][0] = S[mt][nt][1] = S[mt][nt][2] = S[mt][nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KD; kk++) {
                uint32_t qa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if (QREG) {
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            qa[mt][e] = qf[QREG ? mt * KD + kk : 0][e];
                    } else {
                        attn_ldsm_x4_at(qa[mt], q_lane + (uint32_t)((mt * 16 * STR + kk * 16) *
                                                                    sizeof(T)));
                    }
                }
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    uint32_t kb[4];
                    attn_ldsm_x4_at(kb, k_lane + (uint32_t)(((st * BN + np * 16) * STR +
                                                              kk * 16) * sizeof(T)));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma<T>(S[mt][2 * np], qa[mt], kb[0], kb[1]);
                        attn_mma<T>(S[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
                    }
                }
            }

            /* ENC: keys past the sequence's end (the last tile only) score -inf */
            if (ENC && j0 + BN > j_end) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            if (j0 + nt * 8 + 2 * t + (e & 1) >= j_end)
                                S[mt][nt][e] = -INFINITY;
            }

            /* row maxima over the 4 lanes of a row, in base-2 score units */
            float alpha[MT][2];
            bool moved = false;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float mx[2] = {-INFINITY, -INFINITY};
                if (full) {
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        mx[0] = fmaxf(mx[0], fmaxf(S[mt][nt][0], S[mt][nt][1]));
                        mx[1] = fmaxf(mx[1], fmaxf(S[mt][nt][2], S[mt][nt][3]));
                    }
                    mx[0] *= sl2;
                    mx[1] *= sl2;
                } else {
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int r = e >> 1, jj = nt * 8 + 2 * t + (e & 1);
                            int32_t j = j0 + jj;
                            int32_t kp = a.use_cache ? j : kpos_s[st * BN + jj];
                            bool vis = j < j_end && (!a.causal || kp <= qp[mt][r]) &&
                                       (a.window <= 0 || kp > qp[mt][r] - a.window);
                            float x = vis ? attn_score(a, S[mt][nt][e]) : -INFINITY;
                            S[mt][nt][e] = x;
                            mx[r] = fmaxf(mx[r], x);
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(PF_FULL, mx[r], 1));
                    mx[r] = fmaxf(mx[r], __shfl_xor_sync(PF_FULL, mx[r], 2));
                    /* the reference max moves only past PF_SLACK (false
                     * while no key was visible: -inf > -inf) */
                    const float m_new = fmaxf(m[mt][r], mx[r]);
                    const bool up = m_new > m[mt][r] + PF_SLACK;
                    alpha[mt][r] = up ? attn_exp2(m[mt][r] - m_new) : 1.0f;
                    moved = moved || up;
                    m[mt][r] = up ? m_new : m[mt][r];
                    l[mt][r] *= alpha[mt][r];
                }
                if (full) {
                    /* m is finite: this tile has a visible key in every row */
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            float p = attn_exp2(fmaf(S[mt][nt][e], sl2, -m[mt][e >> 1]));
                            S[mt][nt][e] = p;
                            l[mt][e >> 1] += p;
                        }
                    }
                } else {
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int r = e >> 1;
                            float p = m[mt][r] == -INFINITY ? 0.0f
                                                            : attn_exp2(S[mt][nt][e] - m[mt][r]);
                            S[mt][nt][e] = p;
                            l[mt][r] += p;
                        }
                    }
                }
            }
            /* a row's reference max seldom moves after its first tile (see
             * PF_SLACK): the warp skips the rescale when no row of it moved */
            if (__any_sync(PF_FULL, moved)) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int dt = 0; dt < DT; dt++) {
                        O[mt][dt][0] *= alpha[mt][0];
                        O[mt][dt][1] *= alpha[mt][0];
                        O[mt][dt][2] *= alpha[mt][1];
                        O[mt][dt][3] *= alpha[mt][1];
                    }
            }

            /* O += P V_j: P's accumulator layout is the A layout of the next mma */
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    pa[mt][0] = attn_pack2<T>(S[mt][2 * kk][0], S[mt][2 * kk][1]);
                    pa[mt][1] = attn_pack2<T>(S[mt][2 * kk][2], S[mt][2 * kk][3]);
                    pa[mt][2] = attn_pack2<T>(S[mt][2 * kk + 1][0], S[mt][2 * kk + 1][1]);
                    pa[mt][3] = attn_pack2<T>(S[mt][2 * kk + 1][2], S[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dp = 0; dp < DT / 2; dp++) {
                    uint32_t vb[4];
                    attn_ldsm_x4_trans_at(vb, v_lane + (uint32_t)(((st * BN + kk * 16) * STR +
                                                                   dp * 16) * sizeof(T)));
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        attn_mma<T>(O[mt][2 * dp], pa[mt], vb[0], vb[1]);
                        attn_mma<T>(O[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                    }
                }
            }
        }
        __syncthreads(); /* all warps are done with stage st before it is refilled */
    }
    attn_cp_wait<0>();

    /* O / l, row sums first completed across the 4 lanes of a row */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr += __shfl_xor_sync(PF_FULL, lr, 1);
            lr += __shfl_xor_sync(PF_FULL, lr, 2);
            const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
            const int row = warp * WR + mt * 16 + g + 8 * r;
            if (row >= nq)
                continue;
            T *o = (T *)a.out + ((int64_t)(row0 + q0 + row) * a.n_heads + h) * D;
#pragma unroll
            for (int dt = 0; dt < DT; dt++)
                *(uint32_t *)(o + dt * 8 + 2 * t) =
                    attn_pack2<T>(O[mt][dt][2 * r] * inv, O[mt][dt][2 * r + 1] * inv);
        }
}

template <typename T, int D, int BN, bool QREG, int MINB, int MT, int NS, bool ENC>
static kiln_status prefill_run(const attn_args *a, int32_t n_tiles, cudaStream_t stream)
{
    kiln_status st = KILN_OK;
    const size_t smem = pf_cfg<D, BN, QREG, MINB, MT, NS>::template smem_bytes<T>();
    dim3 grid((unsigned)n_tiles * (unsigned)a->n_heads);

    KILN_CUDA_CHECK(
        cudaFuncSetAttribute(attn_prefill_kernel<T, D, BN, QREG, MINB, MT, NS, ENC>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attn_prefill_kernel<T, D, BN, QREG, MINB, MT, NS, ENC>
        <<<grid, PF_THREADS, smem, stream>>>(*a);
    KILN_CUDA_LAUNCH_CHECK("attention_prefill", stream);
err:
    return st;
}

/* The variants for head_dims 64 and 128 (attn_prefill_set_variant, from
 * KILN_CUDA_PREFILL at backend creation):
 *   k64q   64 keys a tile, Q in registers, 16 rows a warp
 *   k64s   64 keys, Q read from shared memory
 *   k32q   32 keys, Q in registers (3 CTAs an SM)
 *   k32s   32 keys, Q from shared memory (3 CTAs an SM)
 *   m2k32  32 rows a warp (BM 128), 32 keys, Q in registers at D 64
 *   m2k64  32 rows a warp, 64 keys
 *   k32q3  as k32q with three stages: two tiles in flight while one computes
 *   k32s4  as k32s bounded to 128 registers: 4 CTAs an SM
 *   k32s5  as k32s bounded to 5 CTAs an SM at D 64 (96 registers), k32s at
 *          D 128 (a fourth CTA already spills there)
 *   k32s6  as k32s bounded to 6 CTAs an SM at D 64 (80 registers; the
 *          encoder form fits, the general one spills), k32s at D 128
 * Default PF_DEFAULT, k32q: the fastest of them in the lab at 1 x 2048 and
 * 8 x 512 (bench/results/attention-kernels-2026-12-02T07-3*).  k32q4 (four
 * stages) and k64q3 were slower than k32q at every shape of the lab
 * (attention-kernels-2026-12-07T17-42-44Z.jsonl) and are gone.
 *
 * ptxas (CUDA 13, sm_90, bf16) on the kernel the 2026-12-07 lab timed
 * (17b1a4c, before the encoder form), at D 64: k32q 125 registers (4 CTAs
 * an SM), k32s and k32s4 112 (4), k64q 162 (3), m2k32 201 (2), m2k64 255
 * (1).  In the lab's encoder shape the 32-key variants
 * at 4 CTAs an SM all ran at ~86 TFLOP/s, those at 2-3 at 46-67: short
 * sequences leave little work a CTA to hide its latencies behind, so CTAs
 * an SM are what k32s5 and k32s6 try. */
#define PF_DEFAULT 2
#define PF_N_VARIANTS 10
static const char *const pf_variant_names[PF_N_VARIANTS] = {
    "k64q", "k64s", "k32q", "k32s", "m2k32", "m2k64", "k32q3", "k32s4", "k32s5", "k32s6"};

/* The variant in force for the process (an index of pf_variant_names), and
 * whether encoder-shaped calls take the encoder form of its kernel. */
static int pf_variant = PF_DEFAULT;
static bool pf_encoder = true;

extern "C" kiln_status attn_prefill_set_variant(const char *name)
{
    int v = PF_DEFAULT;
    if (name && *name) {
        for (v = 0; v < PF_N_VARIANTS && strcmp(name, pf_variant_names[v]); v++)
            ;
        if (v == PF_N_VARIANTS)
            return kiln_err_set(KILN_ERR_INVALID_ARG,
                                "cuda backend: KILN_CUDA_PREFILL=%s is not a prefill attention "
                                "variant (k64q k64s k32q k32s m2k32 m2k64 k32q3 k32s4 k32s5 "
                                "k32s6)", name);
    }
    __atomic_store_n(&pf_variant, v, __ATOMIC_RELAXED);
    return KILN_OK;
}

extern "C" const char *attn_prefill_variant_name(int i)
{
    return i >= 0 && i < PF_N_VARIANTS ? pf_variant_names[i] : NULL;
}

extern "C" void attn_prefill_set_encoder_form(bool on)
{
    __atomic_store_n(&pf_encoder, on, __ATOMIC_RELAXED);
}

/* A kernel instantiation and the query rows its CTAs take, so the tile
 * count (attn_prefill_bm) and the launch can never disagree. */
typedef kiln_status (*pf_run_fn)(const attn_args *, int32_t, cudaStream_t);
typedef struct pf_pick {
    pf_run_fn run;  /* NULL: no kernel for the head_dim */
    int32_t bm;
} pf_pick;

template <typename T, int D, int BN, bool QREG, int MINB, int MT, int NS, bool ENC>
static pf_pick pf_kernel(void)
{
    return pf_pick{prefill_run<T, D, BN, QREG, MINB, MT, NS, ENC>,
                   pf_cfg<D, BN, QREG, MINB, MT, NS>::BM};
}

template <typename T, int D, bool ENC> static pf_pick prefill_pick_variant(int v)
{
    constexpr int M5 = D <= 64 ? 5 : 3, M6 = D <= 64 ? 6 : 3;
    switch (v) {
    case 1: return pf_kernel<T, D, 64, false, 2, 1, 2, ENC>();
    case 2: return pf_kernel<T, D, 32, true, 3, 1, 2, ENC>();
    case 3: return pf_kernel<T, D, 32, false, 3, 1, 2, ENC>();
    case 4: return pf_kernel<T, D, 32, D <= 64, 2, 2, 2, ENC>();
    case 5: return pf_kernel<T, D, 64, D <= 64, 1, 2, 2, ENC>();
    case 6: return pf_kernel<T, D, 32, true, 3, 1, 3, ENC>();
    case 7: return pf_kernel<T, D, 32, false, 4, 1, 2, ENC>();
    case 8: return pf_kernel<T, D, 32, false, M5, 1, 2, ENC>();
    case 9: return pf_kernel<T, D, 32, false, M6, 1, 2, ENC>();
    default: return pf_kernel<T, D, 64, true, 2, 1, 2, ENC>();
    }
}

/* The encoder form exists for the head_dims of BERT-family models (16, 32,
 * 64); ENC is ignored above them. */
template <typename T, bool ENC> static pf_pick prefill_pick(int32_t head_dim)
{
    const int v = __atomic_load_n(&pf_variant, __ATOMIC_RELAXED);
    switch (head_dim) {
    case 16: return pf_kernel<T, 16, 64, true, 2, 1, 2, ENC>();
    case 32: return pf_kernel<T, 32, 64, true, 2, 1, 2, ENC>();
    case 64: return prefill_pick_variant<T, 64, ENC>(v);
    case 128: return prefill_pick_variant<T, 128, false>(v);
    /* 32 keys and Q from shared memory: O alone is 128 registers a thread */
    case 256: return pf_kernel<T, 256, 32, false, 1, 1, 2, false>();
    default: return pf_pick{NULL, 0};
    }
}

/* Whether a call may take the encoder form (see attn_prefill_kernel). */
static bool prefill_is_encoder(const attn_args *a)
{
    return __atomic_load_n(&pf_encoder, __ATOMIC_RELAXED) && !a->use_cache && !a->causal &&
           a->window <= 0 && !(a->softcap > 0.0f) && a->scale > 0.0f;
}

extern "C" int32_t attn_prefill_bm(int32_t head_dim)
{
    /* BM depends on neither T nor the encoder form */
    const pf_pick p = prefill_pick<__nv_bfloat16, false>(head_dim);
    return p.run ? p.bm : 64;
}

extern "C" kiln_status attn_prefill_launch(const attn_args *a, kiln_dtype dtype, int32_t n_tiles,
                                           cudaStream_t stream)
{
    if (n_tiles <= 0)
        return KILN_OK;
    /* one CTA a (tile, head), in a one-dimensional grid */
    if (a->n_heads <= 0 || (int64_t)n_tiles * a->n_heads > INT32_MAX)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: %d query tiles x %d heads do not "
                            "fit one grid (at most %d CTAs)", n_tiles, a->n_heads, INT32_MAX);
    if (dtype != KILN_DT_BF16 && dtype != KILN_DT_F16)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: activation type %s has no kernel "
                            "(bf16, f16)", dtype_name(dtype));
    const bool enc = prefill_is_encoder(a);
    const pf_pick p = dtype == KILN_DT_BF16
                          ? (enc ? prefill_pick<__nv_bfloat16, true>(a->head_dim)
                                 : prefill_pick<__nv_bfloat16, false>(a->head_dim))
                          : (enc ? prefill_pick<__half, true>(a->head_dim)
                                 : prefill_pick<__half, false>(a->head_dim));
    if (!p.run)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "attention: head_dim %d has no prefill kernel "
                            "(16, 32, 64, 128, 256)", a->head_dim);
    return p.run(a, n_tiles, stream);
}

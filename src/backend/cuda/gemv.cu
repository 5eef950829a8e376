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
 * The gated form (GEMV_GLU) is the feed-forward's input side of a decode
 * step in one launch: a block reads RB rows of W_gate and
 * the same RB rows of W_up (2 RB rows in flight) and stores
 * act(gate + b_gate) * (up + b_up), each of gate and up rounded to T first
 * and the product rounded once, as matmul, matmul and glu would: with the
 * same split every output's sums are the same as in the separate launches,
 * so the result has the same bits, and neither gate nor up is written.
 *
 * The norm mode (GEMV_NORM) takes x before its RMSNorm.  rmsnorm(x) W^T =
 * (1 / rms(x)) (x * nw) W^T: one factor a row, so the block takes the
 * product with x_i nw_i and sums the squares of the x pieces it reads in
 * the same loop (every block reads all of x anyway); the block reduction
 * that ends the kernel adds up both, and the factor scales the sums.  The
 * norm kernel and its launch are gone and nothing waits for a norm before
 * the first product.  The normed x is never rounded to T here (the
 * separate norm's store rounds it), so results can differ from rmsnorm +
 * matmul by that rounding, within the type's precision.  The residual
 * mode (GEMV_RES) adds the product into y (y = y + round(x W^T + bias),
 * rounded), so an output projection joins the residual stream with no add
 * kernel.  A decode
 * block is then four launches: q/k/v with the norm, the output projection
 * into h, gate/up/GLU with the norm, the down projection into h.  Each
 * block reads or writes only its own outputs of y, and the kernel after
 * one that writes h waits for it (pdl_wait), so the in-place residual is
 * race-free.  gemv_impl.cuh holds the kernel; the modes are built in
 * gemv.cu (plain), gemv_glu.cu and gemv_norm.cu.
 *
 * Preconditions (checked by the caller, cuda_matmul): k % 8 == 0, x, W, y
 * (and bias) 16-byte aligned with row strides k and m elements, 1 <= n <=
 * GEMV_MAX_ROWS.
 */
#include "backend/cuda/gemv_impl.cuh"

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

/* The checks, the split, the type. */
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
    switch (o->mode) {
    case 0: return gemv_run_built(0, dt, o, n, k, m, &c, stream);
    case GEMV_GLU:
    case GEMV_GLU | GEMV_NORM: return gemv_run_glu(o->mode, dt, o, n, k, m, &c, stream);
    case GEMV_NORM:
    case GEMV_RES: return gemv_run_norm(o->mode, dt, o, n, k, m, &c, stream);
    default: return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: no kernel for mode %d", o->mode);
    }
}

kiln_status gemv_run_built(int mode, kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                           int64_t m, const gemv_cfg *c, cudaStream_t stream)
{
    (void)mode;
    return gemv_run_mode<0>(dt, o, n, k, m, c, stream);
}

extern "C" kiln_status cuda_gemv_ex(kiln_dtype dt, const gemv_args *a, int32_t n, int64_t k,
                                    int64_t m, const gemv_cfg *cfg, cudaStream_t stream)
{
    gemv_ops o = {0, a->x, a->w, a->bias, a->w_up, a->bias_up, a->act, a->norm_w, a->eps,
                  a->add_one, a->y};
    if (!a->x || !a->w || !a->y)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: no x, W or y");
    o.mode = (a->w_up ? GEMV_GLU : 0) | (a->norm_w ? GEMV_NORM : 0) | (a->residual ? GEMV_RES : 0);
    if (a->residual && (a->w_up || a->norm_w))
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "gemv: a residual product is plain (no GLU, no norm)");
    return gemv_run(dt, &o, n, k, m, cfg, stream);
}

extern "C" kiln_status cuda_gemv(kiln_dtype dt, const void *x, int32_t n, const void *w,
                                 const void *bias, void *y, int64_t k, int64_t m,
                                 const gemv_cfg *cfg, cudaStream_t stream)
{
    const gemv_args a = {x, w, bias, NULL, NULL, 0, NULL, 0.0f, false, false, y};
    return cuda_gemv_ex(dt, &a, n, k, m, cfg, stream);
}

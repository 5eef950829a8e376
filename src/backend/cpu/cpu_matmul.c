/*
 * cpu_matmul.c - y(n, m) = x(n, k) W(m, k)^T + bias for every weight type.
 *
 * Two paths, both splitting the m weight rows over the pool (each output
 * element is computed by one thread, in an order that does not depend on
 * the split, so any thread count gives the same bits):
 *
 *   decode  (n < CPU_MM_GEMM_MIN): per weight row, a kernel dequantizes the
 *           row's blocks in registers and takes dot products with up to
 *           CPU_NX activation rows at a time; the weights stream once.
 *           Nibble kernels read x reordered within 32-element groups
 *           (cpu_x_permute, once per call into cb->xperm).
 *   prefill (n >= CPU_MM_GEMM_MIN): per tile of weight rows, dequantize the
 *           tile into the thread's scratch (F32 weights are used in place)
 *           and multiply with a single-threaded sgemm (OpenBLAS when built
 *           with it, cpu_gemm_nt otherwise).
 *
 * Invariants:
 *   1. A prefill tile holds at most mm_tile_rows(k) rows, and every thread's
 *      scratch is reserved for that before the loop: the bodies allocate
 *      nothing.
 *   2. Bias is added after the product, in f32.
 *   3. Each output's summation order depends on the shapes only (prefill
 *      tiles are sized from k, not from the thread count), so 1 and N
 *      threads give bit-identical results.
 */
#include "backend/cpu/cpu_impl.h"

#include "base/error.h"

#ifdef KILN_HAVE_OPENBLAS
#include <cblas.h>
#endif

/* Activation rows from which the tiled gemm path pays off. */
#define CPU_MM_GEMM_MIN 8
/* Bytes of f32 a dequantized prefill tile aims at (fits in L2). */
#define CPU_MM_TILE_BYTES (512 * 1024)

typedef struct mm_job {
    cpu_backend *cb;
    const cpu_kern *kern;
    const float *x;          /* (n, k) */
    const uint8_t *w;        /* (m, row_bytes) */
    const float *bias;       /* (m) or NULL */
    float *y;                /* (n, m) */
    int64_t n, k, m;
    size_t row_bytes;
} mm_job;

/* Weight rows per prefill tile: a multiple of 16 near CPU_MM_TILE_BYTES. */
static int64_t mm_tile_rows(int64_t k)
{
    int64_t r = CPU_MM_TILE_BYTES / (4 * k);
    r &= ~(int64_t)15;
    return r < 16 ? 16 : r > 256 ? 256 : r;
}

static void mm_add_bias(const mm_job *j, int64_t r0, int64_t r1)
{
    if (!j->bias)
        return;
    for (int64_t t = 0; t < j->n; t++)
        for (int64_t r = r0; r < r1; r++)
            j->y[t * j->m + r] += j->bias[r];
}

/* Decode body: rows [begin, end) of W against every x row. */
static void mm_decode_body(void *ctx, size_t begin, size_t end, int thread)
{
    const mm_job *j = ctx;
    float part[CPU_NX];
    for (int64_t r = (int64_t)begin; r < (int64_t)end; r++) {
        const uint8_t *wr = j->w + (size_t)r * j->row_bytes;
        for (int64_t t0 = 0; t0 < j->n; t0 += CPU_NX) {
            int nx = j->n - t0 < CPU_NX ? (int)(j->n - t0) : CPU_NX;
            j->kern->dot(wr, j->x + t0 * j->k, j->k, nx, j->k, part);
            for (int t = 0; t < nx; t++)
                j->y[(t0 + t) * j->m + r] = part[t];
        }
    }
    mm_add_bias(j, (int64_t)begin, (int64_t)end);
}

/* y[:, r0:r0+rows] = x T^T for an f32 tile T (rows, k). */
static void mm_gemm(const mm_job *j, const float *t, int64_t r0, int64_t rows)
{
#ifdef KILN_HAVE_OPENBLAS
    if (j->cb->blas) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->n, (int)rows, (int)j->k,
                    1.0f, j->x, (int)j->k, t, (int)j->k, 0.0f, j->y + r0, (int)j->m);
        return;
    }
#endif
    cpu_gemm_nt(j->cb->simd, j->n, rows, j->k, j->x, j->k, t, j->k, j->y + r0, j->m);
}

/* Prefill body: one tile of weight rows [begin, end). */
static void mm_prefill_body(void *ctx, size_t begin, size_t end, int thread)
{
    const mm_job *j = ctx;
    int64_t r0 = (int64_t)begin, rows = (int64_t)(end - begin);
    const float *t;
    if (j->kern->dt == KILN_DT_F32) {
        t = (const float *)(j->w + (size_t)r0 * j->row_bytes);
    } else {
        float *buf = j->cb->scratch[thread].buf;
        for (int64_t r = 0; r < rows; r++)
            j->kern->deq(j->w + (size_t)(r0 + r) * j->row_bytes, buf + r * j->k, j->k);
        t = buf;
    }
    mm_gemm(j, t, r0, rows);
    mm_add_bias(j, r0, r0 + rows);
}

/* Check matmul's arguments; fills the kernel. */
static kiln_status mm_check(cpu_backend *cb, const void *x, int64_t n, const bk_tensor *w,
                            const bk_tensor *bias, void *y, mm_job *j)
{
    kiln_status st;
    if (!w || !w->data || w->ne0 <= 0 || w->ne1 <= 0 || n < 0 || (n && (!x || !y)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu matmul: bad arguments");
    if (w->ne0 > INT32_MAX || w->ne1 > INT32_MAX || n > INT32_MAX)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu matmul: %lld x %lld weight too large",
                            (long long)w->ne1, (long long)w->ne0);
    j->kern = cpu_kern_get(w->dtype, cb->simd);
    if (!j->kern)
        return kiln_err_set(KILN_ERR_UNSUPPORTED, "cpu matmul: weight type %s is not supported",
                            dtype_name(w->dtype));
    if (w->ne0 % dtype_get(w->dtype)->block_elems)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cpu matmul: row of %lld is not whole %s blocks",
                            (long long)w->ne0, dtype_name(w->dtype));
    j->bias = NULL;
    if (bias && bias->data &&
        (st = cpu_vec_f32(cb, bias, w->ne1, 0, "matmul bias", &j->bias)))
        return st;
    j->cb = cb;
    j->x = x;
    j->w = w->data;
    j->y = y;
    j->n = n;
    j->k = w->ne0;
    j->m = w->ne1;
    j->row_bytes = w->row_bytes;
    return KILN_OK;
}

kiln_status cpu_matmul(backend *be, const void *x, int64_t n, const bk_tensor *w,
                       const bk_tensor *bias, void *y)
{
    cpu_backend *cb = cpu_of(be);
    mm_job j;
    kiln_status st;

    if ((st = mm_check(cb, x, n, w, bias, y, &j)))
        return st;
    if (n == 0)
        return KILN_OK;
    if (n < CPU_MM_GEMM_MIN) {
        if (j.kern->perm != CPU_PERM_NONE) {
            if ((st = cpu_scratch_grow(&cb->xperm, (size_t)(n * j.k))))
                return kiln_err_wrap(st, "cpu matmul");
            cpu_x_permute(j.kern->perm, j.x, n, j.k, cb->xperm.buf);
            j.x = cb->xperm.buf;
        }
        size_t grain = (size_t)(j.m / (cb->n_threads * 8));
        grain = grain < 4 ? 4 : grain > 64 ? 64 : grain;
        tpool_parallel_for(cb->pool, (size_t)j.m, grain, mm_decode_body, &j);
        return KILN_OK;
    }
    /* tiles depend on k only, never on the thread count: sgemm's summation
     * order may depend on the tile's width */
    int64_t tile = mm_tile_rows(j.k);
    if (j.kern->dt != KILN_DT_F32 && (st = cpu_scratch_reserve_all(cb, (size_t)(tile * j.k))))
        return kiln_err_wrap(st, "cpu matmul");
    tpool_parallel_for(cb->pool, (size_t)j.m, (size_t)tile, mm_prefill_body, &j);
    return KILN_OK;
}

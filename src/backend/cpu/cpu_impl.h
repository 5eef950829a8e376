/*
 * cpu_impl.h - private state and kernel tables of the CPU backend; only the
 * files of src/backend/cpu include it.
 *
 * The backend (cpu_backend.c) owns a thread pool and one scratch buffer per
 * pool thread.  Ops check their arguments on the calling thread, grow the
 * scratch they need there (once: buffers only grow, so a steady state of
 * same-shaped steps allocates nothing), then run a tpool_parallel_for whose
 * body indexes the scratch by thread_idx.
 *
 * Kernels come in two builds with one contract: portable C (cpu_kern.c) and
 * AVX2/FMA/F16C (cpu_avx2.c, compiled with target attributes and chosen at
 * run time).  Both accumulate in f32; they may differ by float rounding.
 */
#ifndef KILN_BACKEND_CPU_IMPL_H
#define KILN_BACKEND_CPU_IMPL_H

#include "backend/backend.h"
#include "base/tpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* x rows one decode dot call handles against one weight row. */
#define CPU_NX 4

/* y[t] = sum_i w[i] * x[t * ldx + i] for t < nx (nx <= CPU_NX), over k
 * elements of one weight row stored as `w` (k a whole number of blocks). */
typedef void (*cpu_dot_fn)(const uint8_t *w, const float *x, int64_t ldx, int nx, int64_t k,
                           float *y);
/* y[0..k) = the k elements of a weight row `w` as f32. */
typedef void (*cpu_deq_fn)(const uint8_t *w, float *y, int64_t k);

/* Order of x a dot kernel reads within each group of 32 elements; the
 * nibble kernels read x permuted so that a weight byte's quants unpack
 * with shifts instead of shuffles (cpu_x_permute). */
typedef enum cpu_perm {
    CPU_PERM_NONE = 0,
    CPU_PERM_K,      /* position 8j + d holds element 4d + j             */
    CPU_PERM_HALVES, /* position 8c + i holds 4i + c (i < 4), 16 + 4(i-4) + c */
} cpu_perm;

typedef struct cpu_kern {
    kiln_dtype dt;
    cpu_dot_fn dot;   /* reads x in `perm` order */
    cpu_deq_fn deq;   /* writes natural order    */
    cpu_perm perm;
} cpu_kern;

/* Per-thread scratch; grows only. */
typedef struct cpu_scratch {
    float *buf;      /* 64-byte aligned */
    void *raw;       /* what kiln_malloc returned */
    size_t cap;      /* floats */
} cpu_scratch;

typedef struct cpu_backend {
    backend base;
    tpool *pool;
    int n_threads;
    bool simd;              /* AVX2+FMA+F16C kernels in use */
    bool blas;              /* OpenBLAS sgemm in use for prefill */
    cpu_scratch *scratch;   /* (n_threads) */
    cpu_scratch vec[2];     /* caller-thread f32 copies of vector parameters */
    cpu_scratch xperm;      /* matmul's permuted activations (caller-filled) */
    int32_t *batch_mem;     /* bk_batch_upload's copies */
    size_t batch_cap;       /* int32 elements */
    bk_batch batch;
} cpu_backend;

static inline cpu_backend *cpu_of(backend *be)
{
    return (cpu_backend *)be;
}

/* ---- kernels (cpu_kern.c, cpu_avx2.c) ------------------------------------ */

/* The kernels for weight type dt, SIMD ones when `simd`; NULL when the CPU
 * backend has no matmul for dt.  Static storage. */
const cpu_kern *cpu_kern_get(kiln_dtype dt, bool simd);
/* The AVX2 table entry for dt, NULL when none (cpu_avx2.c). */
const cpu_kern *cpu_kern_avx2(kiln_dtype dt);
/* True when this CPU runs the AVX2/FMA/F16C kernels. */
bool cpu_avx2_usable(void);

/* out(n, k) = x(n, k) with each group of 32 reordered for `perm` (k a
 * multiple of 32). */
void cpu_x_permute(cpu_perm perm, const float *x, int64_t n, int64_t k, float *out);

/* y(n, m) = x(n, k) T(m, k)^T with f32 T: row-major, leading dimensions ldx,
 * ldt, ldy.  SIMD or portable (cpu_gemm.c). */
void cpu_gemm_nt(bool simd, int64_t n, int64_t m, int64_t k, const float *x, int64_t ldx,
                 const float *t, int64_t ldt, float *y, int64_t ldy);
void cpu_gemm_nt_avx2(int64_t n, int64_t m, int64_t k, const float *x, int64_t ldx,
                      const float *t, int64_t ldt, float *y, int64_t ldy);

/* Dot product of two f32 vectors of length k (attention). */
float cpu_dot_f32(bool simd, const float *a, const float *b, int64_t k);
float cpu_dot_f32_avx2(const float *a, const float *b, int64_t k);
/* y += a * x over k elements (attention's V accumulation). */
void cpu_axpy_f32(bool simd, float a, const float *x, float *y, int64_t k);
void cpu_axpy_f32_avx2(float a, const float *x, float *y, int64_t k);

/* ---- backend services (cpu_backend.c) ------------------------------------- */

/* Grow thread t's scratch to at least `floats` floats.  KILN_ERR_OOM. */
kiln_status cpu_scratch_reserve(cpu_backend *cb, int t, size_t floats);
/* Grow one scratch buffer to at least `floats` floats.  KILN_ERR_OOM. */
kiln_status cpu_scratch_grow(cpu_scratch *s, size_t floats);
/* Grow every thread's scratch to `floats`.  KILN_ERR_OOM. */
kiln_status cpu_scratch_reserve_all(cpu_backend *cb, size_t floats);
/* f32 view of a vector parameter (norm weight, bias) of `n` elements:
 * the data itself when F32, else a copy in vec slot `slot` (0 or 1).
 * Errors: KILN_ERR_INVALID_ARG (shape; message names `op`),
 * KILN_ERR_UNSUPPORTED (type), KILN_ERR_OOM. */
kiln_status cpu_vec_f32(cpu_backend *cb, const bk_tensor *t, int64_t n, int slot,
                        const char *op, const float **out);
/* Check a batch's grouping (seq_start, seq_len, out_rows) for `op`.
 * KILN_ERR_INVALID_ARG naming op. */
kiln_status cpu_batch_check(const bk_batch *b, const char *op);

/* ---- ops (one file each group) --------------------------------------------- */

kiln_status cpu_matmul(backend *be, const void *x, int64_t n, const bk_tensor *w,
                       const bk_tensor *bias, void *y);
kiln_status cpu_embed(backend *be, const bk_tensor *table, const bk_batch *b, float scale,
                      const bk_tensor *pos_table, const bk_tensor *type_table, void *y);
kiln_status cpu_embed_part(backend *be, const bk_tensor *table, int64_t row0,
                           const bk_batch *b, float scale, void *y);
kiln_status cpu_rmsnorm(backend *be, const void *x, int64_t n, int64_t d, const bk_tensor *w,
                        float eps, bool add_one, void *y);
kiln_status cpu_add_rmsnorm(backend *be, void *res, const void *x, int64_t n, int64_t d,
                            const bk_tensor *w, float eps, bool add_one, void *y);
kiln_status cpu_layernorm(backend *be, const void *x, const void *res, int64_t n, int64_t d,
                          const bk_tensor *w, const bk_tensor *b, float eps, void *y);
kiln_status cpu_add(backend *be, const void *a, const void *b, int64_t n, void *y);
kiln_status cpu_glu(backend *be, const void *gate, const void *up, int64_t n, int64_t ff,
                    bk_act act, void *y);
kiln_status cpu_act(backend *be, void *x, int64_t n, bk_act act);
kiln_status cpu_softcap(backend *be, void *x, int64_t n, float cap);
kiln_status cpu_argmax(backend *be, const void *x, int64_t rows, int64_t cols, int32_t *ids);
kiln_status cpu_gather_rows(backend *be, const void *x, int64_t d, const bk_batch *b, void *y);
kiln_status cpu_pool(backend *be, const void *x, int64_t d, const bk_batch *b, bk_pool mode,
                     bool normalize, void *y);
kiln_status cpu_rope(backend *be, void *q, void *k, const bk_batch *b, int32_t n_heads,
                     int32_t n_kv_heads, const bk_rope *r);
kiln_status cpu_attention(backend *be, const bk_batch *b, const bk_attn *a, const void *q,
                          const void *k, const void *v, bk_kv_cache *kv, int32_t layer,
                          void *out);

#endif /* KILN_BACKEND_CPU_IMPL_H */

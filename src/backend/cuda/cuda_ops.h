/*
 * cuda_ops.h - the element-wise, row-wise and batch kernels of the CUDA
 * backend, behind plain C prototypes (cuda_ops.cu holds the kernels and
 * their launchers; cuda_backend.c checks arguments and calls these).
 *
 * Common contract of every cuops_ function:
 *   - `dt` is the activation type, KILN_DT_BF16 or KILN_DT_F16; every
 *     activation and weight pointer holds elements of that type.  Vector
 *     parameters (norm weights, biases) are (d) rows of the same type.
 *   - Pointers are borrowed device memory; integer arrays are device
 *     memory.  Work is queued on `stream` and done when the stream is.
 *   - Arithmetic is f32: elements are widened on load, every sum and
 *     reduction accumulates in f32, results are rounded to nearest even
 *     on the one store.
 *   - Sizes are checked by the caller (cuda_backend.c); these check only
 *     what a launch needs (dtype, positive sizes) and return KILN_OK for
 *     empty work.  Errors: KILN_ERR_UNSUPPORTED (dtype), KILN_ERR_DEVICE
 *     (a launch failed; with KILN_CUDA_SYNC_CHECK=1 also a fault).
 */
#ifndef KILN_BACKEND_CUDA_OPS_H
#define KILN_BACKEND_CUDA_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y(n, d) = table[tokens[t]] * scale (+ type_table[types[t] or 0])
 *          (+ pos_table[positions[t]]), summed in that order in f32.
 * Tables are (rows, d); absent tables are NULL.  The token table holds
 * rows [row0, row0 + rows) of the whole vocabulary (row0 0 but for a
 * tensor-parallel rank's slice); a token id outside it gives a row of
 * zeros (another rank's row; a whole lookup has rejected such batches
 * already), as do position and type ids outside theirs. */
kiln_status cuops_embed(kiln_dtype dt, const void *table, int64_t rows, int64_t row0,
                        const void *pos_table, int64_t pos_rows, const void *type_table,
                        int64_t type_rows, const int32_t *tokens, const int32_t *positions,
                        const int32_t *types, int32_t n, int64_t d, float scale, void *y,
                        cudaStream_t stream);

/* Per row of d: with res, res += x (rounded to dt) and the norm reads res;
 * y = v * rsqrt(mean(v^2) + eps) * (w or 1 + w).  y may alias x or res. */
kiln_status cuops_rmsnorm(kiln_dtype dt, void *res, const void *x, const void *w, int64_t n,
                          int64_t d, float eps, bool add_one, void *y, cudaStream_t stream);

/* Per row of d: v = x (+ res) in f32, y = (v - mean) * rsqrt(var + eps) * w
 * (+ b); biased variance.  res and b may be NULL; y may alias x or res. */
kiln_status cuops_layernorm(kiln_dtype dt, const void *x, const void *res, const void *w,
                            const void *b, int64_t n, int64_t d, float eps, void *y,
                            cudaStream_t stream);

/* y = a + b over n elements; y may alias a or b. */
kiln_status cuops_add(kiln_dtype dt, const void *a, const void *b, int64_t n, void *y,
                      cudaStream_t stream);

/* y[i] = hr_uniform(seed, i, lo, hi) rounded to dt, i < n (base/hashrand.h). */
kiln_status cuops_fill_random(kiln_dtype dt, void *y, int64_t n, uint64_t seed, float lo,
                              float hi, cudaStream_t stream);

/* Row t of x (n, w0 + w1 + w2) into rows t of y0 (n, w0), y1 (n, w1),
 * y2 (n, w2). */
kiln_status cuops_split3(kiln_dtype dt, const void *x, int64_t n, int64_t w0, int64_t w1,
                         int64_t w2, void *y0, void *y1, void *y2, cudaStream_t stream);

/* y(n, m) += bias(m). */
kiln_status cuops_add_bias(kiln_dtype dt, void *y, const void *bias, int64_t n, int64_t m,
                           cudaStream_t stream);

/* What the rope kernel needs from a bk_rope. */
typedef struct cuops_rope_args {
    int32_t head_dim;
    int32_t rot_dims;          /* even, 2 .. head_dim                              */
    bool neox;                 /* pairs (i, i + rot/2); else (2i, 2i + 1)          */
    const float *inv_freq;     /* (rot_dims / 2) device table; NULL with dynamic    */
    float mscale;              /* cos/sin factor (yarn), 1 otherwise                */
    bool dynamic;              /* dynamic NTK: base from the token's sequence length */
    float theta, factor;       /* dynamic only                                     */
    int64_t original_max_pos;  /* dynamic only                                     */
} cuops_rope_args;

/* Rotate q (n, n_heads, head_dim) and k (n, n_kv_heads, head_dim; NULL for
 * none) in place at positions[t].  seq_start (n_seqs + 1) and seq_len
 * (n_seqs) are read only with a->dynamic. */
kiln_status cuops_rope(kiln_dtype dt, void *q, void *k, const int32_t *positions,
                       const int32_t *seq_start, const int32_t *seq_len, int32_t n_seqs,
                       int32_t n, int32_t n_heads, int32_t n_kv_heads,
                       const cuops_rope_args *a, cudaStream_t stream);

/* y = act(gate) * up over n elements. */
kiln_status cuops_glu(kiln_dtype dt, const void *gate, const void *up, int64_t n, bk_act act,
                      void *y, cudaStream_t stream);

/* x = act(x) over n elements. */
kiln_status cuops_act(kiln_dtype dt, void *x, int64_t n, bk_act act, cudaStream_t stream);

/* x = cap * tanh(x / cap) over n elements. */
kiln_status cuops_softcap(kiln_dtype dt, void *x, int64_t n, float cap, cudaStream_t stream);

/* y(n_out, d) = x[out_rows[i]]; x has n_rows rows.  A row id outside x
 * gives zeros.  y must not overlap x. */
kiln_status cuops_gather_rows(kiln_dtype dt, const void *x, int64_t d, int32_t n_rows,
                              const int32_t *out_rows, int32_t n_out, void *y,
                              cudaStream_t stream);

/* y(n_seqs, d) = pool of rows [seq_start[s], seq_start[s + 1]) of x, then
 * optionally y /= max(||y||, 1e-12).  An empty sequence gives zeros. */
kiln_status cuops_pool(kiln_dtype dt, const void *x, int64_t d, const int32_t *seq_start,
                       int32_t n_seqs, bk_pool mode, bool normalize, void *y,
                       cudaStream_t stream);

/* y(n) f32 = x(n) widened. */
kiln_status cuops_to_f32(kiln_dtype dt, const void *x, int64_t n, float *y,
                         cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_OPS_H */

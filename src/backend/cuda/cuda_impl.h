/*
 * cuda_impl.h - private state of the CUDA backend; only its host files
 * (cuda_backend.c, cuda_entry.c, cuda_weight.c, cuda_matmul.c) include it.
 *
 * Ownership: the cuda_backend owns everything it points to.  Device
 * buffers are made by cuda_mem_alloc and listed in `mem` until
 * cuda_mem_free; destroy frees what is left (buffers, weights and caches
 * the caller forgot), then the streams, events and library handles.
 */
#ifndef KILN_BACKEND_CUDA_IMPL_H
#define KILN_BACKEND_CUDA_IMPL_H

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "backend/cuda/gemv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

/* Rotary tables cached per distinct bk_rope (global and local layers). */
#define CUDA_ROPE_CACHE 8
/* Smallest staging buffer accepted. */
#define CUDA_STAGE_MIN (1u << 20)

/* One live device allocation. */
typedef struct cuda_alloc_rec {
    void *p;
    size_t bytes;
} cuda_alloc_rec;

/* The inverse-frequency table of one bk_rope, on the device. */
typedef struct cuda_rope_table {
    bk_rope key;
    float *host;           /* (rot_dims / 2) pinned: source of the one upload  */
    float *dev;            /* (rot_dims / 2) device                            */
    float mscale;
} cuda_rope_table;

typedef struct cuda_mm cuda_mm;     /* cuBLASLt state, cuda_matmul.c */

typedef struct cuda_backend {
    backend base;
    int device;
    kiln_dtype act;                  /* BF16 or F16                                  */
    cudev_info info;
    cudaStream_t stream;             /* every op, upload, download, batch copy       */
    cudaStream_t copy_stream;        /* weight staging copies and conversion         */

    /* device memory accounting */
    cuda_alloc_rec *allocs;
    size_t n_allocs, cap_allocs;
    size_t bytes_in_use, bytes_peak;

    /* weight staging: two slots, each a pinned host buffer and a device
     * buffer of stage_bytes; stage_free[i] is recorded once slot i's host
     * buffer has been copied out */
    size_t stage_bytes;
    void *stage_host[2];
    void *stage_dev[2];
    cudaEvent_t stage_free[2];
    cudaEvent_t weights_ready;       /* recorded on copy_stream after each weight    */

    /* batches: the host arrays are packed into one pinned buffer and copied
     * with one async copy into one device buffer of the same layout */
    int32_t *batch_host;             /* pinned, batch_cap int32                      */
    int32_t *batch_dev;              /* device, batch_cap int32                      */
    size_t batch_cap;
    cudaEvent_t batch_copied;        /* the last batch copy has read batch_host      */
    bk_batch batch;                  /* device view of the last upload               */
    uint64_t batch_epoch;            /* bumped each time batch_dev is reallocated    */
    bk_batch_host hbatch;            /* host view of the same arrays (in batch_host) */

    /* rotary tables */
    cuda_rope_table rope[CUDA_ROPE_CACHE];
    int n_rope, rope_next;

    /* to_host_f32's device staging */
    float *f32_dev;
    size_t f32_cap;                  /* bytes */
    /* to_host_f32_start's pinned host slots: the copy into slot i is done
     * once host_done[i] has been reached */
    float *host_slot[2];
    size_t host_slot_cap[2];         /* bytes */
    cudaEvent_t host_done[2];

    /* argmax's row maxima and counters (zero between calls) */
    void *amx_ws;
    size_t amx_ws_cap;               /* bytes */

    /* sample_reset's device copy of the prompt ids */
    int32_t *smp_ids;
    size_t smp_ids_cap;              /* bytes */

    cuda_mm *mm;
    bool gemv;                       /* decode-row matmuls through gemv.cu           */
    bool gemv_all;                   /* ... of every size (KILN_CUDA_GEMV_ALL=1: the
                                        kernel lab's comparison)                     */
    gemv_cfg gemv_split;             /* rows 0: gemv_cfg_pick's; else every gemv's
                                        (KILN_CUDA_GEMV_SPLIT=RBxU, the kernel lab) */
    bool pdl;                        /* gemv launches overlap the kernel before them
                                        (sm_90 and later; KILN_CUDA_NO_PDL=1 off)    */
    bool gelu_tanh;                  /* erf GELU after a matmul in cuBLASLt's tanh-form
                                        epilogue (KILN_CUDA_GELU_TANH=1)             */
    bool rope_in_attn;               /* decode batches' rope and cache write inside
                                        the attention kernel (rope_attention;
                                        KILN_CUDA_NO_FUSED_ROPE=1 off)              */
} cuda_backend;

/* Make cb's device the calling thread's current CUDA device (a note per
 * thread of the device it made current saves the call when it already
 * is).  Every entry that reaches the runtime goes through cuda_of, so a
 * backend works from any thread, and backends on several GPUs used from
 * one thread (loading data-parallel engines) or from threads of their own
 * (the engines, tensor-parallel ranks) each run on their own device.  Code
 * that makes another device current restores the previous one
 * (cuda_device.c, attention.cu) or tells the note (backend creation). */
void cuda_use_device(const cuda_backend *cb);
/* The pdl flag of the backend the calling thread last entered: whether the
 * kernels it queues launch with programmatic serialization. */
bool cuda_pdl_enabled(void);

static inline cuda_backend *cuda_of(backend *be)
{
    cuda_backend *cb = (cuda_backend *)be;
    cuda_use_device(cb);
    return cb;
}

/* ---- device memory (cuda_backend.c) --------------------------------------- */

/* cudaMalloc `bytes` (> 0) and record it.  `what` names the buffer in the
 * message.  Errors: KILN_ERR_OOM (out of device memory: the message gives
 * the bytes asked, held by kiln and free on the device, with file:line),
 * KILN_ERR_DEVICE (another CUDA failure). */
kiln_status cuda_mem_alloc(cuda_backend *cb, size_t bytes, const char *what, void **out);
/* Free a buffer from cuda_mem_alloc; NULL is a no-op.  Waits for the
 * device (cudaFree does) so work still reading it finishes first. */
void cuda_mem_free(cuda_backend *cb, void *p);

/* ---- batches (cuda_backend.c) --------------------------------------------- */

/* The host view of b, which must be the batch of the last batch_upload (its
 * device arrays and counts); KILN_ERR_INVALID_ARG naming `op` otherwise.
 * *out is borrowed, valid until the next upload. */
kiln_status cuda_batch_view(cuda_backend *cb, const bk_batch *b, const char *op,
                            const bk_batch_host **out);
/* Check a batch's grouping (seq_start, seq_len, out_rows) on its host view.
 * KILN_ERR_INVALID_ARG naming `op`. */
kiln_status cuda_batch_check(const bk_batch_host *h, const char *op);

/* ---- weights (cuda_weight.c) ---------------------------------------------- */

kiln_status cuda_weight(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                        const void *src, size_t src_bytes, bk_tensor *out);
void cuda_weight_free(backend *be, bk_tensor *w);
/* A weight of the activation type filled on the compute stream with
 * cuops_fill_random. */
kiln_status cuda_weight_random(backend *be, int64_t ne0, int64_t ne1, uint64_t seed, float lo,
                               float hi, bk_tensor *out);
kiln_status cuda_weight_empty(backend *be, int64_t ne0, int64_t ne1, bk_tensor *out);
kiln_status cuda_weight_rows(backend *be, kiln_dtype dtype, int64_t ne0, int64_t ne1,
                             const void *src, size_t src_bytes, bk_tensor *dst, int64_t row0);
/* Free the staging buffers and events (destroy). */
void cuda_stage_free(cuda_backend *cb);

/* ---- matmul (cuda_matmul.c) ------------------------------------------------ */

/* Create the cuBLASLt handle and a workspace of ws_bytes. */
kiln_status cuda_mm_init(cuda_backend *cb, size_t ws_bytes);
void cuda_mm_free(cuda_backend *cb);
kiln_status cuda_matmul(backend *be, const void *x, int64_t n, const bk_tensor *w,
                        const bk_tensor *bias, void *y);
kiln_status cuda_matmul_act(backend *be, const void *x, int64_t n, const bk_tensor *w,
                            const bk_tensor *bias, bk_act act, void *y);
kiln_status cuda_matmul_glu(backend *be, const void *x, int64_t n, const bk_norm *norm,
                            const bk_tensor *wg, const bk_tensor *bg, const bk_tensor *wu,
                            const bk_tensor *bu, bk_act act, void *xn, void *gate, void *up,
                            void *y);
kiln_status cuda_matmul_norm(backend *be, const void *x, int64_t n, const bk_norm *norm,
                             const bk_tensor *w, const bk_tensor *bias, void *xn, void *y);
kiln_status cuda_matmul_res(backend *be, const void *x, int64_t n, const bk_tensor *w,
                            const bk_tensor *bias, void *tmp, void *res);
int32_t cuda_fused_rows(backend *be);

/* ---- kernel ops (cuda_entry.c): argument checks, then the cuops_ launch --- */

kiln_status cuda_embed_part(backend *be, const bk_tensor *table, int64_t row0,
                            const bk_batch *b, float scale, void *y);
kiln_status cuda_embed(backend *be, const bk_tensor *table, const bk_batch *b, float scale,
                       const bk_tensor *pos_table, const bk_tensor *type_table, void *y);
kiln_status cuda_rmsnorm(backend *be, const void *x, int64_t n, int64_t d, const bk_tensor *w,
                         float eps, bool add_one, void *y);
kiln_status cuda_add_rmsnorm(backend *be, void *res, const void *x, int64_t n, int64_t d,
                             const bk_tensor *w, float eps, bool add_one, void *y);
kiln_status cuda_layernorm(backend *be, const void *x, const void *res, int64_t n, int64_t d,
                           const bk_tensor *w, const bk_tensor *b, float eps, void *y);
kiln_status cuda_add(backend *be, const void *a, const void *b, int64_t n, void *y);
kiln_status cuda_rope(backend *be, void *q, void *k, const bk_batch *b, int32_t n_heads,
                      int32_t n_kv_heads, const bk_rope *r);
kiln_status cuda_attention_op(backend *be, const bk_batch *b, const bk_attn *a, const void *q,
                              const void *k, const void *v, bk_kv_cache *kv, int32_t layer,
                              void *out);
kiln_status cuda_rope_attention(backend *be, const bk_batch *b, const bk_attn *a,
                                const bk_rope *r, void *q, void *k, const void *v,
                                bk_kv_cache *kv, int32_t layer, void *out);
kiln_status cuda_glu(backend *be, const void *gate, const void *up, int64_t n, int64_t ff,
                     bk_act act, void *y);
kiln_status cuda_act(backend *be, void *x, int64_t n, bk_act act);
kiln_status cuda_gather_rows(backend *be, const void *x, int64_t d, const bk_batch *b,
                             void *y);
kiln_status cuda_pool(backend *be, const void *x, int64_t d, const bk_batch *b, bk_pool mode,
                      bool normalize, void *y);
kiln_status cuda_softcap(backend *be, void *x, int64_t n, float cap);
kiln_status cuda_split3(backend *be, const void *x, int64_t n, int64_t w0, int64_t w1,
                        int64_t w2, void *y0, void *y1, void *y2);
/* A vector parameter of d elements in the activation type, or an error
 * naming op and what. */
kiln_status cuda_vec_check(cuda_backend *cb, const bk_tensor *t, int64_t d, const char *op,
                           const char *what);
/* Whether act is one of the bk_act values the kernels know. */
bool cuda_act_valid(bk_act act);
/* Free the rotary tables (destroy). */
void cuda_entry_free(cuda_backend *cb);

/* ---- step capture (cuda_graph.c) -------------------------------------------- */

kiln_status cuda_graph_begin(backend *be);
kiln_status cuda_graph_end(backend *be, bk_graph **out);
kiln_status cuda_graph_launch(backend *be, bk_graph *g);
void cuda_graph_free(backend *be, bk_graph *g);

#endif /* KILN_BACKEND_CUDA_IMPL_H */

/*
 * cuda_matmul.c - y(n, m) = x(n, k) W(m, k)^T (+ bias) through cuBLASLt;
 * the one file of the backend that talks to cuBLASLt.
 *
 * Layout.  cuBLASLt is column-major.  Row-major W (m, k) is the column-major
 * k x m matrix A, row-major x (n, k) the k x n matrix B, row-major y (n, m)
 * the m x n matrix D; so D = A^T B with TRANSA = T, lda = ldb = k, ldd = m.
 * The bias, one value per row of D, is added by the BIAS epilogue in f32
 * before D is rounded; when cuBLASLt has no algorithm for that, by a
 * separate kernel (cuops_add_bias) after the product.
 *
 * Types: A, B, D in the activation type (BF16/F16), CUBLAS_COMPUTE_32F with
 * f32 alpha = 1, beta = 0 (C is D and is not read) - or beta = 1 for a
 * product added into the residual stream in place (cuda_matmul_res: C is
 * D and holds the residual, so y += x W^T + bias is one rounding, and the
 * norm after it reads one tensor instead of the product and the
 * residual).  An algorithm serves either beta: plans do not depend on it.
 *
 * Epilogues.  cuda_matmul_act asks for y = act(x W^T + bias) in one
 * cuBLASLt call where an epilogue computes act: RELU, and GELU, which
 * cuBLASLt computes in its tanh form - so the tanh GELU always, and the erf
 * GELU only when the backend was told to take the tanh form for it
 * (KILN_CUDA_GELU_TANH=1: within ~4.7e-4 of erf's value an element, the
 * trade text-embeddings-inference makes by default).  Other activations,
 * or a shape with no epilogue algorithm, run the product and then the
 * bias and activation kernels.
 *
 * Plans.  A plan is the matmul descriptor, the three layouts and the
 * algorithm for one key: (n, k, m, type, bias or not, epilogue
 * activation, and the alignment of x, W, y and bias, which the heuristic
 * must know: cuBLASLt assumes 256-byte alignment unless told, and a buffer
 * carved from a workspace, or a row of odd width, is less aligned).  Plans
 * live in an open-addressing hash table (linear probing, at most half full,
 * doubled when it would be more); after CUDA_MM_MAX_PLANS plans the table
 * is emptied and refilled, which bounds the host memory of a server whose
 * batch sizes keep changing.  The workspace is allocated once, at init.
 *
 * Buckets.  cublasLtMatmulAlgoGetHeuristic costs host time that the GPU
 * waits through when the product is the next thing it has to run, and
 * batches of packed sequences (embeddings, prefill) bring a new row count
 * almost every time.  So above MM_EXACT_ROWS rows a plan takes the
 * algorithm of its bucket's plan - the plan for n rounded up to one of 8
 * steps an octave, made first with the heuristic - once
 * cublasLtMatmulAlgoCheck accepts it at this n; the heuristic runs for the
 * n itself only when it does not.  The algorithm a row count gets depends
 * on its bucket alone, not on the order calls came in.
 *
 * Tuning.  A plan the heuristic makes for MM_TUNE_ROWS rows or more (a
 * bucket's plan, the one the whole bucket shares) times the heuristic's
 * first MM_TUNE_ALGOS candidates on the operands of the call that made it
 * and keeps the fastest (mm_tune); not while the stream is captured.  The
 * stats count heuristic calls, checks, tunings and the host time of each.
 *
 * Invariants:
 *   1. A plan is used only for calls whose key it was made for.
 *   2. The workspace serves one matmul at a time: every matmul runs on the
 *      backend's one compute stream.
 */
#include "backend/cuda/cuda_impl.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gemv.h"
#include "backend/cuda/cuda_ops.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <string.h>

/* Plans kept before the table is emptied. */
#define CUDA_MM_MAX_PLANS 4096
/* First table size (slots, a power of two). */
#define CUDA_MM_FIRST_CAP 64
/* Rows up to which every row count gets the heuristic's own algorithm. */
#define MM_EXACT_ROWS 256

/* Row counts from which a plan made by the heuristic is tuned: the
 * heuristic's first MM_TUNE_ALGOS candidates are timed on the call's own
 * operands (one run to warm up, then the best of MM_TUNE_RUNS) and the
 * fastest is kept.  Products this large take tens of microseconds or more
 * and come back in every later batch of their bucket. */
#define MM_TUNE_ROWS 1024
#define MM_TUNE_ALGOS 8
#define MM_TUNE_RUNS 3

/* The call a plan is made for: its operands serve the tuning runs, whose
 * products y takes before the call's own product overwrites it (for a
 * product added in place, y is scratch of the same shape, never the
 * residual). */
typedef struct mm_call {
    const void *x, *w, *bias;
    void *y;
    int64_t n;                        /* rows of the call (<= the plan's key.n)      */
    cudaStream_t stream;
} mm_call;

/* Activation an epilogue computes (mm_key.epi_act). */
enum { MM_EPI_NONE = 0, MM_EPI_GELU, MM_EPI_RELU };

typedef struct mm_key {
    int64_t n, k, m;
    int32_t dtype;
    int32_t epi_act;                  /* MM_EPI_*: the activation asked of the call */
    uint16_t align_x, align_w, align_y, align_bias; /* bytes, <= 256; bias 0 = none */
} mm_key;

typedef struct mm_plan {
    bool used;
    bool epilogue;                    /* bias and epi_act computed by cuBLASLt, else
                                         by kernels after the product              */
    mm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;   /* W, x, y                                     */
    cublasLtMatmulAlgo_t algo;
} mm_plan;

struct cuda_mm {
    cublasLtHandle_t lt;
    void *ws;                         /* workspace, ws_bytes                        */
    size_t ws_bytes;
    mm_plan *slots;                   /* (cap) hash table                           */
    size_t cap, count;
    bk_cuda_mm_stats stats;
};

/* ---- keys ------------------------------------------------------------------ */

/* Alignment of p in bytes, capped at 256. */
static uint16_t mm_align(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint16_t al = 1;
    while (al < 256 && (a & al) == 0)
        al = (uint16_t)(al * 2);
    return al;
}

static bool mm_key_eq(const mm_key *a, const mm_key *b)
{
    return a->n == b->n && a->k == b->k && a->m == b->m && a->dtype == b->dtype &&
           a->epi_act == b->epi_act && a->align_x == b->align_x && a->align_w == b->align_w &&
           a->align_y == b->align_y && a->align_bias == b->align_bias;
}

static uint64_t mm_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static uint64_t mm_hash(const mm_key *k)
{
    uint64_t h = 0;
    h = mm_mix(h, (uint64_t)k->n);
    h = mm_mix(h, (uint64_t)k->k);
    h = mm_mix(h, (uint64_t)k->m);
    h = mm_mix(h, (uint64_t)k->dtype | (uint64_t)k->epi_act << 32);
    h = mm_mix(h, ((uint64_t)k->align_x << 48) | ((uint64_t)k->align_w << 32) |
                      ((uint64_t)k->align_y << 16) | k->align_bias);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

/* ---- plans ------------------------------------------------------------------ */

static void mm_plan_destroy(mm_plan *p)
{
    if (p->a)
        cublasLtMatrixLayoutDestroy(p->a);
    if (p->b)
        cublasLtMatrixLayoutDestroy(p->b);
    if (p->d)
        cublasLtMatrixLayoutDestroy(p->d);
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof *p);
}

/* The preference of plan p's key: workspace and alignments (owned:
 * cublasLtMatmulPreferenceDestroy). */
static kiln_status mm_pref(const cuda_mm *mm, const mm_plan *p, cublasLtMatmulPreference_t *out)
{
    kiln_status st = KILN_OK;
    uint64_t ws = mm->ws_bytes;
    uint32_t al_w = p->key.align_w, al_x = p->key.align_x, al_y = p->key.align_y;

    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(out));
    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        *out, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_w, sizeof al_w));
    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_x, sizeof al_x));
    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_y, sizeof al_y));
    KILN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        *out, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_y, sizeof al_y));
err:
    return st;
}

/* Whether plan p (made for the call c) is tuned: a large product, on a
 * stream that is not being captured (the timing waits for the device). */
static bool mm_tunable(const mm_plan *p, const mm_call *c)
{
    enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (!c || p->key.n < MM_TUNE_ROWS)
        return false;
    if (cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return cs == cudaStreamCaptureStatusNone;
}

/* Seconds of the best of MM_TUNE_RUNS runs of `algo` for plan p at the
 * call's rows (layouts b, d), after one to warm up; a negative value when
 * it does not run.  The calls here and in mm_tune are checked by hand, not
 * through the check macros: a failure is a candidate that does not run,
 * which is skipped, not an error of the product. */
static double mm_time_algo(cuda_mm *mm, const mm_plan *p, cublasLtMatrixLayout_t b,
                           cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t *algo,
                           const mm_call *c, cudaEvent_t e0, cudaEvent_t e1)
{
    const float alpha = 1.0f, beta = 0.0f;
    double best = -1.0;
    for (int r = 0; r <= MM_TUNE_RUNS; r++) {
        float ms = 0.0f;
        if (cudaEventRecord(e0, c->stream) != cudaSuccess ||
            cublasLtMatmul(mm->lt, p->desc, &alpha, c->w, p->a, c->x, b, &beta, c->y, d, c->y, d,
                           algo, mm->ws, mm->ws_bytes, c->stream) != CUBLAS_STATUS_SUCCESS ||
            cudaEventRecord(e1, c->stream) != cudaSuccess ||
            cudaEventSynchronize(e1) != cudaSuccess ||
            cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
            (void)cudaGetLastError();
            return -1.0;
        }
        if (r > 0 && (best < 0 || ms * 1e-3 < best))
            best = ms * 1e-3;
    }
    return best;
}

/* Of the heuristic's n candidates for plan p, the fastest at the call c:
 * its index, or 0 when none could be timed. */
static int mm_tune(cuda_mm *mm, mm_plan *p, const cublasLtMatmulHeuristicResult_t *res, int n,
                   const mm_call *c)
{
    cudaDataType_t t = p->key.dtype == KILN_DT_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasLtMatrixLayout_t b = NULL, d = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    uint64_t t0 = clock_now_ns();
    double best = -1.0;
    int pick = 0;

    if (cublasLtMatrixLayoutCreate(&b, t, (uint64_t)p->key.k, (uint64_t)c->n, p->key.k) ||
        cublasLtMatrixLayoutCreate(&d, t, (uint64_t)p->key.m, (uint64_t)c->n, p->key.m) ||
        cudaEventCreate(&e0) != cudaSuccess || cudaEventCreate(&e1) != cudaSuccess)
        goto out;
    if (p->epilogue && c->bias)
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &c->bias,
                                       sizeof c->bias);
    for (int i = 0; i < n; i++) {
        cublasLtMatmulHeuristicResult_t chk;
        memset(&chk, 0, sizeof chk);
        if (res[i].state != CUBLAS_STATUS_SUCCESS || res[i].workspaceSize > mm->ws_bytes ||
            cublasLtMatmulAlgoCheck(mm->lt, p->desc, p->a, b, d, d, &res[i].algo, &chk) !=
                CUBLAS_STATUS_SUCCESS ||
            chk.workspaceSize > mm->ws_bytes)
            continue;
        double s = mm_time_algo(mm, p, b, d, &res[i].algo, c, e0, e1);
        if (s > 0 && (best < 0 || s < best)) {
            best = s;
            pick = i;
        }
    }
    mm->stats.tuned++;
    mm->stats.tuned_away += pick != 0;
out:
    (void)cudaGetLastError();
    if (b)
        cublasLtMatrixLayoutDestroy(b);
    if (d)
        cublasLtMatrixLayoutDestroy(d);
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    mm->stats.tune_s += (double)(clock_now_ns() - t0) * 1e-9;
    return pick;
}

/* Ask the heuristic for the best algorithm of plan p (descriptor and
 * layouts made) with the preferences of its key; for a large product made
 * for a call c, the fastest of its first candidates there (mm_tune).
 * *found false when there is none. */
static kiln_status mm_pick_algo(cuda_mm *mm, mm_plan *p, const mm_call *c, bool *found)
{
    kiln_status st = KILN_OK;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t res[MM_TUNE_ALGOS];
    const bool tune = mm_tunable(p, c);
    int n_res = 0, pick = 0;
    uint64_t t0 = clock_now_ns();
    cublasStatus_t s;

    *found = false;
    if ((st = mm_pref(mm, p, &pref)))
        goto err;
    memset(res, 0, sizeof res);
    /* NOT_SUPPORTED means no algorithm fits: not an error here. */
    s = cublasLtMatmulAlgoGetHeuristic(mm->lt, p->desc, p->a, p->b, p->d, p->d, pref,
                                       tune ? MM_TUNE_ALGOS : 1, res, &n_res);
    mm->stats.heuristic_calls++;
    mm->stats.heuristic_s += (double)(clock_now_ns() - t0) * 1e-9;
    if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED)
        KILN_CUBLAS_CHECK(s);
    if (s != CUBLAS_STATUS_SUCCESS || n_res <= 0)
        goto err;
    if (tune && n_res > 1)
        pick = mm_tune(mm, p, res, n_res, c);
    if (res[pick].state == CUBLAS_STATUS_SUCCESS && res[pick].workspaceSize <= mm->ws_bytes) {
        p->algo = res[pick].algo;
        *found = true;
    }
err:
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    return st;
}

/* Whether cuBLASLt runs `algo` (another row count's choice) for plan p
 * (descriptor and layouts made) within the workspace; then it is p's. */
static bool mm_take_algo(cuda_mm *mm, mm_plan *p, const cublasLtMatmulAlgo_t *algo)
{
    cublasLtMatmulHeuristicResult_t res;
    uint64_t t0 = clock_now_ns();

    memset(&res, 0, sizeof res);
    bool ok = cublasLtMatmulAlgoCheck(mm->lt, p->desc, p->a, p->b, p->d, p->d, algo, &res) ==
                  CUBLAS_STATUS_SUCCESS &&
              res.workspaceSize <= mm->ws_bytes;
    mm->stats.checks++;
    mm->stats.check_s += (double)(clock_now_ns() - t0) * 1e-9;
    if (ok)
        p->algo = *algo;
    else
        mm->stats.check_misses++;
    return ok;
}

/* The epilogue of a plan that computes its key's bias and activation. */
static cublasLtEpilogue_t mm_epilogue(const mm_key *k)
{
    bool bias = k->align_bias != 0;
    switch (k->epi_act) {
    case MM_EPI_GELU:
        return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    case MM_EPI_RELU:
        return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    default:
        return CUBLASLT_EPILOGUE_BIAS;
    }
}

/* Descriptor and layouts of plan p for its key; with `epilogue`, the
 * bias (bias_ptr gives the heuristic its alignment) and activation of the
 * key computed by cuBLASLt. */
static kiln_status mm_plan_describe(mm_plan *p, bool epilogue, const void *bias_ptr)
{
    kiln_status st = KILN_OK;
    cudaDataType_t t = p->key.dtype == KILN_DT_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = mm_epilogue(&p->key);
    int32_t bias_type = (int32_t)t;
    uint64_t n = (uint64_t)p->key.n, k = (uint64_t)p->key.k, m = (uint64_t)p->key.m;

    KILN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    KILN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    KILN_CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (epilogue) {
        KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                         &epi, sizeof epi));
        if (bias_ptr) {
            KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
                p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
            KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
                p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr));
        }
    }
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, t, k, m, (int64_t)k));
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, t, k, n, (int64_t)k));
    KILN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, t, m, n, (int64_t)m));
err:
    return st;
}

/* Fill plan p (key set) for a call with `bias_ptr` (NULL = none).  With a
 * hint (the bucket plan's choice), its algorithm and epilogue when
 * cuBLASLt accepts them at this key; otherwise, or without one, the
 * heuristic's: the epilogue first (when the key has a bias or an
 * activation), the plain product when no algorithm takes the epilogue. */
static kiln_status mm_plan_make(cuda_mm *mm, mm_plan *p, const void *bias_ptr,
                                const mm_plan *hint, const mm_call *c)
{
    kiln_status st;
    mm_key key = p->key;
    bool found = false;

    if (hint) {
        if ((st = mm_plan_describe(p, hint->epilogue, bias_ptr)))
            goto fail;
        if (mm_take_algo(mm, p, &hint->algo)) {
            p->epilogue = hint->epilogue;
            p->used = true;
            return KILN_OK;
        }
        mm_plan_destroy(p);
        p->key = key;
    }
    if (bias_ptr || key.epi_act != MM_EPI_NONE) {
        if ((st = mm_plan_describe(p, true, bias_ptr)) || (st = mm_pick_algo(mm, p, c, &found)))
            goto fail;
        if (found) {
            p->epilogue = true;
            p->used = true;
            return KILN_OK;
        }
        mm_plan_destroy(p);
        p->key = key;
    }
    if ((st = mm_plan_describe(p, false, NULL)) || (st = mm_pick_algo(mm, p, c, &found)))
        goto fail;
    if (!found) {
        st = kiln_err_set(KILN_ERR_UNSUPPORTED,
                          "cuda matmul: cuBLASLt has no algorithm for (%lld x %lld) x (%lld x "
                          "%lld)^T in %s (alignments x %u, W %u, y %u bytes)",
                          (long long)key.n, (long long)key.k, (long long)key.m,
                          (long long)key.k, dtype_name(key.dtype), key.align_x, key.align_w,
                          key.align_y);
        goto fail;
    }
    p->epilogue = false;
    p->used = true;
    return KILN_OK;
fail:
    mm_plan_destroy(p);
    return st;
}

/* ---- the plan table ---------------------------------------------------------- */

static void mm_table_clear(cuda_mm *mm)
{
    for (size_t i = 0; i < mm->cap; i++)
        if (mm->slots[i].used)
            mm_plan_destroy(&mm->slots[i]);
    mm->count = 0;
}

/* Slot of key in a table of cap slots: its plan, or the empty slot where it
 * goes. */
static mm_plan *mm_slot(mm_plan *slots, size_t cap, const mm_key *key)
{
    size_t i = (size_t)mm_hash(key) & (cap - 1);
    while (slots[i].used && !mm_key_eq(&slots[i].key, key))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* Room for one more plan: empty a full table, double a half-full one. */
static kiln_status mm_table_reserve(cuda_mm *mm)
{
    if (mm->count + 1 > CUDA_MM_MAX_PLANS)
        mm_table_clear(mm);
    if (mm->cap && 2 * (mm->count + 1) <= mm->cap)
        return KILN_OK;
    size_t cap = mm->cap ? 2 * mm->cap : CUDA_MM_FIRST_CAP;
    mm_plan *slots = kiln_calloc(cap, sizeof *slots);
    if (!slots)
        return kiln_err_set(KILN_ERR_OOM, "cuda matmul: plan table of %zu slots", cap);
    for (size_t i = 0; i < mm->cap; i++)
        if (mm->slots[i].used)
            *mm_slot(slots, cap, &mm->slots[i].key) = mm->slots[i];
    kiln_free(mm->slots);
    mm->slots = slots;
    mm->cap = cap;
    return KILN_OK;
}

/* The bucket of n rows: n itself up to MM_EXACT_ROWS, else n rounded up
 * to a multiple of 2^(floor(log2 n) - 3) (8 steps an octave: at most 12.5 %
 * above n). */
static int64_t mm_bucket(int64_t n)
{
    if (n <= MM_EXACT_ROWS)
        return n;
    int64_t step = 1;
    while (step * 16 <= n)
        step *= 2;
    return (n + step - 1) / step * step;
}

/* The plan for key, made on first use (from its bucket's plan, itself
 * made first, where the bucket is another row count) for the call c. */
static kiln_status mm_plan_get(cuda_mm *mm, const mm_key *key, const void *bias_ptr,
                               const mm_call *c, mm_plan **out)
{
    kiln_status st;
    mm_plan *p, hint;
    bool hinted = false;

    if (mm->cap) {
        p = mm_slot(mm->slots, mm->cap, key);
        if (p->used) {
            *out = p;
            return KILN_OK;
        }
    }
    if (mm_bucket(key->n) != key->n) {
        mm_key bk = *key;
        bk.n = mm_bucket(key->n);
        if ((st = mm_plan_get(mm, &bk, bias_ptr, c, &p)))
            return st;
        hint = *p; /* a copy: the table may move below */
        hinted = true;
    }
    if ((st = mm_table_reserve(mm)))
        return st;
    p = mm_slot(mm->slots, mm->cap, key);
    p->key = *key;
    if ((st = mm_plan_make(mm, p, bias_ptr, hinted ? &hint : NULL, c)))
        return st;
    mm->count++;
    mm->stats.plans++;
    *out = p;
    return KILN_OK;
}

/* ---- life cycle ---------------------------------------------------------------- */

kiln_status cuda_mm_init(cuda_backend *cb, size_t ws_bytes)
{
    kiln_status st = KILN_OK;
    cuda_mm *mm = kiln_calloc(1, sizeof *mm);

    if (!mm)
        return kiln_err_set(KILN_ERR_OOM, "cuda matmul: out of memory");
    cb->mm = mm;
    KILN_CUBLAS_CHECK(cublasLtCreate(&mm->lt));
    if (ws_bytes && (st = cuda_mem_alloc(cb, ws_bytes, "cuBLASLt workspace", &mm->ws)))
        goto err;
    mm->ws_bytes = ws_bytes;
err:
    return st;
}

void cuda_mm_free(cuda_backend *cb)
{
    cuda_mm *mm = cb->mm;
    if (!mm)
        return;
    mm_table_clear(mm);
    kiln_free(mm->slots);
    if (mm->lt)
        cublasLtDestroy(mm->lt);
    cuda_mem_free(cb, mm->ws);
    kiln_free(mm);
    cb->mm = NULL;
}

/* ---- the op -------------------------------------------------------------------- */

/* The checks of one product's operands (n rows of x times w, the bias
 * optional); bias_ptr is the bias's data or NULL. */
static kiln_status mm_check(const cuda_backend *cb, const char *op, const void *x, int64_t n,
                            const bk_tensor *w, const void *bias_ptr, const bk_tensor *bias,
                            const void *y)
{
    if (!w || !w->data || w->ne0 <= 0 || w->ne1 <= 0 || n < 0 || (n && (!x || !y)))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda %s: bad arguments (n=%lld)", op,
                            (long long)n);
    if (w->dtype != cb->act)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda %s: weight is %s, the backend computes in %s (weights "
                            "come from bk weight)",
                            op, dtype_name(w->dtype), dtype_name(cb->act));
    if (bias_ptr && (bias->dtype != cb->act || bias->ne0 * bias->ne1 != w->ne1))
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda %s: bias has %lld %s elements, need %lld %s", op,
                            (long long)(bias->ne0 * bias->ne1), dtype_name(bias->dtype),
                            (long long)w->ne1, dtype_name(cb->act));
    return KILN_OK;
}

/* Whether gemv takes the product, and with which split: a decode step's
 * row, or its few rows times a small W (<= GEMV_MAX_ELEMS): gemv streams it
 * faster; cuBLASLt's tiles take larger ones at 2..8 rows
 * (bench/kernels/cuda_matmul_bench.c, bench/NOTES.md). */
static bool mm_gemv(const cuda_backend *cb, const void *x, int64_t n, const bk_tensor *w,
                    const void *bias_ptr, const void *y, gemv_cfg *c)
{
    if (!(n <= GEMV_MAX_ROWS && cb->gemv &&
          (cb->gemv_all || n == 1 || w->ne0 * w->ne1 <= GEMV_MAX_ELEMS) && w->ne0 % 8 == 0 &&
          mm_align(x) >= 16 && mm_align(w->data) >= 16 && mm_align(y) >= 16 &&
          (!bias_ptr || mm_align(bias_ptr) >= 16)))
        return false;
    *c = cb->gemv_split;
    if (!c->rows)
        gemv_cfg_pick(n, w->ne0, w->ne1, c);
    c->pdl = cb->pdl;
    return true;
}

/* The activation an epilogue computes for act on this backend
 * (MM_EPI_NONE: none; kernels apply it). */
static int32_t mm_epi_act(const cuda_backend *cb, const bk_act *act)
{
    if (!act)
        return MM_EPI_NONE;
    switch (*act) {
    case BK_ACT_GELU_TANH:
        return MM_EPI_GELU;
    case BK_ACT_GELU:
        return cb->gelu_tanh ? MM_EPI_GELU : MM_EPI_NONE;
    case BK_ACT_RELU:
        return MM_EPI_RELU;
    default:
        return MM_EPI_NONE;
    }
}

/* y = act(x W^T + bias), act NULL: none; or with `acc`, y += x W^T + bias
 * in cuBLASLt (no act; `scratch`, NULL or (n, m) like y, takes the tuning
 * runs' products - without it the plan is not tuned); operands checked
 * by the caller. */
static kiln_status mm_product(cuda_backend *cb, const void *x, int64_t n, const bk_tensor *w,
                              const void *bias_ptr, const bk_act *act, void *y, bool acc,
                              void *scratch)
{
    kiln_status st = KILN_OK;
    const float alpha = 1.0f, beta = acc ? 1.0f : 0.0f;
    mm_plan *p = NULL;
    mm_key key;
    gemv_cfg c;

    if (n == 0)
        return KILN_OK;
    if (!acc && mm_gemv(cb, x, n, w, bias_ptr, y, &c)) {
        if ((st = cuda_gemv(cb->act, x, (int32_t)n, w->data, bias_ptr, y, w->ne0, w->ne1, &c,
                            cb->stream)))
            return st;
        return act ? cuops_act(cb->act, y, n * w->ne1, *act, cb->stream) : KILN_OK;
    }

    memset(&key, 0, sizeof key);
    key.n = n;
    key.k = w->ne0;
    key.m = w->ne1;
    key.dtype = (int32_t)cb->act;
    key.epi_act = mm_epi_act(cb, act);
    key.align_x = mm_align(x);
    key.align_w = mm_align(w->data);
    key.align_y = mm_align(y);
    if (acc && scratch && mm_align(scratch) < key.align_y)
        key.align_y = mm_align(scratch); /* the algorithm runs on both */
    key.align_bias = bias_ptr ? mm_align(bias_ptr) : 0;
    const mm_call call = {x, w->data, bias_ptr, acc ? scratch : y, n, cb->stream};
    if ((st = mm_plan_get(cb->mm, &key, bias_ptr, acc && !scratch ? NULL : &call, &p)))
        return kiln_err_wrap(st, "cuda matmul");

    if (p->epilogue && bias_ptr)
        KILN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr));
    KILN_CUBLAS_CHECK(cublasLtMatmul(cb->mm->lt, p->desc, &alpha, w->data, p->a, x, p->b, &beta,
                                     y, p->d, y, p->d, &p->algo, cb->mm->ws, cb->mm->ws_bytes,
                                     cb->stream));
    if (bias_ptr && !p->epilogue)
        st = cuops_add_bias(cb->act, y, bias_ptr, n, w->ne1, cb->stream);
    if (st == KILN_OK && act && !(p->epilogue && key.epi_act != MM_EPI_NONE))
        st = cuops_act(cb->act, y, n * w->ne1, *act, cb->stream);
    if (st == KILN_OK && cuda_check_sync_enabled())
        st = cuda_check_launch("matmul", cb->stream, __FILE__, __LINE__);
err:
    return st;
}

kiln_status cuda_matmul(backend *be, const void *x, int64_t n, const bk_tensor *w,
                        const bk_tensor *bias, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const void *bias_ptr = bias && bias->data ? bias->data : NULL;
    kiln_status st = mm_check(cb, "matmul", x, n, w, bias_ptr, bias, y);
    return st ? st : mm_product(cb, x, n, w, bias_ptr, NULL, y, false, NULL);
}

kiln_status cuda_matmul_act(backend *be, const void *x, int64_t n, const bk_tensor *w,
                            const bk_tensor *bias, bk_act act, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const void *bias_ptr = bias && bias->data ? bias->data : NULL;
    kiln_status st = mm_check(cb, "matmul_act", x, n, w, bias_ptr, bias, y);
    if (st)
        return st;
    if (!cuda_act_valid(act))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda matmul_act: unknown activation %d",
                            (int)act);
    return mm_product(cb, x, n, w, bias_ptr, &act, y, false, NULL);
}

void bk_cuda_mm_stats_get(const backend *be, bk_cuda_mm_stats *out)
{
    memset(out, 0, sizeof *out);
    if (bk_is_cuda(be) && ((const cuda_backend *)be)->mm)
        *out = ((const cuda_backend *)be)->mm->stats;
}

/* The norm of a fused product: its weight holds k elements of the
 * activation type.  NULL is no norm. */
static kiln_status mm_norm_check(cuda_backend *cb, const char *op, const bk_norm *norm,
                                 int64_t k)
{
    return norm ? cuda_vec_check(cb, norm->w, k, op, "norm weight") : KILN_OK;
}

/* The separate ops' first step: xn (n, k) = rmsnorm(x), for a product the
 * gemv does not take; xn NULL is an error naming op. */
static kiln_status mm_norm_into(cuda_backend *cb, const char *op, const void *x, int64_t n,
                                int64_t k, const bk_norm *norm, void *xn)
{
    if (!xn)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda %s: no scratch for the norm", op);
    return cuops_rmsnorm(cb->act, NULL, x, norm->w->data, n, k, norm->eps, norm->add_one, xn,
                         cb->stream);
}

kiln_status cuda_matmul_glu(backend *be, const void *x, int64_t n, const bk_norm *norm,
                            const bk_tensor *wg, const bk_tensor *bg, const bk_tensor *wu,
                            const bk_tensor *bu, bk_act act, void *xn, void *gate, void *up,
                            void *y)
{
    cuda_backend *cb = cuda_of(be);
    const void *bg_ptr = bg && bg->data ? bg->data : NULL;
    const void *bu_ptr = bu && bu->data ? bu->data : NULL;
    kiln_status st;
    gemv_cfg c, cu;

    if ((st = mm_check(cb, "matmul_glu", x, n, wg, bg_ptr, bg, y)) ||
        (st = mm_check(cb, "matmul_glu", x, n, wu, bu_ptr, bu, y)))
        return st;
    if (wg->ne0 != wu->ne0 || wg->ne1 != wu->ne1)
        return kiln_err_set(KILN_ERR_INVALID_ARG,
                            "cuda matmul_glu: gate is %lld x %lld, up %lld x %lld",
                            (long long)wg->ne1, (long long)wg->ne0, (long long)wu->ne1,
                            (long long)wu->ne0);
    if (!cuda_act_valid(act))
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda matmul_glu: unknown activation %d",
                            (int)act);
    if ((st = mm_norm_check(cb, "matmul_glu", norm, wg->ne0)))
        return st;
    if (n == 0)
        return KILN_OK;
    /* one launch where gemv would take both products with one split */
    if (mm_gemv(cb, x, n, wg, bg_ptr, y, &c) && mm_gemv(cb, x, n, wu, bu_ptr, y, &cu) &&
        c.rows == cu.rows && c.unroll == cu.unroll &&
        (!norm || mm_align(norm->w->data) >= 16)) {
        const gemv_args a = {x, wg->data, bg_ptr, wu->data, bu_ptr, (int)act,
                             norm ? norm->w->data : NULL, norm ? norm->eps : 0.0f,
                             norm && norm->add_one, false, y};
        return cuda_gemv_ex(cb->act, &a, (int32_t)n, wg->ne0, wg->ne1, &c, cb->stream);
    }
    if (!gate || !up)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda matmul_glu: no scratch for gate, up");
    if (norm) {
        if ((st = mm_norm_into(cb, "matmul_glu", x, n, wg->ne0, norm, xn)))
            return st;
        x = xn;
    }
    if ((st = cuda_matmul(be, x, n, wg, bg, gate)) || (st = cuda_matmul(be, x, n, wu, bu, up)))
        return st;
    return cuda_glu(be, gate, up, n, wg->ne1, act, y);
}

kiln_status cuda_matmul_norm(backend *be, const void *x, int64_t n, const bk_norm *norm,
                             const bk_tensor *w, const bk_tensor *bias, void *xn, void *y)
{
    cuda_backend *cb = cuda_of(be);
    const void *bias_ptr = bias && bias->data ? bias->data : NULL;
    kiln_status st;
    gemv_cfg c;

    if ((st = mm_check(cb, "matmul_norm", x, n, w, bias_ptr, bias, y)) ||
        (st = mm_norm_check(cb, "matmul_norm", norm, w->ne0)))
        return st;
    if (n == 0)
        return KILN_OK;
    if (!norm)
        return cuda_matmul(be, x, n, w, bias, y);
    if (mm_gemv(cb, x, n, w, bias_ptr, y, &c) && mm_align(norm->w->data) >= 16) {
        const gemv_args a = {x, w->data, bias_ptr, NULL, NULL, 0, norm->w->data, norm->eps,
                             norm->add_one, false, y};
        return cuda_gemv_ex(cb->act, &a, (int32_t)n, w->ne0, w->ne1, &c, cb->stream);
    }
    if ((st = mm_norm_into(cb, "matmul_norm", x, n, w->ne0, norm, xn)))
        return st;
    return cuda_matmul(be, xn, n, w, bias, y);
}

kiln_status cuda_matmul_res(backend *be, const void *x, int64_t n, const bk_tensor *w,
                            const bk_tensor *bias, void *tmp, void *res)
{
    cuda_backend *cb = cuda_of(be);
    const void *bias_ptr = bias && bias->data ? bias->data : NULL;
    kiln_status st;
    gemv_cfg c;

    if ((st = mm_check(cb, "matmul_res", x, n, w, bias_ptr, bias, res)))
        return st;
    if (n == 0)
        return KILN_OK;
    if (mm_gemv(cb, x, n, w, bias_ptr, res, &c)) {
        const gemv_args a = {x, w->data, bias_ptr, NULL, NULL, 0, NULL, 0.0f, false, true, res};
        return cuda_gemv_ex(cb->act, &a, (int32_t)n, w->ne0, w->ne1, &c, cb->stream);
    }
    /* cuBLASLt adds the product to res in place (beta = 1); tmp only takes
     * the tuning runs of a new plan */
    return mm_product(cb, x, n, w, bias_ptr, NULL, res, true, tmp);
}

int32_t cuda_fused_rows(backend *be)
{
    return cuda_of(be)->gemv ? GEMV_MAX_ROWS : 0;
}

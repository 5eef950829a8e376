/*
 * attention_bench.cu - cuda_attention at the Llama-3.1-8B head shape
 * (32 query heads, 8 KV heads, head_dim 128, bf16, block size 16).
 *
 *   decode   batch 1 / 8 / 64 at context 1k / 4k / 16k: GB/s of K and V
 *            read (batch * ctx * 8 heads * 128 * 2 bytes * 2), set against
 *            the device-to-device copy bandwidth measured in the same run
 *            ((read + write) bytes / s of a 1 GiB cudaMemcpy); and at the
 *            Llama-3.2-1B heads (x 64), batch 1, the split's minimum keys
 *            swept (bench_decode_min_keys);
 *   prefill  1 x 2048 and 8 x 512 causal from an empty cache: TFLOP/s of
 *            4 * head_dim * n_heads * sum over queries of visible keys;
 *   encoder  bge-base's heads (12 x 64) and all-MiniLM-L6-v2's (12 x 32),
 *            bidirectional over 120 documents of 16..256 tokens without a
 *            cache, q, k, v packed and inside one fused projection output,
 *            the kernel's encoder form and its general one (bench_encoder).
 *
 * Each figure is the mean over a CUDA graph of ITERS back-to-back calls (so
 * host-side checks and launch gaps are not counted), after a warm-up call.
 * Block tables are shuffled through the pool.  A table goes to stdout and
 * one JSON line per figure to stdout, or to --json FILE (appended).
 *
 * Prefill and encoder run every kernel variant (those KILN_CUDA_PREFILL
 * names), the default first.
 *
 * --default-only times the engine's variant alone (prefill and encoder,
 * for a profiler: each shape's first launch is its warm-up call).
 *
 *   make attention_bench && ./attention_bench [--json FILE] [--iters N] [--prefill-only]
 *       [--default-only]
 */
#include "backend/cuda/attention.h"
#include "backend/cuda/attention_impl.h"
#include "backend/cuda/cuda_device.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B_HEADS 32
#define B_KV_HEADS 8
#define B_DIM 128
#define B_BLOCK 16
#define B_COPY_BYTES (1ull << 30)

#define BENCH_CU(call)                                                                   \
    do {                                                                                 \
        cudaError_t e_ = (call);                                                         \
        if (e_ != cudaSuccess) {                                                         \
            fprintf(stderr, "attention_bench: %s failed: %s (%s:%d)\n", #call,           \
                    cudaGetErrorString(e_), __FILE__, __LINE__);                         \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static int iters = 20;
static bool prefill_only, default_only;
static FILE *json;
static cudev_info dev;
static cudaStream_t stream;

/* x[i] = a small pseudo-random value; n elements. */
static __global__ void bench_fill(__nv_bfloat16 *x, size_t n, uint32_t seed)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        x[i] = __float2bfloat16((float)(h & 0xffffu) / 32768.0f - 1.0f);
    }
}

static void *bench_alloc_fill(size_t elems, uint32_t seed)
{
    void *p = NULL;
    BENCH_CU(cudaMalloc(&p, elems * 2));
    bench_fill<<<1024, 256, 0, stream>>>((__nv_bfloat16 *)p, elems, seed);
    BENCH_CU(cudaGetLastError());
    return p;
}

static void *bench_upload(const void *src, size_t bytes)
{
    void *p = NULL;
    BENCH_CU(cudaMalloc(&p, bytes));
    BENCH_CU(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    return p;
}

/* Device-to-device copy bandwidth, (read + write) bytes per second. */
static double bench_copy_bw(void)
{
    void *a = NULL, *b = NULL;
    cudaEvent_t e0, e1;
    float ms = 0.0f;
    const int reps = 10;

    BENCH_CU(cudaMalloc(&a, B_COPY_BYTES));
    BENCH_CU(cudaMalloc(&b, B_COPY_BYTES));
    BENCH_CU(cudaMemsetAsync(a, 1, B_COPY_BYTES, stream));
    BENCH_CU(cudaMemcpyAsync(b, a, B_COPY_BYTES, cudaMemcpyDeviceToDevice, stream));
    BENCH_CU(cudaEventCreate(&e0));
    BENCH_CU(cudaEventCreate(&e1));
    BENCH_CU(cudaEventRecord(e0, stream));
    for (int i = 0; i < reps; i++)
        BENCH_CU(cudaMemcpyAsync(b, a, B_COPY_BYTES, cudaMemcpyDeviceToDevice, stream));
    BENCH_CU(cudaEventRecord(e1, stream));
    BENCH_CU(cudaEventSynchronize(e1));
    BENCH_CU(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)B_COPY_BYTES * reps / (ms * 1e-3);
}

/* One batch of n_seqs sequences, each with n_new new tokens ending at
 * context ctx, over a shuffled pool: device arrays and their host copy. */
typedef struct bench_batch {
    bk_batch b;
    bk_batch_host h;
    int32_t *seq_start, *seq_len, *positions, *tables, *slots;  /* host */
    void *dev[5];
    void *k_cache, *v_cache, *q, *k, *v, *out;
    int32_t n_blocks;
} bench_batch;

static void bench_batch_make(bench_batch *bb, int n_seqs, int ctx, int n_new)
{
    const int nb = (ctx + B_BLOCK - 1) / B_BLOCK;
    const int n_tokens = n_seqs * n_new;
    const size_t row = (size_t)B_KV_HEADS * B_DIM;

    memset(bb, 0, sizeof *bb);
    bb->n_blocks = n_seqs * nb;
    bb->seq_start = (int32_t *)malloc((size_t)(n_seqs + 1) * sizeof(int32_t));
    bb->seq_len = (int32_t *)malloc((size_t)n_seqs * sizeof(int32_t));
    bb->positions = (int32_t *)malloc((size_t)n_tokens * sizeof(int32_t));
    bb->slots = (int32_t *)malloc((size_t)n_tokens * sizeof(int32_t));
    bb->tables = (int32_t *)malloc((size_t)bb->n_blocks * sizeof(int32_t));
    if (!bb->seq_start || !bb->seq_len || !bb->positions || !bb->slots || !bb->tables) {
        fprintf(stderr, "attention_bench: out of host memory\n");
        exit(1);
    }
    for (int32_t i = 0; i < bb->n_blocks; i++)
        bb->tables[i] = i;
    srand(1234);
    for (int32_t i = bb->n_blocks - 1; i > 0; i--) {
        int32_t j = rand() % (i + 1), t = bb->tables[i];
        bb->tables[i] = bb->tables[j];
        bb->tables[j] = t;
    }
    for (int s = 0; s <= n_seqs; s++)
        bb->seq_start[s] = s * n_new;
    for (int s = 0; s < n_seqs; s++) {
        bb->seq_len[s] = ctx;
        for (int i = 0; i < n_new; i++) {
            int32_t p = ctx - n_new + i, t = s * n_new + i;
            bb->positions[t] = p;
            bb->slots[t] = bb->tables[s * nb + p / B_BLOCK] * B_BLOCK + p % B_BLOCK;
        }
    }
    bb->dev[0] = bench_upload(bb->seq_start, (size_t)(n_seqs + 1) * sizeof(int32_t));
    bb->dev[1] = bench_upload(bb->seq_len, (size_t)n_seqs * sizeof(int32_t));
    bb->dev[2] = bench_upload(bb->positions, (size_t)n_tokens * sizeof(int32_t));
    bb->dev[3] = bench_upload(bb->tables, (size_t)bb->n_blocks * sizeof(int32_t));
    bb->dev[4] = bench_upload(bb->slots, (size_t)n_tokens * sizeof(int32_t));

    bk_batch_host *h = &bb->h;
    h->n_tokens = n_tokens;
    h->n_seqs = n_seqs;
    h->max_blocks = nb;
    h->positions = bb->positions;
    h->seq_start = bb->seq_start;
    h->seq_len = bb->seq_len;
    h->block_tables = bb->tables;
    h->slot_mapping = bb->slots;
    bk_batch *b = &bb->b;
    b->n_tokens = n_tokens;
    b->n_seqs = n_seqs;
    b->seq_start = (const int32_t *)bb->dev[0];
    b->seq_len = (const int32_t *)bb->dev[1];
    b->positions = (const int32_t *)bb->dev[2];
    b->block_tables = (const int32_t *)bb->dev[3];
    b->slot_mapping = (const int32_t *)bb->dev[4];
    b->max_blocks = nb;
    b->max_seq_len = ctx;

    const size_t pool = (size_t)bb->n_blocks * B_BLOCK * row;
    bb->k_cache = bench_alloc_fill(pool, 1);
    bb->v_cache = bench_alloc_fill(pool, 2);
    bb->q = bench_alloc_fill((size_t)n_tokens * B_HEADS * B_DIM, 3);
    bb->k = bench_alloc_fill((size_t)n_tokens * row, 4);
    bb->v = bench_alloc_fill((size_t)n_tokens * row, 5);
    BENCH_CU(cudaMalloc(&bb->out, (size_t)n_tokens * B_HEADS * B_DIM * 2));
    BENCH_CU(cudaStreamSynchronize(stream));
}

static void bench_batch_free(bench_batch *bb)
{
    for (int i = 0; i < 5; i++)
        cudaFree(bb->dev[i]);
    cudaFree(bb->k_cache);
    cudaFree(bb->v_cache);
    cudaFree(bb->q);
    cudaFree(bb->k);
    cudaFree(bb->v);
    cudaFree(bb->out);
    free(bb->seq_start);
    free(bb->seq_len);
    free(bb->positions);
    free(bb->slots);
    free(bb->tables);
}

static void bench_call(bench_batch *bb, const bk_attn *a)
{
    kiln_status st = cuda_attention(&bb->b, &bb->h, a, bb->q, bb->k, bb->v, bb->k_cache,
                                    bb->v_cache, bb->n_blocks, B_BLOCK, KILN_DT_BF16, bb->out,
                                    stream);
    if (st != KILN_OK) {
        fprintf(stderr, "attention_bench: %s\n", kiln_last_error());
        exit(1);
    }
}

/* Mean seconds per call, from a graph of `iters` calls after a warm-up. */
static double bench_time(bench_batch *bb, const bk_attn *a)
{
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaEvent_t e0, e1;
    float ms = 0.0f;

    bench_call(bb, a);
    BENCH_CU(cudaStreamSynchronize(stream));
    BENCH_CU(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    for (int i = 0; i < iters; i++)
        bench_call(bb, a);
    BENCH_CU(cudaStreamEndCapture(stream, &graph));
    BENCH_CU(cudaGraphInstantiate(&exec, graph, 0));
    BENCH_CU(cudaGraphLaunch(exec, stream));
    BENCH_CU(cudaEventCreate(&e0));
    BENCH_CU(cudaEventCreate(&e1));
    BENCH_CU(cudaEventRecord(e0, stream));
    BENCH_CU(cudaGraphLaunch(exec, stream));
    BENCH_CU(cudaEventRecord(e1, stream));
    BENCH_CU(cudaEventSynchronize(e1));
    BENCH_CU(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return (double)ms * 1e-3 / iters;
}

static bk_attn bench_attn(void)
{
    bk_attn a;
    memset(&a, 0, sizeof a);
    a.n_heads = B_HEADS;
    a.n_kv_heads = B_KV_HEADS;
    a.head_dim = B_DIM;
    a.scale = 0.08838834764831845f;
    a.causal = true;
    a.use_cache = true;
    return a;
}

static void bench_decode(double copy_bw)
{
    static const int batches[] = {1, 8, 64}, ctxs[] = {1024, 4096, 16384};
    const bk_attn a = bench_attn();

    printf("\ndecode (Llama-3.1-8B heads: 32 q / 8 kv x 128, bf16, block %d)\n", B_BLOCK);
    printf("%6s %7s %6s %10s %9s %9s\n", "batch", "ctx", "split", "us", "GB/s", "of copy");
    for (int bi = 0; bi < 3; bi++) {
        for (int ci = 0; ci < 3; ci++) {
            bench_batch bb;
            bench_batch_make(&bb, batches[bi], ctxs[ci], 1);
            const double sec = bench_time(&bb, &a);
            const double bytes = (double)batches[bi] * ctxs[ci] * B_KV_HEADS * B_DIM * 2.0 * 2.0;
            const double gbps = bytes / sec / 1e9;
            const int32_t split = attn_decode_splits(batches[bi], B_KV_HEADS,
                                                     B_HEADS / B_KV_HEADS, ctxs[ci],
                                                     dev.sm_count);
            printf("%6d %7d %6d %10.1f %9.1f %8.1f%%\n", batches[bi], ctxs[ci], split,
                   sec * 1e6, gbps, 100.0 * gbps * 1e9 / copy_bw);
            fprintf(json, "{\"bench\":\"attention\",\"op\":\"decode\",\"device\":\"%s\","
                    "\"dtype\":\"bf16\",\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,"
                    "\"block_size\":%d,\"batch\":%d,\"ctx\":%d,\"split\":%d,\"us\":%.2f,"
                    "\"kv_gbps\":%.1f,\"copy_gbps\":%.1f,\"frac_of_copy\":%.4f}\n",
                    dev.name, B_HEADS, B_KV_HEADS, B_DIM, B_BLOCK, batches[bi], ctxs[ci],
                    split, sec * 1e6, gbps, copy_bw / 1e9, gbps * 1e9 / copy_bw);
            bench_batch_free(&bb);
        }
    }
}

/* The decode split's minimum keys (attn_decode_set_min_keys) at the
 * Llama-3.2-1B heads (32 q / 8 kv x 64), batch 1, short and long contexts:
 * fewer, longer splits against more CTAs and a combine kernel. */
static void bench_decode_min_keys(double copy_bw)
{
    static const int ctxs[] = {148, 512, 2048, 8192}, mins[] = {0, 64, 128, 256, 512, 1024};
    bk_attn a = bench_attn();
    const char *commit = getenv("KILN_COMMIT");
    a.head_dim = 64;
    a.scale = 0.125f;

    printf("\ndecode split minimum (Llama-3.2-1B heads: 32 q / 8 kv x 64, batch 1)\n");
    printf("%7s %9s %6s %10s %9s\n", "ctx", "min_keys", "split", "us", "GB/s");
    for (int ci = 0; ci < 4; ci++) {
        bench_batch bb;
        bench_batch_make(&bb, 1, ctxs[ci], 1); /* sized for 128: a 64-wide head fits */
        for (int mi = 0; mi < 6; mi++) {
            if (attn_decode_set_min_keys(mins[mi]) != KILN_OK) {
                fprintf(stderr, "attention_bench: %s\n", kiln_last_error());
                exit(1);
            }
            const int mk = mins[mi] ? mins[mi] : ATTN_DECODE_MIN_KEYS;
            const double sec = bench_time(&bb, &a);
            const double gbps = (double)ctxs[ci] * B_KV_HEADS * 64 * 2.0 * 2.0 / sec / 1e9;
            const int32_t split = attn_decode_splits(1, B_KV_HEADS, B_HEADS / B_KV_HEADS,
                                                     ctxs[ci], dev.sm_count);
            printf("%7d %9d %6d %10.2f %9.1f\n", ctxs[ci], mk, split, sec * 1e6, gbps);
            fprintf(json, "{\"bench\":\"attention\",\"op\":\"decode\",\"device\":\"%s\","
                    "\"commit\":\"%s\",\"model\":\"llama-3.2-1b\",\"dtype\":\"bf16\","
                    "\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":64,\"block_size\":%d,"
                    "\"batch\":1,\"ctx\":%d,\"min_keys\":%d,\"split\":%d,\"us\":%.2f,"
                    "\"kv_gbps\":%.1f,\"copy_gbps\":%.1f,\"frac_of_copy\":%.4f}\n",
                    dev.name, commit ? commit : "unknown", B_HEADS, B_KV_HEADS, B_BLOCK,
                    ctxs[ci], mk, split, sec * 1e6, gbps, copy_bw / 1e9, gbps * 1e9 / copy_bw);
        }
        attn_decode_set_min_keys(0);
        bench_batch_free(&bb);
    }
}

/* "default" (the engine's), then every variant's name into v[0..cap)
 * (none with --default-only); the count. */
static int bench_variants(const char **v, int cap)
{
    int n = 1;
    v[0] = "default";
    while (!default_only && n < cap && attn_prefill_variant_name(n - 1))
        v[n] = attn_prefill_variant_name(n - 1), n++;
    return n;
}

/* Every prefill kernel variant (attn_prefill_set_variant, the names of
 * KILN_CUDA_PREFILL), "default" being the one the engine runs. */
static void bench_prefill(void)
{
    static const int seqs[] = {1, 8}, lens[] = {2048, 512};
    const char *variants[16] = {"default"};
    const int n_variants = bench_variants(variants, 16);
    const bk_attn a = bench_attn();
    const char *commit = getenv("KILN_COMMIT");

    printf("\nprefill (causal, from an empty cache)\n");
    printf("%8s %6s %7s %10s %9s\n", "variant", "seqs", "len", "us", "TFLOP/s");
    for (int i = 0; i < 2; i++) {
        bench_batch bb;
        bench_batch_make(&bb, seqs[i], lens[i], lens[i]);
        for (int v = 0; v < n_variants; v++) {
            if (attn_prefill_set_variant(v ? variants[v] : NULL) != KILN_OK) {
                fprintf(stderr, "attention_bench: %s\n", kiln_last_error());
                exit(1);
            }
            const double sec = bench_time(&bb, &a);
            const double pairs = (double)seqs[i] * lens[i] * (lens[i] + 1.0) / 2.0;
            const double flops = 4.0 * B_DIM * B_HEADS * pairs;
            const double tflops = flops / sec / 1e12;
            printf("%8s %6d %7d %10.1f %9.1f\n", variants[v], seqs[i], lens[i], sec * 1e6,
                   tflops);
            fprintf(json, "{\"bench\":\"attention\",\"op\":\"prefill\",\"device\":\"%s\","
                    "\"commit\":\"%s\",\"variant\":\"%s\",\"dtype\":\"bf16\",\"n_heads\":%d,"
                    "\"n_kv_heads\":%d,\"head_dim\":%d,\"causal\":true,\"seqs\":%d,"
                    "\"len\":%d,\"us\":%.2f,\"tflops\":%.2f}\n",
                    dev.name, commit ? commit : "unknown", variants[v], B_HEADS, B_KV_HEADS,
                    B_DIM, seqs[i], lens[i], sec * 1e6, tflops);
        }
        attn_prefill_set_variant(NULL);
        bench_batch_free(&bb);
    }
}

/* An encoder's attention: 12 heads of E_DIM (64: bge-base, 32:
 * all-MiniLM-L6-v2; no GQA), bidirectional within each of E_SEQS documents
 * of E_MIN..E_MAX tokens (uniform, a fixed seed), no cache; q, k, v packed,
 * and inside one fused q/k/v projection output (bk_attn.qkv_stride), as the
 * engine's BERT runs them; the kernel's encoder form and the general one
 * (attn_prefill_set_encoder_form).  Every variant at head_dim 64 (16 and 32
 * have one kernel).  TFLOP/s of 4 * head_dim * n_heads * sum of len^2. */
#define E_HEADS 12
#define E_SEQS 120
#define E_MIN 16
#define E_MAX 256

static void bench_encoder(int E_DIM)
{
    const char *variants[16] = {"default"};
    const int n_variants = E_DIM == 64 ? bench_variants(variants, 16) : 1;
    const char *commit = getenv("KILN_COMMIT");
    const int64_t width = (int64_t)E_HEADS * E_DIM;
    int32_t start[E_SEQS + 1], lens[E_SEQS];
    double sq = 0.0;
    uint32_t x = 12345u;

    start[0] = 0;
    for (int s = 0; s < E_SEQS; s++) {
        x = x * 1664525u + 1013904223u;
        lens[s] = E_MIN + (int32_t)((x >> 8) % (uint32_t)(E_MAX - E_MIN + 1));
        start[s + 1] = start[s] + lens[s];
        sq += (double)lens[s] * lens[s];
    }
    const int32_t n = start[E_SEQS];
    int32_t *pos = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    if (!pos) {
        fprintf(stderr, "attention_bench: out of host memory\n");
        exit(1);
    }
    for (int s = 0; s < E_SEQS; s++)
        for (int32_t i = 0; i < lens[s]; i++)
            pos[start[s] + i] = i;
    void *g_start = bench_upload(start, sizeof start), *g_len = bench_upload(lens, sizeof lens);
    void *g_pos = bench_upload(pos, (size_t)n * sizeof(int32_t));
    void *qkv = bench_alloc_fill((size_t)n * 3 * width, 6);
    void *q = bench_alloc_fill((size_t)n * width, 7), *k = bench_alloc_fill((size_t)n * width, 8);
    void *v = bench_alloc_fill((size_t)n * width, 9), *out = NULL;
    BENCH_CU(cudaMalloc(&out, (size_t)n * width * 2));
    BENCH_CU(cudaStreamSynchronize(stream));

    bench_batch bb;
    memset(&bb, 0, sizeof bb);
    bb.h.n_tokens = bb.b.n_tokens = n;
    bb.h.n_seqs = bb.b.n_seqs = E_SEQS;
    bb.h.seq_start = start;
    bb.h.seq_len = lens;
    bb.h.positions = pos;
    bb.b.seq_start = (const int32_t *)g_start;
    bb.b.seq_len = (const int32_t *)g_len;
    bb.b.positions = (const int32_t *)g_pos;
    bb.b.max_seq_len = E_MAX;

    bk_attn a;
    memset(&a, 0, sizeof a);
    a.n_heads = a.n_kv_heads = E_HEADS;
    a.head_dim = E_DIM;
    a.scale = 1.0f / sqrtf((float)E_DIM);
    printf("\nencoder (%s heads: %d x %d, bidirectional, %d documents of %d..%d, "
           "%d tokens)\n", E_DIM == 64 ? "bge-base" : "all-MiniLM-L6-v2", E_HEADS, E_DIM,
           E_SEQS, E_MIN, E_MAX, n);
    printf("%8s %7s %8s %10s %9s\n", "variant", "layout", "form", "us", "TFLOP/s");
    for (int lf = 0; lf < 4; lf++) {
        const int fused = lf >> 1, general = lf & 1;
        attn_prefill_set_encoder_form(!general);
        bb.q = fused ? qkv : q;
        bb.k = fused ? (char *)qkv + width * 2 : k;
        bb.v = fused ? (char *)qkv + 2 * width * 2 : v;
        bb.out = out;
        a.qkv_stride = fused ? 3 * width : 0;
        for (int vi = 0; vi < n_variants; vi++) {
            if (attn_prefill_set_variant(vi ? variants[vi] : NULL) != KILN_OK) {
                fprintf(stderr, "attention_bench: %s\n", kiln_last_error());
                exit(1);
            }
            const double sec = bench_time(&bb, &a);
            const double tflops = 4.0 * E_DIM * E_HEADS * sq / sec / 1e12;
            const char *form = general ? "general" : "encoder";
            printf("%8s %7s %8s %10.1f %9.1f\n", variants[vi], fused ? "fused" : "packed",
                   form, sec * 1e6, tflops);
            fprintf(json, "{\"bench\":\"attention\",\"op\":\"encoder\",\"device\":\"%s\","
                    "\"commit\":\"%s\",\"variant\":\"%s\",\"form\":\"%s\","
                    "\"dtype\":\"bf16\",\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,"
                    "\"causal\":false,\"seqs\":%d,\"len\":\"%d..%d\",\"tokens\":%d,"
                    "\"layout\":\"%s\",\"us\":%.2f,\"tflops\":%.2f}\n",
                    dev.name, commit ? commit : "unknown", variants[vi], form, E_HEADS,
                    E_HEADS, E_DIM, E_SEQS, E_MIN, E_MAX, n, fused ? "fused" : "packed",
                    sec * 1e6, tflops);
        }
        attn_prefill_set_variant(NULL);
    }
    attn_prefill_set_encoder_form(true);
    cudaFree(g_start);
    cudaFree(g_len);
    cudaFree(g_pos);
    cudaFree(qkv);
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(out);
    free(pos);
}

int main(int argc, char **argv)
{
    char line[512];
    json = stdout;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = fopen(argv[++i], "a");
            if (!json) {
                perror(argv[i]);
                return 1;
            }
        } else if (!strcmp(argv[i], "--prefill-only")) {
            prefill_only = true;
        } else if (!strcmp(argv[i], "--default-only")) {
            default_only = true;
        } else if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
            iters = atoi(argv[++i]);
            iters = iters < 1 ? 1 : iters;
        } else {
            fprintf(stderr, "usage: %s [--json FILE] [--iters N] [--prefill-only] "
                    "[--default-only]\n", argv[0]);
            return 2;
        }
    }
    if (cudev_query(0, &dev) != KILN_OK) {
        fprintf(stderr, "attention_bench: %s\n", kiln_last_error());
        return 1;
    }
    BENCH_CU(cudaSetDevice(0));
    BENCH_CU(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudev_describe(&dev, line, sizeof line);
    printf("%s\n", line);

    const double copy_bw = bench_copy_bw();
    printf("device-to-device copy: %.1f GB/s (read + write)\n", copy_bw / 1e9);
    fprintf(json, "{\"bench\":\"attention\",\"op\":\"copy\",\"device\":\"%s\","
            "\"copy_gbps\":%.1f,\"peak_gbps\":%.1f}\n", dev.name, copy_bw / 1e9,
            dev.mem_bw_bytes_s / 1e9);
    if (!prefill_only) {
        bench_decode(copy_bw);
        bench_decode_min_keys(copy_bw);
    }
    bench_prefill();
    bench_encoder(64);
    bench_encoder(32);

    attn_workspace_release();
    cudaStreamDestroy(stream);
    if (json != stdout)
        fclose(json);
    return 0;
}

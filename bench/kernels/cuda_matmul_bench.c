/*
 * cuda_matmul_bench.c - the CUDA backend's matmul on decode-step shapes:
 * the gemv kernel (gemv.cu) in each of its splits, with and without
 * programmatic dependent launch, against cuBLASLt (bk_cuda_opts.no_gemv),
 * each checked against cuBLASLt and timed, next to the device-to-device
 * copy bandwidth measured in the same run.
 *
 *   make -C build cuda_matmul_bench && build/cuda_matmul_bench [iters] > out.json
 *
 * Shapes are Llama-3.1-8B's (q/k/v fused 6144x4096, o 4096x4096, k/v
 * 1024x4096, gate/up 14336x4096, down 4096x14336, lm_head 128256x4096)
 * and Llama-3.2-1B's (q/k/v 3072x2048, o 2048x2048, gate/up 8192x2048,
 * down 2048x8192) at n = 1, 2, 4 and 8 rows, bf16.  Every call reads a
 * different copy of W, enough copies for 256 MB, so no call finds its
 * matrix in L2 (a decode step reads each weight once).  gemv is forced for
 * every shape (KILN_CUDA_GEMV_ALL=1), its split set per backend
 * (KILN_CUDA_GEMV_SPLIT), "pick" is gemv_cfg_pick's choice.
 *
 * Then the chain: the five matmuls of an 8B layer (q/k/v, o, gate, up,
 * down) over 8 layers of distinct weights, back to back on one stream as
 * a decode step issues them, so a launch overlaps the kernel before it when
 * programmatic launch is on; reported as GB/s of the weights and as the
 * fraction of the copy bandwidth.  GB/s counts the bytes of W, x and y once
 * per call.  Prints a table to stderr and one JSON array (telemetry/report.h
 * records) to stdout.
 */
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "base/clock.h"
#include "base/error.h"
#include "format/quant.h"
#include "telemetry/nvml.h"
#include "telemetry/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mm_shape {
    const char *what;
    int64_t m, k;
} mm_shape;

static const mm_shape shapes[] = {
    {"8b qkv", 6144, 4096},       {"8b o", 4096, 4096},         {"8b k/v", 1024, 4096},
    {"8b gate/up", 14336, 4096},  {"8b down", 4096, 14336},     {"8b lm_head", 128256, 4096},
    {"1b qkv", 3072, 2048},       {"1b o", 2048, 2048},         {"1b gate/up", 8192, 2048},
    {"1b down", 2048, 8192},
};
static const int rows[] = {1, 2, 4, 8};

/* the backends compared: cuBLASLt, gemv's pick with and without
 * programmatic launch, then every split with it */
typedef struct variant {
    const char *name;
    const char *split; /* KILN_CUDA_GEMV_SPLIT or NULL */
    int gemv, pdl;
} variant;
static const variant variants[] = {
    {"cublaslt", NULL, 0, 0}, {"gemv pick", NULL, 1, 1}, {"gemv pick nopdl", NULL, 1, 0},
    {"gemv 1x4", "1x4", 1, 1}, {"gemv 2x2", "2x2", 1, 1}, {"gemv 2x4", "2x4", 1, 1},
    {"gemv 4x1", "4x1", 1, 1}, {"gemv 4x2", "4x2", 1, 1}, {"gemv 8x1", "8x1", 1, 1},
};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

#define CHECK(call)                                                                    \
    do {                                                                               \
        if ((call) != KILN_OK) {                                                       \
            fprintf(stderr, "cuda_matmul_bench: %s: %s\n", #call, kiln_last_error()); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static backend *variant_backend(const variant *v)
{
    bk_cuda_opts o;
    backend *be;

    bk_cuda_opts_default(&o);
    o.no_gemv = !v->gemv;
    setenv("KILN_CUDA_GEMV_ALL", "1", 1); /* the lab times gemv on every shape */
    if (v->split)
        setenv("KILN_CUDA_GEMV_SPLIT", v->split, 1);
    if (!v->pdl)
        setenv("KILN_CUDA_NO_PDL", "1", 1);
    CHECK(bk_cuda_create_opts(&o, &be));
    unsetenv("KILN_CUDA_GEMV_ALL");
    unsetenv("KILN_CUDA_GEMV_SPLIT");
    unsetenv("KILN_CUDA_NO_PDL");
    return be;
}

/* Seconds per call of iters calls (after a warm-up pass over the copies),
 * call i reading w[i % nw]. */
static double time_mm(backend *be, const void *x, int64_t n, const bk_tensor *w, int nw, void *y,
                      int iters)
{
    for (int i = 0; i < nw; i++)
        CHECK(be->ops->matmul(be, x, n, &w[i], NULL, y));
    CHECK(be->ops->sync(be));
    uint64_t t0 = clock_now_ns();
    for (int i = 0; i < iters; i++)
        CHECK(be->ops->matmul(be, x, n, &w[i % nw], NULL, y));
    CHECK(be->ops->sync(be));
    return (double)(clock_now_ns() - t0) * 1e-9 / iters;
}

static json_t *record(const char *bench, const char *shape, const char *kernel, int64_t n,
                      int iters, double value, double copy_gbs, double peer, const char *device,
                      const char *driver)
{
    json_t *r = report_new(bench, shape);
    json_t *st = json_object(), *p = json_object();
    json_object_set_new(st, "dtype", json_string("bf16"));
    json_object_set_new(st, "n", json_integer(n));
    json_object_set_new(st, "iters", json_integer(iters));
    json_object_set_new(st, "kernel", json_string(kernel));
    json_object_set_new(st, "l2_cold", json_true());
    json_object_set_new(r, "settings", st);
    json_object_set_new(r, "value", json_real(value));
    json_object_set_new(r, "unit", json_string("GB/s (W + x + y)"));
    json_object_set_new(r, "ceiling", json_real(copy_gbs));
    json_object_set_new(r, "ceiling_what",
                        json_string("device-to-device copy, read + write, measured in this run"));
    json_object_set_new(p, "name", json_string("cuBLASLt (kiln's plan cache)"));
    json_object_set_new(p, "version", json_string("CUDA toolkit"));
    json_object_set_new(p, "value", json_real(peer));
    json_object_set_new(r, "peer", p);
    json_object_set_new(r, "device", json_string(device));
    json_object_set_new(r, "driver", json_string(driver));
    return r;
}

/* Largest |a - b| over the largest |b|, both n x m results. */
static double rel_diff(backend *ba, const void *ya, backend *bb, const void *yb, int64_t count)
{
    float *a = malloc((size_t)count * sizeof *a), *b = malloc((size_t)count * sizeof *b);
    double diff = 0, scale = 0;
    if (!a || !b) {
        fprintf(stderr, "cuda_matmul_bench: out of memory\n");
        exit(1);
    }
    CHECK(ba->ops->to_host_f32(ba, ya, count, a));
    CHECK(bb->ops->to_host_f32(bb, yb, count, b));
    for (int64_t i = 0; i < count; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    free(a);
    free(b);
    return scale > 0 ? diff / scale : diff;
}

#define CHAIN_LAYERS 8
#define CHAIN_MM 5

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 200;
    backend *be[N_VARIANTS];
    double copy_gbs = 0;
    char drv[96] = "unknown", driver[160];
    json_t *all = json_array();

    for (size_t v = 0; v < N_VARIANTS; v++)
        be[v] = variant_backend(&variants[v]);
    backend *lt = be[0], *al = be[1]; /* al allocates for everyone: one device */
    const char *device = bk_cuda_info(al)->name;
    CHECK(bk_cuda_copy_gbs(al, (size_t)1 << 30, &copy_gbs));
    nvml_driver_version(drv, sizeof drv);
    snprintf(driver, sizeof driver, "%s (CUDA %d.%d)", drv, bk_cuda_info(al)->driver_version / 1000,
             bk_cuda_info(al)->driver_version % 1000 / 10);
    fprintf(stderr, "%s, copy bandwidth %.0f GB/s; GB/s of W + x + y, L2-cold\n", device,
            copy_gbs);
    fprintf(stderr, "%-11s %6s %6s %2s", "shape", "m", "k", "n");
    for (size_t v = 0; v < N_VARIANTS; v++)
        fprintf(stderr, " %9.9s", variants[v].name + (variants[v].gemv ? 5 : 0));
    fprintf(stderr, "\n");

    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const mm_shape *s = &shapes[si];
        double wbytes = (double)(s->m * s->k) * 2.0;
        int nw = (int)ceil(256e6 / wbytes);
        bk_tensor w[64], xt;
        void *y, *yref;
        if (nw > 64)
            nw = 64;
        for (int i = 0; i < nw; i++) /* copies of one matrix: same values, cold in L2 */
            CHECK(al->ops->weight_random(al, s->k, s->m, 7 + si, -0.02f, 0.02f, &w[i]));
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            int64_t n = rows[ri];
            size_t ybytes = (size_t)(n * s->m) * 2;
            double gbs[N_VARIANTS];
            CHECK(al->ops->weight_random(al, s->k, n, 99, -1.0f, 1.0f, &xt));
            CHECK(al->ops->alloc(al, ybytes, &y));
            CHECK(al->ops->alloc(al, ybytes, &yref));
            CHECK(al->ops->sync(al));
            double bytes = (double)(s->m * s->k + n * s->k + n * s->m) * 2.0;
            fprintf(stderr, "%-11s %6lld %6lld %2lld", s->what, (long long)s->m, (long long)s->k,
                    (long long)n);
            for (size_t v = 0; v < N_VARIANTS; v++) {
                double t = time_mm(be[v], xt.data, n, w, nw, v ? y : yref, iters);
                gbs[v] = bytes / t / 1e9;
                fprintf(stderr, " %9.0f", gbs[v]);
                if (v) { /* gemv against cuBLASLt: both accumulate in f32, round once */
                    double d = rel_diff(be[v], y, lt, yref, n * s->m);
                    if (d > 2e-2) {
                        fprintf(stderr, "\ncuda_matmul_bench: %s and cuBLASLt disagree (%.3g)\n",
                                variants[v].name, d);
                        return 1;
                    }
                }
            }
            fprintf(stderr, "\n");
            char shape[128];
            snprintf(shape, sizeof shape, "%s %lldx%lld", s->what, (long long)s->m,
                     (long long)s->k);
            for (size_t v = 1; v < N_VARIANTS; v++)
                json_array_append_new(all, record("matmul_decode", shape, variants[v].name, n,
                                                  iters, gbs[v], copy_gbs, gbs[0], device,
                                                  driver));
            al->ops->weight_free(al, &xt);
            al->ops->free(al, y);
            al->ops->free(al, yref);
        }
        for (int i = 0; i < nw; i++)
            al->ops->weight_free(al, &w[i]);
    }

    /* ---- the chain: an 8B layer's matmuls, 8 layers of distinct weights */
    {
        static const int64_t mk[CHAIN_MM][2] = {
            {6144, 4096}, {4096, 4096}, {14336, 4096}, {14336, 4096}, {4096, 14336}};
        bk_tensor cw[CHAIN_LAYERS][CHAIN_MM], xt;
        void *y;
        double wbytes = 0;
        for (int l = 0; l < CHAIN_LAYERS; l++)
            for (int j = 0; j < CHAIN_MM; j++) {
                CHECK(al->ops->weight_random(al, mk[j][1], mk[j][0], 100 + j, -0.02f, 0.02f,
                                             &cw[l][j]));
                wbytes += (double)(mk[j][0] * mk[j][1]) * 2.0;
            }
        CHECK(al->ops->weight_random(al, 14336, 8, 99, -1.0f, 1.0f, &xt));
        CHECK(al->ops->alloc(al, (size_t)8 * 14336 * 2, &y));
        CHECK(al->ops->sync(al));
        fprintf(stderr, "chain: %d layers x (qkv, o, gate, up, down), %.2f GB; GB/s of the "
                "weights, %% of copy\n", CHAIN_LAYERS, wbytes / 1e9);
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            int64_t n = rows[ri];
            double gl = 0;
            for (size_t v = 0; v < 3; v++) {
                backend *b = be[v];
                int reps = iters / 20 > 2 ? iters / 20 : 2;
                for (int l = 0; l < CHAIN_LAYERS; l++) /* warm-up, plans made */
                    for (int j = 0; j < CHAIN_MM; j++)
                        CHECK(b->ops->matmul(b, xt.data, n, &cw[l][j], NULL, y));
                CHECK(b->ops->sync(b));
                uint64_t t0 = clock_now_ns();
                for (int r = 0; r < reps; r++)
                    for (int l = 0; l < CHAIN_LAYERS; l++)
                        for (int j = 0; j < CHAIN_MM; j++)
                            CHECK(b->ops->matmul(b, xt.data, n, &cw[l][j], NULL, y));
                CHECK(b->ops->sync(b));
                double t = (double)(clock_now_ns() - t0) * 1e-9 / reps;
                double g = wbytes / t / 1e9;
                if (v == 0)
                    gl = g;
                fprintf(stderr, "  n=%lld %-16s %7.0f GB/s  %5.1f %%  %7.1f us a layer\n",
                        (long long)n, variants[v].name, g, 100.0 * g / copy_gbs,
                        t / CHAIN_LAYERS * 1e6);
                if (v)
                    json_array_append_new(all, record("matmul_decode_chain",
                                                      "8b layer qkv+o+gate+up+down",
                                                      variants[v].name, n, reps, g, copy_gbs, gl,
                                                      device, driver));
            }
        }
        for (int l = 0; l < CHAIN_LAYERS; l++)
            for (int j = 0; j < CHAIN_MM; j++)
                al->ops->weight_free(al, &cw[l][j]);
        al->ops->weight_free(al, &xt);
        al->ops->free(al, y);
    }

    char *js = json_dumps(all, JSON_INDENT(1));
    printf("%s\n", js);
    free(js);
    json_decref(all);
    for (size_t v = 0; v < N_VARIANTS; v++)
        be[v]->ops->destroy(be[v]);
    return 0;
}

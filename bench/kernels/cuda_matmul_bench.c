/*
 * cuda_matmul_bench.c - the CUDA backend's matmul on decode-step shapes:
 * the gemv kernel (gemv.cu) against cuBLASLt (bk_cuda_opts.no_gemv), each
 * checked against the other and timed, next to the device-to-device copy
 * bandwidth measured in the same run.
 *
 *   make -C build cuda_matmul_bench && build/cuda_matmul_bench [iters] > out.json
 *
 * Shapes are Llama-3.1-8B's (q/o 4096x4096, k/v 1024x4096, gate/up
 * 14336x4096, down 4096x14336, lm_head 128256x4096) and Llama-3.2-1B's
 * (2048x2048, 512x2048, 8192x2048, 2048x8192) at n = 1, 4 and 8 rows, bf16.
 * Both sides are forced (gemv for every shape here, whatever cuda_matmul's
 * size rule would pick) through KILN_CUDA_GEMV_ALL=1.  GB/s
 * counts the bytes of W, x and y once per call.  Prints a table to stderr
 * and one JSON array (telemetry/report.h records) to stdout.
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
    {"8b q/o", 4096, 4096},      {"8b k/v", 1024, 4096},        {"8b gate/up", 14336, 4096},
    {"8b down", 4096, 14336},    {"8b lm_head", 128256, 4096},  {"1b q/o", 2048, 2048},
    {"1b gate/up", 8192, 2048},  {"1b down", 2048, 8192},
};
static const int rows[] = {1, 4, 8};

#define CHECK(call)                                                                    \
    do {                                                                               \
        if ((call) != KILN_OK) {                                                       \
            fprintf(stderr, "cuda_matmul_bench: %s: %s\n", #call, kiln_last_error()); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* Seconds per call of iters calls after 5 warm-up calls. */
static double time_mm(backend *be, const void *x, int64_t n, const bk_tensor *w, void *y,
                      int iters)
{
    for (int i = 0; i < 5; i++)
        CHECK(be->ops->matmul(be, x, n, w, NULL, y));
    CHECK(be->ops->sync(be));
    uint64_t t0 = clock_now_ns();
    for (int i = 0; i < iters; i++)
        CHECK(be->ops->matmul(be, x, n, w, NULL, y));
    CHECK(be->ops->sync(be));
    return (double)(clock_now_ns() - t0) * 1e-9 / iters;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 200;
    bk_cuda_opts o;
    backend *gv, *lt;
    double copy_gbs = 0;
    char drv[96] = "unknown", driver[160];
    json_t *all = json_array();

    bk_cuda_opts_default(&o);
    setenv("KILN_CUDA_GEMV_ALL", "1", 1); /* the lab times gemv on every shape */
    CHECK(bk_cuda_create_opts(&o, &gv));
    unsetenv("KILN_CUDA_GEMV_ALL");
    o.no_gemv = true;
    CHECK(bk_cuda_create_opts(&o, &lt));
    CHECK(bk_cuda_copy_gbs(gv, (size_t)1 << 30, &copy_gbs));
    nvml_driver_version(drv, sizeof drv);
    snprintf(driver, sizeof driver, "%s (CUDA %d.%d)", drv, bk_cuda_info(gv)->driver_version / 1000,
             bk_cuda_info(gv)->driver_version % 1000 / 10);
    fprintf(stderr, "%s, copy bandwidth %.0f GB/s\n", bk_cuda_info(gv)->name, copy_gbs);
    fprintf(stderr, "%-12s %6s %6s %3s %10s %10s %7s %9s\n", "shape", "m", "k", "n",
            "gemv GB/s", "cublasLt", "speedup", "max diff");

    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const mm_shape *s = &shapes[si];
        for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
            int64_t n = rows[ri];
            bk_tensor wg, wl, xg, xl;
            void *yg, *yl;
            size_t ybytes = (size_t)(n * s->m) * 2;
            /* the same values on both backends (same seeds) */
            CHECK(gv->ops->weight_random(gv, s->k, s->m, 7 + si, -0.02f, 0.02f, &wg));
            CHECK(lt->ops->weight_random(lt, s->k, s->m, 7 + si, -0.02f, 0.02f, &wl));
            CHECK(gv->ops->weight_random(gv, s->k, n, 99, -1.0f, 1.0f, &xg));
            CHECK(lt->ops->weight_random(lt, s->k, n, 99, -1.0f, 1.0f, &xl));
            CHECK(gv->ops->alloc(gv, ybytes, &yg));
            CHECK(lt->ops->alloc(lt, ybytes, &yl));
            double tg = time_mm(gv, xg.data, n, &wg, yg, iters);
            double tl = time_mm(lt, xl.data, n, &wl, yl, iters);

            /* agreement: both accumulate in f32 and round once */
            float *a = malloc((size_t)(n * s->m) * sizeof *a);
            float *b = malloc((size_t)(n * s->m) * sizeof *b);
            CHECK(gv->ops->to_host_f32(gv, yg, n * s->m, a));
            CHECK(lt->ops->to_host_f32(lt, yl, n * s->m, b));
            double diff = 0, scale = 0;
            for (int64_t i = 0; i < n * s->m; i++) {
                diff = fmax(diff, fabs((double)a[i] - b[i]));
                scale = fmax(scale, fabs((double)b[i]));
            }
            free(a);
            free(b);
            double bytes = (double)(s->m * s->k + n * s->k + n * s->m) * 2.0;
            double gg = bytes / tg / 1e9, gl = bytes / tl / 1e9;
            fprintf(stderr, "%-12s %6lld %6lld %3lld %10.0f %10.0f %6.2fx %9.2e\n", s->what,
                    (long long)s->m, (long long)s->k, (long long)n, gg, gl, gg / gl,
                    scale > 0 ? diff / scale : diff);
            if (scale > 0 && diff / scale > 2e-2) {
                fprintf(stderr, "cuda_matmul_bench: gemv and cuBLASLt disagree (%.3g)\n",
                        diff / scale);
                return 1;
            }

            char shape[128];
            snprintf(shape, sizeof shape, "%s %lldx%lld", s->what, (long long)s->m,
                     (long long)s->k);
            json_t *r = report_new("matmul_decode", shape);
            json_t *st = json_object(), *peer = json_object();
            json_object_set_new(st, "dtype", json_string("bf16"));
            json_object_set_new(st, "n", json_integer(n));
            json_object_set_new(st, "iters", json_integer(iters));
            json_object_set_new(st, "kernel", json_string("gemv.cu"));
            json_object_set_new(r, "settings", st);
            json_object_set_new(r, "value", json_real(gg));
            json_object_set_new(r, "unit", json_string("GB/s (W + x + y)"));
            json_object_set_new(r, "ceiling", json_real(copy_gbs));
            json_object_set_new(r, "ceiling_what", json_string("device-to-device copy, read + "
                                                                "write, measured in this run"));
            json_object_set_new(peer, "name", json_string("cuBLASLt (kiln's plan cache)"));
            json_object_set_new(peer, "version", json_string("CUDA toolkit"));
            json_object_set_new(peer, "value", json_real(gl));
            json_object_set_new(r, "peer", peer);
            json_object_set_new(r, "device", json_string(bk_cuda_info(gv)->name));
            json_object_set_new(r, "driver", json_string(driver));
            json_array_append_new(all, r);

            gv->ops->weight_free(gv, &wg);
            gv->ops->weight_free(gv, &xg);
            lt->ops->weight_free(lt, &wl);
            lt->ops->weight_free(lt, &xl);
            gv->ops->free(gv, yg);
            lt->ops->free(lt, yl);
        }
    }
    char *js = json_dumps(all, JSON_INDENT(1));
    printf("%s\n", js);
    free(js);
    json_decref(all);
    gv->ops->destroy(gv);
    lt->ops->destroy(lt);
    return 0;
}

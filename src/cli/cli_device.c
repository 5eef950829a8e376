/*
 * cli_device.c - --device and --dtype: which backend a subcommand runs on.
 *
 *   --device auto    the first CUDA GPU when this kiln has the CUDA backend
 *                    and a usable GPU is there, else the CPU (logged)
 *   --device cpu     the CPU backend (fp32 activations, --threads workers)
 *   --device cuda[:N] CUDA device N (0); no fallback: an error says why
 *   --dtype bf16|f16 the CUDA activation and weight type (bf16)
 *   --gpu-memory-utilization F  share of the GPU's memory kiln may hold
 *                    (0.90): weights and workspace first, the KV cache
 *                    gets the rest (cli_device_kv_budget)
 */
#include "cli/cli.h"

#include "backend/comm.h"
#include "base/error.h"
#include "base/log.h"
#ifdef KILN_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#ifdef KILN_HAVE_NCCL
#include "backend/cuda/comm_nccl.h"
#endif
#endif

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_device_init(cli_device *d)
{
    memset(d, 0, sizeof *d);
    d->kind = CLI_DEVICE_AUTO;
    d->dtype = KILN_DT_BF16;
    d->mem_util = 0.90;
}

void cli_device_usage(FILE *f)
{
    fprintf(f, "  --device auto|cpu|cuda[:N]  backend (auto: a CUDA GPU if there is one)\n"
               "  --dtype bf16|f16         GPU activation and weight type (bf16)\n"
               "  --gpu-memory-utilization F  share of GPU memory kiln may hold; the KV\n"
               "                           cache gets what weights leave (0.90)\n");
}

/* "cuda" or "cuda:N" -> N; -1 when s is not one of them. */
static int cli_cuda_ordinal(const char *s)
{
    char *end;
    long n;
    if (strncmp(s, "cuda", 4))
        return -1;
    if (!s[4])
        return 0;
    if (s[4] != ':' || !s[5])
        return -1;
    n = strtol(s + 5, &end, 10);
    return *end || n < 0 || n > 1024 ? -1 : (int)n;
}

int cli_device_parse(cli_device *d, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int ord;

    if (strcmp(a, "--device") && strcmp(a, "--dtype") && strcmp(a, "--gpu-memory-utilization"))
        return 0;
    if (!v) {
        fprintf(stderr, "kiln: %s needs a value\n", a);
        return -1;
    }
    (*i)++;
    if (!strcmp(a, "--gpu-memory-utilization")) {
        char *end;
        double u = strtod(v, &end);
        if (!*v || *end || !(u > 0.0 && u <= 1.0)) {
            fprintf(stderr, "kiln: --gpu-memory-utilization '%s': expected a number in (0, 1]\n",
                    v);
            return -1;
        }
        d->mem_util = u;
        return 1;
    }
    if (!strcmp(a, "--dtype")) {
        if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16"))
            d->dtype = KILN_DT_BF16;
        else if (!strcmp(v, "f16") || !strcmp(v, "fp16") || !strcmp(v, "float16"))
            d->dtype = KILN_DT_F16;
        else {
            fprintf(stderr, "kiln: --dtype '%s': expected bf16 or f16\n", v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(v, "auto")) {
        d->kind = CLI_DEVICE_AUTO;
    } else if (!strcmp(v, "cpu")) {
        d->kind = CLI_DEVICE_CPU;
    } else if ((ord = cli_cuda_ordinal(v)) >= 0) {
        d->kind = CLI_DEVICE_CUDA;
        d->ordinal = ord;
    } else {
        fprintf(stderr, "kiln: --device '%s': expected auto, cpu, cuda or cuda:N\n", v);
        return -1;
    }
    return 1;
}

kiln_status cli_device_create(const cli_device *d, int threads, backend **out)
{
    kiln_status st;

    *out = NULL;
    if (d->kind == CLI_DEVICE_CPU)
        return bk_cpu_create(threads, out);
#ifdef KILN_HAVE_CUDA
    if ((st = bk_cuda_create(d->ordinal, d->dtype, out)) == KILN_OK || d->kind == CLI_DEVICE_CUDA)
        return st ? kiln_err_wrap(st, "--device cuda:%d", d->ordinal) : KILN_OK;
    KILN_LOG_I("device auto: no usable GPU (%s); running on the CPU", kiln_last_error());
#else
    if (d->kind == CLI_DEVICE_CUDA)
        return kiln_err_set(KILN_ERR_UNSUPPORTED,
                            "--device cuda: this kiln was built without the CUDA backend "
                            "(build with -DKILN_CUDA=ON)");
#endif
    (void)st;
    return bk_cpu_create(threads, out);
}

kiln_status cli_device_create_n(const cli_device *d, int threads, int n, backend **out)
{
    kiln_status st;
    memset(out, 0, (size_t)(n > 0 ? n : 0) * sizeof *out);
    if (n < 1)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "%d engines", n);
    /* CPU workers of each backend: the threads (or the cores) split evenly */
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    int each = threads > 0 ? (threads + n - 1) / n : n == 1 ? 0 : nc > n ? (int)(nc / n) : 1;
    if ((st = cli_device_create(d, each, &out[0])))
        return st;
    bool cpu = !strcmp(out[0]->ops->name, "cpu");
#ifdef KILN_HAVE_CUDA
    int count = 0;
    if (!cpu && n > 1 && (st = cudev_count(&count)))
        goto fail;
#endif
    for (int i = 1; i < n; i++) {
        if (cpu) {
            st = bk_cpu_create(each, &out[i]);
        } else {
#ifdef KILN_HAVE_CUDA
            int first = d->kind == CLI_DEVICE_CUDA ? d->ordinal : 0;
            if (first + n > count) {
                st = kiln_err_set(KILN_ERR_INVALID_ARG, "%d engines need the GPUs cuda:%d.."
                                  "cuda:%d; %d visible", n, first, first + n - 1, count);
                goto fail;
            }
            cli_device di = *d;
            di.kind = CLI_DEVICE_CUDA;
            di.ordinal = first + i;
            st = cli_device_create(&di, threads, &out[i]);
#else
            st = kiln_err_set(KILN_ERR_INTERNAL, "%d engines: no CUDA backend", n);
#endif
        }
        if (st)
            goto fail;
    }
    return KILN_OK;
fail:
    for (int i = 0; i < n; i++)
        if (out[i]) {
            out[i]->ops->destroy(out[i]);
            out[i] = NULL;
        }
    return st;
}

#ifdef KILN_HAVE_NCCL
typedef struct cli_nccl_join {
    const uint8_t *id;
    int32_t rank, world;
    backend *be;
    comm **out;
    kiln_status st;
    char msg[512];
} cli_nccl_join;

static void *cli_nccl_join_main(void *arg)
{
    cli_nccl_join *j = arg;
    if ((j->st = comm_nccl_open(j->id, j->rank, j->world, j->be, j->out)))
        snprintf(j->msg, sizeof j->msg, "%s", kiln_last_error());
    return NULL;
}

/* An NCCL group over the n CUDA backends bes (one thread per rank joins:
 * ncclCommInitRank waits for every rank) into comms. */
static kiln_status cli_nccl_group(backend *const *bes, int n, comm **comms)
{
    uint8_t id[COMM_NCCL_ID_BYTES];
    cli_nccl_join j[CLI_MAX_RANKS];
    pthread_t th[CLI_MAX_RANKS];
    int started = 0;
    kiln_status st = comm_nccl_unique_id(id);
    for (int r = 0; r < n && !st; r++, started++) {
        j[r] = (cli_nccl_join){.id = id, .rank = r, .world = n, .be = bes[r], .out = &comms[r]};
        if (pthread_create(&th[r], NULL, cli_nccl_join_main, &j[r]))
            st = kiln_err_set(KILN_ERR_INTERNAL, "tensor parallelism: cannot start rank %d",
                              r);
    }
    for (int r = 0; r < started; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < started && !st; r++)
        if (j[r].st)
            st = kiln_err_set(j[r].st, "%s", j[r].msg);
    return st;
}
#endif

kiln_status cli_device_comms(backend *const *bes, int n, comm **comms)
{
    if (n < 1 || n > CLI_MAX_RANKS)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "tensor parallelism: %d ranks (1 to %d)", n,
                            CLI_MAX_RANKS);
    if (!strcmp(bes[0]->ops->name, "cpu"))
        return comm_threads_create(n, comms);
#ifdef KILN_HAVE_NCCL
    return cli_nccl_group(bes, n, comms);
#else
    return kiln_err_set(KILN_ERR_UNSUPPORTED, "tensor parallelism on a GPU: this kiln was built "
                        "without NCCL");
#endif
}

kiln_status cli_device_kv_budget(const cli_device *d, backend *be, size_t *out)
{
    *out = 0;
#ifdef KILN_HAVE_CUDA
    const cudev_info *di = bk_cuda_info(be);
    if (!di)
        return KILN_OK;
    double cap = d->mem_util * (double)di->total_mem;
    double others = (double)(di->total_mem - di->free_mem); /* at backend creation */
    double held = (double)bk_cuda_bytes_in_use(be);
    double left = cap - others - held;
    const double mib = 1024.0 * 1024.0;
    if (left < 1.0 * mib)
        return kiln_err_set(KILN_ERR_OOM, "--gpu-memory-utilization %.2f of %.0f MiB leaves no room "
                            "for the KV cache: other processes hold %.0f MiB, kiln %.0f MiB "
                            "(weights and workspace)", d->mem_util, (double)di->total_mem / mib,
                            others / mib, held / mib);
    *out = (size_t)left;
#else
    (void)d;
    (void)be;
#endif
    return KILN_OK;
}

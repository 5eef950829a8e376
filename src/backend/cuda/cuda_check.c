/* cuda_check.c - messages and the launch check behind cuda_check.h. */
#include "backend/cuda/cuda_check.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* -1: not decided yet (read KILN_CUDA_SYNC_CHECK at first use), 0 off, 1 on. */
static atomic_int sync_mode = -1;

static bool env_says_on(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "yes") == 0);
}

bool cuda_check_sync_enabled(void)
{
    int mode = atomic_load(&sync_mode);
    if (mode < 0) {
        int env = env_says_on(getenv("KILN_CUDA_SYNC_CHECK")) ? 1 : 0;
        int expected = -1;
        /* An explicit cuda_check_set_sync() that raced us wins. */
        atomic_compare_exchange_strong(&sync_mode, &expected, env);
        mode = atomic_load(&sync_mode);
    }
    return mode == 1;
}

void cuda_check_set_sync(bool on) { atomic_store(&sync_mode, on ? 1 : 0); }

kiln_status cuda_check_fail(cudaError_t e, const char *expr, const char *file, int line)
{
    /* Take the error off the last-error slot so a later launch check does
     * not report it again under another op's name. */
    (void)cudaGetLastError();
    return kiln_err_set(KILN_ERR_DEVICE, "cuda: %s failed: %s (%s:%d)", expr,
                        cudaGetErrorString(e), file, line);
}

kiln_status cuda_check_cublas_fail(const char *name, const char *text, const char *expr,
                                   const char *file, int line)
{
    return kiln_err_set(KILN_ERR_DEVICE, "cublas: %s failed: %s: %s (%s:%d)", expr,
                        name ? name : "?", text ? text : "?", file, line);
}

kiln_status cuda_check_launch(const char *opname, cudaStream_t stream, const char *file,
                              int line)
{
    enum cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    cudaError_t e = cudaGetLastError();

    if (e != cudaSuccess)
        return kiln_err_set(KILN_ERR_DEVICE, "cuda: kernel '%s' launch failed: %s (%s:%d)",
                            opname, cudaGetErrorString(e), file, line);
    if (!cuda_check_sync_enabled())
        return KILN_OK;

    /* A stream being captured into a graph must not be synchronized: doing
     * so would invalidate the capture.  The graph's launch is checked. */
    e = cudaStreamIsCapturing(stream, &capture);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kiln_err_set(KILN_ERR_DEVICE,
                            "cuda: kernel '%s': cudaStreamIsCapturing failed: %s (%s:%d)",
                            opname, cudaGetErrorString(e), file, line);
    }
    if (capture != cudaStreamCaptureStatusNone)
        return KILN_OK;

    e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return kiln_err_set(KILN_ERR_DEVICE,
                            "cuda: kernel '%s' failed while running: %s (%s:%d, "
                            "found by KILN_CUDA_SYNC_CHECK)",
                            opname, cudaGetErrorString(e), file, line);
    }
    return KILN_OK;
}

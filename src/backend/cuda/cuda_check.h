/*
 * cuda_check.h - the check macros every CUDA and cuBLAS call in kiln goes
 * through.  Plain C: host .c files and .cu files include it alike.
 *
 * The pattern.  A function that calls CUDA returns kiln_status, declares
 * `kiln_status st = KILN_OK;` and ends in one cleanup block labelled `err:`
 * that runs on success and failure alike (SQLite's single exit):
 *
 *     kiln_status foo_run(..., cudaStream_t stream)
 *     {
 *         kiln_status st = KILN_OK;
 *         void *tmp = NULL;
 *
 *         KILN_CUDA_CHECK(cudaMallocAsync(&tmp, bytes, stream));
 *         foo_kernel<<<grid, block, 0, stream>>>(tmp, n);
 *         KILN_CUDA_LAUNCH_CHECK("foo", stream);
 *     err:
 *         if (tmp)
 *             cudaFreeAsync(tmp, stream);  // cleanup itself is not checked
 *         return st;
 *     }
 *
 * On failure a macro stores KILN_ERR_DEVICE in `st`, sets this thread's
 * message with kiln_err_set and jumps to `err`:
 *
 *     cuda: cudaMallocAsync(&tmp, bytes, stream) failed: out of memory (foo.cu:42)
 *     cublas: cublasLtMatmul(...) failed: CUBLAS_STATUS_NOT_SUPPORTED: the
 *         functionality requested is not supported (gemm.c:88)
 *     cuda: kernel 'foo' launch failed: invalid configuration argument (foo.cu:44)
 *
 * A function with nothing to clean up still uses the label (`err: return st;`)
 * so every CUDA call site reads the same.  Where a jump does not fit (a loop
 * that must keep going, a destructor), call cuda_check_fail() directly: it
 * builds the same message and returns the status.
 *
 * The failed call's error is also taken off CUDA's per-thread "last error"
 * slot, so that the next KILN_CUDA_LAUNCH_CHECK does not blame a later kernel
 * for it.  (Sticky errors - an illegal address inside a kernel - poison the
 * whole context; every later call reports them again, which is right.)
 *
 * KILN_CUDA_LAUNCH_CHECK(opname, stream) follows every kernel launch.  It
 * reports launch errors (bad grid, no kernel image for this GPU, ...).  With
 * the environment variable KILN_CUDA_SYNC_CHECK=1 (or cuda_check_set_sync)
 * it also synchronizes `stream`, so that a fault inside the kernel is
 * reported at the op that caused it instead of at some later call.  The
 * synchronization is skipped while `stream` is being captured into a CUDA
 * graph, where it is not allowed.
 */
#ifndef KILN_BACKEND_CUDA_CHECK_H
#define KILN_BACKEND_CUDA_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "base/error.h"

/* Set the message "cuda: <expr> failed: <cudaGetErrorString(e)> (<file>:<line>)",
 * clear CUDA's last-error slot, and return KILN_ERR_DEVICE. */
kiln_status cuda_check_fail(cudaError_t e, const char *expr, const char *file, int line);

/* The cuBLAS/cuBLASLt counterpart: `name` and `text` are the failed
 * status's cublasGetStatusName() and cublasGetStatusString().  Returns
 * KILN_ERR_DEVICE. */
kiln_status cuda_check_cublas_fail(const char *name, const char *text, const char *expr,
                                   const char *file, int line);

/* The body of KILN_CUDA_LAUNCH_CHECK: KILN_OK, or KILN_ERR_DEVICE with a
 * message naming `opname` and file:line.  Synchronizes `stream` when
 * cuda_check_sync_enabled() and the stream is not capturing. */
kiln_status cuda_check_launch(const char *opname, cudaStream_t stream, const char *file,
                              int line);

/* Whether launch checks synchronize.  The first call reads
 * KILN_CUDA_SYNC_CHECK ("1", "true" or "yes" turn it on); a
 * cuda_check_set_sync() call overrides the environment.  Thread-safe. */
bool cuda_check_sync_enabled(void);
void cuda_check_set_sync(bool on);

#ifdef __cplusplus
}
#endif

/* Check a CUDA runtime call; on failure set `st` and `goto err`. */
#define KILN_CUDA_CHECK(call)                                                        \
    do {                                                                             \
        cudaError_t kiln_cuda_e_ = (call);                                           \
        if (kiln_cuda_e_ != cudaSuccess) {                                           \
            st = cuda_check_fail(kiln_cuda_e_, #call, __FILE__, __LINE__);           \
            goto err;                                                                \
        }                                                                            \
    } while (0)

/* Check a cuBLAS or cuBLASLt call; on failure set `st` and `goto err`.  The
 * including file must include <cublas_api.h> (or cublas_v2.h / cublasLt.h)
 * itself: this header does not pull cuBLAS into every CUDA file. */
#define KILN_CUBLAS_CHECK(call)                                                      \
    do {                                                                             \
        cublasStatus_t kiln_cublas_s_ = (call);                                      \
        if (kiln_cublas_s_ != CUBLAS_STATUS_SUCCESS) {                               \
            st = cuda_check_cublas_fail(cublasGetStatusName(kiln_cublas_s_),         \
                                        cublasGetStatusString(kiln_cublas_s_), #call, \
                                        __FILE__, __LINE__);                         \
            goto err;                                                                \
        }                                                                            \
    } while (0)

/* After every kernel launch: `opname` names the op in the message ("rmsnorm",
 * "dequant_q4_k"); `stream` is the stream the kernel was launched on. */
#define KILN_CUDA_LAUNCH_CHECK(opname, stream)                                       \
    do {                                                                             \
        st = cuda_check_launch((opname), (stream), __FILE__, __LINE__);              \
        if (st != KILN_OK)                                                           \
            goto err;                                                                \
    } while (0)

#endif /* KILN_BACKEND_CUDA_CHECK_H */

/*
 * kt_cuda.h - for GPU tests (tests/unit/gpu_test_*.c, CUDA builds): a CUDA
 * backend on device 0, or the test skipped when there is no GPU.  Include
 * after <cmocka.h>.
 */
#ifndef KILN_TEST_KT_CUDA_H
#define KILN_TEST_KT_CUDA_H

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "base/error.h"

/* A CUDA backend with activations of type dt (owned: ops->destroy); skips
 * the test (cmocka skip()) when no GPU is visible, fails it when the
 * backend cannot be made. */
static inline backend *kt_cuda_or_skip(kiln_dtype dt)
{
    int n = 0;
    backend *be = NULL;
    if (cudev_count(&n) || n < 1) {
        print_message("no GPU: %s\n", kiln_last_error());
        skip();
    }
    if (bk_cuda_create(0, dt, &be))
        fail_msg("bk_cuda_create: %s", kiln_last_error());
    return be;
}

#endif /* KILN_TEST_KT_CUDA_H */

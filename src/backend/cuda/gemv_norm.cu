/*
 * gemv_norm.cu - the residual-stream modes of the decode-row matmul
 * (gemv.cu): the input's RMSNorm on load, and the product added into y.
 */
#include "backend/cuda/gemv_impl.cuh"

kiln_status gemv_run_norm(int mode, kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                          int64_t m, const gemv_cfg *c, cudaStream_t stream)
{
    if (mode == GEMV_NORM)
        return gemv_run_mode<GEMV_NORM>(dt, o, n, k, m, c, stream);
    if (mode == GEMV_RES)
        return gemv_run_mode<GEMV_RES>(dt, o, n, k, m, c, stream);
    return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: no norm or residual kernel for mode %d",
                        mode);
}

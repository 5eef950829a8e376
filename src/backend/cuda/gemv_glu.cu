/*
 * gemv_glu.cu - the gated modes of the decode-row matmul (gemv.cu): gate,
 * up and the GLU in one launch, with or without the input's RMSNorm.
 */
#include "backend/cuda/gemv_impl.cuh"

kiln_status gemv_run_glu(int mode, kiln_dtype dt, const gemv_ops *o, int32_t n, int64_t k,
                         int64_t m, const gemv_cfg *c, cudaStream_t stream)
{
    if (mode == GEMV_GLU)
        return gemv_run_mode<GEMV_GLU>(dt, o, n, k, m, c, stream);
    if (mode == (GEMV_GLU | GEMV_NORM))
        return gemv_run_mode<GEMV_GLU | GEMV_NORM>(dt, o, n, k, m, c, stream);
    return kiln_err_set(KILN_ERR_INVALID_ARG, "gemv: no gated kernel for mode %d", mode);
}

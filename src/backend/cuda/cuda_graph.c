/*
 * cuda_graph.c - step capture: the ops between graph_begin and graph_end
 * are recorded from the backend's stream into a CUDA graph, instantiated
 * once and replayed by graph_launch.
 *
 * What a replay relies on: every buffer the recorded kernels read or write
 * (weights, workspace, KV pools, the batch buffer, attention scratch) is
 * still where it was at capture.  Weights, workspace and pools live as
 * long as the model and runner; the batch buffer can move when a larger
 * batch is uploaded, which bumps batch_epoch, and a graph of an older
 * epoch refuses to launch (KILN_ERR_RANGE) so its owner captures again.
 *
 * Capture uses cudaStreamCaptureModeThreadLocal: other threads' CUDA calls
 * are not affected, and a call on this thread that is illegal during
 * capture (a synchronisation, a cudaMalloc) invalidates the capture, which
 * graph_end reports as an error after ending it, so the stream is usable
 * again either way.
 */
#include "backend/cuda/cuda_impl.h"

#include "backend/cuda/cuda_check.h"
#include "base/alloc.h"
#include "base/error.h"

struct bk_graph {
    cudaGraphExec_t exec;
    uint64_t epoch;          /* cb->batch_epoch at capture */
};

kiln_status cuda_graph_begin(backend *be)
{
    kiln_status st = KILN_OK;
    KILN_CUDA_CHECK(cudaStreamBeginCapture(cuda_of(be)->stream,
                                           cudaStreamCaptureModeThreadLocal));
err:
    return st;
}

kiln_status cuda_graph_end(backend *be, bk_graph **out)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    cudaError_t e;

    *out = NULL;
    e = cudaStreamEndCapture(cb->stream, &graph);
    if (e != cudaSuccess || !graph) {
        st = cuda_check_fail(e != cudaSuccess ? e : cudaErrorStreamCaptureInvalidated,
                             "cudaStreamEndCapture", __FILE__, __LINE__);
        goto err;
    }
    KILN_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    if (!(*out = kiln_calloc(1, sizeof **out))) {
        st = kiln_err_set(KILN_ERR_OOM, "cuda graph: out of memory");
        goto err;
    }
    (*out)->exec = exec;
    (*out)->epoch = cb->batch_epoch;
    exec = NULL;
err:
    if (exec)
        cudaGraphExecDestroy(exec);
    if (graph)
        cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    return st;
}

kiln_status cuda_graph_launch(backend *be, bk_graph *g)
{
    cuda_backend *cb = cuda_of(be);
    kiln_status st = KILN_OK;

    if (!g)
        return kiln_err_set(KILN_ERR_INVALID_ARG, "cuda graph: no graph");
    if (g->epoch != cb->batch_epoch)
        return kiln_err_set(KILN_ERR_RANGE, "cuda graph: the batch buffer moved since capture");
    KILN_CUDA_CHECK(cudaGraphLaunch(g->exec, cb->stream));
    if (cuda_check_sync_enabled())
        KILN_CUDA_CHECK(cudaStreamSynchronize(cb->stream));
err:
    return st;
}

void cuda_graph_free(backend *be, bk_graph *g)
{
    (void)be;
    if (!g)
        return;
    cudaGraphExecDestroy(g->exec);
    (void)cudaGetLastError();
    kiln_free(g);
}

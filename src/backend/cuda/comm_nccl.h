/*
 * comm_nccl.h - the communicator of backend/comm.h over NCCL, for ranks
 * that are GPUs (one CUDA backend each, in one process or several).  Built
 * when the CUDA toolkit has NCCL (KILN_HAVE_NCCL); the collectives run on
 * the CUDA backend's compute stream, in its activation type (BF16, F16) or
 * F32, asynchronously like the backend's ops (NCCL allows them inside a
 * stream capture; kiln's graph capture has not run them yet).
 *
 * Setup: one rank makes an id (comm_nccl_unique_id) and hands its bytes to
 * every other rank (a file, a socket: the launcher's business); each rank
 * then opens its handle with the same id.  NVLink multicast (NVLS) is kept
 * off: the first of comm_nccl_unique_id / comm_nccl_open sets
 * NCCL_NVLS_ENABLE=0 (once per process) before NCCL reads its environment.
 *
 * comm_abort aborts this rank's NCCL communicator (its collectives in
 * flight return, later ones fail; safe from a watch thread); ranks in
 * other processes learn of it through their watch (comm_watch.h: this
 * process gone, or NCCL's asynchronous error through comm_check).
 */
#ifndef KILN_BACKEND_CUDA_COMM_NCCL_H
#define KILN_BACKEND_CUDA_COMM_NCCL_H

#include "backend/backend.h"
#include "backend/comm.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of an NCCL unique id (NCCL_UNIQUE_ID_BYTES). */
#define COMM_NCCL_ID_BYTES 128

/* A fresh group id into id.  Errors: KILN_ERR_DEVICE (NCCL failed, with
 * file:line). */
kiln_status comm_nccl_unique_id(uint8_t id[COMM_NCCL_ID_BYTES]);

/* Rank `rank` of `world` of group `id` on CUDA backend `be` (borrowed: it
 * must outlive the handle); blocks until every rank has joined.  *out
 * owned: comm_free.  Errors: KILN_ERR_INVALID_ARG (not a CUDA backend,
 * world < 1, rank outside [0, world), naming the numbers), KILN_ERR_OOM,
 * KILN_ERR_DEVICE (CUDA or NCCL failed, with file:line). */
kiln_status comm_nccl_open(const uint8_t id[COMM_NCCL_ID_BYTES], int32_t rank, int32_t world,
                           backend *be, comm **out);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_COMM_NCCL_H */

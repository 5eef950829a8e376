/*
 * cuda_device.h - what GPUs there are and what they can do.
 *
 * cudev_count() is the first CUDA call kiln makes, so it is where a machine
 * without a GPU, without a driver, or with a driver older than the CUDA
 * runtime kiln was built with is told so in words (KILN_ERR_DEVICE), never by
 * a crash.  cudev_query() fills a plain struct that reports, benchmarks
 * (docs/BENCHMARKS.md ceilings) and kernel launchers read; it holds no CUDA
 * types, so any C file can keep one.
 *
 * Querying free memory makes the device's primary context current (the
 * CUDA runtime creates it on first use); the calling thread's current device
 * is restored before returning.
 */
#ifndef KILN_BACKEND_CUDA_DEVICE_H
#define KILN_BACKEND_CUDA_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "kiln.h"

#define CUDEV_NAME_CAP 256
#define CUDEV_PCI_CAP 32

/* The lowest compute capability kiln runs on (Ampere: bf16 tensor cores,
 * cp.async, 164 KB of shared memory per SM). */
#define CUDEV_MIN_CC_MAJOR 8
#define CUDEV_MIN_CC_MINOR 0

typedef struct cudev_info {
    int ordinal;                  /* CUDA device index (after CUDA_VISIBLE_DEVICES) */
    char name[CUDEV_NAME_CAP];    /* "NVIDIA H100 80GB HBM3"                    */
    char pci_bus_id[CUDEV_PCI_CAP]; /* "0000:3b:00.0" (matches NVML), "" if unknown */
    int cc_major, cc_minor;       /* compute capability, 9.0 for Hopper          */
    uint64_t total_mem;           /* bytes of device memory                      */
    uint64_t free_mem;            /* bytes free when queried                     */
    int sm_count;                 /* streaming multiprocessors                   */
    int l2_bytes;                 /* L2 cache size                               */
    int smem_optin_bytes;         /* max shared memory per block after opt-in    */
    int mem_clock_khz;            /* peak memory clock; 0 if the driver hides it */
    int mem_bus_bits;             /* memory bus width; 0 if the driver hides it  */
    double mem_bw_bytes_s;        /* theoretical peak: 2 * clock * bus/8 (DDR)   */
    int driver_version;           /* CUDA version the driver supports, 13000 = 13.0 */
    int runtime_version;          /* CUDA runtime kiln runs with, same encoding  */
} cudev_info;

/* Number of visible GPUs into *out (>= 1 on success).  Errors, all
 * KILN_ERR_DEVICE with a message that says what to do: no GPU visible, no
 * NVIDIA driver, driver older than the runtime, other driver failures. */
kiln_status cudev_count(int *out);

/* Fill *out for device `ordinal`.  Errors: KILN_ERR_INVALID_ARG (no such
 * device), KILN_ERR_DEVICE (as cudev_count, or a failed query). */
kiln_status cudev_query(int ordinal, cudev_info *out);

/* Query every visible device: out[0 .. min(count, cap)) is filled and
 * *count is the number of devices (which may exceed cap).  Errors as
 * cudev_count and cudev_query. */
kiln_status cudev_enumerate(cudev_info *out, int cap, int *count);

/* KILN_OK when kiln's kernels run on `dev`; KILN_ERR_UNSUPPORTED with a
 * message naming the device and its compute capability when it is older
 * than CUDEV_MIN_CC_MAJOR.CUDEV_MIN_CC_MINOR. */
kiln_status cudev_check_supported(const cudev_info *dev);

/* One line describing `dev` into buf (snprintf semantics: returns the length
 * the full text needs, writes at most cap bytes including the NUL):
 *   "cuda:0 NVIDIA H100 80GB HBM3, cc 9.0, 132 SMs, 79.1/79.6 GiB free,
 *    L2 50.0 MiB, smem 227 KiB/block, 3352 GB/s, driver 13.0, runtime 13.0" */
int cudev_describe(const cudev_info *dev, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* KILN_BACKEND_CUDA_DEVICE_H */

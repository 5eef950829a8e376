/* cuda_device.c - GPU enumeration and capability checks; see cuda_device.h. */
#include "backend/cuda/cuda_device.h"

#include "backend/cuda/cuda_check.h"

#include <stdio.h>
#include <string.h>

/* "13.0" from CUDA's 1000 * major + 10 * minor encoding. */
static void version_str(int v, char *buf, size_t cap)
{
    if (v <= 0)
        snprintf(buf, cap, "none");
    else
        snprintf(buf, cap, "%d.%d", v / 1000, (v % 1000) / 10);
}

/* Turn a failed cudaGetDeviceCount into a message a user can act on. */
static kiln_status count_error(cudaError_t e)
{
    int drv = 0, rt = 0;
    char drv_s[16], rt_s[16];

    (void)cudaGetLastError();
    (void)cudaDriverGetVersion(&drv);
    (void)cudaRuntimeGetVersion(&rt);
    (void)cudaGetLastError();
    version_str(drv, drv_s, sizeof drv_s);
    version_str(rt, rt_s, sizeof rt_s);

    switch (e) {
    case cudaErrorNoDevice:
        return kiln_err_set(KILN_ERR_DEVICE,
                            "cuda: no CUDA-capable GPU is visible (driver %s); check "
                            "nvidia-smi and CUDA_VISIBLE_DEVICES, or use the CPU backend",
                            drv_s);
    case cudaErrorInsufficientDriver:
        if (drv == 0)
            return kiln_err_set(KILN_ERR_DEVICE,
                                "cuda: no NVIDIA driver found (libcuda.so could not be "
                                "loaded); install the driver, or use the CPU backend");
        return kiln_err_set(KILN_ERR_DEVICE,
                            "cuda: the NVIDIA driver supports CUDA %s but kiln was built "
                            "with CUDA runtime %s; update the driver",
                            drv_s, rt_s);
    default:
        return kiln_err_set(KILN_ERR_DEVICE,
                            "cuda: cannot list GPUs: %s (%s; driver %s, runtime %s)",
                            cudaGetErrorString(e), cudaGetErrorName(e), drv_s, rt_s);
    }
}

kiln_status cudev_count(int *out)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);

    *out = 0;
    if (e != cudaSuccess)
        return count_error(e);
    if (n <= 0)
        return count_error(cudaErrorNoDevice);
    *out = n;
    return KILN_OK;
}

/* Read the integer attributes of device `d` into *out. */
static kiln_status query_attributes(int d, cudev_info *out)
{
    kiln_status st = KILN_OK;

    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->cc_major, cudaDevAttrComputeCapabilityMajor, d));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->cc_minor, cudaDevAttrComputeCapabilityMinor, d));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->sm_count, cudaDevAttrMultiProcessorCount, d));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->l2_bytes, cudaDevAttrL2CacheSize, d));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->smem_optin_bytes,
                                           cudaDevAttrMaxSharedMemoryPerBlockOptin, d));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->mem_clock_khz, cudaDevAttrMemoryClockRate, d));
    KILN_CUDA_CHECK(cudaDeviceGetAttribute(&out->mem_bus_bits, cudaDevAttrGlobalMemoryBusWidth, d));
    /* Double data rate: two transfers per clock over bus_bits / 8 bytes. */
    out->mem_bw_bytes_s = 2.0 * (double)out->mem_clock_khz * 1000.0 * (double)out->mem_bus_bits / 8.0;
err:
    return st;
}

/* Free and total memory of device `d`; the current device is restored. */
static kiln_status query_memory(int d, cudev_info *out)
{
    kiln_status st = KILN_OK;
    size_t free_b = 0, total_b = 0;
    int prev = 0;
    bool switched = false;

    KILN_CUDA_CHECK(cudaGetDevice(&prev));
    KILN_CUDA_CHECK(cudaSetDevice(d));
    switched = true;
    KILN_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    out->free_mem = free_b;
    out->total_mem = total_b;
err:
    if (switched) {
        cudaError_t e = cudaSetDevice(prev);
        if (e != cudaSuccess && st == KILN_OK)
            st = cuda_check_fail(e, "cudaSetDevice(prev)", __FILE__, __LINE__);
    }
    return st;
}

kiln_status cudev_query(int ordinal, cudev_info *out)
{
    kiln_status st = KILN_OK;
    struct cudaDeviceProp prop;
    int n = 0;

    memset(out, 0, sizeof *out);
    if ((st = cudev_count(&n)))
        goto err;
    if (ordinal < 0 || ordinal >= n) {
        st = kiln_err_set(KILN_ERR_INVALID_ARG, "cuda: device %d does not exist (%d visible)",
                          ordinal, n);
        goto err;
    }
    out->ordinal = ordinal;
    KILN_CUDA_CHECK(cudaDriverGetVersion(&out->driver_version));
    KILN_CUDA_CHECK(cudaRuntimeGetVersion(&out->runtime_version));
    KILN_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
    snprintf(out->name, sizeof out->name, "%.*s", (int)sizeof prop.name, prop.name);
    if (cudaDeviceGetPCIBusId(out->pci_bus_id, (int)sizeof out->pci_bus_id, ordinal) != cudaSuccess) {
        (void)cudaGetLastError();
        out->pci_bus_id[0] = '\0';
    }
    if ((st = query_attributes(ordinal, out)))
        goto err;
    if ((st = query_memory(ordinal, out)))
        goto err;
err:
    return st;
}

kiln_status cudev_enumerate(cudev_info *out, int cap, int *count)
{
    kiln_status st;
    int n = 0;

    *count = 0;
    if ((st = cudev_count(&n)))
        return st;
    for (int i = 0; i < n && i < cap; i++)
        if ((st = cudev_query(i, &out[i])))
            return st;
    *count = n;
    return KILN_OK;
}

kiln_status cudev_check_supported(const cudev_info *dev)
{
    int cc = dev->cc_major * 10 + dev->cc_minor;
    int min_cc = CUDEV_MIN_CC_MAJOR * 10 + CUDEV_MIN_CC_MINOR;

    if (cc >= min_cc)
        return KILN_OK;
    return kiln_err_set(KILN_ERR_UNSUPPORTED,
                        "cuda: device %d (%s) has compute capability %d.%d; kiln's GPU "
                        "kernels need %d.%d or newer (Ampere, Ada, Hopper, Blackwell); "
                        "use the CPU backend on this machine",
                        dev->ordinal, dev->name, dev->cc_major, dev->cc_minor,
                        CUDEV_MIN_CC_MAJOR, CUDEV_MIN_CC_MINOR);
}

int cudev_describe(const cudev_info *dev, char *buf, size_t cap)
{
    const double gib = 1024.0 * 1024.0 * 1024.0;
    char drv_s[16], rt_s[16];

    version_str(dev->driver_version, drv_s, sizeof drv_s);
    version_str(dev->runtime_version, rt_s, sizeof rt_s);
    return snprintf(buf, cap,
                    "cuda:%d %s, cc %d.%d, %d SMs, %.1f/%.1f GiB free, L2 %.1f MiB, "
                    "smem %d KiB/block, %.0f GB/s, driver %s, runtime %s",
                    dev->ordinal, dev->name, dev->cc_major, dev->cc_minor, dev->sm_count,
                    (double)dev->free_mem / gib, (double)dev->total_mem / gib,
                    (double)dev->l2_bytes / (1024.0 * 1024.0), dev->smem_optin_bytes / 1024,
                    dev->mem_bw_bytes_s / 1e9, drv_s, rt_s);
}

/*
 * nvml.h - NVIDIA's management library, loaded with dlopen at run time, so
 * kiln runs (and builds) on machines without it.  Only what reports need:
 * the driver version, and per-device memory use and utilization.
 */
#ifndef KILN_TELEMETRY_NVML_H
#define KILN_TELEMETRY_NVML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The NVIDIA driver version ("580.159.04") into buf; false (buf = "")
 * when libnvidia-ml cannot be loaded or does not answer. */
bool nvml_driver_version(char *buf, size_t cap);

typedef struct nvml_sample {
    uint64_t mem_used, mem_total;  /* bytes                                    */
    unsigned gpu_util, mem_util;   /* percent over the driver's last sample    */
} nvml_sample;

/* A sample of the device with PCI bus id `pci` ("0000:3b:00.0"); false
 * when NVML is not there or the device is unknown to it. */
bool nvml_sample_device(const char *pci, nvml_sample *out);

#endif /* KILN_TELEMETRY_NVML_H */

/*
 * nvml.c - libnvidia-ml through dlopen; see nvml.h.
 *
 * The library is opened once (first use, under a mutex), initialised with
 * nvmlInit_v2 and kept for the process's life.  Function types are written
 * here from NVML's documented C API (all return nvmlReturn_t, 0 = success)
 * so no NVML header is needed at build time.
 */
#include "telemetry/nvml.h"

#include <dlfcn.h>
#include <stdio.h>
#include <pthread.h>
#include <string.h>

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_driver_fn)(char *version, unsigned length);
typedef int (*nvml_by_pci_fn)(const char *pci, void **device);
typedef struct nvml_memory {
    unsigned long long total, free, used;
} nvml_memory;
typedef int (*nvml_mem_fn)(void *device, nvml_memory *memory);
typedef struct nvml_util {
    unsigned gpu, memory;
} nvml_util;
typedef int (*nvml_util_fn)(void *device, nvml_util *util);

static struct {
    pthread_once_t once;
    bool ok;
    nvml_driver_fn driver;
    nvml_by_pci_fn by_pci;
    nvml_mem_fn mem;
    nvml_util_fn util;
} nvml = {PTHREAD_ONCE_INIT, false, NULL, NULL, NULL, NULL};

static void nvml_open(void)
{
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    nvml_init_fn init;
    if (!h)
        return;
    init = (nvml_init_fn)dlsym(h, "nvmlInit_v2");
    nvml.driver = (nvml_driver_fn)dlsym(h, "nvmlSystemGetDriverVersion");
    nvml.by_pci = (nvml_by_pci_fn)dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
    nvml.mem = (nvml_mem_fn)dlsym(h, "nvmlDeviceGetMemoryInfo");
    nvml.util = (nvml_util_fn)dlsym(h, "nvmlDeviceGetUtilizationRates");
    if (!init || !nvml.driver || init() != 0) {
        dlclose(h);
        return;
    }
    nvml.ok = true;
}

bool nvml_driver_version(char *buf, size_t cap)
{
    char v[96];
    if (cap)
        buf[0] = '\0';
    pthread_once(&nvml.once, nvml_open);
    if (!nvml.ok || !cap || nvml.driver(v, sizeof v) != 0)
        return false;
    v[sizeof v - 1] = '\0';
    snprintf(buf, cap, "%s", v);
    return true;
}

bool nvml_sample_device(const char *pci, nvml_sample *out)
{
    void *dev = NULL;
    nvml_memory m;
    nvml_util u;

    memset(out, 0, sizeof *out);
    pthread_once(&nvml.once, nvml_open);
    if (!nvml.ok || !pci || !*pci || !nvml.by_pci || !nvml.mem || !nvml.util ||
        nvml.by_pci(pci, &dev) != 0 || nvml.mem(dev, &m) != 0 || nvml.util(dev, &u) != 0)
        return false;
    out->mem_used = m.used;
    out->mem_total = m.total;
    out->gpu_util = u.gpu;
    out->mem_util = u.memory;
    return true;
}

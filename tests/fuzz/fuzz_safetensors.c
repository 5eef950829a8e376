/*
 * fuzz_safetensors.c - libFuzzer target: st_open_memory on arbitrary bytes,
 * then read every byte of every tensor and every metadata entry, so that a
 * range the checks let through that lies outside the input shows up under
 * ASan.
 */
#include "format/safetensors.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_model *m = NULL;
    volatile uint8_t sink = 0;

    if (st_open_memory(data, size, &m))
        return 0;
    for (int64_t i = 0; i < st_tensor_count(m); i++) {
        const st_tensor *t = st_tensor_at(m, i);
        const uint8_t *p = t->data;
        for (uint64_t k = 0; k < t->nbytes; k++)
            sink ^= p[k];
        if (st_find(m, t->name) != t)
            __builtin_trap();
        sink ^= (uint8_t)strlen(t->name);
    }
    for (int64_t i = 0; i < st_metadata_count(m); i++)
        sink ^= (uint8_t)strlen(st_metadata_value(m, i)) ^
                (uint8_t)(st_metadata(m, st_metadata_key(m, i)) != NULL);
    (void)sink;
    st_close(m);
    return 0;
}

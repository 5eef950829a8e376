/*
 * fuzz_hf_config.c - libFuzzer target: hf_config_parse on arbitrary bytes.
 * A config that parses must satisfy the model_config invariants.
 */
#include "format/hf_config.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model_config c;
    if (hf_config_parse((const char *)data, size, &c))
        return 0;
    if (c.n_layers < 1 || c.n_layers > MCFG_MAX_LAYERS || c.n_kv_heads < 1 ||
        c.n_heads % c.n_kv_heads || c.head_dim < 1)
        __builtin_trap();
    for (int64_t i = c.n_layers; i < MCFG_MAX_LAYERS; i++)
        if (c.layer_sliding[i])
            __builtin_trap();
    return 0;
}

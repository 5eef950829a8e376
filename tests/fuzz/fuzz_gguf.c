/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input with gguf_open_memory; when it is accepted, reads every
 * metadata value (recursing into nested arrays, every string of string
 * arrays), every tensor (and its first and last data byte), looks each key
 * and tensor up by name, and maps the metadata to a model_config.  Any crash,
 * sanitizer report or leak is a bug.  Seeds: tests/fuzz/corpus/gguf/, made by
 * tests/ref/gguf_write_fixtures.py.
 */
#include "format/gguf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

static void walk_value(const gguf_value *v)
{
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    const char *s;
    size_t len;

    if (!gguf_value_u64(v, &u)) sink += u;
    if (!gguf_value_i64(v, &i)) sink += (uint64_t)i;
    if (!gguf_value_f64(v, &f)) sink += f == f;
    if (!gguf_value_bool(v, &b)) sink += b;
    if (!gguf_value_str(v, &s, &len) && len) sink += (uint8_t)s[0] + (uint8_t)s[len - 1];
    if (gguf_value_type(v) != GGUF_TYPE_ARRAY)
        return;
    int64_t n = gguf_value_arr_len(v);
    gguf_type et = gguf_value_arr_type(v);
    if (et == GGUF_TYPE_ARRAY) {
        for (int64_t k = 0; k < n; k++)
            walk_value(gguf_value_arr_at(v, k));
    } else if (et == GGUF_TYPE_STRING) {
        for (int64_t k = 0; k < n; k++)
            if (!gguf_value_arr_str(v, k, &s, &len) && len)
                sink += (uint8_t)s[len - 1];
    } else if (n > 0) {
        const uint8_t *p = gguf_value_arr_data(v);
        sink += p[0] + p[(size_t)n * gguf_type_size(et) - 1];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *g = NULL;
    model_config c;

    if (gguf_open_memory(data, size, &g))
        return 0;
    for (int64_t k = 0; k < gguf_kv_count(g); k++) {
        const char *key = gguf_kv_key(g, k);
        sink += strlen(key) + (uint64_t)gguf_kv_type(g, k);
        if (gguf_find_key(g, key) != k)
            __builtin_trap();
        walk_value(gguf_kv_value(g, k));
    }
    for (int64_t k = 0; k < gguf_tensor_count(g); k++) {
        const gguf_tensor *t = gguf_tensor_at(g, k);
        const uint8_t *p = t->data;
        if (gguf_find_tensor(g, t->name) != t)
            __builtin_trap();
        sink += p[0] + p[t->nbytes - 1] + (uint64_t)t->ne[3];
    }
    if (!gguf_to_model_config(g, &c))
        sink += (uint64_t)c.n_layers;
    gguf_close(g);
    return 0;
}

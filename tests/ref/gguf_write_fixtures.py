#!/usr/bin/env python3
"""Valid GGUF files for tests/unit/test_gguf.c and the fuzz seed corpus,
written with the `gguf` package's GGUFWriter (an implementation kiln's reader
did not come from).  The values are fixed; test_gguf.c checks them.

usage: gguf_write_fixtures.py OUTDIR

  all_types.gguf      every metadata type, nested arrays, four tensors
  align_<N>.gguf      general.alignment N (1, 8, 64, 256) with three tensors
  cfg_<arch>.gguf     metadata-only model shapes: llama, llama3 (rope_freqs),
                      qwen2, qwen3, gemma3, bert, mistral
The fuzz seed corpus tests/fuzz/corpus/gguf/ is all_types, align_8,
cfg_gemma3, cfg_bert, cfg_llama3 and cfg_qwen2 as written by this script.
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGUFWriter, GGUFValueType as V, GGMLQuantizationType as Q


def all_types(path):
    w = GGUFWriter(path, arch="llama")
    w.add_key_value("t.u8", 255, V.UINT8)
    w.add_key_value("t.i8", -128, V.INT8)
    w.add_key_value("t.u16", 65535, V.UINT16)
    w.add_key_value("t.i16", -32768, V.INT16)
    w.add_key_value("t.u32", 4294967295, V.UINT32)
    w.add_key_value("t.i32", -2147483648, V.INT32)
    w.add_key_value("t.f32", 0.15625, V.FLOAT32)
    w.add_key_value("t.bool_t", True, V.BOOL)
    w.add_key_value("t.bool_f", False, V.BOOL)
    w.add_key_value("t.str", "h\u00e9llo \u4e16\u754c \U0001F600", V.STRING)
    w.add_key_value("t.u64", 18446744073709551615, V.UINT64)
    w.add_key_value("t.i64", -9223372036854775808, V.INT64)
    w.add_key_value("t.f64", -2.5e-300, V.FLOAT64)
    w.add_key_value("t.empty_str", "", V.STRING)
    w.add_key_value("t.arr_u8", [1, 2, 255], V.ARRAY, V.UINT8)
    w.add_key_value("t.arr_i16", [-1, 2, -3], V.ARRAY, V.INT16)
    w.add_key_value("t.arr_i32", [-7, 0, 7, 2147483647], V.ARRAY, V.INT32)
    w.add_key_value("t.arr_f32", [0.5, -1.25, 3.0], V.ARRAY, V.FLOAT32)
    w.add_key_value("t.arr_bool", [True, False, True], V.ARRAY, V.BOOL)
    w.add_key_value("t.arr_u64", [0, 1 << 40], V.ARRAY, V.UINT64)
    w.add_key_value("t.arr_f64", [1.0e100, -0.0], V.ARRAY, V.FLOAT64)
    w.add_key_value("t.arr_str", ["a", "", "\u00fc\u00f1\u00ee"], V.ARRAY, V.STRING)
    w.add_key_value("t.arr_arr", [[1, 2], [3], [4, 5, 6]], V.ARRAY)
    w.add_key_value("t.arr_arr_str", [["x", "yz"], ["w"]], V.ARRAY)
    w.add_key_value("t.arr_arr_arr", [[[1.5], [2.5, 3.5]], [[4.5]]], V.ARRAY)
    w.add_tensor("f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("f16", np.arange(64, dtype=np.float16).reshape(2, 32))
    q8 = gguf.quants.quantize(np.linspace(-1, 1, 64, dtype=np.float32).reshape(2, 32), Q.Q8_0)
    w.add_tensor("q8_0", q8, raw_shape=q8.shape, raw_dtype=Q.Q8_0)
    w.add_tensor("i32.vec", np.array([-5, 6, -7], dtype=np.int32))
    finish(w)


def aligned(path, align):
    w = GGUFWriter(path, arch="llama")
    w.add_custom_alignment(align)
    w.add_string("general.name", f"align {align}")
    w.add_tensor("a", np.full(3, 1.0, dtype=np.float32))
    w.add_tensor("b", np.full(5, 2.0, dtype=np.float32))
    w.add_tensor("c", np.full((2, 2, 2, 2), 3.0, dtype=np.float32))
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tokens(w, n):
    w.add_token_list([f"<t{i}>" for i in range(n)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)


def shape(w, arch, hidden, layers, ffn, heads, kv_heads, ctx):
    w.add_uint32(f"{arch}.embedding_length", hidden)
    w.add_uint32(f"{arch}.block_count", layers)
    w.add_uint32(f"{arch}.feed_forward_length", ffn)
    w.add_uint32(f"{arch}.attention.head_count", heads)
    if kv_heads:
        w.add_uint32(f"{arch}.attention.head_count_kv", kv_heads)
    w.add_uint32(f"{arch}.context_length", ctx)


def cfg(path, arch):
    w = GGUFWriter(path, arch="llama" if arch == "llama3" else arch)
    if arch in ("llama", "llama3", "mistral"):
        a = "mistral" if arch == "mistral" else "llama"
        shape(w, a, 64, 2, 128, 4, 2, 2048)
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
        w.add_float32(f"{a}.rope.freq_base", 500000.0 if arch == "llama3" else 10000.0)
        w.add_uint32(f"{a}.rope.dimension_count", 16)
        if arch == "mistral":
            w.add_uint32("mistral.attention.sliding_window", 4096)
        tokens(w, 32)
        if arch == "llama3":
            w.add_tensor("rope_freqs.weight", np.array([1, 1, 2, 4, 8, 8, 8, 8], np.float32))
        else:
            w.add_tensor("output.weight", np.zeros((32, 64), dtype=np.float32))
    elif arch in ("qwen2", "qwen3"):
        shape(w, arch, 64, 3, 96, 8, 2, 4096)
        w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
        w.add_float32(f"{arch}.rope.freq_base", 1000000.0)
        if arch == "qwen3":
            w.add_uint32("qwen3.attention.key_length", 16)
            w.add_uint32("qwen3.attention.value_length", 16)
        w.add_string("general.name", arch)
        tokens(w, 40)
        w.add_pad_token_id(39)
        w.add_string(f"{arch}.rope.scaling.type", "yarn")
        w.add_float32(f"{arch}.rope.scaling.factor", 4.0)
        w.add_uint32(f"{arch}.rope.scaling.original_context_length", 1024)
    elif arch == "gemma3":
        shape(w, arch, 64, 8, 128, 2, 1, 8192)
        w.add_uint32("gemma3.attention.key_length", 32)
        w.add_uint32("gemma3.attention.value_length", 32)
        w.add_float32("gemma3.attention.layer_norm_rms_epsilon", 1e-6)
        w.add_float32("gemma3.rope.freq_base", 1000000.0)
        w.add_uint32("gemma3.attention.sliding_window", 512)
        w.add_string("gemma3.rope.scaling.type", "linear")
        w.add_float32("gemma3.rope.scaling.factor", 8.0)
        tokens(w, 48)
        w.add_pad_token_id(0)
    elif arch == "bert":
        shape(w, arch, 32, 2, 64, 4, 0, 512)
        w.add_float32("bert.attention.layer_norm_epsilon", 1e-12)
        w.add_bool("bert.attention.causal", False)
        w.add_uint32("bert.pooling_type", 1)
        w.add_uint32("tokenizer.ggml.token_type_count", 2)
        tokens(w, 30)
        w.add_tensor("token_types.weight", np.zeros((2, 32), dtype=np.float32))
    finish(w)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    all_types(os.path.join(out, "all_types.gguf"))
    for a in (1, 8, 64, 256):
        aligned(os.path.join(out, f"align_{a}.gguf"), a)
    for arch in ("llama", "llama3", "mistral", "qwen2", "qwen3", "gemma3", "bert"):
        cfg(os.path.join(out, f"cfg_{arch}.gguf"), arch)


if __name__ == "__main__":
    main()

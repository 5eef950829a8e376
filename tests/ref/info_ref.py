#!/usr/bin/env python3
"""Reference facts about a model for the `kiln info` test, read with
libraries kiln does not share code with: the `gguf` package for GGUF files,
`safetensors` + json for Hugging Face directories.

Usage: info_ref.py MODEL  -> one JSON object on stdout with the keys
architecture, n_layers, hidden_size, n_heads, n_kv_heads, head_dim,
context_length, vocab_size, parameters, n_tensors, weight_bytes,
tensor_types {TYPE: {tensors, params, bytes}}, chat_template.

MODEL may also be one .safetensors file on its own: then only
architecture (null: no config.json), parameters, n_tensors, weight_bytes,
tensor_types and metadata (its __metadata__, {} when absent).
"""
import json
import os
import sys

import numpy as np


def gguf_facts(path):
    import gguf

    r = gguf.GGUFReader(path)

    def val(key, default=None):
        f = r.fields.get(key)
        return default if f is None else f.contents()

    arch = val("general.architecture")
    types = {}
    for t in r.tensors:
        d = types.setdefault(t.tensor_type.name, {"tensors": 0, "params": 0, "bytes": 0})
        d["tensors"] += 1
        d["params"] += int(t.n_elements)
        d["bytes"] += int(t.n_bytes)
    heads = val(f"{arch}.attention.head_count")
    hidden = val(f"{arch}.embedding_length")
    return {
        "architecture": arch,
        "n_layers": val(f"{arch}.block_count"),
        "hidden_size": hidden,
        "intermediate_size": val(f"{arch}.feed_forward_length"),
        "n_heads": heads,
        "n_kv_heads": val(f"{arch}.attention.head_count_kv", heads),
        "head_dim": val(f"{arch}.attention.key_length", hidden // heads),
        "context_length": val(f"{arch}.context_length"),
        "vocab_size": len(r.fields["tokenizer.ggml.tokens"].data),
        "parameters": sum(int(t.n_elements) for t in r.tensors),
        "n_tensors": len(r.tensors),
        "weight_bytes": sum(int(t.n_bytes) for t in r.tensors),
        "tensor_types": types,
        "chat_template": "tokenizer.chat_template" in r.fields,
    }


ELEMENT_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                 "I8": 1, "U8": 1, "BOOL": 1}


def st_tensor_facts(files):
    """(types, parameters, bytes, tensor count, metadata of the first file)
    of safetensors files, read by the safetensors package."""
    from safetensors import safe_open

    types, params, nbytes, count, meta = {}, 0, 0, 0, None
    for f in files:
        with safe_open(f, "np") as st:
            if meta is None:
                meta = st.metadata() or {}
            for k in st.keys():
                sl = st.get_slice(k)
                n = int(np.prod(sl.get_shape(), dtype=np.int64))
                dt = ELEMENT_BYTES[sl.get_dtype()]
                d = types.setdefault(sl.get_dtype(), {"tensors": 0, "params": 0, "bytes": 0})
                d["tensors"] += 1
                d["params"] += n
                d["bytes"] += n * dt
                params += n
                nbytes += n * dt
                count += 1
    return types, params, nbytes, count, meta or {}


def st_file_facts(path):
    types, params, nbytes, count, meta = st_tensor_facts([path])
    return {
        "architecture": None,
        "parameters": params,
        "n_tensors": count,
        "weight_bytes": nbytes,
        "tensor_types": types,
        "metadata": meta,
    }


def hf_facts(path):
    cfg = json.load(open(os.path.join(path, "config.json")))
    cfg = cfg.get("text_config", cfg)
    files = [os.path.join(path, "model.safetensors")]
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        wm = json.load(open(index))["weight_map"]
        files = sorted({os.path.join(path, f) for f in wm.values()})
    types, params, nbytes, count, _ = st_tensor_facts(files)
    heads = cfg["num_attention_heads"]
    tok_cfg = os.path.join(path, "tokenizer_config.json")
    has_tpl = os.path.exists(os.path.join(path, "chat_template.jinja")) or (
        os.path.exists(tok_cfg) and "chat_template" in json.load(open(tok_cfg)))
    return {
        "architecture": cfg["model_type"],
        "n_layers": cfg["num_hidden_layers"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "n_heads": heads,
        "n_kv_heads": cfg.get("num_key_value_heads", heads),
        "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // heads,
        "context_length": cfg["max_position_embeddings"],
        "vocab_size": cfg["vocab_size"],
        "parameters": params,
        "n_tensors": count,
        "weight_bytes": nbytes,
        "tensor_types": types,
        "chat_template": has_tpl,
    }


def main():
    path = sys.argv[1]
    if os.path.isdir(path):
        facts = hf_facts(path)
    elif path.endswith(".safetensors"):
        facts = st_file_facts(path)
    else:
        facts = gguf_facts(path)
    json.dump(facts, sys.stdout, default=int)
    print()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write reference safetensors files for tests/unit/test_safetensors.c.

    st_write.py OUTDIR

OUTDIR/single.safetensors   every dtype kiln reads, plus __metadata__
OUTDIR/sharded/             three shards and model.safetensors.index.json

Files are written by the `safetensors` package when it is installed (BF16
through safetensors.TensorSpec, as numpy has no bfloat16), otherwise by hand
from the format description with numpy and json.  Element i of every tensor
is the formula in value() below; the C test recomputes the same numbers.
Prints the writer used ("safetensors" or "numpy") on stdout.
"""
import json
import os
import struct
import sys

import numpy as np

# name -> (safetensors dtype, shape)
SINGLE = {
    "f64": ("F64", [4]),
    "f32": ("F32", [3, 4, 5]),
    "f16": ("F16", [7]),
    "bf16": ("BF16", [2, 8]),
    "i64": ("I64", [3, 2]),
    "i32": ("I32", [5]),
    "i16": ("I16", [6]),
    "i8": ("I8", [16]),
    "u8": ("U8", [9]),
    "bool": ("BOOL", [10]),
    "scalar": ("F32", []),
    "empty": ("F32", [0, 4]),
}
SHARDS = {
    "model-00001-of-00003.safetensors": {"a.weight": ("F32", [4, 3]), "a.bias": ("F16", [4])},
    "model-00002-of-00003.safetensors": {"b.weight": ("BF16", [2, 5]), "b.ids": ("I32", [3])},
    "model-00003-of-00003.safetensors": {"c.weight": ("F32", [6]), "c.mask": ("U8", [5])},
}
METADATA = {"format": "pt", "producer": "kiln-ref"}

NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
      "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def value(dtype, i):
    """Element i; floats are multiples of 0.5 in [-5, 6], exact in every float type."""
    if dtype in ("F64", "F32", "F16", "BF16"):
        return ((i * 7) % 23) * 0.5 - 5.0
    if dtype == "I64":
        return i * 1000003 - 5000000000
    if dtype == "I32":
        return i * 7919 - 100000
    if dtype == "I16":
        return (i * 37) % 60000 - 30000
    if dtype == "I8":
        return (i * 13) % 256 - 128
    if dtype == "U8":
        return (i * 29) % 256
    if dtype == "BOOL":
        return i % 3 == 0
    raise ValueError(dtype)


def array(dtype, shape):
    """(numpy array to store, element count); BF16 is stored as its uint16 bits."""
    n = int(np.prod(shape)) if shape else 1
    vals = [value(dtype, i) for i in range(n)]
    if dtype == "BF16":
        bits = np.array(vals, dtype=np.float32).view(np.uint32) >> 16
        return bits.astype("<u2").reshape(shape), n
    return np.array(vals, dtype=NP[dtype]).reshape(shape), n


def write_package(path, tensors, metadata):
    import safetensors

    keep, specs = [], {}
    for name, (dtype, shape) in tensors.items():
        arr, _ = array(dtype, shape)
        arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<")))
        keep.append(arr)
        tname = "bfloat16" if dtype == "BF16" else arr.dtype.name
        specs[name] = safetensors.TensorSpec(
            dtype=tname, shape=list(shape), data_ptr=arr.ctypes.data, data_len=arr.nbytes)
    safetensors.serialize_file(specs, path, metadata=metadata)


def write_by_hand(path, tensors, metadata):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape) in sorted(tensors.items()):
        arr, _ = array(dtype, shape)
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def pick_writer():
    try:
        import safetensors

        if hasattr(safetensors, "TensorSpec") and hasattr(safetensors, "serialize_file"):
            return "safetensors", write_package
    except ImportError:
        pass
    return "numpy", write_by_hand


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "sharded"), exist_ok=True)
    label, write = pick_writer()
    write(os.path.join(out, "single.safetensors"), SINGLE, METADATA)
    weight_map, total = {}, 0
    for shard, tensors in SHARDS.items():
        write(os.path.join(out, "sharded", shard), tensors, {"format": "pt"})
        for name, (dtype, shape) in tensors.items():
            weight_map[name] = shard
            total += array(dtype, shape)[0].nbytes
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    print(label)


if __name__ == "__main__":
    main()

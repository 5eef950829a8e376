#!/usr/bin/env python3
"""Reference data for tests/unit/test_quant.c.

Writes random blocks of every type kiln dequantizes, the f32 values the
`gguf` package (gguf.quants.dequantize) makes of them, and the package's
GGML_QUANT_SIZES table, into OUTDIR:

  sizes.txt         "<id> <name> <block_elems> <block_bytes>" per GGML type
  manifest.txt      "<name> <id> <n_elems>" per type written below
  <name>.bin        the raw little-endian blocks
  <name>.f32        the reference f32 output, n_elems values

Scales are finite and include the edge values -0.0, +0.0, subnormals and the
largest finite value.  Types the gguf package does not dequantize (Q8_K,
F64, the integer types, U8) are converted with numpy exactly as ggml does.

usage: gguf_quant_ref.py OUTDIR [SEED]
"""
import os
import sys

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
import gguf.quants

F16_EDGES = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0x2E66]
F32_EDGES = [0x00000000, 0x80000000, 0x00000001, 0x807FFFFF, 0x00800000, 0x3F800000,
             0x7F7FFFFF, 0xFF7FFFFF]

# name -> (byte offsets of f16 scales inside a block, offset of an f32 scale)
SCALES = {
    "Q4_0": ([0], None), "Q4_1": ([0, 2], None), "Q5_0": ([0], None),
    "Q5_1": ([0, 2], None), "Q8_0": ([0], None), "Q4_K": ([0, 2], None),
    "Q5_K": ([0, 2], None), "Q6_K": ([208], None), "Q8_K": ([], 0),
}
GGUF_REF = {"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"}


def finite_f16(rng, n):
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    exp = (bits >> 10) & 0x1F
    bits[exp == 0x1F] &= np.uint16(0xBFFF)  # exponent 31 -> 15: finite
    return bits


def finite_f32(rng, n):
    bits = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).astype(np.uint32)
    exp = (bits >> 23) & 0xFF
    bits[exp == 0xFF] &= np.uint32(0xBFFFFFFF)
    return bits


def quant_blocks(rng, name, n_blocks):
    block_bytes = GGML_QUANT_SIZES[T[name]][1]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint16).astype(np.uint8)
    raw[0, :] = 0x00
    raw[1, :] = 0xFF
    f16_offs, f32_off = SCALES[name]
    for off in f16_offs:
        s = finite_f16(rng, n_blocks)
        s[: len(F16_EDGES)] = F16_EDGES
        raw[:, off:off + 2] = s.view(np.uint8).reshape(n_blocks, 2)
    if f32_off is not None:
        s = finite_f32(rng, n_blocks)
        s[: len(F32_EDGES)] = F32_EDGES
        raw[:, f32_off:f32_off + 4] = s.view(np.uint8).reshape(n_blocks, 4)
    return raw.reshape(-1)


def ref_q8_k(raw):
    blocks = raw.reshape(-1, 292)
    d = blocks[:, 0:4].copy().view(np.float32)
    qs = blocks[:, 4:260].copy().view(np.int8).astype(np.float32)
    return (d * qs).reshape(-1)


def scalar_data(rng, name, n):
    if name == "F32":
        return finite_f32(rng, n).view(np.uint8)
    if name == "F16":
        return finite_f16(rng, n).view(np.uint8)
    if name == "BF16":
        return rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16).view(np.uint8)
    if name == "F64":
        mant = rng.random(n) * 2 - 1
        exps = rng.integers(-160, 140, size=n)
        v = np.ldexp(mant, exps)
        v[:4] = [-0.0, 1e-45, 3.5e38, -1e300]
        return v.astype(np.float64).view(np.uint8)
    dt = {"I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64, "U8": np.uint8}[name]
    info = np.iinfo(dt)
    v = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
    v[:2] = [info.min, info.max]
    return v.view(np.uint8)


def reference(name, raw):
    if name in GGUF_REF:
        return np.asarray(gguf.quants.dequantize(raw, T[name]), dtype=np.float32).reshape(-1)
    if name == "Q8_K":
        return ref_q8_k(raw)
    dt = {"F64": np.float64, "I8": np.int8, "I16": np.int16, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8}[name]
    return raw.view(dt).astype(np.float32)


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else int.from_bytes(os.urandom(4), "little")
    print(f"gguf_quant_ref: seed {seed}")
    rng = np.random.default_rng(seed)
    np.seterr(over="ignore")  # huge scales overflow to inf, as in ggml
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "sizes.txt"), "w") as f:
        for t, (be, bb) in GGML_QUANT_SIZES.items():
            f.write(f"{int(t)} {t.name} {be} {bb}\n")
    with open(os.path.join(out, "manifest.txt"), "w") as man:
        for name in SCALES:
            raw = quant_blocks(rng, name, 96)
            write(out, man, name, raw, reference(name, raw))
        for name in ["F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", "U8"]:
            raw = scalar_data(rng, name, 2048)
            write(out, man, name, raw, reference(name, raw))


def write(out, man, name, raw, ref):
    ident = 64 if name == "U8" else int(T[name])
    raw.tofile(os.path.join(out, name + ".bin"))
    ref.astype(np.float32).tofile(os.path.join(out, name + ".f32"))
    man.write(f"{name} {ident} {ref.size}\n")


if __name__ == "__main__":
    main()

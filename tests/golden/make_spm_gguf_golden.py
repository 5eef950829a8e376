#!/usr/bin/env python3
"""Make the llama.cpp goldens for the SentencePiece-style GGUF tokenizer.

usage: make_spm_gguf_golden.py MODEL.gguf CORPUS OUTDIR

Needs llama-cpp-python (it builds llama.cpp from source; a separate virtual
environment is fine).  Loads only the vocabulary (vocab_only=True) and for
each input of CORPUS (one per line, escapes \\n, \\r, \\\\; decoded as UTF-8
with errors="replace", the rule kiln documents for invalid UTF-8) writes:

  inputs.txt           the input line, as given
  ids.txt              Llama.tokenize(text.encode(), add_bos=True, special=True)
  decoded.txt          llama_detokenize(ids, remove_special=True,
                       unparse_special=False), bytes written with the escapes
  decoded_special.txt  llama_detokenize(ids, remove_special=False,
                       unparse_special=True)
  meta.txt             llama-cpp-python version, model and corpus sha256
"""
import ctypes
import hashlib
import os
import sys

import llama_cpp


def unescape(line: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(line):
        c = line[i]
        if c == 0x5C and i + 1 < len(line) and line[i + 1] in b"nr\\":
            out += {0x6E: b"\n", 0x72: b"\r", 0x5C: b"\\"}[line[i + 1]]
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def escape(raw: bytes) -> bytes:
    return raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detokenize(vocab, ids, remove_special: bool, unparse_special: bool) -> bytes:
    arr = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    cap = 64 + 64 * len(ids)
    while True:
        buf = ctypes.create_string_buffer(cap)
        n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, cap, remove_special,
                                       unparse_special)
        if n >= 0:
            return buf.raw[:n]
        cap = -n + 1


def main() -> int:
    model, corpus, outdir = sys.argv[1:4]
    os.makedirs(outdir, exist_ok=True)
    llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    with open(corpus, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    files = {name: open(os.path.join(outdir, name), "wb")
             for name in ("inputs.txt", "ids.txt", "decoded.txt", "decoded_special.txt")}
    for line in lines:
        text = unescape(line).decode("utf-8", errors="replace")
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        files["inputs.txt"].write(line + b"\n")
        files["ids.txt"].write(" ".join(map(str, ids)).encode() + b"\n")
        files["decoded.txt"].write(escape(detokenize(vocab, ids, True, False)) + b"\n")
        files["decoded_special.txt"].write(escape(detokenize(vocab, ids, False, True)) + b"\n")
    for f in files.values():
        f.close()
    with open(os.path.join(outdir, "meta.txt"), "w") as f:
        f.write(f"llama-cpp-python {llama_cpp.__version__}\n")
        f.write(f"model {os.path.basename(model)} sha256 {sha256(model)}\n")
        f.write(f"corpus {os.path.basename(corpus)} sha256 {sha256(corpus)} lines {len(lines)}\n")
        f.write("tokenize: add_bos=True special=True; decoded: remove_special=True "
                "unparse_special=False; decoded_special: remove_special=False "
                "unparse_special=True\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

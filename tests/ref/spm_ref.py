#!/usr/bin/env python3
"""Reference SentencePiece encodings for tests/unit/test_spm.c.

usage: spm_ref.py MODEL INPUTS OUTPUT

INPUTS holds one input per line, as bytes, with the escapes \\n, \\r and \\\\
for newline, carriage return and backslash.  Each input is decoded as UTF-8
with errors="replace" (the rule kiln documents for invalid UTF-8) and encoded
with the `sentencepiece` library (no BOS/EOS: the Llama 2 convention adds BOS
in the caller).  OUTPUT gets two lines per input: the ids separated by
spaces, then sp.decode(ids) written with the same escapes.
"""
import sys

import sentencepiece


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


def escape(text: str) -> bytes:
    raw = text.encode("utf-8")
    return raw.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def main() -> int:
    model, inputs, output = sys.argv[1:4]
    sp = sentencepiece.SentencePieceProcessor(model_file=model)
    with open(inputs, "rb") as f:
        lines = f.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    with open(output, "wb") as out:
        for line in lines:
            text = unescape(line).decode("utf-8", errors="replace")
            ids = sp.encode(text)
            out.write(" ".join(map(str, ids)).encode() + b"\n")
            out.write(escape(sp.decode(ids)) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

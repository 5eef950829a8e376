#!/usr/bin/env python3
"""Reference outputs of the Hugging Face `tokenizers` library for test_hftok.

usage: hftok_ref.py TOKENIZER_JSON INPUTS [--no-special] [--skip-special]
                   [--no-truncation]
       hftok_ref.py TOKENIZER_JSON INPUTS --bench SECONDS

INPUTS holds one input per line; in a line the escapes \\n, \\r and \\\\
stand for newline, carriage return and backslash.  The bytes of a line are
unescaped first, then decoded as UTF-8 with errors="replace" (each maximal
invalid subsequence becomes U+FFFD), which is what the C side documents for
invalid input.

Output (stdout): one JSON object per input line,
    {"ids": [...], "text": "<decode(ids)>"}
encode() uses add_special_tokens=True unless --no-special; decode() uses
skip_special_tokens=False unless --skip-special.  Padding stored in the file
is turned off (kiln applies truncation only; padding is a batching concern);
--no-truncation turns truncation off too.

--bench: encode_batch of all lines repeatedly on one thread for about
SECONDS; prints {"bytes": N, "seconds": S, "mb_per_s": X}.
"""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Tokenizer  # noqa: E402


def unescape(raw: bytes) -> bytes:
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x5C and i + 1 < n:
            d = raw[i + 1]
            if d == ord("n"):
                out.append(0x0A)
                i += 2
                continue
            if d == ord("r"):
                out.append(0x0D)
                i += 2
                continue
            if d == 0x5C:
                out.append(0x5C)
                i += 2
                continue
        out.append(c)
        i += 1
    return bytes(out)


def read_inputs(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [unescape(l).decode("utf-8", errors="replace") for l in lines]


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    tok = Tokenizer.from_file(args[0])
    tok.no_padding()
    if "--no-truncation" in args:
        tok.no_truncation()
    texts = read_inputs(args[1])
    if "--bench" in args:
        secs = float(args[args.index("--bench") + 1])
        nbytes = sum(len(t.encode("utf-8")) for t in texts)
        tok.encode_batch(texts[:10], add_special_tokens=False)
        done = 0
        t0 = time.perf_counter()
        while True:
            tok.encode_batch(texts, add_special_tokens=False)
            done += nbytes
            el = time.perf_counter() - t0
            if el >= secs:
                break
        print(json.dumps({"bytes": done, "seconds": el, "mb_per_s": done / el / 1e6}))
        return 0
    add_special = "--no-special" not in args
    skip = "--skip-special" in args
    out = sys.stdout
    for t in texts:
        ids = tok.encode(t, add_special_tokens=add_special).ids
        text = tok.decode(ids, skip_special_tokens=skip)
        out.write(json.dumps({"ids": ids, "text": text}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reference tokenization of a corpus, one JSON object per input line.

    tok_ref.py hf TOKENIZER_JSON CORPUS       HF `tokenizers`
    tok_ref.py spm MODEL CORPUS               `sentencepiece` (BOS added, as
                                              Llama 2 callers do; its decode
                                              leaves control tokens out)
    tok_ref.py golden GOLDEN_DIR CORPUS       goldens made earlier by a slow
                                              reference (llama.cpp, see
                                              tests/golden/make_spm_gguf_golden.py):
                                              ids.txt, decoded_special.txt,
                                              meta.txt naming the corpus sha256

CORPUS has one input per line; inside a line the escapes \\n, \\r and \\\\
stand for newline, carriage return and backslash.  Inputs are bytes: they are
decoded as UTF-8 with errors="replace" (invalid sequences become U+FFFD, as a
Python caller of the reference sees them).  Output per line:
{"ids": [...], "hex": the bytes of decode(ids), hex}; special tokens are kept
in the text where the reference's decode keeps them.
"""
import hashlib
import json
import sys


def read_corpus_bytes(raw):
    """Undo the \\n, \\r, \\\\ escapes of one line."""
    b = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i:i + 1]
        if c == b"\\" and i + 1 < len(raw) and raw[i + 1:i + 2] in (b"n", b"r", b"\\"):
            b += {b"n": b"\n", b"r": b"\r", b"\\": b"\\"}[raw[i + 1:i + 2]]
            i += 2
        else:
            b += c
            i += 1
    return bytes(b)


def read_corpus(path):
    with open(path, "rb") as f:
        return [read_corpus_bytes(raw) for raw in f.read().split(b"\n")[:-1]]


def emit(w, ids, text_bytes):
    w.write(json.dumps({"ids": ids, "hex": text_bytes.hex()}) + "\n")


def read_golden(src, corpus, n):
    meta = open(f"{src}/meta.txt", encoding="utf-8").read()
    digest = hashlib.sha256(open(corpus, "rb").read()).hexdigest()
    if digest not in meta:
        sys.exit(f"{src} was made from another corpus (this one is {digest}): regenerate it")
    ids = open(f"{src}/ids.txt", "rb").read().split(b"\n")[:n]
    dec = read_corpus(f"{src}/decoded_special.txt")
    return [([int(x) for x in line.split()], d) for line, d in zip(ids, dec)]


def main():
    kind, src, corpus = sys.argv[1:4]
    inputs = read_corpus(corpus)
    texts = [b.decode("utf-8", errors="replace") for b in inputs]
    w = sys.stdout
    if kind == "hf":
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(src)
        # Padding is a batch-layout setting (MiniLM's file pads to 128); kiln
        # tokenizes without it, and the engine lays batches out itself.
        tok.no_padding()
        for t in texts:
            ids = tok.encode(t, add_special_tokens=True).ids
            emit(w, ids, tok.decode(ids, skip_special_tokens=False).encode("utf-8"))
    elif kind == "spm":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=src)
        for t in texts:
            ids = sp.encode(t, add_bos=True)
            emit(w, ids, sp.decode(ids).encode("utf-8"))
    elif kind == "golden":
        for ids, text in read_golden(src, corpus, len(inputs)):
            emit(w, ids, text)
    else:
        sys.exit("kind must be hf, spm or golden")


if __name__ == "__main__":
    main()

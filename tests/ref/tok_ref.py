#!/usr/bin/env python3
"""Reference tokenization of a corpus, one JSON object per input line.

    tok_ref.py hf TOKENIZER_JSON CORPUS       HF `tokenizers`
    tok_ref.py spm MODEL CORPUS               `sentencepiece` (BOS added, as
                                              Llama 2 callers do; its decode
                                              leaves control tokens out)
    tok_ref.py golden GOLDEN_JSONL CORPUS     goldens made earlier by a slow
                                              reference (llama.cpp); checked
                                              to belong to this corpus

CORPUS has one input per line; inside a line the escapes \\n, \\r and \\\\
stand for newline, carriage return and backslash.  Inputs are bytes: they are
decoded as UTF-8 with errors="replace" (invalid sequences become U+FFFD, as a
Python caller of the reference sees them).  Output per line:
{"ids": [...], "text": decode(ids)} with special tokens kept in the text.
"""
import hashlib
import json
import sys


def read_corpus(path):
    out = []
    with open(path, "rb") as f:
        for raw in f.read().split(b"\n")[:-1]:
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
            out.append(bytes(b))
    return out


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
            w.write(json.dumps({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False)},
                               ensure_ascii=False) + "\n")
    elif kind == "spm":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=src)
        for t in texts:
            ids = sp.encode(t, add_bos=True)
            w.write(json.dumps({"ids": ids, "text": sp.decode(ids)}, ensure_ascii=False) + "\n")
    elif kind == "golden":
        with open(src, encoding="utf-8") as f:
            head = json.loads(f.readline())
            digest = hashlib.sha256(open(corpus, "rb").read()).hexdigest()
            if head.get("corpus_sha256") != digest:
                sys.exit(f"{src} was made from another corpus (sha256 {head.get('corpus_sha256')}, "
                         f"corpus is {digest}): regenerate it")
            for line in f:
                w.write(line)
    else:
        sys.exit("kind must be hf, spm or golden")


if __name__ == "__main__":
    main()

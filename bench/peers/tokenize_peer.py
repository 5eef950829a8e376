#!/usr/bin/env python3
"""Peer measurement for `kiln bench tokenize`: single-thread encode
throughput of the reference tokenizer on the same corpus lines.

    tokenize_peer.py hf TOKENIZER_JSON CORPUS MIN_SECONDS
    tokenize_peer.py spm MODEL CORPUS MIN_SECONDS

Prints one JSON object: {"name", "version", "mb_per_s", "bytes", "seconds",
"passes"}.  Inputs are decoded as tok_ref.py does (escapes, UTF-8 with
errors="replace"); MB/s counts the UTF-8 bytes of the decoded inputs, the
same bytes kiln is timed on.  The peer gets its fastest single-thread path:
one batch call over all lines (tokenizers encode_batch with
RAYON_NUM_THREADS=1; sentencepiece encode of the list with num_threads=1),
so Python's per-call overhead does not count against it; special tokens are
added.
"""
import json
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "ref"))
from tok_ref import read_corpus  # noqa: E402


def measure(encode_all, texts, min_s):
    encode_all(texts[:200])  # warm-up
    passes, start = 0, time.perf_counter()
    while True:
        encode_all(texts)
        passes += 1
        el = time.perf_counter() - start
        if el >= min_s:
            return passes, el


def main():
    kind, src, corpus, min_s = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    texts = [b.decode("utf-8", errors="replace") for b in read_corpus(corpus)]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    if kind == "hf":
        import tokenizers
        tok = tokenizers.Tokenizer.from_file(src)
        name, version = "tokenizers", tokenizers.__version__
        tok.no_padding()
        enc = lambda ts: tok.encode_batch(ts, add_special_tokens=True)
    elif kind == "spm":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=src)
        name, version = "sentencepiece", spm.__version__
        enc = lambda ts: sp.encode(ts, add_bos=True, num_threads=1)
    else:
        sys.exit("kind must be hf or spm")
    passes, el = measure(enc, texts, min_s)
    print(json.dumps({"name": name, "version": version, "mb_per_s": nbytes * passes / el / 1e6,
                      "bytes": nbytes, "seconds": el, "passes": passes}))


if __name__ == "__main__":
    main()

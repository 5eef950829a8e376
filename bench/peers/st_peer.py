#!/usr/bin/env python3
"""Peer measurement for `kiln bench embed`: sentence-transformers encode
throughput on CPU for the same documents.

    st_peer.py MODEL_DIR DOCS_FILE THREADS REPEAT

DOCS_FILE holds one document per line.  torch runs on THREADS threads
(torch.set_num_threads), encode uses batch size 32 and the model's own
max_seq_length and normalisation modules, as kiln embed does.  A warm-up
encode of the first 64 documents is not timed; each repeat encodes all
documents.  Prints one JSON object: {"name", "version", "docs_per_s",
"runs", "torch"}; docs_per_s is the median over the repeats.
"""
import json
import statistics
import sys
import time

import torch
import sentence_transformers
from sentence_transformers import SentenceTransformer


def main():
    path, docs_file = sys.argv[1], sys.argv[2]
    threads, repeat = int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    with open(docs_file, encoding="utf-8") as f:
        docs = f.read().split("\n")
    if docs and docs[-1] == "":
        docs.pop()
    model = SentenceTransformer(path, device="cpu")
    with torch.inference_mode():
        model.encode(docs[:64], batch_size=32)
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            model.encode(docs, batch_size=32)
            runs.append(len(docs) / (time.perf_counter() - t0))
    print(json.dumps({"name": "sentence-transformers", "version": sentence_transformers.__version__,
                      "torch": torch.__version__, "docs_per_s": statistics.median(runs),
                      "runs": runs}))


if __name__ == "__main__":
    main()

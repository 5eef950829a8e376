#!/usr/bin/env python3
"""Peer measurement for `kiln bench embed`: sentence-transformers encode
throughput for the same documents (text in, normalised vectors out).

    st_peer.py MODEL_DIR DOCS_FILE THREADS REPEAT [--device D] [--dtype T]
    st_peer.py --config CONFIG --tokenizer TOKDIR DOCS_FILE THREADS REPEAT ...

DOCS_FILE holds one document per line.  torch runs on THREADS threads
(torch.set_num_threads).  With MODEL_DIR, the model directory as
sentence-transformers loads it (its pooling and Normalize modules, its
max_seq_length).  With --config, a model of that config.json with random
weights (as kiln bench embed --dummy-weights makes one) is saved with the
tokenizer files of TOKDIR into a temporary directory and loaded from there
with mean pooling and Normalize, max_seq_length 256.  --device cuda puts
it on the GPU, --dtype f16/bf16 halves it there.  encode uses batch size
32, sentence-transformers' default.  A warm-up encode of the first 64
documents is not timed; each repeat encodes all documents.  Prints one
JSON object: {"name", "version", "docs_per_s", "runs", "torch"};
docs_per_s is the median over the repeats.
"""
import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import torch
import sentence_transformers
from sentence_transformers import SentenceTransformer, models

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def random_model_dir(config, tokdir, out):
    """A sentence-transformers directory for a random-weight model of `config`."""
    from transformers import AutoConfig, AutoModel
    with open(config) as f:
        d = json.load(f)
    cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    torch.manual_seed(0)
    AutoModel.from_config(cfg).save_pretrained(out)
    for name in os.listdir(tokdir):
        if name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(os.path.join(tokdir, name), out)
    word = models.Transformer(out, max_seq_length=256)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[word, pool, models.Normalize()])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("args", nargs="+", help="[MODEL_DIR] DOCS_FILE THREADS REPEAT")
    p.add_argument("--config")
    p.add_argument("--tokenizer")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    a = p.parse_args()
    rest = a.args if a.config else a.args[1:]
    if len(rest) != 3:
        p.error("expected [MODEL_DIR] DOCS_FILE THREADS REPEAT")
    docs_file, threads, repeat = rest[0], int(rest[1]), int(rest[2])
    torch.set_num_threads(threads)
    with open(docs_file, encoding="utf-8") as f:
        docs = f.read().split("\n")
    if docs and docs[-1] == "":
        docs.pop()
    tmp = tempfile.mkdtemp(prefix="st-peer-") if a.config else None
    try:
        if a.config:
            model = random_model_dir(a.config, a.tokenizer, tmp)
        else:
            model = SentenceTransformer(a.args[0], device="cpu")
        model.to(a.device)
        if a.device != "cpu" and a.dtype != "f32":
            model.to(DTYPES[a.dtype])
        with torch.inference_mode():
            model.encode(docs[:64], batch_size=32)
            runs = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                model.encode(docs, batch_size=32)
                if a.device != "cpu":
                    torch.cuda.synchronize()
                runs.append(len(docs) / (time.perf_counter() - t0))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"name": "sentence-transformers", "version": sentence_transformers.__version__,
                      "torch": torch.__version__, "device": a.device, "dtype": a.dtype,
                      "docs_per_s": statistics.median(runs), "runs": runs}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Make the sentence-transformers goldens that tests/unit/test_engine_models.c
checks `kiln embed` / gen_embed against.

usage: make_embed_goldens.py [MODEL_DIR] [OUTDIR]
       (defaults: models/all-MiniLM-L6-v2, tests/golden/embed_minilm)

Writes to OUTDIR:
  sentences.txt    200 sentences, one per line (no line holds a newline)
  embeddings.f32   their embeddings, float32 little-endian, (200, dim)
                   row-major, from SentenceTransformer(MODEL_DIR).encode()
                   on the CPU (the model's own modules: mean pooling and
                   L2 normalisation for all-MiniLM-L6-v2)
  meta.json        count, dim, max_seq_length, model and package versions

The sentences mix lengths (a word to past the 256-token max_seq_length),
punctuation, digits, accents, other scripts, emoji and code, drawn from
fixed lists with a fixed seed so the file is the same on every run.
"""
import json
import os
import platform
import random
import sys

import numpy as np
import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

SUBJECTS = ["The cat", "A young engineer", "My grandmother", "The committee", "Every student",
            "The old lighthouse keeper", "Our neighbour's dog", "The central bank",
            "A small startup in Berlin", "The orchestra", "Scientists at the lab", "Nobody"]
VERBS = ["quietly observed", "refused to approve", "carefully repaired", "wrote about",
         "laughed at", "forgot", "celebrated", "measured", "painted", "questioned"]
OBJECTS = ["the broken clock on the wall", "a proposal for lower interest rates",
           "the stars above the harbour", "an unexpected letter from Lisbon",
           "the results of the experiment", "three loaves of fresh bread",
           "the rules of the game", "a map of the northern coast", "the noisy printer",
           "her first marathon"]
TAILS = ["", " yesterday.", " before noon.", " without saying a word.", " in 1987.",
         " for the third time this week!", " - or so they claim.", "?", " (again).",
         " while it rained."]
FIXED = [
    "Hello", "ok", "What is the capital of France?", "Paris is the capital of France.",
    "Le café est très chaud ce matin.", "Die Straßenbahn fährt um 7:45 Uhr ab.",
    "¿Dónde está la biblioteca?", "Москва — столица России.", "東京は日本の首都です。",
    "北京是中国的首都。", "서울은 한국의 수도입니다.", "नमस्ते, आप कैसे हैं?",
    "I love pizza 🍕 and sushi 🍣!", "The price rose 12.5% to $1,234.56 on 2024-03-01.",
    "def add(a, b):\treturn a + b", "SELECT name FROM users WHERE id = 42;",
    "e = mc^2 and a^2 + b^2 = c^2", "naïve coöperation façade résumé",
    "UPPERCASE SHOUTING IS RUDE", "   leading and trailing spaces   ",
    "multiple     internal     spaces", "tabs\tbetween\twords", "a", "..." ,
    "https://example.com/path?query=1&x=y", "user@example.org wrote: thanks!!!",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models map sentences to dense vectors.",
    "A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse.",
    "The new movie is awesome.", "The new movie is so great.", "The cat sits outside.",
]


def sentences(n=200, seed=20240601):
    rng = random.Random(seed)
    out = list(FIXED)
    # long documents: some past max_seq_length (256 tokens), which truncates
    words = "the of and to in is was for on that with as by at from it an be this".split()
    for k in (60, 150, 300, 420):
        out.append(" ".join(rng.choice(words + ["alpha", "beta", "gamma", "delta"])
                            for _ in range(k)).capitalize() + ".")
    while len(out) < n:
        s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}{rng.choice(TAILS)}"
        if rng.random() < 0.2:
            s = s + " " + f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."
        if rng.random() < 0.1:
            s = s.lower()
        if s not in out:
            out.append(s)
    return out[:n]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models",
                                                                   "all-MiniLM-L6-v2")
    outdir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "embed_minilm")
    os.makedirs(outdir, exist_ok=True)
    sents = sentences()
    assert all("\n" not in s and "\r" not in s for s in sents)
    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    emb = model.encode(sents, batch_size=16, convert_to_numpy=True).astype("<f4")
    with open(os.path.join(outdir, "sentences.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(sents) + "\n")
    emb.tofile(os.path.join(outdir, "embeddings.f32"))
    meta = {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "count": len(sents), "dim": int(emb.shape[1]),
        "max_seq_length": int(model.max_seq_length),
        "norms_min": float(np.linalg.norm(emb, axis=1).min()),
        "versions": {"sentence_transformers": sentence_transformers.__version__,
                     "transformers": transformers.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"{len(sents)} sentences, dim {emb.shape[1]} -> {outdir}")


if __name__ == "__main__":
    main()

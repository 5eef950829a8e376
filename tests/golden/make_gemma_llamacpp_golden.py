#!/usr/bin/env python3
"""Greedy continuations of the default Gemma 3 270M GGUF by llama.cpp.

usage: make_gemma_llamacpp_golden.py MODEL.gguf OUT.json

Needs llama-cpp-python (it builds llama.cpp from source).  For each prompt
(token ids, BOS included, special tokens parsed) it records llama.cpp's 32
greedy tokens and their text.  The first prompt is the Gemma chat format of
"What is the capital of France?"; the model in the package is the pretrained
(base) Gemma 3 270M, which does not follow that format: llama.cpp's answer is
recorded as it is, and kiln must reproduce it.
"""
import json
import sys

import llama_cpp

PROMPTS = [
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
    "Question: What is the capital of France?\nAnswer:",
    "The quick brown fox",
    "def fibonacci(n):",
]


def main():
    path, out = sys.argv[1], sys.argv[2]
    m = llama_cpp.Llama(path, n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    cases = []
    for p in PROMPTS:
        ids = m.tokenize(p.encode(), add_bos=True, special=True)
        m.reset()
        gen = []
        for tok in m.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
            gen.append(tok)
            if len(gen) == 32 or tok == m.token_eos():
                break
        text = m.detokenize(gen).decode("utf-8", errors="replace")
        cases.append({"prompt": p, "prompt_ids": ids, "ids": gen, "text": text})
        print(repr(p[:40]), "->", repr(text[:80]))
    json.dump({"llama_cpp_python": llama_cpp.__version__, "model": path.split("/")[-1],
               "cases": cases}, open(out, "w"), ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()

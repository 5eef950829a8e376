#!/usr/bin/env python3
"""Make the transformers golden for the default generation model, Gemma 3
270M as GGUF Q4_K_M (scripts/fetch-models.sh), that test_model_golden.c
checks when the model is present.

usage: make_gemma3_gguf_golden.py MODEL.gguf OUT.json

Needs torch, transformers, gguf and accelerate (pip).  transformers loads
the GGUF file, dequantizing every weight to fp32, and runs it; for each
prompt (token ids as kiln's tokenizer gives them for a fixed text, so no
tokenizer is needed here) OUT.json holds the 32 largest logits of the last
position (ids and values), max |logit|, and 16 greedy tokens of
model.generate(do_sample=False) with EOS disabled, plus the versions and the
model file's sha256.
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, GenerationConfig

PROMPTS = [
    # "Here is a short story about a dragon who learned to read. Once upon a time,"
    [2, 8291, 563, 496, 2822, 3925, 1003, 496, 25800, 1015, 8683, 531, 1676, 236761, 9920,
     3324, 496, 990, 236764],
    # "The quick brown fox jumps over the lazy dog. In a distant kingdom, the old
    #  librarian kept a secret map hidden between the pages of"
    [2, 818, 3823, 8864, 37423, 38167, 1024, 506, 31770, 4799, 236761, 799, 496, 26550, 21880,
     236764, 506, 2255, 99742, 7953, 496, 6789, 4187, 11497, 1534, 506, 7704, 529],
]
TOP = 32
GEN = 16


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    path, out = sys.argv[1], sys.argv[2]
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path),
        dtype=torch.float32, attn_implementation="eager").eval()
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    golden = {"model": os.path.basename(path), "sha256": sha256(path),
              "transformers_version": transformers.__version__,
              "torch_version": torch.__version__, "prompts": []}
    with torch.no_grad():
        for ids in PROMPTS:
            x = torch.tensor([ids])
            last = model(x).logits[0, -1]
            top = torch.topk(last, TOP)
            gcfg = GenerationConfig(do_sample=False, max_new_tokens=GEN, eos_token_id=None)
            gen = model.generate(x, attention_mask=torch.ones_like(x),
                                 generation_config=gcfg)[0, len(ids):].tolist()
            golden["prompts"].append({
                "ids": ids, "top_ids": top.indices.tolist(),
                "top_logits": [float("%.9g" % v) for v in top.values.tolist()],
                "max_abs_logit": float(last.abs().max()), "greedy": gen})
    with open(out, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

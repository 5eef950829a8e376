#!/usr/bin/env python3
"""Make the transformers golden for the default generation model, Gemma 3
270M as GGUF Q4_K_M (scripts/fetch-models.sh), that test_model_golden.c
checks when the model is present.

usage: make_gemma3_gguf_golden.py MODEL.gguf OUT_DIR

Needs torch, transformers, gguf and accelerate (pip).  transformers loads
the GGUF file, dequantizing every weight to fp32, and runs it with eager
attention.  The prompts are token ids as `kiln tokenize -m MODEL.gguf TEXT`
gives them (BOS + text), so the test needs no tokenizer; the texts are kept
beside them, and the ids are checked against transformers' own tokenizer of
the GGUF file (a difference is printed, kiln's ids are kept).

OUT_DIR/golden.json holds the versions, the model file's sha256 and, per
prompt: the ids, max |logit| of the last position, its logsumexp, argmax and
32 largest logits (ids and values), the name of the file with the whole
last-position logit vector, and 32 greedy tokens of
model.generate(do_sample=False) with EOS disabled, with the margin between
the two largest logits at each greedy step.

OUT_DIR/logits_NN.i16 is prompt NN's last-position logit vector (vocab
values) as little-endian int16 fixed point relative to max |logit|:
q = round(logit / max_abs_logit * 32767), so logit = q * max_abs_logit /
32767 within max_abs_logit / 65534 (1.5e-5 of the scale the test's 1e-3
tolerance is relative to) in half the bytes of float32.
"""
import hashlib
import json
import os
import sys
from importlib import metadata

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

# (text, ids from `kiln tokenize`): lengths 1 to 57 tokens.
PROMPTS = [
    ("", [2]),
    ("Here is a short story about a dragon who learned to read. Once upon a time,",
     [2, 8291, 563, 496, 2822, 3925, 1003, 496, 25800, 1015, 8683, 531, 1676, 236761, 9920,
      3324, 496, 990, 236764]),
    ("What is the capital of France? Answer in one word:",
     [2, 3689, 563, 506, 5279, 529, 7001, 236881, 25685, 528, 886, 3658, 236787]),
    ("def fibonacci(n):\n    if n < 2:\n        return n\n    return",
     [2, 2063, 10779, 78113, 236769, 236749, 1473, 107, 140, 584, 538, 655, 236743, 236778,
      236787, 107, 144, 2060, 538, 107, 140, 2060]),
    ("3.14159 + 2.71828 = 5.85987; 1, 1, 2, 3, 5, 8, 13, 21, 34,",
     [2, 236800, 236761, 236770, 236812, 236770, 236810, 236819, 900, 236743, 236778, 236761,
      236832, 236770, 236828, 236778, 236828, 578, 236743, 236810, 236761, 236828, 236810,
      236819, 236828, 236832, 236793, 236743, 236770, 236764, 236743, 236770, 236764, 236743,
      236778, 236764, 236743, 236800, 236764, 236743, 236810, 236764, 236743, 236828, 236764,
      236743, 236770, 236800, 236764, 236743, 236778, 236770, 236764, 236743, 236800, 236812,
      236764]),
    ("Der schnelle braune Fuchs springt \u00fcber den faulen Hund. Berlin ist die Hauptstadt von",
     [2, 17361, 198725, 8518, 2253, 117419, 6247, 236745, 8046, 2034, 2854, 64435, 81368,
      236761, 15687, 3526, 1778, 229912, 3564]),
    ("\u4e2d\u56fd\u7684\u9996\u90fd\u662f\u5317\u4eac\u3002\u65e5\u672c\u7684\u9996\u90fd\u662f",
     [2, 110323, 238317, 15310, 32707, 236924, 10956, 180772, 15310]),
    ("<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
     [2, 105, 2364, 107, 6974, 496, 678, 20517, 1003, 506, 5442, 236761, 106, 107, 105, 4368,
      107]),
    ("The quick brown fox jumps over the lazy dog. In a distant kingdom, the old librarian "
     "kept a secret map hidden between the pages of",
     [2, 818, 3823, 8864, 37423, 38167, 1024, 506, 31770, 4799, 236761, 799, 496, 26550, 21880,
      236764, 506, 2255, 99742, 7953, 496, 6789, 4187, 11497, 1534, 506, 7704, 529]),
    ("Although the committee had spent nearly three years reviewing the proposal, interviewing "
     "dozens of engineers, and visiting every site along the planned route of the new railway "
     "through the mountains, its final report, published last spring after many delays, "
     "concluded that",
     [2, 13518, 506, 9769, 1053, 7785, 7109, 1806, 1518, 35329, 506, 15523, 236764, 76531,
      33554, 529, 22072, 236764, 532, 16270, 1418, 3432, 3008, 506, 13015, 9116, 529, 506, 861,
      21071, 1343, 506, 13254, 236764, 1061, 1626, 2072, 236764, 6469, 1774, 6247, 1308, 1551,
      30583, 236764, 17753, 600]),
]
TOP = 32
GEN = 32
Q = 32767


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def g9(v):
    return float("%.9g" % v)


def main():
    path, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    mdir, mfile = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    model = AutoModelForCausalLM.from_pretrained(
        mdir, gguf_file=mfile, dtype=torch.float32, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(mdir, gguf_file=mfile)
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    golden = {"model": mfile, "sha256": sha256(path),
              "transformers_version": transformers.__version__,
              "torch_version": torch.__version__, "gguf_version": metadata.version("gguf"),
              "numpy_version": np.__version__, "logits_format": "int16le fixed point, "
              "logit = q * max_abs_logit / 32767", "prompts": []}
    with torch.no_grad():
        for i, (text, ids) in enumerate(PROMPTS):
            hf_ids = tok(text).input_ids
            if hf_ids != ids:
                print("prompt %d: transformers' tokenizer gives %s, kiln %s" % (i, hf_ids, ids))
            x = torch.tensor([ids])
            last = model(x).logits[0, -1].double()
            scale = float(last.abs().max())
            q = torch.clamp(torch.round(last / scale * Q), -Q, Q).numpy().astype("<i2")
            name = "logits_%02d.i16" % i
            q.tofile(os.path.join(out, name))
            top = torch.topk(last, TOP)
            gcfg = GenerationConfig(do_sample=False, max_new_tokens=GEN, eos_token_id=None)
            res = model.generate(x, attention_mask=torch.ones_like(x), generation_config=gcfg,
                                 output_logits=True, return_dict_in_generate=True)
            gen = res.sequences[0, len(ids):].tolist()
            margins = []
            for lg in res.logits:
                t2 = torch.topk(lg[0].double(), 2).values
                margins.append(float("%.6g" % float(t2[0] - t2[1])))
            golden["prompts"].append({
                "text": text, "ids": ids, "logits_file": name, "vocab": last.numel(),
                "max_abs_logit": g9(scale), "logsumexp": g9(float(torch.logsumexp(last, 0))),
                "argmax": int(last.argmax()), "top_ids": top.indices.tolist(),
                "top_logits": [g9(v) for v in top.values.tolist()],
                "greedy": gen, "greedy_margin": margins})
            print("prompt %d: %d tokens, max |logit| %.4f, min greedy margin %.4g, %r"
                  % (i, len(ids), scale, min(margins), tok.decode(gen)))
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()

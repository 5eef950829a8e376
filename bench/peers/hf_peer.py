#!/usr/bin/env python3
"""Peer measurement for `kiln bench latency|prefill|embed`: Hugging Face
transformers (PyTorch, eager with SDPA attention) on a model of the same
config.json with random weights, the same dtype, batch and lengths.

    hf_peer.py latency CONFIG --dtype bf16 --device cuda --batch B \
        --prompt-tokens P --gen-tokens G --repeat R
    hf_peer.py prefill CONFIG ... (G ignored)
    hf_peer.py embed CONFIG --lengths FILE --batch-sizes 32,64,128 --repeat R

latency: B prompts of P arbitrary ids are prefilled in one forward (its KV
cache kept), then G - 1 single-token steps feed back the argmax (greedy) -
the same count of decode steps kiln's decode rate is taken over.  Reports
decode tokens/s over the batch and ms per step (medians of R runs after
a warm-up).

prefill: one forward of (B, P) ids, logits of the last position only
(logits_to_keep=1), no cache.  TFLOP/s with kiln's count: 2 x the
blocks' matrix elements per token, 4 x heads x head_dim x P(P+1)/2 per
layer and sequence (causal attention), 2 x lm_head elements per sequence.

embed: encoder forward of documents with the token lengths in FILE (one
per line), sorted by length and padded per batch, mean pooling over the
attention mask and L2 normalisation included; the best of the given batch
sizes.  Reports documents/s.

Prints one JSON object with "name", "version" and the figures.
"""
import argparse
import json
import statistics
import time

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def load_config(path):
    with open(path) as f:
        d = json.load(f)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def make_model(cls, cfg, dtype, device):
    torch.manual_seed(0)
    with torch.device(device):
        try:
            m = cls.from_config(cfg, dtype=dtype)
        except TypeError:
            m = cls.from_config(cfg, torch_dtype=dtype)
    return m.to(device=device, dtype=dtype).eval()


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def prompt_ids(cfg, batch, tokens, device):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, cfg.vocab_size, (batch, tokens), generator=g).to(device)


def run_latency(a, cfg, model):
    ids = prompt_ids(cfg, a.batch, a.prompt_tokens, a.device)
    tps, lat = [], []
    with torch.inference_mode():
        for r in range(a.repeat + 1):
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            sync(a.device)
            t0 = time.perf_counter()
            for _ in range(a.gen_tokens - 1):
                out = model(input_ids=tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
            sync(a.device)
            dt = time.perf_counter() - t0
            del past, out
            if r:  # run 0 warms up
                tps.append(a.batch * (a.gen_tokens - 1) / dt)
                lat.append(dt * 1e3 / (a.gen_tokens - 1))
    return {"decode_tps": statistics.median(tps), "latency_ms": statistics.median(lat),
            "decode_runs": tps, "latency_runs": lat}


def prefill_flops(cfg, model, batch, p):
    layers = model.model.layers
    mat = sum(w.numel() for w in layers.parameters() if w.dim() == 2)
    head = model.lm_head.weight.numel()
    heads = cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    attn = 4.0 * cfg.num_hidden_layers * heads * hd * p * (p + 1) / 2.0
    return batch * (2.0 * mat * p + attn + 2.0 * head)


def run_prefill(a, cfg, model):
    ids = prompt_ids(cfg, a.batch, a.prompt_tokens, a.device)
    flops = prefill_flops(cfg, model, a.batch, a.prompt_tokens)
    tf = []
    with torch.inference_mode():
        for r in range(a.repeat + 1):
            sync(a.device)
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=False, logits_to_keep=1)
            out.logits[:, -1].argmax(-1)
            sync(a.device)
            dt = time.perf_counter() - t0
            if r:
                tf.append(flops / dt / 1e12)
    return {"prefill_tflops": statistics.median(tf), "prefill_runs": tf, "flops": flops}


def run_embed(a, cfg, model):
    with open(a.lengths) as f:
        lens = sorted(int(x) for x in f.read().split())
    g = torch.Generator().manual_seed(2)
    best, per_bs = 0.0, {}
    with torch.inference_mode():
        for bs in [int(x) for x in a.batch_sizes.split(",")]:
            runs = []
            for r in range(a.repeat + 1):
                sync(a.device)
                t0 = time.perf_counter()
                for i in range(0, len(lens), bs):
                    chunk = lens[i:i + bs]
                    n = max(chunk)
                    ids = torch.randint(1000, cfg.vocab_size, (len(chunk), n), generator=g)
                    mask = torch.zeros((len(chunk), n), dtype=torch.long)
                    for j, L in enumerate(chunk):
                        mask[j, :L] = 1
                    ids, mask = ids.to(a.device), mask.to(a.device)
                    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                    m = mask.unsqueeze(-1).to(h.dtype)
                    e = (h * m).sum(1) / m.sum(1).clamp(min=1)
                    torch.nn.functional.normalize(e.float(), dim=-1).cpu()
                sync(a.device)
                dt = time.perf_counter() - t0
                if r:
                    runs.append(len(lens) / dt)
            per_bs[bs] = statistics.median(runs)
            best = max(best, per_bs[bs])
    return {"docs_per_s": best, "per_batch_size": per_bs}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["latency", "prefill", "embed"])
    p.add_argument("config")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--lengths")
    p.add_argument("--batch-sizes", default="32,64,128,256")
    a = p.parse_args()
    cfg = load_config(a.config)
    cls = AutoModel if a.mode == "embed" else AutoModelForCausalLM
    model = make_model(cls, cfg, DTYPES[a.dtype], a.device)
    fn = {"latency": run_latency, "prefill": run_prefill, "embed": run_embed}[a.mode]
    res = fn(a, cfg, model)
    res.update({"name": "transformers (PyTorch %s, sdpa)" % torch.__version__,
                "version": transformers.__version__, "dtype": a.dtype})
    print(json.dumps(res))


if __name__ == "__main__":
    main()

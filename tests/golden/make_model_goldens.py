#!/usr/bin/env python3
"""Make the tiny random-weight models and Hugging Face transformers goldens
that tests/unit/test_model_golden.c checks kiln's forward passes against.

usage: make_model_goldens.py [OUTDIR]     (default: tests/golden/models)

Needs torch, transformers and gguf (pip).  For each architecture variant it
writes OUTDIR/<name>/:

  config.json, model.safetensors   save_pretrained() of a tiny model whose
                                   weights are drawn from a fixed seed (fp32)
  golden.json                      versions, and per prompt (random token ids
                                   of 1, 5, 17 and 40 tokens):
                                     ids          the prompt
                                     logits_last  fp32 logits of the last position
                                     logits_all   logits of every position (prompts
                                                  of at most 5 tokens)
                                     greedy       32 tokens of model.generate(
                                                  do_sample=False), EOS disabled
                                     min_margin   smallest top-1/top-2 logit gap
                                                  along the greedy path
                                   for bert instead: token_types, hidden (last
                                   hidden state, every position) and embedding
                                   (mean pooled, L2-normalised, as the
                                   sentence-transformers modules.json says)

and OUTDIR/gguf/<name>.gguf for the variants of GGUF_VARIANTS: the same
weights as llama.cpp's converter writes them (llama q/k rows permuted for
interleaved rope pairs, gemma3 norms stored as 1 + w, llama3 rope scaling as
rope_freqs.weight), so the same golden.json holds for them.

config.json: transformers 5 writes rotary settings only as
"rope_parameters"; the script adds the equivalent transformers-4 keys
(rope_theta, rope_scaling, rope_local_base_freq), which published
checkpoints carry, and computes the goldens from the model reloaded from
the written directory, so both spellings describe the model that ran.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from transformers import (BertConfig, BertModel, Gemma3ForCausalLM, Gemma3TextConfig,
                          GenerationConfig, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

SEED = 1234
PROMPT_LENS = (1, 5, 17, 40)
GEN_TOKENS = 32
ALL_POS_MAX = 5

# Variants also written as GGUF, with their llama.cpp architecture.
GGUF_VARIANTS = {"llama": "llama", "llama3_rope": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
                 "gemma3_hd": "gemma3", "bert": "bert"}

COMMON = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              rms_norm_eps=1e-5)


def variants():
    """name -> (config, model class)."""
    return {
        "llama": (LlamaConfig(**COMMON, rope_theta=10000.0, tie_word_embeddings=False),
                  LlamaForCausalLM),
        "llama3_rope": (LlamaConfig(**COMMON, tie_word_embeddings=True,
                                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                                     "factor": 8.0, "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 64}),
                        LlamaForCausalLM),
        "mistral": (MistralConfig(**COMMON, head_dim=16, sliding_window=8, rope_theta=10000.0,
                                  tie_word_embeddings=False), MistralForCausalLM),
        "qwen2": (Qwen2Config(**COMMON, rope_theta=1000000.0, tie_word_embeddings=True),
                  Qwen2ForCausalLM),
        "qwen3": (Qwen3Config(**{**COMMON, "num_hidden_layers": 3}, head_dim=16,
                              rope_theta=1000000.0, tie_word_embeddings=True), Qwen3ForCausalLM),
        "gemma3": (Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 4}, head_dim=16,
                                    sliding_window=8, sliding_window_pattern=2,
                                    query_pre_attn_scalar=24, final_logit_softcapping=30.0,
                                    rope_parameters={
                                        "full_attention": {"rope_type": "linear", "factor": 2.0,
                                                           "rope_theta": 1000000.0},
                                        "sliding_attention": {"rope_type": "default",
                                                              "rope_theta": 10000.0}}),
                   Gemma3ForCausalLM),
        # query_pre_attn_scalar = head_dim, as every published Gemma 3 but 27B
        # has and llama.cpp assumes (GGUF has no key for it)
        "gemma3_hd": (Gemma3TextConfig(**{**COMMON, "num_hidden_layers": 4}, head_dim=16,
                                       sliding_window=8, sliding_window_pattern=2,
                                       query_pre_attn_scalar=16, final_logit_softcapping=30.0,
                                       rope_parameters={
                                           "full_attention": {"rope_type": "linear",
                                                              "factor": 2.0,
                                                              "rope_theta": 1000000.0},
                                           "sliding_attention": {"rope_type": "default",
                                                                 "rope_theta": 10000.0}}),
                      Gemma3ForCausalLM),
        "bert": (BertConfig(vocab_size=512, hidden_size=64, intermediate_size=128,
                            num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=64, type_vocab_size=2,
                            hidden_act="gelu"), BertModel),
    }


# ---- weights -------------------------------------------------------------------

def randomize(model, gen):
    """Every parameter drawn from the seeded generator: matrices with
    1/sqrt(fan_in) scale, norm weights near their neutral value (gemma3's
    (1 + w) norms near 0), biases small, embeddings unit scale."""
    gemma = model.config.model_type.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name.lower():
                base = 0.0 if (gemma and name.endswith("weight")) else 1.0
                if name.endswith("bias"):
                    base = 0.0
                p.copy_(base + 0.1 * r)
            elif name.endswith("bias"):
                p.copy_(0.1 * r)
            elif "embed" in name:
                p.copy_(r)
            elif name.startswith("lm_head"):
                p.copy_(2.0 * r / math.sqrt(p.shape[1]))
            else:
                p.copy_(r / math.sqrt(p.shape[1]))


# ---- config.json ----------------------------------------------------------------

def add_v4_rope_keys(path):
    """Add transformers-4 rotary keys equivalent to rope_parameters."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.get("rope_parameters")
    if rp is None:
        return
    if "full_attention" in rp:
        glob, loc = rp["full_attention"], rp.get("sliding_attention")
        if loc is not None:
            cfg["rope_local_base_freq"] = loc["rope_theta"]
    else:
        glob = rp
    cfg["rope_theta"] = glob["rope_theta"]
    if glob.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {k: v for k, v in glob.items() if k != "rope_theta"}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def write_st_modules(outdir, hidden):
    """sentence-transformers layout: Transformer, mean Pooling, Normalize."""
    mods = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize",
             "type": "sentence_transformers.models.Normalize"}]
    with open(os.path.join(outdir, "modules.json"), "w") as f:
        json.dump(mods, f, indent=2)
        f.write("\n")
    os.makedirs(os.path.join(outdir, "1_Pooling"), exist_ok=True)
    with open(os.path.join(outdir, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False}, f, indent=2)
        f.write("\n")
    os.makedirs(os.path.join(outdir, "2_Normalize"), exist_ok=True)


# ---- goldens --------------------------------------------------------------------

def f32list(t):
    return [float("%.9g" % v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def prompts(gen, vocab):
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def decoder_golden(model, ids):
    x = torch.tensor([ids])
    # no end-of-sequence token: a None in the call's config would fall back
    # to the model's own
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    with torch.no_grad():
        logits = model(x).logits[0]
        gcfg = GenerationConfig(do_sample=False, max_new_tokens=GEN_TOKENS,
                                min_new_tokens=0, eos_token_id=None, pad_token_id=0)
        out = model.generate(x, attention_mask=torch.ones_like(x),
                             generation_config=gcfg)[0, len(ids):].tolist()
        assert len(out) == GEN_TOKENS, f"generate stopped after {len(out)} tokens"
        # the same path without the KV cache, and its smallest top-2 margin
        seq, margin = list(ids), float("inf")
        for tok in out:
            last = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(last, 2).values
            margin = min(margin, float(top[0] - top[1]))
            if int(last.argmax()) != tok:
                raise SystemExit(f"generate and the uncached argmax disagree at {len(seq)}: "
                                 f"{tok} vs {int(last.argmax())}, top-2 gap {margin:.3g}")
            seq.append(tok)
    g = {"ids": ids, "logits_last": f32list(logits[-1]), "greedy": out,
         "min_margin": margin}
    if len(ids) <= ALL_POS_MAX:
        g["logits_all"] = f32list(logits)
    return g


def bert_golden(model, ids):
    n = len(ids)
    types = [0] * (n - n // 2) + [1] * (n // 2)
    with torch.no_grad():
        h = model(torch.tensor([ids]), token_type_ids=torch.tensor([types]),
                  attention_mask=torch.ones(1, n, dtype=torch.long)).last_hidden_state[0]
    emb = torch.nn.functional.normalize(h.mean(dim=0), dim=0)
    return {"ids": ids, "token_types": types, "hidden": f32list(h), "embedding": f32list(emb)}


# ---- GGUF (llama.cpp layout) ----------------------------------------------------

def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: rows of each head
    reordered so that interleaved pairs hold what HF's halves hold."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(rp, head_dim):
    """Per-frequency divisors of llama3 rope scaling, the rope_freqs.weight
    tensor llama.cpp's converter writes."""
    factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
    old = rp["original_max_position_embeddings"]
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * math.pi * rp["rope_theta"] ** (i / head_dim)
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


# HF name (after "model.layers.N." / "encoder.layer.N.") -> GGUF name
# (after "blk.N."), as llama.cpp's tensor map spells them.
GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "attention.self.query.weight": "attn_q.weight", "attention.self.query.bias": "attn_q.bias",
    "attention.self.key.weight": "attn_k.weight", "attention.self.key.bias": "attn_k.bias",
    "attention.self.value.weight": "attn_v.weight", "attention.self.value.bias": "attn_v.bias",
    "attention.output.dense.weight": "attn_output.weight",
    "attention.output.dense.bias": "attn_output.bias",
    "attention.output.LayerNorm.weight": "attn_output_norm.weight",
    "attention.output.LayerNorm.bias": "attn_output_norm.bias",
    "intermediate.dense.weight": "ffn_up.weight", "intermediate.dense.bias": "ffn_up.bias",
    "output.dense.weight": "ffn_down.weight", "output.dense.bias": "ffn_down.bias",
    "output.LayerNorm.weight": "layer_output_norm.weight",
    "output.LayerNorm.bias": "layer_output_norm.bias",
}
GGUF_GEMMA3_LAYER_NAMES = {
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}
GGUF_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}


def gguf_name(arch, hf):
    """The GGUF name of an HF parameter name."""
    if hf in GGUF_GLOBAL_NAMES:
        return GGUF_GLOBAL_NAMES[hf]
    parts = hf.split(".")
    layer, rest = parts[2], ".".join(parts[3:])   # model.layers.N / encoder.layer.N
    names = {**GGUF_LAYER_NAMES, **(GGUF_GEMMA3_LAYER_NAMES if arch == "gemma3" else {})}
    return f"blk.{layer}.{names[rest]}"


def gguf_tensor(arch, c, hf, t):
    """A parameter as llama.cpp's converter stores it: llama q/k rows
    permuted, gemma3 norm weights as 1 + w."""
    if arch == "llama" and hf.endswith("self_attn.q_proj.weight"):
        return llama_cpp_permute(t, c.num_attention_heads)
    if arch == "llama" and hf.endswith("self_attn.k_proj.weight"):
        return llama_cpp_permute(t, c.num_key_value_heads)
    if arch == "gemma3" and hf.endswith("norm.weight"):
        return t + 1.0
    return t


def gguf_metadata(w, arch, c):
    import gguf
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    if arch == "bert":
        w.add_layer_norm_eps(c.layer_norm_eps)
        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType.MEAN)
        return
    w.add_head_count_kv(c.num_key_value_heads)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    rp = c.rope_parameters
    if arch == "gemma3":
        rp = rp["full_attention"]
        w.add_float32(f"{arch}.rope.freq_base_swa",
                      c.rope_parameters["sliding_attention"]["rope_theta"])
        w.add_sliding_window(c.sliding_window)
        w.add_sliding_window_pattern([t == "sliding_attention" for t in c.layer_types])
        w.add_final_logit_softcapping(c.final_logit_softcapping)
    w.add_rope_freq_base(rp["rope_theta"])
    if rp.get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rp["factor"])
    if rp.get("rope_type") == "llama3":
        w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(rp, head_dim))


def write_gguf(model, arch, path):
    """The model as llama.cpp's convert_hf_to_gguf.py lays it out (F32)."""
    import gguf
    c = model.config
    w = gguf.GGUFWriter(path, arch)
    gguf_metadata(w, arch, c)
    for hf, p in model.named_parameters():
        if (hf == "lm_head.weight" and c.tie_word_embeddings) or hf.startswith("pooler."):
            continue
        t = p.detach().to(torch.float32).numpy()
        w.add_tensor(gguf_name(arch, hf), gguf_tensor(arch, c, hf, t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- driver -----------------------------------------------------------------------

def make(name, cfg, cls, outroot):
    outdir = os.path.join(outroot, name)
    os.makedirs(outdir, exist_ok=True)
    gen = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    cfg._attn_implementation = "eager"
    model = cls(cfg).eval()
    randomize(model, gen)
    model.save_pretrained(outdir)
    add_v4_rope_keys(os.path.join(outdir, "config.json"))
    if name == "bert":
        write_st_modules(outdir, cfg.hidden_size)

    model = cls.from_pretrained(outdir, attn_implementation="eager",
                                dtype=torch.float32).eval()
    ps = prompts(gen, cfg.vocab_size)
    fn = bert_golden if name == "bert" else decoder_golden
    golden = {"name": name, "model_type": cfg.model_type,
              "transformers_version": transformers.__version__,
              "torch_version": torch.__version__, "seed": SEED,
              "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
              "prompts": [fn(model, ids) for ids in ps]}
    with open(os.path.join(outdir, "golden.json"), "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    if name in GGUF_VARIANTS:
        os.makedirs(os.path.join(outroot, "gguf"), exist_ok=True)
        write_gguf(model, GGUF_VARIANTS[name], os.path.join(outroot, "gguf", name + ".gguf"))
    margins = [p.get("min_margin", 0.0) for p in golden["prompts"]]
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"smallest greedy margin {min(margins):.4g}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outroot = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "models")
    torch.set_grad_enabled(False)
    for name, (cfg, cls) in variants().items():
        make(name, cfg, cls, outroot)


if __name__ == "__main__":
    main()

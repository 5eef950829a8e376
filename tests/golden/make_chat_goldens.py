#!/usr/bin/env python3
"""Render every chat template in tests/data/chat_templates/ over every
conversation in tests/data/chat_conversations.json with Hugging Face
transformers' own renderer (render_jinja_template: jinja2's sandbox with the
environment transformers builds), and write the results to
tests/golden/chat/<template>.json.  Also render the small construct cases of
tests/data/chat_template_cases.json (one template and context each) into
tests/golden/chat/constructs.json.

A case whose rendering raises records the exception (type and message)
instead of text; kiln must fail on it too.

Needs transformers and jinja2 (no torch):
    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install transformers jinja2
    /tmp/tfenv/bin/python tests/golden/make_chat_goldens.py
"""
import json
import os
import sys

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATES = os.path.join(ROOT, "tests", "data", "chat_templates")
CONVERSATIONS = os.path.join(ROOT, "tests", "data", "chat_conversations.json")
CONSTRUCTS = os.path.join(ROOT, "tests", "data", "chat_template_cases.json")
OUT = os.path.join(ROOT, "tests", "golden", "chat")

# Special tokens as each family's tokenizer passes them to the template
# (transformers passes the tokenizer's special tokens map; Qwen has no BOS).
SPECIAL = {
    "llama-2": {"bos_token": "<s>", "eos_token": "</s>"},
    "llama-3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral": {"bos_token": "<s>", "eos_token": "</s>"},
    "qwen": {"eos_token": "<|im_end|>"},
    "gemma": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "deepseek": {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"},
    "tinyllama": {"bos_token": "<s>", "eos_token": "</s>"},
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
}


def special_tokens(name):
    for prefix, tokens in SPECIAL.items():
        if name.startswith(prefix):
            return tokens
    raise SystemExit(f"no special tokens known for template {name}")


def render(template, conv, add_generation_prompt, tokens):
    kwargs = dict(conv.get("kwargs", {}))
    kwargs.update(tokens)
    out, _ = render_jinja_template(
        conversations=[conv["messages"]],
        tools=conv.get("tools"),
        chat_template=template,
        add_generation_prompt=add_generation_prompt,
        **kwargs,
    )
    return out[0]


def versions():
    return {"transformers_version": transformers.__version__, "jinja2_version": jinja2.__version__}


def render_constructs():
    with open(CONSTRUCTS, encoding="utf-8") as f:
        cases = json.load(f)
    out = []
    for case in cases:
        ctx = dict(case["context"])
        messages = ctx.pop("messages", [])
        tools = ctx.pop("tools", None)
        agp = ctx.pop("add_generation_prompt", False)
        rec = {"name": case["name"]}
        try:
            res, _ = render_jinja_template(
                conversations=[messages], tools=tools, chat_template=case["template"],
                add_generation_prompt=agp, **ctx)
            rec["expected"] = res[0]
        except Exception as e:
            rec["error"] = {"type": type(e).__name__, "message": str(e)}
        out.append(rec)
    doc = dict(versions(), cases=out)
    with open(os.path.join(OUT, "constructs.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"constructs: {len(out)} cases, {sum('error' in c for c in out)} raise", file=sys.stderr)


def main():
    render_constructs()
    with open(CONVERSATIONS, encoding="utf-8") as f:
        conversations = json.load(f)
    os.makedirs(OUT, exist_ok=True)
    for fname in sorted(os.listdir(TEMPLATES)):
        if not fname.endswith(".jinja"):
            continue
        name = fname[: -len(".jinja")]
        with open(os.path.join(TEMPLATES, fname), encoding="utf-8", newline="") as f:
            template = f.read()
        tokens = special_tokens(name)
        cases = []
        for idx, conv in enumerate(conversations):
            for agp in (False, True):
                case = {"conversation": idx, "name": conv["name"], "add_generation_prompt": agp}
                try:
                    case["expected"] = render(template, conv, agp, tokens)
                except Exception as e:  # the template raised: kiln must fail too
                    case["error"] = {"type": type(e).__name__, "message": str(e)}
                cases.append(case)
        doc = dict(versions(), template=name, special_tokens=tokens, cases=cases)
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        errors = sum("error" in c for c in cases)
        print(f"{name}: {len(cases)} cases, {errors} raise", file=sys.stderr)


if __name__ == "__main__":
    main()

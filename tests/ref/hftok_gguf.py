#!/usr/bin/env python3
"""Write the vocabulary of a tokenizer.json as a GGUF tokenizer, the way
llama.cpp's converter stores it, for test_hftok's GGUF parity checks.

usage: hftok_gguf.py TOKENIZER_JSON OUT_GGUF gpt2 PRE_NAME ADD_BOS(0|1)
       hftok_gguf.py TOKENIZER_JSON OUT_GGUF bert

gpt2: tokens in id order (holes filled with "[PADn]"), merges as "a b",
      token types CONTROL (special added tokens), USER_DEFINED (other added
      tokens), NORMAL; tokenizer.ggml.pre = PRE_NAME; the BOS id is the
      first special id of the template post-processor, if any.
bert: WordPiece vocab in llama.cpp's phantom-space spelling ("\u2581word",
      "##ing" -> "ing", "[X]" kept), CONTROL for special added tokens,
      unknown/cls/seperator ids.
"""
import json
import sys

import gguf

NORMAL, CONTROL, USER = 1, 3, 4


def vocab_list(j):
    ids = dict(j["model"]["vocab"])
    types = {}
    for a in j["added_tokens"]:
        ids[a["content"]] = a["id"]
        types[a["id"]] = CONTROL if a["special"] else USER
    n = max(ids.values()) + 1
    toks = ["[PAD%d]" % i for i in range(n)]
    for t, i in ids.items():
        toks[i] = t
    return toks, [types.get(i, NORMAL) for i in range(n)]


def template_bos(j):
    pp = j.get("post_processor") or {}
    procs = pp.get("processors", [pp]) if pp.get("type") == "Sequence" else [pp]
    for p in procs:
        if p.get("type") == "TemplateProcessing":
            first = p["single"][0]
            if "SpecialToken" in first:
                return p["special_tokens"][first["SpecialToken"]["id"]]["ids"][0]
    return None


def write_gpt2(j, w, pre, add_bos):
    toks, types = vocab_list(j)
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    bos = template_bos(j)
    if bos is not None:
        w.add_bos_token_id(bos)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(False)


def phantom(t):
    if t.startswith("[") and t.endswith("]"):
        return t
    if t.startswith("##"):
        return t[2:]
    return "\u2581" + t


def write_bert(j, w):
    toks, types = vocab_list(j)
    w.add_tokenizer_model("bert")
    w.add_token_list([phantom(t) for t in toks])
    w.add_token_types(types)
    w.add_uint32("tokenizer.ggml.unknown_token_id", toks.index("[UNK]"))
    w.add_uint32("tokenizer.ggml.cls_token_id", toks.index("[CLS]"))
    w.add_uint32("tokenizer.ggml.seperator_token_id", toks.index("[SEP]"))


def main():
    src, out, mode = sys.argv[1:4]
    with open(src, encoding="utf-8") as f:
        j = json.load(f)
    w = gguf.GGUFWriter(out, arch="llama")
    if mode == "gpt2":
        write_gpt2(j, w, sys.argv[4], sys.argv[5] == "1")
    else:
        write_bert(j, w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

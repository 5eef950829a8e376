#!/usr/bin/env python3
"""Write a tokenizer beside each tiny golden model (tests/golden/models/<name>/,
made by make_model_goldens.py) and the `kiln run` cases that
tests/unit/test_cli_run.c checks against the goldens.

usage: make_golden_tokenizers.py [MODELS_DIR] [CASES_FILE]
       (default: tests/golden/models  tests/golden/cli_run.json)

Needs the Hugging Face `tokenizers` package (pip); written with
tokenizers 0.23.3 (cli_run.json records the version).  Deterministic: the
same corpus and tokenizers version write the same files (the WordPiece
pieces are renumbered in code-point order, as the trainer numbers them in
hash-map order).  For every directory of MODELS_DIR with a config.json it
writes

  tokenizer.json         trained with `tokenizers` on
                         tests/data/tokenizer_corpus.txt, exactly
                         config.json's vocab_size entries
  tokenizer_config.json  the special tokens by role, model_max_length

The decoders get a byte-level BPE (GPT-2 pre-tokenizer and decoder) with
the special tokens of the family their config.json describes:

  llama, mistral  <unk> <s> </s> and Mistral v0.3's control tokens
                  ([INST] ... [/TOOL_RESULTS]) at ids 0-9: BOS 1, EOS 2
  gemma3_text     <pad> <eos> <bos> <unk> <mask> at ids 0-4: EOS 1, BOS 2
  qwen2, qwen3    <|endoftext|> <|im_start|> <|im_end|> after the merges
                  (the last three ids), as Qwen's tokenizers place them

No post-processor adds a BOS: the goldens' prompts carry none, so a golden
prompt written as text encodes to the golden's ids.  BERT gets a lowercasing
WordPiece with [PAD] (pad_token_id 0) [UNK] [CLS] [SEP] [MASK] and
"[CLS] $A [SEP]".

CASES_FILE lists, per decoder, every golden prompt (golden.json) whose
text round-trips: decode(ids) encodes back to exactly ids, has no NUL (it
goes through argv) and whose first GEN_TOKENS greedy tokens hold no special
token and decode to text without NUL.  Each case carries the prompt text,
the golden ids, and `expected`: decode() of those greedy tokens, the text
`kiln run` must print.  A decoder without such a prompt is an error.

The corpus file is bytes with \\n, \\r and \\\\ escapes
(tests/data/make_tokenizer_corpus.py); each line is unescaped and decoded
with invalid UTF-8 replaced by U+FFFD before training.
"""
import json
import os
import sys

import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "data", "tokenizer_corpus.txt")
GEN_TOKENS = 8

MISTRAL_SPECIALS = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]",
                    "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
                    "[/TOOL_RESULTS]"]
GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# model_type -> (specials, where they go, roles for tokenizer_config.json)
FAMILIES = {
    "llama": (MISTRAL_SPECIALS, "front", {"unk_token": "<unk>", "bos_token": "<s>",
                                          "eos_token": "</s>"}),
    "mistral": (MISTRAL_SPECIALS, "front", {"unk_token": "<unk>", "bos_token": "<s>",
                                            "eos_token": "</s>"}),
    "gemma3_text": (GEMMA_SPECIALS, "front", {"pad_token": "<pad>", "eos_token": "<eos>",
                                              "bos_token": "<bos>", "unk_token": "<unk>",
                                              "mask_token": "<mask>"}),
    "qwen2": (QWEN_SPECIALS, "back", {"eos_token": "<|endoftext|>",
                                      "pad_token": "<|endoftext|>"}),
    "qwen3": (QWEN_SPECIALS, "back", {"eos_token": "<|endoftext|>",
                                      "pad_token": "<|endoftext|>"}),
}


def corpus_lines():
    with open(CORPUS, "rb") as f:
        data = f.read()
    for raw in data.split(b"\n"):
        s = raw.decode("utf-8", "replace")
        yield s.replace("\\\\", "\0").replace("\\n", "\n").replace("\\r", "\r").replace("\0", "\\")


def train_bpe(vocab_size, specials, where):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    front = specials if where == "front" else []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(specials) + len(front),
                                  special_tokens=front, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_lines(), trainer)
    if where == "back":
        tok.add_special_tokens(specials)
    return tok


def train_wordpiece(vocab_size):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    # The corpus has 20+ scripts: keep the alphabet small enough that merges
    # (word pieces) fill the rest of the 512 entries.
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIALS,
                                        limit_alphabet=150, show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    # The trainer numbers the pieces in the order of a hash map, which
    # changes from run to run; WordPiece matches by string, not by id, so
    # renumber them in a fixed order: the specials, then words, then "##"
    # continuations, each in code-point order.
    vocab = tok.get_vocab()
    rest = sorted((p for p in vocab if p not in BERT_SPECIALS),
                  key=lambda p: (p.startswith("##"), p))
    tok.model = models.WordPiece({p: i for i, p in enumerate(BERT_SPECIALS + rest)},
                                 unk_token="[UNK]")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def check_ids(name, cfg, tok, roles):
    """The vocabulary has vocab_size entries and the special tokens sit at
    config.json's bos/eos/pad ids."""
    if tok.get_vocab_size() != cfg["vocab_size"]:
        sys.exit(f"{name}: {tok.get_vocab_size()} tokens, config.json says {cfg['vocab_size']}")
    for key, role in (("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"),
                      ("pad_token_id", "pad_token")):
        want = cfg.get(key)
        if want is not None and tok.token_to_id(roles[role]) != want:
            sys.exit(f"{name}: {roles[role]} is id {tok.token_to_id(roles[role])}, "
                     f"config.json {key} is {want}")


def run_cases(name, dirpath, tok, specials):
    """The golden prompts of dirpath/golden.json that `kiln run` can be given
    as text, with the text of their greedy continuation."""
    with open(os.path.join(dirpath, "golden.json")) as f:
        golden = json.load(f)
    special_ids = {tok.token_to_id(s) for s in specials}
    cases = []
    for i, p in enumerate(golden["prompts"]):
        ids, greedy = p["ids"], p["greedy"][:GEN_TOKENS]
        text = tok.decode(ids, skip_special_tokens=False)
        want = tok.decode(greedy, skip_special_tokens=False)
        if (tok.encode(text).ids != ids or "\0" in text or "\0" in want
                or special_ids & set(ids + greedy)):
            continue
        cases.append({"model": name, "golden_prompt": i, "prompt": text, "prompt_ids": ids,
                      "greedy": greedy, "expected": want})
    if not cases:
        sys.exit(f"{name}: no golden prompt round-trips through the tokenizer as text")
    return cases


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "golden",
                                                                    "models")
    cases_file = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests", "golden",
                                                                    "cli_run.json")
    cases = []
    for name in sorted(os.listdir(models_dir)):
        dirpath = os.path.join(models_dir, name)
        cfg_path = os.path.join(dirpath, "config.json")
        if not os.path.isfile(cfg_path):
            continue
        with open(cfg_path) as f:
            cfg = json.load(f)
        mtype = cfg["model_type"]
        tcfg = {"tokenizer_class": "PreTrainedTokenizerFast",
                "model_max_length": cfg["max_position_embeddings"],
                "clean_up_tokenization_spaces": False}
        if mtype == "bert":
            tok = train_wordpiece(cfg["vocab_size"])
            roles = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
                     "sep_token": "[SEP]", "mask_token": "[MASK]"}
            tcfg.update(tokenizer_class="BertTokenizer", do_lower_case=True)
        elif mtype in FAMILIES:
            specials, where, roles = FAMILIES[mtype]
            tok = train_bpe(cfg["vocab_size"], specials, where)
            tcfg["add_bos_token"] = False
            tcfg["add_eos_token"] = False
        else:
            sys.exit(f"{name}: no tokenizer recipe for model_type {mtype}")
        check_ids(name, cfg, tok, roles)
        tcfg.update(roles)
        tok.save(os.path.join(dirpath, "tokenizer.json"))
        write_json(os.path.join(dirpath, "tokenizer_config.json"), tcfg)
        if mtype != "bert":
            cases += run_cases(name, dirpath, tok, specials)
        print(f"{name}: {mtype}, {tok.get_vocab_size()} tokens")
    write_json(cases_file, {"tokenizers_version": tokenizers.__version__,
                            "gen_tokens": GEN_TOKENS, "cases": cases})
    print(f"{cases_file}: {len(cases)} cases (tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()

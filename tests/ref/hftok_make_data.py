#!/usr/bin/env python3
"""Make the small tokenizer.json files test_hftok runs its parity checks on.

usage: hftok_make_data.py OUT_DIR

Trains tiny models with the `tokenizers` library on the committed corpus
(tests/data/tokenizers/hftok_corpus.txt):
  bpe_fallback.json   SentencePiece-style BPE (Llama 2): byte_fallback,
                      <unk>, <0xNN> pieces in the model vocab
  bpe_bytelevel.json  byte-level BPE (Llama 3 style, ignore_merges)
  bpe_suffix.json     BPE with continuing_subword_prefix "##" and
                      end_of_word_suffix "</w>"
  wordpiece.json      BERT-style WordPiece
The variants (other normalizers, pre-tokenizers, decoders, added tokens...)
are applied on top of these by the test from variants.json.
"""
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "data", "tokenizers", "hftok_corpus.txt")
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def lines():
    with open(CORPUS, "rb") as f:
        data = f.read().decode("utf-8", errors="replace")
    return [l.replace("\\n", "\n") for l in data.split("\n") if l] * 3


def save(tok, path, patch=None):
    j = json.loads(tok.to_str())
    if patch:
        patch(j)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=None, separators=(",", ":"))


def bpe_fallback(out):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tr = trainers.BpeTrainer(vocab_size=420, special_tokens=["<unk>", "<s>", "</s>"],
                             limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(lines(), tr)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])

    def patch(j):
        voc = j["model"]["vocab"]
        n = max(voc.values()) + 1
        for b in range(256):
            voc["<0x%02X>" % b] = n + b
    save(tok, os.path.join(out, "bpe_fallback.json"), patch)


def bpe_bytelevel(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tr = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             show_progress=False)
    tok.train_from_iterator(lines(), tr)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(tokenizers_regex(LLAMA3_RE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])

    def patch(j):
        j["model"]["ignore_merges"] = True
    save(tok, os.path.join(out, "bpe_bytelevel.json"), patch)


def tokenizers_regex(r):
    from tokenizers import Regex
    return Regex(r)


def bpe_suffix(out):
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tr = trainers.BpeTrainer(vocab_size=500, special_tokens=["[UNK]"], limit_alphabet=150,
                             continuing_subword_prefix="##", end_of_word_suffix="</w>",
                             show_progress=False)
    tok.train_from_iterator(lines(), tr)
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    save(tok, os.path.join(out, "bpe_suffix.json"))


def wordpiece(out):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tr = trainers.WordPieceTrainer(vocab_size=600, limit_alphabet=200, show_progress=False,
                                   special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(lines(), tr)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    save(tok, os.path.join(out, "wordpiece.json"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data", "tokenizers")
    bpe_fallback(out)
    bpe_bytelevel(out)
    bpe_suffix(out)
    wordpiece(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Train small SentencePiece models for tests/unit/test_spm.c.

usage: spm_make_models.py CORPUS OUTDIR

Trains, on the valid-UTF-8 lines of CORPUS (escapes as in spm_ref.py),
models that exercise the parts of the .model format the Llama 2 model does
not: an nmt_nfkc precompiled charsmap with user-defined and control pieces
(nfkc.model), removal of extra whitespace without byte fallback (ws.model),
whitespace as suffix (suffix.model), and a UNIGRAM model (unigram.model),
which kiln must refuse.  Deterministic for a given sentencepiece version.
"""
import os
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from spm_ref import unescape  # noqa: E402


def main() -> int:
    corpus, outdir = sys.argv[1:3]
    os.makedirs(outdir, exist_ok=True)
    with open(corpus, "rb") as f:
        lines = [unescape(l).decode("utf-8", errors="replace") for l in f.read().split(b"\n")]
    text = os.path.join(outdir, "train.txt")
    with open(text, "w", encoding="utf-8") as f:
        for l in lines:
            if l.strip():
                f.write(l.replace("\n", " ").replace("\r", " ") + "\n")
    common = dict(input=text, num_threads=1, minloglevel=2, hard_vocab_limit=False,
                  character_coverage=0.995, shuffle_input_sentence=False, seed_sentencepiece_size=10000)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(outdir, "nfkc"), model_type="bpe",
                                   vocab_size=1500, normalization_rule_name="nmt_nfkc",
                                   byte_fallback=True, user_defined_symbols=["<tag>", "@@"],
                                   control_symbols=["<ctl>"], **common)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(outdir, "ws"), model_type="bpe",
                                   vocab_size=1500, normalization_rule_name="identity",
                                   remove_extra_whitespaces=True, byte_fallback=False, **common)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(outdir, "suffix"), model_type="bpe",
                                   vocab_size=1500, normalization_rule_name="nfkc_cf",
                                   treat_whitespace_as_suffix=True, byte_fallback=True, **common)
    spm.SentencePieceTrainer.train(model_prefix=os.path.join(outdir, "unigram"),
                                   model_type="unigram", vocab_size=1500, **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Write the seed corpus of fuzz_spm_model: small valid .model files.

usage: make_spm_model_seeds.py OUTDIR   (needs the sentencepiece package)

Three BPE models trained on a few sentences (identity normalization, so no
large charsmap): with byte fallback, with user-defined and control pieces
and extra-whitespace removal, and with whitespace as suffix.
"""
import os
import sys
import tempfile

import sentencepiece as spm

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "a stitch in time saves nine, and the early bird catches the worm",
    "naïve café — über straße 東京 😀 ab ab abc",
] * 20


def main() -> int:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.txt")
        with open(src, "w", encoding="utf-8") as f:
            f.write("\n".join(TEXT) + "\n")
        common = dict(input=src, model_type="bpe", vocab_size=90, hard_vocab_limit=False,
                      normalization_rule_name="identity", minloglevel=2, num_threads=1)
        variants = {
            "bytes": dict(byte_fallback=True, vocab_size=340),
            "user": dict(user_defined_symbols=["<u>", "ab"], control_symbols=["<c>"],
                         remove_extra_whitespaces=True),
            "suffix": dict(treat_whitespace_as_suffix=True, add_dummy_prefix=True),
        }
        for name, extra in variants.items():
            spm.SentencePieceTrainer.train(model_prefix=os.path.join(d, name),
                                           **{**common, **extra})
            with open(os.path.join(d, name + ".model"), "rb") as f:
                data = f.read()
            with open(os.path.join(out, name + ".model"), "wb") as f:
                f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

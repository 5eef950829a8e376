#!/usr/bin/env bash
# install-deps.sh - install what kiln needs to build and test.
#
#  1. Debian packages (apt-get; as root, or through sudo): compilers, CMake,
#     the libraries of DESIGN.md, cmocka for tests, clang for fuzzing.
#  2. The Python reference packages of scripts/requirements-ref.txt into a
#     virtual environment at .venv (the tests compare kiln against them).
#
# Idempotent and quick when everything is present: apt-get runs only for
# packages that are missing, pip only when the requirements changed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PKGS=(
    build-essential cmake pkg-config git ca-certificates
    clang libclang-rt-14-dev
    libcmocka-dev libjansson-dev liburing-dev libpcre2-dev libutf8proc-dev
    libxxhash-dev libhwloc-dev libopenblas-dev libmicrohttpd-dev
    python3 python3-venv python3-pip
)

missing=()
for p in "${DEB_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing Debian packages: ${missing[*]}"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install-deps: need root or sudo for apt-get" >&2; exit 1; }
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python reference packages in .venv (PEP 668 forbids pip into the system
# Python on Debian 12).
req=scripts/requirements-ref.txt
stamp=.venv/.kiln-requirements
if [ ! -x .venv/bin/python ]; then
    echo "install-deps: creating .venv"
    python3 -m venv .venv
fi
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
    echo "install-deps: installing Python reference packages"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
fi
echo "install-deps: ok"

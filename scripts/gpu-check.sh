#!/usr/bin/env bash
# gpu-check.sh - on a GPU machine: build with CUDA, run the GPU tests (and
# the benchmarks as they exist), write full logs under $OUT, and print a
# short table last.
#
# GPU hosts are often offline and lack the -dev packages kiln builds
# against.  On a machine with network, `scripts/gpu-check.sh --fetch-debs`
# puts the needed Debian packages into .debs/; on the GPU host this script
# unpacks them with `dpkg -x` into a private prefix and builds against it.
#
#   OUT            where logs go (default: build-gpu/out)
#   KILN_CUDA_ARCH CUDA architectures to build (default 90)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DEBS=(libjansson-dev libjansson4 liburing-dev liburing2 libcmocka-dev libcmocka0
      libpcre2-dev libutf8proc-dev libutf8proc2)

if [ "${1:-}" = "--fetch-debs" ]; then
    mkdir -p .debs && cd .debs && apt-get download "${DEBS[@]}"
    exit $?
fi

OUT=${OUT:-$root/build-gpu/out}
mkdir -p "$OUT"
arch=${KILN_CUDA_ARCH:-90}
cmake_extra=()
declare -a rows=()
row() { rows+=("$(printf '%-34s %-6s %s' "$1" "$2" "$3")"); }

# ---- private prefix of unpacked .debs ------------------------------------
if compgen -G ".debs/*.deb" >/dev/null; then
    P=$root/.debs/prefix
    mkdir -p "$P"
    for f in .debs/*.deb; do dpkg -x "$f" "$P"; done
    lib=$P/usr/lib/x86_64-linux-gnu
    # The -dev packages' .so links are absolute in some packages: make them relative.
    for so in "$lib"/*.so; do
        [ -L "$so" ] && ln -sf "$(basename "$(readlink "$so")")" "$so"
    done
    export CMAKE_PREFIX_PATH=$P/usr
    # The .pc files of the packages name /usr: find headers and libraries by
    # search under the prefix instead of through pkg-config.
    cmake_extra=(-DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON)
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export PATH=/usr/local/cuda/bin:$PATH

{ nvidia-smi; nvcc --version; } >"$OUT/device.txt" 2>&1
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
row "device" "" "${gpu:-none}"

# ---- build -------------------------------------------------------------
t0=$(date +%s)
if cmake -S . -B build-gpu -DKILN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
        -DCMAKE_BUILD_TYPE=Release "${cmake_extra[@]}" >"$OUT/build.log" 2>&1 &&
   cmake --build build-gpu -j"$(nproc)" >>"$OUT/build.log" 2>&1; then
    row "build (sm_$arch)" "ok" "$(( $(date +%s) - t0 )) s"
else
    row "build (sm_$arch)" "FAIL" "see build.log"
    tail -30 "$OUT/build.log"
    printf '%s\n' "${rows[@]}"
    exit 1
fi

# ---- GPU tests -----------------------------------------------------------
status=0
ctest --test-dir build-gpu -L gpu -V >"$OUT/gpu-tests.log" 2>&1 || status=1
while read -r line; do
    name=$(sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*/\1/' <<<"$line")
    res=$(grep -qE '\*\*\*|Failed' <<<"$line" && echo FAIL || echo ok)
    secs=$(grep -oE '[0-9.]+ sec' <<<"$line")
    row "$name" "$res" "$secs"
done < <(grep -E 'Test +#[0-9]+:' "$OUT/gpu-tests.log")
grep -E 'SKIPPED|FAILED|PASSED|OK|seed' "$OUT/gpu-tests.log" | head -40 >"$OUT/gpu-tests-summary.txt"

echo
printf '%s\n' "${rows[@]}"
exit $status

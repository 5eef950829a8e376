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
#   KILN_GPU_TESTS ctest -R filter of the GPU tests to run (default: all;
#                  "none" skips them)
#   KILN_GPU_TARGETS build only these CMake targets (default: all; a short
#                  call that runs one test: its executable and kiln)
#   KILN_GPU_BENCH which benchmarks (below): none, quick (default), full,
#                  or a list of names
#   KILN_GPU_MEMCHECK 0 skips compute-sanitizer memcheck of the tiny models
#   KILN_GPU_KERNELS  0 skips the kernel lab (bench/kernels/), or a list of
#                     its parts: matmul attention (default: both)
#   KILN_GPU_NO_PEER  1 runs the latency/prefill/embed-model benchmarks
#                     without their transformers peer (short calls)
#   KILN_GPU_NCU      1 times one decode step's kernels with Nsight Compute
#                     (logs/ncu-*-step.txt)
#   KILN_GPU_SMI      0 skips sampling the GPU's clocks and power (nvidia-smi
#                     every 200 ms into logs/smi.csv; each benchmark's row
#                     gets the median SM clock, power and throttle reasons
#                     of its run, peer included: scripts/smi-window.py)
#   KILN_COMMIT       the commit the records name; a copy of the tree whose
#                     .git is older than its files (a GPU host) must be told
#   KILN_GPU_NCU_ATTN 1 profiles the prefill attention kernel (causal 8B
#                     heads, bge-base's encoder form) with Nsight Compute's
#                     full set (logs/ncu-attn-*)
#   KILN_GPU_NSYS_RUNS names of benchmarks whose run (no peer) Nsight
#                     Systems traces: how busy the device was in the timed
#                     pass, and its idle gaps (logs/nsys-run-NAME.txt)
#   KILN_GPU_NCU_RUNS names of benchmarks below whose whole run Nsight
#                     Compute times kernel by kernel, summed by kernel name
#                     (logs/ncu-run-NAME.txt; prefill and embed-model runs
#                     are cut to one timed repeat and 400 documents)
#
# What comes back under $OUT: summary.txt (the table printed last),
# logs.tgz (device, build, test and benchmark logs) and results.tgz (the
# benchmark JSON records, also left in build-gpu/results/).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DEBS=(libjansson-dev libjansson4 liburing-dev liburing2 libcmocka-dev libcmocka0
      libpcre2-dev libutf8proc-dev libutf8proc2)

if [ "${1:-}" = "--fetch-debs" ]; then
    # also the MiniLM tokenizer files (small) for the end-to-end embedding
    # benchmark, which runs dummy weights but real text
    mkdir -p .debs/tok/all-MiniLM-L6-v2
    for f in tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json; do
        [ -f "models/all-MiniLM-L6-v2/$f" ] && cp "models/all-MiniLM-L6-v2/$f" .debs/tok/all-MiniLM-L6-v2/
    done
    cd .debs && apt-get download "${DEBS[@]}"
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
   cmake --build build-gpu -j"$(nproc)" ${KILN_GPU_TARGETS:+--target $KILN_GPU_TARGETS} \
       >>"$OUT/build.log" 2>&1; then
    row "build (sm_$arch)" "ok" "$(( $(date +%s) - t0 )) s"
else
    row "build (sm_$arch)" "FAIL" "see build.log"
    tail -30 "$OUT/build.log"
    printf '%s\n' "${rows[@]}" | tee "$OUT/summary.txt"
    exit 1
fi

# ---- GPU tests -----------------------------------------------------------
status=0
if [ "${KILN_GPU_TESTS:-}" != none ]; then
    ctest --test-dir build-gpu -L gpu -V ${KILN_GPU_TESTS:+-R "$KILN_GPU_TESTS"} \
        >"$OUT/gpu-tests.log" 2>&1 || status=1
else
    : >"$OUT/gpu-tests.log"
fi
while read -r line; do
    name=$(sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*/\1/' <<<"$line")
    res=$(grep -qE '\*\*\*|Failed' <<<"$line" && echo FAIL || echo ok)
    secs=$(grep -oE '[0-9.]+ sec' <<<"$line")
    row "$name" "$res" "$secs"
done < <(grep -E 'Test +#[0-9]+:' "$OUT/gpu-tests.log")
grep -E 'SKIPPED|FAILED|PASSED|OK|seed' "$OUT/gpu-tests.log" | head -40 >"$OUT/gpu-tests-summary.txt"

# ---- compute-sanitizer memcheck on the tiny models ---------------------------
# KILN_GPU_MEMCHECK=0 skips it.
san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ "${KILN_GPU_MEMCHECK:-1}" != 0 ] && [ -x "$san" ]; then
    for t in gpu_test_engine test_model_golden; do
        t0=$(date +%s)
        if (cd build-gpu && KILN_SOURCE_DIR=$root KILN_MODELS_DIR=$root/models KILN_TEST_BACKEND=cuda-bf16 \
                "$san" --tool memcheck --error-exitcode 99 --print-limit 20 "./$t") \
                >"$OUT/memcheck-$t.log" 2>&1; then
            row "memcheck $t" "ok" "$(grep -m1 -oE 'ERROR SUMMARY: [0-9]+ errors' \
                "$OUT/memcheck-$t.log") ($(( $(date +%s) - t0 )) s)"
        else
            row "memcheck $t" "FAIL" "see logs/memcheck-$t.log"
            status=1
        fi
    done
fi

# ---- kernel lab: decode-row matmul, gemv.cu vs cuBLASLt -------------------------
res=$root/build-gpu/results
mkdir -p "$res" "$OUT/logs"
lab=${KILN_GPU_KERNELS:-matmul attention}
[ "$lab" = 1 ] && lab="matmul attention"
[ "${KILN_GPU_BENCH:-quick}" = none ] && lab=""
if grep -qw matmul <<<"$lab"; then
    if cmake --build build-gpu --target cuda_matmul_bench >>"$OUT/build.log" 2>&1 &&
       build-gpu/cuda_matmul_bench 200 >"$res/cuda-matmul-$(date -u +%Y-%m-%dT%H-%M-%SZ).json" \
           2>"$OUT/logs/cuda-matmul-bench.log"; then
        row "kernel cuda_matmul_bench" "ok" "$(grep -m1 'n=1 gemv pick ' "$OUT/logs/cuda-matmul-bench.log" | tr -s ' ')"
    else
        row "kernel cuda_matmul_bench" "FAIL" "see logs/cuda-matmul-bench.log"
        status=1
    fi
fi
if grep -qw attention <<<"$lab"; then
    af=$res/attention-kernels-$(date -u +%Y-%m-%dT%H-%M-%SZ).jsonl
    if cmake --build build-gpu --target attention_bench >>"$OUT/build.log" 2>&1 &&
       build-gpu/attention_bench --json "$af" >"$OUT/logs/attention-bench.log" 2>&1; then
        row "kernel attention_bench" "ok" "$(awk '$2 == 1 && $3 == 2048 {printf "%s %s, ", $1, $5} END {print "TFLOP/s at 1x2048"}' "$OUT/logs/attention-bench.log")"
        # the fused layout (as the engine runs): each variant's encoder and
        # general form at bge-base's heads, then MiniLM's
        for enc in bge-base all-MiniLM-L6-v2; do
            row "kernel attention $enc" "ok" "$(awk -v m="$enc" '/^encoder/ {on = index($0, m) > 0; next}
                on && $2 == "fused" {printf "%s %s %s, ", $1, substr($3, 1, 3), $5}
                END {print "TFLOP/s"}' "$OUT/logs/attention-bench.log")"
        done
    else
        row "kernel attention_bench" "FAIL" "see logs/attention-bench.log"
        status=1
    fi
fi

# ---- clocks and power while the benchmarks run ---------------------------------
smi_pid=
if [ "${KILN_GPU_SMI:-1}" != 0 ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active \
        --format=csv,noheader -lms 200 >"$OUT/logs/smi.csv" 2>/dev/null &
    smi_pid=$!
fi

# ---- benchmarks ------------------------------------------------------------
# name | kiln bench arguments (dummy weights: no model files on the GPU host)
#      [| VAR=VALUE ... set for that run alone]
# bge-base times three passes on each side (kiln's median, the peer's median
# at each batch size, then its best batch size): single passes of its
# transformers peer read up to 11 % apart within one call.
BENCHES=(
    "lat-8b-b1|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 128 --gen-tokens 256"
    "pre-8b-1x2048|prefill --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 2048"
    "pre-8b-8x512|prefill --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 8 --prompt-tokens 512"
    "lat-8b-b1-eager|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 128 --gen-tokens 256 --no-cuda-graphs --no-peer"
    "lat-8b-b1-sample|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 128 --gen-tokens 256 --temp 0.8 --top-p 0.9 --no-peer"
    "lat-1b-b1-sample|latency --dummy-weights --config bench/configs/llama-3.2-1b.json --batch 1 --prompt-tokens 20 --gen-tokens 128 --temp 0.8 --top-p 0.9 --no-peer"
    "lat-1b-b1|latency --dummy-weights --config bench/configs/llama-3.2-1b.json --batch 1 --prompt-tokens 20 --gen-tokens 128"
    "lat-1b-b1-eager|latency --dummy-weights --config bench/configs/llama-3.2-1b.json --batch 1 --prompt-tokens 20 --gen-tokens 128 --no-cuda-graphs --no-peer"
    "lat-8b-b8|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 8 --prompt-tokens 128 --gen-tokens 128"
    "lat-8b-b32|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 32 --prompt-tokens 128 --gen-tokens 128 --no-peer"
    "lat-8b-b128|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 128 --prompt-tokens 128 --gen-tokens 128 --no-peer"
    "lat-8b-b1-tp2|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 128 --gen-tokens 256 --tensor-parallel-size 2 --no-peer"
    "lat-8b-b1-tp4|latency --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 128 --gen-tokens 256 --tensor-parallel-size 4 --no-peer"
    "pre-8b-1x2048-tp2|prefill --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 2048 --tensor-parallel-size 2 --no-peer"
    "pre-8b-1x2048-tp4|prefill --dummy-weights --config bench/configs/llama-3.1-8b.json --batch 1 --prompt-tokens 2048 --tensor-parallel-size 4 --no-peer"
    "e2e-minilm|embed --dtype f16 --dummy-weights --config bench/configs/all-minilm-l6-v2.json --tokenizer .debs/tok/all-MiniLM-L6-v2 --docs 20000 --repeat 2"
    "e2e-minilm-dp2|embed --dtype f16 --dummy-weights --config bench/configs/all-minilm-l6-v2.json --tokenizer .debs/tok/all-MiniLM-L6-v2 --docs 40000 --repeat 2 --data-parallel-size 2 --no-peer"
    "e2e-minilm-dp4|embed --dtype f16 --dummy-weights --config bench/configs/all-minilm-l6-v2.json --tokenizer .debs/tok/all-MiniLM-L6-v2 --docs 80000 --repeat 2 --data-parallel-size 4 --no-peer"
    "emb-minilm|embed-model --dummy-weights --config bench/configs/all-minilm-l6-v2.json --dtype f16 --docs 20000 --repeat 1"
    "emb-bge-base|embed-model --dummy-weights --config bench/configs/bge-base-en-v1.5.json --dtype f16 --docs 20000 --repeat 3"
    "emb-minilm-tanh|embed-model --dummy-weights --config bench/configs/all-minilm-l6-v2.json --dtype f16 --docs 20000 --repeat 1 --no-peer|KILN_CUDA_GELU_TANH=1"
    "emb-bge-base-tanh|embed-model --dummy-weights --config bench/configs/bge-base-en-v1.5.json --dtype f16 --docs 20000 --repeat 3|KILN_CUDA_GELU_TANH=1"
)
case "${KILN_GPU_BENCH:-quick}" in
    none) want="" ;;
    quick) want="lat-8b-b1 lat-8b-b1-eager pre-8b-1x2048" ;;
    full) want=$(printf '%s\n' "${BENCHES[@]}" | cut -d'|' -f1 | grep -vE -- '-(dp|tp)[0-9]') ;;
    *) want=$KILN_GPU_BENCH ;;
esac
for b in "${BENCHES[@]}"; do
    IFS='|' read -r name args envs <<<"$b"
    grep -qw -- "$name" <<<"$want" || continue
    t0=$(date +%s)
    extra=()
    if [ "${KILN_GPU_NO_PEER:-0}" != 0 ] && ! grep -q -- '--no-peer' <<<"$args" &&
       grep -qE '^(latency|prefill|embed-model) ' <<<"$args"; then
        extra=(--no-peer)
    fi
    # shellcheck disable=SC2086 # the arguments and variables are split on purpose
    if env $envs build-gpu/kiln bench $args "${extra[@]}" --device cuda --out "$res" >"$OUT/logs/bench-$name.log" 2>&1; then
        line=$(grep -E '^(decode|prefill|embed) ' "$OUT/logs/bench-$name.log" | head -1 |
               awk '{printf "kiln %s peer %s ratio %s; %s of ceiling %s %s", $4, $5, $6, $8, $7, $9}')
        row "bench $name" "ok" "$line ($(( $(date +%s) - t0 )) s)"
        [ -n "$smi_pid" ] && row "  clock $name" "" "$(python3 scripts/smi-window.py \
            "$OUT/logs/smi.csv" "$t0" "$(date +%s)" 2>&1)"
    else
        row "bench $name" "FAIL" "see logs/bench-$name.log"
        status=1
    fi
    # after each run, so a run cut short still brings back what was measured
    tar -czf "$OUT/results.tgz" -C "$res" . 2>/dev/null
    printf '%s\n' "${rows[@]}" >"$OUT/summary.txt"
done

[ -n "$smi_pid" ] && kill "$smi_pid" 2>/dev/null

# ---- one decode step's kernels, timed by Nsight Compute --------------------------
# KILN_GPU_NCU=1: the 8B-shape batch-1 decode (eager, so every kernel is
# launched on its own), each kernel timed alone; scripts/ncu-step.py cuts
# the last step out and sums it by kernel, into logs/ncu-*-step.txt and a
# decode_step_kernels record in results/.
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if [ "${KILN_GPU_NCU:-0}" != 0 ] && [ -x "$ncu" ]; then
    for shape in ${KILN_GPU_NCU_SHAPES:-llama-3.1-8b llama-3.2-1b}; do
        t0=$(date +%s)
        csvf=$OUT/logs/ncu-$shape.csv
        if timeout 300 "$ncu" --clock-control none --csv --print-units base \
               --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size \
               build-gpu/kiln bench latency --dummy-weights --config "bench/configs/$shape.json" \
               --batch 1 --prompt-tokens 128 --gen-tokens 4 --repeat 1 --no-peer --no-cuda-graphs \
               --device cuda --out "$OUT/logs" >"$csvf" 2>"$OUT/logs/ncu-$shape.log" &&
           rec=$(ls -t "$OUT"/logs/latency-*.json | head -1) &&
           python3 scripts/ncu-step.py "$csvf" --record "$rec" \
               "$res/ncu-step-$(basename "$rec" .json | sed 's/^latency-//').json" \
               >"$OUT/logs/ncu-$shape-step.txt" 2>&1; then
            row "ncu $shape b1 step" "ok" "$(grep -m1 'kernel time in one step' "$OUT/logs/ncu-$shape-step.txt") ($(( $(date +%s) - t0 )) s)"
        else
            row "ncu $shape b1 step" "FAIL" "see logs/ncu-$shape.log"
        fi
    done
fi

# KILN_GPU_NCU_RUNS="pre-8b-1x2048 emb-bge-base ...": every kernel of the
# named benchmark's run (warm-up included), timed alone, summed by name.
if [ -n "${KILN_GPU_NCU_RUNS:-}" ] && [ -x "$ncu" ]; then
    for b in "${BENCHES[@]}"; do
        IFS='|' read -r name args envs <<<"$b"
        grep -qw -- "$name" <<<"$KILN_GPU_NCU_RUNS" || continue
        args=$(sed -E 's/--docs [0-9]+/--docs 400/; s/--repeat [0-9]+//' <<<"$args")
        grep -qE '^(prefill|embed-model) ' <<<"$args" && args="$args --repeat 1"
        t0=$(date +%s)
        csvf=$OUT/logs/ncu-run-$name.csv
        # shellcheck disable=SC2086 # the arguments are split on purpose
        if timeout 420 env $envs "$ncu" --clock-control none --csv --print-units base \
               --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size \
               build-gpu/kiln bench $args --no-peer --device cuda --out "$OUT/logs" \
               >"$csvf" 2>"$OUT/logs/ncu-run-$name.log" &&
           rec=$(ls -t "$OUT"/logs/*.json | head -1) &&
           python3 scripts/ncu-step.py "$csvf" --all --record "$rec" \
               "$res/ncu-run-$name-$(basename "$rec" .json | sed 's/^[a-z-]*-\(20\)/\1/').json" \
               >"$OUT/logs/ncu-run-$name.txt" 2>&1; then
            row "ncu run $name" "ok" "$(grep -m1 'kernel time' "$OUT/logs/ncu-run-$name.txt") ($(( $(date +%s) - t0 )) s)"
        else
            row "ncu run $name" "FAIL" "see logs/ncu-run-$name.log"
        fi
    done
fi

# KILN_GPU_NSYS_RUNS="emb-bge-base ...": the named benchmark's run (no
# peer) under Nsight Systems (CUDA trace only); scripts/nsys-busy.py reads
# the trace's second half (the timed pass) and prints how busy the device
# was, the idle gaps by length and what the longest ones fall between
# (logs/nsys-run-NAME.txt).  Kernels run as they do without a profiler,
# concurrently and at the clock the device picks.
nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "${KILN_GPU_NSYS_RUNS:-}" ] && [ -n "$nsys" ]; then
    for b in "${BENCHES[@]}"; do
        IFS='|' read -r name args envs <<<"$b"
        grep -qw -- "$name" <<<"$KILN_GPU_NSYS_RUNS" || continue
        t0=$(date +%s)
        rep=$OUT/logs/nsys-run-$name
        # shellcheck disable=SC2086 # the arguments are split on purpose
        if timeout 420 env $envs "$nsys" profile --trace=cuda --sample=none --cpuctxsw=none \
               --export=sqlite -f true -o "$rep" \
               build-gpu/kiln bench $args --no-peer --device cuda --out "$OUT/logs" \
               >"$rep.log" 2>&1 &&
           python3 scripts/nsys-busy.py "$rep.sqlite" 0.5 16 >"$rep.txt" 2>&1; then
            row "nsys run $name" "ok" "$(grep -m1 'device busy' "$rep.txt") ($(( $(date +%s) - t0 )) s)"
        else
            row "nsys run $name" "FAIL" "see logs/nsys-run-$name.log"
        fi
        rm -f "$rep.sqlite" "$rep.nsys-rep"
    done
elif [ -n "${KILN_GPU_NSYS_RUNS:-}" ]; then
    row "nsys runs" "skip" "no nsys on this machine"
fi

# KILN_GPU_NCU_ATTN=1: Nsight Compute's full set (stall reasons, occupancy,
# source-level counters) on the prefill attention kernel, the engine's
# variant: launch 0 of `attention_bench --prefill-only --default-only
# --iters 1` is the causal 1 x 2048 at the 8B heads, launch 12 the encoder
# form at bge-base's heads in the fused layout (three launches a shape:
# warm-up, then a graph of one call run twice).  The details page goes to
# logs/ncu-attn-*.txt, the per-instruction counters (SASS, CSV) to
# logs/ncu-attn-*-source.csv.gz and their summary (stall reasons, opcode
# mix, the instructions warps wait at most: scripts/ncu-source.py) to
# logs/ncu-attn-*-source.txt.
if [ "${KILN_GPU_NCU_ATTN:-0}" != 0 ] && [ -x "$ncu" ] &&
   cmake --build build-gpu --target attention_bench >>"$OUT/build.log" 2>&1; then
    for pick in 0:causal-1x2048 12:encoder-bge; do
        skip=${pick%%:*} what=${pick#*:} t0=$(date +%s)
        rep=$OUT/logs/ncu-attn-$what
        if timeout 300 "$ncu" --set full --import-source yes --kernel-name regex:attn_prefill_kernel \
               --launch-skip "$skip" --launch-count 1 -f -o "$rep" \
               build-gpu/attention_bench --prefill-only --default-only --iters 1 \
               >"$rep.log" 2>&1 &&
           "$ncu" --import "$rep.ncu-rep" --page details >"$rep.txt" 2>&1; then
            "$ncu" --import "$rep.ncu-rep" --page source --csv --print-source sass 2>/dev/null |
                gzip >"$rep-source.csv.gz"
            python3 scripts/ncu-source.py "$rep-source.csv.gz" 30 >"$rep-source.txt" 2>&1
            row "ncu attention $what" "ok" "$(grep -m1 -E 'Achieved Occupancy' "$rep.txt" | tr -s ' ') ($(( $(date +%s) - t0 )) s)"
        else
            row "ncu attention $what" "FAIL" "see logs/ncu-attn-$what.log"
        fi
        rm -f "$rep.ncu-rep"
    done
fi

mv "$OUT/device.txt" "$OUT/build.log" "$OUT/gpu-tests.log" "$OUT/gpu-tests-summary.txt" \
    "$OUT"/memcheck-*.log "$OUT/logs/" 2>/dev/null
tar -czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$OUT/logs"
compgen -G "$res/*.json" >/dev/null && tar -czf "$OUT/results.tgz" -C "$res" .
echo
printf '%s\n' "${rows[@]}" | tee "$OUT/summary.txt"
exit $status

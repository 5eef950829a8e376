# kiln - thin wrapper over CMake/CTest.  The work is in CMakeLists.txt.
#
#   make            build (CUDA backend too when nvcc is found)
#   make test       install deps, fetch models, build, run every test
#   make run        install deps, fetch models, build, run kiln on them
#   make deps       Debian packages + Python reference packages (.venv)
#   make models     default models into models/
#   make test-asan  the suite under AddressSanitizer + UBSan
#   make fuzz       libFuzzer targets, KILN_FUZZ_SECONDS (60) each
#   make gpu-check  build + GPU tests + benchmarks (on a GPU machine)

BUILD       ?= build
CMAKE_FLAGS ?=
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_FLAGS ?= --output-on-failure -j$(JOBS)
KILN_FUZZ_SECONDS ?= 60
GEMMA  := models/gemma-3-270m-q4_k_m.gguf
MINILM := models/all-MiniLM-L6-v2

.PHONY: all build configure deps models test run test-asan fuzz gpu-check clean

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

configure:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

deps:
	scripts/install-deps.sh

models:
	scripts/fetch-models.sh

# Unit and CLI tests (GPU tests have their own label and run on a GPU
# machine through `make gpu-check`; fuzzers through `make fuzz`).
test: deps models
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)
	ctest --test-dir $(BUILD) -LE 'gpu|fuzz' $(CTEST_FLAGS)

run: deps models build
	$(BUILD)/kiln info $(GEMMA)
	$(BUILD)/kiln info $(MINILM)
	$(BUILD)/kiln run -m $(GEMMA) --chat -n 64 -p "What is the capital of France? Answer in one sentence."
	@# the packaged Gemma 3 270M is the base model: a plain completion prompt suits it
	$(BUILD)/kiln run -m $(GEMMA) -n 16 --stop Question -p "$$(printf 'Question: What is the capital of France?\nAnswer:')"
	printf '%s\n' "The cat sits on the mat." "A man is playing a guitar." \
	    "Paris is the capital of France." | $(BUILD)/kiln embed -m $(MINILM) --format jsonl | cut -c1-120

test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DKILN_CUDA=OFF -DKILN_SANITIZE=address,undefined $(CMAKE_FLAGS)"

fuzz:
	CC=clang cmake -S . -B build-fuzz -DKILN_CUDA=OFF -DKILN_FUZZ=ON -DKILN_FUZZ_SECONDS=$(KILN_FUZZ_SECONDS)
	cmake --build build-fuzz -j$(JOBS)
	ctest --test-dir build-fuzz -L fuzz --output-on-failure

gpu-check:
	scripts/gpu-check.sh

clean:
	rm -rf build build-*

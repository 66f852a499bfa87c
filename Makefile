# Quick start: `make demo` (install, build the demo package, render examples/hello.wav) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: install demo lint test bench clean gpu-wheels ort-gpu-wheel

install: $(STAMP)

# The tool alone: what `make demo` needs.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# The test extra on top (pytest, ruff, Ray for the Ray test, onnxconverter-common for fp16).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

packages/demo/package.json: | $(STAMP)
	$(BIN)/lipsync package synth demo --frames 100

demo: $(STAMP) packages/demo/package.json
	$(BIN)/lipsync package inspect demo
	mkdir -p out
	$(BIN)/lipsync render examples/hello.wav --model demo -o out/hello.mp4

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP) packages/demo/package.json
	$(BIN)/lipsync bench --model demo --batch-sizes 1,4,8,25 --frames 100

# What a lent GPU machine lacks (it reaches no package registry): cp312 manylinux wheels for
# benchmarks/gpu_check.sh (pytest for its CUDA tests, onnxconverter-common for ONNX Runtime fp16), git-ignored, at most
# 50 MB (64 MiB can be carried in all).
GPU_WHEELS := .gpu-wheels
gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--abi cp312 --abi abi3 --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d $(GPU_WHEELS) av soundfile soxr cffi pycparser setuptools pytest pluggy iniconfig packaging \
		onnxconverter-common
	@du -sm $(GPU_WHEELS) | awk '{ print "$(GPU_WHEELS): " $$1 " MB"; if ($$1 > 50) { print "over the 50 MB limit"; exit 1 } }'

# onnxruntime-gpu for the lent machine, whose image has only the CPU build: too large for one device call (64 MiB),
# so split into parts of at most 60 MiB with a sha256 manifest, one part per call (benchmarks/README.md).
# Git-ignored; the downloaded wheel stays in .ort-gpu-download/.
ORT_GPU_VERSION ?= 1.31.1
ort-gpu-wheel: $(STAMP)
	PYTHON=$(BIN)/python ORT_GPU_VERSION=$(ORT_GPU_VERSION) benchmarks/ort_gpu_wheel.sh download .ort-gpu-download
	benchmarks/ort_gpu_wheel.sh split .ort-gpu-download/onnxruntime_gpu-$(ORT_GPU_VERSION)-cp312-cp312-manylinux_2_28_x86_64.whl \
		.ort-gpu-wheel

clean:
	rm -rf out packages/demo packages/tiny .pytest_cache

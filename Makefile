# Quick start: `make demo` (install, build the demo package, render examples/hello.wav) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp

.PHONY: install demo lint test bench clean

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

clean:
	rm -rf out packages/demo packages/tiny .pytest_cache

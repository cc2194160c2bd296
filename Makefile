# make run: set up and materialize the whole graph on the embedded default.
# make test: set up and run every test, slow end-to-end ones included.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip -q --disable-pip-version-check
LLAMA_CPP_VERSION := 0.3.36
# A portable x86-64 (AVX2) build of llama.cpp: the default -march=native build produced wrong
# Q8_0 / Q4_1 / Q4_K_M results on this AMD EPYC (AVX-512) machine. Built once, kept in a cache
# outside the checkout (a fresh build takes ~10 min on 2 cores).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
WHEELHOUSE := $(HOME)/.cache/llmops-assets/wheels/llama-cpp-python-$(LLAMA_CPP_VERSION)-avx2
INSTALLED := $(VENV)/.installed

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export LLMOPS_HOME ?= $(CURDIR)/.llmops

.PHONY: setup run dev test test-fast lint clean
setup: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-cache-dir -w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install -c constraints.txt $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -c constraints.txt -e ".[dev]"
	touch $@

run: setup
	$(BIN)/llmops run

# The Dagster UI and daemon (sensors, automation) on http://127.0.0.1:3000, on the project instance.
dev: setup
	$(BIN)/python -c "from llmops_assets.cli import dagster_instance; dagster_instance()"
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

lint: setup
	$(BIN)/ruff check llmops_assets llmops_assets_tests bench
	$(BIN)/lint-imports --no-logo

clean:
	-$(BIN)/llmops serve stop
	rm -rf .llmops .dagster_home

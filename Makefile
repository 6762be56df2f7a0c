# One-liners behind the README. `make demo` and `make test` install everything they need from scratch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch: an unpinned `torch` would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint format benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/demo.py --output_dir runs/demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: install
	$(BIN)/python scripts/benchmark.py --quick

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info .pytest_cache .ruff_cache

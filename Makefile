# One-liners behind the README. Every target installs what it needs from scratch.
#   .venv         the tested set of versions (constraints/tested.txt): demo, lint, benchmark
#   .venv-oldest  the lower bounds setup.py declares (constraints/oldest.txt)
#   .venv-newest  the newest releases the registry has today (resolved anew at every `make test`)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch: an unpinned `torch` would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# The newest end runs the newest torch pip installs here: 2.14.1, a CUDA build (what GPU users have) that runs on
# the CPU, from this machine's disk (2.15 is on the registry but several GB away and capped by /etc/xdg/pip).
TORCH_NEWEST ?= torch==2.14.1
pytest = HF_HUB_OFFLINE=1 $(1)/bin/python -m pytest -n 2 -q

.PHONY: install install-oldest install-newest demo test test-fast test-oldest test-newest lint format benchmark lock clean

%/bin/python:
	$(PYTHON) -m venv $*
	$*/bin/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints/tested.txt $(TORCH)
	$(BIN)/pip install --quiet -c constraints/tested.txt -e ".[dev,warmstart]"

install-oldest: .venv-oldest/bin/python
	.venv-oldest/bin/pip install --quiet -c constraints/oldest.txt $(TORCH)
	.venv-oldest/bin/pip install --quiet -c constraints/oldest.txt -e ".[dev]"

install-newest: .venv-newest/bin/python
	.venv-newest/bin/pip install --quiet $(TORCH_NEWEST)
	.venv-newest/bin/pip install --quiet --upgrade --upgrade-strategy eager $(TORCH_NEWEST) -e ".[dev,peft,onnx]"
	# not an extra: its build must see the installed (CPU) torch, or pip's build isolation fetches a CUDA one
	.venv-newest/bin/pip install --quiet --upgrade --no-build-isolation deepspeed

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/demo.py --output_dir runs/demo

# The suite on both ends of the supported range; each end also loads a checkpoint saved by the other.
test: install-oldest install-newest
	SYNTHESIZER_OTHER_PYTHON=$(CURDIR)/.venv-newest/bin/python $(call pytest,.venv-oldest)
	SYNTHESIZER_OTHER_PYTHON=$(CURDIR)/.venv-oldest/bin/python $(call pytest,.venv-newest)

# The edit loop: the tests that start no other process and take no more than about a second (the tested set).
test-fast: install
	$(call pytest,$(VENV)) -m "not slow"

test-oldest: install-oldest
	$(call pytest,.venv-oldest)

test-newest: install-newest
	$(call pytest,.venv-newest)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: install
	$(BIN)/python scripts/benchmark.py --quick

# Record the newest set as the tested one (after `make test` passed on it).
lock:
	{ echo "# The set \`make install\` / \`make demo\` install: the newest releases on the day \`make lock\` ran."; \
	  .venv-newest/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > constraints/tested.txt

clean:
	rm -rf $(VENV) .venv-oldest .venv-newest runs build *.egg-info src/*.egg-info .pytest_cache .ruff_cache

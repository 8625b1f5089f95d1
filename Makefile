# The README's two quick-start commands are `make standalone` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export LEOFLOW_CACHE ?= $(CURDIR)/.cache

.PHONY: setup standalone test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	@{ command -v chromium && command -v zsh; } >/dev/null 2>&1 || { echo "installing chromium and zsh (Debian packages)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium zsh >/dev/null; }
	$(BIN)/leoflow ui install

standalone: setup
	$(BIN)/leoflow standalone

lint: setup
	$(BIN)/ruff check leoflow tests

test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	for b in tests/benchmarks/bench_*.py; do $(BIN)/python -m tests.benchmarks.$$(basename $$b .py) || exit 1; done

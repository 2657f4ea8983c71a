# One entry point for a fresh machine: `make demo` and `make test` set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch must be installed before anything that depends on torch, or pip
# resolves torch to a CUDA build of several GB.
TORCH_SPEC ?= torch==2.13.0
PYTEST_WORKERS ?= 2

.PHONY: setup demo test lint docs notebooks benchmarks-smoke clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@if $(BIN)/python -m pip list 2>/dev/null | grep -qi '^nvidia-'; then \
		echo "error: CUDA packages (nvidia-*) were installed; install the CPU torch first." >&2; \
		exit 1; fi
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cancergpt-scvi demo --out demo_output

test: $(STAMP) lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --durations=15 tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The docs build executes every tutorial notebook (docs/tutorials -> notebooks/) and renders its
# outputs; a failing cell fails it. -E rereads every page, so the notebooks run on each build;
# autosummary's stubs are made afresh, so a name gone from docs/api.md leaves no stale page.
docs: $(STAMP)
	rm -rf docs/generated
	$(BIN)/sphinx-build -E -W --keep-going -b html docs docs/_build/html

# The tutorials run as part of the docs build: one execution for the docs and CI.
notebooks: docs

# Every script in benchmarks/ (not benchmarks/_common.py, what they share) at its smallest
# setting (--smoke), one after another, timed; the first failure stops the target.
# survival.py also runs its real-cohort path (breast_cancer). First, every script must be named
# by a docs page: the docs' tables come from these scripts, and none is kept that no page runs.
BENCHMARK_SCRIPTS := $(sort $(filter-out benchmarks/_%,$(wildcard benchmarks/*.py)))
BENCHMARK_SMOKE_RUNS := $(addsuffix :--smoke,$(BENCHMARK_SCRIPTS)) \
	benchmarks/survival.py:--smoke:--data:breast_cancer

benchmarks-smoke: $(STAMP)
	@set -e; for script in $(BENCHMARK_SCRIPTS); do \
		grep -qF "python $$script" docs/*.md || { echo "error: no docs page runs $$script" >&2; exit 1; }; \
	done
	@set -e; for run in $(BENCHMARK_SMOKE_RUNS); do \
		cmd="$(BIN)/python $$(echo $$run | tr : ' ')"; \
		echo "== $$cmd"; start=$$(date +%s); \
		$$cmd; \
		echo "== $$cmd: $$(( $$(date +%s) - start )) s"; \
	done

clean:
	rm -rf docs/_build docs/generated demo_output .pytest_cache .ruff_cache

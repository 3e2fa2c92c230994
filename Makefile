# seawall: two commands on a fresh machine.
#   make run   create .venv, install, write the demo models, start the gateway on 127.0.0.1:8000
#   make test  install dev dependencies, then ruff, mypy --strict, import contracts and pytest
#   make bench the benchmarks in benchmarks/ (~40 min; needs the harness in ../shared/bench)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEMO   ?= demo
PYTEST_ARGS ?=

.PHONY: run test lint typecheck contracts pytest demo clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install only when pyproject.toml changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(DEMO)/seawall.yaml: | $(VENV)/.installed
	$(BIN)/seawall demo --dir $(DEMO)

demo: $(DEMO)/seawall.yaml

run: $(VENV)/.installed $(DEMO)/seawall.yaml
	@echo ""
	@echo "seawall gateway: http://$(HOST):$(PORT)   (metrics: http://$(HOST):$(PORT)/metrics)"
	@echo "try:"
	@echo "  curl -s http://$(HOST):$(PORT)/v2/models/iris/infer -H 'content-type: application/json' \\"
	@echo "    -d '{\"inputs\":[{\"name\":\"input-0\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[5.1,3.5,1.4,0.2]}]}'"
	@echo ""
	$(BIN)/seawall serve --config $(DEMO)/seawall.yaml --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

contracts: $(VENV)/.installed-dev
	$(BIN)/lint-imports

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck contracts pytest

BENCH_HARNESS ?= ../shared/bench

bench: $(VENV)/.installed-dev
	bash $(BENCH_HARNESS)/setup_peers.sh
	SEAWALL_BENCH_HARNESS=$(abspath $(BENCH_HARNESS)) $(BIN)/python benchmarks/peers.py
	$(BIN)/python benchmarks/batching.py
	$(BIN)/python benchmarks/overload.py
	$(BIN)/python benchmarks/memory.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/backup.py
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/results.py

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .pytest_cache .ruff_cache .hypothesis

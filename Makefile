# Sigil: every target sets up its own virtual environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export SIGIL_DATA_DIR ?= $(CURDIR)/.sigil

.PHONY: run test lint typecheck contracts pytest bench bench-quick proto clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: the main job on the embedded default (SQLite, trust domain example.org, under ./.sigil)
run: $(STAMP)
	@echo "== Sigil on the embedded default: SQLite under $(SIGIL_DATA_DIR), trust domain example.org"
	$(BIN)/sigil-server authority list --all-kinds
	$(BIN)/sigil-server x509 mint --spiffe-id spiffe://example.org/demo/workload --dns workload.demo --write $(SIGIL_DATA_DIR)/demo
	$(BIN)/sigil-server jwt mint --spiffe-id spiffe://example.org/demo/workload --audience demo
	$(BIN)/sigil-server bundle show --format spiffe
	openssl verify -CAfile $(SIGIL_DATA_DIR)/demo/bundle.pem $(SIGIL_DATA_DIR)/demo/svid.pem

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
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

bench-quick: $(STAMP)
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

## proto: regenerate the Workload API messages from node-agent/sigil/node_agent/_proto/workload.proto
proto: $(STAMP)
	PYTHON=$(CURDIR)/$(BIN)/python sh node-agent/sigil/node_agent/_proto/generate.sh

clean:
	rm -rf $(VENV) .sigil .mypy_cache .pytest_cache .ruff_cache .coverage

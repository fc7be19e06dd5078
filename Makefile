# Plotline — `make run` starts it, `make test` proves it. `make` alone lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
SYS_STAMP := .build/system.ok
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help install run stack test faults lint format bench helm-lint clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(PY_STAMP): pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(SYS_STAMP): scripts/install-system.sh
	@mkdir -p .build
	./scripts/install-system.sh
	@touch $@

$(NODE_STAMP): package.json package-lock.json $(SYS_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(PY_STAMP) $(SYS_STAMP) $(NODE_STAMP) ## Venv + Python packages, system packages (redis, nginx, chromium), npm (azurite)

run: install ## Start Plotline embedded on http://127.0.0.1:5006 (ARGS="-m" for multi-user)
	$(BIN)/plotline serve --ip 127.0.0.1 --port 5006 $(ARGS)

stack: install ## Start the local distributed stack (NATS, Redis, Azurite, nginx) on http://127.0.0.1:5006
	$(BIN)/python scripts/stack.py $(ARGS)

test: install ## Run the whole test suite against real NATS, Redis and Azurite
	$(BIN)/pytest $(PYTEST_ARGS)

faults: install ## SIGKILL NATS, Redis, Azurite and services on the local stack under load
	$(BIN)/pytest -m faults tests/test_faults.py $(PYTEST_ARGS)

lint: $(PY_STAMP) ## Static checks (ruff)
	$(BIN)/ruff check services client tests bench examples

format: $(PY_STAMP) ## Reformat the code (ruff)
	$(BIN)/ruff check --fix services client tests bench examples
	$(BIN)/ruff format services client tests bench examples

bench: install ## Run the benchmarks; each prints its figures
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

helm-lint: $(PY_STAMP) ## Lint, render and validate the Helm chart offline (helm into build/)
	$(BIN)/python scripts/helm_lint.py

clean: ## Remove the venv, node_modules and build files (helm included)
	rm -rf $(VENV) node_modules .build build *.egg-info client/*.egg-info

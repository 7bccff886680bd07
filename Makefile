# The two commands: `make demo` (everything up, a sample through the pipeline) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
STACK := deploy/local/stack.sh
SERVICES := deploy/local/services.sh

.PHONY: help venv lock stack-up stack-down stack-status up down status demo test test-unit lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "python3 not found: install Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@$(PY) -m pip install -q "uv==$(UV_VERSION)"
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

venv: $(VENV)/.installed ## Create the virtual environment from the lock file

lock: ## Re-resolve requirements.lock from pyproject.toml (pinned, hashed)
	@$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

stack-up: venv ## Start Kafka, FerretDB and Mailpit (no Docker)
	@bash $(STACK) up

stack-down: ## Stop them
	@bash $(STACK) down

stack-status: ## Show whether they run
	@bash $(STACK) status

up: stack-up ## The stack plus the three services, in the background
	@bash $(SERVICES) up

down: ## Stop the services and the stack: nothing of the project keeps running
	@bash $(SERVICES) down
	@bash $(STACK) down

status: ## Show the stack and the services
	@bash $(STACK) status; bash $(SERVICES) status

demo: up ## Post a sample of ~4,100 responses, announce pilots, print what happened
	@set -a; . deploy/local/dev.env; set +a; $(PY) -m demo

lint: venv ## ruff and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

test-unit: venv ## Unit tests only (no servers)
	@$(VENV)/bin/pytest tests/unit -q

test: venv lint ## Lint, then unit, integration and end-to-end tests against real servers
	@$(VENV)/bin/pytest -q -ra

clean: down ## Stop everything and delete the local stack's data and the environment
	rm -rf .stack $(VENV)

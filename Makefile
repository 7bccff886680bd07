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
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "python3 not found: install Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@$(PY) -m pip install -q "uv==$(UV_VERSION)"
	@$(VENV)/bin/uv pip install -q --python $(PY) -r requirements.lock
	@$(VENV)/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

venv: $(VENV)/.installed ## Create the virtual environment from the lock file

lock: ## Re-resolve requirements.lock (all) and requirements.runtime.lock (the image), pinned, hashed
	@$(VENV)/bin/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock
	@$(VENV)/bin/uv pip compile -q pyproject.toml --python-version 3.11 --generate-hashes -c requirements.lock -o requirements.runtime.lock

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
	@set -a; . deploy/local/dev.env; . $${STACK_DIR:-.stack}/dev-secrets.env; set +a; $(PY) -m demo

.PHONY: dev-secrets k8s-dev-secrets
dev-secrets: venv ## Make the random development secrets once (.stack/dev-secrets.env; not committed)
	@bash $(SERVICES) secrets

k8s-dev-secrets: venv ## Make the dev overlay's random secrets once (deploy/k8s/overlays/dev/*.env)
	@$(PY) deploy/local/dev_secrets.py k8s deploy/k8s/overlays/dev

lint: venv ## ruff and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

test-unit: venv ## Unit tests only (no servers)
	@$(VENV)/bin/pytest tests/unit -q

test: venv lint browser ## Lint, then unit, integration and end-to-end tests against real servers
	@$(VENV)/bin/pytest -q -ra --durations=30

clean: down ## Stop everything and delete the local stack's data and the environment
	rm -rf .stack $(VENV)

.PHONY: asyncapi
asyncapi: venv ## Write docs/asyncapi.yaml: the events the intake publishes (AsyncAPI 3.0)
	@$(PY) -m services.intake.asyncapi docs/asyncapi.yaml
	@echo "docs/asyncapi.yaml written"

.PHONY: bench
bench: stack-up ## Every benchmark in one run: writes docs/performance.md and its plots (QUICK=1: a smoke run)
	@$(PY) -m bench.suite $(if $(QUICK),--quick)

.PHONY: bench-intake
bench-intake: stack-up ## Benchmark: webhooks/s and latency of one intake process vs its ceilings (bare parse, durable, checked)
	@$(PY) -m bench.intake

.PHONY: bench-scaleout
bench-scaleout: stack-up ## Benchmark: analytics x1/x2/x3 on 6 partitions, intake x1/x2, CPU of every process
	@$(PY) -m bench.scaleout

.PHONY: bench-growth
bench-growth: stack-up ## Benchmark: analytics' rate and catch-up after SIGKILL, the intake's rate and redeliveries, with 0, 100k and 1M responses stored
	@$(PY) -m bench.growth

.PHONY: bench-notifier
bench-notifier: stack-up ## Benchmark: matching 1k/10k/100k focal points, emails/s to a local SMTP server
	@$(PY) -m bench.notifier

# --- deployment files: kustomize and the Compose loader, built once from Go modules into .stack/bin
KUSTOMIZE_VERSION := v5.8.1
TOOLS_BIN := .stack/bin
COMPOSECHECK_SRC := $(wildcard deploy/tools/composecheck/*.go) deploy/tools/composecheck/go.mod deploy/tools/composecheck/go.sum

.PHONY: deploy-tools k8s-validate

$(TOOLS_BIN)/composecheck: $(COMPOSECHECK_SRC)
	@command -v go >/dev/null || { echo "go not found: install Go 1.24+"; exit 1; }
	@mkdir -p $(TOOLS_BIN)
	@echo "building composecheck (the Compose file loader, first run only)…"
	@cd deploy/tools/composecheck && go build -buildvcs=false -o $(CURDIR)/$@ .

deploy-tools: $(TOOLS_BIN)/composecheck ## Build kustomize and composecheck (cached in .stack/bin)
	@test -x $(TOOLS_BIN)/kustomize -a -f $(TOOLS_BIN)/.kustomize-$(KUSTOMIZE_VERSION) || { \
	  echo "building kustomize $(KUSTOMIZE_VERSION) from its Go module (first run only)…"; \
	  GOBIN=$(CURDIR)/$(TOOLS_BIN) go install -buildvcs=false sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION) \
	  && rm -f $(TOOLS_BIN)/.kustomize-* && touch $(TOOLS_BIN)/.kustomize-$(KUSTOMIZE_VERSION); }

k8s-validate: venv deploy-tools k8s-dev-secrets ## Render every Kubernetes overlay and check it and the Compose file, offline
	@$(VENV)/bin/pytest -q tests/integration/test_deploy_manifests.py

.PHONY: browser
browser: ## Install Debian chromium for the dashboard's browser test when missing (as root, e.g. CI)
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium'"; exit 1; fi; }

.PHONY: bench-analytics
bench-analytics: stack-up ## Benchmark: responses applied/s by analytics vs a consume-only loop, 100k events
	@$(PY) -m bench.analytics

.PHONY: reliability
reliability: stack-up ## Fault and hostile-input suites, schemathesis, 60 s load: writes docs/reliability.md
	@$(PY) -m tests.reliability

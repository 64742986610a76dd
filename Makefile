# Kanol: the commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= uv

.PHONY: help sync up down logs demo test test-fast lint format contracts bench kafka-start kafka-stop

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

sync: ## Install the Python environment (uv workspace, one lock file)
	@command -v $(UV) >/dev/null || python3 -m pip install --quiet uv
	$(UV) sync --all-packages --frozen

up: sync ## Start Kafka, the services and the simulators on SQLite and ./data
	@bash scripts/platform.sh up

down: ## Stop everything `make up` started
	@bash scripts/platform.sh down

logs: ## Follow the platform's logs
	@tail -n 50 -F .run/platform/platform.log

demo: ## Submit a sample acte through the running platform and follow it to the archive
	$(UV) run --frozen python scripts/demo.py

test: sync ## Run the whole suite against real Kafka and PostgreSQL
	@bash scripts/kafka.sh fetch
	@bash scripts/postgres.sh install
	@bash scripts/s3.sh install
	@bash scripts/chromium.sh install
	@bash scripts/kustomize.sh >/dev/null
	$(UV) run --frozen pytest

lint: sync ## ruff and mypy strict
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy -p kanol_common -p kanol_identity -p kanol_actes_pes -p kanol_archive
	$(UV) run --frozen mypy bench scripts/demo.py tests/e2e conftest.py
	$(UV) run --frozen mypy tests/deploy

format: ## Format the code
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

contracts: ## Regenerate the event catalog exports in tests/contract
	$(UV) run --frozen python -m kanol_common.events.export --write tests/contract

bench: sync ## Print throughput and latency figures (bench/)
	@bash scripts/kafka.sh fetch
	$(UV) run --frozen python -m bench.bus
	$(UV) run --frozen python -m bench.flow
	$(UV) run --frozen python -m bench.identity
	$(UV) run --frozen python -m bench.pes
	$(UV) run --frozen python -m bench.actes --skip-pes
	$(UV) run --frozen python -m bench.archive

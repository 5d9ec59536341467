# One command surface for people, .ci/run and the hooks.
SHELL := /bin/bash
# setup.sh may have put uv in ~/.local/bin, which a fresh shell lacks on PATH.
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python

.PHONY: help setup sync fmt lint typecheck check test test-unit test-integration demo stack-up stack-down bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup: ## install Debian packages, uv and the Python environment (.venv)
	bash deploy/setup.sh

sync: ## refresh .venv from uv.lock
	$(UV) sync --all-packages --frozen

fmt: ## format and autofix
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

lint: ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: ## mypy --strict over all source and tests
	$(PY) -m mypy

check: lint typecheck ## lint and types

test: ## the whole suite: unit, integration (real broker, Redis, registries), e2e
	$(PY) -m pytest

test-unit: ## the fast tier only
	$(PY) -m pytest -m unit

test-integration: ## the tier that starts real services
	$(PY) -m pytest -m "integration or e2e"

demo: ## the end-to-end demo: a real image from build step to connected registry
	$(PY) -m deploy.demo

stack-up: ## start the local stack (broker, Redis, registries) in the background
	$(PY) -m deploy.stack up

stack-down: ## stop what stack-up started
	$(PY) -m deploy.stack down

bench: ## push benchmark against skopeo in the same run
	$(PY) -m benchmarks.push

clean: ## remove caches and local stack state
	rm -rf .stack .bench .pytest_cache .mypy_cache .ruff_cache

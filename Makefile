# TrackLayer -> Snowflake. `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := infra/local/requirements.txt
VENV_STAMP := $(VENV)/.installed-$(shell sha256sum $(REQUIREMENTS) 2>/dev/null | cut -c1-12)
STACK_ENV := .local/stack.env
CARGO ?= cargo

.PHONY: help venv stack-up stack-down stack-status test test-rust test-python bench fmt lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV_STAMP): $(REQUIREMENTS)
	@echo "==> Python tools into $(VENV) (pinned in $(REQUIREMENTS))"
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(VENV_STAMP) ## Install the pinned Python tools into .venv

stack-up: venv ## Start moto (SQS, Secrets Manager) and the local Snowflake; writes .local/stack.env
	@$(PY) infra/local/stack.py up

stack-down: ## Stop the local stack
	@if [ -x $(PY) ]; then $(PY) infra/local/stack.py down; fi

stack-status: ## Show what the local stack runs
	@$(PY) infra/local/stack.py status

test: venv ## Build, start the local stack, run every test, stop the stack (even on failure)
	@echo "==> Building the workspace and its tests"
	@$(CARGO) build --workspace --all-targets --locked
	@$(MAKE) --no-print-directory stack-up
	@status=0; \
	  $(MAKE) --no-print-directory test-rust test-python || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; \
	  exit $$status

test-rust: ## Rust unit and integration tests (needs a running stack)
	@set -a && . ./$(STACK_ENV) && set +a && $(CARGO) test --workspace --locked

test-python: ## Python tests of the local Snowflake (needs a running stack)
	@set -a && . ./$(STACK_ENV) && set +a && $(PY) -m pytest -q tests/python

bench: ## Criterion benchmarks (parse + validate + encode)
	$(CARGO) bench -p tracklayer --bench parse

fmt: ## Format the Rust code
	$(CARGO) fmt --all

lint: ## Formatting and clippy, warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

clean: stack-down ## Remove build output, the venv and local state
	rm -rf target $(VENV) .local

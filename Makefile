# TrackLayer -> Snowflake. `make demo` and `make test` set up everything they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := infra/local/requirements.txt
PYPROJECT := pyproject.toml
VENV_STAMP := $(VENV)/.installed-$(shell cat $(REQUIREMENTS) $(PYPROJECT) 2>/dev/null | sha256sum | cut -c1-12)
STACK_ENV := .local/stack.env
CARGO ?= cargo
# tests/*.rs talk to the local stack; they build only with this feature (tests/Cargo.toml), so a
# bare `cargo test --workspace` runs the unit tier alone.
STACK_TESTS := --features tracklayer-tests/stack

SAM_VENV := .venv-sam
SAM_REQUIREMENTS := infra/sam/requirements.txt
SAM_STAMP := $(SAM_VENV)/.installed-$(shell sha256sum $(SAM_REQUIREMENTS) 2>/dev/null | cut -c1-12)
SAM_ENV := SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH"
# validate and build need a region but touch no AWS account; sam-deploy uses the caller's own.
OFFLINE_REGION := AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}
SAM := $(SAM_ENV) $(OFFLINE_REGION) $(SAM_VENV)/bin/sam
SAM_RELEASE := $(SAM_ENV) $(SAM_VENV)/bin/python infra/sam/release.py
SAM_BUILD_DIR ?= .aws-sam/build
SAM_CONFIG ?= samconfig.toml
DBT_VENV := .venv-dbt
DBT_REQUIREMENTS := infra/dbt/requirements.txt
DBT_STAMP := $(DBT_VENV)/.installed-$(shell sha256sum $(DBT_REQUIREMENTS) 2>/dev/null | cut -c1-12)

.PHONY: help venv venv-sam venv-dbt stack-up stack-down stack-status test test-rust test-python \
	demo redrive-local snowflake-check sam-validate sam-build sam-deploy deny deny-advisories fuzz bench chaos fmt lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# infra/local is the package tracklayer_local (pyproject.toml), installed editable: its scripts
# run as `$(PY) -m tracklayer_local.<script>`.
$(VENV_STAMP): $(REQUIREMENTS) $(PYPROJECT)
	@echo "==> Python tools into $(VENV) (pinned in $(REQUIREMENTS)), infra/local as tracklayer_local"
	@test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r $(REQUIREMENTS)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(VENV_STAMP) ## Install the pinned Python tools into .venv, and infra/local as tracklayer_local

$(SAM_STAMP): $(SAM_REQUIREMENTS)
	@echo "==> SAM CLI and cargo-lambda into $(SAM_VENV) (pinned in $(SAM_REQUIREMENTS))"
	@test -x $(SAM_VENV)/bin/python || $(PYTHON_BOOTSTRAP) -m venv $(SAM_VENV)
	@$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(SAM_REQUIREMENTS)
	@rm -f $(SAM_VENV)/.installed-* && touch $@

venv-sam: $(SAM_STAMP) ## Install the pinned SAM CLI and cargo-lambda into .venv-sam

$(DBT_STAMP): $(DBT_REQUIREMENTS)
	@echo "==> dbt into $(DBT_VENV) (pinned in $(DBT_REQUIREMENTS))"
	@test -x $(DBT_VENV)/bin/python || $(PYTHON_BOOTSTRAP) -m venv $(DBT_VENV)
	@$(DBT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(DBT_REQUIREMENTS)
	@rm -f $(DBT_VENV)/.installed-* && touch $@

venv-dbt: $(DBT_STAMP) ## Install the pinned dbt-core and dbt-snowflake into .venv-dbt

sam-validate: venv-sam ## Validate template.yaml with cfn-lint (offline)
	@$(SAM) validate --lint

# arm64 unless ARCH=x86_64; the Rust target is added with rustup when missing, and x86_64 is built
# instead only when it cannot be (the output says so). The build is recorded in
# $(SAM_BUILD_DIR)/tracklayer-build.json for sam-deploy (infra/sam/release.py).
sam-build: venv-sam ## Build the three functions for Lambda, arm64 (ARCH=x86_64 to choose), and record it
	@$(OFFLINE_REGION) $(SAM_RELEASE) build --build-dir "$(SAM_BUILD_DIR)" --architecture "$${ARCH:-}"

sam-deploy: venv-sam ## sam deploy the recorded build as its Architecture (SECRET_ARN=, PARAMS=, GUIDED=1, DRY_RUN=1)
	@$(SAM_RELEASE) deploy --build-dir "$(SAM_BUILD_DIR)" --config-file "$(SAM_CONFIG)" \
	  --architecture "$${ARCH:-}" --secret-arn "$${SECRET_ARN:-}" --params "$${PARAMS:-}" \
	  --guided "$${GUIDED:-}" --dry-run "$${DRY_RUN:-}"

demo: venv venv-dbt ## Run the whole pipeline locally: generate, ingest, flush, connection-test, queries, dbt
	@echo "==> Building the functions"
	@$(CARGO) build --locked -p ingest -p flush -p connection-test
	@$(MAKE) --no-print-directory stack-up
	@status=0; \
	  $(PY) -m tracklayer_local.demo || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; \
	  exit $$status

redrive-local: venv ## Dead-letter events and chunks by a misconfiguration, fix it, redrive both DLQs, check each event loads once
	@$(CARGO) build --locked -p ingest -p flush
	@$(MAKE) --no-print-directory stack-up
	@status=0; \
	  $(PY) -m tracklayer_local.redrive || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; \
	  exit $$status

# Your account from SNOWFLAKE_ACCOUNT, _USER, _PRIVATE_KEY_PATH (+ _PASSPHRASE), _ROLE, _WAREHOUSE
# (_DATABASE, default TRACKLAYER); without them it says what it needs and runs nothing. It starts
# its own moto and local Snowflake, writes only to a scratch schema it drops
# (infra/local/snowflake_check.py). EVENTS=1000, JSON=report.json, LOCAL_ONLY=1.
snowflake-check: venv ## Compare the local Snowflake's rules with your account and load sample events into it
	@$(PY) -m tracklayer_local.snowflake_check --build --events "$${EVENTS:-1000}" $${JSON:+--json "$$JSON"} \
	  $${LOCAL_ONLY:+--local-only}

stack-up: venv ## Start moto (SQS, Secrets Manager) and the local Snowflake; writes .local/stack.env
	@$(PY) -m tracklayer_local.stack up

stack-down: ## Stop the local stack
	@if [ -x $(PY) ]; then $(PY) -m tracklayer_local.stack down; fi

stack-status: ## Show what the local stack runs
	@$(PY) -m tracklayer_local.stack status

test: venv venv-sam venv-dbt ## Lint, build, start the local stack, run every test, stop the stack (even on failure)
	@echo "==> Lint"
	@$(MAKE) --no-print-directory lint
	@echo "==> Validating template.yaml"
	@$(SAM) validate --lint
	@echo "==> Building the workspace and its tests"
	@$(CARGO) build --workspace --all-targets --locked $(STACK_TESTS)
	@$(MAKE) --no-print-directory deny
	@$(MAKE) --no-print-directory stack-up
	@status=0; \
	  $(MAKE) --no-print-directory test-rust test-python || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; \
	  exit $$status

test-rust: ## Rust unit tests and, with the stack feature, the cross-process ones (needs a running stack)
	@set -a && . ./$(STACK_ENV) && set +a && $(CARGO) test --workspace --locked $(STACK_TESTS)

test-python: ## Python tests of the local Snowflake (needs a running stack)
	@set -a && . ./$(STACK_ENV) && set +a && $(PY) -m pytest -q tests/python

CARGO_DENY := .local/tools/bin/cargo-deny

$(CARGO_DENY):
	@echo "==> cargo-deny into .local/tools (built from crates.io)"
	@$(CARGO) install --quiet --locked cargo-deny@0.20.2 --root .local/tools

deny: $(CARGO_DENY) ## Licenses, banned/duplicate crates, sources, then RustSec advisories
	@$(CARGO_DENY) check licenses bans sources
	@$(MAKE) --no-print-directory deny-advisories

# Live database when github.com answers, else ../shared/rustsec's snapshot, else says so and
# passes. RUSTSEC_BUNDLE= and RUSTSEC_NETWORK=auto|on|off override (infra/deny-advisories.sh).
deny-advisories: $(CARGO_DENY) ## RustSec advisories: live database, else the offline snapshot
	@CARGO_DENY=$(CARGO_DENY) infra/deny-advisories.sh

CARGO_FUZZ := .local/tools/bin/cargo-fuzz

$(CARGO_FUZZ):
	@echo "==> cargo-fuzz into .local/tools (built from crates.io)"
	@$(CARGO) install --quiet --locked cargo-fuzz@0.13.2 --root .local/tools

# Body parsing, both ways: a million proptest inputs (release build), then a million
# coverage-guided libFuzzer runs with AddressSanitizer (fuzz/fuzz_targets/body.rs; on the stable
# toolchain RUSTC_BOOTSTRAP=1 admits the -Zsanitizer flag cargo-fuzz passes). The corpus grows
# in .local/fuzz; a crash is written there too and fails the run: add it to known_hard_inputs
# in shared/tests/fuzz_body.rs.
fuzz: $(CARGO_FUZZ) ## Fuzz body parsing: 1M proptest inputs, then 1M libFuzzer runs (AddressSanitizer)
	PROPTEST_CASES=$${CASES:-1000000} $(CARGO) test --release --locked -p tracklayer --test fuzz_body
	@mkdir -p .local/fuzz/corpus
	RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run body -O .local/fuzz/corpus fuzz/seeds/body -- \
	  -runs=$${RUNS:-1000000} -max_len=65536 -rss_limit_mb=1024 -artifact_prefix=.local/fuzz/ -print_final_stats=1

bench: venv ## Every benchmark (parse, ingest, flush, cold start, Python side by side, cost); writes BENCHMARKS.md
	@$(CARGO) build --release --locked -p ingest -p flush -p connection-test
	@$(PY) -m tracklayer_local.bench

# METHOD=streaming: flush loads through Snowpipe Streaming, and the faults hit its requests.
chaos: venv ## 100,000 events through ingest and flush with injected failures and killed flushes; prints the accounting (METHOD=sql_api|streaming)
	@$(CARGO) build --locked -p ingest -p flush
	@$(MAKE) --no-print-directory stack-up
	@status=0; \
	  $(PY) -m tracklayer_local.chaos --events $${EVENTS:-100000} --load-method $${METHOD:-sql_api} || status=$$?; \
	  $(MAKE) --no-print-directory stack-down; \
	  exit $$status

PYTHON_SOURCES := infra/local tests/python

fmt: ## Format the Rust and the Python code
	$(CARGO) fmt --all
	$(VENV)/bin/ruff format $(PYTHON_SOURCES)

lint: venv ## Formatting and lints, warnings as errors: ruff (Python; pyproject.toml), rustfmt and clippy (Rust)
	$(VENV)/bin/ruff check $(PYTHON_SOURCES)
	$(VENV)/bin/ruff format --check $(PYTHON_SOURCES)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked $(STACK_TESTS) -- -D warnings

clean: stack-down ## Remove build output, the venv and local state
	rm -rf target fuzz/target $(VENV) $(SAM_VENV) $(DBT_VENV) .local .aws-sam

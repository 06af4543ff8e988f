# Artemis — the README's commands. Every target creates what it needs on first use.
#   make run    the whole local system on embedded defaults
#   make test   every test tier (unit, integration, system on LocalStack, e2e)

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
LOCALSTACK_VENV := .venvs/localstack
SAM_VENV := .venvs/sam
SAM := $(SAM_VENV)/bin/sam
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: run test test-unit test-integration test-system test-e2e test-compat lint format build bench bench-durable mutate mutate-check clean

$(VENV)/.installed: pyproject.toml layers/common/requirements.txt cli/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade  # an interrupted venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e cli  # the client: .venv/bin/artemis
	touch $@

# LocalStack lives in its own virtualenv: its pins would clash with the project's.
$(LOCALSTACK_VENV)/.installed:
	test -x $(LOCALSTACK_VENV)/bin/python || $(PYTHON) -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(LOCALSTACK_VENV)/bin/python -m ensurepip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet \
	  "localstack-core[runtime]==4.13.1" "cbor2<6" "pyopenssl<25" "cryptography<45" service_identity
	touch $@

$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip --version >/dev/null 2>&1 || $(SAM_VENV)/bin/python -m ensurepip
	$(SAM_VENV)/bin/python -m pip install --quiet "aws-sam-cli==1.170.0"
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/artemis-admin run

test: $(VENV)/.installed $(LOCALSTACK_VENV)/.installed browser
	$(PY) -m pytest tests

# The e2e tier drives Debian's Chromium through chromedriver: install them when missing.
.PHONY: browser
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver (the e2e tier's browser)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "could not install chromium: the e2e browser test will fail"; \
	else echo "no apt-get: install Chromium and chromedriver at /usr/bin for the e2e tier"; fi

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

test-integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration

test-system: $(VENV)/.installed $(LOCALSTACK_VENV)/.installed
	$(PY) -m pytest tests/system

# The OpenAPI document, generated from the API function's routes, and docs/api.md from it.
.PHONY: apidoc
apidoc: $(VENV)/.installed
	$(VENV)/bin/artemis-admin openapi > layers/common/python/artemis/openapi.json
	$(VENV)/bin/artemis-admin apidoc > docs/api.md

# The OpenAPI contract alone: schemathesis against the local system (also part of test and
# test-integration).
.PHONY: test-contract
test-contract: $(VENV)/.installed
	$(PY) -m pytest tests/integration/contract

test-e2e: $(VENV)/.installed browser
	$(PY) -m pytest tests/e2e

# The code must also run on Python 3.12 and 3.13: the unit tier on each interpreter present
# (on PATH, or installed by pyenv without being selected). 3.13 is the Lambda runtime's
# (template.yaml): it must be here, and the integration tier runs on it too.
COMPAT_VERSIONS ?= 3.12 3.13
LAMBDA_PYTHON := 3.13
test-compat:
	@for ver in $(COMPAT_VERSIONS); do \
	  py=""; \
	  for c in python$$ver $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$ver.*/bin/python$$ver 2>/dev/null); do \
	    if $$c -c pass >/dev/null 2>&1; then py=$$c; break; fi; \
	  done; \
	  if [ -z "$$py" ] && [ "$$ver" = $(LAMBDA_PYTHON) ]; then echo "test-compat: no Python $$ver (the Lambda runtime's)"; exit 1; fi; \
	  if [ -z "$$py" ]; then echo "test-compat: no Python $$ver here"; continue; fi; \
	  venv=.venvs/py$$ver; \
	  test -x $$venv/bin/python || $$py -m venv $$venv || exit 1; \
	  if [ "$$ver" = $(LAMBDA_PYTHON) ]; then \
	    $$venv/bin/python -m pip install --quiet -e '.[dev]' -e cli || exit 1; \
	    $$venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration || exit 1; \
	  else \
	    $$venv/bin/python -m pip install --quiet -e . -e cli pytest hypothesis pyyaml openapi-spec-validator import-linter jsonschema-rs || exit 1; \
	    $$venv/bin/python -m pytest -q -p no:cacheprovider tests/unit || exit 1; \
	  fi; \
	done

lint: $(VENV)/.installed $(SAM_VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common/python local ops functions tests bench cli mutation
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

build: $(SAM_VENV)/.installed
	$(SAM) build

# Benchmarks print figures (docs/performance.md); they are scripts, not tests.
bench: $(VENV)/.installed
	$(PY) bench/outbox_drain.py
	$(PY) bench/s3_move.py 2000

# API cold init vs. its third-party imports, in fresh interpreters (docs/performance.md, issue 3).
.PHONY: bench-coldstart
bench-coldstart: $(VENV)/.installed
	$(PY) bench/coldstart.py $(or $(RUNS),15)

# A CLI deploy (1,000 x 4 KiB + 20 x 2 MiB) beside a plain boto3 upload of the same tree.
.PHONY: bench-content-index
bench-content-index: $(VENV)/.installed
	$(PY) bench/content_index.py

.PHONY: bench-deploy
bench-deploy: $(VENV)/.installed
	$(PY) bench/deploy.py

# 32 concurrent clients (init, 20 uploads, finalize, promote) for 60 s through the gateway.
.PHONY: bench-api
bench-api: $(VENV)/.installed
	$(PY) bench/api_load.py

# Finalize → webhook received over 200 deploys on the local stack (LOCALSTACK_URL: real SQS).
.PHONY: bench-notify
bench-notify: $(VENV)/.installed
	$(PY) bench/notify.py $(if $(LOCALSTACK_URL),--localstack $(LOCALSTACK_URL))

# Mutation testing of the safety-critical modules (docs/testing.md): JSON per module.
mutate: $(VENV)/.installed
	$(PY) mutation/run.py --out .mutation/report.json

# The bounded check .ci/run runs: the lock, finalize and retention modules; fails on a
# surviving mutant mutation/equivalent.toml does not list.
mutate-check: $(VENV)/.installed
	$(PY) mutation/run.py --check --out .mutation/check.json

# The reference's load stages (docs/performance.md); LOCALSTACK_URL adds the real-SQS relay.
bench-durable: $(VENV)/.installed
	$(PY) bench/durable.py --workers 16 --processes 4 $(if $(LOCALSTACK_URL),--localstack $(LOCALSTACK_URL))

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache

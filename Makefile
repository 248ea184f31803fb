# bps-datashare: the two commands are `make run` and `make test`. Both set everything up.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Scale of the synthetic BPS export `make run` generates (1.0 = the size of BPS).
SCALE ?= 0.1
SEED ?= 2026
SOURCE ?= .local/source

.PHONY: run test venv lock lint bench ui compose-env clean distclean

$(STAMP): requirements.txt requirements-bootstrap.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if command -v uv >/dev/null 2>&1; then UV=uv; else \
	  $(BIN)/python -m pip install -q --disable-pip-version-check --require-hashes -r requirements-bootstrap.txt && UV=$(BIN)/uv; fi; \
	  $$UV pip sync -q --python $(BIN)/python --require-hashes --compile-bytecode requirements.txt && \
	  $$UV pip install -q --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

# The whole nightly job on the embedded default: lake up, synthetic export, pipeline through
# Airflow, summary; the lake is stopped afterwards whatever happened.
run: venv
	@$(BIN)/datashare lake up
	@$(BIN)/datashare keys init
	@$(BIN)/datashare synth --out $(SOURCE) --scale $(SCALE) --seed $(SEED); rc=$$?; \
	  if [ $$rc -eq 0 ]; then $(BIN)/datashare run --source $(SOURCE); rc=$$?; fi; \
	  $(BIN)/datashare lake down; exit $$rc

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# The Airflow UI (api-server, scheduler, dag-processor) on http://127.0.0.1:8080 with the lake.
ui: venv
	@$(BIN)/datashare lake up
	@$(BIN)/datashare ui

# Generated secrets and lake configuration for docker-compose.yaml (see its header).
compose-env: venv
	@$(BIN)/datashare lake init && $(BIN)/datashare keys init
	@test -f .local/compose.env || { umask 077; printf 'AIRFLOW_JWT_SECRET=%s\nAIRFLOW_FERNET_KEY=%s\nPOSTGRES_PASSWORD=%s\n' \
	  "$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(32))')" \
	  "$$($(BIN)/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
	  "$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))')" > .local/compose.env; }
	@echo "Now: docker compose --env-file .local/compose.env up -d"

lock:
	@command -v uv >/dev/null 2>&1 && UV=uv || UV=$(BIN)/uv; \
	  $$UV pip compile -q --python-version 3.11 --generate-hashes --custom-compile-command "make lock" requirements.in -o requirements.txt && \
	  $$UV pip compile -q --python-version 3.11 --generate-hashes --custom-compile-command "make lock" - -o requirements-bootstrap.txt <<< "$$(grep '^uv==' requirements.in)"

clean:
	-@test -x $(BIN)/datashare && $(BIN)/datashare lake down
	rm -rf .pytest_cache .ruff_cache

# Removes local state too: lake data, generated keys and secrets, the Airflow home.
distclean: clean
	rm -rf .local $(VENV)

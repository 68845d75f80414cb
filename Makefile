# onnx-lambda: every target installs what it needs, so a fresh clone runs `make serve` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
MODELS := models
MODEL_DIRS := $(MODELS)/all-minilm-l6-v2 $(MODELS)/all-minilm-l6-v2-fp32 $(MODELS)/breast-cancer-classifier
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help venv sam-venv model serve test lint typecheck unit clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,export,dev]'
	touch $@

# aws-sam-cli pins boto3 and click, so it lives in its own virtualenv. It also ships the Runtime
# Interface Emulator that the tests run the handler under.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip
	$(SAM_VENV)/bin/pip install -q 'aws-sam-cli>=1.130'
	touch $@

venv: $(BIN)/.installed  ## the project virtualenv (runtime + local + export + dev)
sam-venv: $(SAM_VENV)/.installed  ## aws-sam-cli in its own virtualenv

$(MODELS)/.built: $(BIN)/.installed $(wildcard src/onnx_lambda/export/*.py)
	$(BIN)/python -m onnx_lambda.export --out $(MODELS)
	touch $@

model: $(MODELS)/.built  ## export MiniLM (fp32 + int8) and the tabular classifier to models/

serve: $(BIN)/.installed $(MODELS)/.built  ## start local S3 + Cognito, publish the models and serve on 127.0.0.1:$(PORT)
	$(BIN)/onnx-lambda serve --port $(PORT)

lint: $(BIN)/.installed  ## ruff lint + format check
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(BIN)/.installed  ## mypy
	$(BIN)/mypy

test: $(BIN)/.installed $(SAM_VENV)/.installed $(MODELS)/.built lint typecheck  ## everything CI runs
	$(BIN)/pytest

clean:  ## remove virtualenvs and built models
	rm -rf $(VENV) $(SAM_VENV) $(MODELS)

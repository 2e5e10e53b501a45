# simgate: every target creates .venv when it is missing, so a fresh clone needs only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/simgate.toml
DEMO   ?= config/demo.jsonl
DATA   := var/data

.PHONY: serve test lint bench import clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group test --group lint
	@touch $(STAMP)

$(DATA)/.demo-imported: $(DEMO) $(STAMP)
	$(BIN)/simgate import --config $(CONFIG) $(DEMO)
	@touch $@

import: $(STAMP)
	$(BIN)/simgate import --config $(CONFIG) $(DEMO)

serve: $(STAMP) $(DATA)/.demo-imported
	$(BIN)/simgate serve --config $(CONFIG)

lint: $(STAMP)
	$(BIN)/ruff check core tests bench
	$(BIN)/ruff format --check core tests bench
	$(BIN)/mypy --strict core

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/micro.py
	$(BIN)/python bench/load.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

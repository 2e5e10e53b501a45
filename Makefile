# simgate: every target creates .venv when it is missing, so a fresh clone needs only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/simgate.toml
DEMO   ?= config/demo.jsonl
DATA   := var/data

.PHONY: serve test lint bench bench-peer import clean

$(STAMP): pyproject.toml setup.py core/radius/_speedups.c core/service/_datagrams.c core/service/_sessions.c core/store/_index.c core/store/_syncer.c
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

# The suite runs with the C extensions (when they are built); the codec, store and datagram tests
# run again on the pure-Python code.
test: lint
	$(BIN)/python -m pytest -q
	SIMGATE_PURE_PYTHON=1 $(BIN)/python -m pytest -q tests/radius tests/policy tests/store tests/service

# micro, load --sweep --half, FreeRADIUS side by side when installed, plots (simgate bench)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/simgate bench

# simgate side by side with FreeRADIUS 3.2 (Debian's package, installed when missing; needs root).
bench-peer: $(STAMP)
	@command -v freeradius >/dev/null || test -x /usr/sbin/freeradius || { echo "installing freeradius (apt-get)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q freeradius \
	  || { echo "bench-peer: could not install freeradius (apt-get exit $$?; root and the Debian archive are needed)" >&2; exit 1; }; }
	$(BIN)/python -m pip install --quiet --group bench
	$(BIN)/python bench/peer.py $(PEER_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache build core/radius/*.so core/service/*.so core/store/*.so

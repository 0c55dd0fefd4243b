# Shipyard: `make demo` to see it run, `make test` to prove it works.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):/usr/sbin:$(PATH)

.PHONY: install demo demo-down test unit integration lint bench clean

$(BIN)/shipyard: pyproject.toml
	scripts/install-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-cache-dir -e '.[dev]'
	@touch $@

install: $(BIN)/shipyard

demo: install
	scripts/demo.sh

demo-down: install
	$(BIN)/shipyard down

test: install
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

unit: install
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider

integration: install
	$(BIN)/python -m pytest tests/integration -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

bench: install
	$(BIN)/python bench/deploy_under_load.py
	$(BIN)/python bench/edge_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info

# Shipyard: `make demo` to see it run, `make test` to prove it works.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):/usr/sbin:$(PATH)

.PHONY: install demo demo-down test unit integration lint hygiene bench clean

$(BIN)/shipyard: pyproject.toml
	scripts/install-system.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-cache-dir -e '.[dev]'
	@touch $@

# The log writer each app instance's output goes through (native/logd/logd.c). Built next to
# the venv's python; compiled to a temporary name and renamed, so writers already running keep
# their binary.
$(BIN)/shipyard-logd: native/logd/logd.c | $(BIN)/shipyard
	$(CC) -O2 -Wall -Wextra -std=c11 -D_GNU_SOURCE -o $@.tmp $<
	mv -f $@.tmp $@

# uv and poetry for users' Python builds (builds/python.py links them into the builds' PATH):
# a virtualenv of their own, so their dependencies never mix with Shipyard's.
TOOLS := $(VENV)/tools
$(TOOLS)/bin/poetry: | $(BIN)/shipyard
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --no-cache-dir 'uv>=0.4' 'poetry>=1.8'
	@touch $@

install: $(BIN)/shipyard $(BIN)/shipyard-logd $(TOOLS)/bin/poetry

demo: install
	scripts/demo.sh

demo-down: install
	$(BIN)/shipyard down

# pytest exits 5 when no test ran: that fails here like any other non-zero code.
test: install hygiene lint
	$(BIN)/python -m pytest tests -q -p no:cacheprovider

unit: install
	$(BIN)/python -m pytest tests/unit -q -p no:cacheprovider

integration: install
	$(BIN)/python -m pytest tests/integration -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src tests bench

# Nothing git ignores may be tracked (a venv, egg-info, build output).
hygiene:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  tracked=$$(git ls-files -ci --exclude-standard); \
	  if [ -n "$$tracked" ]; then echo "tracked files that .gitignore ignores:"; \
	    echo "$$tracked" | head -20; exit 1; fi; fi

bench: install
	$(BIN)/python bench/deploy_under_load.py
	$(BIN)/python bench/edge_overhead.py
	$(BIN)/python bench/many_services.py
	$(BIN)/python bench/release_disk.py
	$(BIN)/python bench/logd_memory.py
	$(BIN)/python bench/backup_restore.py
	$(BIN)/python bench/disk_deploy.py

clean:
	rm -rf $(VENV) build *.egg-info

# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint typecheck schema bench bench-quick clean

setup: $(STAMP) explorer

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

explorer: $(STAMP)
	$(BIN)/python scripts/build_explorer_assets.py

run: setup
	$(BIN)/crm-graphql serve --migrate --demo

lint: $(STAMP)
	$(BIN)/ruff check crm_graphql tests migrations examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy crm_graphql

schema: $(STAMP)
	$(BIN)/crm-graphql export-schema --out schema.graphql

test: setup lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .crm-data node_modules crm_graphql/static/explorer

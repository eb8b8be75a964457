# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup explorer console run test test-all lint typecheck schema contract bench bench-quick bench-setup soak clean

setup: $(STAMP) explorer console

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

explorer: $(STAMP)
	$(BIN)/python scripts/build_explorer_assets.py

# The web console at /app (console/, docs/decisions/0027-web-console.md): operations
# checked against schema.graphql, TypeScript checked, bundled by esbuild.
console: explorer
	$(BIN)/python scripts/build_console_assets.py

run: setup
	$(BIN)/crm-graphql serve --migrate --demo

lint: $(STAMP)
	$(BIN)/ruff check crm_graphql tests migrations examples scripts bench

typecheck: $(STAMP)
	$(BIN)/mypy crm_graphql

schema: $(STAMP)
	$(BIN)/crm-graphql export-schema --out schema.graphql

# The schema contract (docs/decisions/0030-schema-contract.md): no breaking change against
# schema/released.graphql unless CHANGELOG.md lists it with its deprecation.
contract: $(STAMP)
	$(BIN)/crm-graphql check-schema

# Two pytest workers (pytest-xdist), a test file per worker at a time: the suite's servers,
# browsers and databases are per worker. PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
PYTEST_XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

test: setup lint typecheck contract
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# Everything, the long load runs (marked slow) included.
test-all: setup lint typecheck contract
	$(BIN)/python -m pytest $(PYTEST_XDIST) -m "" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .crm-data node_modules crm_graphql/static/explorer crm_graphql/static/console

# Benchmarks (issue 7; docs/decisions/0005-benchmarks.md). Never part of `make test`.
# Needs local PostgreSQL and Redis (BENCH_PG, db 7 of the local Redis), wrk, and Node for
# the PostGraphile comparator (skipped when its node_modules cannot be installed).
BENCH_PG ?= postgresql://postgres@127.0.0.1:5432/postgres

bench-setup: $(STAMP)
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get install -y wrk) \
		|| { echo "wrk is required: apt-get install wrk"; exit 1; }
	@test -d bench/postgraphile/node_modules || npm ci --prefix bench/postgraphile --no-audit --no-fund \
		|| echo "PostGraphile comparator unavailable (npm ci failed); the bench will skip it"

bench: bench-setup
	$(BIN)/python -m bench.run --preset full --server-url $(BENCH_PG)
	$(BIN)/python -m bench.import_speed --server-url $(BENCH_PG) --redis-url redis://127.0.0.1:6379/7

bench-quick: bench-setup
	$(BIN)/python -m bench.run --preset quick --server-url $(BENCH_PG)

# Soak (issue 12; docs/decisions/0010-soak.md): two server processes under live-chat load
# for 30 minutes (SOAK_ARGS="--minutes 10" for less); RSS slope, GC pauses, latency per
# minute. Exits non-zero when RSS grows > 10 % after warm-up or a pause exceeds 200 ms.
# Needs local PostgreSQL (BENCH_PG: a database crm_soak is created) and Redis (db 8).
soak: $(STAMP)
	$(BIN)/python -m bench.soak --server-url $(BENCH_PG) $(SOAK_ARGS)

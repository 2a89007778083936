# Sandbar: `make up` runs the stack, `make test` runs every check. Both install what is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The demo page's AutobahnJS: npm installs the `autobahn` release and esbuild (both pinned in
# package-lock.json), web/autobahn.build.mjs bundles it into web/vendor/ (git-ignored) where the
# router serves it. npm also installs @asyncapi/specs, the official AsyncAPI JSON Schemas
# tests/test_asyncapi.py validates the generated document against.
NPM_STAMP := node_modules/.package-lock.json
VENDOR    := web/vendor/autobahn.min.js
# The browser tests drive Debian's Chromium; installed when missing (root, or through sudo).
CHROMIUM ?= /usr/bin/chromium
# pytest workers: most of a test's time is spent waiting on real servers, so two share two cores
TEST_WORKERS ?= 2
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test lint install browser postgresql clean bench bench-quick bench-tune bench-scale soak

up: $(STAMP) $(VENDOR)
	$(BIN)/sandbar up

test: $(STAMP) $(VENDOR) browser postgresql
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	bash docker/engine.sh  # the compose test needs a Docker engine: installs/starts one if need be
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# Every path beside the router's ceiling (bench/paths.py), then reliable vs fire-and-forget
# and the cost of metrics and tracing (bench/delivery.py; the rest paths on SQLite and on a
# throwaway PostgreSQL server), then commit -> browser age in real Chromium (bench/browser_age.py).
bench: $(STAMP) $(VENDOR) browser postgresql
	$(BIN)/python -m bench.paths
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.browser_age
	$(BIN)/python -m bench.schema_cost

bench-quick: $(STAMP) $(VENDOR) browser postgresql
	$(BIN)/python -m bench.paths --quick
	$(BIN)/python -m bench.delivery --quick
	$(BIN)/python -m bench.browser_age --quick

# What one node holds: idle connections in steps, broadcast, sustained deliveries, with 0
# and 2 proxy workers (bench/scale.py; bounded by the file-descriptor hard limit).
SCALE_STEPS ?= 2000,5000,10000,18000
SCALE_PROXIES ?= 0,2
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale --steps $(SCALE_STEPS) --proxies $(SCALE_PROXIES)

# Minutes under steady load with reconnecting subscribers: every event reaches every
# subscriber, and each process's memory slope (bench/soak.py). Not part of `make test`.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

# What each tuning knob is worth, shipped setting against the alternatives (bench/tune.py).
bench-tune: $(STAMP)
	$(BIN)/python -m bench.tune

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

install: $(STAMP) $(VENDOR)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Sandbar needs Python 3.11 or 3.12"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench,postgres]'
	touch $(STAMP)

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

$(VENDOR): $(NPM_STAMP) web/autobahn.build.mjs
	node web/autobahn.build.mjs $(VENDOR)

browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# The database tests and the benchmarks start throwaway servers from Debian's postgresql
# (sandbar/pgserver.py).
PG_CTL = $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))
postgresql:
	@test -n "$(PG_CTL)" || { \
	  echo "installing Debian's postgresql for the database tests and benchmarks"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

clean:
	rm -rf $(VENV) .sandbar .pytest_cache .mypy_cache .ruff_cache *.egg-info node_modules web/vendor

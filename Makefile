# Trainyard: `make run` brings the whole stack up, `make test` runs the test suite
# (`make test-fast`: the unit tests only; `make screenshots`: refresh docs/screenshots).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# PostgreSQL for the second test pass (skipped with a message when none answers).
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test test-fast test-sqlite test-postgres screenshots chromium tools bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -r requirements-dev.txt
	touch $(VENV)/.run-installed $@

run: $(VENV)/.run-installed
	$(BIN)/python manage.py runstack --host $(HOST) --port $(PORT)

# Browser tests drive Debian's Chromium; install it when we may (root with apt), else they skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is not installed: the browser (E2E) tests will be skipped"; fi; }

# The test tools from Debian, installed when we may (root with apt), else their tests skip with
# the reason: faketime (the skewed-clock ownership test) and docker-compose (tests/
# test_deploy_files.py validates docs/deploy/docker-compose.yml with `config`: no daemon, nothing pulled).
tools: chromium
	@missing=""; command -v faketime >/dev/null 2>&1 || missing="$$missing faketime"; \
	  { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; } || missing="$$missing docker-compose"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    else echo "not installed:$$missing (their tests will be skipped)"; fi; fi

test: test-sqlite test-postgres

test-sqlite: $(VENV)/.dev-installed tools
	$(BIN)/python -m pytest --durations=25

# The unit tests only: no real stack, no browser, no schemathesis run (a minute or two, for the
# edit-test loop).
test-fast: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -m "not stack and not e2e and not schema"

# Refresh the README's screenshots: the browser tests, writing into docs/screenshots (a plain
# test run writes them under test-artifacts/, outside the tracked tree).
screenshots: $(VENV)/.dev-installed chromium
	TRAINYARD_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -m e2e tests/e2e

# The PostgreSQL pass: every web-tier test (they are the ones that talk to the database), and
# the real-stack scenarios whose outcome rests on the database (marked `postgres`: row locks,
# leases and fences, limits under concurrent requests, dropped connections, the sweep's locked
# advance, the connection pool; lost workers through the chaos run); the others (training
# numerics, uploads, exports, disk faults, worker-loss variants, browsers) ran on SQLite above.
test-postgres: $(VENV)/.dev-installed
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "== again on PostgreSQL ($(PG_TEST_URL)): the web tier and the database-bound stack scenarios"; \
	  DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest -m "postgres or not (stack or e2e or schema)" tests/webapp tests/integration; \
	else echo "PostgreSQL does not answer at $(PG_TEST_URL): skipping the PostgreSQL pass"; fi

bench: $(VENV)/.dev-installed
	$(BIN)/python bench/train_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache

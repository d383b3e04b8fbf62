# Two commands from a fresh clone: `make run` (the app with its worker and beat) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Development defaults; anything already in the environment wins.
export DEBUG ?= 1
export DJANGO_SETTINGS_MODULE ?= config.settings

.PHONY: run serve test bootstrap services chromium lint typecheck migrations check lock bench clean

# .venv gets the dev lock: the app's dependencies and the dev extra's tests and tools. The
# production image installs requirements.lock alone (Dockerfile).
$(BIN)/.installed: requirements.lock requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

services: $(BIN)/.installed
	$(BIN)/python scripts/ensure_services.py

bootstrap: services

# The browser journeys (tests/browser) drive Debian's Chromium (no browser downloads here); it is
# installed when missing and we may (root with apt-get). Otherwise those tests skip, saying why.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's chromium for the browser journeys"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; fi

run: bootstrap
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo "Kilo Billing on http://127.0.0.1:8000 (web, Celery worker and beat; Ctrl-C stops all)"
	$(BIN)/honcho start -f Procfile

# The production web server exactly as deployed (the Dockerfile and docker-compose run the same
# gunicorn command), on 127.0.0.1:$${PORT:-8000}, settings from the environment.
serve: bootstrap
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/gunicorn --config config/gunicorn.py config.wsgi

# pytest exits 5 when it collects no test; that is a failure here, never a green run.
# The whole suite runs once as is; then the purchase, seat and lifecycle suites run again with the
# sandbox's events shuffled within each action, as Stripe may send them (SANDBOX_SHUFFLE_EVENTS),
# with a seed printed so that a failure can be replayed: `make test SHUFFLE_SEED=<seed>`.
SHUFFLED_SUITES := tests/credits tests/seats tests/dunning
SHUFFLE_SEED ?= $(shell date +%s)
# The tests clear the cache (and so their Redis DB) before each test: their own DB, so that a
# `make test` beside `make run` leaves its cache, rate limits and Celery queue alone.
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
# Then the clock-sensitive suites (the sandbox's renewals and retries, seats, the lifecycle,
# invoices, monthly budgets and caps, usage periods) run again starting at hard instants of the
# calendar: the last half hour of a 31-day month, 28 February of a common year, 29 February of a
# leap year, 31 December. Each is printed; `make test PYTEST_ARGS="--start-at <instant> <suite>"`
# replays one (KB_TEST_START_AT starts a whole run at an instant).
CLOCK_SUITES := tests/payments/test_sandbox.py tests/payments/test_sandbox_stripe_paths.py \
	tests/seats tests/dunning tests/invoices tests/credits/test_budgets.py \
	tests/credits/test_daily_limit.py tests/credits/test_holds.py tests/analytics
CLOCK_INSTANTS := 2027-01-31T23:30:00Z 2027-02-28T23:30:00Z 2028-02-29T23:30:00Z \
	2026-12-31T23:30:00Z
test: export REDIS_URL := $(TEST_REDIS_URL)
test: bootstrap chromium
	$(BIN)/python -m pytest --create-db $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	if [ $$status -ne 0 ] || [ -n "$(PYTEST_ARGS)" ]; then exit $$status; fi; \
	echo "Again with shuffled events: SANDBOX_SHUFFLE_SEED=$(SHUFFLE_SEED) $(SHUFFLED_SUITES)"; \
	SANDBOX_SHUFFLE_EVENTS=1 SANDBOX_SHUFFLE_SEED=$(SHUFFLE_SEED) \
		$(BIN)/python -m pytest -q $(SHUFFLED_SUITES) || exit 1; \
	for instant in $(CLOCK_INSTANTS); do \
	  echo "Again starting at $$instant: the clock-sensitive suites"; \
	  $(BIN)/python -m pytest -q --start-at $$instant $(CLOCK_SUITES) || exit 1; \
	done

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy .

# Every model change has its migration. The database must answer: makemigrations checks the
# applied history against it (and waits out the pool's timeout when it cannot connect).
migrations: services
	$(BIN)/python manage.py makemigrations --check --dry-run

# The fast checks (pre-commit runs them before each commit); .ci/run runs them, then `make test`.
check: lint typecheck migrations

# Benchmarks (bench/README.md) on their own database and Redis DB, never the dev or test ones
# (BENCH_DATABASE and BENCH_REDIS_URL change them); figures printed and written to
# bench/results/<name>.json. usage_api.py and load.py start `make serve` themselves with
# production settings (DEBUG=0); usage_api.py loads it with wrk (installed here from Debian when
# missing) and sends the raw debit with pgbench (PostgreSQL's).
BENCH_DATABASE ?= kb_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/5
bench: export BENCH_DATABASE := $(BENCH_DATABASE)
bench: export BENCH_REDIS_URL := $(BENCH_REDIS_URL)
bench: export DATABASE_URL := postgres:///$(BENCH_DATABASE)
bench: export REDIS_URL := $(BENCH_REDIS_URL)
bench: bootstrap
	@command -v wrk >/dev/null 2>&1 || { echo "Installing wrk"; \
	  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	DEBUG=1 $(BIN)/python bench/usage_api.py
	DEBUG=1 $(BIN)/python bench/usage_page.py
	DEBUG=1 $(BIN)/python bench/load.py
	if [ -f bench/dunning_sweep.py ]; then DEBUG=1 $(BIN)/python bench/dunning_sweep.py; fi
	DEBUG=1 $(BIN)/python bench/reconcile.py

# Two locks from pyproject.toml, with hashes: requirements-dev.lock (the app and the dev extra) and
# requirements.lock (the app alone), held to the dev lock's versions so that the tests run what
# production runs. uv keeps the versions already in each lock unless asked (`make lock
# UV_ARGS=--upgrade`, or `--upgrade-package NAME`), and reads its index from its own settings
# (UV_INDEX_URL, UV_EXTRA_INDEX_URL, uv.toml). uv goes into .venv when missing.
UV_COMPILE = UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile pyproject.toml \
	--python-version 3.11 --generate-hashes --quiet $(UV_ARGS)
lock:
	@test -x $(BIN)/uv || { test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/pip install --quiet uv; }
	$(UV_COMPILE) --extra dev -o requirements-dev.lock
	$(UV_COMPILE) --constraint requirements-dev.lock -o requirements.lock

clean:
	rm -rf $(VENV) staticfiles .celerybeat-schedule*

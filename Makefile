# orderdash: `make run` starts everything, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-topology lint format bench bench-throughput bench-scale chaos clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) manage.py migrate --no-input -v0
	$(PY) manage.py seed_demo
	$(PY) manage.py run_stack

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# The production topology alone: PostgreSQL, Redis, two web and two worker processes
# (needs Debian's postgresql, redis-server and chromium; .ci/run installs them).
test-topology: $(STAMP)
	$(PY) -m pytest tests/topology

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/live_latency.py

# Orders per second through the whole stack against the bare SDK; BENCH_ORDERS=N (300),
# BENCH_DATABASE=postgres (a throwaway cluster) for the stack on PostgreSQL.
bench-throughput: $(STAMP)
	$(PY) bench/throughput.py

# The admin, the audit and the board at 100k orders of history; BENCH_HISTORY=N (100000).
bench-scale: $(STAMP)
	$(PY) bench/scale.py

# A chaos run on a fresh database with a Temporal dev server of its own: CHAOS_ORDERS per
# engine over CHAOS_MINUTES, the server restarted CHAOS_RESTARTS times; CHAOS_ARGS for more
# (--seed S, --settle-minutes M).
CHAOS_ORDERS ?= 50
CHAOS_MINUTES ?= 3
CHAOS_RESTARTS ?= 1
CHAOS_DB := DATABASE_URL=sqlite:///$(CURDIR)/var/chaos.sqlite3
chaos: $(STAMP)
	rm -f var/chaos.sqlite3 var/chaos.sqlite3-wal var/chaos.sqlite3-shm
	$(CHAOS_DB) $(PY) manage.py migrate --no-input -v0
	$(CHAOS_DB) $(PY) manage.py seed_demo
	$(CHAOS_DB) $(PY) manage.py chaos --orders $(CHAOS_ORDERS) --minutes $(CHAOS_MINUTES) \
		--own-stack --temporal-restarts $(CHAOS_RESTARTS) $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) var staticfiles

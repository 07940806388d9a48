# orderdash: `make run` starts everything, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-topology lint format bench bench-throughput bench-scale clean

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

# Orders per second through the whole stack against the bare SDK; BENCH_ORDERS=N (300).
bench-throughput: $(STAMP)
	$(PY) bench/throughput.py

# The admin, the audit and the board at 100k orders of history; BENCH_HISTORY=N (100000).
bench-scale: $(STAMP)
	$(PY) bench/scale.py

clean:
	rm -rf $(VENV) var staticfiles

# The two commands of the README: `make run` and `make test`.
# Each creates its own virtualenv (.venv) on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= data
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint bench clean cluster

$(VENV)/.installed: pyproject.toml
	@# Debian ships venv's pip bootstrap separately (python3-venv); fetch it if missing.
	$(PYTHON) -m venv --clear $(VENV) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv --clear $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Start the runtime with the example functions of functions/ deployed.
run: $(VENV)/.installed
	$(VENV)/bin/faas serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --deploy functions

# A cluster on this machine: PostgreSQL, three invokers in network namespaces
# of their own and a gateway on $(HOST):$(PORT), functions/ deployed (root;
# installs Debian's postgresql package if missing). Ctrl-C removes it all.
cluster: $(VENV)/.installed
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql iproute2; }
	$(PY) scripts/local-cluster.py --port $(PORT)

# The whole test suite (needs root: sandboxes use namespaces and cgroups).
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Every benchmark (ratios against baselines measured in the same run; needs root):
# bench/results/<UTC timestamp>/{results.json,chart.png,summary.md}. BENCH_ARGS=--quick for a smoke run.
bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .import_linter_cache

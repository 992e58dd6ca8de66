# crm360: the two commands a new person needs are `make demo` and `make test`.
# Both create .venv from requirements.lock on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9

.PHONY: demo test test-fast lint venv lock bench-deps clean stop help

help:            ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

demo: venv       ## generate data, run the whole pipeline through Airflow, show what it built
	$(BIN)/crm360 demo

test: venv       ## lint, then the whole test suite (embedded PostgreSQL, plus CRM360_TEST_PG_URL server)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile

test-fast: venv  ## lint, then the unit tier only: no PostgreSQL, no dbt, no Airflow run (about a minute)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 -m "not integration" --timeout=120

lint: venv       ## ruff on Python
	$(BIN)/ruff check .

venv: $(VENV)/.installed  ## create the virtual environment from requirements.lock

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "crm360 needs Python 3.11, got " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $@

lock:            ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile --python-version 3.11 pyproject.toml --extra dev -o requirements.lock --no-header --quiet

bench-deps: venv ## add the benchmark-only packages (dlt) to .venv, leaving requirements.lock's versions as they are
	$(BIN)/uv pip install --python $(BIN)/python -c requirements.lock -r bench/requirements.txt

stop: venv       ## stop the embedded PostgreSQL
	$(BIN)/crm360 warehouse stop

clean: stop      ## remove local state (embedded database, Airflow home, generated data)
	rm -rf .crm360 landing

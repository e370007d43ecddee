# The two commands: `make demo` (a real canary release, promoted and rolled back) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: demo test test-production install packages settings bench bench-parse clean

install: $(VENV)/.installed packages

$(VENV)/.installed: requirements.txt constraints.txt
	@$(PYTHON) -m venv $(VENV) || { bash include/scripts/install_packages.sh python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	@touch $@

packages:
	@bash include/scripts/install_packages.sh haproxy prometheus chromium

demo: install
	$(PY) include/scripts/run_demo.py

# Three workers on two cores: most tests wait on Airflow, HAProxy, moto or a CloudWatch minute,
# not on the CPU. One file per worker (loadfile) keeps each module's services shared; modules go
# out in collection order (tests/conftest.py puts the slow ones first), not by their test count.
test: install
	$(PY) -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS) tests --ignore=tests/test_production_stack.py

# The production stack: PostgreSQL, the CeleryExecutor with two workers on Redis, a triggerer and a
# dag-processor, running the same releases. Its own target, as it would take `make test` past 10
# minutes on 2 cores; .ci/run calls both.
test-production: install
	@bash include/scripts/install_packages.sh postgresql-15:/usr/lib/postgresql/15/bin/postgres redis-server
	$(PY) -m pytest -q tests/test_production_stack.py

# Load airflow_settings.yaml into the Airflow at $$AIRFLOW_HOME.
settings: install
	$(PY) include/scripts/load_airflow_settings.py airflow_settings.yaml

# The parse benchmark, ours against dag-factory 1.1.0. dag-factory is for the bench only: installed
# into .bench/parse, outside the venv, and never by install or test.
bench-parse: $(VENV)/.installed .bench/parse/.installed
	$(PY) bench/parse.py

.bench/parse/.installed: bench/requirements-parse.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --upgrade --target .bench/parse -r bench/requirements-parse.txt
	@touch $@

clean:
	rm -rf $(VENV) .demo .pytest_cache

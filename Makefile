# Two entry points for a newcomer: `make demo` (set up, then a real training run ending in a report)
# and `make test` (set up, then the tests). Both create .venv on first use. `make test-fast` leaves out
# the tests marked slow (`make test` also checks the import layers with import-linter, and the format and lint with
# ruff: `make format` applies the format); `make readme-config` rewrites README's config block from the schema.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast format readme-config
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/install-system-packages.sh
	bash scripts/install-system-packages.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

demo: setup
	$(VENV)/bin/cnnlab run quickstart

test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check --quiet cnnlab tests benchmarks scripts
	$(VENV)/bin/ruff check --quiet cnnlab tests benchmarks scripts
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

format: setup
	$(VENV)/bin/ruff format cnnlab tests benchmarks scripts
	$(VENV)/bin/ruff check --fix cnnlab tests benchmarks scripts

readme-config: setup
	$(PY) scripts/config_reference.py --write README.md

# Imperium: `make run` starts an emperor on the example vassals; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VASSALS ?= deploy/examples/vassals
PYTEST_ARGS ?=

.PHONY: install services run test lint bench clean

# the C accelerators are built by the install: a changed source must rebuild them (a stale .so
# next to new Python code gives caches that disagree with themselves, or heads unlike Python's)
$(STAMP): pyproject.toml $(wildcard vassal/*.c vassal/*/*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

install: $(STAMP)

services:
	bash deploy/install-services.sh

run: install
	$(BIN)/imperium --emperor $(VASSALS)

lint: install
	$(BIN)/ruff check .

test: install services lint
	$(BIN)/pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

bench: install services
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

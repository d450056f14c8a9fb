# Two entry points a new machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench eval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/accord demo

test: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile

# ruff, mypy (strict on src/accord) and the import contracts in pyproject.toml; every check
# runs, and lint fails if any of them did.
lint: $(STAMP)
	@status=0; \
	$(BIN)/ruff check src tests bench || status=1; \
	$(BIN)/ruff format --check src tests bench || status=1; \
	$(BIN)/mypy || status=1; \
	$(BIN)/lint-imports || status=1; \
	exit $$status

# The heavy comparisons of `accord eval compare` (docs/detection.md): matplotlib, imagehash and
# Thorn's perception, whose metadata pins rich<14 though it never imports rich (see pyproject).
eval: $(STAMP)
	$(BIN)/pip install -q -e '.[eval]'
	$(BIN)/pip install -q --no-deps 'perception==0.9.3'

bench: $(STAMP)
	$(BIN)/python bench/messaging.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info

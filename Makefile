# The two commands of the README:
#   make app    installs what is needed and starts the app on http://localhost:8501
#   make test   installs what is needed and runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gradlab-installed
PORT ?=  # empty: 8501, or what Streamlit's own configuration says

.PHONY: app test install

app: install
	@scripts/system-deps.sh dot
	$(BIN)/gradlab app $(if $(PORT),--port $(PORT))

test: install
	@scripts/system-deps.sh --require dot chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup

install: $(STAMP)

# torch first and pinned, so that nothing later resolves to a CUDA build.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "GradLab needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version)." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

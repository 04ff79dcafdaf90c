# Every target bootstraps itself: a .venv is created and the package installed (with the torch pin
# from constraints.txt) when missing or when pyproject.toml/constraints.txt changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fluorecon-installed
EXTRAS ?= dev,napari,bioimageio
PYTEST_ARGS ?=

.PHONY: demo test lint bench install clean docs

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fluorecon demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict
	@echo "site/index.html"

bench: $(STAMP)
	@echo "Benchmarks are separate scripts: see benchmarks/README.md"

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache

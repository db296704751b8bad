# `make serve`: set up, build the index from seeds/ if needed, serve API + web page on 127.0.0.1:8000.
# `make test`:  set up (including Chromium for the browser tests), run the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup serve test browser eval bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# pinned first: an unpinned torch would pull several GB of CUDA wheels
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

serve: setup
	$(VENV)/bin/qa serve

browser:
	bash scripts/install-browser.sh

test: setup browser
	$(PY) -m pytest -q -rs

eval: setup
	$(VENV)/bin/qa ingest && $(VENV)/bin/qa eval eval/dev.jsonl

bench: setup
	$(PY) benchmarks/bench_retrieval.py

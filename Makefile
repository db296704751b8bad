# `make serve`: set up, build the index from seeds/ if needed, serve API + web page on 127.0.0.1:8000
#               (`make serve PORT=8080 HOST=0.0.0.0 WORKERS=2` to change where and how many).
# `make test`:  set up (including Chromium for the browser tests and PostgreSQL for the store
#               tests), run the whole test suite.
# `make test-quick`: the tests not marked slow (no seed index, no live server, no browser).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned. On this project's build machines a local wheel mirror
# is configured for pip and serves the CPU-only build; on an ordinary machine PyPI's
# torch==2.13.0 is the CUDA build (several GB). There, pass the CPU wheel index:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: setup serve test test-quick browser postgres eval bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	# setuptools prints its editable-install notice (a UserWarning) as a banner; nothing to act on
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

serve: setup
	$(VENV)/bin/qa serve $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST)) $(if $(WORKERS),--workers $(WORKERS))

browser:
	bash scripts/install-browser.sh

postgres:
	bash scripts/install-postgres.sh

test: setup browser postgres
	$(PY) -m pytest -q -rs

test-quick: setup
	$(PY) -m pytest -q -m "not slow"

eval: setup
	$(VENV)/bin/qa ingest && $(VENV)/bin/qa eval eval/dev.jsonl

bench: setup
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/bench_scale.py

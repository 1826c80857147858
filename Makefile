# Two commands do all the set-up on a machine with only python3 and make:
#   make demo   -> .venv with jaxmem, then the main job (quick plateau map)
#   make test   -> .venv with jaxmem[test], then the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test install install-test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(TSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@ $(STAMP)

install: $(STAMP)
install-test: $(TSTAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxmem demo --out runs/demo

test: $(TSTAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/loss_exact_vs_quadrature.py

clean:
	rm -rf $(VENV) build dist *.egg-info

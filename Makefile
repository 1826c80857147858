# Two commands do all the set-up on a machine with only python3 and make:
#   make demo   -> .venv with jaxmem, then the main job (quick plateau map)
#   make test   -> .venv with jaxmem[test], then the documentation build and the test suite
#   make docs   -> the documentation site in site/ (mkdocs-material, built strictly)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test test-quick docs install install-test bench clean

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

# The documentation build, then the whole suite, slow tests and notebooks included (what CI
# runs; ~30 min on 2 cores). The suite runs as three pytest processes (test files a-l, m-r,
# s-z): in a single process holding every compiled program of the suite, XLA crashed (a
# segfault while compiling) late in the run.
TEST_GROUPS := "tests/test_[a-l]*.py" "tests/test_[m-r]*.py" "tests/test_[s-z]*.py"
test: $(TSTAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir site
	for group in $(TEST_GROUPS); do \
	  $(PY) -m pytest -q -m "slow or notebook or not (slow or notebook)" $(PYTEST_ARGS) $$group || exit 1; \
	done

docs: $(TSTAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

# The default suite without the slow tests and notebooks (~8 min on 2 cores).
test-quick: $(TSTAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/loss_exact_vs_quadrature.py
	$(PY) benchmarks/flow_vs_descent.py
	$(PY) benchmarks/sweep_throughput.py --quick
	$(PY) benchmarks/approx_speed.py --quick
	$(PY) benchmarks/train_throughput.py --quick
	$(PY) benchmarks/memory_speed.py
	$(PY) benchmarks/reach.py
	$(PY) benchmarks/cold_start.py

clean:
	rm -rf $(VENV) build dist site *.egg-info

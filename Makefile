# Two entry points: `make demo` and `make test`. Both create .venv when it is missing
# and install hwnas with constraints.txt (torch pinned to the local CPU wheel).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hwnas-installed
PYTEST_WORKERS ?= 2

.PHONY: demo test test-fast venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# test-only reference (NAS-Bench-201's own model code); --no-deps: it pins numpy<=1.19.5
	$(PY) -m pip install -q --no-deps -c constraints.txt xautodl
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hwnas demo

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info

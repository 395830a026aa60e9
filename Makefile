# ephys — make demo | make test | make bench
# Everything runs inside a virtual environment created here (.venv) from pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= cpu,dev
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

# demo settings (small enough for 2 CPU cores in a few minutes; see README)
DEMO_CELLS_PER_CLASS ?= 20
DEMO_MODEL  ?= densenet
DEMO_EPOCHS ?= 12
DEMO_ARGS   ?= --weights none --input-size 128 --lr 3e-4 --batch-size 8
export EPHYS_DATA ?= data
export EPHYS_RUNS ?= runs
DEMO_RUN := $(EPHYS_RUNS)/demo-$(DEMO_MODEL)

SIF     ?= /tmp/ephys.sif
SIF_GPU ?= /tmp/ephys-gpu.sif
# apptainer on a cluster; ../shared/tools/apptainer on this project's own machines
APPTAINER ?= $(shell command -v apptainer || realpath ../shared/tools/apptainer)

.PHONY: install demo test test-slow test-all bench clean help sif sif-gpu sif-test slurm-all slurm-tune slurm-status ipfx-check miniml-check \
        docs docs-serve docs-screenshots reference

help:
	@echo "make demo   set up .venv, then fetch synthetic -> prepare -> train -> evaluate -> explain -> report"
	@echo "make test   set up .venv and run the test suite (make test-slow: the tests marked slow; make test-all: both)"
	@echo "make bench  speed benchmarks (JSON in benchmarks/results/)"
	@echo "make docs   the documentation site into site/ (mkdocs build --strict); make docs-serve serves it; make docs-screenshots shows it in headless Chromium"
	@echo "make reference  regenerate the docs' CLI / model / pipeline reference from the code"
	@echo "make ipfx-check  EP features vs the ipfx package on ../shared/data/patchclamp (own venv, $(IPFX_VENV))"
	@echo "make miniml-check  events detectors vs miniML on simulated traces and the real ABF (own venv, $(MINIML_VENV))"
	@echo "make sif | sif-test | sif-gpu   Apptainer images (containers/)"
	@echo "make slurm-all [PIPELINE=sts|spikes|mer|lfp|events] | slurm-status   a pipeline's DAG on SLURM, one array task per fold (slurm/submit.sh lists the settings)"
	@echo "make slurm-tune PIPELINE=... [MODEL=... TRIALS=20 WORKERS=4]   a hyper-parameter search as a SLURM array, then the best config trained and evaluated (slurm/tune.sh)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/ephys fetch synthetic --n-per-class $(DEMO_CELLS_PER_CLASS)
	$(BIN)/ephys prepare scalograms --workers 2
	$(BIN)/ephys train --model $(DEMO_MODEL) --epochs $(DEMO_EPOCHS) $(DEMO_ARGS) --out $(DEMO_RUN)
	$(BIN)/ephys evaluate $(DEMO_RUN)
	$(BIN)/ephys explain $(DEMO_RUN)
	@echo "report: $$($(BIN)/ephys --quiet report $(DEMO_RUN))"

# the suite runs in TEST_WORKERS processes (pytest-xdist; a test module stays on one worker, so its
# fixtures are made once); much of its time is spent waiting on subprocesses and the scheduler
# `make test` leaves out the tests marked slow (longer runs of paths make test already covers once);
# `make test-slow` runs only those, `make test-all` everything
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: install
	$(PYTEST) -m "not slow"

test-slow: install
	$(PYTEST) -m slow

test-all: install
	$(PYTEST)

# the benchmarks' reference sorters (MountainSort 5) come from the extra "bench"
BENCH_EXTRAS ?= $(EXTRAS),bench

bench:
	$(MAKE) install EXTRAS=$(BENCH_EXTRAS)
	$(BIN)/python benchmarks/bench_cwt.py
	$(BIN)/python benchmarks/bench_spike_detection.py
	$(BIN)/python benchmarks/bench_lfp_ratgps.py
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_input.py
	$(BIN)/python benchmarks/bench_mer.py
	$(BIN)/python benchmarks/bench_cluster.py
	$(BIN)/python benchmarks/bench_errors.py
	$(BIN)/python benchmarks/bench_sorting.py

# the documentation site: the reference pages generated from the code, then mkdocs build --strict into site/
DOCS_EXTRAS ?= $(EXTRAS),docs
DOCS_SRC    := build/docs-src/ephys

reference: install
	$(BIN)/python docs/gen_reference.py

docs:
	$(MAKE) install EXTRAS=$(DOCS_EXTRAS)
	$(BIN)/python docs/gen_reference.py
	@mkdir -p $(DOCS_SRC) && ln -sfn ../../../pipelines $(DOCS_SRC)/pipelines
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict

# the built site in headless Chromium: home, one pipeline page, the CLI reference (PNGs to look at)
docs-screenshots: docs
	docs/screenshots.sh site-screenshots

# ipfx pins its own pynwb / pandas: it gets a venv of its own, outside the repository
IPFX_VENV ?= ../ipfx-venv
$(IPFX_VENV)/.installed:
	$(PYTHON) -m venv $(IPFX_VENV)
	$(IPFX_VENV)/bin/python -m pip install --quiet ipfx
	@touch $@

ipfx-check: install $(IPFX_VENV)/.installed
	$(IPFX_VENV)/bin/python benchmarks/compare_ipfx.py

# miniml-detect pins TensorFlow < 2.16, numpy < 2, Python 3.11: a venv of its own, outside the repository
MINIML_VENV ?= ../miniml-venv
$(MINIML_VENV)/.installed:
	$(PYTHON) -m venv $(MINIML_VENV)
	$(MINIML_VENV)/bin/python -m pip install --quiet miniml-detect
	@touch $@

miniml-check: install $(MINIML_VENV)/.installed
	$(BIN)/python benchmarks/compare_miniml.py --miniml-python $(MINIML_VENV)/bin/python

sif:
	$(APPTAINER) build --force $(SIF) containers/ephys.def

sif-gpu:
	$(APPTAINER) build --force $(SIF_GPU) containers/ephys-gpu.def

# build the CPU image, then run its %test (ephys --version + a tiny chain) and the chain via exec
sif-test: sif
	$(APPTAINER) test $(SIF)
	cd /tmp && $(APPTAINER) exec $(SIF) ephys --version

# a pipeline's whole DAG as sbatch jobs (settings: see slurm/submit.sh); EPHYS_SIF=path runs the image
PIPELINE ?= sts
slurm-all: install
	EPHYS_PIPELINE=$(PIPELINE) EPHYS_BIN=$(abspath $(BIN))/ephys bash slurm/submit.sh

# a hyper-parameter search as a SLURM array of WORKERS tasks sharing one Optuna study, then the best
# configuration trained and evaluated once (settings: see slurm/tune.sh)
MODEL   ?=
TRIALS  ?= 20
WORKERS ?= 4
slurm-tune: install
	EPHYS_PIPELINE=$(PIPELINE) EPHYS_MODEL=$(MODEL) EPHYS_TRIALS=$(TRIALS) EPHYS_WORKERS=$(WORKERS) \
	EPHYS_BIN=$(abspath $(BIN))/ephys bash slurm/tune.sh

slurm-status:
	@bash slurm/status.sh

clean:
	rm -rf runs data/raw data/processed .pytest_cache site build/docs-src

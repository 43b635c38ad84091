# Two targets do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Where prepared data and results go for the demo (the library defaults, spelled out).
DEMO_ROOT    ?= data/prepared
DEMO_RESULTS ?= results

.PHONY: demo test lint bench waymo nuscenes clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/slarm-bench prepare synthetic --split mini --root $(DEMO_ROOT)
	$(BIN)/slarm-bench validate --root $(DEMO_ROOT)
	$(BIN)/slarm-bench list

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check slarm_bench tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py

# Optional dataset extras. The Waymo schema package pins TensorFlow, so it goes in with --no-deps.
waymo: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[waymo]'
	$(BIN)/pip install --quiet --no-deps waymo-open-dataset-tf-2-12-0

nuscenes: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[nuscenes]'

clean-venv:
	rm -rf $(VENV)

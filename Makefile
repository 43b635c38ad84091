# Two targets do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Where prepared data and results go for the demo (the library defaults, spelled out).
DEMO_ROOT    ?= data/prepared
DEMO_RESULTS ?= results
# Models `make test` re-scores against leaderboards/synthetic-mini (those that run in minutes on a CPU).
REGRESS_MODELS ?= nearest

.PHONY: demo test lint bench waymo nuscenes clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Prepare the synthetic mini split, score the demo model on it, and print the leaderboard (written under
# results/, so the committed leaderboards/ stay as they are).
DEMO_MODEL ?= nearest
demo: $(STAMP)
	$(BIN)/slarm-bench prepare synthetic --split mini --root $(DEMO_ROOT)
	$(BIN)/slarm-bench validate --root $(DEMO_ROOT) --quick
	$(BIN)/slarm-bench run --model $(DEMO_MODEL) --protocol synthetic-mini --root $(DEMO_ROOT) --results $(DEMO_RESULTS)
	$(BIN)/slarm-bench report --protocol synthetic-mini --results $(DEMO_RESULTS) --out $(DEMO_RESULTS)/leaderboards
	cat $(DEMO_RESULTS)/leaderboards/synthetic-mini/leaderboard.md

# The unit tests, then the regression check of scores against the committed leaderboard (CPU models only).
test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/slarm-bench prepare synthetic --split mini --root $(DEMO_ROOT) --quiet
	$(BIN)/slarm-bench regress --protocol synthetic-mini --models $(REGRESS_MODELS) --root $(DEMO_ROOT)

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
	$(BIN)/pip install --quiet --no-deps nuscenes-devkit==1.2.0

clean-venv:
	rm -rf $(VENV)

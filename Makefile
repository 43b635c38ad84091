# Two targets do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The dataset extras, so that the Waymo and nuScenes adapter tests run rather than skip.
EXTRAS := $(VENV)/.extras-stamp
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
	@echo; echo "The committed leaderboard (leaderboards/synthetic-mini/, with the GPU-trained rows):"
	@grep '^|' leaderboards/synthetic-mini/leaderboard.md | cut -d'|' -f2-6,8,13

# waymo-open-dataset-tf-2-12-0 and nuscenes-devkit pin old stacks (TensorFlow; numpy<2) that their code
# here does not need, so they go in without dependencies; their real needs come from the extras.
$(EXTRAS): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[waymo,nuscenes]'
	$(BIN)/pip install --quiet --no-deps waymo-open-dataset-tf-2-12-0 nuscenes-devkit==1.2.0
	touch $(EXTRAS)

# The unit tests, then the regression check of scores against the committed leaderboard (CPU models only).
test: $(STAMP) $(EXTRAS)
	$(BIN)/python -m pytest -q
	$(BIN)/slarm-bench prepare synthetic --split mini --root $(DEMO_ROOT) --quiet
	$(BIN)/slarm-bench regress --protocol synthetic-mini --models $(REGRESS_MODELS) --root $(DEMO_ROOT)

lint: $(STAMP)
	$(BIN)/ruff check slarm_bench tests benchmarks

# The CPU benchmarks behind the README's figures (GPU ones: see benchmarks/gpu_*.sh).
bench: $(STAMP) $(EXTRAS)
	OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(BIN)/python benchmarks/bench_synthetic.py --seeds 3
	$(BIN)/python benchmarks/bench_store.py --frames 40 --windows 40
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_harness.py --protocol synthetic-mini --root $(DEMO_ROOT)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_render.py --device cpu
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_waymo.py --frames 6
	$(BIN)/python benchmarks/bench_nuscenes.py

# The dataset extras on their own (`make test` installs both).
waymo nuscenes: $(EXTRAS)

clean-venv:
	rm -rf $(VENV)

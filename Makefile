# The two set-up commands of the README: `make demo` and `make test`. Both create .venv when missing.
# `make mutants`: the curated mutation run (tests/mutants/); slower than `make test` and not part of it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test mutants install clean slurm gpu-check

# Reinstall when pyproject.toml changes; a second run with nothing changed does nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python -m pytest -n 2 --dist loadgroup -q

# MUTANTS_ARGS passes options through, e.g. MUTANTS_ARGS="--only prop-radius-not-strict" or "--jobs 2".
mutants: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python tests/mutants/run.py $(MUTANTS_ARGS)

# The demo: the mask_ratio study's two extreme cells (0.95 is the default) at 3 seeds, two trials side by side, and the
# random-init encoder; then its report. `study run mask_ratio --seeds 3` later adds the other cells to the same study.
DEMO_RUN := study run mask_ratio --cells 0.5,0.95 --seeds 3 --workers 2

demo: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/$(DEMO_RUN)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/study report mask_ratio
	@echo
	@echo "Report: reports/mask_ratio/report.md"
	@echo "MLflow UI: $(BIN)/study ui   (then open http://127.0.0.1:5000)"

# A one-node SLURM cluster on this machine (as root; Debian's slurmctld, slurmd and munge), as CI starts it.
slurm:
	bash .ci/slurm start

# On a CUDA machine: the paper budget's step, the loader and 30 steps of `study train` (exit 2 without a GPU).
gpu-check: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/study bench gpu

clean:
	rm -rf .study $(VENV)

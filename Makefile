# Set-up and the two front-door commands. `make demo` and `make test` each
# create .venv and install the project into it first when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extras installed for development. torch, when an extra needs it, is pinned to
# 2.13.0 in pyproject.toml: that pin takes the local CPU build, where an
# unpinned torch would pull several GB of CUDA wheels.
EXTRAS ?= dev
OUT    ?= out/demo

.PHONY: setup demo test lint clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[$(EXTRAS)]"
	touch $@

# The Redocly CLI that lints the OpenAPI document (tests/serving/test_openapi.py), pinned,
# from the npm registry into a local folder (no global install). Without npm the lint
# test skips, except on CI (CI set), where it fails.
REDOCLY_VERSION := 2.77.0
REDOCLY_DIR     := .tools/redocly

$(REDOCLY_DIR)/.installed-$(REDOCLY_VERSION):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(REDOCLY_DIR) --no-audit --no-fund --silent \
			@redocly/cli@$(REDOCLY_VERSION) && touch $@; \
	else echo "npm not found: the Redocly lint test will skip (install Node.js for it)"; fi

setup: $(VENV)/.installed-$(EXTRAS) $(REDOCLY_DIR)/.installed-$(REDOCLY_VERSION)

demo: setup
	$(BIN)/twin fmu build
	$(BIN)/twin fmu validate
	$(BIN)/twin fmu info spindle | head -n 7
	$(BIN)/twin fmu simulate --spec experiments/specs/spindle.yaml \
		--order experiments/orders/demo.yaml \
		--csv $(OUT)/trajectories.csv --plot $(OUT)/trajectories.png
	$(BIN)/twin data generate --spec experiments/specs/spindle.yaml \
		--n 10000 --doe lhs --seed 1 --emphasis corners:0.3 --out $(OUT)/dataset
	$(BIN)/twin data info $(OUT)/dataset
	$(BIN)/twin train --dataset $(OUT)/dataset --config experiments/training/spindle.yaml \
		--out $(OUT)/surrogate
	$(BIN)/twin export $(OUT)/surrogate --out $(OUT)/bundle
	$(BIN)/twin verify $(OUT)/bundle --n 500 --seed 9001
	$(BIN)/twin promote milling_spindle || echo "not promoted: the gate above lists what it misses"
	$(BIN)/twin mes simulate --serve $(OUT)/bundle --db sqlite:///$(OUT)/twin.db \
		--json $(OUT)/shift.json

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check physics surrogates serving tests experiments
	$(BIN)/mypy

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache mlflow.db mlartifacts

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

# ecospy, the second FMI importer of the surrogate-FMU tests, loads Intel TBB's runtime
# (Debian's libtbb12). Installed with apt-get where it is missing and we may; otherwise
# that test skips, except on CI, where it fails.
.tools/.libtbb12:
	@mkdir -p .tools
	@if ldconfig -p | grep -q 'libtbb\.so\.12'; then touch $@; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q libtbb12 >/dev/null && touch $@; \
	else echo "libtbb12 not found: the ecos importer test will skip (apt-get install libtbb12)"; fi

setup: $(VENV)/.installed-$(EXTRAS) $(REDOCLY_DIR)/.installed-$(REDOCLY_VERSION) .tools/.libtbb12

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
	$(BIN)/twin export $(OUT)/bundle --fmu $(OUT)/spindle_surrogate.fmu
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

# The two commands a new machine needs: `make run` (the demo) and `make test` (every test).
# Both install what they need first; nothing here relies on hand-installed state.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXAMPLES := $(wildcard examples/modules/*/pyproject.toml)

.PHONY: run test unit lint venv system-deps binaries checkers bench clean

$(STAMP): pyproject.toml $(EXAMPLES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' $(foreach p,$(EXAMPLES),-e $(dir $(p)))
	touch $@

venv: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

binaries: venv
	$(BIN)/deepmarket dev binaries

# axe-core (npm) and the Nu Html Checker (Maven Central) for the site's checker tests.
checkers: system-deps
	bash scripts/fetch-checkers.sh

# The whole platform on the embedded default: dev cluster + operator + a live module + the
# marketplace. Ctrl-C stops the demo; `deepmarket dev down` stops the cluster it leaves running.
run: venv
	$(BIN)/deepmarket demo

test: venv system-deps binaries checkers
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest -m 'not cluster and not deepaas and not browser'

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build public artifacts

# The two quick-start commands: `make run` and `make test`. Each sets up .venv first.
# `make test` checks the import contracts (pyproject's [tool.importlinter]) before the tests.
# Installs are pinned by constraints.txt (pip-compile's lock of pyproject.toml); `make lock`
# refreshes it after a dependency changes in pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := constraints.txt

.PHONY: setup run test lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) pip
	# PYTHONWARNINGS: setuptools warns that an editable install maps folders (pyproject's package-dir);
	# that mapping is the design (one installed package, playbill), so the note is noise here.
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/playbill run --train-missing

test: setup
	$(BIN)/python tests/lint_imports.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The newest versions pyproject.toml allows, pinned (for this platform; other platforms' extra
# packages, e.g. tensorflow on aarch64, still resolve from pyproject.toml's ranges).
lock: setup
	$(BIN)/pip-compile --quiet --upgrade --extra dev --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache

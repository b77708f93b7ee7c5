# The two set-up commands of the README. Each installs what it needs first.
PYTHON ?= python3
CONFIG ?= configs/demo.yaml

.PHONY: install demo lint test test-min test-slow soak bench-demo docs

install:
	$(PYTHON) -m pip install -q -e .

# Train the offline demo, then test its best checkpoint (docs/results/demo.md: its time and results).
demo: install
	$(PYTHON) -m spml_lightning fit --config $(CONFIG)
	$(PYTHON) -m spml_lightning test --config $(CONFIG) --ckpt_path best

# Lint (ruff), the formatter check and mypy on the pure layers (settings in pyproject.toml).
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

# The lint checks and the test suite (slow tests excluded; see test-slow), one pytest-xdist
# worker per core up to 4: most tests wait on one thread (a subprocess importing torch and
# Lightning), so two workers keep a 2-core machine busy.
test:
	$(PYTHON) -m pip install -q -e ".[test]"
	$(MAKE) lint PYTHON="$(PYTHON)"
	$(PYTHON) -m pytest -q -n auto --maxprocesses 4

# The suite at the dependency floors of pyproject.toml, in a fresh venv (downloads old releases).
test-min:
	bash .ci/test-min

# Long tests marked `slow`, a separate CI step with its own time budget (not in .ci/run).
test-slow:
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pytest -q -m slow

# Only the long-run soak: 30 epochs of the demo, host RSS flat, checkpoint disk use bounded.
soak:
	$(PYTHON) -m pip install -q -e ".[test]"
	$(PYTHON) -m pytest -q -m slow tests/integration/test_soak.py

# The demo's results table (docs/results/demo.md): full / GR / AN / EM, 5 seeds each, the
# ordering seed by seed and GR - AN paired with its standard error; then the demo's wall time.
bench-demo: install
	$(PYTHON) bench/compare_losses.py --losses full GR AN EM --seeds 0 1 2 3 4 \
		--order full GR AN --gap GR AN
	$(PYTHON) bench/demo_time.py

# The documentation site, built strictly (any warning fails) into site/ (docs/development/docs.md).
# Installs the docs extra only when it is missing, so that the build itself needs no network.
# NO_MKDOCS_2_WARNING: silence Material's banner about MkDocs 2 (the extra pins mkdocs<2).
docs:
	$(PYTHON) -c "import material, mkdocs_jupyter, mkdocstrings_handlers.python" 2>/dev/null \
		|| $(PYTHON) -m pip install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --strict

# certmail: `make demo` and `make test` do all their own set-up.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench setup web clean

# The web pages' script (notary/web/static/verify.js), built from notary/web/src by
# esbuild from the npm lockfile; the notary serves it with no Node at run time (docs/web.md).
WEB_JS := notary/web/static/verify.js
WEB_SRC := $(wildcard notary/web/src/*.js) notary/web/build.mjs package.json package-lock.json

setup: $(STAMP) $(WEB_JS)

web: $(WEB_JS)

$(WEB_JS): $(WEB_SRC)
	npm ci --ignore-scripts --no-audit --no-fund
	npm run build

$(STAMP): pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh

demo: $(STAMP) $(WEB_JS)
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check keys notary certmail tests benchmarks scripts
	$(VENV)/bin/ruff format --check keys notary certmail tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

# Two worker processes (pytest-xdist), each test file whole on one worker (--dist
# loadfile): a module's fixtures (servers, notaries, a browser) start once.
# PYTEST_WORKERS=0 runs in this process alone.
PYTEST_WORKERS ?= 2
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

test: lint $(WEB_JS)
	$(VENV)/bin/pytest -q $(XDIST) --durations=30 tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) node_modules $(WEB_JS) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache

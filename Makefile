# certmail: `make demo` and `make test` do all their own set-up.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh

demo: $(STAMP)
	$(PY) scripts/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check keys notary certmail tests benchmarks scripts
	$(VENV)/bin/ruff format --check keys notary certmail tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

test: lint
	$(VENV)/bin/pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache

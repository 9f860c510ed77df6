# Two commands: `make demo` (install, start the stack, demo project, round 1) and `make test`.
# Also: `make test-unit` (the fast tests alone, no Label Studio) and `make lint` (ruff).
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-label-studio
LS_REQUIREMENT := label-studio==1.23.2
# Label Studio lives in its own virtualenv so its pins never constrain loop's dependencies.
export LOOP_LABEL_STUDIO_VENV := $(CURDIR)/$(LS_VENV)

.PHONY: install demo test test-unit test-postgres lint down clean

install: $(VENV)/.installed $(LS_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0   # the CPU wheel first: nothing pulls a CUDA build
	$(VENV)/bin/pip install --quiet -e '.[test,ray]'   # ray: the optional Ray engine, so its test runs
	touch $@

$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet $(LS_REQUIREMENT)
	touch $@

demo: install
	$(VENV)/bin/loop demo

test: install
	$(VENV)/bin/python -m pytest

# The integration tests that work Label Studio hardest (the loop end to end, audit, release, the browser)
# once more with Label Studio on PostgreSQL (`loop up --label-studio-db postgres`; Debian's `postgresql`,
# which .ci/run installs). tests/integration/test_postgres.py runs in `make test` too.
POSTGRES_TESTS := tests/integration/test_loop_e2e.py tests/integration/test_audit.py \
	tests/integration/test_release.py tests/integration/test_annotators_browser.py
test-postgres: install
	LOOP_TEST_LABEL_STUDIO_DB=postgres $(VENV)/bin/python -m pytest -m integration $(POSTGRES_TESTS)

test-unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not integration"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

down:
	$(VENV)/bin/loop down

clean: down
	rm -rf .loop

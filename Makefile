# Two commands: `make demo` (install, start the stack, demo project, round 1) and `make test`.
# Also: `make test-unit` (the fast tests alone, no Label Studio) and `make lint` (ruff).
PYTHON ?= python3
VENV := .venv
LS_VENV := .venv-label-studio
LS_REQUIREMENT := label-studio==1.23.2
# Label Studio lives in its own virtualenv so its pins never constrain loop's dependencies.
export LOOP_LABEL_STUDIO_VENV := $(CURDIR)/$(LS_VENV)

.PHONY: install demo test test-unit lint down clean

install: $(VENV)/.installed $(LS_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet torch==2.13.0   # the CPU wheel first: nothing pulls a CUDA build
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install --quiet $(LS_REQUIREMENT)
	touch $@

demo: install
	$(VENV)/bin/loop demo

test: install
	$(VENV)/bin/python -m pytest

test-unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not integration"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

down:
	$(VENV)/bin/loop down

clean: down
	rm -rf .loop

# Two commands for a fresh machine: `make run` (train the embedded default) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-all install clean

$(BIN)/activate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/activate

install: $(BIN)/activate

run: install
	$(BIN)/python -m src.train $(ARGS)

# the suite runs on both cores (pytest-xdist); a file's tests stay on one worker (module fixtures, DDP ports)
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)

test-all: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m '' $(ARGS)

clean:
	rm -rf outputs multirun .pytest_cache

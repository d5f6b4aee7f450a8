# The two commands a new user runs: `make demo` and `make test`. Both create the virtualenv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CASES  ?= 6

.PHONY: demo test serve clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hub demo --cases $(CASES)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

serve: $(STAMP)
	$(BIN)/hub serve

clean:
	rm -rf var $(VENV)

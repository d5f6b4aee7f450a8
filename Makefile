# The two commands a new user runs: `make demo` and `make test`. Both create the virtualenv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CASES  ?= 6

.PHONY: demo test serve bench bench-faults clean install xmlsec1

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hub demo --cases $(CASES)

# The benchmark (bench/, README "Benchmark"): hub + NARSA sandbox on loopback, 2000 messages on SQLite by default.
# make bench BENCH_ARGS="--messages 20000 --database postgresql"   (python -m bench --help lists the options)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The fault tests at full length (README "Faults survived"): a partner refusing connections for 60 s, a 30 s
# database outage... `make test` runs the same tests scaled down to a tenth (HUB_FAULT_SCALE=0.1).
bench-faults: $(STAMP)
	HUB_FAULT_SCALE=1 $(BIN)/pytest -s tests/test_faults.py tests/test_partner_isolation.py

# The tests check signatures with an independent implementation, xmlsec1 (Debian package xmlsec1).
XMLSEC1 := $(shell command -v xmlsec1 2>/dev/null)

test: $(STAMP) xmlsec1
	$(BIN)/pytest $(PYTEST_ARGS)

xmlsec1:
ifeq ($(XMLSEC1),)
	@echo "installing xmlsec1 (the tests check the hub's signatures with it)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1 >/dev/null
endif

serve: $(STAMP)
	$(BIN)/hub serve

clean:
	rm -rf var $(VENV)

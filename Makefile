# The two commands a new user runs: `make demo` and `make test`. Both create the virtualenv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CASES  ?= 6

.PHONY: demo test test-full serve bench bench-faults clean install test-tools print-tools xmlsec1 chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The development keys first (`hub dev init`, kept when they exist): the hub itself never makes a key.
demo: $(STAMP) print-tools
	$(BIN)/hub dev init
	$(BIN)/hub demo --cases $(CASES)

# The benchmark (bench/, docs/performance.md): the hub as in production (`hub serve --processes N --delivery-processes
# 2`) and the sandboxes on loopback, SQLite by default: throughput, 150 messages/s sustained, SOAP, repatriation.
# make bench BENCH_ARGS="--database postgresql --check"   (--check: exit 1 naming each target missed; --help: options)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The fault tests at full length (README "Faults survived"): a partner refusing connections for 60 s, a 30 s
# database outage... `make test` runs the same tests scaled down to a tenth (HUB_FAULT_SCALE=0.1).
bench-faults: $(STAMP)
	HUB_FAULT_SCALE=1 $(BIN)/pytest -s tests/test_faults.py tests/test_partner_isolation.py

# What printing the documents for citizens needs from Debian at run time (registry/printing/, README "Documents
# for citizens"): Pango (WeasyPrint lays the PDF out with it, HarfBuzz shapes the Arabic) and the fonts the
# documents name, Amiri for Arabic among them; installed when missing by `make print-tools` (the demo runs it).
PRINT_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-hosny-amiri fonts-liberation fonts-dejavu-core
PANGO          := $(shell ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0' && echo yes)
AMIRI          := $(shell fc-list 'Amiri:lang=ar' family 2>/dev/null | head -1)
LIBERATION     := $(shell fc-list 'Liberation Serif' family 2>/dev/null | head -1)
PRINT_MISSING  := $(if $(and $(PANGO),$(AMIRI),$(LIBERATION)),,$(PRINT_PACKAGES))

# What the tests need from Debian: xmlsec1 (they check the hub's signatures with an independent implementation),
# chromium (the console's tests drive it headless through Playwright, whose own browser download is not used),
# poppler-utils and zbar-tools (the printed documents are read back with pdftotext and pdftoppm, their QR codes
# with zbarimg) and what printing needs, installed when missing, with one apt-get update for all.
XMLSEC1  := $(shell command -v xmlsec1 2>/dev/null)
CHROMIUM := $(shell command -v chromium 2>/dev/null)
POPPLER  := $(shell command -v pdftoppm 2>/dev/null)
ZBARIMG  := $(shell command -v zbarimg 2>/dev/null)
MISSING  := $(strip $(if $(XMLSEC1),,xmlsec1) $(if $(CHROMIUM),,chromium fonts-dejavu-core) \
              $(if $(POPPLER),,poppler-utils) $(if $(ZBARIMG),,zbar-tools) $(PRINT_MISSING))

# make test       what CI runs (.ci/run, PostgreSQL required): every test, in a few minutes. Tests run on SQLite, and
#                 on PostgreSQL too where storage is their subject (claims, leases, the leader, sealing, group commit,
#                 retention, search, faults, migrations: @pytest.mark.both_databases); databases are copies of one
#                 migrated per session; the fault tests run at a tenth of their length (HUB_FAULT_SCALE=0.1) and
#                 the generated inputs at hypothesis's "ci" profile; TEST_WORKERS (3) pytest-xdist workers, a file each
#                 (one more than this machine's 2 cores: a third of a test's time is spent waiting on processes).
# make test-full  everything at full length: every test on both databases (HUB_TEST_DATABASES=both), the fault
#                 tests at full scale (HUB_FAULT_SCALE=1, as `make bench-faults`), ten times the generated examples
#                 (HYPOTHESIS_PROFILE=full). Longer: before a release, or after touching storage or intake.
# Both take PYTEST_ARGS (e.g. PYTEST_ARGS="-k sqlite tests/test_faults.py") and TEST_WORKERS (0: no workers).
TEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP) test-tools
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

test-full: $(STAMP) test-tools
	HUB_TEST_DATABASES=both HUB_FAULT_SCALE=1 HYPOTHESIS_PROFILE=full $(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

test-tools:
ifneq ($(MISSING),)
	@echo "installing $(MISSING) for the tests (Debian packages, with apt-get)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(MISSING) >/dev/null
endif

xmlsec1 chromium: test-tools

print-tools:
ifneq ($(strip $(PRINT_MISSING)),)
	@echo "installing $(PRINT_MISSING) to print documents for citizens (Debian packages, with apt-get)"
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PRINT_MISSING) >/dev/null
endif

serve: $(STAMP) print-tools
	$(BIN)/hub serve

clean:
	rm -rf var $(VENV)

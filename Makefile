# Two entry points do all set-up on a fresh machine:
#   make run   - create .venv, install loadlab, run the default profile against the embedded control plane
#   make test  - create .venv, install test needs (Python and Debian packages), lint, type-check, test
# and one is the everyday loop while editing:
#   make check - lint, type-check and the fast tests only (no Debian packages, no wall clock): < 30 s
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
# A shipped profile's name (`loadlab profiles` lists them) or the path of a YAML file.
PROFILE  ?= http-knee
RUNFLAGS ?=
# Debian packages the tests start for real: a DNS resolver, a reference HTTP load generator, a
# browser that opens the HTML reports.
TEST_DEBS := unbound wrk dnsperf chromium
# Debian packages `make bench` starts: the servers (nginx, unbound) and the reference load
# generators (wrk, dnsperf) measured beside loadlab. Any nginx will do for nginx-light.
BENCH_DEBS := nginx-light unbound wrk dnsperf
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The tests that need no Debian package and no wall clock: logic on fake clocks and fake wires.
FAST_TESTS := not realtime and not slow and not needs_unbound and not needs_wrk and not needs_kubectl \
              and not needs_chromium

.PHONY: run test check lint typecheck unit fast bench debs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/loadlab run $(PROFILE) $(RUNFLAGS)

# Installs what is missing and nothing else; apt-get update runs only when something is missing.
debs:
	@missing=""; \
	for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check loadlab tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

unit: $(VENV)/.installed-test debs
	$(BIN)/pytest

# The everyday loop: no apt step, no real-time or end-to-end tests.
fast: $(VENV)/.installed-test
	$(BIN)/pytest -q -m "$(FAST_TESTS)"

check: lint typecheck fast

test: lint typecheck unit

# Micro-benchmarks of the hot paths, then loadlab's throughput profiles beside wrk (against nginx)
# and dnsperf (against unbound), A B A B; each writes bench/results/<date>-{http,dns}.json
# (-2, -3 ... for later runs that day).
bench: $(VENV)/.installed-test
	@missing=""; \
	for p in $(BENCH_DEBS); do \
	  dpkg -s $$p >/dev/null 2>&1 || command -v $${p%-light} >/dev/null || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(BIN)/pytest bench --benchmark-only -p no:cacheprovider
	$(BIN)/python -m bench.sidebyside_http
	$(BIN)/python -m bench.sidebyside_dns

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache

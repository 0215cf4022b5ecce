# newsdedup: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Prefect: no telemetry (it fails offline and leaves 'database is locked' lines), the
# project's own home, and the library's logs shown in flow runs.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_LOGGING_EXTRA_LOGGERS := pipeline
export PREFECT_SERVER_LOGGING_LEVEL ?= WARNING
# The embedded server takes 10-30 s to start on 2 busy cores; Prefect's default wait is 20 s.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

DB ?= data/stories.db

.PHONY: help install system-deps run test test-fast eval eval-extraction bench clean server serve deploy worker screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install newsdedup with pinned dependencies

# System packages the browser and server tests need (Debian). Idempotent; run by .ci/run as root.
SYSTEM_PACKAGES := chromium
system-deps: ## install the Debian packages the browser tests need (needs root)
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: $(STAMP) ## ingest seeds/ into data/stories.db through the Prefect flow, then list the stories
	$(BIN)/newsdedup ingest seeds/ --db $(DB)
	$(BIN)/newsdedup stories --db $(DB)

test: $(STAMP) ## run the whole test suite
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## the tests that need no server or browser
	$(BIN)/python -m pytest -m "not slow"

eval: $(STAMP) ## story clustering quality on the development corpus
	$(BIN)/newsdedup eval tests/data/giveme5w1h.jsonl

eval-extraction: $(STAMP) ## token P/R/F1 of stored text on the 181-page HTML set (docs/extraction.md)
	$(BIN)/python bench/extraction_eval.py --baseline

BENCH_LARGE ?= 100000
bench: $(STAMP) ## throughput, peak memory, incremental cost and the datasketch baseline (docs/performance.md)
	$(BIN)/python bench/run.py --large $(BENCH_LARGE)

PREFECT_PORT ?= 4200
server: $(STAMP) ## a local Prefect server (UI + API) with its database in .prefect/; Ctrl-C stops it
	$(BIN)/newsdedup server --port $(PREFECT_PORT)

serve: $(STAMP) ## serve config/sources.toml as scheduled deployments to the server of `make server`
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} $(BIN)/newsdedup serve --db $(DB)

# prefect.yaml route: deployments run by a worker from a work pool instead of `newsdedup serve`.
PREFECT_POOL := newsdedup
deploy: $(STAMP) ## register prefect.yaml's deployments (work pool newsdedup) with the server of `make server`
	export PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api}; \
	$(BIN)/prefect work-pool inspect $(PREFECT_POOL) >/dev/null 2>&1 || $(BIN)/prefect work-pool create $(PREFECT_POOL) --type process; \
	$(BIN)/prefect --no-prompt deploy --all

worker: $(STAMP) ## run the flow runs of `make deploy`'s deployments (a process worker on this machine)
	PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} $(BIN)/prefect worker start --pool $(PREFECT_POOL)

screenshots: $(STAMP) ## refresh docs/prefect-*.png from the Prefect UI browser test
	NEWSDEDUP_UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/e2e/test_prefect_ui_browser.py

clean: ## remove the virtualenv, Prefect's local state and data/stories.db (copy it first if it matters)
	rm -rf $(VENV) data/stories.db* .prefect .pytest_cache

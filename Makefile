# Two commands matter: `make run` and `make test`. Everything else is a step of theirs or a tool for developers.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
# Every target that needs PostgreSQL and Redis evaluates this first (machine services, or embedded ones).
SERVICES := eval "$$($(PY) scripts/services.py env)"

.PHONY: help run test lint format install migrate messages seed services services-stop bench-ingest bench-api bench-segments bench-rules bench-reaction chromium

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install the pinned dependencies (when they changed)

services: install ## print the database and Redis URLs (starting embedded ones if needed)
	@$(PY) scripts/services.py env

services-stop: install ## stop the embedded PostgreSQL and Redis, if running
	$(PY) scripts/services.py stop

migrate: install ## apply database migrations
	@$(SERVICES) && $(PY) manage.py migrate --no-input

run: install ## set up everything, load demo data into an empty database, serve :8000 with worker and beat
	@$(SERVICES) && export DEBUG=$${DEBUG:-1} && \
	  $(PY) manage.py migrate --no-input && \
	  $(PY) manage.py setup_demo && \
	  echo "Serving http://127.0.0.1:8000 (Ctrl-C stops web, worker and beat)" && \
	  mkdir -p var && $(VENV)/bin/honcho start -f Procfile

test: install lint chromium ## lint, then the whole test suite against real PostgreSQL and Redis
	@$(SERVICES) && $(PY) -m pytest -p no:randomly $(PYTEST_ARGS)

lint: install ## ruff (lint and format), import-linter (the apps' dependency layers)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

chromium: ## install Debian's Chromium for the browser tests (skipped with a warning where impossible)
	@bash scripts/ensure_chromium.sh

messages: install ## extract translatable strings into locale/ and compile them
	$(PY) manage.py makemessages -l zh_Hans -l en --no-obsolete --ignore=.venv --ignore=var --ignore=bench
	$(PY) manage.py compilemessages --ignore=.venv

seed: install ## demo data: make seed N=1000000 (FORCE=1 replaces existing data)
	@$(SERVICES) && $(PY) manage.py migrate --no-input && \
	  $(PY) manage.py seed_demo --customers $${N:-10000} $${FORCE:+--force}

bench-ingest: install ## bulk ingest throughput next to bare COPY (bench/ingest.py)
	@$(SERVICES) && $(PY) bench/ingest.py

bench-api: install ## customer list/detail latency (run against a seeded database; bench/api.py)
	@$(SERVICES) && $(PY) bench/api.py

bench-rules: install ## auto-tag rule at 1M customers vs hand-written SQL (seeded database; bench/rules.py)
	@$(SERVICES) && $(PY) bench/rules.py

bench-reaction: install ## order commit -> rule tag visible, real worker + beat (own seeded database; bench/reaction.py)
	@$(SERVICES) && $(PY) bench/reaction.py

bench-segments: install ## RFM recompute vs bare aggregate, segment count, members page (seeded database; bench/segments.py)
	@$(SERVICES) && $(PY) bench/segments.py

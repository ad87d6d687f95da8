# Two commands: `make run` (serve the demo on http://127.0.0.1:5000) and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
PYTHON ?= python3
PG_URL ?= postgresql://postgres@127.0.0.1:5432/tumorboard_test
export FLASK_APP := wsgi

.PHONY: run test test-sqlite test-postgres lint venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

# The web server, the scheduler process and a local SMTP sink side by side (the sink keeps every
# mail — invites, cancellations, alerts — as a file under instance/maildir); Ctrl-C stops all three.
run: venv
	$(BIN)/flask db upgrade
	$(BIN)/flask tumorboard seed-demo
	@echo "tumorboard on http://127.0.0.1:5000 with the scheduler; mail lands in instance/maildir/new"
	mkdir -p instance/maildir/tmp instance/maildir/new instance/maildir/cur
	trap 'kill 0' EXIT INT TERM; \
	$(BIN)/python -m aiosmtpd -n -l 127.0.0.1:8025 -c aiosmtpd.handlers.Mailbox instance/maildir & \
	$(BIN)/flask tumorboard scheduler & \
	$(BIN)/flask run --host 127.0.0.1 --port 5000

test: venv lint test-sqlite test-postgres

lint: venv
	$(BIN)/ruff check .

test-sqlite: venv
	TEST_DATABASE_URL= $(BIN)/python -m pytest -q

# Only the tests that touch the database run again on PostgreSQL. With CI=true PostgreSQL is
# mandatory (.ci/run starts one); elsewhere a machine without it skips this half, loudly.
test-postgres: venv
	@if $(BIN)/python -m tests.pgcheck "$(PG_URL)"; then \
	  TEST_DATABASE_URL="$(PG_URL)" TB_DATABASE_TESTS_ONLY=1 $(BIN)/python -m pytest -q; \
	elif [ "$$CI" = "true" ]; then echo "PostgreSQL at $(PG_URL) does not answer (CI needs it)"; exit 1; \
	else echo "SKIPPED: PostgreSQL at $(PG_URL) does not answer; the PostgreSQL half did not run"; fi

# The two commands of the README: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-xml bench-apps bench-rss bench-csv bench-record system-deps clean \
	compiled bench-apps-compiled

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Poll the bundled sample partner once, then show what happened.
run: $(STAMP)
	$(BIN)/aim-gateway run --once --config config.toml
	$(BIN)/aim-gateway status --config config.toml

# System packages the tests use, installed when missing and running as root: a real OpenSSH
# server (SFTP tests), PostgreSQL (multi-worker tests), Chromium (web page tests), systemd
# (systemd-analyze verifies deploy/aim-gateway.service), valgrind (the regression test counts
# instructions, bench/regression.py).
SYSTEM_PACKAGES = openssh-server:/usr/sbin/sshd postgresql:/usr/lib/postgresql chromium:/usr/bin/chromium systemd:/usr/bin/systemd-analyze valgrind:/usr/bin/valgrind
system-deps:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
		pkg=$${entry%%:*}; path=$${entry#*:}; [ -e "$$path" ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = "0" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# ruff, then the types: mypy --strict over the package (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/mypy --strict gateway

# Two worker processes (pytest-xdist), one test file per worker so that a file's fixtures (sshd,
# PostgreSQL) start once: many tests wait on a server, a child process or the disk, so two
# workers on a 2-core machine took the suite from 10-11 to 6-7 minutes (fresh clones, 2026-12-05).
TEST_WORKERS ?= 2
test: $(STAMP) system-deps lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

# One command per row of issue 15's table (bench/README.md, "One command per row").
bench-xml: $(STAMP)
	$(BIN)/python bench/run_bench.py --sizes 100000 --lines-per-app 20 --no-csv
bench-apps: $(STAMP)
	$(BIN)/python bench/run_bench.py --sizes 100000 --lines-per-app 20 10 5 1 --no-csv
bench-rss: $(STAMP)
	$(BIN)/python bench/run_bench.py --sizes 1000000 --repeat 1 --no-csv
bench-csv: $(STAMP)
	$(BIN)/python bench/run_bench.py --sizes 100000 --lines-per-app 20 --csv --serve

# Opt-in, never used by run/test: the hot modules compiled with mypyc into .venv/compiled (needs
# gcc and Python's headers; bench/README.md, "The compiled gateway"), and bench-apps measuring
# it beside the pure gateway against the same baselines.
compiled: $(STAMP)
	$(BIN)/python bench/compiled.py
bench-apps-compiled: $(STAMP)
	$(BIN)/python bench/run_bench.py --sizes 100000 --lines-per-app 20 10 5 1 --no-csv --compiled

# The regression test's yardstick (tests/test_bench_regression.py): rewrites bench/recorded.json.
bench-record: $(STAMP)
	$(BIN)/python bench/run_bench.py --record

clean:
	rm -rf data outbox/ace outbox/sample bench/out

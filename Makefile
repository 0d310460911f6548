# The two commands of the README: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# Poll the bundled sample partner once, then show what happened.
run: $(STAMP)
	$(BIN)/aim-gateway run --once --config config.toml
	$(BIN)/aim-gateway status --config config.toml

# System packages the tests use (real OpenSSH server for the SFTP tests), when running as root.
system-deps:
	@if [ ! -x /usr/sbin/sshd ] && [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench

test: $(STAMP) system-deps lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

clean:
	rm -rf data outbox/ace outbox/sample bench/out

# LLMChatLinker: `make run` starts the suite, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto')

.PHONY: all venv proto run test lint bench clean clean-data

all: proto

# The suite, the wire format and the client are installed editable into the venv, which is
# rebuilt when any of their pyprojects changes.
$(VENV)/.stamp: pyproject.toml wire/pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]" -e ./wire -e "./clients/python[amqp]"
	touch $@

venv: $(VENV)/.stamp

# gen/ is a package of its own (tools/protogen.py writes its pyproject), installed editable too.
gen/.stamp: $(VENV)/.stamp $(PROTOS) tools/protogen.py
	$(PY) -m tools.protogen gen
	$(PY) -m pip install -q --no-deps --no-build-isolation -e ./gen
	touch $@

proto: gen/.stamp

run: proto
	$(VENV)/bin/llmchatlinker up $(ARGS)

test: proto
	$(PY) -m pytest

# The API only grows: buf breaking (FILE rules, protos/buf.yaml) compares protos/ as it is with
# protos/ at BREAKING_AGAINST, by default the previous commit (a git ref: `make lint BREAKING_AGAINST=main`).
BREAKING_AGAINST ?= HEAD~1
BUF := npx --yes @bufbuild/buf@1.75.0

lint: proto
	cd protos && $(BUF) lint
	cd protos && $(BUF) breaking --against "$$(git rev-parse --show-toplevel)/.git#ref=$(BREAKING_AGAINST),subdir=protos"

bench: proto
	$(PY) -m bench

# Build outputs only: the venv and the generated code. The suite's data is kept.
clean:
	rm -rf $(VENV) gen *.egg-info wire/*.egg-info clients/python/*.egg-info

# The suite's data: the embedded SQLite files (users, chats, messages) under LLMCHATLINKER_DATA_DIR.
DATA_DIR := $(or $(LLMCHATLINKER_DATA_DIR),var/data)
clean-data:
	rm -rf "$(DATA_DIR)"

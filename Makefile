# LLMChatLinker: `make run` starts the suite, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROTOS := $(shell find protos -name '*.proto')

.PHONY: all venv proto run test lint bench clean clean-data

all: proto

# The venv is rebuilt when the dependency lists change. The .pth file puts the
# generated code, the services and the client package on the venv's path.
$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	printf '%s\n' "$(CURDIR)" "$(CURDIR)/gen" "$(CURDIR)/clients/python" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/llmchatlinker-suite.pth"
	touch $@

venv: $(VENV)/.stamp

gen/.stamp: $(VENV)/.stamp $(PROTOS) tools/protogen.py
	$(PY) -m tools.protogen gen
	touch $@

proto: gen/.stamp

run: proto
	$(VENV)/bin/llmchatlinker up $(ARGS)

test: proto
	$(PY) -m pytest

lint: proto
	cd protos && npx --yes @bufbuild/buf@1.75.0 lint

bench: proto
	$(PY) -m bench

# Build outputs only: the venv and the generated code. The suite's data is kept.
clean:
	rm -rf $(VENV) gen

# The suite's data: the embedded SQLite files (users, chats, messages) under LLMCHATLINKER_DATA_DIR.
DATA_DIR := $(or $(LLMCHATLINKER_DATA_DIR),var/data)
clean-data:
	rm -rf "$(DATA_DIR)"

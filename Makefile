# Everything a fresh machine needs: `make serve` runs the server, `make test` the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The official Roboflow client and supervision, for interoperability tests. Their pins (numpy<2.4,
# opencv-python, pillow<13) clash with ours, so they live in a venv of their own.
SDK_VENV := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed
SDK_REQUIREMENTS := inference-sdk==1.8.3 supervision==0.30.9

.PHONY: install serve test bench fuzz soak fixtures clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(SDK_STAMP): Makefile
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK_VENV)/bin/python -m pip install --quiet $(SDK_REQUIREMENTS)
	touch $(SDK_STAMP)

serve: $(STAMP)
	$(BIN)/visionserve serve $(ARGS)

test: $(STAMP) $(SDK_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.detect $(ARGS)

fuzz: $(STAMP)
	$(BIN)/python tools/fuzz.py --max-examples 300 $(ARGS)

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak $(ARGS)

clean:
	rm -rf $(VENV) $(SDK_VENV) .pytest_cache

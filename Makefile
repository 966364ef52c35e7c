# The two fresh-machine commands of the README:
#   make demo   set everything up, then run the main job on the offline default
#   make test   set everything up, then lint and run the test suite
VENV ?= .venv

.PHONY: setup demo test lint
setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/bin/rait demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/python -m pytest

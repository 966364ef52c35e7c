# The two fresh-machine commands of the README:
#   make demo   set everything up, then run the main job on the offline default
#   make test   set everything up, then lint and run the test suite
VENV ?= .venv

.PHONY: setup browser demo test lint
setup:
	bash scripts/setup.sh

# headless Chromium for the report's rendering test (skipped, with the reason, without one)
browser:
	bash scripts/install-browser.sh

demo: setup
	$(VENV)/bin/rait demo

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint browser
	$(VENV)/bin/python -m pytest

# The two commands the README starts with: `make demo` and `make test`. Both set up .venv from scratch if needed.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test test-deps setup lint clean screenshots

# torch==2.13.0 first: these machines serve that exact version as a CPU build from local disk, while an
# unpinned `torch` would pull the multi-GB CUDA build. The monitor itself never needs torch.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1" "setuptools>=77" wheel

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "torch==2.13.0"
	# editable_mode=strict: a link tree mypy and pytest can follow through the package-dir mapping.
	$(BIN)/python -m pip install -q --group test -e ".[demo]" --config-settings editable_mode=strict
	touch $@

# Debian's prometheus lets the exporter test scrape through a real Prometheus server (root only; the test
# says why it skips where the package cannot be had).
test-deps:
	@command -v prometheus >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && apt-get install -y -qq prometheus >/dev/null) || \
		echo "could not install prometheus: the Prometheus tests (exporter, rules, dashboard) will skip"

setup: $(VENV)/.installed
	# strict editable installs link the files that existed at install time: link new modules too.
	$(BIN)/python scripts/relink.py

demo: setup
	$(BIN)/optitop demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# from build/: the checkout's optitop/ would shadow the installed package (which maps collectors/ etc. in)
	cd build && ../$(BIN)/mypy --config-file ../pyproject.toml -p optitop

test: lint test-deps
	$(BIN)/pytest

screenshots: setup
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info

# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtualenv, install the Python dependencies, and install the
# pinned Claude Code CLI with `claude-pool install-cli` (installed from a checkout,
# claude-pool keeps it in the checkout's .cache/claude-cli).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CLAUDE_STAMP := .cache/claude-cli/.ready

.PHONY: setup test lint typecheck pytest demo bench docs clean browser

setup: $(STAMP) $(CLAUDE_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(CLAUDE_STAMP): $(STAMP)
	$(VENV)/bin/claude-pool install-cli
	mkdir -p $(@D) && touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: setup browser
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The dashboard's browser test drives Debian's Chromium (never a downloaded browser build);
# it is installed here when missing and apt can, else that test says why it is skipped.
browser:
	@test -x /usr/bin/chromium || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		>/dev/null; } || echo "chromium is not installed: the dashboard's browser test will be skipped"

test: lint typecheck pytest

demo: setup
	$(VENV)/bin/claude-pool demo

bench: setup
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# docs/configuration.md is generated; a test fails when it is out of date.
docs: $(STAMP)
	$(PY) -m claude_pool.config_reference --write docs/configuration.md

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache

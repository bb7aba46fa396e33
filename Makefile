# Two entry points: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: demo test lint clean

$(BIN)/stylelab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,all,browser]"  # all = fast, ray, video, web; browser = playwright (drives Debian's chromium)
	touch $@

demo: $(BIN)/stylelab
	$(BIN)/python -m stylelab.samples out
	$(BIN)/stylelab run out/demo_content.png out/demo_style.png -o out/demo.png --size 256 --steps 100
	@echo "demo: open out/demo.png (inputs: out/demo_content.png, out/demo_style.png)"

# Lint and type-check first (seconds), then the tests. Settings: [tool.ruff] and [tool.mypy] in pyproject.toml.
# `ruff format` is not enforced yet: the code base was never formatted by it, and reformatting every file at once
# would collide with every open branch.
lint: $(BIN)/stylelab
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache

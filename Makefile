# air_std: every target a user or CI needs. `make test` is the command README and .ci/run use.
PYTHON ?= python3
VENV ?= .venv
PYZ ?= air_std.pyz
PYTEST_ARGS ?=

.PHONY: all pyz demo test venv clean

all: pyz

# One recipe builds the zipapp, for users, the demo and the tests alike.
pyz:
	@stage=$$(mktemp -d) && \
	cp -r air_std "$$stage/" && \
	find "$$stage" -name __pycache__ -prune -exec rm -rf {} + && \
	printf 'import sys\nfrom air_std.cli import main\nsys.exit(main())\n' > "$$stage/__main__.py" && \
	$(PYTHON) -m zipapp "$$stage" -o "$(PYZ)" -p '/usr/bin/env python3' && \
	rm -rf "$$stage" && echo "built $(PYZ)"

demo: pyz
	cd examples/hello && exec $(PYTHON) ../../$(PYZ)

$(VENV)/bin/pytest:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check pytest hypothesis

venv: $(VENV)/bin/pytest

test: venv
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(PYZ) build dist *.egg-info .pytest_cache

# air_std: every target a user or CI needs. `make test` is the command README and .ci/run use.
PYTHON ?= python3
VENV ?= .venv
PYZ ?= air_std.pyz
PYTEST_ARGS ?=

.PHONY: all pyz demo test venv clean

all: pyz

# One recipe builds the zipapp, for users, the demo and the tests alike. Legacy
# .pyc files (compileall -b) sit beside the sources: zipimport uses them on the
# interpreter that built the pyz (start-up is shorter, and so is the window where
# a Ctrl-C finds nothing set up), and falls back to the sources on any other.
# -d: tracebacks then name air_std.pyz/air_std/cli.py, not the staging directory.
pyz:
	@stage=$$(mktemp -d) && \
	cp -r air_std "$$stage/" && \
	find "$$stage" -name __pycache__ -prune -exec rm -rf {} + && \
	cp air_std/__main__.py "$$stage/__main__.py" && \
	$(PYTHON) -m compileall -q -b -d air_std.pyz "$$stage" && \
	$(PYTHON) -m zipapp "$$stage" -c -o "$(PYZ)" -p '/usr/bin/env python3' && \
	rm -rf "$$stage" && echo "built $(PYZ)"

demo: pyz
	cd examples/hello && exec $(PYTHON) ../../$(PYZ)

$(VENV)/bin/pytest:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check pytest

venv: $(VENV)/bin/pytest

test: venv
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(PYZ) build dist *.egg-info .pytest_cache

# --- every CPython from 3.8 to 3.13 that pyenv has here (the supported range) ---
MATRIX_VERSIONS ?= 3.8 3.9 3.10 3.11 3.12 3.13
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
UNIT_TESTS ?= -m "not e2e"

.PHONY: test-matrix stress bench bench-peers fuzz
BENCH_ARGS ?=

# Benchmarks: ratios against a baseline measured in the same run (see README "Performance").
bench: pyz
	@mkdir -p bench/results
	$(PYTHON) bench/bench_startup.py $(BENCH_ARGS) | tee bench/results/startup.md
	$(PYTHON) bench/bench_watcher.py $(BENCH_ARGS) | tee bench/results/watcher.md
	$(PYTHON) bench/bench_proxy.py $(BENCH_ARGS) | tee bench/results/proxy.md
	$(PYTHON) bench/bench_build_output.py $(BENCH_ARGS) | tee bench/results/build_output.md
	@if command -v chromium >/dev/null 2>&1; then $(PYTHON) bench/bench_browser.py $(BENCH_ARGS) | tee bench/results/browser.md; \
	 else echo "bench_browser: skipped (no chromium; apt-get install chromium)"; fi

# air_std against watchfiles, watchmedo and nodemon (installs them in a throwaway venv/npm prefix; ~17 min)
bench-peers: pyz
	@mkdir -p bench/results
	$(PYTHON) bench/bench_peers.py $(BENCH_ARGS) | tee bench/results/peers.md

# The config fuzzer at scale: FUZZ_CASES mutated corpus configs from a fresh seed
# (printed; AIR_FUZZ_SEED=S make fuzz replays a run), on both TOML paths and
# through the real CLI. `make test` runs 300 cases from a fixed seed.
FUZZ_CASES ?= 20000
fuzz: venv
	@seed=$${AIR_FUZZ_SEED:-$$(date +%s)}; echo "config fuzzer: $(FUZZ_CASES) cases, AIR_FUZZ_SEED=$$seed"; \
	 AIR_REQUIRE_CORPUS=1 AIR_FUZZ_SEED=$$seed AIR_FUZZ_CASES=$(FUZZ_CASES) \
	 $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_config_fuzz.py

# The shutdown stress test, many more runs than `make test` does.
AIR_STRESS_RUNS ?= 200
stress: venv
	AIR_STRESS_RUNS=$(AIR_STRESS_RUNS) $(VENV)/bin/python -m pytest -q tests/test_proxy_shutdown.py tests/test_broadcast.py
test-matrix:
	@oldest=$$(ls -d $(PYENV_ROOT)/versions/3.8* 2>/dev/null | sort -V | tail -1); \
	 builder=$${oldest:+$$oldest/bin/python}; \
	 $(MAKE) -s pyz PYTHON=$${builder:-$(PYTHON)} || exit 1; \
	 missing=""; failed=""; \
	 for v in $(MATRIX_VERSIONS); do \
	   dir=$$(ls -d $(PYENV_ROOT)/versions/$$v.* 2>/dev/null | sort -V | tail -1); \
	   if [ -z "$$dir" ]; then missing="$$missing $$v"; continue; fi; \
	   py=$$dir/bin/python; venv=.venvs/py$$v; \
	   echo "== Python $$v ($$py)"; \
	   [ -x $$venv/bin/pytest ] || { $$py -m venv $$venv && $$venv/bin/pip install -q --disable-pip-version-check pytest; } || { failed="$$failed $$v(venv)"; continue; }; \
	   $$venv/bin/python -m pytest -q -p no:cacheprovider $(UNIT_TESTS) || failed="$$failed $$v(unit)"; \
	   $$py tests/smoke_pyz.py $(PYZ) || failed="$$failed $$v(smoke)"; \
	 done; \
	 [ -z "$$missing" ] || echo "test-matrix: interpreters MISSING here:$$missing"; \
	 if [ -n "$$failed" ]; then echo "test-matrix: FAILED:$$failed"; exit 1; fi; \
	 echo "test-matrix: all present interpreters passed"

#!/bin/sh
# A CI smoke run of examples/hello with air_std.pyz: build (a syntax check),
# start the app, wait until /health answers, stop, and fail the job unless
# the app was ready. Run from the repository root after `make pyz`:
#   sh examples/ci/smoke.sh
# PORT picks the app's port (default 8080); the example's proxy is turned off
# here, as a smoke run needs no browser.
set -eu
port="${PORT:-8080}"
cd "$(dirname "$0")/../hello"
PORT="$port" exec "${PYTHON:-python3}" ../../air_std.pyz --once --json \
  --proxy.enabled false --proxy.app_port "$port" \
  --ready-url "http://127.0.0.1:$port/health" --ready-timeout 60

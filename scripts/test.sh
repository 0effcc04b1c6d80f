#!/usr/bin/env bash
# The test suite: builds the host and every plugin (the end-to-end tests run the built
# binaries), runs every test in the workspace, then the Python reader's and the MLflow export's
# pytest suite (python/tests) against those binaries, and closes with one line of totals.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
source scripts/python-env.sh
if [ ! -x "$PYTHON_ENV/bin/python" ]; then
    echo "no Python test environment at $PYTHON_ENV: run scripts/setup.sh" >&2
    exit 1
fi
# The package as a user installs it (pip install ./python), then its tests.
"$PYTHON_ENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation --force-reinstall ./python
"$PYTHON_ENV/bin/python" -m pytest python/tests -q -p no:cacheprovider 2>&1 | tee -a "$log" || status=$?
# cargo prints one "test result" line per test binary, the last often a doctest run of 0
# tests; pytest one line of totals ("12 passed, 1 failed in 30.2s"). This totals them all.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     !/^test result:/ && / in [0-9.]+s/ && /(passed|failed|error)/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

#!/usr/bin/env bash
# The test suite: builds the host and every plugin (the end-to-end tests run the built
# binaries), then runs every test in the workspace and closes with one line of totals.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# cargo prints one "test result" line per test binary, the last often a doctest run of 0
# tests; this totals them all.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"

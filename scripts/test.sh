#!/usr/bin/env bash
# The test suite: builds the host and every plugin (the end-to-end tests run the built
# binaries), then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace
cargo test --workspace

#!/usr/bin/env bash
# Benchmarks: builds host, plugins and the bench programs in release, then prints figures.
# usage: scripts/bench.sh [overhead|decode|accuracy|sha256|provenance|queries|writers|store|sweep|all] [--runs N] [--backend sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
target/release/bench "$@"

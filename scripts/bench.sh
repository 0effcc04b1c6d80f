#!/usr/bin/env bash
# Benchmarks: builds host, plugins and the bench programs in release, then prints figures.
# usage: scripts/bench.sh [overhead|decode|accuracy|sha256|provenance|queries|writers|ui|store|sweep|slurm|all] [--runs N] [--backend sqlite|postgres]
# (`slurm` starts a one-node Slurm in target/bench-slurm: root and scripts/setup.sh's packages; 1 run unless --runs;
# `all` runs every benchmark, Slurm's last)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
target/release/bench "$@"

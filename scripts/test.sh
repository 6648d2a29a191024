#!/usr/bin/env bash
# Create the environment on a bare machine (Python packages, Chromium for the browser tests) and run
# the whole test suite. Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh test

if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing Chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi

# The default base model is fetched once into a cache shared by test runs.
export BRANDVOICE_HOME="${BRANDVOICE_HOME:-$PWD/.cache/brandvoice-home}"
mkdir -p artifacts
exec python -m pytest -q -p no:cacheprovider --durations=15 "$@"

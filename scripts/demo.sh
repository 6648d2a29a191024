#!/usr/bin/env bash
# One command on a fresh machine: environment, default base model, the demo brand prepared,
# trained with the quick preset, and the browser app launched with the comparison ready.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh

export BRANDVOICE_WORKSPACE="${BRANDVOICE_WORKSPACE:-$PWD/.demo-workspace}"
BRAND="Kettlebird"

echo "==> fetching the default base model (once)"
brandvoice model fetch

echo "==> preparing the demo brand from data/kettlebird/"
brandvoice prepare --brand "$BRAND" \
  --conversations data/kettlebird/conversations.jsonl \
  --style-guide data/kettlebird/style_guide.md

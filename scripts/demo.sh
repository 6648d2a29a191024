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

# A finished demo run is reused on later launches (delete .demo-workspace/ to start over).
if python - "$BRAND" <<'PY'
import sys
from chatbot.runs.adapters import latest_adapter_run
from chatbot.errors import BrandVoiceError
from chatbot.workspace import Workspace
try:
    run = latest_adapter_run(Workspace.open(None), sys.argv[1])
except BrandVoiceError:
    sys.exit(1)
print(f"==> reusing finished run {run.id}")
PY
then :; else
  echo "==> training the demo brand with the quick preset (the time it takes here is estimated below)"
  brandvoice train --brand "$BRAND" --preset quick
fi

echo "==> launching the app: open the URL below; the Compare tab has the tuned model ready"
exec brandvoice ui --host "${HOST:-127.0.0.1}" --port "${PORT:-7860}"

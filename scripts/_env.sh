# Sourced by demo.sh and test.sh: create .venv on a bare machine and install the project into it.
# Usage: source scripts/_env.sh [extras]   (extras e.g. "test")
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
EXTRAS="${1:-}"

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "brandvoice: Python 3.10+ is needed; installing it with apt-get." >&2
  apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment in $VENV"
  "$PY" -m venv "$VENV" || {
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && "$PY" -m venv "$VENV"; }
fi
VPY="$VENV/bin/python"

# Re-install only when the project's requirements changed since the last install.
STAMP="$VENV/.brandvoice-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_env.sh" | sha256sum | cut -c1-16)-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "==> installing brandvoice and its dependencies (first run takes a few minutes)"
  "$VPY" -m pip install -q --upgrade pip
  if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
    # A bare `torch` requirement pulls a multi-GB CUDA build; without an NVIDIA GPU take the CPU one.
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      "$VPY" -m pip install -q torch
    else
      "$VPY" -m pip install -q torch==2.13.0 \
        || "$VPY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
  spec="$ROOT"
  [ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
  "$VPY" -m pip install -q -e "$spec"
  echo "$WANT" > "$STAMP"
fi
# Training on CPU runs ~20% faster and peaks ~0.4 GB lower with TCMalloc than with glibc's malloc
# (scripts/bench_train.py); the training worker preloads it when present. Optional: skipped when
# apt-get is unavailable or not permitted.
if ! ls /usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing TCMalloc (faster CPU training)"
  { apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq libtcmalloc-minimal4; } >/dev/null 2>&1; } \
    || echo "    (not installed; training uses the default allocator)"
fi
export PATH="$VENV/bin:$PATH"
# Nothing in this product may reach a model hub at run time.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}"
export TOKENIZERS_PARALLELISM=false

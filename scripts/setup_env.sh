#!/usr/bin/env bash
# Create (or reuse) .venv and install ret2-plugin with the given extras. Sourced by demo.sh / test.sh.
# torch is pinned (==2.13.0) in pyproject.toml and so installed in the same pip command as the rest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-all}"
PYTHON="${PYTHON:-python3}"
VENV="${RET2_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.ret2-installed-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  # CLIP's BPE vocabulary (MIT) ships in the open-clip-torch wheel; --no-deps keeps torchvision out.
  "$VENV/bin/python" -m pip install -q --no-deps "open-clip-torch==3.3.0"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export HAYSTACK_TELEMETRY_ENABLED=False
export TOKENIZERS_PARALLELISM=false

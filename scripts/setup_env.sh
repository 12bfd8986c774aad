#!/usr/bin/env bash
# Create (or reuse) .venv and install ret2-plugin with the given extras. Sourced by demo.sh / test.sh.
# pyproject.toml holds version RANGES; constraints.txt the exact known-good set, applied here with `-c`.
# torch is named in the same pip command (its version from constraints.txt): a separate `pip install
# torch` would resolve on its own and could pull a different torch / CUDA stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-all}"
PYTHON="${PYTHON:-python3}"
VENV="${RET2_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.ret2-installed-$EXTRAS"
CONSTRAINTS="${RET2_CONSTRAINTS:-$ROOT/constraints.txt}"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "$ROOT/setup.py" -nt "$STAMP" ] \
   || [ "$CONSTRAINTS" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e "$ROOT[$EXTRAS]" torch
  # CLIP's BPE vocabulary (MIT) ships in the open-clip-torch wheel; --no-deps keeps torchvision out.
  "$VENV/bin/python" -m pip install -q --no-deps -c "$CONSTRAINTS" open-clip-torch
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export HAYSTACK_TELEMETRY_ENABLED=False
export TOKENIZERS_PARALLELISM=false

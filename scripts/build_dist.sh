#!/usr/bin/env bash
# Build the sdist and the wheel (python -m build, isolated) into dist/ and check their metadata with
# twine. The wheel carries the example corpus as package data (tests/packaging installs and runs it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh" release
cd "$ROOT"
OUT="${1:-$ROOT/dist}"
rm -rf "$OUT"
LOG="$(mktemp)"
python -m build --outdir "$OUT" . > "$LOG" 2>&1 || { tail -50 "$LOG"; rm -f "$LOG"; exit 1; }
rm -f "$LOG"
twine check --strict "$OUT"/*
ls -l "$OUT"

#!/usr/bin/env bash
# Lint, format check and type check, configured in pyproject.toml: ruff (lint + format) over the
# repository, mypy over the public API ([tool.mypy] files). Fix locally with
# `ruff check --fix . && ruff format .`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh" lint
cd "$ROOT"
status=0
ruff check . || status=1
ruff format --check . || status=1
mypy || status=1
exit "$status"

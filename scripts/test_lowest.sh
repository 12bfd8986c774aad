#!/usr/bin/env bash
# The lowest-versions job: every direct dependency at the FLOOR of its range in pyproject.toml
# (scripts/lowest_constraints.py), installed in a venv of its own outside the repository, then the unit
# tests (`-m unit`). Proves the ranges users get are tested, not guessed. Arguments go to pytest.
# The venv is reused while the floors do not change (RET2_LOWEST_VENV to place it elsewhere).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${RET2_LOWEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ret2-plugin/venv-lowest}"
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
WANTED="$VENV/lowest-constraints.txt"
"$VENV/bin/python" "$ROOT/scripts/lowest_constraints.py" dev > "$WANTED.new"
if ! cmp -s "$WANTED.new" "$WANTED" || [ "$ROOT/setup.py" -nt "$WANTED" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch in the same command, its version from the floors (never a separate resolution).
  "$VENV/bin/python" -m pip install --progress-bar off -c "$WANTED.new" -e "$ROOT[dev]" torch
  "$VENV/bin/python" -m pip install -q --no-deps -c "$ROOT/constraints.txt" open-clip-torch
  mv "$WANTED.new" "$WANTED"
fi
rm -f "$WANTED.new"
# What was tested: the floors must be what is installed (a floor pip could not honour is an error).
"$VENV/bin/python" - "$WANTED" <<'PY'
import importlib.metadata as md, re, sys
bad = []
for line in open(sys.argv[1]):
    if line.strip() and not line.startswith("#"):
        name, want = line.strip().split("==")
        have = md.version(name)
        pad = lambda v: tuple(int(x) for x in re.findall(r"\d+", v)) + (0,) * 4
        print(f"  {name}=={have}")
        if pad(have)[:4] != pad(want)[:4]:
            bad.append(f"{name}: floor {want}, installed {have}")
if bad:
    sys.exit("lowest-versions venv does not hold the floors: " + "; ".join(bad))
PY
cd "$ROOT"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HAYSTACK_TELEMETRY_ENABLED=False TOKENIZERS_PARALLELISM=false
set +e
"$VENV/bin/python" -m pytest -m unit -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then rc=0; fi  # an empty selection (e.g. -k that matches nothing) is not a failure
exit "$rc"

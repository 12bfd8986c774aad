#!/usr/bin/env bash
# Install the dev extras and run the test suite. The integration tests start a real single-node
# Elasticsearch 8.19 (downloaded once from Maven Central, cached in ~/.cache/ret2-plugin) and stop it.
# With no arguments: every test but the `slow` ones. Arguments go to pytest (e.g. `-m slow`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh" dev
cd "$ROOT"
if [ "$#" -eq 0 ]; then
  set -- -m "not slow"
fi
set +e
python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when the selection holds no test: not a failure of the suite.
if [ "$rc" -eq 5 ]; then rc=0; fi
exit "$rc"

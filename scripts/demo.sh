#!/usr/bin/env bash
# The main job on a fresh machine: install, then run the offline demo (starter model + FAISS).
# Extra arguments go to `ret2 demo` (e.g. --quick, --model DIR_OR_HUB_ID, --out DIR).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" all
exec ret2 demo "$@"

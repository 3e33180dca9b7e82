#!/usr/bin/env bash
# The demo: a local Synapse (SQLite, in .demo/) with the module, and a mail catcher
# that prints each mail and shows them on a local page. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh
exec python scripts/demo.py "$@"

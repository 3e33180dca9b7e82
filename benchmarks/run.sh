#!/usr/bin/env bash
# The benchmarks in one command (see benchmarks/run.py and benchmarks/RESULTS.md):
#   bash benchmarks/run.sh [--quick] [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    echo "no .venv: run scripts/test.sh once (it creates the venv)" >&2
    exit 1
fi
exec .venv/bin/python benchmarks/run.py "$@"

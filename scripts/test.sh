#!/usr/bin/env bash
# The project's test command: system packages (if missing), venv, lint, types, tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k smtp --synapse-db sqlite
# Without arguments, the integration tests then run again on the oldest Synapse the
# module supports, in .venv-oldest (OLDEST_SYNAPSE=skip leaves that out).
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL (tests run their own private cluster), Chromium for browser tests, and
# redis-server + nginx for the workers deployment (tests start private instances), and
# caddy to validate the Caddyfile in contrib/.
missing=()
for pkg in postgresql chromium chromium-driver redis-server nginx caddy; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' own services (PostgreSQL, redis, nginx, caddy) from starting: tests
    # start their own.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi

# shellcheck source=scripts/_venv.sh
source scripts/_venv.sh

lint_paths=()
for p in synapse_email_gate tests benchmarks; do [ -e "$p" ] && lint_paths+=("$p"); done
echo "==> ruff check ${lint_paths[*]}"
ruff check "${lint_paths[@]}"
echo "==> ruff format --check synapse_email_gate tests"
ruff format --check synapse_email_gate tests
echo "==> mypy"
mypy
echo "==> lint-imports (the layers: pyproject.toml [tool.importlinter])"
lint-imports --no-logo --no-cache
echo "==> vulture (dead code; used-from-outside names in vulture_whitelist.py)"
vulture
echo "==> pytest"
rm -rf test-artifacts
# A hung test must not eat CI's whole budget: per-test timeout when pytest-timeout is there.
timeout_args=()
python -c 'import pytest_timeout' 2>/dev/null && timeout_args=(--timeout=600)
# --dist loadscope: a test module (or class) stays on one worker, so its module-scoped
# Synapse servers start once and its tests run in order.
if [ $# -gt 0 ] || [ "${OLDEST_SYNAPSE:-}" = skip ]; then
    exec pytest -n 2 --dist loadscope "${timeout_args[@]}" "$@"
fi
status=0
pytest -n 2 --dist loadscope "${timeout_args[@]}" || status=$?

# The oldest Synapse the module supports (README.md, docs/deployment.md, setup.cfg): the
# tests that start Synapse run on it too, on SQLite and PostgreSQL. The harness starts
# Synapse with the Python that runs pytest, so pytest runs inside .venv-oldest.
OLDEST_SYNAPSE="${OLDEST_SYNAPSE:-1.136.0}"
echo "==> pytest tests/integration on Synapse $OLDEST_SYNAPSE (.venv-oldest)"
VENV=.venv-oldest SYNAPSE_PIN="matrix-synapse==$OLDEST_SYNAPSE" \
    SYNAPSE_CONSTRAINTS=scripts/oldest-constraints.txt source scripts/_venv.sh
python -c "import importlib.metadata as m, sys
sys.exit(m.version('matrix-synapse') != '$OLDEST_SYNAPSE')" \
    || { echo "Synapse in .venv-oldest is not $OLDEST_SYNAPSE" >&2; exit 1; }
pytest -n 2 --dist loadscope "${timeout_args[@]}" tests/integration || status=$?
exit "$status"

#!/usr/bin/env bash
# The project's test command: system packages (if missing), venv, lint, types, tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k smtp --synapse-db sqlite
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL (tests run their own private cluster), Chromium for browser tests, and
# redis-server + nginx for the workers deployment (tests start private instances).
missing=()
for pkg in postgresql chromium chromium-driver redis-server nginx; do
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep the packages' own services (PostgreSQL, redis, nginx) from starting: tests
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
exec pytest -n 2 --dist loadscope "${timeout_args[@]}" "$@"

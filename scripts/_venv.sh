# Sourced by scripts/test.sh and scripts/demo.sh: create/reuse .venv and install
# the project with its test extras. Skips pip when setup.cfg/pyproject.toml are
# unchanged since the last successful install.
VENV="${VENV:-.venv}"
PYTHON_BIN="$(command -v python3.11 || command -v python3)"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV with $PYTHON_BIN"
    "$PYTHON_BIN" -m venv "$VENV"
fi
stamp="$VENV/.email-gate-install"
want="$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
    || ! "$VENV/bin/python" -c 'import synapse_email_gate, pytest, aiosmtpd' 2>/dev/null; then
    echo "==> pip install -e '.[test]'"
    # pip's build-backend chatter (and "Location ... is ignored") is noise: show it on failure only
    pip_log="$(mktemp)"
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' \
        >"$pip_log" 2>&1; then
        grep -v 'Location .* is ignored' "$pip_log" >&2
        rm -f "$pip_log"
        exit 1
    fi
    rm -f "$pip_log"
    echo "$want" >"$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

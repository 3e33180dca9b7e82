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
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
        | { grep -v -e 'Location .* is ignored' -e '^$' || true; }
    echo "$want" >"$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

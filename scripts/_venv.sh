# Sourced by scripts/test.sh and scripts/demo.sh: create/reuse .venv and install
# the project with its test extras. Skips pip when setup.cfg/pyproject.toml are
# unchanged since the last successful install.
# VENV names another virtualenv; SYNAPSE_PIN (a requirement such as
# "matrix-synapse==1.136.0") and SYNAPSE_CONSTRAINTS (a pip constraints file) install
# a particular Synapse into it: scripts/test.sh makes .venv-oldest that way.
VENV="${VENV:-.venv}"
pin_args=()
[ -n "${SYNAPSE_PIN:-}" ] && pin_args+=("$SYNAPSE_PIN")
[ -n "${SYNAPSE_CONSTRAINTS:-}" ] && pin_args+=(-c "$SYNAPSE_CONSTRAINTS")
PYTHON_BIN="$(command -v python3.11 || command -v python3)"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV with $PYTHON_BIN"
    "$PYTHON_BIN" -m venv "$VENV"
fi
stamp="$VENV/.email-gate-install"
want="$( (cat setup.cfg pyproject.toml ${SYNAPSE_CONSTRAINTS:+"$SYNAPSE_CONSTRAINTS"}; echo "${pin_args[*]}") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] \
    || ! "$VENV/bin/python" -c 'import synapse_email_gate, pytest, aiosmtpd' 2>/dev/null; then
    echo "==> pip install -e '.[test]'${pin_args[*]:+ ${pin_args[*]}} into $VENV"
    # pip's build-backend chatter (and "Location ... is ignored") is noise: show it on failure only
    pip_log="$(mktemp)"
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' \
        "${pin_args[@]}" >"$pip_log" 2>&1; then
        grep -v 'Location .* is ignored' "$pip_log" >&2
        rm -f "$pip_log"
        exit 1
    fi
    rm -f "$pip_log"
    echo "$want" >"$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

"""Registration tokens kept out of Synapse's own log lines.

Synapse logs every completed interactive-auth flow at INFO, with the stages'
results: `Auth completed with creds: {'m.login.registration_token': '<token>'}`
(handlers/auth.py). For a token of ours that line is written while the account
is still being made, and an invite token with several uses stays usable after
it. A filter on that logger replaces the token with `<redacted>`; the rest of
the line is kept.
"""

from __future__ import annotations

import logging

TOKEN_STAGE = "m.login.registration_token"  # noqa: S105 - a stage name
REDACTED = "<redacted>"
# The logger of synapse/handlers/auth.py.
AUTH_LOGGER = "synapse.handlers.auth"


class RegistrationTokenFilter(logging.Filter):
    """Redacts the registration-token stage's result in a record's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_has_token(arg) for arg in args):
            record.args = tuple(_redacted(arg) for arg in args)
        return True


def _has_token(value: object) -> bool:
    return isinstance(value, dict) and TOKEN_STAGE in value


def _redacted(value: object) -> object:
    if not _has_token(value):
        return value
    assert isinstance(value, dict)
    return {**value, TOKEN_STAGE: REDACTED}


def install() -> None:
    """Attach the filter once per process (each EmailGate instance calls this)."""
    logger = logging.getLogger(AUTH_LOGGER)
    if not any(isinstance(f, RegistrationTokenFilter) for f in logger.filters):
        logger.addFilter(RegistrationTokenFilter())

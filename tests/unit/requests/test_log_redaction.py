"""requests/log_redaction.py: Synapse's "Auth completed" line keeps everything but the token."""

from __future__ import annotations

import logging

import pytest

from synapse_email_gate.requests import log_redaction


def test_the_token_in_synapses_auth_completed_line_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_redaction.install()
    log_redaction.install()  # once per process, however many instances
    logger = logging.getLogger(log_redaction.AUTH_LOGGER)
    assert sum(isinstance(f, log_redaction.RegistrationTokenFilter) for f in logger.filters) == 1
    creds = {"m.login.registration_token": "S3CRETTOKEN", "m.login.dummy": True}
    with caplog.at_level(logging.INFO, logger=log_redaction.AUTH_LOGGER):
        # The call in synapse/handlers/auth.py, as it is written there.
        logger.info(
            "Auth completed with creds: %r. Client dict has keys: %r",
            creds,
            ["username", "password"],
        )
        logger.info("Unrelated %s line", "other")
    text = caplog.text
    assert "S3CRETTOKEN" not in text
    assert "'m.login.registration_token': '<redacted>'" in text
    assert "'m.login.dummy': True" in text and "['username', 'password']" in text
    assert "Unrelated other line" in text
    assert creds["m.login.registration_token"] == "S3CRETTOKEN"  # the caller's dict is untouched

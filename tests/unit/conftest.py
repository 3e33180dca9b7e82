"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from synapse_email_gate.config.i18n import Translations


@pytest.fixture(scope="module")
def translations() -> Translations:
    """The shipped languages (en, de, fr)."""
    return Translations.load()

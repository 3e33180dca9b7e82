"""The pages' config (config/pages.py): each bad value refused naming its key, the
defaults and values."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.gate import GateConfig


@pytest.mark.parametrize(
    ("config", "error"),
    [
        ({"branding": {"logo_url": "https://cdn.example.org/logo.png"}}, r"^branding\.logo_url: "),
        ({"branding": {"consent_required": True}}, r"^branding\.consent_required: needs"),
        ({"branding": {"terms_url": "javascript:alert(1)"}}, r"^branding\.terms_url: "),
        ({"branding": {"intro": {"english": "hi"}}}, r"^branding\.intro: "),
        ({"branding": {"colour": "red"}}, r"^branding\.colour: unknown key"),
        ({"clients": [{"name": "X", "url": "https://x/{token}"}]}, r"^clients: item 0: url uses"),
        ({"clients": [{"name": "X", "url": "javascript:1"}]}, r"^clients: item 0: url"),
        ({"clients": {"name": "X"}}, r"^clients: expected a list"),
        ({"password": {"min_score": 5}}, r"^password\.min_score: must be at most 4"),
        ({"password": {"min_length": 0}}, r"^password\.min_length: must be at least 1"),
        ({"after_registration": {"join_rooms": ["lobby"]}}, r"^after_registration\.join_rooms: "),
        (
            {"after_registration": {"welcome": {"message": "Hi"}}},
            r"^after_registration\.welcome\.sender: required",
        ),
        (
            {"after_registration": {"welcome": {"sender": "@w:example.org"}}},
            r"^after_registration\.welcome\.message: required",
        ),
        ({"web_registration": {"client_api_url": "ftp://x"}}, r"^web_registration\.client_api_url"),
    ],
)
def test_bad_page_settings_are_refused_naming_the_key(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        GateConfig.parse(config)


def test_page_settings_defaults_and_values() -> None:
    defaults = GateConfig.parse({}).pages
    assert defaults.branding.consent_required is False
    assert [c.name for c in defaults.clients] == ["Element"]
    assert (defaults.password.min_length, defaults.password.min_score) == (10, 3)
    assert defaults.web_registration.enabled is True
    pages = GateConfig.parse(
        {
            "branding": {"privacy_url": "/privacy", "intro": "Hello"},
            "clients": [],
            "web_registration": {"client_api_url": "http://127.0.0.1:8008"},
        }
    ).pages
    assert pages.branding.consent_required is True
    assert pages.branding.intro_in("de", "en") == ("Hello", None)
    assert pages.clients == ()
    assert pages.web_registration.client_api_url == "http://127.0.0.1:8008/"

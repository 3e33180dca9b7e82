"""The `challenge` section of the module's config (config/gate.py ChallengeConfig),
through EmailGate.parse_config as Synapse calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synapse_email_gate.config.gate import ChallengeConfig


def _parse(raw: dict[str, Any]) -> ChallengeConfig:
    from synapse_email_gate import EmailGate

    return EmailGate.parse_config({"challenge": raw}).challenge


def test_config_defaults_and_adaptive_keys(tmp_path: Path) -> None:
    default = _parse({})
    assert default == ChallengeConfig()
    assert default.difficulty == 22
    assert default.max_increase == 3 and default.busy_threshold == 20
    assert default.busy_window_ms == 60_000 and default.secret is None
    secret_file = tmp_path / "secret"
    secret_file.write_text("0123456789abcdef0123\n")
    parsed = _parse(
        {
            "enabled": True,
            "difficulty": 30,
            "secret_file": str(secret_file),
            "adaptive": {"threshold": 5, "window": "30s"},
        }
    )
    assert parsed.secret == "0123456789abcdef0123"
    assert parsed.max_increase == 2  # capped at 32 bits
    assert (parsed.busy_threshold, parsed.busy_window_ms) == (5, 30_000)
    assert "0123456789" not in repr(parsed)


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"secret": "short"}, "challenge.secret", "at least 16"),
        ({"secret": "x" * 16, "secret_file": "/nope"}, "challenge.secret_file", "either"),
        ({"secret_file": "/nonexistent/secret"}, "challenge.secret_file", "cannot read"),
        (
            {"difficulty": 30, "adaptive": {"max_increase": 3}},
            "challenge.adaptive.max_increase",
            "at most 2",
        ),
        ({"adaptive": {"threshold": 0}}, "challenge.adaptive.threshold", "at least 1"),
        ({"adaptive": {"window": "1s"}}, "challenge.adaptive.window", "at least 10s"),
        ({"adaptive": {"treshold": 3}}, "challenge.adaptive.treshold", "threshold"),
        ({"adaptive": True}, "challenge.adaptive", "mapping"),
    ],
)
def test_bad_challenge_config_names_the_key(raw: dict[str, Any], key: str, words: str) -> None:
    from synapse.module_api.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        _parse(raw)
    message = str(info.value.msg)
    assert message.startswith(f"email_gate: {key}:"), message
    assert words in message, message

"""The probation config: off by default, its keys, and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate import EmailGate
from synapse_email_gate.config.probation import ProbationConfig


def parse(raw: dict[str, Any]) -> ProbationConfig:
    return EmailGate.parse_config({"probation": raw}).probation


def error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    return str(info.value)


def test_off_by_default() -> None:
    config = EmailGate.parse_config({}).probation
    assert config == ProbationConfig()
    assert not config.enabled
    assert not parse({"duration": 0}).enabled


def test_every_key() -> None:
    config = parse({"duration": "3d", "messages_per_minute": 4, "refresh_interval": "10s"})
    assert config == ProbationConfig(
        duration_ms=3 * 86_400_000, messages_per_minute=4, refresh_interval_ms=10_000
    )
    assert config.enabled


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"duration": "soon"}, "probation.duration"),
        ({"messages_per_minute": -1}, "probation.messages_per_minute"),
        ({"refresh_interval": "100ms"}, "probation.refresh_interval"),
        ({"refresh_interval": "1h"}, "probation.refresh_interval"),
        ({"durations": "3d"}, "probation.durations"),
    ],
)
def test_errors_name_the_key(raw: dict[str, Any], key: str) -> None:
    assert key in error(raw)

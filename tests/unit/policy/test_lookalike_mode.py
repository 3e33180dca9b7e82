"""`banned_usernames_lookalikes` as a policy key: read from either layer, the later
one winning, and a bad value refused naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate import EmailGate
from synapse_email_gate.config.policy_lists import BanEntry, PolicyLists
from synapse_email_gate.config.reader import Section
from synapse_email_gate.policy.compiled import Policy


def _policy_lists(raw: dict[str, Any]) -> PolicyLists:
    section = Section(raw, "")
    lists = PolicyLists.from_section(section)
    section.finish()
    return lists


def test_the_mode_is_a_policy_key_and_later_layers_win() -> None:
    home = _policy_lists({"banned_usernames": ["^root$"], "banned_usernames_lookalikes": "off"})
    assert home.banned_usernames_lookalikes == "off"
    assert not Policy.build([home], 0).username_ban("r00t")
    file_layer = _policy_lists({"banned_usernames_lookalikes": "literal"})
    assert Policy.build([home, file_layer], 0).username_ban("r00t") == "^root$"
    # YAML reads a bare `off` as false.
    assert _policy_lists({"banned_usernames_lookalikes": False}).banned_usernames_lookalikes == (
        "off"
    )
    default = PolicyLists(banned_usernames=(BanEntry("^root$"),))
    assert default.banned_usernames_lookalikes is None
    assert Policy.build([default], 0).username_ban("r00t") == "^root$"  # on by default


@pytest.mark.parametrize("value", ["some", "", True, 3, ["literal"]])
def test_a_bad_mode_is_a_config_error_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        EmailGate.parse_config({"banned_usernames_lookalikes": value})
    assert "banned_usernames_lookalikes" in str(caught.value)
    assert "literal, all, off" in str(caught.value)

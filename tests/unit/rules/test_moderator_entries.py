"""Moderator entries name local users only; commands from other servers are not
moderators' (pure rules)."""

from __future__ import annotations

import pytest
from synapse.module_api.errors import ConfigError

from synapse_email_gate.config.gate import GateConfig, check_moderators
from synapse_email_gate.rules.moderator_entries import (
    ModeratorRules,
    entry_problem,
    is_local_user,
    syntax_problem,
)

SERVER = "example.org"


@pytest.mark.parametrize(
    ("sender", "local"),
    [
        ("@mod:example.org", True),
        ("@ops/night:example.org", True),
        ("@mod:evil.example", False),
        ("@mod:example.org.evil.example", False),
        ("@mod:evil.example:example.org", False),  # the domain is all after the first ':'
        ("@mod:example.org:8448", False),
        ("@:example.org", False),
        ("mod:example.org", False),
        ("@mod", False),
    ],
)
def test_a_sender_is_local_only_on_exactly_this_server(sender: str, local: bool) -> None:
    assert is_local_user(sender, SERVER) is local


def test_a_server_name_with_a_port_is_compared_whole() -> None:
    assert is_local_user("@mod:localhost:8448", "localhost:8448")
    assert not is_local_user("@mod:localhost", "localhost:8448")


@pytest.mark.parametrize(
    "entry",
    [
        "@alice:example.org",
        "@ops/night:example.org",
        r"@team-.*:example\.org$",
        r"@team-.*:example\.org",
        r"(?i)@(alice|bob):example\.org$",
        r"@ops/.*\:example\.org$",
    ],
)
def test_entries_pinned_to_this_server_are_taken(entry: str) -> None:
    assert entry_problem(entry, SERVER) is None


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (".*", r"must end in :example\.org$"),
        ("@.*", r"must end in :example\.org$"),
        ("@.*:example.org$", r"must end in :example\.org$"),
        (r"@.*:example\.org\.evil$", r"must end in :example\.org$"),
        (r"@.*:example\.org\$", r"must end in :example\.org$"),
        (r".*:example\.org$", "matches every user of example.org"),
        (r"@[^:]*:example\.org$", "matches every user of example.org"),
        (r"x|.*:example\.org$", "matches every user of example.org"),
        (r"@(a)\1:example\.org$", "RE2 accepts"),
        (r"@(?=a).*:example\.org$", "RE2 accepts"),
        ("@mod:elsewhere.example", "is not a user of this server (example.org)"),
        ("", "must be a Matrix ID or a regex"),
    ],
)
def test_entries_that_could_reach_beyond_named_users_are_refused(entry: str, words: str) -> None:
    problem = entry_problem(entry, SERVER)
    assert problem is not None and words in problem, problem


def test_the_suggestion_escapes_every_special_character_of_the_server_name() -> None:
    problem = entry_problem(".*", "chat.my-server.example:8448")
    assert problem is not None
    assert r"@team-.*:chat\.my\-server\.example:8448$" in problem
    assert (
        entry_problem(r"@a.*:chat\.my-server\.example:8448$", "chat.my-server.example:8448") is None
    )


def test_a_regex_never_matches_a_user_of_another_server() -> None:
    # Stored before the rules existed, say: it matches nobody, and says why.
    rules = ModeratorRules([r"@.*", r"@team-.*:example\.org$", "@alice:example.org"], SERVER)
    assert ".*" in next(iter(rules.problems))
    assert rules.matches("@team-red:example.org") and rules.matches("@alice:example.org")
    assert not rules.matches("@team-red:evil.example")
    assert not rules.matches("@team-red:example.org:evil")
    assert not rules.matches("@bob:example.org")


def test_moderators_matched_whole_and_case_sensitively() -> None:
    rules = ModeratorRules([r"@team-.*:example\.org$"], SERVER)
    assert not rules.matches("@xteam-red:example.org")
    assert not rules.matches("@Team-red:example.org")


def test_the_config_refuses_a_regex_re2_cannot_take() -> None:
    assert syntax_problem(r"@(a)\1:example\.org$") is not None
    with pytest.raises(ConfigError) as refused:
        GateConfig.parse({"moderators": ["@a:example.org", r"@(a)\1:x$"]})
    assert str(refused.value).startswith("moderators: item 1:")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([".*"], r"moderators: item 0: the regex '.*' must end in :example\.org$"),
        (
            ["@a:example.org", "@b:other.example"],
            "moderators: item 1: '@b:other.example' is not a user of this server",
        ),
        ([r"@.*:example\.org$"], "moderators: item 0: the regex"),
    ],
)
def test_config_entries_are_checked_against_the_server_name(
    entries: list[str], message: str
) -> None:
    config = GateConfig.parse({"moderators": entries})
    with pytest.raises(ConfigError) as refused:
        check_moderators(config.moderators, SERVER)
    assert str(refused.value).startswith(message), str(refused.value)
    assert refused.value.path == ["moderators"]

"""A compiled policy remembers its username verdicts (requests vet a name twice), and
a policy with other room rules (attrs.evolve, as LivePolicy makes it) starts afresh."""

from __future__ import annotations

import attrs

from synapse_email_gate.config.policy_lists import BanEntry, PolicyLists
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.rules.policy_rules import RoomRules, parse_rule

SERVER = "test.local"


def room_rules(*entities: str) -> RoomRules:
    rules = [
        parse_rule(
            "#bans:test.local",
            "!r:test.local",
            "m.policy.rule.user",
            str(i),
            {"entity": entity, "recommendation": "m.ban", "reason": "spam"},
            "@p:x",
            "$e",
        )
        for i, entity in enumerate(entities)
    ]
    return RoomRules.compile([r for r in rules if r is not None], SERVER)


def test_verdicts_are_the_same_when_asked_again_and_new_room_rules_count_at_once() -> None:
    policy = Policy.build([PolicyLists(banned_usernames=(BanEntry("^root$"),))], 0)
    names = ["root", "r00t", "alice", "bob", "root"]
    first = [policy.username_ban(n) for n in names]
    assert first == ["^root$", "^root$", None, None, "^root$"]
    assert [policy.username_ban(n) for n in names] == first
    banned_bob = attrs.evolve(policy, room_rules=room_rules("@bob:test.local"))
    assert banned_bob.username_ban("bob") is not None
    assert banned_bob.username_ban("alice") is None
    assert policy.username_ban("bob") is None  # the old policy keeps its own verdicts


def test_many_names_keep_their_verdicts_past_the_memory_s_size() -> None:
    policy = Policy.build([PolicyLists(banned_usernames=(BanEntry("spam"),))], 0)
    names = [f"user{i}" for i in range(5000)] + [f"spam{i}" for i in range(5000)]
    verdicts = [policy.username_ban(n) for n in names]
    assert verdicts == [None] * 5000 + ["spam"] * 5000
    assert [policy.username_ban(n) for n in names] == verdicts

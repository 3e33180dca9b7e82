"""Matrix policy list rules (pure): which rules count, how globs match, what is ignored."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from synapse_email_gate.rules.policy_rules import (
    EVERYONE,
    NOT_A_USER,
    OTHER_SERVER,
    RoomRule,
    RoomRules,
    glob_regex,
    parse_rule,
)

SERVER = "test.local"


def rule(
    entity: str,
    kind: str = "m.policy.rule.user",
    recommendation: object = "m.ban",
    key: str = "k",
) -> RoomRule | None:
    content = {"entity": entity, "recommendation": recommendation, "reason": "spam"}
    return parse_rule("#bans:test.local", "!r:test.local", kind, key, content, "@p:x", "$e")


def compiled(*entities: str) -> RoomRules:
    rules = [rule(entity, key=str(i)) for i, entity in enumerate(entities)]
    return RoomRules.compile([r for r in rules if r is not None], SERVER)


def names(rules: RoomRules, localpart: str) -> list[str]:
    return [r.entity for r in rules.matching(localpart)]


def test_only_bans_of_the_user_rule_types_count() -> None:
    for kind in ("m.policy.rule.user", "m.room.rule.user", "org.matrix.mjolnir.rule.user"):
        assert rule("@a:test.local", kind=kind) is not None
    assert rule("@a:test.local", recommendation="org.matrix.mjolnir.ban") is not None
    assert rule("@a:test.local", kind="m.policy.rule.server") is None
    assert rule("@a:test.local", recommendation="m.mute") is None
    assert rule("@a:test.local", recommendation=None) is None
    assert parse_rule("#b:x", "!r:x", "m.policy.rule.user", "k", {}, "@p:x", "$e") is None
    assert rule("@" + "a" * 300 + ":test.local") is None


def test_globs_are_anchored_and_escape_everything_else() -> None:
    assert glob_regex("@a.b*:x?") == r"^@a\.b.*:x.$"
    rules = compiled(
        "@spam*:test.local", "@q?uiz:test.local", "@a.b:test.local", "@(x+)+:test.local"
    )
    assert names(rules, "spam") == names(rules, "spammer9") == ["@spam*:test.local"]
    assert names(rules, "xspam") == []
    assert names(rules, "qxuiz") == ["@q?uiz:test.local"]
    assert names(rules, "qxxuiz") == names(rules, "quiz") == []
    assert names(rules, "a.b") == ["@a.b:test.local"] and names(rules, "axb") == []
    assert names(rules, "xx") == []  # regex syntax in a glob is literal


def test_matching_ignores_case_and_lists_every_rule_in_order() -> None:
    rules = compiled("@Exact:TEST.local", "@ex*:test.local", "@exact:test.local")
    assert names(rules, "exact") == ["@Exact:TEST.local", "@ex*:test.local", "@exact:test.local"]


def test_rules_that_cannot_or_must_not_apply_here_are_kept_aside() -> None:
    rules = compiled(
        "@a:other.example", "@*:test.local", "*", "?*", "#room:test.local", "@b:test.*", "@c*"
    )
    ignored = {r.entity: why for r, why in rules.ignored}
    assert ignored == {
        "@a:other.example": OTHER_SERVER,
        "@*:test.local": EVERYONE,
        "*": EVERYONE,
        "?*": EVERYONE,
        "#room:test.local": NOT_A_USER,
    }
    assert names(rules, "b") == ["@b:test.*"]
    assert names(rules, "cee") == ["@c*"]  # the glob spans the server name
    assert names(rules, "a") == []


def test_no_rules_match_nothing() -> None:
    assert RoomRules.empty(SERVER).matching("anyone") == []
    assert compiled().first_match("anyone") is None


def test_an_entity_no_matrix_id_can_hold_is_not_a_rule() -> None:
    assert rule("@a\udc00:test.local") is None


@given(
    st.lists(
        st.sampled_from(
            [
                "@spam*:test.local",
                "@spammer:test.local",
                "@*bot:test.local",
                "@sp?m*:test.local",
                "@eve:test.local",
                "@*:other.example",
                "@s*:test.local",
                "@spam*:test.local",
            ]
        ),
        max_size=8,
    ),
    st.sampled_from(["spam", "spammer", "spambot", "eve", "alice", "sxam1", "bot"]),
)
def test_the_first_rule_is_the_first_of_all_the_matching_ones(
    entities: list[str], localpart: str
) -> None:
    rules = compiled(*entities)
    every = rules.matching(localpart)
    assert rules.first_match(localpart) == (every[0] if every else None)

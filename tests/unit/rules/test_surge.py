"""rules.surge: counting recent requests and the automatic switch, with its hold and
hysteresis; and the domain / network grouping the limits and the surge share."""

from __future__ import annotations

import attrs

from synapse_email_gate.rules.addresses import registrable_domain
from synapse_email_gate.rules.ips import network_of
from synapse_email_gate.rules.surge import (
    APPROVAL,
    CALM,
    CHALLENGE,
    EXPIRED,
    MANUAL,
    NETWORK,
    RANGE,
    Counts,
    SurgeState,
    Thresholds,
    count,
    exceeded,
    next_state,
    switched_off,
    switched_on,
)

MIN = 60_000
T = Thresholds(overall=100, per_domain=20, per_network=10, release=0.5)
NOW = 1_800_000_000_000


def step(state: SurgeState, counts: Counts, now: int = NOW) -> SurgeState | None:
    return next_state(state, counts, T, now, mode=CHALLENGE, level=26, hold_ms=10 * MIN)


def test_networks_are_the_configured_prefixes() -> None:
    assert network_of("198.51.100.77", 24, 48) == "198.51.100.0/24"
    assert network_of("2001:db8:1:2::5", 24, 48) == "2001:db8:1::/48"
    assert network_of("::ffff:203.0.113.9", 24, 48) == "203.0.113.0/24"
    assert network_of("10.1.2.3", 16, 48) == "10.1.0.0/16"
    assert network_of("not an ip", 24, 48) is None


def test_registrable_domain_groups_subdomains_and_provider_spellings() -> None:
    assert registrable_domain("a1.spam.example") == "spam.example"
    assert registrable_domain("mx.Mail.Example.co.uk") == "example.co.uk"
    assert registrable_domain("example.com.au") == "example.com.au"
    assert registrable_domain("googlemail.com") == "gmail.com"
    assert registrable_domain("example.org") == "example.org"
    assert registrable_domain("localhost") == "localhost"


def test_count_finds_the_busiest_domain_and_network() -> None:
    rows = [("198.51.100.1", "a@x.example"), ("198.51.100.2", "b@y.x.example")]
    rows += [("203.0.113.5", "c@other.example"), (None, None), ("bad", "hmac:1234")]
    counts = count(
        rows,
        lambda ip: network_of(ip, 24, 48),
        lambda a: registrable_domain(a.split("@")[1]) if "@" in a else None,
    )
    assert counts == Counts(5, ("x.example", 2), ("198.51.100.0/24", 2))


def test_count_finds_the_busiest_range_across_networks() -> None:
    rows = [(f"198.51.{i}.7", None) for i in range(3)] + [
        (f"2001:db8:{i:x}::1", None) for i in range(4)
    ]
    rows.append(("203.0.113.1", None))
    counts = count(
        rows,
        lambda ip: network_of(ip, 24, 48),
        lambda a: None,
        lambda ip: network_of(ip, 16, 32),
    )
    # Four /48s, three /24s: each network counts 1, the /32 and the /16 more.
    assert counts.top_network is not None and counts.top_network[1] == 1
    assert counts.top_range == ("2001:db8::/32", 4)
    assert count(rows, lambda ip: None, lambda a: None).top_range is None


def test_a_range_switches_on_when_no_network_does_and_the_network_is_named_first() -> None:
    ranged = Thresholds(overall=0, per_domain=0, per_network=5, per_range=6)
    spread = Counts(6, top_network=("198.51.1.0/24", 2), top_range=("198.51.0.0/16", 6))
    assert exceeded(spread, ranged) == (RANGE, "198.51.0.0/16")
    on = next_state(SurgeState(), spread, ranged, NOW, mode=CHALLENGE, level=26, hold_ms=MIN)
    assert on is not None and (on.cause, on.scope) == (RANGE, "198.51.0.0/16")
    # One /24 carrying the wave is named by its network, not its range.
    narrow = Counts(6, top_network=("198.51.1.0/24", 6), top_range=("198.51.0.0/16", 6))
    assert exceeded(narrow, ranged) == (NETWORK, "198.51.1.0/24")
    # A range below its threshold, or with the threshold 0, never switches.
    assert exceeded(attrs.evolve(spread, top_range=("198.51.0.0/16", 5)), ranged) is None
    assert exceeded(spread, attrs.evolve(ranged, per_range=0)) is None
    # Off only once the range, too, is below the release share.
    held = attrs.evolve(spread, top_range=("198.51.0.0/16", 3))
    later = NOW + 2 * MIN
    assert next_state(on, held, ranged, later, mode=CHALLENGE, level=26, hold_ms=MIN) is None
    calm = attrs.evolve(spread, top_range=("198.51.0.0/16", 2))
    off = next_state(on, calm, ranged, later, mode=CHALLENGE, level=26, hold_ms=MIN)
    assert off is not None and off.cause == CALM


def test_each_threshold_switches_on_with_its_cause_and_scope() -> None:
    off = SurgeState()
    assert step(off, Counts(99)) is None
    on = step(off, Counts(100))
    assert on == SurgeState(CHALLENGE, "overall", "", 26, NOW, NOW + 10 * MIN)
    by_domain = step(off, Counts(30, top_domain=("spam.example", 20)))
    assert by_domain is not None and (by_domain.cause, by_domain.scope) == (
        "domain",
        "spam.example",
    )
    by_network = step(off, Counts(30, top_network=("198.51.100.0/24", 10)))
    assert by_network is not None and by_network.scope == "198.51.100.0/24"
    assert exceeded(Counts(5, ("d", 5), ("n", 5)), Thresholds(0, 0, 0)) is None


def test_it_holds_then_switches_off_only_below_the_release_share() -> None:
    on = step(SurgeState(), Counts(150))
    assert on is not None
    # Calm, but within the hold: stays on.
    assert step(on, Counts(0), NOW + 9 * MIN) is None
    # After the hold, still above half the threshold: stays on (hysteresis).
    assert step(on, Counts(50), NOW + 11 * MIN) is None
    assert step(on, Counts(10, top_domain=("spam.example", 10)), NOW + 11 * MIN) is None
    off = step(on, Counts(49), NOW + 11 * MIN)
    assert off is not None and not off.on and off.cause == CALM
    # And on again only at the full threshold.
    assert step(off, Counts(99), NOW + 12 * MIN) is None


def test_a_moderators_switch_lasts_its_duration_whatever_the_rate() -> None:
    manual = switched_on(APPROVAL, 0, MANUAL, "", NOW, NOW + 5 * MIN)
    assert step(manual, Counts(0), NOW + 4 * MIN) is None
    assert manual.in_force(NOW + 4 * MIN).on
    assert not manual.in_force(NOW + 5 * MIN).on
    ended = step(manual, Counts(0), NOW + 5 * MIN)
    assert ended is not None and not ended.on and ended.cause == EXPIRED


def test_after_a_moderator_switched_off_no_automatic_switch_on_for_the_hold() -> None:
    on = step(SurgeState(), Counts(500))
    assert on is not None
    off = switched_off(on, MANUAL, NOW + MIN, quiet_ms=10 * MIN)
    assert step(off, Counts(500), NOW + 5 * MIN) is None
    again = step(off, Counts(500), NOW + 11 * MIN)
    assert again is not None and again.on

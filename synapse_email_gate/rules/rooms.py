"""When the bot may talk in the moderation room, and how it shows people there
(pure rules, no Synapse).

Everything the bot says can be read by every member of the room, by anyone the
room's history is shown to later, and by every server that takes part in it.
So it answers only in a room that is closed to everyone but moderators:

- join rule `invite` or `knock` (nobody joins without an invitation),
- created with `m.federate: false` (no other server can take part),
- history visible to members only since they were invited or joined,
- every member who has joined or is invited may moderate.

Even there it masks addresses and IPs, and it never shows a token that was
mailed to a person.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import attrs

JOIN_RULES = ("invite", "knock")
HISTORY_VISIBILITIES = ("joined", "invited")
MASK = "•••"


@attrs.frozen
class RoomFacts:
    """What the room's current state says (None: no such state event)."""

    join_rule: str | None
    federate: bool
    history_visibility: str | None
    # Joined and invited users, the bot excluded, who may not moderate.
    outsiders: tuple[str, ...] = ()


def room_problems(facts: RoomFacts) -> list[str]:
    """Why the bot must not answer in this room, one phrase per condition; [] when it may."""
    problems = []
    if facts.join_rule not in JOIN_RULES:
        problems.append(
            f"the join rule is {facts.join_rule or 'not set'}, not invite or knock"
            " (make the room private: invited people only)"
        )
    if facts.federate:
        problems.append(
            "users of other servers may join (the room was not created with"
            ' "m.federate": false; create a new room that is closed to other servers)'
        )
    if facts.history_visibility not in HISTORY_VISIBILITIES:
        problems.append(
            f"the history is visible to {facts.history_visibility or 'shared'}, not to"
            " members only (set history visibility to joined or invited)"
        )
    if facts.outsiders:
        problems.append(
            "these members are not moderators: "
            + ", ".join(sorted(facts.outsiders))
            + " (remove them, or have a server admin allow them)"
        )
    return problems


def refusal(problems: Sequence[str]) -> str:
    return (
        "I do not answer commands in this room: "
        + "; ".join(problems)
        + ". Use the admin API or synapse-email-gate until the room is fixed."
    )


def mask_email(address: object) -> str:
    """`alice@example.org` -> `a•••@example.org`; anything else (a keyed hash) -> `•••`."""
    if not isinstance(address, str):
        return MASK
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_ip(ip: object) -> str:
    """`203.0.113.7` -> `203.0.113.x`; `2001:db8:1:2::7` -> `2001:db8:1::x`
    (the /48); a network keeps its prefix only when it is at least that wide."""
    if not isinstance(ip, str):
        return MASK
    try:
        if "/" in ip:
            network = ipaddress.ip_network(ip, strict=False)
            wide = 24 if network.version == 4 else 48
            if network.prefixlen <= wide:
                return str(network)
            address = network.network_address
        else:
            address = ipaddress.ip_address(ip)
    except ValueError:
        return MASK
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return ".".join(str(address).split(".")[:3]) + ".x"
    groups = address.exploded.split(":")[:3]
    return ":".join(format(int(g, 16), "x") for g in groups) + "::x"


def mask_ban(kind: str, match: str) -> str:
    """A stored ban as the room sees it: a single address or IP is masked; a
    domain (`*@spam.example`), a pattern or a wide network is policy, shown as is."""
    if kind == "email" and not match.startswith(("*", "/")) and "@" in match:
        return mask_email(match)
    if kind == "ip":
        return mask_ip(match)
    return match

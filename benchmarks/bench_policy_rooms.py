"""Username vetting with 10,000 policy room rules, in-process.

Module: `Policy.username_ban` as the request path calls it, with no local
patterns and 10,000 ban rules of a policy room compiled into `Policy.room_rules`
(70 % exact user IDs, 30 % `@prefix*:server` globs, 1 % of other servers).
Baselines: the same call with no policy rooms (the feature off), and a loop
over the rules with `fnmatch` (what a naive follower would do). Verdicts must
be identical to the loop's on the whole corpus.
"""

from __future__ import annotations

import fnmatch
import random
import time

from common import Context, Result, fmt_us, median

from synapse_email_gate.config.policy_lists import PolicyLists
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.rules.policy_rules import RoomRule, RoomRules

SERVER = "example.org"


def _rules(n: int, rng: random.Random) -> list[RoomRule]:
    rules = []
    for i in range(n):
        word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
        server = "other.example" if i % 100 == 0 else SERVER
        entity = f"@{word}*:{server}" if i % 10 < 3 else f"@{word}:{server}"
        rules.append(
            RoomRule(
                "#bans:example.org",
                "!r:example.org",
                "m.policy.rule.user",
                f"rule:{i}",
                entity,
                None,
                "@mod:example.org",
                f"${i}",
            )
        )
    return rules


def _per_call(fn, names: list[str]) -> float:  # type: ignore[no-untyped-def]
    samples = []
    clock = time.perf_counter
    for name in names:
        start = clock()
        fn(name)
        samples.append(clock() - start)
    return median(samples)


def run(ctx: Context) -> list[Result]:
    rng = random.Random(17)
    rules = _rules(10_000, rng)
    names = [r.entity[1:].split(":")[0].rstrip("*") for r in rng.sample(rules, 1_000)]
    names += [n + "x" for n in names[:500]]
    names += ["".join(rng.choice("abcdefghij") for _ in range(9)) for _ in range(2_000)]
    now_ms = int(time.time() * 1000)
    start = time.perf_counter()
    room_rules = RoomRules.compile(rules, SERVER)
    compile_s = time.perf_counter() - start
    on = Policy.build([PolicyLists()], now_ms, room_rules)
    off = Policy.build([PolicyLists()], now_ms)

    def naive(name: str) -> bool:
        user_id = f"@{name}:{SERVER}"
        return any(fnmatch.fnmatchcase(user_id, r.entity) for r in rules)

    differ = [n for n in names if (on.username_ban(n) is not None) != naive(n)]
    for name in names:  # warm the DFA, as a running server has
        on.username_ban(name)
    runs = 3 if ctx.quick else 5
    m = median([_per_call(on.username_ban, names) for _ in range(runs)])
    o = median([_per_call(off.username_ban, names) for _ in range(runs)])
    n = _per_call(naive, names[:300])
    banned = sum(on.username_ban(x) is not None for x in names)
    detail = (
        f"{len(room_rules)} rules in force, {len(room_rules.ignored)} ignored;"
        f" compiled in {compile_s:.2f} s; {len(names)} names, {banned} banned;"
        f" verdicts differing from the fnmatch loop: {len(differ)}"
    )
    return [
        Result(
            "policy_rooms",
            "username vetting with 10,000 room rules vs feature off",
            fmt_us(m),
            fmt_us(o),
            m / o,
            "≤ 5 µs, same verdicts",
            m <= 5e-6 and not differ,
            detail,
            {"on_s": m, "off_s": o, "differ": len(differ)},
        ),
        Result(
            "policy_rooms",
            "username vetting with 10,000 room rules vs fnmatch loop",
            fmt_us(m),
            fmt_us(n),
            m / n,
            "≤ 5 µs",
            m <= 5e-6,
            detail,
            {"on_s": m, "naive_s": n},
        ),
    ]

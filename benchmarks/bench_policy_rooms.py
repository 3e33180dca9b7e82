"""Username vetting with 10,000 policy room rules, in-process.

Module: `Policy.username_ban` as the request path calls it, with no local
patterns and 10,000 ban rules of a policy room compiled into `Policy.room_rules`
(70 % exact user IDs, 30 % `@prefix*:server` globs, 1 % of other servers), each
timed pass on a fresh copy of the policy (the same compiled rules) so that every
name is matched, not remembered. The floor: a bare RE2 Set (the same options)
holding the same compiled rule patterns, its `Match` on the same user IDs, in
the same rounds (A B A B ...); verdict at most 2x, and verdicts identical to a
loop over the rules with `fnmatch` (what a naive follower would do). Context:
the same call with no policy rooms (the feature off), and the `fnmatch` loop.
"""

from __future__ import annotations

import fnmatch
import random
import time

import attrs
import re2
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


def _bare_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = 64 << 20
    return options


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
    bare = re2.Set.SearchSet(_bare_options())
    for pattern in room_rules.patterns:
        bare.Add(pattern)
    bare.Compile()
    user_ids = [f"@{name}:{SERVER}" for name in names]
    for name, user_id in zip(names, user_ids, strict=True):  # warm the DFAs
        on.username_ban(name)
        bare.Match(user_id)
    runs = 3 if ctx.quick else 5
    module_runs, bare_runs, off_runs = [], [], []
    for _ in range(runs):
        bare_runs.append(_per_call(bare.Match, user_ids))
        module_runs.append(_per_call(attrs.evolve(on).username_ban, names))
        off_runs.append(_per_call(attrs.evolve(off).username_ban, names))
    m, b, o = median(module_runs), median(bare_runs), median(off_runs)
    round_ratios = [mine / base for mine, base in zip(module_runs, bare_runs, strict=True)]
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
            "username vetting with 10,000 room rules vs bare RE2 Set match",
            fmt_us(m),
            fmt_us(b),
            m / b,
            "≤ 2x, same verdicts",
            m / b <= 2 and not differ,
            f"{detail}; rounds' ratios {min(round_ratios):.2f}-{max(round_ratios):.2f}x",
            {"module_s": module_runs, "bare_s": bare_runs, "differ": len(differ)},
        ),
        Result(
            "policy_rooms",
            "username vetting with 10,000 room rules vs feature off (context)",
            fmt_us(m),
            fmt_us(o),
            m / o,
            "context",
            None,
            detail,
            {"on_s": m, "off_s": o},
        ),
        Result(
            "policy_rooms",
            "username vetting with 10,000 room rules vs fnmatch loop (context)",
            fmt_us(m),
            fmt_us(n),
            m / n,
            "context",
            None,
            detail,
            {"on_s": m, "naive_s": n},
        ),
    ]

"""Username vetting against 10,000 ban patterns, in-process.

Module: the policy's compiled RE2 Set (``Policy.username_ban``), as the request
path calls it, with the default look-alike folding (each literal ban also bans its
leetspeak spellings: the set holds its look-alike variant in its place, which
matches the word as written too). Baselines: a loop over the
same patterns (and their look-alike variants) compiled with Python's ``re`` (first
match wins, like the module), and a loop that re-reads the pattern file and calls
``re.search`` per pattern per username. Verdicts (banned or not, and which pattern)
must be identical to the naive loop's on the whole corpus, with folding on and off.

A policy remembers the verdicts of the names it was asked lately (a request
asks twice); each timed pass uses a fresh copy of the policy (the same compiled
set) so that every name is matched, not remembered.

The verdict is a ratio to the floor: a bare RE2 Set (case-insensitive, the same
options) holding the same patterns the module compiles (each literal ban's
look-alike variant in its place), its ``Match`` called
on the same names, timed the same way in the same rounds (A B A B ...). Target:
at most 2x. The naive loops stay as context.
"""

from __future__ import annotations

import re
import time

import attrs
import re2
from common import Context, Result, fmt_us, make_corpus, median, say, spread

from synapse_email_gate.config.policy_lists import BanEntry, PolicyLists
from synapse_email_gate.policy.compiled import Policy
from synapse_email_gate.rules.usernames import lookalike_variant


def _per_call(fn, names: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    clock = time.perf_counter
    for name in names:
        start = clock()
        fn(name)
        samples.append(clock() - start)
    return samples


def run(ctx: Context) -> list[Result]:
    patterns = ctx.patterns
    corpus = make_corpus(patterns, 2_000 if ctx.quick else 5_000)
    pattern_file = ctx.tmp / "patterns.txt"
    pattern_file.write_text("\n".join(patterns) + "\n")

    entries = tuple(BanEntry(p) for p in patterns)
    now_ms = int(time.time() * 1000)
    start = time.perf_counter()
    policy_off = Policy.build(
        [PolicyLists(banned_usernames=entries, banned_usernames_lookalikes="off")], now_ms
    )
    compile_off_s = time.perf_counter() - start
    start = time.perf_counter()
    policy = Policy.build([PolicyLists(banned_usernames=entries)], now_ms)
    compile_s = time.perf_counter() - start

    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    variants = [lookalike_variant(p) for p in patterns]
    compiled_variants = [re.compile(v, re.IGNORECASE) if v else None for v in variants]

    def naive_off(name: str) -> str | None:
        for pattern, regex in zip(patterns, compiled, strict=True):
            if regex.search(name):
                return pattern
        return None

    def naive(name: str) -> str | None:
        for pattern, regex, variant in zip(patterns, compiled, compiled_variants, strict=True):
            if regex.search(name) or (variant is not None and variant.search(name)):
                return pattern
        return None

    def reread(name: str) -> str | None:
        with open(pattern_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for pattern in lines:
            if pattern and re.search(pattern, name, re.IGNORECASE):
                return pattern
        return None

    # Identical verdicts on the whole corpus (this is also the module's warm-up).
    module_verdicts = [policy.username_ban(name) for name in corpus]
    naive_verdicts = [naive(name) for name in corpus]
    differ = [
        (n, a, b) for n, a, b in zip(corpus, module_verdicts, naive_verdicts, strict=True) if a != b
    ]
    off_verdicts = [naive_off(name) for name in corpus]
    differ += [
        (n, a, b)
        for n, a, b in zip(
            corpus, [policy_off.username_ban(n) for n in corpus], off_verdicts, strict=True
        )
        if a != b
    ]
    banned = sum(v is not None for v in naive_verdicts)
    banned_off = sum(v is not None for v in off_verdicts)
    say(
        f"    corpus {len(corpus)} usernames, {banned} banned by the naive loop "
        f"({banned_off} without look-alikes); {len(differ)} verdicts differ; policy built "
        f"in {compile_s:.2f} s ({compile_off_s:.2f} s without look-alikes, "
        f"{sum(v is not None for v in variants)} variants)"
    )
    for name, a, b in differ[:5]:
        say(f"      differs: {name!r}: module {a!r}, naive {b!r}")

    bare = re2.Set.SearchSet(_bare_options())
    bare_patterns = [v or p for p, v in zip(patterns, variants, strict=True)]
    bare_size = len(bare_patterns)
    for pattern in bare_patterns:
        bare.Add(pattern)
    bare.Compile()
    bare_match = bare.Match
    for name in corpus:  # the first, cold pass builds the DFA, for either
        bare_match(name)
        policy.username_ban(name)

    module_runs, module_means, naive_runs, reread_runs, off_runs = [], [], [], [], []
    bare_runs: list[float] = []
    naive_sample = corpus[:: max(1, len(corpus) // (200 if ctx.quick else 400))]
    reread_sample = corpus[:: max(1, len(corpus) // 3)][:3]
    for _ in range(ctx.runs):
        bare_runs.append(median(_per_call(bare_match, corpus)))
        # A copy of the policy (the same compiled set, its DFA warm) remembers no
        # verdict yet: each name is matched, as a name seen for the first time is.
        samples = _per_call(attrs.evolve(policy).username_ban, corpus)
        module_runs.append(median(samples))
        off_runs.append(median(_per_call(attrs.evolve(policy_off).username_ban, corpus)))
        module_means.append(sum(samples) / len(samples))
        naive_runs.append(median(_per_call(naive, naive_sample)))
        reread_runs.append(median(_per_call(reread, reread_sample)))
    m, n, r = median(module_runs), median(naive_runs), median(reread_runs)
    b = median(bare_runs)
    round_ratios = [mine / base for mine, base in zip(module_runs, bare_runs, strict=True)]
    say(f"    bare RE2 Set.Match per name: {spread(bare_runs, 1e6, 'µs')}")
    say(f"    module  median per username: {spread(module_runs, 1e6, 'µs')}")
    say(f"    module  mean per username:   {spread(module_means, 1e6, 'µs')}")
    say(f"    module without look-alikes:  {spread(off_runs, 1e6, 'µs')}")
    say(f"    naive   median per username: {spread(naive_runs, 1e6, 'µs')}")
    say(f"    re-read median per username: {spread(reread_runs, 1e6, 'µs')}")
    detail = (
        f"{len(patterns)} patterns, {len(corpus)} names ({banned} banned), "
        f"{len(differ)} differing verdicts; mean {fmt_us(median(module_means))}; "
        f"policy compile {compile_s:.2f} s ({compile_off_s:.2f} s and "
        f"{fmt_us(median(off_runs))} per name without look-alikes)"
    )
    return [
        Result(
            "vetting",
            "username vetting vs bare RE2 Set match",
            fmt_us(m),
            fmt_us(b),
            m / b,
            "≤ 2x, same verdicts",
            m / b <= 2 and not differ,
            f"rounds' ratios {min(round_ratios):.2f}-{max(round_ratios):.2f}x "
            f"({len(round_ratios)} A B rounds); the same {bare_size} patterns as the "
            f"module's Set (look-alike variants in place of their literal bans), Match on "
            f"the same names",
            {"module_s": module_runs, "bare_s": bare_runs, "round_ratios": round_ratios},
        ),
        Result(
            "vetting",
            "username vetting vs naive compiled-re loop (context)",
            fmt_us(m),
            fmt_us(n),
            m / n,
            "context",
            None,
            detail,
            {"module_s": module_runs, "naive_s": naive_runs, "differ": len(differ)},
        ),
        Result(
            "vetting",
            "username vetting vs re-read file + re.search (context)",
            fmt_us(m),
            fmt_us(r),
            m / r,
            "context",
            None,
            f"re-read baseline timed on {len(reread_sample)} names per run",
            {"reread_s": reread_runs},
        ),
    ]


def _bare_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.max_mem = 1 << 30
    return options

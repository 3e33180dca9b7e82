"""Server-side cost of checking a challenge solution (challenge.verify), per outcome.

    .venv/bin/python benchmarks/challenge_verify.py [-n 20000]

Prints the median and p99 time per call in microseconds for: a valid solution,
and the refusals a script meets (missing-format garbage, a forged MAC, an
expired challenge, a wrong nonce). None of these touches the database; a valid
solution then costs one INSERT (not measured here).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable

from synapse_email_gate import challenge

NOW = 1_700_000_000_000


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(0.99 * (len(samples) - 1))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20000)
    parser.add_argument("-d", "--difficulty", type=int, default=16)
    args = parser.parse_args()
    key = challenge.derive_key(secrets.token_bytes(32))
    issued = challenge.issue(key, NOW, 600_000, args.difficulty)
    c = issued.challenge
    nonce = challenge.solve(c, args.difficulty)
    wrong = "0"
    while challenge.meets_difficulty(challenge.hash_solution(c, wrong), args.difficulty):
        wrong += "0"
    forged = c[:-1] + ("A" if c[-1] != "A" else "B")
    cases: dict[str, Callable[[], object]] = {
        "valid solution": lambda: challenge.verify(key, c, nonce, NOW),
        "garbage": lambda: challenge.verify(key, "v1.nonsense", nonce, NOW),
        "forged MAC": lambda: challenge.verify(key, forged, nonce, NOW),
        "expired": lambda: challenge.verify(key, c, nonce, NOW + 600_000),
        "wrong nonce": lambda: challenge.verify(key, c, wrong, NOW),
        "issue": lambda: challenge.issue(key, NOW, 600_000, args.difficulty),
    }
    assert isinstance(cases["valid solution"](), challenge.Solved)
    for name, fn in cases.items():
        timed(fn, 1000)  # warm up
        median, p99 = timed(fn, args.runs)
        print(f"{name:15s} median {median:6.2f} µs   p99 {p99:6.2f} µs")


if __name__ == "__main__":
    main()

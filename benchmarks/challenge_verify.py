"""Server-side cost of checking a challenge solution (rules.proof_of_work.verify), per outcome.

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

from synapse_email_gate.rules import proof_of_work

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
    key = proof_of_work.derive_key(secrets.token_bytes(32))
    issued = proof_of_work.issue(key, NOW, 600_000, args.difficulty)
    c = issued.challenge
    nonce = proof_of_work.solve(c, args.difficulty)
    wrong = "0"
    while proof_of_work.meets_difficulty(proof_of_work.hash_solution(c, wrong), args.difficulty):
        wrong += "0"
    forged = c[:-1] + ("A" if c[-1] != "A" else "B")
    cases: dict[str, Callable[[], object]] = {
        "valid solution": lambda: proof_of_work.verify(key, c, nonce, NOW),
        "garbage": lambda: proof_of_work.verify(key, "v1.nonsense", nonce, NOW),
        "forged MAC": lambda: proof_of_work.verify(key, forged, nonce, NOW),
        "expired": lambda: proof_of_work.verify(key, c, nonce, NOW + 600_000),
        "wrong nonce": lambda: proof_of_work.verify(key, c, wrong, NOW),
        "issue": lambda: proof_of_work.issue(key, NOW, 600_000, args.difficulty),
    }
    assert isinstance(cases["valid solution"](), proof_of_work.Solved)
    for name, fn in cases.items():
        timed(fn, 1000)  # warm up
        median, p99 = timed(fn, args.runs)
        print(f"{name:15s} median {median:6.2f} µs   p99 {p99:6.2f} µs")


if __name__ == "__main__":
    main()

"""What refused challenge solutions cost a real Synapse, next to the rate-limited path.

Starts two Synapse processes (SQLite, 127.0.0.1) from the test harness:
- "limited": challenge off, per-IP limit exhausted, so every request is the
  429 answered from the process's memory of empty buckets (the cheapest
  refusal the module had before the challenge);
- "challenge": challenge on; requests with a missing, garbage, forged,
  wrong-nonce or replayed solution, and valid ones for comparison.

Sends the same JSON request N times per case over one keep-alive connection
and prints the median and p90 latency.

    .venv/bin/python benchmarks/challenge_http.py [-n 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synapse_email_gate.rules import proof_of_work
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer

PATH = "/_synapse/client/email_gate/api/request"


class Client:
    def __init__(self, server: SynapseServer) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"null")

    def solved(self) -> dict[str, str]:
        status, got = self.call("GET", "/_synapse/client/email_gate/api/challenge")
        assert status == 200, got
        return {
            "challenge": got["challenge"],
            "nonce": proof_of_work.solve(got["challenge"], got["difficulty"]),
        }


def measure(
    client: Client, runs: int, body: Callable[[int], dict[str, Any]], expect: int
) -> list[float]:
    times = []
    for i in range(runs):
        payload = body(i)
        start = time.perf_counter()
        status, answer = client.call("POST", PATH, payload)
        times.append(time.perf_counter() - start)
        assert status == expect, (status, answer)
    return times


def report(name: str, times: list[float]) -> None:
    times = sorted(times)
    p90 = times[int(0.9 * (len(times) - 1))]
    print(f"{name:34s} median {statistics.median(times) * 1000:6.2f} ms   p90 {p90 * 1000:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=300)
    args = parser.parse_args()
    n = args.runs
    smtp = SmtpCatcher().start()
    common = {"smtp": smtp.config(), "sender": "Bench <bench@test.local>"}
    limited = SynapseServer(
        {**common, "rate_limits": {"per_ip": {"burst": 1, "per_second": 0.0001}}},
        log_level="WARNING",
    )
    gated = SynapseServer(
        {
            **common,
            "challenge": {"enabled": True, "difficulty": 8},
            "rate_limits": {
                "per_ip": {"burst": 100000, "per_second": 1000},
                "global": {"burst": 100000, "per_second": 1000},
            },
        },
        log_level="WARNING",
    )
    try:
        limited.start()
        gated.start()
        lc = Client(limited)
        assert lc.call("POST", PATH, {"username": "first", "email": "first@example.org"})[0] == 202
        assert lc.call("POST", PATH, {"username": "x", "email": "x@example.org"})[0] == 429
        measure(lc, 20, lambda i: {"username": f"w{i}", "email": f"w{i}@example.org"}, 429)
        gc = Client(gated)
        once = gc.solved()
        assert (
            gc.call("POST", PATH, {"username": "u0", "email": "u0@example.org", **once})[0] == 202
        )
        forged_c = once["challenge"][:-1] + ("A" if once["challenge"][-1] != "A" else "B")
        fresh = [gc.solved() for _ in range(n)]
        wrong = []
        for _ in range(n):
            c = gc.solved()["challenge"]
            nonce = 0
            while proof_of_work.meets_difficulty(proof_of_work.hash_solution(c, str(nonce)), 8):
                nonce += 1
            wrong.append({"challenge": c, "nonce": str(nonce)})
        measure(gc, 20, lambda i: {"username": "w", "email": "w@example.org"}, 400)

        def req(i: int, **extra: Any) -> dict[str, Any]:
            return {"username": f"user{i}", "email": f"user{i}@example.org", **extra}

        cases: dict[str, tuple[Client, Callable[[int], dict[str, Any]], int]] = {
            "rate-limited (429, challenge off)": (lc, req, 429),
            "challenge missing (400)": (gc, req, 400),
            "challenge garbage (400)": (gc, lambda i: req(i, challenge="v1.x", nonce="1"), 400),
            "forged MAC (400)": (
                gc,
                lambda i: req(i, challenge=forged_c, nonce=once["nonce"]),
                400,
            ),
            "wrong nonce (400)": (gc, lambda i: req(i, **wrong[i]), 400),
            "replayed (400)": (gc, lambda i: req(i, **once), 400),
        }
        # Round-robin over the cases, so drift in the machine's load hits them alike.
        results: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(n):
            for name, (client, body, expect) in cases.items():
                results[name] += measure(client, 1, lambda _, i=i, body=body: body(i), expect)
        # Last: accepted requests leave work behind (the mail) that would slow the others.
        results["valid solution (202)"] = measure(gc, n, lambda i: req(i, **fresh[i]), 202)
        for name, times in results.items():
            report(name, times)
    finally:
        for server in (limited, gated):
            server.close()
        smtp.close()


if __name__ == "__main__":
    main()

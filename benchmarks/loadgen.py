"""Load generator and /health poller, run as a separate process by the benchmarks.

Plain HTTP/1.1 with keep-alive over asyncio streams (no client library in the
hot path, so one core drives several thousand requests per second). Only
127.0.0.1 is accepted as a target, and every loop stops by itself (duration
and/or request count).

    python benchmarks/loadgen.py load --port 8008 --path /x --body '{"n": "{n}"}' \
        --duration 5 --concurrency 32
    python benchmarks/loadgen.py health --port 8008 --duration 5 --interval 0.005

Each prints one JSON object: counts per status, rate, latency percentiles (ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from typing import Any

HOST = "127.0.0.1"


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies in seconds, as milliseconds."""
    if not samples:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1] * 1000}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
        body = b"".join(parts)
    else:
        body = await reader.read()
        return status, body, False
    keep = headers.get("connection", "").lower() != "close"
    return status, body, keep


def build_request(
    method: str, path: str, port: int, body: bytes | None, headers: list[tuple[str, str]]
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    for name, value in headers:
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return raw + (body or b"")


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.counter = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.errors = 0
        self.bodies: Counter[str] = Counter()
        self.tag = args.tag or f"{os.getpid()}x{int(time.time()) % 100000}"
        self.headers = [tuple(h.split(":", 1)) for h in args.header]
        self.fixed = None
        if "{n}" not in (args.body or "") and not any("{n}" in h for h in args.header):
            self.fixed = self._request(0)

    def _request(self, n: int) -> bytes:
        args = self.args

        def fill(text: str) -> str:
            return text.replace("{n}", str(n)).replace("{tag}", self.tag)

        body = None if args.body is None else fill(args.body).encode()
        headers = [(name.strip(), fill(value).strip()) for name, value in self.headers]
        return build_request(args.method, args.path, args.port, body, headers)

    def next_request(self) -> bytes | None:
        if self.args.count and self.counter >= self.args.count:
            return None
        self.counter += 1
        return self.fixed if self.fixed is not None else self._request(self.counter)

    async def worker(self, deadline: float) -> None:
        reader = writer = None
        while time.monotonic() < deadline:
            request = self.next_request()
            if request is None:
                break
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, self.args.port)
                assert reader is not None
                start = time.perf_counter()
                writer.write(request)
                status, body, keep = await asyncio.wait_for(read_response(reader), 30)
                self.latencies.append(time.perf_counter() - start)
                self.statuses[status] += 1
                if len(self.bodies) < 5 and status not in (200, 202):
                    self.bodies[body[:160].decode("utf-8", "replace")] += 1
                if not keep:
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                self.errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
        if writer is not None:
            writer.close()

    async def run(self) -> dict[str, Any]:
        start = time.monotonic()
        deadline = start + self.args.duration
        await asyncio.gather(*(self.worker(deadline) for _ in range(self.args.concurrency)))
        elapsed = time.monotonic() - start
        done = sum(self.statuses.values())
        return {
            "requests": done,
            "elapsed": elapsed,
            "rate": done / elapsed if elapsed else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "sample_bodies": list(self.bodies),
            "latency_ms": percentiles(self.latencies),
        }


async def health(args: argparse.Namespace) -> dict[str, Any]:
    """GET /health on one keep-alive connection every `interval` seconds."""
    latencies: list[float] = []
    errors = 0
    request = build_request("GET", "/health", args.port, None, [])
    deadline = time.monotonic() + args.duration
    stop = asyncio.Event()  # SIGTERM/SIGINT end the polling early, with a report
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    reader, writer = await asyncio.open_connection(HOST, args.port)
    while time.monotonic() < deadline and not stop.is_set():
        start = time.perf_counter()
        try:
            writer.write(request)
            status, _, keep = await asyncio.wait_for(read_response(reader), 10)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors += 1
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, args.port)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            errors += 1
            writer.close()
            await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection(HOST, args.port)
        await asyncio.sleep(args.interval)
    writer.close()
    over = [s for s in latencies if s > args.stall_ms / 1000]
    return {
        "requests": len(latencies),
        "errors": errors,
        "latency_ms": percentiles(latencies),
        "over_stall": len(over),
        "stall_ms": args.stall_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    load = sub.add_parser("load", help="send requests with `concurrency` connections")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--method", default="POST")
    load.add_argument("--path", required=True)
    load.add_argument("--body", help="JSON body; {n} = request number, {tag} = run tag")
    load.add_argument("--header", action="append", default=[], help="Name: value ({n} too)")
    load.add_argument("--duration", type=float, default=5.0, help="stop after this (s)")
    load.add_argument("--count", type=int, default=0, help="stop after this many requests")
    load.add_argument("--concurrency", type=int, default=32)
    load.add_argument("--tag", help="replaces {tag} (default: unique per process)")
    poll = sub.add_parser("health", help="poll /health and report its latency")
    poll.add_argument("--port", type=int, required=True)
    poll.add_argument("--duration", type=float, default=5.0)
    poll.add_argument("--interval", type=float, default=0.005)
    poll.add_argument("--stall-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    if args.duration > 600:
        parser.error("--duration is capped at 600 s")
    result = asyncio.run(Load(args).run() if args.mode == "load" else health(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

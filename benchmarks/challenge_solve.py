"""Solve time of the request page's proof-of-work in headless Chromium.

Serves the module's static files and a bare page from 127.0.0.1 (a secure
context, so WebCrypto is there), issues real challenges with
synapse_email_gate.rules.proof_of_work, and lets the page's own solver
(email_gate_challenge.js + email_gate_pow_worker.js) solve them.

    .venv/bin/python benchmarks/challenge_solve.py                 # difficulties 16-20
    .venv/bin/python benchmarks/challenge_solve.py -d 19 -n 40      # one difficulty
    .venv/bin/python benchmarks/challenge_solve.py --engine webcrypto  # WebCrypto only

Prints, per difficulty: median / p90 / max solve time, the hash rate, and -
since the machine may be busy with other work - the rate per CPU-second of
Chromium and the median that implies on an idle machine (one core per worker).
Uses /usr/bin/chromium (never downloads a browser); --chromium to change.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from synapse_email_gate.rules import proof_of_work

STATIC = Path(__file__).resolve().parents[1] / "synapse_email_gate" / "static"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE = b"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>bench</title></head>
<body><script src="/static/email_gate_challenge.js"></script></body></html>"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, "text/html; charset=utf-8", PAGE)
        elif self.path.startswith("/static/") and (STATIC / self.path[8:]).is_file():
            self._send(200, "text/javascript", (STATIC / self.path[8:]).read_bytes())
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def descendants_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process's descendants (Chromium)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-d", "--difficulty", type=int, action="append")
    parser.add_argument("-n", "--runs", type=int, default=25)
    parser.add_argument("--workers", type=int, default=0, help="0: the page's choice")
    parser.add_argument(
        "--engine",
        choices=("auto", "webcrypto", "js"),
        default="auto",
        help="the worker's SHA-256: WebCrypto, plain JS, or the faster of both (the page's choice)",
    )
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", action="store_true", help="one JSON line per difficulty")
    args = parser.parse_args()
    difficulties = args.difficulty or [16, 17, 18, 19, 20]

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    key = proof_of_work.derive_key(secrets.token_bytes(32))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            cores = page.evaluate("navigator.hardwareConcurrency")
            if not args.json:
                print(f"Chromium {browser.version}, hardwareConcurrency={cores}, runs={args.runs}")
            for bits in difficulties:
                times, rates = [], []
                engines: set[str] = set()
                hashes, cpu_before = 0, descendants_cpu_s()
                for _ in range(args.runs):
                    issued = proof_of_work.issue(key, int(time.time() * 1000), 600_000, bits)
                    result = page.evaluate(
                        """([c, d, w, engine]) => EmailGateChallenge.solve(
                            "/static/email_gate_pow_worker.js", c, d, null,
                            {workers: w || undefined, engine: engine})""",
                        [issued.challenge, bits, args.workers, args.engine],
                    )
                    outcome = proof_of_work.verify(
                        key, issued.challenge, result["nonce"], int(time.time() * 1000)
                    )
                    assert isinstance(outcome, proof_of_work.Solved), outcome
                    times.append(result["ms"] / 1000)
                    engines.add(result["engine"])
                    rates.append(result["hashes"] / max(result["ms"], 1) * 1000)
                    hashes += result["hashes"]
                    workers = result["workers"]
                cpu_rate = hashes / max(descendants_cpu_s() - cpu_before, 1e-3)
                times.sort()
                row = {
                    "difficulty": bits,
                    "median_s": statistics.median(times),
                    "p90_s": times[int(0.9 * (len(times) - 1))],
                    "max_s": times[-1],
                    "hashes_per_s": statistics.median(rates),
                    "engine": "+".join(sorted(engines)),
                    # Load-independent: hashes per CPU-second of Chromium, and the median
                    # solve time it implies on an idle machine (start-up not included).
                    "hashes_per_cpu_s": cpu_rate,
                    "idle_median_estimate_s": math.log(2) * 2**bits / (cpu_rate * workers),
                    "load": os.getloadavg()[0],
                }
                if args.json:
                    print(json.dumps(row))
                else:
                    print(
                        f"difficulty {bits:2d}: median {row['median_s']:.2f} s, "
                        f"p90 {row['p90_s']:.2f} s, max {row['max_s']:.2f} s, "
                        f"{row['hashes_per_s'] / 1000:.0f}k hashes/s ({row['engine']}; "
                        f"load {row['load']:.1f}); "
                        f"{cpu_rate / 1e6:.2f}M hashes per CPU-second, idle estimate "
                        f"{row['idle_median_estimate_s']:.2f} s"
                    )
            browser.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()

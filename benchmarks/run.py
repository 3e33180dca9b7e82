"""Run the module's benchmarks, each beside its baseline, and print the ratios.

    .venv/bin/python benchmarks/run.py                 # all, ~25 min on 2 busy cores
    .venv/bin/python benchmarks/run.py --quick         # smoke run, ~3 min: 3 runs, 100k history
    .venv/bin/python benchmarks/run.py flood mail      # chosen benchmarks
    .venv/bin/python benchmarks/run.py --json out.json # also write every figure

Benchmarks: vetting, policy_rooms, latency, dns, history, flood, accepted,
registration, mail, memory (see each bench_<name>.py). Verdicts are ratios to a
floor measured in the same run, its rounds alternating with the module's (A B A
B ...): the do-nothing module benchmarks/floor_module.py loaded in the same
Synapse (flood, accepted), a bare RE2 Set (vetting), a plain aiosmtplib script
feeding the same SMTP sink (mail, benchmarks/raw_smtp.py), Synapse without the
module (latency, registration, memory). Absolute figures are context. Figures
are medians of --runs runs (5 by default). Real Synapse processes
(tests/harness) on 127.0.0.1, a private PostgreSQL cluster, an SMTP catcher;
load from wrk when installed (apt-get install wrk), else from
benchmarks/loadgen.py (BENCH_NO_WRK=1 forces it).
Not part of the test suite. Latest figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Context, Result, load_generator, say

BENCHMARKS = [
    "vetting",
    "policy_rooms",
    "latency",
    "dns",
    "history",
    "stats",
    "flood",
    "accepted",
    "registration",
    "mail",
    "memory",
]


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "load_generator": load_generator(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def table(results: list[Result]) -> str:
    lines = [
        "| benchmark | measure | module | baseline | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "—" if r.ratio is None else f"{r.ratio:.3g}x"
        verdict = {True: "met", False: "**missed**", None: "—"}[r.ok]
        lines.append(
            f"| {r.bench} | {r.measure} | {r.module} | {r.baseline or '—'} | {ratio} | "
            f"{r.target} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="3 runs, 100,000-row history")
    parser.add_argument("--runs", type=int, help="runs per figure (default 5; 3 with --quick)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    names = args.names or BENCHMARKS
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    info = machine()
    started = datetime.now(UTC)
    say(
        f"email gate benchmarks, {started:%Y-%m-%d %H:%M} UTC; {info['nproc']} cores "
        f"({info['cpu']}), {info['ram']}; load generator {info['load_generator']}"
    )
    ctx = Context(quick=args.quick, runs=args.runs)
    results: list[Result] = []
    failed: list[str] = []
    try:
        for name in names:
            say(f"\n== {name} (load average {loadavg()})")
            t0 = time.monotonic()
            try:
                module = importlib.import_module(f"bench_{name}")
                got = module.run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            finally:
                ctx.stop_servers()
            for result in got:
                say(result.line())
                if result.detail:
                    say(f"      {result.detail}")
            say(f"  ({time.monotonic() - t0:.0f} s)")
            results.extend(got)
    finally:
        ctx.close()
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    say(f"\n== summary ({minutes:.1f} min, load average at the end {loadavg()})\n")
    say(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started": started.isoformat(),
                    "minutes": minutes,
                    "machine": info,
                    "argv": sys.argv[1:],
                    "results": [r.__dict__ for r in results],
                    "failed": failed,
                },
                indent=1,
                default=str,
            )
        )
    if failed:
        say(f"\nfailed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The floor of the mail benchmark: a plain script feeding an SMTP server with aiosmtplib.

    python benchmarks/raw_smtp.py --port P --count 1000 --message mail.eml --tag t1

Sends ``count`` copies of the message in ``mail.eml`` (a mail the module sent,
as the catcher received it) to ``<tag>u<i>@example.org``, in batches of 50 per
connection like the module's mail sender (mail/delivery.py SWEEP_BATCH), one
batch after the other. No database, no templates, no reactor: what the SMTP
server takes from a client that does nothing else. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiosmtplib

BATCH = 50


async def send(host: str, port: int, count: int, message: bytes, tag: str) -> float:
    start = time.monotonic()
    for first in range(0, count, BATCH):
        client = aiosmtplib.SMTP(hostname=host, port=port, use_tls=False, start_tls=False)
        await client.connect()
        try:
            for i in range(first, min(count, first + BATCH)):
                await client.sendmail("gate@bench.local", [f"{tag}u{i}@example.org"], message)
        finally:
            await client.quit()
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--message", type=Path, required=True)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    message = args.message.read_bytes()
    seconds = asyncio.run(send(args.host, args.port, args.count, message, args.tag))
    print(json.dumps({"seconds": seconds, "sent": args.count}), flush=True)


if __name__ == "__main__":
    main()

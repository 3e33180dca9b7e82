"""A DNS server on loopback for the DNS checks: answers from a table, counts queries.

Runs in the test process, in a thread, on a free UDP port. Each name (and type)
can be answered with records, NXDOMAIN, SERVFAIL, or not at all (a timeout).
Unknown names get NXDOMAIN.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from dnslib import AAAA, MX, QTYPE, RCODE, RR, A, DNSRecord

from tests.harness.ports import free_udp_port

NXDOMAIN = "nxdomain"
SERVFAIL = "servfail"
SILENT = "silent"  # no answer at all: the client times out

Answer = str | list[RR]


class DnsServer:
    def __init__(self) -> None:
        self.port = free_udp_port()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", self.port))
        self._socket.settimeout(0.2)
        self._answers: dict[tuple[str, str], Answer] = {}
        self._lock = threading.Lock()
        self._queries: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    # --- the table ---------------------------------------------------------

    def answer(self, name: str, qtype: str, answer: Answer) -> None:
        with self._lock:
            self._answers[(_norm(name), qtype)] = answer

    def a(self, name: str, *addresses: str) -> None:
        self.answer(name, "A", [RR(_norm(name), QTYPE.A, rdata=A(a), ttl=60) for a in addresses])

    def aaaa(self, name: str, *addresses: str) -> None:
        self.answer(
            name, "AAAA", [RR(_norm(name), QTYPE.AAAA, rdata=AAAA(a), ttl=60) for a in addresses]
        )

    def mx(self, name: str, *records: tuple[int, str]) -> None:
        self.answer(
            name,
            "MX",
            [RR(_norm(name), QTYPE.MX, rdata=MX(host, pref), ttl=60) for pref, host in records],
        )

    def queries(self, name: str, qtype: str = "A") -> int:
        with self._lock:
            return self._queries[(_norm(name), qtype)]

    # --- serving -----------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                request = DNSRecord.parse(data)
            except Exception:
                continue
            reply = self._reply(request)
            if reply is not None:
                self._socket.sendto(reply.pack(), peer)

    def _reply(self, request: DNSRecord) -> DNSRecord | None:
        question = request.q
        key = (_norm(str(question.qname)), QTYPE[question.qtype])
        with self._lock:
            self._queries[key] += 1
            answer = self._answers.get(key)
            if answer is None and any(name == key[0] for name, _ in self._answers):
                answer = []  # the name exists with other types: NOERROR, no records
        reply = request.reply()
        if answer is None or answer == NXDOMAIN:
            reply.header.rcode = RCODE.NXDOMAIN
        elif answer == SERVFAIL:
            reply.header.rcode = RCODE.SERVFAIL
        elif answer == SILENT:
            return None
        else:
            assert isinstance(answer, list)
            for record in answer:
                reply.add_answer(record)
        return reply


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


@contextmanager
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.close()

"""The test harness's port picker: ports that nothing else can take before the
server binds them."""

from __future__ import annotations

import socket

import pytest

from tests.harness import ports


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    picked = [ports.free_port() for _ in range(50)]
    assert len(set(picked)) == 50
    assert all(ports._LOWEST <= p < ports._ephemeral_low() for p in picked)
    for port in picked:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_never_picked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        ports._handed_out.discard(busy)
        own = ports._own_ports()
        # Every other port of ours counts as handed out: only the busy one is left to try.
        for port in own:
            if port != busy:
                ports._handed_out.add(port)
        try:
            assert ports.free_port() not in own
        finally:
            ports._handed_out.difference_update(p for p in own if p != busy)


def test_xdist_workers_get_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    first = ports._own_ports()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    second = ports._own_ports()
    assert len(first) > 1000 and len(second) > 1000
    assert first.stop <= second.start and second.stop <= ports._ephemeral_low()

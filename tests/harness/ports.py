"""Free TCP ports on loopback."""

import os
import random
import socket
import time

# Outgoing connections get their local port from the kernel's ephemeral range, and
# a busy test run opens thousands of them. A port picked there can be taken between
# being picked and being bound: CI once saw Synapse's replication listener fail with
# "Address already in use". Ports below that range are only ever taken by a bind.
_LOWEST = 10000
_handed_out: set[int] = set()
_rng = random.Random()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _own_ports() -> range:
    """This process's share of the ports below the ephemeral range: pytest-xdist
    workers get disjoint slices, so two workers never pick the same port."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    size = max(0, _ephemeral_low() - _LOWEST) // max(count, 1)
    return range(_LOWEST + index * size, _LOWEST + (index + 1) * size)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now and that this process has not handed
    out before, outside the range the kernel gives to outgoing connections."""
    ports = _own_ports()
    if len(ports) >= 100:
        for _ in range(200):
            port = ports[_rng.randrange(len(ports))]
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no room below it
        s.bind((host, 0))
        port = s.getsockname()[1]
        _handed_out.add(port)
        return port


def wait_port_free(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Wait until nothing listens on ``host:port`` any more."""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex((host, port)) != 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {host}:{port} still in use after {timeout}s")


def port_from(preferred: int, host: str = "127.0.0.1", tries: int = 50) -> int:
    """``preferred`` if it is free on ``host``, else the next free port above it."""
    for port in range(preferred, preferred + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # as servers do: a port with only TIME_WAIT connections left is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port in {preferred}..{preferred + tries - 1}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that is free now and that this process has not handed out
    before, chosen like ``free_port`` (below the ephemeral range, per xdist worker)."""
    ports = _own_ports()
    if len(ports) >= 100:
        for _ in range(200):
            port = ports[_rng.randrange(len(ports))]
            if port not in _handed_out and _udp_bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
        _handed_out.add(port)
        return port


def _udp_bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True

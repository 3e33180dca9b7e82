"""config/listeners.py: http listeners with `x_forwarded: true` are found in a homeserver.yaml
(and reported by `check-config`) and in a running process's parsed config."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from synapse_email_gate.cli import main
from synapse_email_gate.config.listeners import Forwarded, forwarded_in_process, forwarded_in_yaml


def http(port: int, **extra: Any) -> dict[str, Any]:
    return {"port": port, "type": "http", "resources": [{"names": ["client"]}], **extra}


def test_forwarded_http_listeners_are_found_in_yaml() -> None:
    listeners = [
        http(8008, x_forwarded=True),
        http(8009),  # off by default
        http(8010, x_forwarded=False),
        {"port": 9000, "type": "metrics", "x_forwarded": True},  # not http
        {"path": "/run/synapse.sock", "type": "http"},  # on by default for a socket
        {"path": "/run/other.sock", "type": "http", "x_forwarded": False},
        "nonsense",
    ]
    assert forwarded_in_yaml(listeners) == [
        Forwarded("port 8008", unix=False),
        Forwarded("unix socket /run/synapse.sock", unix=True),
    ]
    assert forwarded_in_yaml(None) == [] and forwarded_in_yaml({"port": 1}) == []


def test_the_warning_says_ips_can_be_spoofed_and_what_to_do() -> None:
    tcp = Forwarded("port 8008", unix=False).warning()
    assert "port 8008" in tcp and "x_forwarded: true" in tcp
    assert "can be spoofed" in tcp and "trusted_proxies" in tcp
    unix = Forwarded("unix socket /run/s.sock", unix=True).warning()
    assert "replace the header" in unix


def parsed_config(worker_app: str | None, **lists: Any) -> Any:
    def listener(port: int | None, x_forwarded: bool, kind: str = "http", path: Any = None) -> Any:
        options = SimpleNamespace(x_forwarded=x_forwarded) if kind == "http" else None
        fields = {"port": port} if path is None else {"path": path}
        return SimpleNamespace(type=kind, http_options=options, **fields)

    return SimpleNamespace(
        _hs=SimpleNamespace(
            config=SimpleNamespace(
                worker=SimpleNamespace(
                    worker_app=worker_app,
                    worker_listeners=[listener(*args) for args in lists.get("worker", [])],
                ),
                server=SimpleNamespace(
                    listeners=[listener(*args) for args in lists.get("main", [])]
                ),
            )
        )
    )


def test_the_running_process_reads_its_own_listeners() -> None:
    main_process = parsed_config(
        None,
        main=[(8008, True), (8448, False), (9000, False, "metrics")],
        worker=[(8083, True)],
    )
    assert forwarded_in_process(main_process) == [Forwarded("port 8008", unix=False)]
    worker = parsed_config(
        "synapse.app.generic_worker",
        main=[(8008, True)],
        worker=[(8083, False), (None, True, "http", "/run/w.sock")],
    )
    assert forwarded_in_process(worker) == [Forwarded("unix socket /run/w.sock", unix=True)]


def test_a_config_of_another_shape_finds_nothing_and_does_not_fail() -> None:
    assert forwarded_in_process(SimpleNamespace()) == []  # type: ignore[arg-type]
    assert forwarded_in_process(SimpleNamespace(_hs=None)) == []  # type: ignore[arg-type]


def test_check_config_warns_about_a_forwarded_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = {
        "enable_registration": True,
        "registration_requires_token": True,
        "listeners": [http(8008, x_forwarded=True), http(8448)],
        "modules": [{"module": "synapse_email_gate.EmailGate", "config": {}}],
    }
    path = tmp_path / "homeserver.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 0  # a warning, not a problem
    out = capsys.readouterr().out
    assert "listeners" in out and "port 8008" in out and "can be spoofed" in out
    assert "port 8448" not in out
    assert main(["check-config", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [w["key"] for w in report["warnings"]] == ["listeners"]
    data["listeners"] = [http(8008)]
    path.write_text(yaml.safe_dump(data))
    assert main(["check-config", str(path)]) == 0
    assert "spoofed" not in capsys.readouterr().out

"""Dependency hygiene, by deptry: everything the package imports is declared in
setup.cfg's install_requires (Synapse's own dependencies that the module imports
included), nothing declared goes unused, and no test-only package is imported by it."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _requirement_lines(section: str, key: str) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return [line.strip() for line in cfg[section][key].splitlines() if line.strip()]


def test_deptry_finds_no_dependency_issues(tmp_path: Path) -> None:
    # deptry reads pyproject.toml's [project] or requirements files, not setup.cfg.
    runtime = tmp_path / "requirements.txt"
    runtime.write_text("\n".join(_requirement_lines("options", "install_requires")) + "\n")
    dev = tmp_path / "requirements-dev.txt"
    dev.write_text("\n".join(_requirement_lines("options.extras_require", "test")) + "\n")
    report = tmp_path / "deptry.json"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "deptry"),
            ".",
            "--requirements-files",
            str(runtime),
            "--requirements-files-dev",
            str(dev),
            "--json-output",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    issues = json.loads(report.read_text())
    assert issues == [], result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Scanning" in result.stdout + result.stderr

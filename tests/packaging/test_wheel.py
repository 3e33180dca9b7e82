"""The package as users get it: `python -m build` makes an sdist and a wheel (the wheel
built from the sdist), the wheel installs into a fresh virtualenv with only its runtime
dependencies, and Synapse runs the module from there.

The virtualenv's pip fetches the dependencies from the package index (its cache helps);
nothing of this checkout is on that Python's path."""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.conftest import module_config_for
from tests.harness import http
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import register, registered, request_token

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "synapse_email_gate"
DATA_DIRS = ("templates", "static", "translations")
# Packages of the `test` extra that the runtime must not pull in.
TEST_ONLY = ("aiosmtpd", "matrix-nio", "pytest", "hypothesis", "playwright", "mypy", "ruff")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _requirements(section: str, key: str) -> list[Requirement]:
    lines = _setup_cfg()[section][key].splitlines()
    return [Requirement(line.strip()) for line in lines if line.strip()]


NAME = _setup_cfg()["metadata"]["name"]
VERSION = _setup_cfg()["metadata"]["version"]


def _data_files() -> set[str]:
    """Every data file of the source tree, as paths inside the package."""
    found = set()
    for d in DATA_DIRS:
        for path in (ROOT / PACKAGE / d).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                found.add(path.relative_to(ROOT / PACKAGE).as_posix())
    return found


def _run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=900, **kwargs
    )
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # Without --sdist/--wheel, build makes the sdist and then the wheel from it: a file
    # missing from the sdist is missing from the wheel too.
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh virtualenv with the wheel and what it requires, nothing else."""
    path = tmp_path_factory.mktemp("venv") / "v"
    _run(sys.executable, "-m", "venv", path)
    _run(
        path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel
    )
    return path


def _in_venv(venv: Path, code: str) -> Any:
    """Run ``code`` in the venv's Python, away from this checkout; it prints JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = _run(venv / "bin" / "python", "-I", "-c", code, cwd=venv, env=env)
    return json.loads(result.stdout)


def test_build_makes_an_sdist_and_a_wheel(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert names == [
        f"{PACKAGE}-{VERSION}-py3-none-any.whl",
        f"{PACKAGE}-{VERSION}.tar.gz",
    ]


def test_wheel_passes_check_wheel_contents(wheel: Path) -> None:
    result = _run(Path(sys.executable).parent / "check-wheel-contents", wheel)
    assert "OK" in result.stdout


def test_wheel_and_sdist_hold_every_data_file(dist: Path, wheel: Path) -> None:
    expected = _data_files()
    assert {f.split("/")[0] for f in expected} == set(DATA_DIRS)
    in_wheel = {n.removeprefix(f"{PACKAGE}/") for n in zipfile.ZipFile(wheel).namelist()}
    assert expected <= in_wheel
    (sdist,) = dist.glob("*.tar.gz")
    prefix = f"{PACKAGE}-{VERSION}/"
    with tarfile.open(sdist) as tar:
        in_sdist = {m.name.removeprefix(prefix) for m in tar.getmembers()}
    assert {f"{PACKAGE}/{f}" for f in expected} <= in_sdist
    assert {"README.md", "setup.cfg", "pyproject.toml"} <= in_sdist
    # The wheel holds the package only: no tests, benchmarks or scripts beside it.
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {PACKAGE, f"{PACKAGE}-{VERSION}.dist-info"}


def test_installed_package_has_its_data_files(venv: Path) -> None:
    installed = _in_venv(
        venv,
        "import json, synapse_email_gate, pathlib;"
        "root = pathlib.Path(synapse_email_gate.__file__).parent;"
        f"print(json.dumps({{'root': str(root), 'files': sorted("
        f"p.relative_to(root).as_posix() for d in {DATA_DIRS!r} "
        "for p in (root / d).rglob('*') if p.is_file())}))",
    )
    assert Path(installed["root"]).is_relative_to(venv), "imported from outside the venv"
    assert set(installed["files"]) == _data_files()


def test_installed_templates_and_translations_load(venv: Path) -> None:
    loaded = _in_venv(
        venv,
        "import json, pathlib, jinja2, yaml, synapse_email_gate;"
        "root = pathlib.Path(synapse_email_gate.__file__).parent;"
        "env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root / 'templates')));"
        "t = [env.get_template(p.name).name for p in (root / 'templates').iterdir()];"
        "l = {p.stem: len(yaml.safe_load(p.read_text()))"
        " for p in (root / 'translations').glob('*.yaml')};"
        "print(json.dumps({'templates': t, 'languages': l}))",
    )
    assert len(loaded["templates"]) == len(list((ROOT / PACKAGE / "templates").iterdir()))
    assert "en" in loaded["languages"]
    assert all(count > 0 for count in loaded["languages"].values())


def test_installed_command_runs(venv: Path, tmp_path: Path) -> None:
    command = venv / "bin" / "synapse-email-gate"
    assert command.exists()
    helped = _run(command, "--help", cwd=tmp_path)
    assert "check-config" in helped.stdout
    config = tmp_path / "homeserver.yaml"
    config.write_text(
        "enable_registration: true\nregistration_requires_token: true\nmodules:\n"
        "  - module: synapse_email_gate.EmailGate\n"
        "    config: {smtp: {host: 127.0.0.1, port: 2525, tls: none}, sender: gate@example.org}\n"
    )
    checked = _run(command, "check-config", config, cwd=tmp_path)
    assert "config is valid" in checked.stdout


def test_fresh_venv_holds_only_the_runtime_dependencies(venv: Path) -> None:
    _run(venv / "bin" / "python", "-m", "pip", "check")
    listed = _run(venv / "bin" / "python", "-m", "pip", "list", "--format=json")
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert NAME in installed
    for requirement in _requirements("options", "install_requires"):
        assert requirement.name.lower() in installed, requirement
    assert not installed & set(TEST_ONLY)
    declared = _in_venv(
        venv,
        f"import json, importlib.metadata as m; print(json.dumps(m.requires({NAME!r})))",
    )
    runtime = [r for r in declared if "extra ==" not in r]
    assert sorted(Requirement(r).name for r in runtime) == sorted(
        r.name for r in _requirements("options", "install_requires")
    )


def test_no_dependency_pins_what_synapse_pins(venv: Path) -> None:
    """An upper bound or == on a package Synapse also requires could make pip refuse to
    install the module beside some Synapse release, or downgrade Synapse's own."""
    synapse_requires = _in_venv(
        venv,
        "import json, importlib.metadata as m; print(json.dumps(m.requires('matrix-synapse')))",
    )
    shared = {Requirement(r).name.lower() for r in synapse_requires}
    for requirement in _requirements("options", "install_requires"):
        if requirement.name.lower() in shared:
            for spec in requirement.specifier:
                assert spec.operator == ">=", f"{requirement} narrows what Synapse allows"


class InstalledSynapse(SynapseServer):
    """Synapse run by the venv's Python, with nothing of this checkout importable."""

    def __init__(self, python: Path, *args: Any, **kwargs: Any) -> None:
        self.python = python
        super().__init__(*args, **kwargs)

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def _synapse_cmd(self, *args: str) -> list[str]:
        return [
            str(self.python),
            "-I",
            "-m",
            "synapse.app.homeserver",
            "-c",
            str(self.config_file),
            *args,
        ]


@pytest.fixture(scope="module")
def installed_synapse(venv: Path, smtp: SmtpCatcher) -> Iterator[SynapseServer]:
    server = InstalledSynapse(venv / "bin" / "python", module_config_for(smtp, {}))
    try:
        server.start(timeout=60)
        yield server
    finally:
        server.close()


def test_synapse_runs_the_module_from_the_wheel(
    installed_synapse: SynapseServer, mailbox: SmtpCatcher
) -> None:
    page = http.get(installed_synapse.gate_url)
    assert page.status == 200
    assert 'name="username"' in page.text
    css = re.search(r'href="([^"]+/static/email_gate\.css)"', page.text)
    assert css is not None
    assert http.get(installed_synapse.url(css.group(1))).status == 200
    token = request_token(installed_synapse, mailbox, "wheelie", "wheelie@example.org")
    assert registered(register(installed_synapse, "wheelie", token))

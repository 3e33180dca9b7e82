"""The deployment recipes in contrib/ and docs/deployment.md, checked as far as this
machine can: the YAML parses, the module and Synapse accept the homeserver config, the
Dockerfile installs this package, nginx and Caddy accept their snippets."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_email_gate import EmailGate

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
DOCKER = CONTRIB / "docker"
DOC = ROOT / "docs" / "deployment.md"
MODULE = "synapse_email_gate.EmailGate"
# The oldest Synapse the module supports (README.md, docs/deployment.md, setup.cfg).
OLDEST_SYNAPSE = (1, 136, 0)


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _module_entries(homeserver: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in homeserver.get("modules") or [] if m.get("module") == MODULE]


def _doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), re.S | re.M)


def _run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, **kwargs
    )


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in tag.lstrip("v").split("."))


# --- Docker ------------------------------------------------------------------------------


def test_compose_file_has_synapse_postgres_and_a_mail_catcher() -> None:
    compose = _load(DOCKER / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"synapse", "postgres", "mail"}
    synapse = services["synapse"]
    assert synapse["build"] == "."
    assert (DOCKER / synapse["build"] / "Dockerfile").is_file()
    assert set(synapse["depends_on"]) == {"postgres", "mail"}
    assert synapse["depends_on"]["postgres"]["condition"] == "service_healthy"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in synapse["volumes"]}
    assert synapse["environment"]["SYNAPSE_CONFIG_PATH"] in mounts
    for source in mounts.values():
        if source.startswith("./"):
            assert (DOCKER / source).is_file(), source
    assert mounts["/data"] in compose["volumes"]
    # Synapse refuses a database that does not collate as C.
    initdb = services["postgres"]["environment"]["POSTGRES_INITDB_ARGS"]
    assert "--lc-collate=C" in initdb and "--lc-ctype=C" in initdb
    # A try-out: nothing published beyond loopback.
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port


def _compose_homeserver() -> dict[str, Any]:
    compose = _load(DOCKER / "docker-compose.yml")
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["services"]["synapse"]["volumes"]}
    path = compose["services"]["synapse"]["environment"]["SYNAPSE_CONFIG_PATH"]
    homeserver: dict[str, Any] = _load(DOCKER / mounts[path])
    return homeserver


def test_compose_homeserver_config_matches_the_services() -> None:
    compose = _load(DOCKER / "docker-compose.yml")
    homeserver = _compose_homeserver()
    postgres_env = compose["services"]["postgres"]["environment"]
    db = homeserver["database"]
    assert db["name"] == "psycopg2"
    assert db["args"]["host"] == "postgres"
    assert db["args"]["user"] == postgres_env["POSTGRES_USER"]
    assert db["args"]["password"] == postgres_env["POSTGRES_PASSWORD"]
    assert db["args"]["dbname"] == postgres_env["POSTGRES_DB"]
    published = compose["services"]["synapse"]["ports"][0].split(":")
    assert [listener["port"] for listener in homeserver["listeners"]] == [int(published[-1])]
    assert all(listener["x_forwarded"] is False for listener in homeserver["listeners"])
    assert homeserver["enable_registration"] is True
    assert homeserver["registration_requires_token"] is True
    (entry,) = _module_entries(homeserver)
    smtp = entry["config"]["smtp"]
    assert smtp["host"] == "mail"
    # Mailpit's SMTP port, without TLS.
    assert (smtp["port"], smtp["tls"]) == (1025, "none")
    # Synapse writes its state into the volume.
    for key in ("signing_key_path", "media_store_path", "pid_file"):
        assert homeserver[key].startswith("/data/"), key


def _local_copy(homeserver: dict[str, Any], tmp_path: Path) -> Path:
    """The compose homeserver.yaml with its container paths moved under tmp_path."""
    text = yaml.safe_dump(homeserver)
    text = text.replace("/config/", f"{DOCKER}/").replace("/data/", f"{tmp_path}/")
    path = tmp_path / "homeserver.yaml"
    path.write_text(text)
    return path


def test_compose_homeserver_config_loads_the_module_config() -> None:
    (entry,) = _module_entries(_compose_homeserver())
    config = EmailGate.parse_config(entry["config"])
    assert config.smtp.host == "mail"
    assert config.policy_file == "/config/email_gate_policy.yaml"


def test_compose_homeserver_config_passes_check_config(tmp_path: Path) -> None:
    path = _local_copy(_compose_homeserver(), tmp_path)
    result = _run(
        Path(sys.executable).parent / "synapse-email-gate", "check-config", "--json", path
    )
    report = json.loads(result.stdout)
    assert report["valid"] is True, report
    assert report["warnings"] == [], report


def test_compose_homeserver_config_passes_synapse(tmp_path: Path) -> None:
    path = _local_copy(_compose_homeserver(), tmp_path)
    keys = _run(sys.executable, "-m", "synapse.app.homeserver", "-c", path, "--generate-keys")
    assert keys.returncode == 0, keys.stderr
    parsed = _run(sys.executable, "-m", "synapse.config", "-c", path)
    assert parsed.returncode == 0, parsed.stderr
    assert "Config parses OK!" in parsed.stdout


def test_dockerfile_installs_this_package_on_the_official_image() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    (base,) = re.findall(r"^FROM (\S+)$", text, re.M)
    assert base == "matrixdotorg/synapse:${SYNAPSE_VERSION}"
    assert _version(args["SYNAPSE_VERSION"]) >= OLDEST_SYNAPSE
    (pip,) = re.findall(r"^RUN pip install (.+)$", text, re.M)
    assert pip == '--no-cache-dir "synapse-email-gate==${EMAIL_GATE_VERSION}"'
    meta = _setup_cfg()["metadata"]
    assert meta["name"] == "synapse-email-gate"
    assert args["EMAIL_GATE_VERSION"] == meta["version"]


def test_docs_quote_the_dockerfile() -> None:
    (block,) = _doc_blocks("dockerfile")
    dockerfile = (DOCKER / "Dockerfile").read_text().splitlines()
    for line in block.splitlines():
        assert line in dockerfile, line


# --- Debian package, ansible playbook: the YAML in the doc ---------------------------------


def _doc_yaml() -> list[dict[str, Any]]:
    return [yaml.safe_load(block) for block in _doc_blocks("yaml")]


def test_debian_conf_d_snippet_loads_the_module_config() -> None:
    (snippet,) = [d for d in _doc_yaml() if "modules" in d]
    assert snippet["enable_registration"] is True
    assert snippet["registration_requires_token"] is True
    (entry,) = _module_entries(snippet)
    assert EmailGate.parse_config(entry["config"]).trusted_proxies


def test_ansible_vars_install_the_package_and_load_the_module_config(tmp_path: Path) -> None:
    (ansible,) = [d for d in _doc_yaml() if "matrix_synapse_modules" in d]
    assert ansible["matrix_synapse_container_image_customizations_enabled"] is True
    body = ansible["matrix_synapse_container_image_customizations_dockerfile_body_custom"]
    meta = _setup_cfg()["metadata"]
    assert body.strip() == f"RUN pip install --no-cache-dir {meta['name']}=={meta['version']}"
    assert ansible["matrix_synapse_enable_registration"] is True
    assert ansible["matrix_synapse_registration_requires_token"] is True
    forwarded = [k for k in ansible if k.endswith("_x_forwarded")]
    assert len(forwarded) == 3 and not any(ansible[k] for k in forwarded)
    (entry,) = [m for m in ansible["matrix_synapse_modules"] if m["module"] == MODULE]
    config = dict(entry["config"])
    secret = tmp_path / "smtp_password"
    secret.write_text("s3cret\n")
    # The password file lives inside the container; here a stand-in.
    config["smtp"] = {**config["smtp"], "password_file": str(secret)}
    parsed = EmailGate.parse_config(config)
    assert parsed.trusted_proxies


# --- reverse proxies -----------------------------------------------------------------------


def nginx_t(tmp_path: Path, snippet: str, server_name: str) -> None:
    """`nginx -t` of a site snippet: its certificate files (which nginx -t opens)
    replaced by stand-ins made here for `server_name`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = _run(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", f"/CN={server_name}", "-keyout", key, "-out", cert,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    site = re.sub(r"ssl_certificate (\S+);", f"ssl_certificate {cert};", snippet)
    site = re.sub(r"ssl_certificate_key (\S+);", f"ssl_certificate_key {key};", site)
    assert site.count(str(tmp_path)) == 2
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {tmp_path}/site.conf;\n}}\n"
    )
    result = _run(nginx, "-t", "-p", f"{tmp_path}/", "-c", tmp_path / "nginx.conf")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_snippet_passes_nginx_t(tmp_path: Path) -> None:
    snippet = (CONTRIB / "nginx" / "matrix.conf").read_text()
    assert re.search(r"location ~ \^\(/_matrix\|/_synapse/client\)", snippet)
    assert "/_synapse/admin" not in snippet.split("location", 1)[1]
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in snippet
    nginx_t(tmp_path, snippet, "matrix.example.org")


def test_join_nginx_snippet_passes_nginx_t(tmp_path: Path) -> None:
    snippet = (CONTRIB / "nginx" / "join.conf").read_text()
    assert "proxy_pass http://127.0.0.1:8008/_synapse/client/email_gate/;" in snippet
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in snippet
    nginx_t(tmp_path, snippet, "join.example.org")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()]


@pytest.mark.parametrize(("index", "name"), [(0, "matrix.conf"), (1, "join.conf")])
def test_nginx_snippets_in_the_doc_are_the_contrib_files(index: int, name: str) -> None:
    blocks = _doc_blocks("nginx")
    assert len(blocks) == 2
    contrib = _lines(CONTRIB / "nginx" / name)
    for line in blocks[index].splitlines():
        assert line.strip() in contrib, line


def test_caddyfile_passes_caddy_validate(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    assert caddy is not None, "caddy is installed by scripts/test.sh (Debian package)"
    caddyfile = CONTRIB / "caddy" / "Caddyfile"
    text = caddyfile.read_text()
    assert "reverse_proxy /_matrix/* 127.0.0.1:8008" in text
    assert "reverse_proxy /_synapse/client/* 127.0.0.1:8008" in text
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = _run(caddy, "validate", "--adapter", "caddyfile", "--config", caddyfile, env=env)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr
    formatted = _run(caddy, "fmt", caddyfile, env=env)
    assert formatted.stdout == text, "caddy fmt would change the Caddyfile"


@pytest.mark.parametrize(("index", "name"), [(0, "Caddyfile"), (1, "join.Caddyfile")])
def test_caddyfiles_in_the_doc_are_the_contrib_files(index: int, name: str) -> None:
    blocks = _doc_blocks("caddy")
    assert len(blocks) == 2
    contrib = _lines(CONTRIB / "caddy" / name)
    for line in blocks[index].splitlines():
        assert line.strip() in contrib, line


def test_join_caddyfile_passes_caddy_validate(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    assert caddy is not None, "caddy is installed by scripts/test.sh (Debian package)"
    caddyfile = CONTRIB / "caddy" / "join.Caddyfile"
    text = caddyfile.read_text()
    assert "rewrite * /_synapse/client/email_gate{uri}" in text
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = _run(caddy, "validate", "--adapter", "caddyfile", "--config", caddyfile, env=env)
    assert result.returncode == 0, result.stderr
    formatted = _run(caddy, "fmt", caddyfile, env=env)
    assert formatted.stdout == text, "caddy fmt would change the Caddyfile"


@pytest.mark.parametrize("name", ["README.md", "docs/deployment.md"])
def test_docs_name_the_supported_range(name: str) -> None:
    oldest = ".".join(map(str, OLDEST_SYNAPSE))
    assert oldest in (ROOT / name).read_text()
    requires = _setup_cfg()["options"]["install_requires"]
    assert f"matrix-synapse>={oldest}" in requires


def test_test_command_runs_the_oldest_synapse() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    (tested,) = re.findall(r'OLDEST_SYNAPSE="\$\{OLDEST_SYNAPSE:-([0-9.]+)\}"', script)
    assert _version(tested) == OLDEST_SYNAPSE
    assert 'SYNAPSE_PIN="matrix-synapse==$OLDEST_SYNAPSE"' in script
    assert "tests/integration" in script.split("OLDEST_SYNAPSE=", 1)[1]

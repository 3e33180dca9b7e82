"""The Caddy recipe for a sign-up origin, run for real: contrib/caddy/join.Caddyfile
(its site address and upstream pointed at this test's ports) in front of a real
Synapse whose module has `public_url` on Caddy's origin. The page, its files and the
username check come through, a form post with the page's cookie works, and the
mail's link is on the sign-up origin and opens the landing page there."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import http
from tests.harness.ports import free_port
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import REPO_ROOT, SynapseServer

RECIPE = REPO_ROOT / "contrib" / "caddy" / "join.Caddyfile"


@pytest.fixture(scope="module")
def join_url() -> str:
    return f"http://localhost:{free_port()}/"


@pytest.fixture(scope="module")
def gate_config(join_url: str) -> dict[str, Any]:
    return {
        "public_url": join_url,
        "trusted_proxies": ["127.0.0.1", "::1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
    }


def caddyfile_for_test(recipe: str, site: str, upstream: int) -> str:
    """The recipe with this test's site address and upstream, no admin endpoint."""
    text = recipe.replace("join.example.org {", f"{site} {{")
    text = text.replace("127.0.0.1:8008", f"127.0.0.1:{upstream}")
    assert "8008" not in text and site in text
    return "{\n\tadmin off\n}\n\n" + text


@pytest.fixture(scope="module")
def caddy(
    synapse: SynapseServer, join_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("caddy")
    assert binary is not None, "caddy is installed by scripts/test.sh (Debian package)"
    folder = tmp_path_factory.mktemp("caddy")
    config = folder / "Caddyfile"
    config.write_text(caddyfile_for_test(RECIPE.read_text(), join_url.rstrip("/"), synapse.port))
    env = {"HOME": str(folder), "XDG_DATA_HOME": str(folder), "XDG_CONFIG_HOME": str(folder)}
    log = (folder / "caddy.log").open("w")
    process = subprocess.Popen(
        [binary, "run", "--adapter", "caddyfile", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                if http.get(join_url + "static/email_gate.css", timeout=2).status == 200:
                    break
            assert process.poll() is None, (folder / "caddy.log").read_text()
            assert time.monotonic() < deadline, (folder / "caddy.log").read_text()
            time.sleep(0.05)  # polling for the listener, with the deadline above
        yield join_url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_a_form_post_through_caddy_mails_a_link_on_the_sign_up_origin(
    caddy: str, mailbox: SmtpCatcher
) -> None:
    page = http.get(caddy)
    assert page.status == 200, page
    assert 'action="/"' in page.text
    assert 'href="/static/email_gate.css"' in page.text
    cookie = page.header("Set-Cookie") or ""
    assert "Path=/;" in cookie and "Domain" not in cookie
    available = http.get(caddy + "_matrix/client/v3/register/available?username=caddyjoin")
    assert available.status == 200, available
    assert http.get(caddy + "admin").status == 404

    (csrf,) = re.findall(r'name="csrf" value="([^"]+)"', page.text)
    sent = http.post(
        caddy,
        form={"csrf": csrf, "lang": "en", "username": "caddyjoin", "email": "cj@example.org"},
        cookies={"email_gate_csrf": page.cookies["email_gate_csrf"]},
    )
    assert sent.status == 202, sent
    mail = mailbox.wait_for(lambda m: m.to == "cj@example.org")
    (link,) = set(re.findall(r"https?://\S+register\?token=[A-Za-z0-9]+", mail.text))
    assert link.startswith(caddy + "register?token="), mail.text
    landing = http.get(link)
    assert landing.status == 200, landing
    assert "@caddyjoin:test.local" in landing.text


def test_the_caddyfile_in_the_test_is_the_shipped_one_but_for_ports() -> None:
    shipped = RECIPE.read_text()
    tested = caddyfile_for_test(shipped, "http://localhost:1234", 5678).splitlines()
    for line in shipped.splitlines():
        if "join.example.org {" not in line and "8008" not in line:
            assert line in tested, line
    assert Path(RECIPE).is_file()

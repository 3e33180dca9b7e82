"""The sign-up origin for real: nginx runs contrib/nginx/join.conf (its listen and
upstream lines pointed at this test's ports) in front of a real Synapse whose module
has `public_url` on nginx's origin. In Chromium the request page loads through the
proxy with its stylesheet and favicon, the live username check and the form post
work (cookies, CSRF), the mail's link is on the sign-up origin, and its landing
page makes the account; invite links and the JSON API use that origin too."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response, expect

from tests.harness import http
from tests.harness.ports import free_port
from tests.harness.smtp import SmtpCatcher
from tests.harness.synapse import REPO_ROOT, SynapseServer
from tests.integration.helpers import login

SYNAPSE_DATABASES = ["sqlite"]
RECIPE = REPO_ROOT / "contrib" / "nginx" / "join.conf"
PASSWORD = "walnut harbour comet velvet"


@pytest.fixture(scope="module")
def join_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def join_url(join_port: int) -> str:
    # "localhost", not Synapse's 127.0.0.1: another origin for the browser.
    return f"http://localhost:{join_port}/"


@pytest.fixture(scope="module")
def gate_config(join_url: str) -> dict[str, Any]:
    return {
        "public_url": join_url,
        "trusted_proxies": ["127.0.0.1"],
        "rate_limits": {"per_ip": {"burst": 1000, "per_second": 100}},
        "password": {"min_length": 10, "min_score": 3},
    }


def site_for_test(recipe: str, port: int, upstream: int) -> str:
    """The recipe with this machine's listen address and upstream; the rest as shipped."""
    lines = [line for line in recipe.splitlines() if not line.lstrip().startswith("#")]
    site = "\n".join(lines).replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port};")
    site = re.sub(r"\n\s*listen \[::\]:443 ssl http2;", "", site)
    site = re.sub(r"\n\s*ssl_certificate(_key)? \S+;", "", site)
    site = site.replace("server_name join.example.org;", "server_name localhost;")
    site = site.replace("http://127.0.0.1:8008", f"http://127.0.0.1:{upstream}")
    assert "443" not in site and "8008" not in site
    return site


@pytest.fixture(scope="module")
def nginx(
    synapse: SynapseServer, join_port: int, join_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    folder = tmp_path_factory.mktemp("nginx")
    (folder / "site.conf").write_text(site_for_test(RECIPE.read_text(), join_port, synapse.port))
    temp = "".join(
        f"    {kind}_temp_path {folder}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (folder / "nginx.conf").write_text(
        f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log {folder}/access.log;\n{temp}"
        f"    include {folder}/site.conf;\n}}\n"
    )
    process = subprocess.Popen(
        [binary, "-p", f"{folder}/", "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if http.get(join_url + "static/email_gate.css", timeout=2).status == 200:
                    break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, (folder / "error.log").read_text()
            time.sleep(0.05)  # polling for the listener, with the deadline above
        yield join_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_page_and_the_registration_work_through_the_sign_up_origin(
    synapse: SynapseServer,
    nginx: str,
    mailbox: SmtpCatcher,
    new_page: Callable[..., Page],
) -> None:
    page = new_page()
    answers: list[Response] = []
    page.on("response", lambda answer: answers.append(answer))
    page.goto(nginx)
    expect(page.get_by_role("heading", name="Create an account")).to_be_visible()
    # The stylesheet came through the proxy: the page has the theme's background.
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(235, 219, 178)"
    assert page.locator("form").get_attribute("action") == "/"

    page.get_by_label("Username").fill("joiner")
    # The live check asks /_matrix/client/v3/register/available on this origin.
    expect(page.locator("#username-status")).to_contain_text("is free")
    page.get_by_label("Email address").fill("joiner@example.org")
    with page.expect_navigation():
        page.get_by_role("button", name="Send me a token").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    (csrf,) = [c for c in page.context.cookies() if c["name"] == "email_gate_csrf"]
    assert (csrf["domain"], csrf["path"]) == ("localhost", "/")

    mail = mailbox.wait_for(lambda m: m.to == "joiner@example.org")
    links = re.findall(r"https?://\S+token=[A-Za-z0-9]+", mail.text)
    assert links and all(link.startswith(nginx + "register?token=") for link in links), mail.text
    page.goto(links[0])
    expect(page.locator("#user-id")).to_have_text("@joiner:test.local")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", name="Your account is ready")).to_be_visible()
    assert login(synapse, "joiner", PASSWORD).status == 200

    failed = [f"{r.status} {r.url}" for r in answers if r.status >= 400]
    assert failed == []
    assert all(r.url.startswith(nginx) for r in answers), [r.url for r in answers]
    log: list[str] = page.page_log  # type: ignore[attr-defined]
    assert [line for line in log if line.startswith(("error:", "pageerror:"))] == []


def test_invite_links_and_the_json_api_use_the_sign_up_origin(
    synapse: SynapseServer, nginx: str, admin_token: str
) -> None:
    made = http.post(
        synapse.gate_url + "admin/tokens",
        json={"uses_allowed": 1},
        headers=synapse.auth_headers(admin_token),
    )
    assert made.status == 201, made
    link: str = made.json()["link"]
    assert link.startswith(nginx + "register?token="), link
    landing = http.get(link)
    assert landing.status == 200, landing
    assert 'action="/register"' in landing.text

    origin = nginx.rstrip("/")
    asked = http.post(
        nginx + "api/request",
        json={"username": "apijoiner", "email": "apijoiner@example.org"},
        headers={"Origin": origin},
    )
    assert asked.status == 202, asked
    elsewhere = http.post(
        nginx + "api/request",
        json={"username": "apijoiner2", "email": "apijoiner2@example.org"},
        headers={"Origin": "https://evil.example"},
    )
    assert elsewhere.status == 403, elsewhere
    # Moderation is not on the sign-up origin.
    assert http.get(nginx + "admin").status == 404


def test_the_recipe_in_the_test_is_the_shipped_one_but_for_ports() -> None:
    shipped = RECIPE.read_text()
    site = site_for_test(shipped, 1234, 5678)
    kept = [
        line
        for line in shipped.splitlines()
        if "443" not in line and "ssl_" not in line and not line.lstrip().startswith("#")
    ]
    changed = {"    server_name join.example.org;"}
    for line in kept:
        if line not in changed and "8008" not in line:
            assert line in site.splitlines(), line
    assert Path(RECIPE).is_file()

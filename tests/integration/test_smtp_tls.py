"""SMTP security through the real module in a real Synapse: STARTTLS and implicit
TLS with a private CA (`smtp.ca_file`) and AUTH (password inline or from
`password_file`); a certificate from an unknown CA and a server that does not
offer STARTTLS are refused: nothing is sent, the failure is logged and the mail
stays queued for a retry. SMTP does not depend on the database: SQLite only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.smtp import SmtpCatcher, TlsMode
from tests.harness.synapse import SynapseServer
from tests.integration.helpers import ask, token_from

USER, PASSWORD = "gate-sender", "pa55-w0rd-Ünïcode"

MakeSynapse = Callable[..., SynapseServer]


@pytest.fixture
def catcher(request: pytest.FixtureRequest) -> Iterator[SmtpCatcher]:
    tls, auth = request.param
    with SmtpCatcher(tls=tls, auth=(USER, PASSWORD) if auth else None) as c:
        yield c


def smtp_config(catcher: SmtpCatcher, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": catcher.host,
        "port": catcher.port,
        "tls": catcher.tls,
        "timeout": 5,
    }
    if catcher.ca_file:
        config["ca_file"] = catcher.ca_file
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def outbox(synapse: SynapseServer, localpart: str) -> tuple[str, int, str | None]:
    rows = synapse.query(
        """
        SELECT o.status, o.attempts, o.last_error
        FROM email_gate_outbox o JOIN email_gate_requests r ON r.id = o.request_id
        WHERE r.localpart = ?
        """,
        (localpart,),
    )
    assert len(rows) == 1, rows
    status, attempts, error = rows[0]
    return str(status), int(attempts), error


def wait_attempted(synapse: SynapseServer, localpart: str, timeout: float = 15) -> str:
    """The error of the first failed attempt at ``localpart``'s mail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = synapse.query(
            """
            SELECT o.last_error FROM email_gate_outbox o
            JOIN email_gate_requests r ON r.id = o.request_id WHERE r.localpart = ?
            """,
            (localpart,),
        )
        if rows and rows[0][0]:
            return str(rows[0][0])
        time.sleep(0.05)
    raise AssertionError(f"no failed attempt for {localpart} within {timeout}s")


def deliver(synapse: SynapseServer, catcher: SmtpCatcher, name: str) -> None:
    email = f"{name}@example.org"
    answer = ask(synapse, name, email)
    assert answer.status == 202, answer
    mail = catcher.wait_for_rcpt(email, timeout=15)
    assert token_from(mail)
    assert f"@{name}:test.local" in mail.text
    assert outbox(synapse, name)[0] in ("queued", "sent")


@pytest.mark.parametrize(
    ("catcher", "tls"),
    [(("starttls", True), "starttls"), (("tls", True), "tls")],
    indirect=["catcher"],
    ids=["starttls", "implicit-tls"],
)
def test_tls_with_a_private_ca_and_auth_with_an_inline_password(
    catcher: SmtpCatcher, tls: TlsMode, make_synapse: MakeSynapse
) -> None:
    config = smtp_config(catcher, username=USER, password=PASSWORD)
    synapse = make_synapse({"smtp": config})
    deliver(synapse, catcher, f"inline{tls}")
    (mail,) = catcher.messages
    assert mail.tls
    assert mail.login == USER
    assert PASSWORD not in synapse.log_text()


@pytest.mark.parametrize("catcher", [("starttls", True)], indirect=True)
def test_starttls_with_the_password_from_a_file(
    catcher: SmtpCatcher, make_synapse: MakeSynapse, tmp_path: Path
) -> None:
    password_file = tmp_path / "smtp_password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    config = smtp_config(catcher, username=USER, password_file=str(password_file))
    synapse = make_synapse({"smtp": config})
    deliver(synapse, catcher, "fromfile")
    (mail,) = catcher.messages
    assert mail.tls and mail.login == USER


@pytest.mark.parametrize("catcher", [("starttls", True)], indirect=True)
def test_a_wrong_password_is_not_accepted_and_the_mail_stays_queued(
    catcher: SmtpCatcher, make_synapse: MakeSynapse
) -> None:
    config = smtp_config(catcher, username=USER, password="not-the-password")
    synapse = make_synapse({"smtp": config})
    assert ask(synapse, "wrongpw", "wrongpw@example.org").status == 202
    error = wait_attempted(synapse, "wrongpw")
    assert "535" in error or "Authentication" in error, error
    assert "not-the-password" not in error
    assert "not-the-password" not in synapse.log_text()
    assert outbox(synapse, "wrongpw")[0] == "queued"
    assert catcher.messages == []


@pytest.mark.parametrize(
    "catcher", [("starttls", False), ("tls", False)], indirect=True, ids=["starttls", "tls"]
)
def test_a_certificate_from_an_unknown_ca_is_refused(
    catcher: SmtpCatcher, make_synapse: MakeSynapse
) -> None:
    # No ca_file: the system's CAs, which do not know the catcher's throwaway CA.
    synapse = make_synapse({"smtp": smtp_config(catcher, ca_file=None)})
    assert ask(synapse, "unknownca", "unknownca@example.org").status == 202
    error = wait_attempted(synapse, "unknownca")
    assert "CERTIFICATE_VERIFY_FAILED" in error, error
    status, attempts, _ = outbox(synapse, "unknownca")
    assert (status, attempts) == ("queued", 1)  # retried later (30 s), not sent
    time.sleep(0.5)
    assert catcher.messages == []
    log = synapse.log_text()
    assert "mail not sent (attempt 1)" in log
    assert "CERTIFICATE_VERIFY_FAILED" in log


def test_starttls_required_but_not_offered_is_refused(
    smtp: SmtpCatcher, make_synapse: MakeSynapse
) -> None:
    smtp.clear()
    smtp.accept()
    # The module's plain catcher offers no STARTTLS; the module insists on it.
    synapse = make_synapse({"smtp": smtp_config(smtp, tls="starttls")})
    assert ask(synapse, "nostarttls", "nostarttls@example.org").status == 202
    error = wait_attempted(synapse, "nostarttls")
    assert "STARTTLS" in error.upper(), error
    assert outbox(synapse, "nostarttls")[0] == "queued"
    time.sleep(0.5)
    assert smtp.messages == []
    assert "mail not sent (attempt 1)" in synapse.log_text()


def test_without_a_sender_the_default_from_is_a_valid_header(
    smtp: SmtpCatcher, make_synapse: MakeSynapse
) -> None:
    """The default sender names the server: `"test.local" <noreply@test.local>`.
    A dot in an unquoted display name would make every mail unbuildable."""
    smtp.clear()
    smtp.accept()
    synapse = make_synapse({"smtp": smtp_config(smtp)}, raw=True)
    deliver(synapse, smtp, "defaultsender")
    mail = smtp.wait_for_rcpt("defaultsender@example.org")
    assert mail.message["From"] == '"test.local" <noreply@test.local>'
    assert mail.mail_from == "noreply@test.local"

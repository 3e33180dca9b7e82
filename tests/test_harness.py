"""The harness itself: mail catcher, private PostgreSQL, real Synapse."""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from tests.harness import http
from tests.harness.postgres import PostgresCluster
from tests.harness.smtp import SmtpCatcher, TlsMode
from tests.harness.synapse import SynapseServer


def _message(to: str = "bob@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "gate@test.local"
    msg["To"] = to
    msg["Subject"] = "Your token"
    msg.set_content("token: abc123 for @bob:test.local ☃")
    msg.add_alternative("<p>token: <b>abc123</b></p>", subtype="html")
    return msg


def _client(catcher: SmtpCatcher) -> smtplib.SMTP:
    ctx = ssl.create_default_context(cafile=catcher.ca_file) if catcher.ca_file else None
    if catcher.tls == "tls":
        return smtplib.SMTP_SSL(catcher.host, catcher.port, context=ctx, timeout=10)
    client = smtplib.SMTP(catcher.host, catcher.port, timeout=10)
    if catcher.tls == "starttls":
        client.starttls(context=ctx)
    return client


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


class TestSmtpCatcher:
    @pytest.mark.parametrize("tls", ["none", "starttls", "tls"])
    def test_smtp_catcher_receives(self, tls: TlsMode) -> None:
        with SmtpCatcher(tls=tls) as catcher, _client(catcher) as client:
            client.send_message(_message())
            (mail,) = catcher.wait_for_messages(1, timeout=5)
            assert mail.rcpt_tos == ["bob@example.org"]
            assert mail.mail_from == "gate@test.local"
            assert "abc123 for @bob:test.local ☃" in mail.text
            assert mail.html is not None and "<b>abc123</b>" in mail.html
            assert catcher.wait_for_rcpt("BOB@example.org") is mail
            catcher.clear()
            with pytest.raises(AssertionError, match="expected 1 mail"):
                catcher.wait_for_messages(1, timeout=0.2)

    @pytest.mark.parametrize("tls", ["none", "starttls", "tls"])
    def test_smtp_catcher_auth(self, tls: TlsMode) -> None:
        with SmtpCatcher(tls=tls, auth=("gate", "s3cret")) as catcher:
            with _client(catcher) as client, pytest.raises(smtplib.SMTPSenderRefused) as err:
                client.send_message(_message())
            assert err.value.smtp_code == 530
            with _client(catcher) as client, pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("gate", "wrong")
            with _client(catcher) as client:
                client.login("gate", "s3cret")
                client.send_message(_message())
            assert catcher.wait_for_messages(1)[0].login == "gate"
            assert catcher.config()["username"] == "gate"

    def test_smtp_catcher_refuses_then_recovers(self) -> None:
        with SmtpCatcher() as catcher:
            catcher.refuse()
            with _client(catcher) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as err:
                client.send_message(_message())
            assert err.value.recipients["bob@example.org"][0] == 451
            catcher.accept()
            catcher.stop()  # a full outage: nothing listens
            with pytest.raises(OSError):
                _client(catcher)
            catcher.start()  # back on the same port
            with _client(catcher) as client:
                client.send_message(_message())
            catcher.wait_for_messages(1)


class TestPostgres:
    def test_postgres_cluster(self, postgres: PostgresCluster) -> None:
        name = postgres.create_database("harness_check")
        conn = postgres.connect(name)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT current_user, pg_encoding_to_char(encoding), datcollate "
                    "FROM pg_database WHERE datname = current_database()"
                )
                assert cur.fetchone() == ("postgres", "UTF8", "C")
        finally:
            conn.close()


class TestSynapse:
    @pytest.mark.parametrize("db", ["sqlite", "postgres"])
    def test_synapse_starts_and_stops(
        self, db: str, make_synapse: Callable[..., SynapseServer], smtp: SmtpCatcher
    ) -> None:
        server: SynapseServer = make_synapse({}, db=db, metrics=True)
        assert server.module_config["smtp"] == {
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "none",
        }
        assert http.get(server.url("/health")).text == "OK"
        versions = http.get(server.url("/_matrix/client/versions"))
        assert versions.status == 200 and "v1.1" in versions.json()["versions"]
        assert http.get(server.url("/_matrix/client/v3/account/whoami")).status == 401
        token = server.register_admin("ops", "pw")
        whoami = http.get(
            server.url("/_matrix/client/v3/account/whoami"), headers=server.auth_headers(token)
        )
        assert whoami.json()["user_id"] == "@ops:test.local"
        metrics = http.get(f"http://127.0.0.1:{server.metrics_port}/_synapse/metrics")
        assert metrics.status == 200
        db_line = "psycopg2" if db == "postgres" else "sqlite3"
        assert db_line in server.config_file.read_text()
        assert "Loaded module <synapse_email_gate.module.EmailGate" in server.log_text()
        pid = server.pid
        assert pid is not None
        assert server.stop() == 0
        assert not _pid_alive(pid)
        server.start()
        assert http.get(server.url("/health")).status == 200
        server.kill()
        with pytest.raises(OSError):
            http.get(server.url("/health"), timeout=2)


class TestSynapseFixture:
    """The module-scoped ``synapse`` fixture: one server per database for a module."""

    def test_runs_on_each_database(
        self, synapse: SynapseServer, synapse_db: str, admin_token: str, mailbox: SmtpCatcher
    ) -> None:
        assert synapse.database_engine == synapse_db
        assert synapse.module_config["smtp"]["port"] == mailbox.port
        assert synapse.module_config["sender"]
        whoami = http.get(
            synapse.url("/_matrix/client/v3/account/whoami"),
            headers=synapse.auth_headers(admin_token),
        )
        assert whoami.json()["user_id"] == synapse.user_id("ops")

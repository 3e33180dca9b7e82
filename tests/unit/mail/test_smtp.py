"""build_mail, and send_batch against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import os
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from hypothesis import assume, given
from hypothesis import strategies as st

from synapse_email_gate.mail.mime import OutgoingMail, WireMail, build_mail
from synapse_email_gate.mail.smtp import SendResult, send_batch

ROOT = Path(__file__).resolve().parents[3]
USER, PASSWORD = "gate", "s3cret-pässword"


# --- a real SMTP server ----------------------------------------------------------


@dataclass
class Received:
    peer: Any
    tls: bool
    login: str | None
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Handler:
    """Accepts everything, except recipients whose local part asks otherwise."""

    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local = address.split("@")[0]
        replies = {"rcpt550": "550 5.1.1 No such user", "rcpt451": "451 4.3.0 Try later"}
        if local == "close421":
            return "421 4.3.2 Shutting down"
        if local in replies:
            return replies[local]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        local = envelope.rcpt_tos[0].split("@")[0]
        if local == "data554":
            return "554 5.6.0 Message refused"
        if local == "data451":
            return "451 4.7.1 Greylisted"
        assert isinstance(envelope.content, bytes)
        login = session.auth_data.login.decode() if session.auth_data else None
        tls = server.transport is not None and bool(server.transport.get_extra_info("ssl_object"))
        self.received.append(
            Received(
                peer=session.peer,
                tls=tls,
                login=login,
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=email.message_from_bytes(envelope.content, policy=email.policy.default),
            )
        )
        return "250 Message accepted"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    assert isinstance(auth_data, LoginPassword)
    if auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode():
        return AuthResult(success=True, auth_data=auth_data)
    # A careless server that echoes what it was given, in clear and in base64.
    echo = base64.b64encode(auth_data.password).decode()
    return AuthResult(
        success=False,
        handled=False,
        message=f"535 5.7.8 Bad credentials {auth_data.password.decode()} {echo}",
    )


class _Controller(Controller):
    """Listens on a port the OS picks (port=0)."""

    def _trigger_server(self) -> None:
        server: Any = self.server
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def smtp_server(handler: Handler, **kwargs: Any) -> Iterator[int]:
    controller = _Controller(handler, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@dataclass(frozen=True)
class Settings:
    port: int
    host: str = "127.0.0.1"
    tls: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    verify_certificates: bool = True
    timeout_seconds: float = 5.0


@dataclass
class Pki:
    ca_file: str
    good: ssl.SSLContext  # 127.0.0.1, signed by the CA in ca_file
    wrong_name: ssl.SSLContext  # mail.example.org, same CA
    untrusted: ssl.SSLContext  # 127.0.0.1, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    ca, other_ca = trustme.CA(), trustme.CA()
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(
        ca_file=str(ca_file),
        good=server_context(ca.issue_cert("127.0.0.1")),
        wrong_name=server_context(ca.issue_cert("mail.example.org")),
        untrusted=server_context(other_ca.issue_cert("127.0.0.1")),
    )


def mail(to: str = "alice@example.org", **kwargs: Any) -> WireMail:
    """A mail as build_mail makes it, ready for send_batch."""
    fields: dict[str, Any] = {
        "to": to,
        "subject": "Your registration token",
        "text": "Token: abc\n",
        "html": None,
        "sender": "Email Gate <gate@example.org>",
        "headers": {},
    }
    return build_mail(OutgoingMail(**{**fields, **kwargs}), message_id_domain="example.org")


def received(to: str = "alice@example.org", **kwargs: Any) -> EmailMessage:
    """The same message as a receiving server stores it (LF line ends)."""
    wire = mail(to, **kwargs).data
    assert wire.isascii()  # headers encoded, bodies transfer-encoded
    assert b"\n" not in wire.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    assert max(len(line) for line in wire.split(b"\r\n")) <= 78
    parsed = email.message_from_bytes(wire.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage) and not parsed.defects, parsed.defects
    return parsed


def send(settings: Settings, mails: list[WireMail]) -> list[SendResult]:
    return asyncio.run(send_batch(settings, mails))


OK = SendResult(ok=True)


# --- send_batch --------------------------------------------------------------------


def test_plain() -> None:
    handler = Handler()
    with smtp_server(handler) as port:
        results = send(Settings(port=port), [mail(subject="Grüße ✓", text="Jeton : «abc»\n")])
    assert results == [OK]
    (got,) = handler.received
    assert (got.tls, got.login, got.mail_from, got.rcpt_tos) == (
        False,
        None,
        "gate@example.org",
        ["alice@example.org"],
    )
    assert got.message["Subject"] == "Grüße ✓"
    assert got.message.get_content().splitlines() == ["Jeton : «abc»"]  # CRLF on the wire


def test_starttls_with_auth(pki: Pki) -> None:
    handler = Handler()
    with smtp_server(
        handler, tls_context=pki.good, require_starttls=True, authenticator=authenticator
    ) as port:
        settings = Settings(
            port=port, tls="starttls", username=USER, password=PASSWORD, ca_file=pki.ca_file
        )
        assert send(settings, [mail()]) == [OK]
    (got,) = handler.received
    assert (got.tls, got.login) == (True, USER)


def test_implicit_tls_with_auth(pki: Pki) -> None:
    handler = Handler()
    with smtp_server(
        handler, ssl_context=pki.good, authenticator=authenticator, auth_require_tls=False
    ) as port:
        settings = Settings(
            port=port, tls="tls", username=USER, password=PASSWORD, ca_file=pki.ca_file
        )
        assert send(settings, [mail()]) == [OK]
    (got,) = handler.received
    assert (got.tls, got.login) == (True, USER)


def test_wrong_password_fails_without_leaking_it(pki: Pki) -> None:
    handler = Handler()
    wrong = "wrong-Pa55word!"
    with smtp_server(handler, tls_context=pki.good, authenticator=authenticator) as port:
        settings = Settings(
            port=port, tls="starttls", username=USER, password=wrong, ca_file=pki.ca_file
        )
        results = send(settings, [mail(), mail()])
    assert handler.received == []
    for result in results:
        assert not result.ok and not result.permanent
        assert result.error and "535" in result.error and "***" in result.error
        assert wrong not in result.error
        assert base64.b64encode(wrong.encode()).decode() not in result.error


@pytest.mark.parametrize("tls", ["starttls", "tls"])
@pytest.mark.parametrize("cert", ["untrusted", "wrong_name"])
def test_bad_certificate_refused(pki: Pki, tls: str, cert: str) -> None:
    handler = Handler()
    context = getattr(pki, cert)
    server_tls = {"tls_context": context} if tls == "starttls" else {"ssl_context": context}
    with smtp_server(handler, **server_tls) as port:
        settings = Settings(port=port, tls=tls, ca_file=pki.ca_file)  # type: ignore[arg-type]
        (result,) = send(settings, [mail()])
        assert not result.ok and not result.permanent
        assert result.error and "CERTIFICATE_VERIFY_FAILED" in result.error
        assert handler.received == []
        # The admin's explicit opt-out turns verification off.
        unverified = Settings(port=port, tls=tls, verify_certificates=False)  # type: ignore[arg-type]
        assert send(unverified, [mail()]) == [OK]
    assert [r.tls for r in handler.received] == [True]


def test_starttls_required_but_not_offered() -> None:
    handler = Handler()
    with smtp_server(handler) as port:  # no tls_context: no STARTTLS in EHLO
        results = send(Settings(port=port, tls="starttls"), [mail(), mail()])
    assert handler.received == []
    for result in results:
        assert not result.ok and not result.permanent
        assert result.error and "STARTTLS" in result.error


def test_batch_uses_one_connection() -> None:
    handler = Handler()
    recipients = [f"user{i}@example.org" for i in range(5)]
    with smtp_server(handler) as port:
        results = send(Settings(port=port), [mail(to) for to in recipients])
    assert results == [OK] * 5
    assert [r.rcpt_tos for r in handler.received] == [[to] for to in recipients]
    assert len({r.peer for r in handler.received}) == 1


def test_rejections_are_classified_and_the_batch_goes_on() -> None:
    handler = Handler()
    recipients = ["rcpt550", "rcpt451", "data554", "data451", "bob"]
    with smtp_server(handler) as port:
        results = send(Settings(port=port), [mail(f"{r}@example.org") for r in recipients])
    assert [(r.ok, r.permanent) for r in results] == [
        (False, True),
        (False, False),
        (False, True),
        (False, False),
        (True, False),
    ]
    assert results[0].error and "550" in results[0].error
    assert results[3].error and "451" in results[3].error
    assert [r.rcpt_tos for r in handler.received] == [["bob@example.org"]]


def test_server_closing_fails_the_rest_temporarily() -> None:
    handler = Handler()
    recipients = ["first", "close421", "third", "fourth"]
    with smtp_server(handler) as port:
        results = send(Settings(port=port), [mail(f"{r}@example.org") for r in recipients])
    assert results[0] == OK
    assert [(r.ok, r.permanent) for r in results[1:]] == [(False, False)] * 3
    assert [r.rcpt_tos for r in handler.received] == [["first@example.org"]]


def streamed(mails: list[WireMail]) -> AsyncIterator[WireMail]:
    """The mails as delivery.py hands them over: built one by one, while the batch goes."""

    async def each() -> AsyncIterator[WireMail]:
        for message in mails:
            await asyncio.sleep(0)
            yield message

    return each()


def test_mails_built_while_the_batch_goes_are_sent_in_order_over_one_connection() -> None:
    handler = Handler()
    recipients = [f"user{i}@example.org" for i in range(4)] + ["rcpt550@example.org"]
    with smtp_server(handler) as port:
        results = asyncio.run(
            send_batch(Settings(port=port), streamed([mail(to) for to in recipients]))
        )
    assert results[:4] == [OK] * 4
    assert (results[4].ok, results[4].permanent) == (False, True)
    assert [r.rcpt_tos for r in handler.received] == [[to] for to in recipients[:4]]
    assert len({r.peer for r in handler.received}) == 1


def test_a_closing_server_fails_the_streamed_mails_not_built_yet_too() -> None:
    handler = Handler()
    recipients = ["first", "close421", "third", "fourth"]
    with smtp_server(handler) as port:
        results = asyncio.run(
            send_batch(
                Settings(port=port), streamed([mail(f"{r}@example.org") for r in recipients])
            )
        )
    assert results[0] == OK
    assert [(r.ok, r.permanent) for r in results[1:]] == [(False, False)] * 3


def test_server_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        results = send(Settings(port=port), [mail(), mail()])
    for result in results:
        assert not result.ok and not result.permanent
        assert result.error and "SMTPConnectError" in result.error


def test_silent_server_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()  # accepts, never greets
        settings = Settings(port=sock.getsockname()[1], timeout_seconds=0.3)
        results = send(settings, [mail()])
    assert not results[0].ok and not results[0].permanent
    assert results[0].error and "Timeout" in results[0].error


def test_unreadable_ca_file_is_a_temporary_failure(tmp_path: Path) -> None:
    settings = Settings(port=1, tls="tls", ca_file=str(tmp_path / "missing.pem"))
    (result,) = send(settings, [mail()])
    assert not result.ok and not result.permanent
    assert result.error and "FileNotFoundError" in result.error


def test_empty_batch() -> None:
    assert send(Settings(port=1), []) == []


def test_through_the_bridge_under_the_epoll_reactor() -> None:
    """The production path: Twisted epoll reactor → AsyncioThread → send_batch."""
    script = textwrap.dedent(
        """
        import sys
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import task

        from synapse_email_gate.mail.asyncio_bridge import AsyncioThread
        from synapse_email_gate.mail.mime import OutgoingMail, build_mail
        from synapse_email_gate.mail.smtp import send_batch


        class Settings:
            host, port, tls = "127.0.0.1", int(sys.argv[1]), "none"
            username = password = ca_file = None
            verify_certificates, timeout_seconds = True, 5.0


        async def main(reactor):
            bridge = AsyncioThread(reactor)
            mail = OutgoingMail(
                to="alice@example.org", subject="s", text="t", html=None,
                sender="gate@example.org", headers={},
            )
            msg = build_mail(mail, message_id_domain="example.org")
            try:
                results = await bridge.run(send_batch(Settings(), [msg, msg]))
            finally:
                bridge.stop()
            print([r.ok for r in results])


        task.react(main)
        """
    )
    handler = Handler()
    with smtp_server(handler) as port:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(port)],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[True, True]"
    assert len(handler.received) == 2


# --- build_mail ---------------------------------------------------------------------


def test_text_only_message() -> None:
    msg = received(headers={"X-Email-Gate-Request": "42"})
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["From"] == "Email Gate <gate@example.org>"
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Your registration token"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Email-Gate-Request"] == "42"
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["Date"].datetime.tzinfo is not None
    assert msg.get_content() == "Token: abc\n"


def test_html_alternative() -> None:
    msg = received(html="<p>Token: <b>abc</b></p>")
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content() == "Token: abc\n"
    assert "<b>abc</b>" in parts[1].get_content()


def test_message_ids_are_unique() -> None:
    assert received()["Message-ID"] != received()["Message-ID"]


def test_extra_header_replaces_default_auto_submitted() -> None:
    msg = received(headers={"Auto-Submitted": "auto-replied"})
    assert msg.get_all("Auto-Submitted") == ["auto-replied"]


def test_non_ascii_round_trip() -> None:
    subject = "Ваш токен — 登録 ✓ « Grüße »"
    text = "Hallo Jürgen,\nvotre jeton : ✓ abc\n" + "ü" * 200 + "\n"
    html = "<p>Jürgen ✓ 登録</p>"
    parsed = received(subject=subject, text=text, html=html, sender="Gäte Bot <gate@example.org>")
    assert parsed["Subject"] == subject
    assert parsed["From"].addresses[0].display_name == "Gäte Bot"
    plain, rich = parsed.iter_parts()
    assert plain.get_content() == text
    assert rich.get_content() == html + "\n"


BREAKS = ["\r\n", "\n", "\r", "\u2028", "\x85"]


@pytest.mark.parametrize("brk", BREAKS)
@pytest.mark.parametrize("where", ["to", "subject", "sender", "header_value", "header_name"])
def test_line_breaks_refused(where: str, brk: str) -> None:
    injected = f"x{brk}Bcc: victim@example.net"
    cases: dict[str, dict[str, Any]] = {
        "to": {"to": f"alice@example.org{brk}Bcc: victim@example.net"},
        "subject": {"subject": injected},
        "sender": {"sender": f"gate@example.org{brk}Bcc: victim@example.net"},
        "header_value": {"headers": {"X-Email-Gate-Request": injected}},
        "header_name": {"headers": {f"X-A{brk}Bcc": "victim@example.net"}},
    }
    kwargs = cases[where]
    with pytest.raises(ValueError):
        mail(**kwargs)


def test_stdlib_policy_alone_refuses_crlf() -> None:
    """What the email policy does without our check (we check first anyway)."""
    msg = EmailMessage(policy=email.policy.default)
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        msg["Subject"] = "x\r\nBcc: victim@example.net"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"to": "alice@example.org, mallory@example.net"},
        {"to": "not an address"},
        {"to": ""},
        {"sender": "a@example.org, b@example.org"},
        {"headers": {"To": "mallory@example.net"}},
        {"headers": {"bcc": "mallory@example.net"}},
        {"headers": {"Content-Type": "text/html"}},
        {"headers": {"X Bad": "v"}},
        {"headers": {"X:Bad": "v"}},
        {"headers": {"": "v"}},
    ],
)
def test_bad_addresses_and_headers_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        mail(**kwargs)


def test_bodies_cannot_end_or_split_the_multipart() -> None:
    """The boundary starts with "=_", which quoted-printable bodies never contain."""
    text = "--=_\n=_ --=_x--\n" * 3
    parsed = received(text=text, html=f"<pre>{text}</pre>")
    assert parsed.get_content_type() == "multipart/alternative"
    plain, rich = parsed.iter_parts()
    assert plain.get_content() == text
    assert rich.get_content() == f"<pre>{text}</pre>\n"


_BODY_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from([" ", "\t", "=", ".", "\n"]),
    max_size=300,
)


@given(text=_BODY_TEXT, html=st.none() | _BODY_TEXT, subject=st.text(max_size=120))
def test_any_text_comes_back_as_it_was_written_in_seven_bit_lines(
    text: str, html: str | None, subject: str
) -> None:
    """Whatever the templates render (any Unicode, long lines, trailing spaces, '=' and
    '.'), a reader gets it back (line ends as LF); the wire stays 7-bit, CRLF, ≤ 78."""
    assume(not any(char in subject for char in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))
    assume(subject == subject.strip())  # a reader drops the space around a header value
    parsed = received(subject=subject, text=text, html=html)

    def written(body: str) -> str:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
        return body if body.endswith("\n") else body + "\n"

    parts = [parsed] if html is None else list(parsed.iter_parts())
    assert [p.get_content() for p in parts] == [written(b) for b in (text, html) if b is not None]
    assert parsed["Subject"] == subject

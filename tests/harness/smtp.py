"""An SMTP catcher for tests: aiosmtpd in its own thread on 127.0.0.1."""

from __future__ import annotations

import email.policy
import logging
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .ports import free_port

# AUTH over a plain connection is what tls="none" + auth asks for (also in conftest)
AUTH_WITHOUT_TLS_WARNING = "Requiring AUTH while not requiring TLS"
warnings.filterwarnings("ignore", message=AUTH_WITHOUT_TLS_WARNING, category=UserWarning)
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-connection chatter

TlsMode = Literal["none", "starttls", "tls"]


@dataclass
class Mail:
    """One received message with its envelope."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes
    login: str | None = None
    connection: int = 0  # which SMTP connection (1, 2, ...) of this catcher brought it
    tls: bool = False  # whether it came over TLS (implicit, or after STARTTLS)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def to(self) -> str:
        return str(self.message.get("To", ""))

    def part(self, subtype: str = "plain") -> str | None:
        """The decoded text/<subtype> part, or None."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_type() != f"text/{subtype}":
            return None
        content: str = body.get_content()
        return content

    @property
    def text(self) -> str:
        return self.part("plain") or ""

    @property
    def html(self) -> str | None:
        return self.part("html")


class _Handler:
    def __init__(self, catcher: SmtpCatcher) -> None:
        self.catcher = catcher

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.catcher.refusing:
            return self.catcher.refusing
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.catcher.refusing:
            return self.catcher.refusing
        raw = envelope.original_content or b""
        msg = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
        auth = session.auth_data
        login = auth.decode() if isinstance(auth, bytes) else None
        connection = getattr(server, "catcher_connection", 0)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        mail = Mail(
            envelope.mail_from or "", list(envelope.rcpt_tos), msg, raw, login, connection, tls
        )
        self.catcher._add(mail)
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """Numbers each connection (one SMTP protocol instance per connection)."""

    def __init__(self, catcher: SmtpCatcher, *args: Any, **kwargs: Any) -> None:
        self._catcher = catcher
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        server = super().factory()
        server.catcher_connection = self._catcher._next_connection()  # type: ignore[attr-defined]
        return server


class SmtpCatcher:
    """Catches mail on 127.0.0.1:``port``; ``messages`` holds :class:`Mail` objects.

    tls: "none", "starttls" (offered, optional) or "tls" (implicit TLS), with a
    certificate for 127.0.0.1/localhost from a throwaway trustme CA whose PEM is at
    ``ca_file``. auth=(user, password) makes AUTH mandatory before MAIL.
    """

    def __init__(
        self,
        tls: TlsMode = "none",
        auth: tuple[str, str] | None = None,
        port: int | None = None,
        on_mail: Callable[[Mail], None] | None = None,
    ) -> None:
        self.tls: TlsMode = tls
        self.auth = auth
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.on_mail = on_mail
        self.messages: list[Mail] = []
        self.refusing: str | None = None
        # Connections accepted so far (the controller's own start-up probe included).
        self.connections = 0
        self._cond = threading.Condition()
        self._controller: Controller | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="smtp-catcher-")
        self.ca_file: str | None = None
        self._server_ctx: ssl.SSLContext | None = None
        if tls != "none":
            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            self.ca_file = str(Path(self._tmp.name) / "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            self._server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(self._server_ctx)

    # --- lifecycle -------------------------------------------------------
    def start(self) -> SmtpCatcher:
        if self._controller is not None:
            return self
        kwargs: dict[str, Any] = {}
        if self.tls == "starttls":
            kwargs["tls_context"] = self._server_ctx
        if self.auth is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.tls == "starttls",
            )
        controller = _Controller(
            self,
            _Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=self._server_ctx if self.tls == "tls" else None,
            server_hostname="localhost",
            **kwargs,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening (the port is kept, so start() resumes on it)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> SmtpCatcher:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- behaviour -------------------------------------------------------
    def refuse(self, reply: str | None = "451 4.3.0 Temporarily unavailable, try later") -> None:
        """Answer every RCPT and DATA with ``reply`` (None: accept mail again)."""
        self.refusing = reply

    def accept(self) -> None:
        self.refusing = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.auth is not None
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if (user, password) == self.auth:
                return AuthResult(success=True, auth_data=data.login)
        return AuthResult(success=False, handled=False)

    # --- messages --------------------------------------------------------
    def _add(self, mail: Mail) -> None:
        with self._cond:
            self.messages.append(mail)
            self._cond.notify_all()
        if self.on_mail is not None:
            self.on_mail(mail)

    def _next_connection(self) -> int:
        with self._cond:
            self.connections += 1
            return self.connections

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def wait_for_messages(self, n: int = 1, timeout: float = 10.0) -> list[Mail]:
        """Wait until at least ``n`` messages arrived; return all of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= n, timeout):
                raise AssertionError(
                    f"expected {n} mail(s) within {timeout}s, got {len(self.messages)}: "
                    f"{[(m.rcpt_tos, m.subject) for m in self.messages]}"
                )
            return list(self.messages)

    def wait_for(self, predicate: Callable[[Mail], bool], timeout: float = 10.0) -> Mail:
        """Wait for the first message matching ``predicate`` and return it."""
        found: list[Mail] = []

        def check() -> bool:
            found[:] = [m for m in self.messages if predicate(m)]
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise AssertionError(
                    f"no matching mail within {timeout}s; got "
                    f"{[(m.rcpt_tos, m.subject) for m in self.messages]}"
                )
            return found[0]

    def wait_for_rcpt(self, address: str, timeout: float = 10.0) -> Mail:
        """Wait for a message whose envelope recipients include ``address``."""
        addr = address.lower()
        return self.wait_for(lambda m: addr in (r.lower() for r in m.rcpt_tos), timeout)

    def assert_no_mail(self, within: float = 1.0) -> None:
        """Fail if any message arrives within ``within`` seconds."""
        time.sleep(within)
        with self._cond:
            assert not self.messages, f"unexpected mail: {[m.rcpt_tos for m in self.messages]}"

    def config(self) -> dict[str, Any]:
        """The module's ``smtp:`` config block pointing at this catcher."""
        cfg: dict[str, Any] = {"host": self.host, "port": self.port, "tls": self.tls}
        if self.ca_file:
            cfg["ca_file"] = self.ca_file
        if self.auth:
            cfg["username"], cfg["password"] = self.auth
        return cfg

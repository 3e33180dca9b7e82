"""Build the gate's emails and send them over SMTP with aiosmtplib.

:func:`send_batch` is an asyncio coroutine: from Synapse (Twisted) code run it through
:class:`synapse_email_gate.asyncio_bridge.AsyncioThread`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.policy
import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.headerregistry import AddressHeader, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal, Protocol

import aiosmtplib
import attrs


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, but each header's class is made once.

    The stdlib's ``HeaderRegistry.__getitem__`` builds a new class every time a
    header is set or counted (about 30 per mail): 40 % of build_message's time,
    and cyclic garbage that Synapse's collector then has to sweep from the
    reactor thread (benchmarks/bench_mail.py).
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# email.policy.default with the caching registry.
_POLICY = email.policy.default.clone(header_factory=_HeaderClasses())

# Headers build_message sets itself; extra headers may not replace them.
_MANAGED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "sender",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
# Everything str.splitlines() breaks on (CR and LF included).
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
# RFC 5322 field name: printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+")
# Something that looks like an address inside an error text (SMTP replies echo them).
_ADDRESS = re.compile(r"([^\s@<>'\"(),;:\[\]]+)@([A-Za-z0-9.\-\[\]:]+)")


class SmtpSettings(Protocol):
    """The ``smtp:`` part of the module config, as :func:`send_batch` reads it."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def tls(self) -> Literal["none", "starttls", "tls"]: ...
    @property
    def username(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def verify_certificates(self) -> bool: ...
    @property
    def timeout_seconds(self) -> float: ...


@attrs.frozen
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str | None
    sender: str
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class SendResult:
    ok: bool
    permanent: bool = False
    error: str | None = None
    reason: str | None = None  # a reason code for a permanent failure, if not "permanent"


def _no_newlines(what: str, value: str) -> str:
    if any(char in _LINE_BREAKS for char in value):
        raise ValueError(f"{what} must not contain line breaks")
    return value


def _set_single_address(msg: EmailMessage, name: str, value: str) -> None:
    msg[name] = _no_newlines(name, value)
    header = msg[name]
    assert isinstance(header, AddressHeader) and isinstance(header, BaseHeader)
    if header.defects or len(header.addresses) != 1 or not header.addresses[0].domain:
        raise ValueError(f"{name} must be exactly one valid address: {value!r}")


def build_message(mail: OutgoingMail, *, message_id_domain: str) -> EmailMessage:
    """Build a UTF-8 message: text/plain, or multipart/alternative with text/html.

    Raises ValueError on a line break (CR, LF, ...) in any header, on a bad address,
    and on an extra header that would replace one set here.
    """
    msg = EmailMessage(policy=_POLICY)
    _set_single_address(msg, "From", mail.sender)
    _set_single_address(msg, "To", mail.to)
    msg["Subject"] = _no_newlines("Subject", mail.subject)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=_no_newlines("domain", message_id_domain))
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in mail.headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _MANAGED_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        del msg[name]
        msg[name] = _no_newlines(name, value)
    # Quoted-printable keeps the message 7-bit: no reliance on the server's 8BITMIME.
    msg.set_content(mail.text, charset="utf-8", cte="quoted-printable")
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.verify_certificates:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _secrets(settings: SmtpSettings) -> list[str]:
    """The password, and the base64 forms AUTH LOGIN / AUTH PLAIN send it in."""
    password = settings.password
    if not password:
        return []
    plain = f"\0{settings.username or ''}\0{password}"
    return [password, *(base64.b64encode(s.encode()).decode() for s in (password, plain))]


def mask_address(address: str) -> str:
    """`alice@example.org` -> `a***@example.org`: enough to tell mails apart in a log."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_addresses(text: str) -> str:
    """Every address-like word of ``text`` masked as by :func:`mask_address`."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)


def _describe(exc: BaseException, secrets: Sequence[str]) -> str:
    """An error for logs and the outbox: no password, no full address."""
    text = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        text = text.replace(secret, "***")
    return mask_addresses(text)


async def send_batch(
    settings: SmtpSettings, mails: Sequence[EmailMessage], time_limit_s: float | None = None
) -> list[SendResult]:
    """Send ``mails`` over one SMTP connection; one result per mail, in order.

    Never raises for SMTP or network trouble. A 5xx rejection of a recipient or of
    the data, or an address that cannot be sent, is permanent. Everything else is
    temporary: 4xx replies, a refused sender, and connection, TLS, login or timeout
    failures, which also fail every mail not yet sent. A message whose DATA reply was
    lost (timeout, disconnect) may have been delivered anyway: retrying can duplicate.

    ``time_limit_s`` bounds the whole batch (each step is bounded by the settings'
    timeout): when it runs out, the mail in flight and the rest fail (temporarily).
    The caller's lease on the mails must outlast it.
    """
    if not mails:
        return []
    secrets = _secrets(settings)
    results: list[SendResult] = []
    client: aiosmtplib.SMTP | None = None
    clean = False
    try:
        async with asyncio.timeout(time_limit_s):
            client = aiosmtplib.SMTP(
                hostname=settings.host,
                port=settings.port,
                username=settings.username,
                password=settings.password,
                timeout=settings.timeout_seconds,
                use_tls=settings.tls == "tls",
                start_tls=settings.tls == "starttls",  # True: fail if STARTTLS is not offered
                tls_context=_tls_context(settings) if settings.tls != "none" else None,
            )
            await client.connect()  # connects, upgrades to TLS, logs in
            for msg in mails:  # after a disconnect, the next send raises SMTPServerDisconnected
                results.append(await _send_one(client, msg, secrets))
            clean = True
    except Exception as exc:
        error = _describe(exc, secrets)
        if isinstance(exc, TimeoutError) and not str(exc):  # from asyncio.timeout above
            error = f"TimeoutError: the batch took longer than {time_limit_s}s"
        results += [SendResult(ok=False, error=error)] * (len(mails) - len(results))
    finally:
        if client is not None and client.is_connected:
            if clean:
                with contextlib.suppress(Exception):  # the mails are sent; QUIT is courtesy
                    async with asyncio.timeout(settings.timeout_seconds):
                        await client.quit()
            client.close()
    return results


async def _send_one(
    client: aiosmtplib.SMTP, msg: EmailMessage, secrets: Sequence[str]
) -> SendResult:
    try:
        await client.send_message(msg)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        code = exc.recipients[0].code if exc.recipients else 0
        return SendResult(ok=False, permanent=code >= 500, error=_describe(exc, secrets))
    except aiosmtplib.SMTPDataError as exc:
        return SendResult(ok=False, permanent=exc.code >= 500, error=_describe(exc, secrets))
    except (ValueError, aiosmtplib.SMTPNotSupported) as exc:
        return SendResult(ok=False, permanent=True, error=_describe(exc, secrets))
    except aiosmtplib.SMTPResponseException as exc:  # e.g. the sender refused
        return SendResult(ok=False, error=_describe(exc, secrets))
    return SendResult(ok=True)

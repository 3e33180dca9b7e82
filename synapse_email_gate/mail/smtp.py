"""Send the gate's emails (built by mail/mime.py) over SMTP with aiosmtplib.

:func:`send_batch` is an asyncio coroutine: from Synapse (Twisted) code run it through
:class:`synapse_email_gate.mail.asyncio_bridge.AsyncioThread`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Literal, Protocol

import aiosmtplib
import attrs

from synapse_email_gate.mail.mime import WireMail

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
class SendResult:
    ok: bool
    permanent: bool = False
    error: str | None = None
    reason: str | None = None  # a reason code for a permanent failure, if not "permanent"


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


def mask_addresses(text: str) -> str:
    """Every address-like word of ``text`` masked: `alice@example.org` -> `a***@example.org`,
    enough to tell mails apart in a log."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)[:1]}***@{m.group(2)}", text)


def _describe(exc: BaseException, secrets: Sequence[str]) -> str:
    """An error for logs and the outbox: no password, no full address."""
    text = f"{type(exc).__name__}: {exc}"
    for secret in secrets:
        text = text.replace(secret, "***")
    return mask_addresses(text)


async def send_batch(
    settings: SmtpSettings,
    mails: Sequence[WireMail] | AsyncIterable[WireMail],
    time_limit_s: float | None = None,
) -> list[SendResult]:
    """Send ``mails`` over one SMTP connection; one result per mail, in order.

    ``mails`` may be built while the batch goes out (an async iterable): the next
    one is asked for once the previous one is sent, and the connection is opened
    before the first.

    Never raises for SMTP or network trouble. A 5xx rejection of a recipient or of
    the data, or an address that cannot be sent, is permanent. Everything else is
    temporary: 4xx replies, a refused sender, and connection, TLS, login or timeout
    failures, which also fail every mail not yet sent. A message whose DATA reply was
    lost (timeout, disconnect) may have been delivered anyway: retrying can duplicate.

    ``time_limit_s`` bounds the whole batch (each step is bounded by the settings'
    timeout): when it runs out, the mail in flight and the rest fail (temporarily).
    The caller's lease on the mails must outlast it.
    """
    if isinstance(mails, Sequence) and not mails:
        return []
    source = _each(mails)
    secrets = _secrets(settings)
    results: list[SendResult] = []
    taken = 0
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
            # After a disconnect, the next send raises SMTPServerDisconnected.
            async for mail in source:
                taken += 1
                results.append(await _send_one(client, mail, secrets))
            clean = True
    except Exception as exc:
        error = _describe(exc, secrets)
        if isinstance(exc, TimeoutError) and not str(exc):  # from asyncio.timeout above
            error = f"TimeoutError: the batch took longer than {time_limit_s}s"
        failed = SendResult(ok=False, error=error)
        # The mail in flight, if any, then every one not asked for yet.
        results += [failed] * (taken - len(results))
        async for _ in source:
            results.append(failed)
    finally:
        if client is not None and client.is_connected:
            if clean:
                with contextlib.suppress(Exception):  # the mails are sent; QUIT is courtesy
                    async with asyncio.timeout(settings.timeout_seconds):
                        await client.quit()
            client.close()
    return results


async def _each(
    mails: Sequence[WireMail] | AsyncIterable[WireMail],
) -> AsyncIterator[WireMail]:
    if isinstance(mails, Sequence):
        for mail in mails:
            yield mail
    else:
        async for mail in mails:
            yield mail


async def _send_one(client: aiosmtplib.SMTP, mail: WireMail, secrets: Sequence[str]) -> SendResult:
    try:
        await client.sendmail(mail.sender, [mail.recipient], mail.data)
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

"""Build the gate's emails: UTF-8 text, or multipart/alternative with HTML.

Built with the stdlib's compat32 message classes. The modern `EmailMessage`
API parses every header when it is set and again when the message is
flattened: 0.8 ms per mail, the largest part of a mail's cost in Synapse's
process (benchmarks/bench_accepted.py); these classes take half that. Headers
are checked here instead: no line breaks anywhere, exactly one valid address
in From and To, extra headers may not replace the ones set here.
"""

from __future__ import annotations

import email.charset
import email.policy
import functools
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import AddressHeader, BaseHeader, HeaderRegistry
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

import attrs

# Quoted-printable keeps the message 7-bit: no reliance on the server's 8BITMIME.
_UTF8 = email.charset.Charset("utf-8")
_UTF8.body_encoding = email.charset.QP
# Base64 for non-ASCII header text: the stdlib picks the shorter of the two by
# measuring both, which costs more than building the rest of the message.
_UTF8.header_encoding = email.charset.BASE64
# What the wire form is made with (aiosmtplib uses the same for compat32 messages).
WIRE_POLICY = email.policy.compat32.clone(linesep="\r\n")

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
_ADDRESS_HEADERS = HeaderRegistry()
# A bare address of the everyday shape (dot-atom @ host name): valid as a header
# value as it is. Anything else is parsed in full.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@attrs.frozen
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str | None
    sender: str
    headers: Mapping[str, str] = attrs.field(factory=dict)


def build_message(mail: OutgoingMail, *, message_id_domain: str) -> Message:
    """Raises ValueError on a line break (CR, LF, ...) in any header, on a bad address,
    and on an extra header that would replace one set here."""
    text = _part(mail.text, "plain")
    if mail.html is None:
        msg: Message = text
    else:
        html = _part(mail.html, "html")
        for part in (text, html):
            del part["MIME-Version"]  # said once, on the whole message
        # A boundary of our own: the stdlib would make a random one and compile a
        # regex to check that no body contains it. "=_" never occurs in
        # quoted-printable text ("=" is always "=XX" there), so this one cannot.
        msg = MIMEMultipart(
            "alternative", boundary=f"=_{secrets.token_hex(16)}", _subparts=[text, html]
        )
    msg["From"] = _sender_header(mail.sender)
    msg["To"] = _address_header("To", mail.to)
    _set_text(msg, "Subject", mail.subject)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=_no_newlines("domain", message_id_domain))
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in mail.headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _MANAGED_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        del msg[name]
        _set_text(msg, name, value)
    return msg


def as_wire(msg: Message) -> bytes:
    """The bytes an SMTP server receives (CRLF line ends, 7-bit)."""
    return msg.as_bytes(policy=WIRE_POLICY)


@attrs.frozen
class WireMail:
    """A mail as it goes out over SMTP: its envelope, and the message's bytes.

    Made where the mail is built, so that flattening the message (the largest part
    of sending one) happens while the sender waits for the server's replies."""

    sender: str
    recipient: str
    data: bytes

    @classmethod
    def of(cls, msg: Message) -> WireMail:
        """A message build_message made (one From, one To, no Bcc)."""
        return cls(_envelope(str(msg["From"])), _envelope(str(msg["To"])), as_wire(msg))


@functools.lru_cache(maxsize=8)
def _sender_envelope(value: str) -> str:
    return parseaddr(value)[1]


def _envelope(value: str) -> str:
    """The bare address of an address header build_message wrote."""
    return value if _PLAIN_ADDRESS.fullmatch(value) else _sender_envelope(value)


def _part(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(body if body.endswith("\n") else body + "\n", _UTF8)  # ends its last line
    return part


def _no_newlines(what: str, value: str) -> str:
    if any(char in _LINE_BREAKS for char in value):
        raise ValueError(f"{what} must not contain line breaks")
    return value


def _set_text(msg: Message, name: str, value: str) -> None:
    """Unstructured header text, RFC 2047-encoded (and folded) when not ASCII."""
    if _no_newlines(name, value).isascii():
        msg[name] = value
    else:
        # compat32 messages take Header objects (typeshed says str only).
        msg[name] = Header(value, _UTF8, header_name=name)  # type: ignore[assignment]


@functools.lru_cache(maxsize=8)
def _sender_header(value: str) -> str:
    return _address_header("From", value)  # the same sender every time: parsed once


def _address_header(name: str, value: str) -> str:
    """Exactly one address with a domain, as an ASCII header value."""
    if _PLAIN_ADDRESS.fullmatch(value):
        return value
    header = _ADDRESS_HEADERS(name, _no_newlines(name, value))
    assert isinstance(header, AddressHeader) and isinstance(header, BaseHeader)
    if header.defects or len(header.addresses) != 1 or not header.addresses[0].domain:
        raise ValueError(f"{name} must be exactly one valid address: {value!r}")
    address = header.addresses[0]
    if not address.addr_spec.isascii():
        raise ValueError(f"{name} must be an ASCII address: {value!r}")
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")

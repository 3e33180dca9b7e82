"""Build the gate's emails: UTF-8 text, or multipart/alternative with HTML, written
straight to the bytes an SMTP server receives (`WireMail`).

The stdlib's message classes and generator took 0.25 ms per mail to build and
flatten, the largest part of sending one (benchmarks/bench_mail.py); the shape
here is fixed and small, so it is written directly: quoted-printable bodies
(`binascii.b2a_qp`, 7-bit, lines of at most 76 characters), CRLF line ends, and
headers folded by the stdlib's policy only when one is long or not ASCII.
Headers are checked here: no line breaks anywhere, exactly one valid address in
From and To, extra headers may not replace the ones set here. tests/unit/mail
parses every shape back with the stdlib's parser.
"""

from __future__ import annotations

import binascii
import email.charset
import email.policy
import functools
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import AddressHeader, BaseHeader, HeaderRegistry
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

import attrs

# Base64 for non-ASCII header text: the stdlib picks the shorter of quoted-printable
# and base64 by measuring both, which costs more than building the rest of the mail.
_UTF8 = email.charset.Charset("utf-8")
_UTF8.header_encoding = email.charset.BASE64
# How long and non-ASCII headers are folded (CRLF line ends).
WIRE_POLICY = email.policy.compat32.clone(linesep="\r\n")

# Headers build_mail sets itself; extra headers may not replace them.
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


@attrs.frozen
class WireMail:
    """A mail as it goes out over SMTP: its envelope, and the message's bytes."""

    sender: str
    recipient: str
    data: bytes


def build_mail(mail: OutgoingMail, *, message_id_domain: str) -> WireMail:
    """Raises ValueError on a line break (CR, LF, ...) in any header, on a bad address,
    and on an extra header that would replace one set here."""
    sender = _sender_header(mail.sender)
    to = _address_header("To", mail.to)
    headers: dict[str, tuple[str, str]] = {}  # by lowercased name: (name, value)

    def put(name: str, value: str) -> None:
        headers[name.lower()] = (name, _no_newlines(name, value))

    if mail.html is None:
        put("MIME-Version", "1.0")
        put("Content-Type", _TEXT_TYPES["plain"])
        put("Content-Transfer-Encoding", "quoted-printable")
        body = _quoted_printable(mail.text)
    else:
        # "=_" never occurs in quoted-printable text ("=" is always "=XX" there), so
        # no body can contain this boundary.
        boundary = f"=_{secrets.token_hex(16)}".encode("ascii")
        put("Content-Type", f'multipart/alternative; boundary="{boundary.decode()}"')
        put("MIME-Version", "1.0")
        body = b"".join(
            [
                *(
                    b"--" + boundary + _CRLF + _part_headers(subtype) + _quoted_printable(text)
                    + _CRLF
                    for subtype, text in (("plain", mail.text), ("html", mail.html))
                ),
                b"--" + boundary + b"--" + _CRLF,
            ]
        )  # fmt: skip
    put("From", sender)
    put("To", to)
    put("Subject", mail.subject)
    put("Date", format_datetime(datetime.now(UTC)))
    put("Message-ID", make_msgid(domain=_no_newlines("domain", message_id_domain)))
    put("Auto-Submitted", "auto-generated")
    for name, value in mail.headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _MANAGED_HEADERS:
            raise ValueError(f"header name not allowed: {name!r}")
        headers.pop(name.lower(), None)  # replaced (Auto-Submitted), at the end
        put(name, value)
    head = b"".join(_header_line(name, value) for name, value in headers.values())
    return WireMail(_envelope(sender), _envelope(to), head + _CRLF + body)


_CRLF = b"\r\n"
_TEXT_TYPES = {subtype: f'text/{subtype}; charset="utf-8"' for subtype in ("plain", "html")}
# The longest header line written as it is; longer ones are folded.
_MAX_HEADER_LINE = 78


@functools.cache
def _part_headers(subtype: str) -> bytes:
    return (
        f"Content-Type: {_TEXT_TYPES[subtype]}\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


def _quoted_printable(text: str) -> bytes:
    """The text with CRLF line ends, quoted-printable, its last line ended."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    return binascii.b2a_qp(lines.replace("\n", "\r\n").encode("utf-8"), istext=True)


def _header_line(name: str, value: str) -> bytes:
    if value.isascii() and len(name) + 2 + len(value) <= _MAX_HEADER_LINE:
        return f"{name}: {value}\r\n".encode("ascii")
    # Long or not ASCII: folded, and RFC 2047-encoded when not ASCII, by the stdlib.
    folded: str | Header = value if value.isascii() else Header(value, _UTF8, header_name=name)
    return WIRE_POLICY.fold_binary(name, folded)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=8)
def _sender_envelope(value: str) -> str:
    return parseaddr(value)[1]


def _envelope(value: str) -> str:
    """The bare address of an address header written here."""
    return value if _PLAIN_ADDRESS.fullmatch(value) else _sender_envelope(value)


def _no_newlines(what: str, value: str) -> str:
    if any(char in _LINE_BREAKS for char in value):
        raise ValueError(f"{what} must not contain line breaks")
    return value


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

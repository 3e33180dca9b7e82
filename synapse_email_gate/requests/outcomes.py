"""What a request can come to, as the page and the API say it (docs/api.md)."""

from __future__ import annotations

import functools

import attrs

# Error codes of our own; the standard Matrix ones are used where they fit.
INVALID_EMAIL = "EMAIL_GATE_INVALID_EMAIL"
USERNAME_BANNED = "EMAIL_GATE_USERNAME_BANNED"
DOMAIN_DISPOSABLE = "EMAIL_GATE_DOMAIN_DISPOSABLE"
DOMAIN_NOT_ALLOWED = "EMAIL_GATE_DOMAIN_NOT_ALLOWED"
CSRF = "EMAIL_GATE_CSRF"
REASON_TOO_SHORT = "EMAIL_GATE_REASON_TOO_SHORT"
ORIGIN = "EMAIL_GATE_FOREIGN_ORIGIN"
UNAVAILABLE = "EMAIL_GATE_UNAVAILABLE"


@attrs.frozen
class Accepted:
    """The one answer for every email-side outcome."""

    status: int = 202


@attrs.frozen
class Refusal:
    status: int
    errcode: str
    message: str
    field: str | None = None
    retry_after_s: int | None = None

    def json(self) -> dict[str, object]:
        body: dict[str, object] = {"errcode": self.errcode, "error": self.message}
        if self.retry_after_s is not None:
            body["retry_after_ms"] = self.retry_after_s * 1000
        return body


Outcome = Accepted | Refusal

ACCEPTED = Accepted()


def bad_param(message: str, field: str | None = None) -> Refusal:
    return Refusal(400, "M_INVALID_PARAM", message, field)


def missing_param(field: str) -> Refusal:
    return Refusal(400, "M_MISSING_PARAM", f"'{field}' is required.", field)


IP_BANNED = Refusal(403, "M_FORBIDDEN", "Requests from your network are not accepted.")


@functools.lru_cache(maxsize=1024)
def rate_limited(retry_after_s: int) -> Refusal:
    return Refusal(
        429,
        "M_LIMIT_EXCEEDED",
        "Too many requests. Please wait before trying again.",
        retry_after_s=max(1, retry_after_s),
    )

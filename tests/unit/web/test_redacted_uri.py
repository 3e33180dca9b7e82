"""web/resource.py: the secrets of our URLs are taken out of the URI that Synapse logs."""

from __future__ import annotations

import pytest

from synapse_email_gate.web.resource import BASE_PATH, redacted_uri

B = BASE_PATH.encode()


@pytest.mark.parametrize(
    ("uri", "route", "logged"),
    [
        (B + b"/register?token=s3cret", "register", B + b"/register?token=<redacted>"),
        (
            B + b"/register?lang=de&token=s3cret",
            "register",
            B + b"/register?lang=de&token=<redacted>",
        ),
        (
            B + b"/register?token=a&token=b&x=1",
            "register",
            B + b"/register?token=<redacted>&token=<redacted>&x=1",
        ),
        (B + b"/verify?code=c0de", "verify", B + b"/verify?code=<redacted>"),
        (B + b"/verify?%63ode=c0de", "verify", B + b"/verify?%63ode=<redacted>"),
        (B + b"/verify?Code=c0de", "verify", B + b"/verify?Code=<redacted>"),
        (B + b"/register?token+=s3cret", "register", B + b"/register?token+=<redacted>"),
        (B + b"/register?token", "register", B + b"/register?token"),
        (B + b"/?lang=fr", "", B + b"/?lang=fr"),
        (B + b"/admin/tokens/inv1te", "admin/tokens/inv1te", B + b"/admin/tokens/<redacted>"),
        (B + b"/admin/tokens/a%2Fb", "admin/tokens/a/b", B + b"/admin/tokens/<redacted>"),
        (B + b"/admin/tokens%2Finv1te", "admin/tokens/inv1te", B + b"/admin/tokens/<redacted>"),
        (
            B + b"/admin/tokens/inv1te?x=1",
            "admin/tokens/inv1te",
            B + b"/admin/tokens/<redacted>?x=1",
        ),
        (B + b"/admin/tokens", "admin/tokens", B + b"/admin/tokens"),
        (B + b"/admin/tokens?valid=1", "admin/tokens", B + b"/admin/tokens?valid=1"),
        (B + b"/admin/tokens/delete", "admin/tokens/delete", B + b"/admin/tokens/delete"),
        (
            B + b"/admin/tokens/delete_all",
            "admin/tokens/delete_all",
            B + b"/admin/tokens/delete_all",
        ),
        (
            B + b"/admin/requests/r1?status=x",
            "admin/requests/r1",
            B + b"/admin/requests/r1?status=x",
        ),
    ],
)
def test_secrets_are_redacted_and_the_rest_is_kept(uri: bytes, route: str, logged: bytes) -> None:
    assert redacted_uri(uri, route) == logged
    assert redacted_uri(logged, route) == logged  # redacting twice changes nothing

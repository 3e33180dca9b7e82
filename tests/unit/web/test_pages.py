"""What every page gets (web/pages.py): refusals said in the page's language."""

from __future__ import annotations

from synapse_email_gate.config.i18n import Translations
from synapse_email_gate.requests.outcomes import Refusal
from synapse_email_gate.web.pages import error_text


def test_refusals_are_said_in_the_page_language(translations: Translations) -> None:
    de = error_text(translations.translator("de"))
    en = error_text(translations.translator("en"))
    taken = Refusal(400, "M_USER_IN_USE", "User ID already taken.", "username")
    assert de(taken) == "Dieser Benutzername ist schon vergeben. Bitte wähle einen anderen."
    assert en(taken) == "This username is already taken. Please choose another."
    missing = Refusal(400, "M_MISSING_PARAM", "'email' is required.", "email")
    assert en(missing) == "Please enter your email address."
    # no English text for the code: the refusal's own, more precise message
    invalid = Refusal(400, "EMAIL_GATE_INVALID_EMAIL", "The domain has no dot.", "email")
    assert en(invalid) == "The domain has no dot."
    assert "E-Mail-Adresse" in de(invalid)
    unknown = Refusal(400, "M_SOMETHING_NEW", "Something new.")
    assert de(unknown) == "Something new."
    short = Refusal(400, "EMAIL_GATE_REASON_TOO_SHORT", "x", "reason")
    assert "30 Zeichen" in de(short, minimum=30)

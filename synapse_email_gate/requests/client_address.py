"""The person's own address for registrations made by the web finish page.

The finish page (web/finish.py) posts to Synapse's `/register` itself, so
Synapse, and its registration callbacks, see the server's own address. The
page resolves the person's address as the request page does (through
`trusted_proxies`) and puts it into the `/register` body, sealed: bound to the
token, valid for a few minutes, and authenticated with a key that only the
module's processes know (kept in `email_gate_secrets`). Synapse hands the body
to `get_username_for_registration`, which opens the seal and records the
address with the account. A client cannot make a seal, so a body that carries
a forged or stale one is recorded with the address Synapse saw.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from synapse.module_api import ModuleApi

from synapse_email_gate.storage.state import StateStore

PARAM = "email_gate_client_address"
SEAL_LIFETIME_MS = 10 * 60_000
_MAX_LENGTH = 200


class AddressSeal:
    def __init__(self, api: ModuleApi, state: StateStore) -> None:
        self._api = api
        self._state = state
        self._key: bytes | None = None

    async def _secret(self) -> bytes:
        if self._key is None:
            self._key = (await self._state.client_address_key(secrets.token_hex(32))).encode()
        return self._key

    async def seal(self, token: str, ip: str) -> str:
        expires = self._api.get_current_time_msec() + SEAL_LIFETIME_MS
        return f"{ip}|{expires}|{_mac(await self._secret(), token, ip, expires)}"

    async def open(self, token: str, value: object) -> str | None:
        """The address sealed for this token, or None (no seal, forged, stale)."""
        if not isinstance(value, str) or len(value) > _MAX_LENGTH:
            return None
        parts = value.rsplit("|", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        ip, expires_text, mac = parts
        expires = int(expires_text)
        if expires < self._api.get_current_time_msec():
            return None
        expected = _mac(await self._secret(), token, ip, expires)
        return ip if hmac.compare_digest(expected, mac) else None


def _mac(key: bytes, token: str, ip: str, expires: int) -> str:
    message = f"client-address\n{token}\n{ip}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()

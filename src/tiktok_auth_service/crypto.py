"""Secrets at rest: tokens sealed with AES-256-GCM, API keys and OAuth states kept as digests.

`TokenSealer` is the only code that encrypts or decrypts. Each ciphertext records the id of the
key that sealed it, so keys can rotate, and its associated data names the grant row and the
column it belongs to, so a ciphertext copied into another row (or from the refresh column into
the access column) no longer opens.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from tiktok_auth_service.errors import TokenUnreadable
from tiktok_auth_service.models.grants import Grant

_NONCE_BYTES = 12
Column = Literal["access_token", "refresh_token"]


def digest(secret: str) -> bytes:
    """SHA-256 of an API key or OAuth state: what is stored and looked up instead of it."""
    return hashlib.sha256(secret.encode()).digest()


def same_secret(a: str | bytes, b: str | bytes) -> bool:
    """Whether two secrets (tokens, digests) are equal, in time that does not depend on where
    they differ. Every comparison of secrets goes through here, never `==`."""
    return hmac.compare_digest(
        a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b
    )


class TokenSealer:
    """Seals and opens the tokens of a grant row; the first configured key seals, all open."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = next(iter(keys))

    def __repr__(self) -> str:
        return f"TokenSealer(key_ids={self.key_ids!r})"

    def seal(
        self, grant: Grant, access_token: SecretStr, refresh_token: SecretStr | None = None
    ) -> None:
        """Write `grant`'s ciphertexts (and key id) for these tokens; the refresh column is
        cleared when no refresh token is given."""
        grant.key_id = self.current_key_id
        grant.access_token_enc = self._encrypt(grant.id, "access_token", access_token)
        grant.refresh_token_enc = (
            None
            if refresh_token is None
            else self._encrypt(grant.id, "refresh_token", refresh_token)
        )

    def open_access_token(self, grant_id: uuid.UUID, key_id: str, sealed: bytes) -> str:
        """The plaintext access token, from a grant row's id, key id and ciphertext (the hot
        path reads these columns without a `Grant`; the token is serialised as it is).

        Raises TokenUnreadable (also for the refresh token below) for an unknown key id, a
        truncated or tampered ciphertext, or one moved from another row or column."""
        return self._decrypt(grant_id, "access_token", key_id, sealed)

    def open_refresh_token(
        self, grant_id: uuid.UUID, key_id: str, sealed: bytes | None
    ) -> SecretStr:
        """The refresh token, from the same columns as `open_access_token`; kept secret, since
        it only goes back to TikTok."""
        if sealed is None:
            raise TokenUnreadable("This grant has no refresh token.")
        return SecretStr(self._decrypt(grant_id, "refresh_token", key_id, sealed))

    def reseal(self, grant: Grant) -> bool:
        """Re-encrypt `grant`'s tokens (access and, if any, refresh) under the current key;
        False when they already are. The plaintexts, the row id and the column in the
        associated data stay the same, so every reader of the row sees the same tokens before
        and after. Raises TokenUnreadable when the row does not open with its own key id."""
        if grant.key_id == self.current_key_id:
            return False
        access = SecretStr(self.open_access_token(grant.id, grant.key_id, grant.access_token_enc))
        refresh = (
            None
            if grant.refresh_token_enc is None
            else self.open_refresh_token(grant.id, grant.key_id, grant.refresh_token_enc)
        )
        self.seal(grant, access, refresh)
        return True

    def knows(self, key_id: str) -> bool:
        """Whether a key with this id is configured (and can open what it sealed)."""
        return key_id in self._keys

    @property
    def key_ids(self) -> list[str]:
        """The configured key ids, the sealing one first."""
        return list(self._keys)

    def _encrypt(self, grant_id: uuid.UUID, column: Column, token: SecretStr) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        aead = self._keys[self.current_key_id]
        sealed = aead.encrypt(nonce, token.get_secret_value().encode(), _aad(grant_id, column))
        return nonce + sealed

    def _decrypt(self, grant_id: uuid.UUID, column: Column, key_id: str, blob: bytes) -> str:
        aead = self._keys.get(key_id)
        if aead is None:
            raise TokenUnreadable(f"No key with id {key_id!r} is configured.")
        if len(blob) <= _NONCE_BYTES:
            raise TokenUnreadable("The stored ciphertext is truncated.")
        try:
            plain = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(grant_id, column))
        except InvalidTag:
            raise TokenUnreadable("The stored ciphertext does not authenticate.") from None
        return plain.decode()


def _aad(grant_id: uuid.UUID, column: Column) -> bytes:
    return f"oauth_grant:{grant_id}:{column}".encode()

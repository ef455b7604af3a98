"""Token encryption at rest: AES-256-GCM with a key id per ciphertext so keys can rotate.

The associated data binds a ciphertext to the row and column it belongs to, so a ciphertext
copied into another row (or from the refresh column into the access column) fails to decrypt.
"""

from __future__ import annotations

import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tiktok_auth_service.errors import TokenUnreadable

_NONCE_BYTES = 12


def grant_aad(grant_id: uuid.UUID, column: str) -> str:
    """Associated data binding a ciphertext to one column of one grant row."""
    return f"oauth_grant:{grant_id}:{column}"


class TokenCipher:
    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is required")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = next(iter(keys))

    def __repr__(self) -> str:
        return f"TokenCipher(key_ids={list(self._keys)!r})"

    def encrypt(self, plaintext: str, associated_data: str) -> tuple[str, bytes]:
        """Encrypt with the current key; returns (key id, nonce + ciphertext)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self.current_key_id].encrypt(
            nonce, plaintext.encode(), associated_data.encode()
        )
        return self.current_key_id, nonce + sealed

    def decrypt(self, key_id: str, blob: bytes, associated_data: str) -> str:
        """Raises TokenUnreadable for an unknown key id, tampering, or a ciphertext moved
        from another row or column."""
        aead = self._keys.get(key_id)
        if aead is None:
            raise TokenUnreadable(f"No key with id {key_id!r} is configured.")
        try:
            plain = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], associated_data.encode())
        except InvalidTag:
            raise TokenUnreadable("The stored ciphertext does not authenticate.") from None
        return plain.decode()

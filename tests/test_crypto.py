"""Token encryption: AES-256-GCM, key rotation, ciphertexts bound to their row."""

from __future__ import annotations

import pytest

from tiktok_auth_service.crypto import TokenCipher
from tiktok_auth_service.errors import TokenUnreadable

OLD = {"old": b"o" * 32}
BOTH = {"new": b"n" * 32, "old": b"o" * 32}


def test_round_trip_with_current_key() -> None:
    cipher = TokenCipher(BOTH)
    key_id, blob = cipher.encrypt("secret-token", "row:1")
    assert key_id == "new"
    assert b"secret-token" not in blob
    assert cipher.decrypt(key_id, blob, "row:1") == "secret-token"


def test_nonces_differ_between_encryptions() -> None:
    cipher = TokenCipher(OLD)
    assert cipher.encrypt("t", "a")[1] != cipher.encrypt("t", "a")[1]


def test_old_ciphertexts_still_decrypt_after_rotation() -> None:
    _, blob = TokenCipher(OLD).encrypt("secret-token", "row:1")
    assert TokenCipher(BOTH).decrypt("old", blob, "row:1") == "secret-token"


def test_other_row_or_tampering_or_unknown_key_fails() -> None:
    cipher = TokenCipher(BOTH)
    key_id, blob = cipher.encrypt("secret-token", "row:1")
    with pytest.raises(TokenUnreadable):
        cipher.decrypt(key_id, blob, "row:2")
    with pytest.raises(TokenUnreadable):
        cipher.decrypt(key_id, blob[:-1] + bytes([blob[-1] ^ 1]), "row:1")
    with pytest.raises(TokenUnreadable):
        TokenCipher({"other": b"x" * 32}).decrypt(key_id, blob, "row:1")


def test_repr_shows_no_key_material() -> None:
    assert "nnnn" not in repr(TokenCipher(BOTH)) and "old" in repr(TokenCipher(BOTH))

"""Token sealing: AES-256-GCM, key rotation, ciphertexts bound to their row and column."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from tiktok_auth_service.crypto import TokenSealer, same_secret
from tiktok_auth_service.errors import TokenUnreadable
from tiktok_auth_service.models.grants import Flow, Grant, GrantStatus

OLD = {"old": b"o" * 32}
BOTH = {"new": b"n" * 32, "old": b"o" * 32}


def grant() -> Grant:
    now = datetime.now(UTC)
    return Grant(
        id=uuid.uuid4(),
        flow=Flow.TIKTOK_ACCOUNT,
        key_id="",
        access_token_enc=b"",
        scope=[],
        status=GrantStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )


def test_round_trip_with_current_key() -> None:
    sealer, row = TokenSealer(BOTH), grant()
    sealer.seal(row, SecretStr("access-token"), SecretStr("refresh-token"))
    assert row.key_id == "new"
    assert b"access-token" not in row.access_token_enc
    assert sealer.open_access_token(row.id, row.key_id, row.access_token_enc) == "access-token"
    assert (
        sealer.open_refresh_token(row.id, row.key_id, row.refresh_token_enc).get_secret_value()
        == "refresh-token"
    )


def test_sealing_without_refresh_token_clears_it() -> None:
    sealer, row = TokenSealer(OLD), grant()
    sealer.seal(row, SecretStr("a"), SecretStr("r"))
    sealer.seal(row, SecretStr("a"))
    assert row.refresh_token_enc is None
    with pytest.raises(TokenUnreadable):
        sealer.open_refresh_token(row.id, row.key_id, row.refresh_token_enc)


def test_nonces_differ_between_sealings() -> None:
    sealer, first, second = TokenSealer(OLD), grant(), grant()
    second.id = first.id
    sealer.seal(first, SecretStr("t"))
    sealer.seal(second, SecretStr("t"))
    assert first.access_token_enc != second.access_token_enc


def test_old_ciphertexts_still_open_after_rotation() -> None:
    row = grant()
    TokenSealer(OLD).seal(row, SecretStr("secret-token"))
    assert row.key_id == "old"
    opened = TokenSealer(BOTH).open_access_token(row.id, row.key_id, row.access_token_enc)
    assert opened == "secret-token"


def test_other_row_column_tampering_truncation_or_unknown_key_fails() -> None:
    sealer, row = TokenSealer(BOTH), grant()
    sealer.seal(row, SecretStr("secret-token"), SecretStr("refresh-token"))
    blob = row.access_token_enc
    attempts: list[Callable[[], str]] = [
        lambda: sealer.open_access_token(uuid.uuid4(), row.key_id, blob),
        lambda: sealer.open_access_token(row.id, row.key_id, blob[:-1] + bytes([blob[-1] ^ 1])),
        lambda: sealer.open_access_token(row.id, row.key_id, blob[:5]),
        lambda: sealer.open_access_token(row.id, row.key_id, b""),
        lambda: TokenSealer({"other": b"x" * 32}).open_access_token(row.id, row.key_id, blob),
    ]
    for attempt in attempts:
        with pytest.raises(TokenUnreadable):
            attempt()
    assert row.refresh_token_enc is not None
    with pytest.raises(TokenUnreadable):  # the refresh ciphertext moved into the access column
        sealer.open_access_token(row.id, row.key_id, row.refresh_token_enc)


def test_repr_shows_no_key_material() -> None:
    text = repr(TokenSealer(BOTH))
    assert "nnnn" not in text and "old" in text


def test_reseal_moves_a_row_to_the_current_key_keeping_its_tokens_and_binding() -> None:
    row = grant()
    TokenSealer(OLD).seal(row, SecretStr("access-token"), SecretStr("refresh-token"))
    sealed = row.access_token_enc
    sealer = TokenSealer(BOTH)
    assert sealer.reseal(row)
    assert row.key_id == "new" and row.access_token_enc != sealed
    assert not sealer.reseal(row)  # already on the current key: nothing to do
    new_only = TokenSealer({"new": BOTH["new"]})
    assert new_only.open_access_token(row.id, row.key_id, row.access_token_enc) == "access-token"
    assert (
        new_only.open_refresh_token(row.id, row.key_id, row.refresh_token_enc).get_secret_value()
        == "refresh-token"
    )
    with pytest.raises(TokenUnreadable):  # still bound to its own row
        new_only.open_access_token(uuid.uuid4(), row.key_id, row.access_token_enc)


def test_reseal_of_a_row_whose_key_is_gone_changes_nothing() -> None:
    row = grant()
    TokenSealer(OLD).seal(row, SecretStr("access-token"))
    sealed = row.access_token_enc
    with pytest.raises(TokenUnreadable):
        TokenSealer({"new": BOTH["new"]}).reseal(row)
    assert (row.key_id, row.access_token_enc) == ("old", sealed)


def test_secrets_are_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """`same_secret`, which every comparison of secrets uses, takes time independent of where
    the values differ: it is hmac.compare_digest on bytes (str encoded, so any text works)."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert same_secret("act.token", "act.token")
    assert not same_secret("act.token", "act.tokem")
    assert same_secret("zoë", "zoë".encode())
    assert not same_secret(b"\x00" * 32, b"\x00" * 31)
    assert compared == [
        (b"act.token", b"act.token"),
        (b"act.token", b"act.tokem"),
        ("zoë".encode(), "zoë".encode()),
        (b"\x00" * 32, b"\x00" * 31),
    ]

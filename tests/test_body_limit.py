"""Request bodies past MAX_BODY_BYTES are refused with 413 before the app reads them: a
declared length at once, a streamed body as soon as it passes the limit, so an anonymous
caller cannot make the process hold a body of its choosing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.fixtures import FRONTEND, bearer, make_settings
from tiktok_auth_service.config import Settings

LIMIT = 4096
CHUNK = 1024


@pytest.fixture
def settings(migrated: str) -> Settings:
    return make_settings(migrated, max_body_bytes=LIMIT)


class Body:
    """A streamed request body that counts how much of it the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * CHUNK


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "payload_too_large"
    assert str(LIMIT) in answer.json()["detail"]


class TestBodyLimit:
    async def test_a_declared_length_past_the_limit_is_refused_unread(
        self, client: httpx.AsyncClient
    ) -> None:
        body = Body(1000)
        answer = await client.post(
            "/connect-sessions",
            content=body,
            headers={"content-length": str(1000 * CHUNK), "content-type": "application/json"},
        )
        assert_refused(answer)
        assert body.pulled == 0

    async def test_a_streamed_body_is_cut_off_at_the_limit(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        body = Body(1000)
        answer = await client.post(
            "/connect-sessions",
            content=body,
            headers={**bearer(api_key), "content-type": "application/json"},
        )
        assert_refused(answer)
        assert body.pulled <= LIMIT // CHUNK + 1

    async def test_a_body_within_the_limit_is_served(
        self, client: httpx.AsyncClient, api_key: str
    ) -> None:
        padding = "p" * (LIMIT - 200)
        content = orjson.dumps({"return_to": f"{FRONTEND}/done?{padding}"[:2000]})
        assert len(content) <= LIMIT
        answer = await client.post(
            "/connect-sessions",
            content=content,
            headers={**bearer(api_key), "content-type": "application/json"},
        )
        assert answer.status_code == 201, answer.text

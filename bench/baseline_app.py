"""The baseline for bench/hot_path.py: one asyncpg primary-key query behind a bare Starlette
route, returning a constant JSON body. Nothing can be cheaper and still touch the database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

GRANT_ID = uuid.UUID(os.environ["BENCH_GRANT_ID"])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    dsn = os.environ["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://", 1)
    app.state.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    yield
    await app.state.pool.close()


async def token(request: Request) -> Response:
    async with request.app.state.pool.acquire() as connection:
        await connection.fetchval("SELECT key_id FROM oauth_grant WHERE id = $1", GRANT_ID)
    return Response(b'{"ok":true}', media_type="application/json")


app = Starlette(routes=[Route("/tokens/{advertiser_id}", token)], lifespan=lifespan)

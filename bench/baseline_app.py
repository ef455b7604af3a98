"""The baselines for bench/hot_path.py, both bare Starlette answering a body the size of a real
token answer: (b) `/tokens/{advertiser_id}` after one asyncpg primary-key lookup of that
advertiser, the cheapest read that still touches the database, and (c) `/constant/{id}`, the same
body with no database at all: the ceiling of the HTTP stack itself."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tiktok_auth_service.db import asyncpg_dsn

BODY = b"x" * int(os.environ["BENCH_BODY_BYTES"])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    dsn = asyncpg_dsn(os.environ["DATABASE_URL"])
    app.state.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10)
    yield
    await app.state.pool.close()


async def token(request: Request) -> Response:
    async with request.app.state.pool.acquire() as connection:
        await connection.fetchval(
            "SELECT grant_id FROM advertiser WHERE advertiser_id = $1",
            request.path_params["advertiser_id"],
        )
    return Response(BODY, media_type="application/json")


async def constant(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(
    routes=[Route("/tokens/{advertiser_id}", token), Route("/constant/{advertiser_id}", constant)],
    lifespan=lifespan,
)

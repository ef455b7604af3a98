"""A lost database is a 503 with a stable code, never a 500."""

from __future__ import annotations

import contextlib

import httpx

from tests.fixtures import FakeClock, make_settings
from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.api.deps import app_service
from tiktok_auth_service.app import create_app
from tiktok_auth_service.db import migrate


async def test_requests_during_an_outage_get_503(clock: FakeClock) -> None:
    async with contextlib.AsyncExitStack() as running:
        with embedded_postgres() as url:  # its own server, stopped at the end of this block
            await migrate(url)
            # Without connect sessions, POST /authorize writes its state: a write route.
            app = create_app(make_settings(url, connect_sessions_required=False), clock=clock)
            await running.enter_async_context(app.router.lifespan_context(app))
            service = app_service(app)
            key = (await service.api_keys.create("k", [])).key.get_secret_value()
            http = await running.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="https://b.example"
                )
            )
            assert (await http.get("/readyz")).status_code == 200
        ready = await http.get("/readyz")
        token = await http.get(
            "/tokens/7100000000000000001", headers={"authorization": f"Bearer {key}"}
        )
        authorize = await http.post("/authorize")
        for response in (ready, token, authorize):
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "database_unavailable"
            assert response.headers["retry-after"] == "5"

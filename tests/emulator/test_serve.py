"""The emulator served by a real uvicorn server in the test's own event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn

from tiktok_emulator import EmulatorConfig, create_emulator_app, serve

from .helpers import APP_ID, SECRET, callback_params, check_envelope


@pytest.fixture
async def served() -> AsyncIterator[httpx.AsyncClient]:
    """A client talking HTTP to a uvicorn-served emulator on an ephemeral port."""
    app = create_emulator_app(EmulatorConfig(qps=0, qpm=0, qpd=0))
    # log_config=None: uvicorn's records reach the root logger (and the secret scan).
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", log_config=None))
    # Bind and listen before starting, so the kernel queues our first requests until uvicorn
    # accepts them: no need to poll for readiness.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client
    server.should_exit = True
    await task
    sock.close()


async def test_full_flow_and_hang_over_real_http(served: httpx.AsyncClient) -> None:
    response = await served.get(
        "/portal/auth",
        params={
            "app_id": APP_ID,
            "redirect_uri": "http://127.0.0.1:8000/callback",
            "emulator_decision": "approve",
        },
    )
    code = callback_params(response)["auth_code"]

    await served.post(
        "/_emulator/faults",
        json={"endpoint": "oauth2/access_token/", "responses": [{"hang": True}]},
    )
    call = asyncio.create_task(
        served.post(
            "/open_api/v1.3/oauth2/access_token/",
            json={"app_id": APP_ID, "secret": SECRET, "auth_code": code},
        )
    )
    waited = await served.get("/_emulator/hanging", params={"at_least": 1, "timeout": 5})
    assert waited.json()["reached"] is True
    await served.post("/_emulator/hanging/release", json={})
    body = check_envelope(await call)
    assert body["code"] == 0

    missing_slash = await served.post("/open_api/v1.3/oauth2/access_token", json={})
    assert (missing_slash.status_code, missing_slash.text) == (404, "404 page not found")


def test_serve_runs_uvicorn_with_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        seen.update(app=app, **options)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    serve(EmulatorConfig(qps=3), port=9999)

    assert seen["port"] == 9999
    assert seen["host"] == "127.0.0.1"
    assert seen["log_level"] == "warning"
    assert seen["app"].state.emulator.config.qps == 3

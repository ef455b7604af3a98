"""The emulator served by a real uvicorn server in the test's own event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn

from tiktok_emulator import EmulatorConfig, serve

from .helpers import APP_ID, SECRET, Emulator, callback_params, check_envelope


async def test_full_flow_and_hang_over_real_http(served_emulator: Emulator) -> None:
    served = served_emulator.client
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

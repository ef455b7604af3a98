"""An integrator's view: a typed client generated from /openapi.json by openapi-python-client
fetches a token and reads every error as a typed problem with its `code`."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures import Canaries, make_settings
from tests.helpers import new_token, store_advertiser_grant
from tiktok_auth_service.app import create_app
from tiktok_auth_service.service import Service

# Generates a client from the document: among the long runs.
pytestmark = pytest.mark.slow

ADVERTISER = "7100000000000000001"
PACKAGE = "tas_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client package, generated once from the app's OpenAPI document and imported."""
    folder = tmp_path_factory.mktemp("client")
    spec = folder / "openapi.json"
    spec.write_text(json.dumps(create_app(make_settings("postgresql+asyncpg://x@/y")).openapi()))
    tools = Path(sys.executable).parent
    subprocess.run(
        [
            str(tools / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(folder / PACKAGE),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"},
    )
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def typed_client(generated: ModuleType, app: FastAPI, key: str | None) -> Any:
    client = generated.AuthenticatedClient(base_url="https://broker.example", token=key or "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    client.set_async_httpx_client(
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="https://broker.example",
            headers=headers,
        )
    )
    return client


def operation(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.api.tokens.{name}")


async def test_the_generated_client_fetches_a_token(
    generated: ModuleType, app: FastAPI, service: Service, api_key: str, canaries: Canaries
) -> None:
    token = new_token()
    canaries.add(token)
    await store_advertiser_grant(service, token, [ADVERTISER])
    async with typed_client(generated, app, api_key) as client:
        answer = await operation("get_advertiser_token").asyncio_detailed(
            advertiser_id=ADVERTISER, client=client
        )
    assert answer.status_code == 200
    assert type(answer.parsed).__name__ == "AdvertiserToken"
    assert answer.parsed.access_token == token
    assert answer.parsed.scope == [4]


@pytest.mark.parametrize(
    ("with_key", "status", "code"),
    [(True, 404, "not_connected"), (False, 401, "unauthenticated")],
)
async def test_errors_arrive_as_typed_problems(
    generated: ModuleType,
    app: FastAPI,
    api_key: str,
    with_key: bool,
    status: int,
    code: str,
) -> None:
    async with typed_client(generated, app, api_key if with_key else None) as client:
        answer = await operation("get_advertiser_token").asyncio_detailed(
            advertiser_id=ADVERTISER, client=client
        )
    assert answer.status_code == status
    assert type(answer.parsed).__name__ == "Problem"
    assert answer.parsed.code == code
    assert answer.parsed.status == status
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"

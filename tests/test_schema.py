"""The Alembic migrations produce exactly the schema the models describe; OpenAPI is usable."""

from __future__ import annotations

import httpx
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import tiktok_auth_service.models  # noqa: F401  (registers the tables on SQLModel.metadata)


async def test_migrations_match_models(migrated: str) -> None:
    engine = create_async_engine(migrated)

    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_openapi_documents_the_token_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    token = spec["paths"]["/tokens/{advertiser_id}"]["get"]
    assert set(token["responses"]) >= {"200", "401", "403", "404", "409", "422"}
    assert token["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "AdvertiserToken"
    )
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert token["security"] == [{"ApiKey": []}]
    assert (await client.get("/docs")).status_code == 200

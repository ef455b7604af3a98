"""GET /connections?tag=key:value at scale: the plan and time of the listing's query with a tag
filter, against the same query unfiltered, measured in the same run.

    uv run python bench/tag_filter.py [--connections 100000] [--repeats 20]

Starts an embedded PostgreSQL, migrates it and seeds `--connections` connections through SQL:
half advertiser grants of one advertiser each, half TikTok-account grants, every one tagged
`tenant` (one of a thousand values, so a tenant has a thousandth of them) and `env` (`prod` or
`staging`, half each); then ANALYZE. It runs the query the service sends (`read_connections`'
statements, one prepared statement each, as asyncpg sends them) for a first page of 100 with
an unrestricted key: unfiltered, one tenant, one tenant in prod, and `env:prod` (half the
table). It prints the median time of `--repeats` runs of each (past the five after which
PostgreSQL may switch a prepared statement to its generic plan) and its ratio to the
unfiltered page, then the EXPLAIN (ANALYZE, BUFFERS) of each filter, and of the rare-tag filter
under its generic plan (plan_cache_mode = force_generic_plan).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg
import orjson

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.crypto import digest
from tiktok_auth_service.db import migrate
from tiktok_auth_service.repository.reads import (
    _LIST_CONNECTIONS_SQL,
    _LIST_TAGGED_CONNECTIONS_SQL,
)

KEY = "tas_bench-tag-filter-key-0000000000000000000"
TENANTS = 1000

_SEED = """
WITH seeded AS (
    INSERT INTO oauth_grant (id, flow, open_id, key_id, access_token_enc, scope, status, version,
                             created_at, updated_at, advertiser_ids, failures, tags,
                             next_check_at, refresh_due_at, expires_at)
    SELECT gen_random_uuid(),
           CASE WHEN n % 2 = 0 THEN 'advertiser' ELSE 'tiktok_account' END,
           CASE WHEN n % 2 = 1 THEN 'open-' || lpad(n::text, 8, '0') END,
           'k1', '\\x00'::bytea, '[]'::jsonb, 'active', 1, now(), now(),
           CASE WHEN n % 2 = 0 THEN ARRAY[(7100000000000000000 + n)::text] ELSE '{}' END,
           0,
           jsonb_build_object('tenant', 't' || (n % $2),
                              'env', CASE WHEN n / $2 % 2 = 0 THEN 'prod' ELSE 'staging' END),
           now() + interval '6 hours', now() + interval '20 hours', now() + interval '1 day'
    FROM generate_series(1, $1) AS n
    RETURNING id, flow, advertiser_ids
)
INSERT INTO advertiser (advertiser_id, grant_id, status, created_at, updated_at)
SELECT advertiser_ids[1], id, 'active', now(), now() FROM seeded WHERE flow = 'advertiser'
"""


async def seed(url: str, connections: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(_SEED, connections, TENANTS)
        await connection.execute(
            "INSERT INTO api_client (id, name, key_hash, unrestricted, allowed_advertiser_ids,"
            " allowed_open_ids, created_at) VALUES (gen_random_uuid(), 'bench', $1, true,"
            " '{}', '{}', now())",
            digest(KEY),
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def arguments(tags: dict[str, str] | None) -> tuple[str, list[Any]]:
    """The statement and parameters `read_connections` sends for a first page of 100."""
    values: list[Any] = [digest(KEY), None, None, "", "", 101, None]
    if not tags:
        return _LIST_CONNECTIONS_SQL, values
    return _LIST_TAGGED_CONNECTIONS_SQL, [*values, orjson.dumps(tags).decode()]


async def median_ms(connection: asyncpg.Connection, tags: dict[str, str] | None, n: int) -> float:
    sql, values = arguments(tags)
    statement = await connection.prepare(sql)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        rows = await statement.fetch(*values)
        times.append(time.perf_counter() - started)
    assert rows and rows[0]["flow"] is not None
    return statistics.median(times) * 1000


async def explain(connection: asyncpg.Connection, tags: dict[str, str], title: str) -> None:
    sql, values = arguments(tags)
    plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values)
    print(f"\n===== {title}")
    for (line,) in plan:
        print(f"   {line}")


async def measure(url: str, connections: int, repeats: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        filters: list[tuple[str, dict[str, str] | None]] = [
            ("unfiltered", None),
            ("tag=tenant:t42", {"tenant": "t42"}),
            ("tag=tenant:t42&tag=env:prod", {"tenant": "t42", "env": "prod"}),
            ("tag=env:prod", {"env": "prod"}),
        ]
        baseline = await median_ms(connection, None, repeats)
        print(f"{connections:,} connections, first page of 100, median of {repeats} runs:")
        for title, tags in filters:
            took = baseline if tags is None else await median_ms(connection, tags, repeats)
            print(f"  {title:32} {took:7.2f} ms  {took / baseline:5.2f}x unfiltered")
        for title, tags in filters[1:]:
            assert tags is not None
            await explain(connection, tags, f"GET /connections?{title}")
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        sql, _ = arguments({"tenant": "t42"})
        await connection.execute(f"PREPARE generic AS {sql}")
        # EXECUTE takes no bind parameters: the values are written out.
        key = digest(KEY).hex()
        values = f"""decode('{key}', 'hex'), NULL, NULL, '', '', 101, NULL, '{{"tenant": "t42"}}'"""
        plan = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE generic({values})")
        print("\n===== GET /connections?tag=tenant:t42, generic plan")
        for (line,) in plan:
            print(f"   {line}")
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        url = database_url.replace("+asyncpg", "", 1)
        asyncio.run(seed(url, args.connections))
        asyncio.run(measure(url, args.connections, args.repeats))


if __name__ == "__main__":
    main()

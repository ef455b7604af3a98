"""The TikTok call budget's rows (`budget.py` says how they are used): each step one statement
on the bare pool, so that taking a slot costs one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tiktok_auth_service.db import Database

# The rows are locked in one order (the app's row, scope '', sorts first) so that statements
# taking several never deadlock. `now` is read while the rows are locked (per locked row,
# the largest kept): read before the lock wait, it would anchor the slot in the past and
# put two starts closer than an interval. A slot is taken only if every row is free by the
# app's slot (an endpoint still busy then would waste the app's budget until it is free:
# the caller is told when it is instead), and only within `within` seconds when one is given.
_TAKE = """
WITH held AS MATERIALIZED (
    SELECT scope, tat FROM rate_budget
    WHERE app_id = $1 AND scope = ANY($2::text[])
    ORDER BY scope
    FOR UPDATE
), slot AS MATERIALIZED (
    SELECT coalesce($3::float8, max(extract(epoch FROM clock_timestamp())::float8)) AS now,
           max(tat) FILTER (WHERE scope = '') AS app_at,
           coalesce(max(tat) FILTER (WHERE scope <> ''), '-infinity'::float8) AS endpoint_at,
           count(*) AS found
    FROM held
), decided AS MATERIALIZED (
    SELECT now, greatest(now, app_at) AS at, endpoint_at,
           found = cardinality($2::text[])
               AND endpoint_at <= greatest(now, app_at)
               AND ($5::float8 IS NULL OR greatest(now, app_at) - now <= $5) AS take,
           found = cardinality($2::text[]) AS complete
    FROM slot
), taken AS (
    UPDATE rate_budget AS b
    SET tat = decided.at + i.step
    FROM decided, unnest($2::text[], $4::float8[]) AS i(scope, step)
    WHERE decided.take AND b.app_id = $1 AND b.scope = i.scope
    RETURNING 1
)
SELECT now, at, greatest(at, endpoint_at) AS free_at, complete,
       take AND (SELECT count(*) FROM taken) > 0 AS taken
FROM decided
"""

_ENSURE = """
INSERT INTO rate_budget (app_id, scope, tat)
SELECT $1, scope, '-infinity'::float8 FROM unnest($2::text[]) AS scope
ON CONFLICT DO NOTHING
"""

# Throttled during a cool-down (calls that started before it): nothing changes. Throttled
# again within `$5` seconds of the last one's end: twice as long, at most `$4`. Otherwise `$3`.
_COOL = """
WITH clock AS MATERIALIZED (
    SELECT coalesce($2::float8, extract(epoch FROM clock_timestamp())::float8) AS now
), last AS MATERIALIZED (
    SELECT cool_until, cool_seconds FROM rate_budget WHERE app_id = $1 AND scope = ''
    FOR UPDATE
), next AS MATERIALIZED (
    SELECT now,
           CASE WHEN now < cool_until THEN NULL
                WHEN now < cool_until + $5 THEN least($4, greatest($3, 2 * cool_seconds))
                ELSE $3 END AS seconds
    FROM clock, last
)
UPDATE rate_budget AS b
SET cool_seconds = next.seconds, cool_until = next.now + next.seconds,
    tat = greatest(b.tat, next.now + next.seconds)
FROM next
WHERE b.app_id = $1 AND b.scope = '' AND next.seconds IS NOT NULL
RETURNING next.seconds
"""


@dataclass(frozen=True, slots=True)
class Slot:
    """What the budget answered, in seconds on its clock: `taken`, the slot `at`; not taken,
    the app's next slot is `at` and every row asked for is free at `free_at`. `now`: the
    clock when it answered."""

    taken: bool
    now: float
    at: float
    free_at: float


async def take_slot(
    db: Database,
    app_id: str,
    scopes: Sequence[str],
    steps: Sequence[float],
    *,
    now: float | None,
    within: float | None,
) -> Slot:
    """Take the next slot of the budgets `scopes` (the app's, '', first), advancing each by its
    step, if all of them are free by the app's next slot and it is at most `within` away.
    `now`: the time on the caller's clock, or None for the database's."""
    async with db.acquire() as connection:
        row = await connection.fetchrow(_TAKE, app_id, scopes, now, steps, within)
        if not row["complete"]:
            await connection.execute(_ENSURE, app_id, scopes)
            row = await connection.fetchrow(_TAKE, app_id, scopes, now, steps, within)
    return Slot(taken=row["taken"], now=row["now"], at=row["at"], free_at=row["free_at"])


async def cool_budget(
    db: Database,
    app_id: str,
    seconds: float,
    *,
    longest: float,
    again_within: float,
    now: float | None,
) -> float | None:
    """Start no call of the app for `seconds` from now, or for twice the last cool-down (at
    most `longest`) when that one ended less than `again_within` seconds ago; nothing while
    one is under way. Returns the length of the cool-down started, if one was."""
    async with db.acquire() as connection:
        await connection.execute(_ENSURE, app_id, [""])
        seconds_started: float | None = await connection.fetchval(
            _COOL, app_id, now, seconds, longest, again_within
        )
    return seconds_started

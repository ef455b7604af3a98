"""Triggers that tell every server process's token cache what changed (tokens/cache.py, whose
`parse_change` reads these payloads; tests/test_token_cache.py holds the two equal).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One function a table; each names the old and the new row, so that a row moved to another
# key (a re-pointed advertiser keeps its id, but a key hash or open id could change) evicts
# both. PostgreSQL folds identical notifications of one transaction into one.
_FUNCTIONS = {
    "api_client": "'c:' || encode({row}.key_hash, 'hex')",
    "advertiser": "'a:' || {row}.advertiser_id",
    "oauth_grant": "'g:' || {row}.id || ':' || coalesce({row}.open_id, '')",
}


def upgrade() -> None:
    for table, payload in _FUNCTIONS.items():
        op.execute(f"""
CREATE FUNCTION {table}_token_cache_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('token_cache', {payload.format(row="OLD")});
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('token_cache', {payload.format(row="NEW")});
    END IF;
    RETURN NULL;
END
$$""")
        op.execute(f"""
CREATE TRIGGER {table}_token_cache_notify
AFTER INSERT OR UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION {table}_token_cache_notify()""")


def downgrade() -> None:
    for table in _FUNCTIONS:
        op.execute(f"DROP TRIGGER {table}_token_cache_notify ON {table}")
        op.execute(f"DROP FUNCTION {table}_token_cache_notify()")

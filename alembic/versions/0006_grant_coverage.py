"""Agency scale: the advertisers each grant's token covers as rows (`grant_coverage`), kept in
step with `oauth_grant.advertiser_ids` by triggers, replacing the GIN index; and advertiser
rows announce to the token caches only the changes a token read sees.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Whoever writes `advertiser_ids` (the callback, a liveness sync, an operator's SQL), the rows
# follow, in the same transaction; an update adds and removes only the difference.
_COVERAGE_FUNCTION = """
CREATE FUNCTION grant_coverage_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO grant_coverage (advertiser_id, grant_id)
        SELECT DISTINCT covered, NEW.id FROM unnest(NEW.advertiser_ids) AS covered;
        RETURN NULL;
    END IF;
    DELETE FROM grant_coverage
    WHERE grant_id = OLD.id
      AND advertiser_id = ANY (ARRAY(
          SELECT unnest(OLD.advertiser_ids) EXCEPT SELECT unnest(NEW.advertiser_ids)));
    INSERT INTO grant_coverage (advertiser_id, grant_id)
    SELECT covered, NEW.id
    FROM (SELECT unnest(NEW.advertiser_ids) EXCEPT SELECT unnest(OLD.advertiser_ids))
        AS added(covered);
    RETURN NULL;
END
$$"""

# The token read sees an advertiser row's grant and status only: a new name or timestamp
# changes no answer, so it is not announced (a callback names a thousand advertisers at once).
_ADVERTISER_CHANGED = (
    "(OLD.advertiser_id, OLD.grant_id, OLD.status)"
    " IS DISTINCT FROM (NEW.advertiser_id, NEW.grant_id, NEW.status)"
)


def upgrade() -> None:
    op.create_table(
        "grant_coverage",
        sa.Column("advertiser_id", sa.Text, primary_key=True),
        sa.Column(
            "grant_id",
            sa.Uuid,
            sa.ForeignKey("oauth_grant.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("ix_grant_coverage_grant_id", "grant_coverage", ["grant_id"])
    op.execute(
        "INSERT INTO grant_coverage (advertiser_id, grant_id)"
        " SELECT DISTINCT covered, id FROM oauth_grant, unnest(advertiser_ids) AS covered"
    )
    op.execute(_COVERAGE_FUNCTION)
    op.execute("""
CREATE TRIGGER oauth_grant_coverage_insert AFTER INSERT ON oauth_grant
FOR EACH ROW WHEN (cardinality(NEW.advertiser_ids) > 0)
EXECUTE FUNCTION grant_coverage_follow()""")
    op.execute("""
CREATE TRIGGER oauth_grant_coverage_update AFTER UPDATE OF advertiser_ids ON oauth_grant
FOR EACH ROW WHEN (OLD.advertiser_ids IS DISTINCT FROM NEW.advertiser_ids)
EXECUTE FUNCTION grant_coverage_follow()""")
    op.drop_index("ix_oauth_grant_advertiser_ids", table_name="oauth_grant")

    op.execute("DROP TRIGGER advertiser_token_cache_notify ON advertiser")
    op.execute("""
CREATE TRIGGER advertiser_token_cache_notify AFTER INSERT OR DELETE ON advertiser
FOR EACH ROW EXECUTE FUNCTION advertiser_token_cache_notify()""")
    op.execute(f"""
CREATE TRIGGER advertiser_token_cache_notify_update AFTER UPDATE ON advertiser
FOR EACH ROW WHEN ({_ADVERTISER_CHANGED})
EXECUTE FUNCTION advertiser_token_cache_notify()""")


def downgrade() -> None:
    op.execute("DROP TRIGGER advertiser_token_cache_notify_update ON advertiser")
    op.execute("DROP TRIGGER advertiser_token_cache_notify ON advertiser")
    op.execute("""
CREATE TRIGGER advertiser_token_cache_notify AFTER INSERT OR UPDATE OR DELETE ON advertiser
FOR EACH ROW EXECUTE FUNCTION advertiser_token_cache_notify()""")

    op.create_index(
        "ix_oauth_grant_advertiser_ids",
        "oauth_grant",
        ["advertiser_ids"],
        postgresql_using="gin",
    )
    op.execute("DROP TRIGGER oauth_grant_coverage_update ON oauth_grant")
    op.execute("DROP TRIGGER oauth_grant_coverage_insert ON oauth_grant")
    op.execute("DROP FUNCTION grant_coverage_follow()")
    op.drop_table("grant_coverage")

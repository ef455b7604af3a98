"""Tags on connect sessions, their states and grants (a GIN index answers `tags @> ...`); the
last refresh or liveness failure of each grant since its last success.

The token cache needs no new trigger: a grant's row announces every change of itself
(0004), tags included, and the token read answers with them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
_TAGGED = ("connect_session", "oauth_state", "oauth_grant")


def upgrade() -> None:
    for table in _TAGGED:
        op.add_column(
            table, sa.Column("tags", pg.JSONB, nullable=False, server_default=sa.text("'{}'"))
        )
    # jsonb_path_ops: smaller than the default operator class, and containment is all the
    # connections filter asks. No pending list (fastupdate): every refresh or check rewrites
    # the grant's row, so the list would keep filling, and each filter reads it all (5 ms at
    # 100,000 grants, bench/tag_filter.py).
    op.create_index(
        "ix_oauth_grant_tags",
        "oauth_grant",
        ["tags"],
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
        postgresql_with={"fastupdate": "off"},
    )
    op.add_column("oauth_grant", sa.Column("last_failure_at", TZ, nullable=True))
    op.add_column("oauth_grant", sa.Column("last_failure_code", sa.Integer, nullable=True))
    op.add_column("oauth_grant", sa.Column("last_failure_message", sa.Text, nullable=True))


def downgrade() -> None:
    for name in ("last_failure_message", "last_failure_code", "last_failure_at"):
        op.drop_column("oauth_grant", name)
    op.drop_index("ix_oauth_grant_tags", table_name="oauth_grant")
    for table in _TAGGED:
        op.drop_column(table, "tags")

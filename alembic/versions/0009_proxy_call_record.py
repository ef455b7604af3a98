"""The audit row of a proxied call also holds TikTok's request id and the call's duration;
token reads, checks and revocations leave both NULL.

Nullable columns without a default: PostgreSQL adds them to the catalogue only, without
rewriting token_access, so the migration is instant at any size.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("token_access", sa.Column("tiktok_request_id", sa.Text, nullable=True))
    op.add_column("token_access", sa.Column("duration_ms", sa.Double, nullable=True))


def downgrade() -> None:
    op.drop_column("token_access", "duration_ms")
    op.drop_column("token_access", "tiktok_request_id")

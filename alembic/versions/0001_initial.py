"""Initial schema: grants, advertisers, OAuth states, API clients.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_grant",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("open_id", sa.Text, nullable=True),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("access_token_enc", sa.LargeBinary, nullable=False),
        sa.Column("refresh_token_enc", sa.LargeBinary, nullable=True),
        sa.Column("expires_at", TZ, nullable=True),
        sa.Column("refresh_expires_at", TZ, nullable=True),
        sa.Column("scope", pg.JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("last_checked_at", TZ, nullable=True),
        sa.Column("refresh_failed_at", TZ, nullable=True),
        sa.CheckConstraint("flow IN ('advertiser', 'tiktok_account')", name="flow_known"),
        sa.CheckConstraint(
            "status IN ('active', 'reauthorization_required', 'revoked')", name="status_known"
        ),
    )
    op.create_index(
        "uq_oauth_grant_open_id",
        "oauth_grant",
        ["open_id"],
        unique=True,
        postgresql_where=sa.text("open_id IS NOT NULL"),
    )
    op.create_index(
        "ix_oauth_grant_refresh_due",
        "oauth_grant",
        ["expires_at"],
        postgresql_where=sa.text("flow = 'tiktok_account' AND status = 'active'"),
    )
    op.create_table(
        "advertiser",
        sa.Column("advertiser_id", sa.Text, primary_key=True),
        sa.Column(
            "grant_id",
            sa.Uuid,
            sa.ForeignKey("oauth_grant.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_advertiser_grant_id", "advertiser", ["grant_id"])
    op.create_table(
        "oauth_state",
        sa.Column("state_hash", sa.LargeBinary, primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("browser_hash", sa.LargeBinary, nullable=False),
        sa.Column("return_to", sa.Text, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
    )
    op.create_index("ix_oauth_state_expires_at", "oauth_state", ["expires_at"])
    op.create_table(
        "api_client",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("key_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("unrestricted", sa.Boolean, nullable=False),
        sa.Column("allowed_advertiser_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("allowed_open_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_client")
    op.drop_table("oauth_state")
    op.drop_table("advertiser")
    op.drop_table("oauth_grant")

"""Grant lifecycle: TikTok's advertiser list per token, leases instead of row locks across
TikTok calls, liveness checks, orphaned grants, connect sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
_GRANT_TIMES = ("refreshed_at", "refresh_due_at", "next_check_at", "lease_until", "orphaned_at")


def upgrade() -> None:
    op.create_table(
        "connect_session",
        sa.Column("session_hash", sa.LargeBinary, primary_key=True),
        sa.Column("flow", sa.Text, nullable=False),
        sa.Column("return_to", sa.Text, nullable=True),
        sa.Column("end_user", sa.Text, nullable=True),
        sa.Column(
            "api_client_id",
            sa.Uuid,
            sa.ForeignKey("api_client.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.Column("used_at", TZ, nullable=True),
    )
    op.create_index("ix_connect_session_expires_at", "connect_session", ["expires_at"])

    op.add_column(
        "oauth_state",
        sa.Column(
            "api_client_id",
            sa.Uuid,
            sa.ForeignKey("api_client.id", ondelete="CASCADE"),
            nullable=True,
        ),
    )
    op.add_column("oauth_state", sa.Column("end_user", sa.Text, nullable=True))

    op.add_column(
        "advertiser", sa.Column("status", sa.Text, nullable=False, server_default="active")
    )

    op.add_column(
        "oauth_grant",
        sa.Column("advertiser_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    op.add_column(
        "oauth_grant",
        sa.Column(
            "api_client_id",
            sa.Uuid,
            sa.ForeignKey("api_client.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )
    op.add_column("oauth_grant", sa.Column("connected_by", sa.Text, nullable=True))
    op.add_column("oauth_grant", sa.Column("end_user", sa.Text, nullable=True))
    op.add_column(
        "oauth_grant", sa.Column("failures", sa.Integer, nullable=False, server_default="0")
    )
    for name in _GRANT_TIMES:
        op.add_column("oauth_grant", sa.Column(name, TZ, nullable=True))

    # Existing grants: what TikTok covers is at least what they serve; account tokens were
    # issued at their last update; liveness is due one interval after the last check.
    op.execute(
        "UPDATE oauth_grant AS g SET advertiser_ids = COALESCE("
        " (SELECT array_agg(a.advertiser_id ORDER BY a.advertiser_id) FROM advertiser AS a"
        "  WHERE a.grant_id = g.id), '{}')"
    )
    op.execute(
        "UPDATE oauth_grant SET refreshed_at = updated_at,"
        " refresh_due_at = expires_at - interval '900 seconds'"
        " WHERE flow = 'tiktok_account'"
    )
    op.execute(
        "UPDATE oauth_grant SET next_check_at = COALESCE(last_checked_at, created_at)"
        " + interval '6 hours' WHERE flow = 'advertiser'"
    )

    op.drop_index("ix_oauth_grant_refresh_due", table_name="oauth_grant")
    op.create_index(
        "ix_oauth_grant_refresh_due",
        "oauth_grant",
        ["refresh_due_at"],
        postgresql_where=sa.text(
            "flow = 'tiktok_account' AND status = 'active' AND open_id IS NOT NULL"
        ),
    )
    op.create_index(
        "ix_oauth_grant_check_due",
        "oauth_grant",
        ["next_check_at"],
        postgresql_where=sa.text("flow = 'advertiser' AND status = 'active'"),
    )
    op.create_index(
        "ix_oauth_grant_orphaned",
        "oauth_grant",
        ["orphaned_at"],
        postgresql_where=sa.text("orphaned_at IS NOT NULL AND status = 'active'"),
    )
    op.create_index(
        "ix_oauth_grant_advertiser_ids",
        "oauth_grant",
        ["advertiser_ids"],
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index("ix_oauth_grant_advertiser_ids", table_name="oauth_grant")
    op.drop_index("ix_oauth_grant_orphaned", table_name="oauth_grant")
    op.drop_index("ix_oauth_grant_check_due", table_name="oauth_grant")
    op.drop_index("ix_oauth_grant_refresh_due", table_name="oauth_grant")
    op.create_index(
        "ix_oauth_grant_refresh_due",
        "oauth_grant",
        ["expires_at"],
        postgresql_where=sa.text("flow = 'tiktok_account' AND status = 'active'"),
    )
    for name in (*_GRANT_TIMES, "failures", "end_user", "connected_by", "api_client_id"):
        op.drop_column("oauth_grant", name)
    op.drop_column("oauth_grant", "advertiser_ids")
    op.drop_column("advertiser", "status")
    op.drop_column("oauth_state", "end_user")
    op.drop_column("oauth_state", "api_client_id")
    op.drop_table("connect_session")

"""Audit of token access, the webhook outbox, and the once-per-grant expiry warning.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "token_access",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("caller", sa.Text, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text, nullable=True),
    )
    op.create_index("ix_token_access_at", "token_access", ["at"])
    op.create_index("ix_token_access_subject_at", "token_access", ["subject", "at"])
    op.create_index("ix_token_access_caller_at", "token_access", ["caller", "at"])

    op.create_table(
        "webhook_delivery",
        sa.Column("seq", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("lease_until", TZ, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="delivery_status_known"
        ),
    )
    op.create_index(
        "ix_webhook_delivery_due",
        "webhook_delivery",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_webhook_delivery_order", "webhook_delivery", ["url", "subject", "seq"])

    op.add_column("oauth_grant", sa.Column("expiry_warned_at", TZ, nullable=True))


def downgrade() -> None:
    op.drop_column("oauth_grant", "expiry_warned_at")
    op.drop_table("webhook_delivery")
    op.drop_table("token_access")

"""Connect sessions get a public id and keep their outcome; a state names the session it
came from.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Sessions opened before this revision get an id of their own; new ones get theirs from
    # the service.
    op.add_column(
        "connect_session",
        sa.Column("id", sa.Uuid, nullable=False, server_default=sa.text("gen_random_uuid()")),
    )
    op.alter_column("connect_session", "id", server_default=None)
    op.create_unique_constraint("uq_connect_session_id", "connect_session", ["id"])
    op.add_column(
        "connect_session",
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    )
    op.create_check_constraint(
        "session_status_known",
        "connect_session",
        "status IN ('pending', 'connected', 'denied', 'failed')",
    )
    op.add_column(
        "connect_session",
        sa.Column("advertiser_ids", pg.ARRAY(sa.Text), nullable=False, server_default="{}"),
    )
    op.add_column("connect_session", sa.Column("open_id", sa.Text, nullable=True))
    op.add_column("connect_session", sa.Column("error", sa.Text, nullable=True))
    op.add_column("connect_session", sa.Column("completed_at", TZ, nullable=True))
    op.add_column(
        "oauth_state",
        sa.Column(
            "connect_session_id",
            sa.Uuid,
            sa.ForeignKey("connect_session.id", ondelete="CASCADE"),
            nullable=True,
        ),
    )
    op.create_index("ix_oauth_state_connect_session_id", "oauth_state", ["connect_session_id"])


def downgrade() -> None:
    op.drop_column("oauth_state", "connect_session_id")
    for name in ("completed_at", "error", "open_id", "advertiser_ids", "status"):
        op.drop_column("connect_session", name)
    op.drop_constraint("uq_connect_session_id", "connect_session")
    op.drop_column("connect_session", "id")

"""The webhook outbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .columns import timestamp


class WebhookDelivery(SQLModel, table=True):
    """The outbox: one event for one receiver, written in the transaction of the change that
    caused it, delivered at least once by the worker, in order per subject and receiver."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="delivery_status_known"
        ),
        sa.Index(
            "ix_webhook_delivery_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_webhook_delivery_order", "url", "subject", "seq"),
    )

    seq: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    event_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    event_type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = timestamp(False)
    status: str = Field(default="pending", sa_column=sa.Column(sa.Text, nullable=False))
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    next_attempt_at: datetime = timestamp(False)
    lease_until: datetime | None = timestamp(True)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    delivered_at: datetime | None = timestamp(True)

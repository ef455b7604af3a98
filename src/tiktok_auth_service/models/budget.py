"""The app's TikTok call budget, one row per scope."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class RateBudget(SQLModel, table=True):
    """One budget of TikTok calls shared by every replica (`budget.py`): the whole app's
    (`scope` '') or one endpoint's. `tat` is when its next call may start (GCRA's
    theoretical arrival time), in seconds on the database's clock."""

    __tablename__ = "rate_budget"
    # Unlogged: migration 0008 says why.
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    app_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    scope: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    tat: float = Field(sa_column=sa.Column(sa.Double, nullable=False))
    # The app's last cool-down: when it ends, and how long it was (`budget.cool_down`).
    cool_until: float = Field(
        sa_column=sa.Column(sa.Double, nullable=False, server_default="-infinity")
    )
    cool_seconds: float = Field(sa_column=sa.Column(sa.Double, nullable=False, server_default="0"))

"""The column types the tables share: timestamps with their time zone, the caller's tags,
and a StrEnum kept as TEXT."""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlmodel import Field


def timestamp(nullable: bool, **kwargs: Any) -> Any:
    """A `timestamptz` column."""
    return Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=nullable, **kwargs))


def tags() -> Any:
    """The caller's labels, string to string (bounds checked by the API): given to a connect
    session, carried by its state to the grant it produces."""
    return Field(
        default_factory=dict,
        sa_column=sa.Column(pg.JSONB, nullable=False, server_default=sa.text("'{}'")),
    )


class TextEnum(sa.types.TypeDecorator[enum.StrEnum]):
    """A TEXT column read back as its StrEnum (the CHECK constraints keep the values known)."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, enum_type: type[enum.StrEnum]) -> None:
        super().__init__()
        self.enum_type = enum_type

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> enum.StrEnum | None:
        return None if value is None else self.enum_type(value)

"""All SQL lives here: the write paths through an AsyncSession (`session.py`), the token read
through one asyncpg query on the bare pool (`reads.py`)."""

from .reads import (
    GrantReader,
    TokenRow,
    database_answers,
    grant_counts,
    read_account_token,
    read_advertiser_token,
)
from .session import Claim, Repository

__all__ = [
    "Claim",
    "GrantReader",
    "Repository",
    "TokenRow",
    "database_answers",
    "grant_counts",
    "read_account_token",
    "read_advertiser_token",
]

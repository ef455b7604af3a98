"""All SQL lives here: the write paths (and key rotation) through an AsyncSession
(`session.py`); the token read and the connections list, each one asyncpg query on the bare
pool (`reads.py`)."""

from .reads import (
    ConnectionRow,
    GrantReader,
    TokenRow,
    database_answers,
    read_account_token,
    read_advertiser_token,
    read_connections,
)
from .session import Claim, Repository

__all__ = [
    "Claim",
    "ConnectionRow",
    "GrantReader",
    "Repository",
    "TokenRow",
    "database_answers",
    "read_account_token",
    "read_advertiser_token",
    "read_connections",
]

"""All SQL lives here: the write paths (and key rotation) through an AsyncSession, one unit of
work at a time (`unit_of_work.py`: `transaction` yields the `Repository`, whose queries are
split by aggregate); the token read and the connections list, each one asyncpg query on the
bare pool (`reads.py`); the access audit (`access.py`)."""

from .access import TokenAccessRow, delete_access_before, read_access, write_access
from .reads import (
    ApiKeyRow,
    ConnectionRow,
    GrantReader,
    GrantRow,
    TokenRow,
    database_answers,
    grant_counts,
    read_account_token,
    read_advertiser_token,
    read_connections,
)
from .unit_of_work import Repository, transaction
from .work import Claim

__all__ = [
    "ApiKeyRow",
    "Claim",
    "ConnectionRow",
    "GrantReader",
    "GrantRow",
    "Repository",
    "TokenAccessRow",
    "TokenRow",
    "database_answers",
    "delete_access_before",
    "grant_counts",
    "read_access",
    "read_account_token",
    "read_advertiser_token",
    "read_connections",
    "transaction",
    "write_access",
]

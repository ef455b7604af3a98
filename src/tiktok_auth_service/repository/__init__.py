"""All SQL lives here: the write paths through an AsyncSession (`session.py`), the token read
through one asyncpg query on the bare pool (`reads.py`), the access audit (`access.py`)."""

from .access import AccessRecord, delete_access_before, read_access, write_access
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
    "AccessRecord",
    "Claim",
    "GrantReader",
    "Repository",
    "TokenRow",
    "database_answers",
    "delete_access_before",
    "grant_counts",
    "read_access",
    "read_account_token",
    "read_advertiser_token",
    "write_access",
]

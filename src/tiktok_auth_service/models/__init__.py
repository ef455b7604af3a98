"""Database tables, one module per aggregate as in `repository/`: grants and advertisers
(`grants.py`), connect sessions and states (`connect.py`), API keys (`callers.py`), the call
budget (`budget.py`), the audit (`access.py`), the webhook outbox (`outbox.py`); their shared
column types (`columns.py`). Tokens are stored only as AES-GCM ciphertexts (see crypto.py)."""

# Importing the package puts every table on SQLModel.metadata (Alembic and the foreign keys
# between modules need them all).
from . import access, budget, callers, connect, grants, outbox  # noqa: F401

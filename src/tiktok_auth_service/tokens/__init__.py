"""Serving tokens to internal callers: who may read what (`reads.py`), the read's cache and its
notification listener (`cache.py`), the answer bodies (`schemas.py`), the reads and checks
(`service.py`), and revoking on request (`revocation.py`)."""

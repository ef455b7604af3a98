"""`GET /connections`: what a key may list, its page cursor (`service.py`) and its answer bodies
(`schemas.py`)."""

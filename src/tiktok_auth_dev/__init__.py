"""Development tooling: the local `dev` stack and an embedded PostgreSQL.

Not part of the product: the wheel and the image ship only `tiktok_auth_service`, which never
imports this package (the CLI's `dev` command is the one lazy bridge). Available in a source
checkout, where `uv sync` puts `src/` on the path.
"""

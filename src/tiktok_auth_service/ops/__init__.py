"""What operators run and watch: internal callers' API keys (`api_keys.py`), the audit of every
token read (`audit.py`), webhooks (`webhooks.py`) and re-encryption under a new key
(`key_rotation.py`)."""

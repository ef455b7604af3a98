"""A grant's life after it is connected: keeping account tokens alive (`refresh.py`), checking
advertiser tokens (`liveness.py`), revoking at TikTok and retiring orphans (`revocation.py`), and
the background worker that claims due grants (`worker.py`). The lease they all take is
`lease.py`, one layer below the repository that also writes it."""

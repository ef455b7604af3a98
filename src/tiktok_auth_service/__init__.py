"""OAuth token broker for TikTok API for Business."""

__version__ = "0.1.0"

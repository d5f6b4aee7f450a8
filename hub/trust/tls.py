"""HTTPS for `hub serve`, with optional mutual TLS for partner systems.

    HUB_TLS_CERT, HUB_TLS_KEY      the server's certificate (chain) and key, PEM: both set = HTTPS
    HUB_TLS_CLIENT_CA              the CA client certificates must chain to (PEM)
    HUB_TLS_CLIENT_CERT            none (default) | optional (checked when presented) | required
                                   (a client without a certificate from that CA is refused at the handshake)

Mutual TLS decides who may open a connection; it does not replace the API token: every /api request
still needs one, and partners' documents are still verified by their signatures.
"""
from __future__ import annotations

import ssl

from hub.errors import ConfigError
from hub.settings import Settings

CLIENT_CERT_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def uvicorn_tls_options(settings: Settings) -> dict:
    """Keyword arguments for uvicorn.Config: empty (plain HTTP) unless a certificate and key are set.

    Raises ConfigError (naming the setting) for a half-configured or contradictory set-up: HTTPS with
    one of certificate and key missing, a client-certificate mode without a CA, a CA without a mode,
    a mode that is not one of none/optional/required, or a file that does not exist."""
    mode = (settings.tls_client_certificate or "none").strip().lower()
    if mode not in CLIENT_CERT_MODES:
        raise ConfigError("environment", "HUB_TLS_CLIENT_CERT",
                          f"must be one of {', '.join(CLIENT_CERT_MODES)}, not {settings.tls_client_certificate!r}")
    cert, key, ca = settings.tls_certificate, settings.tls_key, settings.tls_client_ca
    if not cert and not key:
        if mode != "none" or ca:
            raise ConfigError("environment", "HUB_TLS_CLIENT_CERT" if mode != "none" else "HUB_TLS_CLIENT_CA",
                              "client certificates need HTTPS: set HUB_TLS_CERT and HUB_TLS_KEY too")
        return {}
    if not (cert and key):
        missing = "HUB_TLS_KEY" if cert else "HUB_TLS_CERT"
        raise ConfigError("environment", missing, "HTTPS needs both HUB_TLS_CERT and HUB_TLS_KEY")
    if mode != "none" and not ca:
        raise ConfigError("environment", "HUB_TLS_CLIENT_CA",
                          f"HUB_TLS_CLIENT_CERT={mode} needs the CA that issues client certificates")
    if ca and mode == "none":
        raise ConfigError("environment", "HUB_TLS_CLIENT_CERT",
                          "HUB_TLS_CLIENT_CA is set but client certificates are not asked for: set optional or "
                          "required (or unset the CA)")
    for name, path in (("HUB_TLS_CERT", cert), ("HUB_TLS_KEY", key), ("HUB_TLS_CLIENT_CA", ca)):
        if path is not None and not path.is_file():
            raise ConfigError("environment", name, f"no such file: {path}")
    options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_cert_reqs": CLIENT_CERT_MODES[mode]}
    if ca:
        options["ssl_ca_certs"] = str(ca)
    return options


def scheme(settings: Settings) -> str:
    """"https" when `hub serve` speaks TLS with these settings, else "http"."""
    return "https" if settings.tls_certificate and settings.tls_key else "http"

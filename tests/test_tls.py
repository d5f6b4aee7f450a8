"""`hub serve` over HTTPS with client certificates required (mutual TLS): a client without a certificate,
or with one from another CA, is refused at the handshake; one with a certificate from the configured CA
is served, and still needs an API token on /api. Also: the settings are checked before anything listens,
and deliveries to an HTTPS partner check its certificate against the system's trust store."""
from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import bearer, free_port, serve_tokens, wait_for, write_config
from connectors.base import Outbound
from connectors.rest.connector import RestConnector
from hub.errors import ConfigError, TransientDeliveryError
from hub.settings import Settings
from hub.trust.tls import uvicorn_tls_options


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(cn: str, key, issuer_key, issuer: x509.Name, *, ca: bool = False, server: bool = False):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                                     x509.DNSName("localhost")]), critical=False)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, key, certificate) -> tuple[Path, Path]:
    key_path, cert_path = folder / f"{name}.key", folder / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory) -> dict[str, Path]:
    """A CA for the hub and its clients, the hub's server certificate, a client certificate (NARSA) from
    that CA, and one from another CA."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("Hub clients CA", ca_key, ca_key, _name("Hub clients CA"), ca=True)
    other = _certificate("Another CA", other_key, other_key, _name("Another CA"), ca=True)
    paths = {"ca": _write(folder, "ca", ca_key, ca)[0]}
    server_key, client_key, stranger_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    paths["server_cert"], paths["server_key"] = _write(folder, "server", server_key, _certificate(
        "127.0.0.1", server_key, ca_key, ca.subject, server=True))
    paths["client_cert"], paths["client_key"] = _write(folder, "narsa", client_key, _certificate(
        "NARSA", client_key, ca_key, ca.subject))
    paths["stranger_cert"], paths["stranger_key"] = _write(folder, "stranger", stranger_key, _certificate(
        "NARSA", stranger_key, other_key, other.subject))
    return paths


def _context(tls_pki, client: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_pki["ca"]))
    if client:
        context.load_cert_chain(str(tls_pki[f"{client}_cert"]), str(tls_pki[f"{client}_key"]))
    return context


@pytest.fixture
def https_hub(tmp_path, pki_dir, tls_pki):
    """`hub serve` (a real process) on HTTPS, client certificates required; yields (url, token minter)."""
    database_url = f"sqlite:///{tmp_path / 'hub.sqlite'}"
    port = free_port()
    env = {**os.environ, "HUB_DATABASE_URL": database_url, "HUB_VAR_DIR": str(tmp_path / "var"),
           "HUB_PKI_DIR": str(pki_dir), "HUB_CONFIG_DIR": str(write_config(tmp_path / "config")),
           "HUB_TLS_CERT": str(tls_pki["server_cert"]), "HUB_TLS_KEY": str(tls_pki["server_key"]),
           "HUB_TLS_CLIENT_CA": str(tls_pki["ca"]), "HUB_TLS_CLIENT_CERT": "required"}
    log = tmp_path / "hub.log"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("hub")), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
    url = f"https://127.0.0.1:{port}"
    context = _context(tls_pki, "client")

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"hub serve exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/healthz", verify=context, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_for(up, 60, what="hub serve over HTTPS")
        yield url, serve_tokens(url, database_url)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_mutual_tls_refuses_clients_without_a_certificate_of_the_ca_and_serves_the_others(https_hub, tls_pki):
    url, mint = https_hub
    for client in (None, "stranger"):  # no certificate; a certificate from another CA
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(f"{url}/healthz", verify=_context(tls_pki, client), timeout=5)
    with pytest.raises(httpx.TransportError):  # plain HTTP on the HTTPS port gets no answer either
        httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)

    with httpx.Client(base_url=url, verify=_context(tls_pki, "client"), timeout=10) as served:
        assert served.get("/healthz").status_code == 200
        anonymous = served.get("/api/v1/messages")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        token = mint("integration")
        listed = served.get("/api/v1/messages", headers=bearer(token))
        assert listed.status_code == 200 and listed.json()["total"] == 0
        partner = served.get("/api/v1/messages", headers=bearer(mint("partner", partner="NARSA")))
        assert partner.status_code == 403  # the certificate opens the connection; the token's role decides


def test_server_certificate_is_checked_by_clients(https_hub, tls_pki):
    url, _ = https_hub
    context = ssl.create_default_context()  # the system's CAs do not know the hub's CA
    context.load_cert_chain(str(tls_pki["client_cert"]), str(tls_pki["client_key"]))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        httpx.get(f"{url}/healthz", verify=context, timeout=5)


def _settings(**values) -> Settings:
    return Settings.from_env(**values)


def test_tls_options_are_built_from_settings_and_contradictions_are_refused(tls_pki, tmp_path):
    assert uvicorn_tls_options(_settings()) == {}
    cert, key, ca = tls_pki["server_cert"], tls_pki["server_key"], tls_pki["ca"]
    assert uvicorn_tls_options(_settings(tls_certificate=cert, tls_key=key)) == {
        "ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_cert_reqs": ssl.CERT_NONE}
    optional = uvicorn_tls_options(_settings(tls_certificate=cert, tls_key=key, tls_client_ca=ca,
                                             tls_client_certificate="optional"))
    assert optional["ssl_cert_reqs"] == ssl.CERT_OPTIONAL and optional["ssl_ca_certs"] == str(ca)
    refused = {
        "HUB_TLS_KEY": dict(tls_certificate=cert),
        "HUB_TLS_CERT": dict(tls_key=key),
        "HUB_TLS_CLIENT_CA": dict(tls_certificate=cert, tls_key=key, tls_client_certificate="required"),
        "HUB_TLS_CLIENT_CERT": dict(tls_certificate=cert, tls_key=key, tls_client_certificate="sometimes"),
    }
    for setting, values in refused.items():
        with pytest.raises(ConfigError) as caught:
            uvicorn_tls_options(_settings(**values))
        assert caught.value.key == setting, (setting, caught.value)
    with pytest.raises(ConfigError, match="client certificates need HTTPS"):
        uvicorn_tls_options(_settings(tls_client_ca=ca, tls_client_certificate="required"))
    with pytest.raises(ConfigError, match="no such file"):
        uvicorn_tls_options(_settings(tls_certificate=tmp_path / "missing.crt", tls_key=key))


# -- the hub as a client: deliveries to a partner over HTTPS -----------------------------------------------------

@pytest.fixture
def https_partner(tls_pki):
    """A real HTTPS server on loopback (certificate from the test CA) answering every POST with its body reversed."""
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))[::-1]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_pki["server_cert"]), str(tls_pki["server_key"]))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda request, address: None  # a client refusing the certificate is expected here
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/partner/v1"
    server.shutdown()
    server.server_close()


def _rest_to(url: str) -> RestConnector:
    return RestConnector("SANTE", RestConnector.Config(endpoint=url), timeout_seconds=5.0)


def test_deliveries_go_over_https_to_a_partner_whose_certificate_the_trust_store_holds(https_partner, tls_pki,
                                                                                          monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_pki["ca"]))  # OpenSSL's default trust store, as documented
    rest = _rest_to(https_partner)
    try:
        for number in range(3):
            result = rest.send(Outbound(f"M-{number}", "Test", b"<Document/>"))
            assert result.answer == b">/tnemucoD<" and result.detail == "HTTP 200"
        assert rest._pool.connections_made == 1  # one TLS session, kept alive
    finally:
        rest.close()


def test_a_partner_whose_certificate_is_not_trusted_gets_nothing(https_partner, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    rest = _rest_to(https_partner)
    try:
        with pytest.raises(TransientDeliveryError) as caught:
            rest.send(Outbound("M-1", "Test", b"<Document/>"))
    finally:
        rest.close()
    assert caught.value.reason.startswith("TLS: the partner's certificate is not trusted (")
    assert "certificate" in caught.value.reason.split("(", 1)[1]

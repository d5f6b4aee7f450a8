"""Keys and certificates.

The hub never invents a key: `hub serve` (every start of the engine) refuses to start when its own key
or a partner's pinned certificate is missing, naming the file. Production deployments put their real
keys and certificates at the paths `config/` and HUB_PKI_DIR name.

Development keys come from one explicit command, `hub dev init` (`init_dev_keys`), which `hub demo`,
`make demo` and the tests run: a development CA and, signed by it, a key pair and certificate for each
party (the hub, the consular registry, each sandbox partner), and the SSH keys of the SFTP exchange,
under `var/pki/`. That folder holds the sandboxes' private keys too: it is for development only, and
nothing here is ever committed.

Loading an RSA private key from PEM costs ~40 ms: keys are loaded once per process (`load_key`).
"""
from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hub.errors import ConfigError

DEV_VALIDITY = dt.timedelta(days=730)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "MA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Consular exchange hub (development)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _write_private(path: Path, key) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _issue(subject: str, public_key, ca_key, issuer: x509.Name, *, is_ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=not is_ca, content_commitment=not is_ca, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=is_ca, crl_sign=is_ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return builder.sign(ca_key, hashes.SHA256())


ALGORITHMS = ("rsa-sha256", "ecdsa-sha256")


def generate_key(algorithm: str = "rsa-sha256"):
    """A new private key for `algorithm`: RSA-2048 (rsa-sha256) or ECDSA P-256 (ecdsa-sha256)."""
    if algorithm == "ecdsa-sha256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "rsa-sha256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown signing algorithm {algorithm!r} (expected {' or '.join(ALGORITHMS)})")


def key_algorithm(key) -> str:
    """The signing algorithm a private or public key is for: rsa-sha256, ecdsa-sha256, or its type's name."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "rsa-sha256"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ecdsa-sha256" if isinstance(key.curve, ec.SECP256R1) else f"ecdsa on {key.curve.name}"
    return type(key).__name__


def ensure_dev_pki(pki_dir: Path, parties: list[str], *, hub_algorithm: str = "rsa-sha256") -> list[str]:
    """Create the development CA and any missing party key/certificate. Returns the parties created.

    The hub's own key ("hub") is made for `hub_algorithm` (HUB_SIGNING_ALGORITHM): RSA-2048 or ECDSA
    P-256; every other party gets RSA-2048."""
    pki_dir = Path(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca_key_path, ca_crt_path = pki_dir / "ca.key", pki_dir / "ca.crt"
    if not ca_crt_path.exists():
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_cert = _issue("Consular hub development CA", ca_key.public_key(), ca_key, _name("Consular hub development CA"),
                         is_ca=True)
        _write_private(ca_key_path, ca_key)
        ca_crt_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_crt_path.read_bytes())
    created = []
    for party in parties:
        crt_path = pki_dir / f"{party}.crt"
        if crt_path.exists():
            continue
        key = generate_key(hub_algorithm if party == "hub" else "rsa-sha256")
        cert = _issue(party, key.public_key(), ca_key, ca_cert.subject, is_ca=False)
        _write_private(pki_dir / f"{party}.key", key)
        crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        created.append(party)
    return created


def require_files(*paths: Path, whose: str) -> None:
    """ConfigError naming the first of `paths` (a key, a certificate) that is missing: nothing is made."""
    for path in paths:
        if not Path(path).is_file():
            what = "certificate" if str(path).endswith(".crt") else "key"
            raise ConfigError(path, "HUB_PKI_DIR", f"{whose} {what} is missing: put it there "
                                                   f"(development keys: `hub dev init`)")


@functools.lru_cache(maxsize=None)
def load_key(path: str):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


@functools.lru_cache(maxsize=None)
def load_certificate(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


# -- SSH keys (SFTP partners) ---------------------------------------------------------------------

SSH_DIR = "ssh"
HUB_SSH_CLIENT_KEY = "hub_client"   # the hub's SFTP client key (CDG authorises its public half)
CDG_SSH_HOST_KEY = "CDG_host"       # CDG's SFTP server host key (the hub pins its public half)


def ensure_dev_ssh_key(pki_dir: Path, name: str) -> Path:
    """Create the development Ed25519 SSH key `<pki_dir>/ssh/<name>` (OpenSSH format, mode 0600) and
    its public half `<name>.pub` when missing; return the private key's path.

    Safe when several processes start at once: the private key is linked into place only if absent
    (the first writer wins), and the public half is always derived from whichever key won."""
    ssh_dir = Path(pki_dir) / SSH_DIR
    ssh_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = ssh_dir / name, ssh_dir / f"{name}.pub"
    if not private_path.exists():
        from cryptography.hazmat.primitives.asymmetric import ed25519
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        temporary = ssh_dir / f".{name}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(temporary, private_path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    if not public_path.exists():
        key = serialization.load_ssh_private_key(private_path.read_bytes(), password=None)
        line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        temporary = ssh_dir / f".{name}.pub.{os.getpid()}.tmp"
        temporary.write_bytes(line + f" {name}@consular-hub-dev\n".encode())
        os.replace(temporary, public_path)
    return private_path


def ensure_dev_ssh_keys(pki_dir: Path) -> dict[str, Path]:
    """The development SSH keys of the SFTP exchange with CDG: the hub's client key and CDG's host
    key, under `<pki_dir>/ssh/` (`hub_client`, `hub_client.pub`, `CDG_host`, `CDG_host.pub`)."""
    return {name: ensure_dev_ssh_key(pki_dir, name) for name in (HUB_SSH_CLIENT_KEY, CDG_SSH_HOST_KEY)}


def init_dev_keys(pki_dir: Path, parties: list[str], *, hub_algorithm: str = "rsa-sha256") -> list[Path]:
    """Development keys, made on request only (`hub dev init`): the development CA, a key and certificate
    for the hub and each of `parties` (the hub's made for `hub_algorithm`), and the SSH keys of the SFTP
    exchange. What exists is kept. Returns the files created."""
    pki_dir = Path(pki_dir)
    before = {path for path in pki_dir.rglob("*") if path.is_file()} if pki_dir.exists() else set()
    ensure_dev_pki(pki_dir, ["hub", *[party for party in parties if party != "hub"]], hub_algorithm=hub_algorithm)
    ensure_dev_ssh_keys(pki_dir)
    return sorted(path for path in pki_dir.rglob("*") if path.is_file() and path not in before)

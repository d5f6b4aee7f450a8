"""Contract tests of the SFTP connector against the real CDG SFTP server (sandbox/cdg.py) on loopback.

The sandbox runs as its own process; the test looks at its SFTP root on disk to see exactly what a
partner would see in inbox/ at any moment.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lxml.builder import ElementMaker
from pydantic import ValidationError

from conftest import Sandbox, free_port
from connectors.base import Outbound
from connectors.sftp.config import SftpConfig
from connectors.sftp.connector import SftpConnector
from hub.trust import pki
from hub.errors import PermanentDeliveryError, TransientDeliveryError
from hub.trust.signing import Signer
from hub.xml.safe import to_bytes

pytestmark = pytest.mark.slow

CDG_NS = "urn:ma:cdg:certificats-vie:1"


class CdgProcess(Sandbox):
    """`python -m sandbox cdg` on two free loopback ports (SFTP and HTTP control)."""

    def __init__(self, pki_dir: Path, data_dir: Path, *, sftp_port: int | None = None):
        self.sftp_port, self.control_port = sftp_port or free_port(), free_port()
        super().__init__(self.sftp_port, "http://127.0.0.1:9", Path(pki_dir), Path(data_dir), name="cdg",
                         extra_args=["--control-port", str(self.control_port)], http_port=self.control_port)
        self.control_url = self.url
        self.root = self.data_dir / "CDG" / "sftp"

    def folder(self, name: str) -> list[str]:
        return sorted(os.listdir(self.root / name))

    def config(self, **overrides) -> SftpConfig:
        values = dict(host="127.0.0.1", port=self.sftp_port, username="hub",
                      private_key=self.pki_dir / "ssh" / "hub_client", host_key=self.pki_dir / "ssh" / "CDG_host.pub")
        return SftpConfig(**{**values, **overrides})


def signed_batch(pki_dir: Path, batch_id: str, *, certificates: int = 3, pension_numbers: list[str] | None = None,
                 signer: str = "hub") -> bytes:
    """A LotCertificatsVie in CDG's format, signed by `signer`; pension numbers 100000+i unless given."""
    C = ElementMaker(namespace=CDG_NS, nsmap={None: CDG_NS})
    numbers = pension_numbers or [f"{100000 + i}" for i in range(certificates)]
    items = [C.Certificat(C.Reference(f"CDV-2026-{i + 1:06d}"), C.NomPensionne("Alaoui"), C.PrenomPensionne("Ahmed"),
                          C.DateNaissance("02/03/1950"), C.CNIE("J123456"), C.NumeroPension(number), C.Caisse("CNRA"),
                          C.DateEtablissement("20/11/2026"), C.PosteConsulaire("FR-PARIS"))
             for i, number in enumerate(numbers)]
    batch = C.LotCertificatsVie(C.IdentifiantMessage(f"REGISTRY-{batch_id}"), C.IdentifiantLot(batch_id),
                                C.DateCreation("2026-11-23T10:00:00+00:00"), C.NombreCertificats(str(len(items))),
                                C.NombreAvisDeces("0"), C.Certificats(*items), C.AvisDeces())
    key, cert = pki.load_key(str(pki_dir / f"{signer}.key")), pki.load_certificate(str(pki_dir / f"{signer}.crt"))
    return to_bytes(Signer(key, cert).sign(batch))


@pytest.fixture(scope="module")
def cdg_pki(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cdg-pki")
    pki.ensure_dev_pki(path, ["hub", "REGISTRY", "CDG"])
    pki.ensure_dev_ssh_keys(path)
    return path


@pytest.fixture(scope="module")
def cdg(cdg_pki, tmp_path_factory):
    box = CdgProcess(cdg_pki, tmp_path_factory.mktemp("cdg-data")).start()
    yield box
    box.stop()


@pytest.fixture
def paused(cdg):
    """The sandbox's watcher leaves inbox/ alone: what the connector uploaded stays there to inspect."""
    cdg.behave(paused=True, mode="normal", drop_after_bytes=None)
    for folder in ("inbox", "outbox", "done", "failed"):
        for name in os.listdir(cdg.root / folder):
            os.remove(cdg.root / folder / name)
    yield cdg
    cdg.behave(paused=False, mode="normal", drop_after_bytes=None)


@pytest.fixture
def connector(cdg):
    conn = SftpConnector("CDG", cdg.config(), timeout_seconds=5)
    conn.open()
    yield conn
    conn.close()


class InboxWatcher:
    """Lists inbox/ on disk as fast as it can, recording every name seen and, for final names,
    whether the file was ever seen with fewer bytes than expected."""

    def __init__(self, folder: Path, final: str, size: int):
        self.folder, self.final, self.size = folder, final, size
        self.seen: set[str] = set()
        self.short_finals = 0
        self.listings = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._look()
        self._look()  # once more after the last operation: the final name may have just appeared

    def _look(self) -> None:
        for name in os.listdir(self.folder):
            self.seen.add(name)
            if name == self.final:
                try:
                    if os.path.getsize(self.folder / name) != self.size:
                        self.short_finals += 1
                except FileNotFoundError:
                    pass
        self.listings += 1

    def __enter__(self) -> "InboxWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


# -- configuration -----------------------------------------------------------------------------------


def test_config_is_strict_and_documented():
    base = dict(host="127.0.0.1", port=8722, username="hub", private_key="k", host_key="k.pub")
    assert SftpConfig(**base).inbox == "inbox" and SftpConfig(**base).file_name == "{message_id}.xml"
    assert all(field.description for field in SftpConfig.model_fields.values())
    with pytest.raises(ValidationError, match="extra"):
        SftpConfig(**base, password="secret")
    with pytest.raises(ValidationError, match="four different folders"):
        SftpConfig(**base, done="inbox")
    with pytest.raises(ValidationError, match="placeholder"):
        SftpConfig(**base, file_name="{batch}.xml")
    with pytest.raises(ValidationError, match="plain folder"):
        SftpConfig(**base, outbox="../etc")
    with pytest.raises(ValidationError):
        SftpConfig(**base).port = 22  # frozen


def test_repr_names_the_server_not_the_key(cdg):
    text = repr(SftpConnector("CDG", cdg.config(), timeout_seconds=5))
    assert text == f"SftpConnector(CDG, sftp://hub@127.0.0.1:{cdg.sftp_port})"


# -- send ----------------------------------------------------------------------------------------------


def test_upload_is_visible_only_under_its_final_name_once_complete(paused, connector):
    body = os.urandom(3 * 1024 * 1024)
    with InboxWatcher(paused.root / "inbox", "M-BIG.xml", len(body)) as watcher:
        result = connector.send(Outbound("M-BIG", "LifeCertificateBatch", body))
    assert "uploaded inbox/M-BIG.xml (3145728 bytes)" in result.detail
    assert watcher.listings > 10
    assert watcher.seen <= {".M-BIG.xml.part", "M-BIG.xml"}
    assert ".M-BIG.xml.part" in watcher.seen, "the upload never went through its temporary name"
    assert watcher.short_finals == 0
    assert paused.folder("inbox") == ["M-BIG.xml"]
    assert (paused.root / "inbox" / "M-BIG.xml").read_bytes() == body


def test_resend_of_the_same_bytes_is_a_success_and_other_bytes_are_refused(paused, connector):
    connector.send(Outbound("M-1", "LifeCertificateBatch", b"<lot>1</lot>"))
    again = connector.send(Outbound("M-1", "LifeCertificateBatch", b"<lot>1</lot>"))
    assert again.detail == "inbox/M-1.xml was already there with the same bytes"
    assert paused.folder("inbox") == ["M-1.xml"]
    with pytest.raises(PermanentDeliveryError, match="already exists on the server with other content"):
        connector.send(Outbound("M-1", "LifeCertificateBatch", b"<lot>2</lot>"))
    assert (paused.root / "inbox" / "M-1.xml").read_bytes() == b"<lot>1</lot>"


def test_a_large_file_is_streamed_from_disk_once_and_a_resend_compares_digests(paused, connector, tmp_path):
    path, other = tmp_path / "lot.xml", tmp_path / "other.xml"
    path.write_bytes(os.urandom(5 * 1024 * 1024))
    other.write_bytes(os.urandom(5 * 1024 * 1024))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with InboxWatcher(paused.root / "inbox", "M-FILE.xml", path.stat().st_size) as watcher:
        result = connector.send_file("M-FILE", "LifeCertificateBatch", path, sha256=digest)
    assert f"uploaded inbox/M-FILE.xml ({5 * 1024 * 1024} bytes, sha256 {digest})" == result.detail
    assert watcher.seen <= {".M-FILE.xml.part", "M-FILE.xml"} and watcher.short_finals == 0
    assert (paused.root / "inbox" / "M-FILE.xml").read_bytes() == path.read_bytes()
    again = connector.send_file("M-FILE", "LifeCertificateBatch", path, sha256=digest)
    assert again.detail == "inbox/M-FILE.xml was already there with the same bytes"
    with pytest.raises(PermanentDeliveryError, match="other content"):
        connector.send_file("M-FILE", "LifeCertificateBatch", other,
                            sha256=hashlib.sha256(other.read_bytes()).hexdigest())
    assert paused.folder("inbox") == ["M-FILE.xml"]
    print(f"streamed 5 MiB once ({watcher.listings} listings of inbox/, never a short final file)")


def test_a_stream_taker_reads_outbox_files_in_chunks_then_acks_or_nacks(paused, connector):
    from hub.errors import SignatureInvalid
    outbox = paused.root / "outbox"
    (outbox / "AR_BIG.xml").write_bytes(b"x" * (3 * 1024 * 1024))
    (outbox / "AR_BAD.xml").write_bytes(b"<bad/>")
    (outbox / "AR_SMALL.xml").write_bytes(b"<ack/>")
    read: dict[str, int] = {}

    def consume(name):
        def reader(remote):
            while chunk := remote.read(64 * 1024):
                read[name] = read.get(name, 0) + len(chunk)
            if name == "AR_BAD.xml":
                raise SignatureInvalid("not signed by CDG")
        return reader
    connector.stream_taker = lambda name, size: consume(name) if name != "AR_SMALL.xml" else None
    try:
        items = list(connector.poll())
    finally:
        connector.stream_taker = None
    # the others went to the taker, and come as handled, for the poll to count them
    assert [(item.name, item.handled, item.streamed) for item in items] == [
        ("AR_BAD.xml", "refused", True), ("AR_BIG.xml", "accepted", True), ("AR_SMALL.xml", None, False)]
    assert "not signed by CDG" in items[0].refusal.detail
    assert read == {"AR_BIG.xml": 3 * 1024 * 1024, "AR_BAD.xml": 6}
    assert paused.folder("done") == ["AR_BIG.xml"]
    assert paused.folder("failed") == ["AR_BAD.xml", "AR_BAD.xml.reason.txt"]
    assert "not signed by CDG" in (paused.root / "failed" / "AR_BAD.xml.reason.txt").read_text()
    assert paused.folder("outbox") == ["AR_SMALL.xml"]


def test_one_connection_is_reused_while_healthy(paused, connector):
    before = paused.stats()["logins"]
    for i in range(5):
        connector.send(Outbound(f"M-R{i}", "LifeCertificateBatch", b"<lot/>"))
    assert connector.check().ok
    assert paused.stats()["logins"] - before == 1


def test_connection_dropped_mid_upload_leaves_no_partial_final_file_and_the_retry_delivers_once(paused, cdg_pki):
    batch = signed_batch(cdg_pki, "LCB-2026-DROP01", certificates=150)
    assert len(batch) > 50_000
    paused.behave(drop_after_bytes=20_000)
    connector = SftpConnector("CDG", paused.config(), timeout_seconds=5)
    final = "REGISTRY-LCB-2026-DROP01.xml"
    try:
        with InboxWatcher(paused.root / "inbox", final, len(batch)) as watcher:
            with pytest.raises(TransientDeliveryError, match="uploading inbox/"):  # lost, reset or timed out
                connector.send(Outbound("REGISTRY-LCB-2026-DROP01", "LifeCertificateBatch", batch))
            time.sleep(0.3)
            assert final not in os.listdir(paused.root / "inbox")
            assert paused.stats()["uploads_dropped"] == 1
            connector.send(Outbound("REGISTRY-LCB-2026-DROP01", "LifeCertificateBatch", batch))
        assert final in watcher.seen and watcher.short_finals == 0
        assert watcher.seen <= {f".{final}.part", final}
        # the temporary of the interrupted upload is gone: only the complete batch is in inbox/
        assert paused.folder("inbox") == [final]
        assert (paused.root / "inbox" / final).read_bytes() == batch
    finally:
        connector.close()
    stored = paused.stats()["stored"]
    paused.behave(paused=False)
    deadline = time.monotonic() + 10
    while paused.folder("inbox") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert paused.folder("inbox") == []
    assert paused.stats()["stored"] == stored + 1
    assert paused.folder("outbox") == ["AR_LCB-2026-DROP01.xml"]


def test_partner_refusing_writes_is_transient(paused, connector):
    paused.behave(mode="fail")
    with pytest.raises(TransientDeliveryError, match="the server refused"):
        connector.send(Outbound("M-F", "LifeCertificateBatch", b"<lot/>"))
    paused.behave(mode="normal")
    assert "uploaded" in connector.send(Outbound("M-F", "LifeCertificateBatch", b"<lot/>")).detail


def test_refused_connection_is_transient_and_the_connector_reconnects(paused, connector):
    connector.send(Outbound("M-A", "LifeCertificateBatch", b"<lot/>"))  # a connection to lose
    paused.behave(mode="refuse", refuse_seconds=2)
    time.sleep(0.5)
    with pytest.raises(TransientDeliveryError, match="connection refused"):
        connector.send(Outbound("M-B", "LifeCertificateBatch", b"<lot/>"))
    assert not connector.check().ok
    time.sleep(2.5)
    assert "uploaded" in connector.send(Outbound("M-B", "LifeCertificateBatch", b"<lot/>")).detail
    assert paused.folder("inbox") == ["M-A.xml", "M-B.xml"]


def test_nothing_listening_is_transient(cdg):
    conn = SftpConnector("CDG", cdg.config(port=free_port()), timeout_seconds=2)
    with pytest.raises(TransientDeliveryError, match="connection refused"):
        conn.send(Outbound("M-X", "LifeCertificateBatch", b"<lot/>"))
    health = conn.check()
    assert not health.ok and "connection refused" in health.detail


def test_wrong_host_key_is_refused_permanently_and_never_added(cdg, tmp_path):
    impostor = pki.ensure_dev_ssh_key(tmp_path, "impostor")
    pinned = impostor.with_name("impostor.pub")
    pinned_before = pinned.read_bytes()
    known_hosts = Path.home() / ".ssh" / "known_hosts"
    known_before = known_hosts.read_bytes() if known_hosts.exists() else None
    conn = SftpConnector("CDG", cdg.config(host_key=pinned), timeout_seconds=5)
    for _ in range(2):  # the second attempt fails the same way: nothing was learnt from the first
        with pytest.raises(PermanentDeliveryError, match="host key mismatch: the server presented ssh-ed25519 SHA256:"):
            conn.send(Outbound("M-H", "LifeCertificateBatch", b"<lot/>"))
    assert pinned.read_bytes() == pinned_before
    assert (known_hosts.read_bytes() if known_hosts.exists() else None) == known_before
    assert not conn.check().ok


def test_wrong_client_key_is_refused_permanently(cdg, tmp_path):
    stranger = pki.ensure_dev_ssh_key(tmp_path, "stranger")
    conn = SftpConnector("CDG", cdg.config(private_key=stranger), timeout_seconds=5)
    with pytest.raises(PermanentDeliveryError, match="authentication refused for user 'hub'"):
        conn.send(Outbound("M-K", "LifeCertificateBatch", b"<lot/>"))


def test_missing_key_file_is_permanent_and_names_the_key(cdg, tmp_path):
    conn = SftpConnector("CDG", cdg.config(private_key=tmp_path / "nope"), timeout_seconds=5)
    with pytest.raises(PermanentDeliveryError, match="connection.private_key: no file"):
        conn.send(Outbound("M-K", "LifeCertificateBatch", b"<lot/>"))


# -- poll ----------------------------------------------------------------------------------------------


def test_poll_yields_outbox_files_and_ack_nack_move_them(paused, connector):
    outbox = paused.root / "outbox"
    (outbox / "AR_1.xml").write_bytes(b"<ack>1</ack>")
    (outbox / "AR_2.xml").write_bytes(b"<ack>2</ack>")
    (outbox / ".AR_3.xml.part").write_bytes(b"<ack>3, half")  # someone's temporary: never offered
    items = list(connector.poll())
    assert [(item.name, item.body) for item in items] == [("AR_1.xml", b"<ack>1</ack>"), ("AR_2.xml", b"<ack>2</ack>")]
    items[0].ack()
    items[1].nack("signature does not verify as CDG's")
    assert paused.folder("outbox") == [".AR_3.xml.part"]
    assert paused.folder("done") == ["AR_1.xml"]
    assert paused.folder("failed") == ["AR_2.xml", "AR_2.xml.reason.txt"]
    assert (paused.root / "failed" / "AR_2.xml").read_bytes() == b"<ack>2</ack>"
    assert "refused by the hub: signature does not verify as CDG's" in \
        (paused.root / "failed" / "AR_2.xml.reason.txt").read_text()
    assert list(connector.poll()) == []


def test_a_refused_file_with_a_244_character_name_gets_a_reason_within_255_bytes(paused, connector):
    long_name = "AR_0" + "é" * 100 + "x" * 36 + ".xml"  # 244 bytes: `.<name>.reason.txt.part` would be 261
    assert len(long_name.encode()) == 244
    (paused.root / "outbox" / long_name).write_bytes(b"<junk/>")
    (paused.root / "outbox" / "AR_Z.xml").write_bytes(b"<ack>Z</ack>")
    items = {item.name: item for item in connector.poll()}
    items[long_name].nack("no such message type")
    items["AR_Z.xml"].ack()
    [reason] = [name for name in paused.folder("failed") if name.endswith(".reason.txt")]
    assert paused.folder("failed") == sorted([long_name, reason]) and paused.folder("done") == ["AR_Z.xml"]
    assert reason == SftpConnector.reason_name(long_name) and len(f".{reason}.part".encode()) == 255
    assert reason.startswith("AR_0éé") and re.search(r"~[0-9a-f]{16}\.reason\.txt$", reason)
    text = (paused.root / "failed" / reason).read_text()
    assert "refused by the hub: no such message type" in text and f"file: {long_name}" in text
    assert paused.folder("outbox") == []


def test_bounded_names_keep_short_names_and_cut_long_ones_with_a_digest():
    from connectors.sftp.connector import bounded_name
    assert bounded_name("AR_1.xml", suffix=".reason.txt") == "AR_1.xml.reason.txt"
    one, other = "a" * 300, "a" * 299 + "b"
    cut = bounded_name(one, prefix=".", suffix=".part")
    assert len(cut.encode()) == 255 and cut.startswith(".aaa") and cut.endswith(".part")
    assert cut != bounded_name(other, prefix=".", suffix=".part")
    assert len(bounded_name("é" * 200, suffix=".x").encode()) <= 255  # cut between characters, never inside one
    bounded_name("é" * 200, suffix=".x").encode().decode()


def test_ack_of_a_file_seen_again_replaces_the_older_copy_in_done(paused, connector):
    (paused.root / "done" / "AR_9.xml").write_bytes(b"<ack>old</ack>")
    (paused.root / "outbox" / "AR_9.xml").write_bytes(b"<ack>new</ack>")
    [item] = list(connector.poll())
    item.ack()
    assert (paused.root / "done" / "AR_9.xml").read_bytes() == b"<ack>new</ack>"
    assert paused.folder("outbox") == []


def test_check_reports_the_remote_folders(connector):
    health = connector.check()
    assert health.ok and "inbox/ and outbox/ reachable" in health.detail


# -- a real SFTP server for OpenSSH's own client ----------------------------------------------------------


@pytest.mark.skipif(shutil.which("sftp") is None, reason="OpenSSH's sftp client is not installed")
def test_openssh_sftp_client_talks_to_the_sandbox(paused, cdg_pki, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{paused.sftp_port} {(cdg_pki / 'ssh' / 'CDG_host.pub').read_text()}")
    local = tmp_path / "lot.xml"
    local.write_bytes(b"<lot>openssh</lot>")
    commands = tmp_path / "commands"
    commands.write_text(f"cd inbox\nput {local} .lot.xml.part\nrename .lot.xml.part lot.xml\nls -1\n")
    result = subprocess.run(
        ["sftp", "-b", str(commands), "-P", str(paused.sftp_port), "-i", str(cdg_pki / "ssh" / "hub_client"),
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-F", "/dev/null", "hub@127.0.0.1"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "lot.xml" in result.stdout
    assert (paused.root / "inbox" / "lot.xml").read_bytes() == b"<lot>openssh</lot>"
    # and refuses a client whose key it does not know
    stranger = pki.ensure_dev_ssh_key(tmp_path, "stranger")
    refused = subprocess.run(
        ["sftp", "-b", str(commands), "-P", str(paused.sftp_port), "-i", str(stranger),
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-F", "/dev/null", "hub@127.0.0.1"],
        capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr


def test_a_bad_connection_setting_names_the_file_and_the_key(tmp_path):
    from conftest import write_config
    from hub.config import load_config
    from hub.errors import ConfigError
    from hub.settings import Settings

    config_dir = write_config(tmp_path / "config")
    cdg_file = config_dir / "partners" / "CDG.yaml"
    cdg_file.write_text(cdg_file.read_text(encoding="utf-8").replace("  inbox: inbox", "  inbox: inbox\n  password: x"),
                        encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(Settings.from_env(config_dir=config_dir, var_dir=tmp_path / "var"))
    assert str(error.value) == f"{cdg_file}: connection.password: unknown key"

"""SFTP batch-file exchange over one reused SSH connection (paramiko).

    send(outbound)  uploads `<inbox>/.<name>.part`, checks its size, then renames it to
                    `<inbox>/<name>`: the partner never sees half a file under a final name. When
                    `<inbox>/<name>` is already there with the same bytes the send is a success (an
                    idempotent re-send); with other bytes it is a permanent failure. A temporary left
                    by a dropped connection is removed on the next connection.
    poll()          lists `<outbox>/` (names starting with "." are someone's temporaries and skipped)
                    and yields each file as an InboundItem (a file it set aside itself, too large or
                    unreadable, comes `handled`, for the poll to count); `ack()` moves it to `<done>/`,
                    `nack(reason)` writes `<failed>/<name>.reason.txt` then moves it to `<failed>/`.
                    One file is never the poll's problem: a file that cannot be read while the
                    connection holds is set aside in `<failed>/` with the reason (or left in place when
                    even that fails) and the next file is read. Every name the hub makes from a
                    partner's file name (the reason file, its temporary, a local download) stays within
                    255 bytes: a name too long for that is cut and ends with a digest of the whole name
                    (`bounded_name`), and the reason file names the file in full.
    check()         connects (or reuses the connection) and stats inbox/ and outbox/.
A Sender, a Poller and KeyFiles (connectors/base.py): the engine polls every `poll_interval_seconds` of the
config, and does not start without the two key files.

Large files (a CDG batch of 100,000 life certificates is about 40 MB, its acknowledgement 15 MB) are
never held in memory:
    send_file(...)  (connectors.base.FileSender: how the engine delivers a message kept in a file)
                    uploads a local file in 32 KiB pipelined writes, with the same `.part`-then-rename
                    discipline and the same idempotence (an existing final file is compared by size and
                    SHA-256, read back in chunks);
    poll()          an outbox file over `stream_above_bytes` is downloaded to the hub's disk in chunks and
                    yielded as an InboundItem with a `path` (the engine takes it in as a file message);
    take_streamed(name, consume)   opens `<outbox>/<name>` and hands the open remote file to
                    `consume(file)` (read it in chunks), then acks it, or nacks it when `consume` raises
                    InputError; any other error leaves the file in place for the next poll.
    stream_taker    when set, `stream_taker(name, size)` is asked for each outbox file before it is
                    downloaded; a consumer it returns takes the file through `take_streamed`, and
                    `poll()` yields it as handled, for the poll to count (a test hook: the engine
                    takes large files through `poll()`).

Security: the server must present exactly the pinned host key (`host_key`); there is no
known_hosts file and no auto-add (paramiko's RejectPolicy). Agent and ~/.ssh keys are never used.

Errors, as the engine sees them (all library exceptions are translated here):
    host key mismatch, authentication refused, a key file missing or unreadable,
    remote folder missing, a different file under the same name           -> PermanentDeliveryError
    connection refused, timeouts, connection lost (mid-transfer or idle),
    SSH negotiation errors, the server refusing a write                      -> TransientDeliveryError
"""
from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import logging
import socket
import stat
import tempfile
import threading
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from connectors.base import Health, InboundItem, Outbound, SendResult
from connectors.sftp.config import SftpConfig
from hub.errors import (DeliveryError, InputError, MessageTooLarge, PermanentDeliveryError,
                        TransientDeliveryError)

log = logging.getLogger("connectors.sftp")
_CHUNK = 32 * 1024
_NAME_LIMIT = 255  # bytes in one file name (NAME_MAX on Linux and most SFTP servers' file systems)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def bounded_name(name: str, *, prefix: str = "", suffix: str = "", limit: int = _NAME_LIMIT) -> str:
    """`prefix + name + suffix` when that fits in `limit` bytes (UTF-8), else the name cut at a character
    boundary and followed by `~` and 16 hex digits of its SHA-256: distinct names stay distinct."""
    whole = f"{prefix}{name}{suffix}"
    if len(whole.encode()) <= limit:
        return whole
    tag = "~" + hashlib.sha256(name.encode()).hexdigest()[:16]
    room = limit - len(f"{prefix}{tag}{suffix}".encode())
    stem = name.encode()[:max(room, 0)].decode(errors="ignore")
    return f"{prefix}{stem}{tag}{suffix}"


def load_public_key(path: Path) -> paramiko.PKey:
    """A public key from an OpenSSH line (`ssh-ed25519 AAAA... comment`)."""
    fields = path.read_text(encoding="ascii").split()
    if len(fields) < 2:
        raise ValueError("expected '<type> <base64> [comment]'")
    return paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1]))


class SftpConnector:
    """Moves files between the hub and one partner's SFTP server; safe to call from several threads
    (operations are serialised on the one connection: batch exchange is low-volume)."""

    Config = SftpConfig

    def __init__(self, party: str, config: SftpConfig, *, timeout_seconds: float, settings=None):
        self.party = party
        self.config = config
        self.timeout_seconds = timeout_seconds
        home = Path(getattr(settings, "home", ".")) if settings is not None else Path(".")
        self._private_key_path = config.private_key if config.private_key.is_absolute() else home / config.private_key
        self._host_key_path = config.host_key if config.host_key.is_absolute() else home / config.host_key
        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._abandoned: set[str] = set()  # temporaries of interrupted uploads, removed on the next connection
        # large outbox files are downloaded here (beside the hub's file store: the same file system)
        self._downloads = Path(getattr(settings, "var_dir", None) or tempfile.gettempdir()) / "files" / "incoming"
        # (name, size) -> a consumer of the open remote file, or None: the file goes the ordinary way
        self.stream_taker: Callable[[str, int], Callable[[BinaryIO], None] | None] | None = None

    def __repr__(self) -> str:
        return f"SftpConnector({self.party}, {self._where})"

    @property
    def poll_interval_seconds(self) -> float:
        return self.config.poll_interval_seconds

    @property
    def _where(self) -> str:
        return f"sftp://{self.config.username}@{self.config.host}:{self.config.port}"

    # -- the contract ------------------------------------------------------------------------------

    def open(self) -> None:
        """Nothing to do: the connection is made on first use and kept while healthy."""

    def key_files(self) -> dict[str, Path]:
        """The hub's SSH key and the partner's pinned host key (connectors.base.KeyFiles)."""
        return {"connection.private_key": self._private_key_path, "connection.host_key": self._host_key_path}

    def send(self, outbound: Outbound) -> SendResult:
        name = self.config.file_name.format(message_id=outbound.message_id, message_type=outbound.message_type)
        final, temporary = f"{self.config.inbox}/{name}", f"{self.config.inbox}/.{name}.part"
        with self._lock:
            sftp = self._session()
            with self._translated(f"uploading {final}"):
                existing = self._read_if_present(sftp, final, len(outbound.body))
                if existing is not None:
                    return self._already_there(final, existing, outbound.body)
                self._abandoned.add(temporary)
                self._upload(sftp, temporary, outbound.body)
                try:
                    sftp.rename(temporary, final)
                except OSError:
                    if not self._active():
                        raise
                    # someone (a concurrent re-send) put the final file first: the same bytes is fine
                    existing = self._read_if_present(sftp, final, len(outbound.body))
                    if existing is None:
                        raise
                    self._remove_quietly(sftp, temporary)
                    self._abandoned.discard(temporary)
                    return self._already_there(final, existing, outbound.body)
                self._abandoned.discard(temporary)
        return SendResult(detail=f"uploaded {final} ({len(outbound.body)} bytes)")

    def poll(self) -> Iterator[InboundItem]:
        """Each file in outbox/, oldest name first; the engine acks or nacks each one."""
        outbox = self.config.outbox
        with self._lock:
            sftp = self._session()
            with self._translated(f"listing {outbox}/"):
                entries = sftp.listdir_attr(outbox)
        for entry in sorted(entries, key=lambda e: e.filename):
            name = entry.filename
            if name.startswith(".") or not stat.S_ISREG(entry.st_mode or 0):
                continue
            consume = self.stream_taker(name, entry.st_size or 0) if self.stream_taker is not None else None
            if consume is not None:
                outcome, refusal = self._take_streamed(name, consume)
                if outcome is not None:  # None: moved away since the listing
                    yield self._handled(name, outcome, refusal, streamed=True)
                continue
            if (entry.st_size or 0) > self.config.max_file_bytes:
                refusal = MessageTooLarge(f"file is {entry.st_size} bytes; the limit is {self.config.max_file_bytes}")
                yield self._handled(name, self._set_aside(name, refusal.detail), refusal)
                continue
            try:
                item = self._fetch(name, entry.st_size or 0)
            except DeliveryError as exc:
                if not self._active():
                    raise  # the connection is gone: the poll ends, the next one starts over
                refusal = InputError(f"the hub could not read it: {exc.reason}")
                yield self._handled(name, self._set_aside(name, refusal.detail), refusal)
                continue
            if item is not None:
                yield item

    @staticmethod
    def _handled(name: str, outcome: str, refusal: InputError | None, *, streamed: bool = False) -> InboundItem:
        """A file this connector handled itself, for the poll to count (connectors.base.InboundItem.handled)."""
        def nothing(*_args) -> None:
            return None
        return InboundItem(name=name, body=b"", ack=nothing, nack=nothing, handled=outcome, refusal=refusal,
                           streamed=streamed)

    def send_file(self, message_id: str, message_type: str, path: Path, *, sha256: str) -> SendResult:
        """`send` for a file too large to hold: streamed from disk; `sha256` is the file's digest."""
        name = self.config.file_name.format(message_id=message_id, message_type=message_type)
        final, temporary = f"{self.config.inbox}/{name}", f"{self.config.inbox}/.{name}.part"
        size = path.stat().st_size
        with self._lock:
            sftp = self._session()
            with self._translated(f"uploading {final}"):
                if self._exists(sftp, final):
                    return self._already_there_streamed(sftp, final, size, sha256)
                self._abandoned.add(temporary)
                with open(path, "rb") as source, sftp.open(temporary, "wb") as remote:
                    remote.set_pipelined(True)
                    while chunk := source.read(_CHUNK):
                        remote.write(chunk)
                held = sftp.stat(temporary).st_size
                if held != size:
                    raise TransientDeliveryError(f"uploading {temporary}: the server holds {held} of {size} bytes")
                try:
                    sftp.rename(temporary, final)
                except OSError:
                    if not self._active() or not self._exists(sftp, final):
                        raise
                    self._remove_quietly(sftp, temporary)
                    self._abandoned.discard(temporary)
                    return self._already_there_streamed(sftp, final, size, sha256)
                self._abandoned.discard(temporary)
        return SendResult(detail=f"uploaded {final} ({size} bytes, sha256 {sha256})")

    def take_streamed(self, name: str, consume: Callable[[BinaryIO], None]) -> bool:
        """Hand `<outbox>/<name>` to `consume(file)` as an open remote file, then ack it (True), or nack it
        with the reason when `consume` raises InputError (False). Other errors propagate: the file stays."""
        return self._take_streamed(name, consume)[0] == "accepted"

    def _take_streamed(self, name: str, consume: Callable[[BinaryIO], None]) -> tuple[str | None, InputError | None]:
        """`take_streamed`, saying what became of the file: ("accepted", None) acked, ("refused", the refusal)
        nacked, (None, None) moved away since the listing."""
        path = f"{self.config.outbox}/{name}"
        refused = None
        with self._lock:
            sftp = self._session()
            with self._translated(f"reading {path}"):
                try:
                    remote = sftp.open(path, "rb")
                except FileNotFoundError:
                    return None, None  # moved away since the listing
                with remote:
                    remote.prefetch(max_concurrent_requests=64)
                    try:
                        consume(remote)
                    except InputError as exc:
                        refused = exc
        if refused is not None:
            log.warning("%s file %s refused: %s", self.party, name, refused.detail)
            self._nack(name, refused.detail)
            return "refused", refused
        self._ack(name)
        return "accepted", None

    def check(self) -> Health:
        if not self._lock.acquire(timeout=1):
            return Health(True, f"{self._where}: a transfer is in progress")
        try:
            sftp = self._session()
            with self._translated("checking the remote folders"):
                sftp.stat(self.config.inbox)
                sftp.stat(self.config.outbox)
            return Health(True, f"{self._where}: {self.config.inbox}/ and {self.config.outbox}/ reachable")
        except DeliveryError as exc:
            return Health(False, f"{self._where}: {exc.reason}")
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    # -- ack / nack --------------------------------------------------------------------------------

    def _fetch(self, name: str, size: int) -> InboundItem | None:
        """`<outbox>/<name>` as an InboundItem: its bytes, or a local copy when too large to hold (None: moved
        away since the listing, another poller took it)."""
        if size > self.config.stream_above_bytes:  # too large to hold: to disk, in chunks
            local = self._download(name)
            if local is None:
                return None
            return InboundItem(name=name, body=b"", path=local, ack=partial(self._ack, name, local),
                               nack=partial(self._nack, name, local=local))
        with self._lock:
            sftp = self._session()
            with self._translated(f"downloading {self.config.outbox}/{name}"):
                try:
                    with sftp.open(f"{self.config.outbox}/{name}", "rb") as remote:
                        remote.prefetch()
                        body = remote.read()
                except FileNotFoundError:
                    return None
        return InboundItem(name=name, body=body, ack=partial(self._ack, name), nack=partial(self._nack, name))

    def _set_aside(self, name: str, reason: str) -> str:
        """A file the hub will not take goes to failed/ with the reason ("refused"); when even that fails it
        stays where it is, tried again at the next poll ("failed"), and the poll goes on with the next file."""
        try:
            self._nack(name, reason)
        except DeliveryError as exc:
            if not self._active():
                raise
            log.warning("%s: %s/%s could not be set aside (%s); it stays for the next poll",
                        self._where, self.config.outbox, name, exc.reason)
            return "failed"
        log.warning("%s: %s/%s set aside in %s/: %s", self._where, self.config.outbox, name,
                    self.config.failed, reason)
        return "refused"

    def _download(self, name: str) -> Path | None:
        """`<outbox>/<name>` copied to a local file in 1 MiB reads (None: moved away since the listing)."""
        self._downloads.mkdir(parents=True, exist_ok=True)
        local = self._downloads / bounded_name(name, prefix=f".{self.party}-", suffix=".download")
        with self._lock:
            sftp = self._session()
            with self._translated(f"downloading {self.config.outbox}/{name}"):
                try:
                    remote = sftp.open(f"{self.config.outbox}/{name}", "rb")
                except FileNotFoundError:
                    return None
                with remote, open(local, "wb") as out:
                    remote.prefetch(max_concurrent_requests=64)
                    while chunk := remote.read(1024 * 1024):
                        out.write(chunk)
        return local

    def _ack(self, name: str, local: Path | None = None) -> None:
        if local is not None:
            local.unlink(missing_ok=True)
        with self._lock:
            sftp = self._session()
            with self._translated(f"moving {self.config.outbox}/{name} to {self.config.done}/"):
                self._move(sftp, f"{self.config.outbox}/{name}", f"{self.config.done}/{name}")

    def _nack(self, name: str, reason: str, *, local: Path | None = None) -> None:
        if local is not None:
            local.unlink(missing_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        text = f"{stamp} refused by the hub: {reason}\nfile: {name}\n".encode()
        reason_name = self.reason_name(name)  # its temporary too stays within 255 bytes
        temporary, final = f"{self.config.failed}/.{reason_name}.part", f"{self.config.failed}/{reason_name}"
        with self._lock:
            sftp = self._session()
            with self._translated(f"moving {self.config.outbox}/{name} to {self.config.failed}/"):
                # the reason first: when the file shows up in failed/, its reason is already beside it
                self._upload(sftp, temporary, text)
                self._move(sftp, temporary, final)
                self._move(sftp, f"{self.config.outbox}/{name}", f"{self.config.failed}/{name}")

    @staticmethod
    def reason_name(name: str) -> str:
        """The name of the reason file beside a refused file in failed/: `<name>.reason.txt`, or, for a name
        too long for that, the name cut to fit with a digest of the whole (`bounded_name`)."""
        return bounded_name(name, suffix=".reason.txt", limit=_NAME_LIMIT - len(".") - len(".part"))

    # -- file operations (called with the lock held, inside _translated) ----------------------------

    def _upload(self, sftp: paramiko.SFTPClient, path: str, body: bytes) -> None:
        with sftp.open(path, "wb") as remote:
            remote.set_pipelined(True)
            for start in range(0, len(body), _CHUNK):
                remote.write(body[start:start + _CHUNK])
        size = sftp.stat(path).st_size
        if size != len(body):
            raise TransientDeliveryError(f"uploading {path}: the server holds {size} of {len(body)} bytes")

    def _read_if_present(self, sftp: paramiko.SFTPClient, path: str, expected_size: int) -> bytes | None:
        """The file's bytes (or b"" standing for 'other content' when its size differs), None when absent."""
        try:
            attributes = sftp.stat(path)
        except FileNotFoundError:
            return None
        if attributes.st_size != expected_size:
            return b""
        try:
            with sftp.open(path, "rb") as remote:
                remote.prefetch()
                return remote.read()
        except FileNotFoundError:  # the partner took it from its inbox between the two calls: absent now
            return None

    def _already_there(self, final: str, existing: bytes, body: bytes) -> SendResult:
        if existing != body:
            raise PermanentDeliveryError(f"{final} already exists on the server with other content")
        return SendResult(detail=f"{final} was already there with the same bytes")

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            sftp.stat(path)
            return True
        except FileNotFoundError:
            return False

    def _already_there_streamed(self, sftp: paramiko.SFTPClient, final: str, size: int, sha256: str) -> SendResult:
        """An idempotent re-send of a large file: the same size and digest is a success, read back in chunks."""
        if sftp.stat(final).st_size == size:
            digest = hashlib.sha256()
            with sftp.open(final, "rb") as remote:
                remote.prefetch(max_concurrent_requests=64)
                while chunk := remote.read(1024 * 1024):
                    digest.update(chunk)
            if digest.hexdigest() == sha256:
                return SendResult(detail=f"{final} was already there with the same bytes")
        raise PermanentDeliveryError(f"{final} already exists on the server with other content")

    def _move(self, sftp: paramiko.SFTPClient, source: str, target: str) -> None:
        try:
            sftp.rename(source, target)
        except OSError:
            if not self._active():
                raise
            try:
                sftp.stat(source)
            except FileNotFoundError:
                return  # another poller moved it first: nothing left to do
            self._remove_quietly(sftp, target)  # an older copy (a file seen again): the newer one wins
            sftp.rename(source, target)

    @staticmethod
    def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
        try:
            sftp.remove(path)
        except OSError:
            pass

    # -- the connection ----------------------------------------------------------------------------

    def _active(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return bool(transport and transport.is_active())

    def _session(self) -> paramiko.SFTPClient:
        """The open SFTP session, probed; a new connection when there is none or it went away."""
        if self._sftp is not None and self._active():
            try:
                self._sftp.normalize(".")
                return self._sftp
            except (OSError, EOFError, paramiko.SSHException):
                log.info("%s: the connection went away; reconnecting", self._where)
        self._disconnect()
        with self._translated(f"connecting to {self.config.host}:{self.config.port}"):
            private_key = self._key_file(self._private_key_path, "private_key", paramiko.PKey.from_path)
            host_key = self._key_file(self._host_key_path, "host_key", load_public_key)
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.get_host_keys().add(self._host_key_name(), host_key.get_name(), host_key)
            self._client = client
            timeout = self.timeout_seconds
            client.connect(self.config.host, port=self.config.port, username=self.config.username,
                           pkey=private_key, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout, look_for_keys=False, allow_agent=False)
            client.get_transport().set_keepalive(30)
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(timeout)
            self._sftp = sftp
            for temporary in sorted(self._abandoned):
                self._remove_quietly(sftp, temporary)
            self._abandoned.clear()
        return self._sftp

    def _host_key_name(self) -> str:
        # the name paramiko looks the pinned key up by
        return self.config.host if self.config.port == 22 else f"[{self.config.host}]:{self.config.port}"

    @staticmethod
    def _key_file(path: Path, key: str, load):
        try:
            return load(path)
        except FileNotFoundError:
            raise PermanentDeliveryError(f"connection.{key}: no file {path}") from None
        except (OSError, ValueError, paramiko.SSHException) as exc:
            raise PermanentDeliveryError(f"connection.{key}: {path} is not a usable key "
                                         f"({type(exc).__name__})") from None

    def _disconnect(self) -> None:
        for closable in (self._sftp, self._client):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # closing a broken connection may fail in many ways; nothing to do
                    pass
        self._sftp = self._client = None

    @contextmanager
    def _translated(self, doing: str):
        """Translate paramiko/socket exceptions into the hub's, naming what was being done."""
        try:
            yield
        except DeliveryError as exc:
            if not self._active():
                self._disconnect()
            raise type(exc)(exc.reason if exc.reason.startswith(doing) else f"{doing}: {exc.reason}",
                            retry_after=exc.retry_after) from None
        except Exception as exc:
            error = self._classify(exc)
            if not self._active():
                self._disconnect()
            raise type(error)(f"{doing}: {error.reason}") from None

    def _classify(self, exc: Exception) -> DeliveryError:
        if isinstance(exc, paramiko.BadHostKeyException):
            return PermanentDeliveryError(f"host key mismatch: the server presented {exc.key.get_name()} "
                                          f"{fingerprint(exc.key)}, the pinned key is "
                                          f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}")
        if isinstance(exc, paramiko.AuthenticationException):
            return PermanentDeliveryError(f"authentication refused for user {self.config.username!r} "
                                          f"with the configured key")
        if isinstance(exc, NoValidConnectionsError) or isinstance(exc, ConnectionRefusedError):
            return TransientDeliveryError("connection refused")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return TransientDeliveryError(f"no answer within {self.timeout_seconds:g} s")
        if isinstance(exc, paramiko.SSHException):
            if "known_hosts" in str(exc):  # RejectPolicy: the server offered a key type we did not pin
                return PermanentDeliveryError("host key not pinned: the server presented a key of another type")
            return TransientDeliveryError(f"SSH error: {exc}" if self._active() else f"connection lost ({exc})")
        if isinstance(exc, EOFError):
            return TransientDeliveryError("connection closed by the server")
        if isinstance(exc, OSError):
            if not self._active():
                return TransientDeliveryError(f"connection lost ({exc.strerror or exc or type(exc).__name__})")
            if exc.errno == errno.ENOENT:
                return PermanentDeliveryError(f"no such file or folder on the server ({exc.strerror or exc})")
            # the server answered but refused (SFTP failure, permission denied): a partner-side
            # condition that may clear, like an HTTP 5xx; the retry policy bounds the attempts
            return TransientDeliveryError(f"the server refused: {exc.strerror or exc}")
        return TransientDeliveryError(f"unexpected {type(exc).__name__}: {exc}")

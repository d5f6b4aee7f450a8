"""A real SFTP server on loopback (asyncssh) for partner sandboxes that exchange files.

One user, authenticated by one public key only (no passwords, no agent), the server's own host
key, SFTP only (no shell, no exec, no SCP), every session confined to one root folder. What tests
need to break it on purpose is driven by `SftpFaults`:

    fail_writes        opening a file for writing answers SFTP "failure" (the hub retries)
    delay_seconds      each open waits this long first (a slow partner)
    drop_after_bytes   the next upload is cut after that many bytes: they are written, then the
                       connection is aborted without a word (a network cut mid-transfer); one-shot
    refuse_for(s)      stop listening and drop every open connection for s seconds

`on_rename(path)` is called (in the event loop) after a client renamed a file into place, so the
partner can pick complete files up at once instead of waiting for its next folder scan.
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import asyncssh

log = logging.getLogger(__name__)


@dataclass
class SftpFaults:
    fail_writes: bool = False
    delay_seconds: float = 0.0
    drop_after_bytes: int | None = None
    counters: dict = field(default_factory=lambda: {"logins": 0, "logins_refused": 0, "uploads_dropped": 0,
                                                    "writes_refused": 0})


class _KeyOnlyServer(asyncssh.SSHServer):
    """Public-key authentication of one user with one key."""

    def __init__(self, owner: "SftpServer"):
        self.owner = owner
        self.conn = None

    def connection_made(self, conn) -> None:
        self.conn = conn
        self.owner.connections.add(conn)

    def connection_lost(self, exc) -> None:
        self.owner.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = username == self.owner.username and key.public_data == self.owner.client_key.public_data
        if not ok:
            self.owner.faults.counters["logins_refused"] += 1
        return ok

    def auth_completed(self) -> None:
        self.owner.faults.counters["logins"] += 1


class _Session(asyncssh.SFTPServer):
    """SFTP confined to the root, with the fault hooks on open, write and rename."""

    def __init__(self, chan, *, owner: "SftpServer"):
        super().__init__(chan, chroot=str(owner.root).encode())
        self.owner = owner
        self._written = 0  # bytes written by this session since the drop was armed

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs):
        faults = self.owner.faults
        if faults.delay_seconds:
            await asyncio.sleep(faults.delay_seconds)
        if pflags & asyncssh.FXF_WRITE and faults.fail_writes:
            faults.counters["writes_refused"] += 1
            raise asyncssh.SFTPFailure("simulated failure: writes refused")
        return super().open(path, pflags, attrs)

    def write(self, file_obj, offset: int, data: bytes):
        faults = self.owner.faults
        limit = faults.drop_after_bytes
        if limit is not None:
            room = max(0, limit - self._written)
            if len(data) > room:
                super().write(file_obj, offset, data[:room])
                file_obj.flush()
                faults.drop_after_bytes = None
                faults.counters["uploads_dropped"] += 1
                log.warning("dropping the connection after %d bytes of an upload (drop_after_bytes)", limit)
                self.connection.abort()
                raise asyncssh.SFTPConnectionLost("connection dropped on purpose")
            self._written += len(data)
        return super().write(file_obj, offset, data)

    def rename(self, oldpath: bytes, newpath: bytes):
        super().rename(oldpath, newpath)
        self.owner.renamed(Path(os.fsdecode(self.map_path(newpath))))


class SftpServer:
    """Listens on (host, port) once `start()` is awaited; `root` is every session's `/`."""

    def __init__(self, *, host: str, port: int, root: Path, username: str, client_public_key: Path,
                 host_key: Path, on_rename: Callable[[Path], None] | None = None):
        self.host, self.port, self.root, self.username = host, port, Path(root).resolve(), username
        self.client_key = asyncssh.read_public_key(str(client_public_key))
        self.host_key = asyncssh.read_private_key(str(host_key))
        self.on_rename = on_rename
        self.faults = SftpFaults()
        self.connections: set = set()
        self._acceptor = None

    async def start(self) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: _KeyOnlyServer(self), self.host, self.port, server_host_keys=[self.host_key],
            sftp_factory=lambda chan: _Session(chan, owner=self), allow_scp=False, login_timeout=30,
            reuse_address=True)

    async def stop(self) -> None:
        for conn in list(self.connections):
            conn.abort()
        if self._acceptor is not None:
            self._acceptor.close()
            try:
                await asyncio.wait_for(self._acceptor.wait_closed(), 5)
            except asyncio.TimeoutError:
                log.warning("SFTP listener still closing after 5 s")
            self._acceptor = None

    async def refuse_for(self, seconds: float) -> None:
        """Stop listening and cut every connection; listen again after `seconds`."""
        await self.stop()
        log.warning("SFTP server refusing connections for %.1f s", seconds)
        await asyncio.sleep(seconds)
        await self.start()
        log.warning("SFTP server listening again on %s:%d", self.host, self.port)

    def renamed(self, path: Path) -> None:
        if self.on_rename is not None:
            self.on_rename(path)

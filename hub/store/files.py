"""The engine's file store: the bytes of messages too large to hold (a claim check), under the var dir.

    <var>/files/messages/<sender>/<message id>-<sha256 prefix>.xml   a document as received (intake)
    <var>/files/sent/<delivery id>-<partner>.xml                     a document as sent (delivery), when
                                                                     the hub rendered it (its own signature)
    <var>/files/incoming/                                             downloads and copies being written

A row names its file relative to `<var>/files` (messages.payload_path, deliveries.sent_path), so the
var dir may move. A file is written to a temporary beside its final name, fsynced, then renamed:
a name in the store always holds complete bytes, and the row naming it is committed after the rename.
Files are read in chunks (`CHUNK`): nothing here holds a whole document.
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


def root(hub) -> Path:
    return hub.settings.var_dir / "files"


def resolve(hub, relative: str) -> Path:
    """The absolute path of a stored file named by a row; refuses a name that leaves the store."""
    base = root(hub).resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise ValueError(f"{relative!r} is not a path inside the file store")
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120]


def message_name(sender: str, message_id: str, digest: str) -> str:
    return f"messages/{_safe(sender)}/{_safe(message_id)}-{digest[:16]}.xml"


def sent_name(delivery_id: int, partner: str) -> str:
    return f"sent/{delivery_id}-{_safe(partner)}.xml"


def incoming(hub) -> Path:
    """A fresh temporary path in the store (same file system as the final names: renames are atomic)."""
    folder = root(hub) / "incoming"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f".{uuid.uuid4().hex}.part"


def sha256_of(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def settle(hub, temporary: Path, relative: str) -> Path:
    """Move a complete temporary (fsynced) to its name in the store; an existing file of that name is
    kept (its name carries the digest prefix: the same bytes)."""
    final = resolve(hub, relative)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        temporary.unlink(missing_ok=True)
        return final
    os.replace(temporary, final)
    return final


class Tee:
    """A reader that copies what is read to `out` and hashes it (one pass: verify, keep, digest)."""

    def __init__(self, source: BinaryIO, out: BinaryIO):
        self.source, self.out, self._digest, self.size = source, out, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n if n and n > 0 else CHUNK)
        self.out.write(data)
        self._digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read what the parser left after the root's end (trailing spaces): the digest covers every byte."""
        while self.read(CHUNK):
            pass

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

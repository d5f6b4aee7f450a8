"""Checkpoints: the heads of the evidence chains, signed by the hub, appended to files outside the database.

A database administrator can delete the tail of a chain, or change an entry and seal everything after
it again: the chain then verifies by itself. A checkpoint remembers what the chains were: every few
minutes (HUB_EVIDENCE_CHECKPOINT_SECONDS, the leading process) one line is appended to
HUB_EVIDENCE_CHECKPOINT_FILE (`$HUB_VAR_DIR/evidence/checkpoints.log`) and to HUB_EVIDENCE_CHECKPOINT_COPY
when set:

    {"at":"2026-12-03T09:05:00.000000+00:00","certificate":"<sha256 of the hub's certificate, DER>",
     "chains":{"audit":[12,"9e03…"],"cases":[40,"77ab…"],"timeline":[1843,"5c1f…"]}} <base64 signature>

The signed bytes are the line up to its last space (JSON, keys sorted, no spaces, ASCII); the signature is
the hub's key over them (RSA PKCS#1 v1.5 or ECDSA, SHA-256), so `openssl dgst -sha256 -verify` checks a
line offline. `hub evidence verify` compares each chain with the last checkpoint of each file: a chain
that ends before the checkpointed entry, or whose chain hash there differs, fails naming the chain.

This module knows the format, the files and the comparison; hub/evidence/chains.py reads the heads and
walks the chains.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hub.errors import HubError

Heads = dict[str, tuple[int, str]]   # chain -> (seq, chain hash) of its last sealed entry


def primary_file(settings) -> Path:
    return settings.evidence_checkpoint_file


def locations(settings) -> list[Path]:
    """Where checkpoints are appended and read: the file under the var dir, then the copy if one is set."""
    copy = settings.evidence_checkpoint_copy
    return [primary_file(settings)] + ([copy] if copy is not None else [])


# -- signing ----------------------------------------------------------------------------------------

def sign_detached(key, data: bytes) -> bytes:
    """A detached signature of `data` with the hub's key, as `openssl dgst -sha256 -verify` checks it:
    RSA PKCS#1 v1.5 with SHA-256, or ECDSA with SHA-256 (DER) for an EC key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise HubError(f"cannot sign evidence with a {type(key).__name__}")


def verify_detached(public_key, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def fingerprint(certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


# -- the line ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    at: dt.datetime
    heads: Heads
    location: Path
    line: int            # its line number in that file, from 1

    def __str__(self) -> str:
        chains = ", ".join(f"{name} {seq}" for name, (seq, _) in sorted(self.heads.items()))
        return f"checkpoint of {self.at.isoformat(timespec='seconds')} ({self.location}, line {self.line}: {chains})"


def encode(heads: Heads, at: dt.datetime, signer) -> str:
    """One checkpoint line (with its newline), signed with the hub's key."""
    body = json.dumps({"at": at.isoformat(timespec="microseconds"), "certificate": fingerprint(signer.certificate),
                       "chains": {name: [seq, chain_hash] for name, (seq, chain_hash) in heads.items()}},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    signature = base64.b64encode(sign_detached(signer.key, body.encode("ascii"))).decode("ascii")
    return f"{body} {signature}\n"


def decode(text: str, certificate, location: Path, number: int) -> Checkpoint:
    """The checkpoint of one line, its signature checked with the hub's certificate; ValueError saying why not."""
    body, _, signature = text.rstrip("\n").rpartition(" ")
    try:
        values = json.loads(body)
        raw = base64.b64decode(signature, validate=True)
        at = dt.datetime.fromisoformat(values["at"])
        heads = {str(name): (int(seq), str(chain_hash)) for name, (seq, chain_hash) in values["chains"].items()}
        signed_by = values["certificate"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise ValueError(f"not a checkpoint line ({exc.__class__.__name__}: {exc})") from None
    if signed_by != fingerprint(certificate):
        raise ValueError(f"signed with another certificate (sha256 {str(signed_by)[:16]}…) than the hub's")
    if not verify_detached(certificate.public_key(), raw, body.encode("ascii", "replace")):
        raise ValueError("its signature does not verify with the hub's certificate (the line was changed)")
    return Checkpoint(at, heads, location, number)


def last(location: Path, certificate) -> Checkpoint | None:
    """The last checkpoint in `location` (None: no file, or no line yet); ValueError naming the bad line."""
    try:
        data = location.read_bytes()
    except FileNotFoundError:
        return None
    lines = data.decode("ascii", "replace").splitlines()
    if not lines:
        return None
    number = len(lines)
    try:
        return decode(lines[-1], certificate, location, number)
    except ValueError as exc:
        raise ValueError(f"checkpoint file {location}, line {number}: {exc}") from None


def append(settings, line: str) -> None:
    """Append `line` to every location, each written through to the disk before the next."""
    for location in locations(settings):
        location.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(location, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)


# -- the comparison ---------------------------------------------------------------------------------

def contradictions(checkpoint: Checkpoint, heads: Heads, hash_at: Callable[[str, int], str | None]
                   ) -> list[tuple[str, int, str]]:
    """(chain, seq, problem) for each chain the checkpoint knows that does not hold what it checkpointed:
    `heads` are the chains' sealed heads now, `hash_at(chain, seq)` the chain hash stored at that entry."""
    problems = []
    for name, (seq, chain_hash) in sorted(checkpoint.heads.items()):
        if name not in heads or seq == 0:
            continue
        head_seq = heads[name][0]
        if head_seq < seq:
            problems.append((name, head_seq + 1, f"the chain ends at entry {head_seq}, but the {checkpoint} "
                                                 f"has entry {seq}: entries after {head_seq} were deleted (or their seals emptied)"))
            continue
        stored = hash_at(name, seq)
        if stored != chain_hash:
            problems.append((name, seq, f"entry {seq} has chain hash {(stored or 'none')[:16]}…, the {checkpoint} "
                                        f"has {chain_hash[:16]}…: entries up to {seq} were changed and sealed again"))
    return problems

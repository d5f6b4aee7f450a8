"""A transport the engine has never heard of: files in a local folder (docs/howto/add-a-transport.md
builds it step by step). It sends and polls, so the tests can show that the engine finds what a
connector can do from its protocols alone, and delivers and polls through it like through SFTP.

    send(outbound)  writes `<path>/inbox/.<id>.xml.part`, then renames it to `<path>/inbox/<id>.xml`; the
                    same bytes already there is a success, other bytes a permanent failure
    poll()          each file in `<path>/outbox/`; ack moves it to done/, nack(reason) to failed/ with
                    `<name>.reason.txt` beside it
    check()         whether the four folders exist
Any OSError is transient (a full disk, an unmounted share): the engine retries.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Health, InboundItem, Outbound, SendResult
from hub.errors import PermanentDeliveryError, TransientDeliveryError

FOLDERS = ("inbox", "outbox", "done", "failed")


class FolderConnector:
    class Config(BaseModel):
        """`connection:` of a `transport: folder` party."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        path: Path = Field(description="The exchange folder; inbox/, outbox/, done/ and failed/ are made in it "
                                       "when the connector opens.")
        poll_interval_seconds: float = Field(30.0, ge=0.1, le=86400, description="Seconds between two polls of "
                                                                                "outbox/.")

    def __init__(self, party: str, config: "FolderConnector.Config", *, timeout_seconds: float = 0, settings=None):
        self.party = party
        self.config = config
        self.root = config.path

    def __repr__(self) -> str:
        return f"FolderConnector({self.party}, {self.root})"

    @property
    def poll_interval_seconds(self) -> float:
        return self.config.poll_interval_seconds

    def open(self) -> None:
        for name in FOLDERS:
            (self.root / name).mkdir(parents=True, exist_ok=True)

    def send(self, outbound: Outbound) -> SendResult:
        final = self.root / "inbox" / f"{outbound.message_id}.xml"
        try:
            self.open()
            if final.exists():
                if final.read_bytes() != outbound.body:
                    raise PermanentDeliveryError(f"{final.name} is already in {self.party}'s inbox with other bytes")
                return SendResult(detail=f"{final.name} already there")
            temporary = final.with_name(f".{final.name}.part")
            temporary.write_bytes(outbound.body)
            os.replace(temporary, final)
        except OSError as exc:
            raise TransientDeliveryError(f"writing {final}: {exc.strerror or exc}") from None
        return SendResult(detail=f"wrote {final.name} ({len(outbound.body)} bytes)")

    def poll(self) -> Iterator[InboundItem]:
        try:
            self.open()
            names = sorted(p.name for p in (self.root / "outbox").iterdir() if not p.name.startswith("."))
        except OSError as exc:
            raise TransientDeliveryError(f"listing {self.root / 'outbox'}: {exc.strerror or exc}") from None
        for name in names:
            path = self.root / "outbox" / name
            yield InboundItem(name, path.read_bytes(), ack=lambda path=path: os.replace(path, self.root / "done" / path.name),
                              nack=lambda reason, path=path: self._fail(path, reason))

    def _fail(self, path: Path, reason: str) -> None:
        (self.root / "failed" / f"{path.name}.reason.txt").write_text(reason, encoding="utf-8")
        os.replace(path, self.root / "failed" / path.name)

    def check(self) -> Health:
        missing = [name for name in FOLDERS if not (self.root / name).is_dir()]
        return Health(not missing, f"missing {', '.join(missing)}" if missing else f"{self.root} ready")

    def close(self) -> None:
        pass

"""CDG sandbox: the pension funds' (CNRA, RCAR) file exchange for life certificates and death notices.

A real SFTP server (sandbox/sftp_server.py, asyncssh) on `--port` (default 8722) with CDG's own host
key (`<pki>/ssh/CDG_host`), accepting the user `hub` with the hub's client key only
(`<pki>/ssh/hub_client.pub`). Every session sees `<data>/CDG/sftp/` as `/`:

    inbox/      the hub uploads LotCertificatsVie batch files here (temporary names start with ".")
    outbox/     CDG writes one AccuseLot per batch here, atomically; the hub polls, then moves it
    done/       ... to done/ once stored, or to failed/ with `<name>.reason.txt` when it refused it
    rejected/   batch files CDG could not trust (see below), each with `<name>.reason.txt`

A watcher takes every complete file from inbox/ (on each rename into inbox/, and every 0.5 s):

  * not well-formed, not valid against schemas/partners/cdg/certificats-vie.xsd, or not signed by
    the hub -> moved to rejected/ with the reason beside it, and NO acknowledgement: nothing in an
    unverified file (batch id, message id) can be trusted, and an acknowledgement naming them could
    answer a batch the hub never sent. The operator sees it in rejected/ (and in the stats).
  * valid and signed -> deduplicated by IdentifiantLot: the first time it is kept under
    `<data>/CDG/received/<lot>.xml` with its acknowledgement under `<data>/CDG/acknowledged/<lot>.xml`,
    and the acknowledgement `outbox/AR_<lot>.xml` is written (temporary name, then rename). A batch
    seen again (the hub re-sent it) changes nothing and gets no second acknowledgement. Either way
    the file leaves inbox/. After a restart, an acknowledgement that never reached outbox/ (nor
    done/, failed/) is written again.

Large batches (over `--stream-above-bytes`, default 1 MiB: the size a message may have anywhere else)
are read as a stream and never held: hub.trust.streaming.verify_stream parses the file in chunks,
validates it against the XSD while parsing and checks the hub's signature from the digest of its
canonical form computed on the way; each line's verdict is spooled to a work file, and the signed
AccuseLot is then written in canonical form straight to disk (hub.trust.streaming.CanonicalWriter).
A 100,000-certificate batch (about 40 MB) is handled in a few tens of megabytes of memory.

Decision rule, per line, deterministic: REJETE with CodeMotif PENSION_INCONNUE when the
NumeroPension ends in 9; otherwise ACCEPTE. The acknowledgement is signed by CDG.

HTTP control port (`--control-port`, default 8714):

    GET  /healthz, GET /_sandbox/stats
    POST /_sandbox/behaviour  {"mode": "normal"|"fail"|"slow"|"refuse", "fail_every": n,
                               "delay_seconds": s, "refuse_seconds": s,
                               "drop_after_bytes": n, "paused": bool}
         fail      SFTP writes are refused with "failure" (every fail_every-th when set)
         slow      each SFTP open waits delay_seconds
         refuse    the SFTP port is closed and open connections cut for refuse_seconds
         drop_after_bytes   the next upload is cut after n bytes (one-shot)
         paused    the watcher leaves inbox/ alone (files stay there, e.g. for connector tests)
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import resource
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from lxml import etree
from lxml.builder import ElementMaker
from pydantic import Field

from hub.errors import InputError
from hub.trust.pki import CDG_SSH_HOST_KEY, HUB_SSH_CLIENT_KEY, SSH_DIR, ensure_dev_ssh_keys
from hub.trust.streaming import CanonicalWriter, escape_text, verify_stream
from hub.xml.safe import parse_trusted
from sandbox.common import (MAX_REQUEST_BYTES, PROJECT_ROOT, BehaviourChange, PartnerSandbox, add_common_arguments,
                            positive_port, run_app)
from sandbox.outbox import write_atomically
from sandbox.sftp_server import SftpServer

log = logging.getLogger(__name__)

PARTNER = "CDG"
NS = "urn:ma:cdg:certificats-vie:1"
XSD = "partners/cdg/certificats-vie.xsd"
BATCH_ROOT = f"{{{NS}}}LotCertificatsVie"
SFTP_USER = "hub"
FOLDERS = ("inbox", "outbox", "done", "failed", "rejected")
SCAN_SECONDS = 0.5
UNKNOWN_PENSION = ("PENSION_INCONNUE", "Numéro de pension inconnu de la caisse")

C = ElementMaker(namespace=NS, nsmap={None: NS})


def decision_for(numero_pension: str) -> tuple[str, str | None, str | None]:
    """(Statut, CodeMotif, LibelleMotif) for one line: REJETE PENSION_INCONNUE when the pension
    number ends in 9, ACCEPTE otherwise."""
    if numero_pension.strip().endswith("9"):
        return "REJETE", *UNKNOWN_PENSION
    return "ACCEPTE", None, None


def acknowledgement_name(batch_id: str) -> str:
    return f"AR_{batch_id}.xml"


def _tag(name: str) -> str:
    return f"{{{NS}}}{name}"


class CdgBehaviourChange(BehaviourChange):
    drop_after_bytes: int | None = Field(None, ge=0, description="Cut the next upload after this many bytes")
    paused: bool | None = Field(None, description="Leave inbox/ alone while true")


class CdgSandbox(PartnerSandbox):
    def __init__(self, *, pki_dir: Path, data_dir: Path, host: str, port: int, mode: str = "normal",
                 stream_above_bytes: int = MAX_REQUEST_BYTES):
        super().__init__(PARTNER, pki_dir=pki_dir, data_dir=data_dir, mode=mode)
        self.stream_above_bytes = stream_above_bytes
        self.work_dir = self.home / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        keys = ensure_dev_ssh_keys(pki_dir)
        self.sftp_root = self.home / "sftp"
        for folder in FOLDERS:
            (self.sftp_root / folder).mkdir(parents=True, exist_ok=True)
        self.server = SftpServer(host=host, port=port, root=self.sftp_root, username=SFTP_USER,
                                 client_public_key=Path(pki_dir) / SSH_DIR / f"{HUB_SSH_CLIENT_KEY}.pub",
                                 host_key=keys[CDG_SSH_HOST_KEY], on_rename=self._renamed)
        self.paused = False
        self._inbox_lock = threading.Lock()  # one pass over inbox/ at a time
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task | None = None

    # -- lifecycle (in the control server's event loop) ----------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.rewrite_missing_acknowledgements()
        await self.server.start()
        self._watcher = asyncio.create_task(self._watch())
        self._apply_faults()
        print(f"CDG sandbox SFTP on {self.server.host}:{self.server.port}, root {self.sftp_root}", flush=True)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.server.stop()

    def _renamed(self, path: Path) -> None:
        if path.parent == self.sftp_root / "inbox" and self._wake is not None:
            self._wake.set()

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), SCAN_SECONDS)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self.paused:
                try:
                    await asyncio.to_thread(self.process_inbox)
                except Exception:  # the watcher must survive anything: log, and look again later
                    log.exception("processing inbox/ failed; trying again")

    # -- batches ---------------------------------------------------------------------------------

    def process_inbox(self) -> int:
        """Handle every complete file in inbox/; returns how many were taken."""
        with self._inbox_lock:
            names = sorted(p.name for p in (self.sftp_root / "inbox").iterdir()
                           if p.is_file() and not p.name.startswith("."))
            for name in names:
                self._take(self.sftp_root / "inbox" / name)
            return len(names)

    def _take(self, path: Path) -> None:
        if path.stat().st_size > self.stream_above_bytes:
            self._take_streamed(path)
            return
        body = path.read_bytes()
        try:
            batch = self.check_document(body, xsd=XSD, roots={BATCH_ROOT}, what="LotCertificatsVie")
        except InputError as error:
            self._reject(path, error)
            return
        batch_id = batch.findtext(_tag("IdentifiantLot")).strip()
        acknowledgement, new = self.answer_once(batch_id, body, lambda: self._acknowledgement(batch))
        if new:
            counts = parse_trusted(acknowledgement)
            self.count("lines_accepted", int(counts.findtext(_tag("NombreAcceptes"))))
            self.count("lines_rejected", int(counts.findtext(_tag("NombreRejetes"))))
            write_atomically(self.sftp_root / "outbox" / acknowledgement_name(batch_id), acknowledgement)
            log.info("batch %s (%s): acknowledged", batch_id, path.name)
        else:
            log.info("batch %s (%s) seen again: nothing to do", batch_id, path.name)
        path.unlink()

    def _take_streamed(self, path: Path) -> None:
        """A large batch: verified and answered in one pass over the file, the answer written to disk."""
        header: dict[str, str] = {}
        counts = {"ACCEPTE": 0, "REJETE": 0}
        lines_path = self.work_dir / f"{path.name}.lines"
        with open(lines_path, "wb") as lines:
            spool: list[str] = []

            def on_element(element: etree._Element) -> None:
                local = element.tag[len(NS) + 2:]
                if local in ("Certificat", "Avis"):
                    fields = {child.tag: child.text for child in element}  # one pass: findtext costs more
                    reference = (fields.get(_tag("Reference")) or "").strip()
                    status, code, text = decision_for(fields.get(_tag("NumeroPension")) or "")
                    counts[status] += 1
                    kind = "CERTIFICAT_VIE" if local == "Certificat" else "AVIS_DECES"
                    spool.append(f"<Ligne><Reference>{escape_text(reference)}</Reference><Type>{kind}</Type>"
                                 f"<Statut>{status}</Statut>" + (f"<CodeMotif>{code}</CodeMotif><LibelleMotif>"
                                                                 f"{escape_text(text)}</LibelleMotif>" if code else "")
                                 + "</Ligne>")
                    if len(spool) >= 1000:
                        lines.write("".join(spool).encode())
                        spool.clear()
                elif local in ("IdentifiantLot", "IdentifiantMessage"):
                    header[local] = (element.text or "").strip()

            try:
                with open(path, "rb") as source:
                    schema = etree.XMLSchema(etree.parse(str(PROJECT_ROOT / "schemas" / XSD)))
                    verify_stream(source, certificates=[self.hub_certificate], signer_name="hub",
                                  what="LotCertificatsVie", roots={BATCH_ROOT}, schema=schema, apex_depth=2,
                                  on_element=on_element)
            except InputError as error:
                lines.close()
                lines_path.unlink()
                self._reject(path, error)
                return
            lines.write("".join(spool).encode())
        batch_id = header["IdentifiantLot"]
        with self._lock:
            seen = batch_id in self._answers
            if seen:
                self.counters["duplicates"] += 1
        if seen:
            lines_path.unlink()
            path.unlink()
            log.info("batch %s (%s) seen again: nothing to do", batch_id, path.name)
            return
        answer = self.work_dir / f"{acknowledgement_name(batch_id)}.tmp"
        with open(answer, "wb") as out:
            writer = CanonicalWriter(out, "AccuseLot", NS)
            writer.leaf("IdentifiantAccuse", f"CDG-AR-{batch_id}")
            writer.leaf("IdentifiantLot", batch_id)
            writer.leaf("ReferenceMessage", header["IdentifiantMessage"])
            writer.leaf("DateTraitement", dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat())
            writer.leaf("NombreAcceptes", str(counts["ACCEPTE"]))
            writer.leaf("NombreRejetes", str(counts["REJETE"]))
            with open(lines_path, "rb") as spooled:
                while chunk := spooled.read(1024 * 1024):
                    writer.canonical(chunk)
            size, _ = writer.finish(self.signer)
            out.flush()
            os.fsync(out.fileno())
        lines_path.unlink()
        os.replace(path, self.received_dir / f"{batch_id}.xml")
        stored = self.acknowledged_dir / f"{batch_id}.xml"
        os.replace(answer, stored)
        _copy_atomically(stored, self.sftp_root / "outbox" / acknowledgement_name(batch_id))
        with self._lock:
            self._answers[batch_id] = b""  # the answer stays on disk: a large file is not kept in memory
            self.counters["received"] += 1
            self.counters["lines_accepted"] += counts["ACCEPTE"]
            self.counters["lines_rejected"] += counts["REJETE"]
            self.counters["batches_streamed"] += 1
        log.info("batch %s (%s): %d lines acknowledged in a stream (%d bytes)", batch_id, path.name,
                 counts["ACCEPTE"] + counts["REJETE"], size)

    def _reject(self, path: Path, error: InputError) -> None:
        target = self.sftp_root / "rejected" / path.name
        reasons = [error.detail, *(f"  line {p.line}: {p.message}" if p.line else f"  {p.message}"
                                   for p in error.problems[:20])]
        write_atomically(target.with_name(f"{path.name}.reason.txt"), ("\n".join(reasons) + "\n").encode())
        os.replace(path, target)
        self.count("batches_rejected")
        log.warning("%s moved to rejected/: %s", path.name, error.detail)

    def _acknowledgement(self, batch: etree._Element) -> bytes:
        batch_id = batch.findtext(_tag("IdentifiantLot")).strip()
        lines, counts = [], {"ACCEPTE": 0, "REJETE": 0}
        items = [(item, "CERTIFICAT_VIE") for item in batch.iterfind(f"{_tag('Certificats')}/{_tag('Certificat')}")]
        items += [(item, "AVIS_DECES") for item in batch.iterfind(f"{_tag('AvisDeces')}/{_tag('Avis')}")]
        for item, kind in items:
            status, code, text = decision_for(item.findtext(_tag("NumeroPension")))
            counts[status] += 1
            line = C.Ligne(C.Reference(item.findtext(_tag("Reference")).strip()), C.Type(kind), C.Statut(status))
            if code:
                line.extend([C.CodeMotif(code), C.LibelleMotif(text)])
            lines.append(line)
        document = C.AccuseLot(
            C.IdentifiantAccuse(f"CDG-AR-{batch_id}"),
            C.IdentifiantLot(batch_id),
            C.ReferenceMessage(batch.findtext(_tag("IdentifiantMessage")).strip()),
            C.DateTraitement(dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()),
            C.NombreAcceptes(str(counts["ACCEPTE"])),
            C.NombreRejetes(str(counts["REJETE"])),
            *lines,
        )
        # runs under the store's lock (answer_once): no counting here
        return self.sign(document, xsd=XSD, what="AccuseLot")

    def rewrite_missing_acknowledgements(self) -> int:
        """Acknowledgements stored but in none of outbox/, done/, failed/ (a crash in between)."""
        written = 0
        for path in sorted(self.acknowledged_dir.glob("*.xml")):
            name = acknowledgement_name(path.stem)
            if not any((self.sftp_root / folder / name).exists() for folder in ("outbox", "done", "failed")):
                _copy_atomically(path, self.sftp_root / "outbox" / name)
                written += 1
        return written

    # -- behaviour and stats -----------------------------------------------------------------------

    def change(self, change: CdgBehaviourChange) -> dict:
        extra = change.model_dump(include={"drop_after_bytes", "paused"}, exclude_unset=True)
        common = BehaviourChange.model_validate(change.model_dump(exclude={"drop_after_bytes", "paused"},
                                                                   exclude_unset=True))
        behaviour = self.change_behaviour(common)
        if "drop_after_bytes" in extra:
            self.server.faults.drop_after_bytes = extra["drop_after_bytes"]
        if extra.get("paused") is not None:
            self.paused = extra["paused"]
            if not self.paused and self._loop is not None:
                self._loop.call_soon_threadsafe(self._wake.set)
        self._apply_faults()
        return {**behaviour.model_dump(), "drop_after_bytes": self.server.faults.drop_after_bytes,
                "paused": self.paused}

    def _apply_faults(self) -> None:
        behaviour, faults = self.behaviour, self.server.faults
        faults.fail_writes = behaviour.mode == "fail"
        faults.delay_seconds = behaviour.delay_seconds if behaviour.mode == "slow" else 0.0

    def sftp_stats(self) -> dict:
        folders = {folder: sum(1 for p in (self.sftp_root / folder).iterdir() if not p.name.startswith("."))
                   for folder in FOLDERS}
        return {**self.stats(), **self.server.faults.counters, "folders": folders, "paused": self.paused,
                "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "connections": len(self.server.connections)}


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy under a temporary name beginning with ".", then rename: never half a file under its name."""
    temporary = target.with_name(f".{target.name}.tmp")
    with open(source, "rb") as src, open(temporary, "wb") as dst:
        while chunk := src.read(1024 * 1024):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(temporary, target)


def create_app(sandbox: CdgSandbox) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        # `refuse` closes the SFTP port, not this control port (run_app set a default that does the latter)
        sandbox.on_refuse = lambda seconds: loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(_refuse(seconds)))
        await sandbox.start()
        try:
            yield
        finally:
            await sandbox.stop()

    async def _refuse(seconds: float) -> None:
        await sandbox.server.refuse_for(seconds)
        sandbox.change_behaviour(BehaviourChange(mode="normal"))

    app = FastAPI(title="CDG sandbox", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "partner": PARTNER, "sftp_port": sandbox.server.port}

    @app.get("/_sandbox/stats")
    def stats() -> dict:
        return sandbox.sftp_stats()

    @app.post("/_sandbox/behaviour")
    def behaviour(change: CdgBehaviourChange) -> JSONResponse:
        return JSONResponse(sandbox.change(change))

    return app


def add_arguments(parser) -> None:
    add_common_arguments(parser, port=8722)
    parser.add_argument("--control-port", type=positive_port, default=8714,
                        help="HTTP control port: /healthz, /_sandbox/stats, /_sandbox/behaviour (default %(default)s)")
    parser.add_argument("--stream-above-bytes", type=int, default=MAX_REQUEST_BYTES,
                        help="batch files larger than this are read as a stream, never held (default %(default)s)")


def run(args) -> int:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one INFO line per SSH event otherwise
    sandbox = CdgSandbox(pki_dir=args.pki_dir, data_dir=args.data_dir, host=args.host, port=args.port, mode=args.mode,
                         stream_above_bytes=args.stream_above_bytes)
    return run_app(create_app(sandbox), sandbox=sandbox, host=args.host, port=args.control_port)

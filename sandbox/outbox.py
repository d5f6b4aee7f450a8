"""Durable, at-least-once delivery of a partner's callbacks (XML documents POSTed to one URL).

Each document is written to `outbox/<id>.xml` before the first attempt, so a restart loses nothing:
`start()` re-sends whatever is still there. One background thread, fed by a DelayedQueue, does all
the work over one kept-alive urllib3 connection:

    2xx                          copy to `sent/<id>.xml`, delete from outbox/
    connection error, timeout,   retry after Retry-After when given, else exponential backoff
    5xx, 429                     from 0.5 s capped at 10 s, for as long as the process runs
    any other 4xx                move to `rejected/<id>.xml`, the answer beside it as
                                 `rejected/<id>.response.txt`; no more attempts

With `soap_action` set (SOAP partners calling the hub's /soap/{CODE} endpoint), each document is
sent as the single child of a SOAP 1.1 Body, byte for byte, with that SOAPAction, and the answer is
read as SOAP: the Body's document (the hub's signed Receipt) is kept as `sent/<id>.answer.xml` and
handed to `check_answer` (over REST, the answer's body is handed to it as it is); a soap:Fault marked transient (RetryAfter in its detail), or a 5xx without
a readable fault, is retried; any other fault moves the document to `rejected/` as above.

With `token` set (a partner token of the hub, for callbacks to its /api), every request carries
`Authorization: Bearer <token>`; the token is never logged nor written with a rejected document.
"""
from __future__ import annotations

import logging
import os
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import urllib3
from urllib3.exceptions import HTTPError as TransportFailure

from connectors.http import parse_retry_after as retry_after_seconds
from connectors.soap.envelope import (CONTENT_TYPE as SOAP_CONTENT_TYPE, body_document_bytes, parse_envelope,
                                      read_fault, wrap_document_bytes)
from hub.errors import InputError
from sandbox.delayed_queue import DelayedQueue

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0

# Builds a document when its time comes: returns (document id, bytes), or None to send nothing.
Producer = Callable[[], "tuple[str, bytes] | None"]


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, then rename it into place."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def backoff_seconds(attempt: int) -> float:
    """0.5 s after the first failed attempt, doubling each time, never more than 10 s."""
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1))


@dataclass(frozen=True)
class _Produce:
    producer: Producer


@dataclass(frozen=True)
class _Deliver:
    document_id: str
    attempt: int = 1


class CallbackOutbox:
    """Delivers documents to `url` from `<directory>/outbox/`, keeping `sent/` and `rejected/`."""

    def __init__(self, directory: Path, url: str, *, on_delivered: Callable[[str], None] | None = None,
                 soap_action: str | None = None, check_answer: Callable[[str, bytes], None] | None = None,
                 token: str | None = None):
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.soap_action = soap_action
        self._check_answer = check_answer or (lambda document_id, answer: None)
        self.outbox_dir = Path(directory) / "outbox"
        self.sent_dir = Path(directory) / "sent"
        self.rejected_dir = Path(directory) / "rejected"
        for folder in (self.outbox_dir, self.sent_dir, self.rejected_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._on_delivered = on_delivered or (lambda document_id: None)
        self._queue = DelayedQueue()
        self._client: urllib3.HTTPConnectionPool | None = None
        self._thread: threading.Thread | None = None

    # -- surface -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the client, start the worker and re-send whatever a previous run left in outbox/."""
        self._client = urllib3.connection_from_url(self.url, maxsize=1, retries=False,
                                                   timeout=urllib3.Timeout(connect=TIMEOUT_SECONDS,
                                                                           read=TIMEOUT_SECONDS))
        self._thread = threading.Thread(target=self._work, name="callback-outbox", daemon=True)
        self._thread.start()
        for path in sorted(self.outbox_dir.glob("*.xml")):
            log.info("re-sending %s left in the outbox", path.stem)
            self._queue.put(_Deliver(path.stem))

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the worker; what is still in outbox/ is sent by the next start."""
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._client is not None:
            self._client.close()

    def produce_later(self, producer: Producer, delay: float) -> None:
        """After `delay` seconds, call `producer`, store its document in outbox/ and deliver it."""
        self._queue.put(_Produce(producer), delay)

    def knows(self, document_id: str) -> bool:
        """Whether a document with this id is pending, was sent, or was rejected."""
        name = f"{document_id}.xml"
        return any((folder / name).exists() for folder in (self.outbox_dir, self.sent_dir, self.rejected_dir))

    def pending(self) -> int:
        return sum(1 for _ in self.outbox_dir.glob("*.xml"))

    # -- worker ------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            try:
                if isinstance(task, _Produce):
                    self._produce(task.producer)
                else:
                    self._deliver(task.document_id, task.attempt)
            except Exception:  # the worker must survive anything: log, and try again later
                log.exception("callback task failed; trying again")
                retry = task if isinstance(task, _Produce) else _Deliver(task.document_id, task.attempt + 1)
                self._queue.put(retry, MAX_BACKOFF_SECONDS)

    def _produce(self, producer: Producer) -> None:
        produced = producer()
        if produced is None:
            return
        document_id, body = produced
        write_atomically(self.outbox_dir / f"{document_id}.xml", body)
        self._queue.put(_Deliver(document_id))

    def _deliver(self, document_id: str, attempt: int) -> None:
        path = self.outbox_dir / f"{document_id}.xml"
        if not path.exists():  # delivered already (scheduled twice)
            return
        body = path.read_bytes()
        if self.soap_action is not None:
            content = wrap_document_bytes(body)
            headers = {"Content-Type": SOAP_CONTENT_TYPE, "SOAPAction": f'"{self.soap_action}"'}
        else:
            content, headers = body, {"Content-Type": "application/xml"}
        try:
            response = self._client.urlopen("POST", self._path, body=content, headers={**self._headers, **headers},
                                            redirect=False)
        except TransportFailure as exc:  # refused connection, timeout, reset...
            self._retry_later(document_id, attempt, None, f"{type(exc).__name__}: {exc}")
            return
        if self.soap_action is not None:
            self._soap_outcome(document_id, attempt, path, body, response)
            return
        status = response.status
        if 200 <= status < 300:
            write_atomically(self.sent_dir / f"{document_id}.xml", body)
            path.unlink(missing_ok=True)
            log.info("callback %s delivered (HTTP %d, attempt %d)", document_id, status, attempt)
            self._check_answer(document_id, response.data)
            self._on_delivered(document_id)
        elif status >= 500 or status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            self._retry_later(document_id, attempt, wait, f"HTTP {status}")
        else:
            self._reject(document_id, path, response)

    def _soap_outcome(self, document_id: str, attempt: int, path: Path, body: bytes,
                      response: urllib3.BaseHTTPResponse) -> None:
        status = response.status
        try:
            document = parse_envelope(response.data, max_bytes=1024 * 1024, what="answer of the hub")
        except InputError:
            document = None
        fault = read_fault(document) if document is not None else None
        if document is not None and fault is None and 200 <= status < 300:
            answer = body_document_bytes(document)
            write_atomically(self.sent_dir / f"{document_id}.answer.xml", answer)
            write_atomically(self.sent_dir / f"{document_id}.xml", body)
            path.unlink(missing_ok=True)
            log.info("callback %s delivered (SOAP, HTTP %d, attempt %d)", document_id, status, attempt)
            self._check_answer(document_id, answer)
            self._on_delivered(document_id)
        elif fault is not None and fault.transient:
            self._retry_later(document_id, attempt, fault.retry_after, f"SOAP fault {fault.code}: {fault.string}")
        elif fault is None and (status >= 500 or status == 429 or 200 <= status < 300):
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            self._retry_later(document_id, attempt, wait, f"HTTP {status} without a SOAP answer")
        else:
            self._reject(document_id, path, response)

    def _retry_later(self, document_id: str, attempt: int, wait: float | None, reason: str) -> None:
        wait = backoff_seconds(attempt) if wait is None else wait
        log.warning("callback %s not delivered (%s, attempt %d); retrying in %.1f s",
                    document_id, reason, attempt, wait)
        self._queue.put(_Deliver(document_id, attempt + 1), wait)

    def _reject(self, document_id: str, path: Path, response: urllib3.BaseHTTPResponse) -> None:
        write_atomically(self.rejected_dir / f"{document_id}.response.txt",
                         f"HTTP {response.status}\n\n".encode() + response.data)
        os.replace(path, self.rejected_dir / f"{document_id}.xml")
        log.warning("callback %s refused by the hub (HTTP %d); moved to rejected/", document_id, response.status)

"""In-process delivery to a consumer living in the hub's own process (an app's, e.g. the consular registry's).

A Sender and a LocalConsumer (connectors/base.py): the service attaches the consumer an app declares for
the party (`App.local_consumers`); until then a delivery is retried later. A consumer that refuses the
message (an InputError: a signature or header it does not accept) fails it for good (PermanentDeliveryError):
the same bytes again cannot be accepted, and a permanent failure does not count against the circuit."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict

from connectors.base import Health, Outbound, OutboundFile, SendResult
from hub.errors import DeliveryError, InputError, PermanentDeliveryError, TransientDeliveryError


class LocalConnector:
    class Config(BaseModel):
        """No settings: the consumer is attached in the hub's process (`Hub.attach_local_consumer`)."""
        model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, party: str, config: "LocalConnector.Config | None" = None, *, timeout_seconds: float = 0,
                 settings=None, handler: Callable[[Outbound], None] | None = None):
        self.party = party
        self.handler = handler
        self.file_handler: Callable[[OutboundFile], None] | None = None  # messages kept in a file

    def __repr__(self) -> str:
        return f"LocalConnector({self.party})"

    def attach(self, handler: Callable[[Outbound], None]) -> None:
        self.handler = handler

    @property
    def attached(self) -> bool:
        return self.handler is not None

    def attach_files(self, handler: Callable[[OutboundFile], None]) -> None:
        """The consumer of messages kept in a file (FileSender): given the file, it reads it as a stream."""
        self.file_handler = handler

    def open(self) -> None:
        pass

    def send(self, outbound: Outbound) -> SendResult:
        return self._consume(self.handler, outbound)

    def send_file(self, message_id: str, message_type: str, path: Path, *, sha256: str) -> SendResult:
        """A message kept in a file: the consumer is given the file's path (read it as a stream)."""
        return self._consume(self.file_handler, OutboundFile(message_id, message_type, Path(path), sha256))

    def prepare_change(self, outbound: Outbound) -> Callable | None:
        """For a consumer whose effect is a change to the hub's database (hub/apps.py `ChangingConsumer`): its
        work that needs no transaction done now, and its change returned, for the hub to write in the
        transaction that records the delivery (hub/delivery/workers.py). None for any other consumer (then
        `send`). Both raise DeliveryError only, as `send` does."""
        prepare = getattr(self.handler, "prepare", None)
        if prepare is None:
            return None
        change = self._consumed(prepare, outbound)
        return lambda session: self._consumed(change, session)

    def _consume(self, handler, outbound) -> SendResult:
        if handler is None:
            raise TransientDeliveryError(f"no consumer attached for {self.party} in this process")
        self._consumed(handler, outbound)
        return SendResult(detail="consumed")

    def _consumed(self, consume: Callable, argument):
        """`consume(argument)`, its failures told as a sender tells them (module docstring)."""
        try:
            return consume(argument)
        except DeliveryError:
            raise
        except InputError as exc:  # the consumer refused this message (its signature, its header): for good
            raise PermanentDeliveryError(f"{self.party} refused it: {exc.detail}") from None
        except Exception as exc:  # the consumer's own failure: keep the message and try again later
            raise TransientDeliveryError(f"{self.party} consumer failed: {type(exc).__name__}: {exc}") from exc

    def check(self) -> Health:
        return Health(self.handler is not None, "consumer attached" if self.handler else "no consumer attached")

    def close(self) -> None:
        pass

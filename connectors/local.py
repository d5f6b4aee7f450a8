"""In-process delivery to a consumer living in the hub's own process (an app's, e.g. the consular registry's).

A Sender and a LocalConsumer (connectors/base.py): the service attaches the consumer an app declares for
the party (`App.local_consumers`); until then a delivery is retried later."""
from __future__ import annotations

from typing import Callable

from pydantic import BaseModel, ConfigDict

from connectors.base import Health, Outbound, SendResult
from hub.errors import DeliveryError, TransientDeliveryError


class LocalConnector:
    class Config(BaseModel):
        """No settings: the consumer is attached in the hub's process (`Hub.attach_local_consumer`)."""
        model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, party: str, config: "LocalConnector.Config | None" = None, *, timeout_seconds: float = 0,
                 settings=None, handler: Callable[[Outbound], None] | None = None):
        self.party = party
        self.handler = handler

    def __repr__(self) -> str:
        return f"LocalConnector({self.party})"

    def attach(self, handler: Callable[[Outbound], None]) -> None:
        self.handler = handler

    def open(self) -> None:
        pass

    def send(self, outbound: Outbound) -> SendResult:
        if self.handler is None:
            raise TransientDeliveryError(f"no consumer attached for {self.party} in this process")
        try:
            self.handler(outbound)
        except DeliveryError:
            raise
        except Exception as exc:  # the consumer's own failure: keep the message and try again later
            raise TransientDeliveryError(f"{self.party} consumer failed: {type(exc).__name__}: {exc}") from exc
        return SendResult(detail="consumed")

    def check(self) -> Health:
        return Health(self.handler is not None, "consumer attached" if self.handler else "no consumer attached")

    def close(self) -> None:
        pass

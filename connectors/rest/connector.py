"""REST with XML bodies over one long-lived httpx client (keep-alive) per partner: a Sender (connectors/base.py)."""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Health, Outbound, SendResult, url_reachable
from connectors.http import RETRYABLE_STATUS, parse_retry_after
from hub.errors import PermanentDeliveryError, TransientDeliveryError


class RestConnector:
    class Config(BaseModel):
        """`connection:` of a `transport: rest` party: XML bodies posted over HTTP(S)."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        endpoint: str = Field(pattern=r"^https?://", description="Base URL; the route's `operation` is appended "
                                                                  "as a path (none: the URL itself).")

    def __init__(self, party: str, config: "RestConnector.Config", *, timeout_seconds: float, settings=None):
        self.party = party
        self.endpoint = config.endpoint.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        parts = urlsplit(self.endpoint)
        return f"RestConnector({self.party}, {parts.scheme}://{parts.hostname}:{parts.port}{parts.path})"

    def open(self) -> None:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_seconds,
                                        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8))

    def send(self, outbound: Outbound) -> SendResult:
        self.open()
        headers = {"Content-Type": outbound.content_type, "X-Message-Id": outbound.message_id}
        url = f"{self.endpoint}/{outbound.operation.lstrip('/')}" if outbound.operation else self.endpoint
        try:
            response = self._client.post(url, content=outbound.body, headers=headers)
        except httpx.TimeoutException:
            raise TransientDeliveryError(f"no answer within {self.timeout_seconds:g} s") from None
        except httpx.ConnectError:
            raise TransientDeliveryError("connection refused or unreachable") from None
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"transport error: {type(exc).__name__}") from None
        if 200 <= response.status_code < 300:
            return SendResult(answer=response.content or None, detail=f"HTTP {response.status_code}")
        excerpt = response.text[:300].replace("\n", " ")
        reason = f"partner answered {response.status_code}" + (f": {excerpt}" if excerpt else "")
        if response.status_code in RETRYABLE_STATUS:
            raise TransientDeliveryError(reason, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        raise PermanentDeliveryError(reason)

    def check(self) -> Health:
        return url_reachable(self.endpoint)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

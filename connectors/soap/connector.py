"""Outbound SOAP 1.1 calls to a partner described by its WSDL (zeep), carrying pre-signed documents.

The WSDL is parsed once, in `open()`, into one zeep Client per process and partner. `send()` looks
the route's `operation` up in the WSDL's binding for its SOAPAction, wraps the hub-signed document
BYTE FOR BYTE in a soap:Body (so the signature the hub made is the one the partner verifies) and
posts it over one kept-alive connection pool per partner (connectors/partner_pool.py, with
timeouts), holding as many connections as the partner may have deliveries in flight
(HUB_PARTNER_CONCURRENCY).

    partner answers 2xx with a document   SendResult(answer=<the soap:Body child on its own>)
    soap:Fault                             PermanentDeliveryError("SOAP fault <code>: <string>"), or
                                           TransientDeliveryError(retry_after=...) when the fault's
                                           detail carries RetryAfter (connectors/soap/envelope.py)
    HTTP 5xx/429/408 without a fault,      TransientDeliveryError
    timeout, refused or reset connection
    other HTTP status, unreadable answer   PermanentDeliveryError
    an operation the WSDL does not have    PermanentDeliveryError naming the WSDL's operations

The answer is the partner's document exactly as signed by the partner (exclusive c14n makes it
independent of the envelope): the engine runs it through intake when an inbound route names its root.

Capabilities (connectors/base.py): a Sender, and InboundRoutes: `inbound_router()` is the hub's
inbound SOAP endpoint (/soap/{CODE}, connectors/soap/inbound.py), shared by every SOAP party.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Health, Outbound, SendResult, url_reachable
from connectors.http import RETRYABLE_STATUS, parse_retry_after
from connectors.partner_pool import Answer, PartnerPool, connections_for
from connectors.soap.envelope import CONTENT_TYPE, body_document_bytes, parse_envelope, read_fault, wrap_document_bytes
from hub.errors import ConfigError, InputError, PermanentDeliveryError, TransientDeliveryError

if TYPE_CHECKING:
    import zeep

_WSDL_PATH = r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*\.wsdl$"


class SoapConnector:
    class Config(BaseModel):
        """`connection:` of a `transport: soap` party."""

        model_config = ConfigDict(extra="forbid", frozen=True)
        wsdl: str = Field(pattern=_WSDL_PATH, json_schema_extra={"file_under": "schemas"}, description="The partner's WSDL, a path under schemas/ (e.g. "
                          "partners/dgsn/services-consulaires.wsdl). Parsed once when the connector opens; "
                          "the route's `operation` must be one of its operations.")
        endpoint: str | None = Field(None, pattern=r"^https?://[^\s/]+", description="URL the calls are posted "
                                     "to, overriding the WSDL's soap:address (e.g. ${HUB_DGSN_URL:-http://127.0.0.1:"
                                     "8712}/dgsn/services-consulaires). None: the WSDL's address.")
        inbound_wsdl: str | None = Field(None, pattern=_WSDL_PATH, json_schema_extra={"file_under": "schemas"},
                                         description="The WSDL of the endpoint the hub "
                                         "serves at /soap/{CODE} for this partner to call in (a path under "
                                         "schemas/, e.g. hub/dgsn-callbacks.wsdl). None: the partner does not "
                                         "call the hub over SOAP.")

    def __init__(self, party: str, config: "SoapConnector.Config", *, timeout_seconds: float, settings):
        self.party = party
        self.config = config
        self.timeout_seconds = timeout_seconds
        self.wsdl_path = Path(settings.schemas_dir) / config.wsdl
        self.max_answer_bytes = settings.max_message_bytes
        self.connections = connections_for(settings)
        # the envelope adds two levels (Envelope, Body) and two elements around the answer
        self.answer_caps = {"max_depth": settings.max_xml_depth + 2, "max_elements": settings.max_xml_elements + 2}
        self._lock = threading.Lock()
        self._client: zeep.Client | None = None
        self._pool: PartnerPool | None = None
        self._binding = None
        self._address: str | None = config.endpoint

    def __repr__(self) -> str:
        return f"SoapConnector({self.party}, {self.config.wsdl}, {_host_port_path(self._address)})"

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Parse the WSDL (once) and make the connection pool; a broken WSDL is a ConfigError."""
        with self._lock:
            if self._client is not None:
                return
            if not self.wsdl_path.is_file():
                raise ConfigError(self.wsdl_path, "connection.wsdl", f"{self.party}: no such WSDL file")
            import zeep  # here, not at the top: a process that never calls a SOAP partner does not load it
            from zeep.transports import Transport

            transport = Transport(timeout=self.timeout_seconds, operation_timeout=self.timeout_seconds, cache=None)
            try:
                client = zeep.Client(str(self.wsdl_path), transport=transport)
            except (zeep.exceptions.Error, etree.Error, OSError, ValueError) as exc:
                transport.session.close()
                raise ConfigError(self.wsdl_path, "connection.wsdl", f"{self.party}: WSDL does not load: {exc}") from None
            transport.session.close()  # the WSDL is read; the calls go through the pool
            port = _only_soap_port(client, self.wsdl_path)
            self._binding = port.binding
            self._address = self.config.endpoint or port.binding_options.get("address")
            if self._address:
                self._pool = PartnerPool(self._address, connections=self.connections,
                                         timeout_seconds=self.timeout_seconds)
            self._client = client

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
            self._client = self._pool = None

    # -- sending ---------------------------------------------------------------------------------

    def operations(self) -> list[str]:
        self.open()
        return sorted(self._binding._operations)

    def send(self, outbound: Outbound) -> SendResult:
        if self._client is None:
            self.open()
        operation = self._operation(outbound.operation)
        try:
            envelope = wrap_document_bytes(outbound.body)
        except ValueError as exc:
            raise PermanentDeliveryError(f"document for {self.party} cannot travel in a SOAP body: {exc}") from None
        headers = {"Content-Type": CONTENT_TYPE, "SOAPAction": f'"{operation.soapaction or ""}"',
                   "X-Message-Id": outbound.message_id}
        if self._pool is None:
            raise PermanentDeliveryError(f"{self.config.wsdl} has no soap:address and the connection no endpoint")
        # TransientDeliveryError when no answer came (connectors/partner_pool.py)
        response = self._pool.post(envelope, headers)
        return self._answer(outbound.operation, response)

    def _operation(self, name: str | None):
        operations = self._binding._operations
        if name not in operations:
            what = f"operation {name!r}" if name else "no operation (the route target needs `operation`)"
            raise PermanentDeliveryError(f"{what} is not in {self.config.wsdl}; "
                                         f"its operations: {', '.join(sorted(operations))}")
        return operations[name]

    def _answer(self, operation: str, response: Answer) -> SendResult:
        status, content = response.status, response.data or b""
        document = None
        if content.strip():
            try:
                document = parse_envelope(content, max_bytes=self.max_answer_bytes, what=f"{self.party} answer",
                                          **self.answer_caps)
            except InputError:
                document = None
        fault = read_fault(document) if document is not None else None
        if fault is not None:
            reason = f"SOAP fault {fault.code}: {fault.string}" + (f" (HTTP {status})" if status != 500 else "")
            if fault.problems:
                reason += "; " + "; ".join(p.message for p in fault.problems[:3])
            if fault.transient:
                raise TransientDeliveryError(reason, retry_after=fault.retry_after)
            raise PermanentDeliveryError(reason)
        if 200 <= status < 300:
            if document is None:
                raise PermanentDeliveryError(f"partner answered {status} to {operation} without a SOAP envelope "
                                             f"holding one document")
            return SendResult(answer=body_document_bytes(document),
                              detail=f"{operation}: HTTP {status}, {etree.QName(document).localname}")
        excerpt = content[:300].decode("utf-8", "replace").replace("\n", " ")
        reason = f"partner answered {status}" + (f": {excerpt}" if excerpt else "")
        if status in RETRYABLE_STATUS or status >= 500:
            raise TransientDeliveryError(reason, retry_after=parse_retry_after(response.headers.get("retry-after")))
        raise PermanentDeliveryError(reason)

    # -- inbound ---------------------------------------------------------------------------------

    def inbound_router(self):
        """/soap/{CODE}: where parties with an `inbound_wsdl` call the hub (connectors/soap/inbound.py)."""
        from connectors.soap.inbound import soap_router  # FastAPI only where the API is built
        return soap_router()

    # -- health ----------------------------------------------------------------------------------

    def check(self) -> Health:
        """TCP reachability of the endpoint (the WSDL's address until the connector opened)."""
        address = self._address
        if address is None:
            try:
                self.open()
            except ConfigError as exc:
                return Health(False, str(exc))
            address = self._address
        return url_reachable(address)


def _only_soap_port(client: zeep.Client, path: Path):
    from zeep.wsdl.bindings.soap import Soap11Binding
    ports = [port for service in client.wsdl.services.values() for port in service.ports.values()
             if isinstance(port.binding, Soap11Binding)]
    if len(ports) != 1:
        raise ConfigError(path, "connection.wsdl", f"expected exactly one SOAP 1.1 port in the WSDL, found {len(ports)}")
    return ports[0]


def _host_port_path(address: str | None) -> str:
    """URL without user info or query (never print credentials)."""
    if not address:
        return "address from the WSDL"
    parts = urlsplit(address)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"

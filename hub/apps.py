"""The app contract: what a client living in the hub's process contributes to the running service.

The engine knows no app by name. An app (the consular registry is one: registry/app.py) is a class
built as `cls(hub)` without I/O; the composition root (hub/service.py, the one module of hub/ that
names apps) builds each and wires what it declares:

    name                  the app's name; its HTTP views find it as `request.app.state.<name>`
    metadata              its SQLAlchemy MetaData (or None): the tables the migrations must know, so
                          that autogenerate compares the whole schema (a class attribute: read without
                          building the app)
    samples               message type -> fn(settings) -> bytes: valid signed messages for integrators
                          (`hub sample TYPE`; a class attribute too)
    routers()             its APIRouters, mounted in the hub's HTTP API after the engine's own
    jobs()                its scheduled Jobs; they run in the leading process only (hub/cluster/leader.py),
                          so each must be idempotent and safe to run late or twice
    local_consumers()     party -> handler(Outbound): deliveries to that party (a `local` transport,
                          connectors/local.py) are handed to the handler in this process; raising
                          PermanentDeliveryError dead-letters the delivery, anything else retries it
    dead_letter_hooks()   fn(sender, correlation_id, message_id, reason) called after any message is
                          dead-lettered (outside the transaction); a hook's failure is logged, not raised
    load_reference_data() once at start-up, after the migrations, under the start-up lock (so processes
                          started together do not race); must be idempotent

`install(hub, app)` attaches the consumers and hooks to a bare `Hub` (a script without HTTP or
scheduler does the same as the service). docs/howto/add-a-service.md shows the registry's side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy import MetaData

    from connectors.base import Outbound
    from hub.engine import Hub
    from hub.settings import Settings

DeadLetterHook = Callable[[str, str, str, str], None]   # (sender, correlation_id, message_id, reason)


@dataclass(frozen=True)
class Job:
    """A scheduled job: `run()` every `every_seconds`, or at the `cron` fields (APScheduler's: {"hour": 2,
    "minute": 0, "timezone": "Africa/Casablanca"}); exactly one of the two."""

    id: str
    run: Callable[[], object] = field(repr=False)
    every_seconds: float | None = None
    cron: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"job {self.id}: give either every_seconds or cron fields, not both or neither")

    @property
    def trigger(self) -> tuple[str, dict]:
        """APScheduler's trigger name and its arguments."""
        if self.cron is not None:
            return "cron", dict(self.cron)
        return "interval", {"seconds": self.every_seconds}


@runtime_checkable
class App(Protocol):
    name: ClassVar[str]
    metadata: ClassVar["MetaData | None"]
    samples: ClassVar[Mapping[str, Callable[["Settings"], bytes]]]

    def routers(self) -> Sequence["APIRouter"]: ...

    def jobs(self) -> Sequence[Job]: ...

    def local_consumers(self) -> Mapping[str, Callable[["Outbound"], None]]: ...

    def dead_letter_hooks(self) -> Sequence[DeadLetterHook]: ...

    def load_reference_data(self) -> None: ...


def install(hub: "Hub", app: App) -> None:
    """Attach `app`'s local consumers and dead-letter hooks to `hub`."""
    for party, handler in app.local_consumers().items():
        hub.attach_local_consumer(party, handler)
    hub.dead_letter_listeners.extend(app.dead_letter_hooks())

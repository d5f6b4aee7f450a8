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
                          PermanentDeliveryError dead-letters the delivery, anything else retries it. A
                          handler whose effect is a change to the database is a ChangingConsumer: its change
                          commits with the hub's record of the delivery, exactly once
    dead_letter_hooks()   fn(sender, correlation_id, message_id, reason) called after any message is
                          dead-lettered (outside the transaction); a hook's failure is logged, not raised
    resend_hooks()        optional: fn(sender, correlation_id, message_id, actor) called when an operator
                          resends a message that has dead deliveries (hub/delivery/operations.py `resend`),
                          just before they are due again, outside the resend's transaction: what a
                          dead-letter hook failed waits again for the partner's answer. A hook's failure is
                          logged, not raised: the resend goes on
    load_reference_data() once at start-up, after the migrations, under the start-up lock (so processes
                          started together do not race); must be idempotent
    public_paths()        optional: path prefixes under /api whose routes answer without a token (a public
                          lookup, e.g. the verification of a printed document): the app answers for what they
                          reveal and for their rate limit; every other /api path needs a token
    console()             optional: a ConsolePart, what the app shows in the console (its pages, navigation,
                          overview tiles, overdue items)
    chains                optional: ChainedHistory declarations (a class attribute, read without building the
                          app): tables of the app whose rows the hub seals into hash chains of their own, like
                          its timeline, and `hub evidence verify` checks
    post_states           optional: fn(session) -> {post code: open}, the consular posts the app keeps (a
                          static method, called without building the app): a consular agent's token or account
                          is bound to an open one (`posts_open_now`)

`install(hub, app)` attaches the consumers, hooks and chains to a bare `Hub` (a script without HTTP or
scheduler does the same as the service). docs/howto/add-a-service.md shows the registry's side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy import MetaData

    from connectors.base import Outbound
    from hub.engine import Hub
    from hub.settings import Settings

DeadLetterHook = Callable[[str, str, str, str], None]   # (sender, correlation_id, message_id, reason)
ResendHook = Callable[[str, str, str, str], None]       # (sender, correlation_id, message_id, actor)


@dataclass(frozen=True)
class ChainedHistory:
    """A table of an app that the hub seals into a hash chain named `name`, like its timeline
    (hub/evidence/chains.py): the rows are written unsealed by the app, in the transaction of the change
    they record, and sealed in id order in the background; `hub evidence verify` walks the chain.

    `table` has the columns id, at (when the row was written), chain_seq, content_hash and chain_hash
    (nullable). `rows()` is the SELECT of the table's rows with those columns and whatever `fields` reads
    (joined rows included); `fields(row)` the values of the entry's canonical line after its name and seq
    (datetimes are written as the chain writes them). `check(session)` yields problems of the app's
    current state against the history (e.g. a case whose status is not the last one recorded), each a
    sentence naming what is wrong."""

    name: str
    table: Any = field(repr=False)
    rows: Callable[[], Any] = field(repr=False)
    fields: Callable[[Any], list] = field(repr=False)
    check: Callable[[Any], Iterable[str]] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ChangingConsumer:
    """A local consumer whose effect is a change to rows of the hub's database (the registry's cases): the hub
    writes it in the transaction that records the delivery (hub/delivery/workers.py), so that the two commit
    together or not at all, once.

    `prepare(outbound)` does the work that needs no transaction (parse, verify the signature, read the fields;
    on SQLite the write lock is held by the transaction) and raises as a handler does; it returns
    `change(session)`, which makes the change on an ORM session joined to the hub's transaction (never
    committing it) and returns a callable to run once it is committed (send a follow-up), or None.
    `receive(outbound)` does both in a transaction of the app's own (a script, a test); calling the consumer
    does the same."""

    receive: Callable[["Outbound"], None]
    prepare: Callable[["Outbound"], Callable[[Any], Callable[[], None] | None]]

    def __call__(self, outbound: "Outbound") -> None:
        self.receive(outbound)


@dataclass(frozen=True)
class NavItem:
    """An entry of the console's navigation: its path, its label (an English msgid, translated by the
    console's catalogue) and the permission a viewer needs to see it."""

    path: str
    label: str
    permission: str


@dataclass(frozen=True)
class ConsolePart:
    """What an app shows in the console (hub/monitor), returned by its optional `console()` method:

    templates   a folder of Jinja2 templates, loaded after the console's own (its pages extend base.html;
                the pages themselves are routes of the app's `routers()` under /monitor)
    nav         its entries in the console's navigation
    tiles       fn(hub, identity) -> list of dicts: the app's tiles on the overview (e.g. one per service),
                rendered by `tiles_template` (context: `tiles`, `viewer`); only what `identity` may see
    overdue     fn(hub) -> list of dicts, each {"reference", "service", "post_code", "deadline_at" (UTC),
                "status", "url"}: what is past its deadline, for the overview and the alerts"""

    templates: Any = None
    nav: Sequence[NavItem] = ()
    tiles: Callable[[Any, Any], list[dict]] | None = field(default=None, repr=False)
    tiles_template: str | None = None
    overdue: Callable[[Any], list[dict]] | None = field(default=None, repr=False)


def console_parts(apps: Sequence) -> list[ConsolePart]:
    """The ConsoleParts of the apps that show something in the console."""
    return [app.console() for app in apps if callable(getattr(app, "console", None))]


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
    """Attach `app`'s local consumers, dead-letter and resend hooks and chained histories to `hub`."""
    for party, handler in app.local_consumers().items():
        hub.attach_local_consumer(party, handler)
    hub.dead_letter_listeners.extend(app.dead_letter_hooks())
    resend_hooks = getattr(app, "resend_hooks", None)  # optional: an app with nothing to reopen has none
    if callable(resend_hooks):
        hub.resend_listeners.extend(resend_hooks())
    hub.chained_histories.extend(app_chains([app]))


def app_chains(apps: Sequence) -> list[ChainedHistory]:
    """The chained histories the apps (classes or built) declare, in order."""
    return [chain for app in apps for chain in getattr(app, "chains", ())]


def posts_open_now(session, apps: Sequence, listed: set[str]) -> set[str]:
    """The post codes a consular agent may be bound to now: those of the reference file (`listed`, the posts the
    next start loads) and those the apps keep (an administrator's own), less those the apps say are closed."""
    states: dict[str, bool] = {}
    for app in apps:
        reader = getattr(app, "post_states", None)
        if reader is not None:
            states.update(reader(session))
    return {code for code in listed if states.get(code, True)} | {code for code, open_ in states.items() if open_}

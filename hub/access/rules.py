"""Access rules per party: which message types each may send to the hub and receive from it.

The rules live in config/partners/<CODE>.yaml (`may_send`, `may_receive`); hub.config refuses at load a
configuration whose routes say otherwise, so a route can never deliver a type to a party that may not
receive it. At every door (REST, SOAP, SFTP, the registry) intake calls `check_may_send` once the
sender and the type are known from the verified document: a type outside the sender's `may_send` is
refused with 403 and recorded in `refusals` (hub.intake.refusals)."""
from __future__ import annotations

from hub.config import HubConfig
from hub.errors import NotAllowed, Problem


def check_may_send(config: HubConfig, sender: str, message_type: str) -> None:
    """NotAllowed (403) unless `sender`'s `may_send` lists `message_type`."""
    party = config.parties.get(sender)
    if party is None:
        raise NotAllowed(f"{sender} may not send {message_type}: it is not a known party",
                         [Problem("unknown sender", path="/Message/Header/Sender")])
    if message_type not in party.may_send:
        allowed = ", ".join(party.may_send) or "nothing"
        raise NotAllowed(f"{sender} may not send {message_type} (its may_send: {allowed})",
                         [Problem(f"{message_type} is not in {sender}'s may_send", path="/Message/Header/Type")])


def may_receive(config: HubConfig, party: str, message_type: str) -> bool:
    """Whether the hub may deliver `message_type` to `party` (its `may_receive` lists it)."""
    found = config.parties.get(party)
    return found is not None and message_type in found.may_receive

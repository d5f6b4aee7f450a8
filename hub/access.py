"""Access rules per party: which message types each may send to the hub and receive from it."""
from __future__ import annotations

from hub.config import HubConfig
from hub.errors import NotAllowed, Problem


def check_may_send(config: HubConfig, sender: str, message_type: str) -> None:
    """NotAllowed (403) unless `sender`'s `may_send` lists `message_type`."""
    party = config.parties.get(sender)
    if party is None or message_type not in party.may_send:
        raise NotAllowed(f"{sender} may not send {message_type}",
                         [Problem(f"{message_type} is not in {sender}'s may_send", path="/Message/Header/Type")])

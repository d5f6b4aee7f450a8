"""Who may do what: the parties' access rules (rules: which message types each may send and receive)
and the API's identities (tokens: tokens, roles and their permissions).

May use: hub.store (tokens are rows), hub.config, hub.errors, hub.settings."""

"""Signatures, keys and certificates: XML signatures in memory and as streams, the parties' trust
store, the hub's signed receipts, development PKI, TLS options.

Pure cryptography and certificate policy. May use: hub.xml, hub.errors, hub.settings. Never the database,
delivery, intake or the API."""
